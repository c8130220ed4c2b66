//! Tokens that are well signed or well formed but must still be refused (R-DSR-4: `aud`, `iss`, `exp`
//! checked), each with its own error code.

use lethe_auth::{AuthConfig, AuthError, Issuer, Role, Verifier};

use crate::{b64, claims, config, issue, keys, now, segments, sign_raw, unb64};

fn verify_err(keys: &lethe_auth::SigningKeys, config: &AuthConfig, token: &str) -> AuthError {
    Verifier::verify(keys, config, token).expect_err("must be refused")
}

#[test]
fn expired_token_is_refused() {
    let keys = keys();
    let mut c = claims(Role::Cms);
    c.exp = now() - 120;
    let token = Issuer::sign(&keys, &c).unwrap();
    let err = verify_err(&keys, &config(), &token);
    assert_eq!(err, AuthError::Expired);
    assert_eq!((err.code(), err.http_status()), ("token_expired", 401));
}

#[test]
fn leeway_tolerates_small_skew_only() {
    let keys = keys();
    let mut c = claims(Role::Cms);
    c.exp = now() - 10;
    let token = Issuer::sign(&keys, &c).unwrap();
    let lenient = AuthConfig { leeway_secs: 60, ..AuthConfig::default() };
    assert!(Verifier::verify(&keys, &lenient, &token).is_ok());
    assert_eq!(verify_err(&keys, &config(), &token), AuthError::Expired);
    // A leeway beyond the cap is clamped: a token expired an hour ago stays expired.
    c.exp = now() - 3600;
    let old = Issuer::sign(&keys, &c).unwrap();
    let absurd = AuthConfig { leeway_secs: u64::MAX, ..AuthConfig::default() };
    assert_eq!(verify_err(&keys, &absurd, &old), AuthError::Expired);
}

#[test]
fn not_yet_valid_token_is_refused() {
    let keys = keys();
    let mut c = claims(Role::Cms);
    c.nbf = now() + 120;
    let token = Issuer::sign(&keys, &c).unwrap();
    let err = verify_err(&keys, &config(), &token);
    assert_eq!(err, AuthError::NotYetValid);
    assert_eq!(err.code(), "token_not_yet_valid");
}

#[test]
fn wrong_audience_is_refused() {
    let keys = keys();
    let token = issue(&keys, Role::Admin);
    let other = AuthConfig { audience: "other-api".to_owned(), ..config() };
    let err = verify_err(&keys, &other, &token);
    assert_eq!(err, AuthError::WrongAudience);
    assert_eq!(err.code(), "invalid_audience");
}

#[test]
fn wrong_issuer_is_refused() {
    let keys = keys();
    let mut c = claims(Role::Admin);
    c.iss = "mallory".to_owned();
    let token = Issuer::sign(&keys, &c).unwrap();
    let err = verify_err(&keys, &config(), &token);
    assert_eq!(err, AuthError::WrongIssuer);
    assert_eq!(err.code(), "invalid_issuer");
}

#[test]
fn tampered_payload_is_refused() {
    let keys = keys();
    let token = issue(&keys, Role::Subject);
    let [header, payload, signature] = segments(&token);

    // One flipped character in the middle of the payload.
    let mut bytes = payload.into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let flipped = format!("{header}.{}.{signature}", String::from_utf8(bytes).unwrap());
    assert_eq!(verify_err(&keys, &config(), &flipped), AuthError::InvalidSignature);

    // A meaningful edit: the subject token promoted to admin, re-encoded cleanly.
    let mut claims: serde_json::Value = serde_json::from_slice(&unb64(&segments(&token)[1])).unwrap();
    claims["role"] = "admin".into();
    claims.as_object_mut().unwrap().remove("subject_id");
    let promoted = format!("{header}.{}.{signature}", b64(claims.to_string()));
    let err = verify_err(&keys, &config(), &promoted);
    assert_eq!(err, AuthError::InvalidSignature);
    assert_eq!(err.code(), "invalid_signature");
}

#[test]
fn tampered_signature_is_refused() {
    let keys = keys();
    let token = issue(&keys, Role::Cms);
    let [header, payload, signature] = segments(&token);
    let mut bytes = signature.into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{header}.{payload}.{}", String::from_utf8(bytes).unwrap());
    assert_eq!(verify_err(&keys, &config(), &tampered), AuthError::InvalidSignature);

    let truncated = format!("{header}.{payload}.{}", &segments(&token)[2][..40]);
    assert!(matches!(
        verify_err(&keys, &config(), &truncated),
        AuthError::InvalidSignature | AuthError::MalformedToken
    ));
    let empty = format!("{header}.{payload}.");
    assert!(matches!(verify_err(&keys, &config(), &empty), AuthError::InvalidSignature | AuthError::MalformedToken));
}

#[test]
fn unknown_kid_is_refused() {
    let keys = keys();
    let stranger = crate::keys();
    let err = verify_err(&keys, &config(), &issue(&stranger, Role::Admin));
    assert_eq!(err, AuthError::UnknownKeyId);
    assert_eq!(err.code(), "unknown_kid");

    // Signed with our key but naming a kid we do not have.
    let token = sign_raw(&keys, Some("not-a-kid"), &serde_json::to_value(claims(Role::Admin)).unwrap());
    assert_eq!(verify_err(&keys, &config(), &token), AuthError::UnknownKeyId);
}

#[test]
fn missing_kid_is_refused_even_with_a_valid_signature() {
    let keys = keys();
    let token = sign_raw(&keys, None, &serde_json::to_value(claims(Role::Admin)).unwrap());
    let err = verify_err(&keys, &config(), &token);
    assert_eq!(err, AuthError::MissingKeyId);
    assert_eq!(err.code(), "missing_kid");

    let empty = sign_raw(&keys, Some(""), &serde_json::to_value(claims(Role::Admin)).unwrap());
    assert_eq!(verify_err(&keys, &config(), &empty), AuthError::MissingKeyId);
}

#[test]
fn validly_signed_claims_that_break_role_rules_are_refused() {
    let keys = keys();
    let kid = keys.current_kid().to_owned();
    let mut subject_without_id = serde_json::to_value(claims(Role::Subject)).unwrap();
    subject_without_id.as_object_mut().unwrap().remove("subject_id");
    let mut admin_with_id = serde_json::to_value(claims(Role::Admin)).unwrap();
    admin_with_id["subject_id"] = "alice".into();
    let mut bad_subject = serde_json::to_value(claims(Role::Subject)).unwrap();
    bad_subject["subject_id"] = "".into();
    for claims in [subject_without_id, admin_with_id, bad_subject] {
        let token = sign_raw(&keys, Some(&kid), &claims);
        let err = verify_err(&keys, &config(), &token);
        assert!(matches!(err, AuthError::InvalidClaims(_)), "{claims}: {err:?}");
        assert_eq!(err.code(), "invalid_claims");
    }
}

#[test]
fn validly_signed_token_without_registered_claims_is_refused() {
    let keys = keys();
    let kid = keys.current_kid().to_owned();
    for field in ["exp", "nbf", "iss", "aud", "sub", "iat", "jti", "role"] {
        let mut c = serde_json::to_value(claims(Role::Cms)).unwrap();
        c.as_object_mut().unwrap().remove(field);
        let token = sign_raw(&keys, Some(&kid), &c);
        let err = Verifier::verify(&keys, &config(), &token).expect_err(field);
        assert!(matches!(err, AuthError::MalformedToken | AuthError::InvalidClaims(_)), "{field}: {err:?}");
    }
}
