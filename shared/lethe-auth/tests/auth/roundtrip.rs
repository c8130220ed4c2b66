//! Issue-then-verify for every role (R-DSR-4): claims survive intact and the header is EdDSA + kid.

use std::time::Duration;

use lethe_auth::{AuthConfig, AuthError, Issuer, Principal, Role, Verifier};

use crate::{config, issue, keys, subject};

#[test]
fn every_role_round_trips() {
    let keys = keys();
    for role in Role::ALL {
        let token = issue(&keys, role);
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA, "{role}");
        assert_eq!(header.kid.as_deref(), Some(keys.current_kid()), "{role}");

        let claims = Verifier::verify(&keys, &config(), &token).expect("verifies");
        assert_eq!(claims.role, role);
        assert_eq!(claims.iss, "lethe");
        assert_eq!(claims.aud, "lethe-api");
        assert!(claims.nbf <= claims.iat + 1 && claims.exp == claims.iat + 600, "{claims:?}");
        assert_eq!(claims.subject_id.as_deref(), (role == Role::Subject).then_some("alice"));
        assert_eq!(claims.site.as_deref(), (role == Role::Site).then_some("shop-1"));
        assert_eq!(claims.sub, if role == Role::Site { "site:shop-1".to_owned() } else { role.to_string() });

        let principal = Verifier::authenticate(&keys, &config(), &token).expect("principal");
        assert_eq!(principal.role(), role);
        assert_eq!(principal.jti(), claims.jti);
        assert_eq!(principal.subject(), (role == Role::Subject).then(|| subject("alice")).as_ref());
        assert_eq!(principal.site(), claims.site.as_deref());
        assert_eq!(principal.origins(), claims.origins.as_slice());
    }
}

#[test]
fn site_token_carries_its_origins() {
    let keys = keys();
    let origins = vec!["https://shop.example".to_owned(), "https://m.shop.example".to_owned()];
    let token =
        Issuer::issue(&keys, &config(), Role::Site, Duration::from_secs(60), None, Some("shop-1"), &origins).unwrap();
    let principal = Verifier::authenticate(&keys, &config(), &token).unwrap();
    assert_eq!(principal.origins(), origins.as_slice());
    assert!(principal.allows_origin("https://m.shop.example"));
    assert!(!principal.allows_origin("https://evil.example"));
}

#[test]
fn each_token_has_a_fresh_jti() {
    let keys = keys();
    let a = Verifier::verify(&keys, &config(), &issue(&keys, Role::Cms)).unwrap();
    let b = Verifier::verify(&keys, &config(), &issue(&keys, Role::Cms)).unwrap();
    assert_ne!(a.jti, b.jti);
    assert!(uuid_like(&a.jti), "{}", a.jti);
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn default_config_is_lethe_for_lethe_api() {
    let config = AuthConfig::default();
    assert_eq!((config.issuer.as_str(), config.audience.as_str()), ("lethe", "lethe-api"));
}

#[test]
fn issuing_enforces_the_role_rules() {
    let keys = keys();
    let alice = subject("alice");
    let ttl = Duration::from_secs(60);
    let cases: [(Role, Option<&_>, Option<&str>, Vec<String>); 6] = [
        (Role::Subject, None, None, vec![]),
        (Role::Admin, Some(&alice), None, vec![]),
        (Role::Site, Some(&alice), Some("shop-1"), vec![]),
        (Role::Site, None, None, vec![]),
        (Role::Cms, None, Some("shop-1"), vec![]),
        (Role::Dpo, None, None, vec!["https://x.example".to_owned()]),
    ];
    for (role, subject_id, site, origins) in cases {
        let result = Issuer::issue(&keys, &config(), role, ttl, subject_id, site, &origins);
        assert!(matches!(result, Err(AuthError::InvalidGrant(_))), "{role}: {result:?}");
    }
    let zero = Issuer::issue(&keys, &config(), Role::Cms, Duration::ZERO, None, None, &[]);
    assert!(matches!(zero, Err(AuthError::InvalidGrant(_))), "{zero:?}");
    let huge = Issuer::issue(&keys, &config(), Role::Cms, Duration::from_secs(u64::MAX), None, None, &[]);
    assert!(matches!(huge, Err(AuthError::InvalidGrant(_))), "{huge:?}");
}

#[test]
fn principal_cannot_be_built_from_inconsistent_claims() {
    let mut claims = crate::claims(Role::Subject);
    claims.subject_id = None;
    assert!(matches!(Principal::try_from(claims), Err(AuthError::InvalidClaims(_))));
}
