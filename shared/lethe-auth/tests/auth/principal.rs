//! What a verified caller may do (R-DSR-4: a subject's token reaches only that subject).

use lethe_auth::{AuthError, Role, Verifier};

use crate::{config, issue, keys, subject};

#[test]
fn subject_token_acts_only_for_its_own_subject() {
    let keys = keys();
    let principal = Verifier::authenticate(&keys, &config(), &issue(&keys, Role::Subject)).unwrap();
    assert!(principal.may_act_for(&subject("alice")));
    assert!(!principal.may_act_for(&subject("bob")));
    assert!(!principal.may_act_for(&subject("alice ")), "no normalisation widens the match");
    assert!(!principal.may_act_for(&subject("Alice")));
}

#[test]
fn admin_acts_for_anyone_and_other_roles_for_no_one() {
    let keys = keys();
    for role in Role::ALL {
        let principal = Verifier::authenticate(&keys, &config(), &issue(&keys, role)).unwrap();
        let expected = match role {
            Role::Admin => (true, true),
            Role::Subject => (true, false),
            Role::Site | Role::Cms | Role::Dpo => (false, false),
        };
        assert_eq!(
            (principal.may_act_for(&subject("alice")), principal.may_act_for(&subject("bob"))),
            expected,
            "{role}"
        );
    }
}

#[test]
fn require_checks_the_role() {
    let keys = keys();
    let dpo = Verifier::authenticate(&keys, &config(), &issue(&keys, Role::Dpo)).unwrap();
    assert_eq!(dpo.require(&[Role::Dpo, Role::Admin]), Ok(()));
    let err = dpo.require(&[Role::Admin]).unwrap_err();
    assert_eq!(err, AuthError::Forbidden);
    assert_eq!((err.code(), err.http_status()), ("forbidden", 403));
    assert_eq!(dpo.require(&[]), Err(AuthError::Forbidden));
}

#[test]
fn debug_output_redacts_the_subject_id() {
    let keys = keys();
    let token = issue(&keys, Role::Subject);
    let claims = Verifier::verify(&keys, &config(), &token).unwrap();
    let principal = Verifier::authenticate(&keys, &config(), &token).unwrap();
    let debug = format!("{claims:?} {principal:?}");
    assert!(!debug.contains("alice"), "{debug}");
}

#[test]
fn error_codes_are_distinct_and_statuses_sane() {
    let all = [
        AuthError::MalformedToken,
        AuthError::AlgorithmNotAllowed,
        AuthError::MissingKeyId,
        AuthError::UnknownKeyId,
        AuthError::InvalidSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongAudience,
        AuthError::WrongIssuer,
        AuthError::InvalidClaims("x"),
        AuthError::Forbidden,
        AuthError::MalformedAuthorization,
        AuthError::UnsupportedScheme,
        AuthError::InvalidGrant("x"),
        AuthError::CannotRetireCurrentKey,
        AuthError::NoSuchKey,
        AuthError::InvalidKeyStore("x"),
        AuthError::KeyGeneration,
        AuthError::Signing,
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(AuthError::code).collect();
    assert_eq!(codes.len(), all.len(), "every variant has its own code");
    for err in &all {
        assert!((400..600).contains(&err.http_status()), "{err:?}");
        let message = err.to_string();
        assert!(!message.ends_with('.') && message.chars().next().is_some_and(|c| c.is_lowercase()), "{message}");
    }
}
