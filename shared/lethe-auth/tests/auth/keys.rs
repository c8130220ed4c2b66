//! Key rotation, retirement and persistence (R-DSR-4: only tokens signed by a live key verify).

use lethe_auth::{AuthError, Role, SigningKeys, Verifier};

use crate::{config, issue, keys, unb64};

#[test]
fn old_key_verifies_until_retired() {
    let mut keys = keys();
    let old_kid = keys.current_kid().to_owned();
    let old_token = issue(&keys, Role::Subject);

    let new_kid = keys.rotate().unwrap();
    assert_ne!(new_kid, old_kid);
    assert_eq!(keys.current_kid(), new_kid);
    assert_eq!(keys.kids().count(), 2);
    let new_token = issue(&keys, Role::Subject);
    let header = jsonwebtoken::decode_header(&new_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()), "new tokens are signed by the new key");
    assert!(Verifier::verify(&keys, &config(), &old_token).is_ok(), "old token verifies after rotation");

    keys.retire(&old_kid).unwrap();
    assert_eq!(Verifier::verify(&keys, &config(), &old_token), Err(AuthError::UnknownKeyId));
    assert!(Verifier::verify(&keys, &config(), &new_token).is_ok());
    assert_eq!(keys.kids().collect::<Vec<_>>(), vec![new_kid.as_str()]);
}

#[test]
fn retire_refuses_the_current_key_and_unknown_kids() {
    let mut keys = keys();
    let current = keys.current_kid().to_owned();
    let err = keys.retire(&current).unwrap_err();
    assert_eq!(err, AuthError::CannotRetireCurrentKey);
    assert_eq!(err.http_status(), 409);
    assert_eq!(keys.retire("nope"), Err(AuthError::NoSuchKey));
    assert_eq!(keys.current_kid(), current);
}

#[test]
fn json_round_trip_keeps_every_key_working() {
    let mut keys = keys();
    let old_token = issue(&keys, Role::Dpo);
    keys.rotate().unwrap();
    let new_token = issue(&keys, Role::Dpo);

    let restored = SigningKeys::from_json(&keys.to_json().unwrap()).unwrap();
    assert_eq!(restored.current_kid(), keys.current_kid());
    assert_eq!(restored.public_keys(), keys.public_keys());
    for token in [&old_token, &new_token] {
        assert!(Verifier::verify(&restored, &config(), token).is_ok());
    }
    let minted_after = issue(&restored, Role::Dpo);
    assert!(Verifier::verify(&keys, &config(), &minted_after).is_ok(), "restored key signs as the original");
}

#[test]
fn debug_never_shows_private_key_bytes() {
    let mut keys = keys();
    keys.rotate().unwrap();
    let json = keys.to_json().unwrap();
    let store: serde_json::Value = serde_json::from_str(&json).unwrap();
    let debug = format!("{keys:?} {:?}", keys.clone());
    for entry in store["keys"].as_array().unwrap() {
        let secret = entry["secret"].as_str().unwrap();
        assert_eq!(unb64(secret).len(), 32);
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains(entry["kid"].as_str().unwrap()), "{debug}");
    }
    let bytes_debug = format!("{:?}", unb64(store["keys"][0]["secret"].as_str().unwrap()));
    assert!(!debug.contains(&bytes_debug[1..bytes_debug.len() - 1]));
}

#[test]
fn from_json_refuses_damaged_stores() {
    let keys = keys();
    let good: serde_json::Value = serde_json::from_str(&keys.to_json().unwrap()).unwrap();

    let mut wrong_version = good.clone();
    wrong_version["version"] = 2.into();
    let mut wrong_public = good.clone();
    wrong_public["keys"][0]["public"] = crate::b64([9_u8; 32]).into();
    let mut short_secret = good.clone();
    short_secret["keys"][0]["secret"] = crate::b64([9_u8; 31]).into();
    let mut lost_current = good.clone();
    lost_current["current"] = "elsewhere".into();
    let mut duplicated = good.clone();
    let first = duplicated["keys"][0].clone();
    duplicated["keys"].as_array_mut().unwrap().push(first);
    let mut no_keys = good.clone();
    no_keys["keys"] = serde_json::json!([]);

    for damaged in [wrong_version, wrong_public, short_secret, lost_current, duplicated, no_keys] {
        let err = SigningKeys::from_json(&damaged.to_string()).unwrap_err();
        assert!(matches!(err, AuthError::InvalidKeyStore(_)), "{damaged}: {err:?}");
        assert_eq!(err.http_status(), 500);
    }
    for garbage in ["", "{}", "null", "[1,2]", "{\"version\":1}"] {
        assert!(matches!(SigningKeys::from_json(garbage), Err(AuthError::InvalidKeyStore(_))), "{garbage}");
    }
}

#[test]
fn public_keys_publish_as_ed25519_jwks() {
    let keys = keys();
    let public = keys.public_keys();
    assert_eq!(public.len(), 1);
    let jwk = public[0].to_jwk();
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str(), jwk["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert_eq!(jwk["kid"].as_str(), Some(keys.current_kid()));
    assert_eq!(unb64(jwk["x"].as_str().unwrap()), public[0].bytes().to_vec());
    assert!(jwk.get("d").is_none(), "no private part in a JWK");
}
