//! Algorithm attacks and hostile input (R-DSR-4: JWT algorithms allow-listed): `alg: none`, HS256
//! key confusion with the public key as HMAC secret, RS256 and other algorithms, and garbage.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lethe_auth::{AuthError, Role, SigningKeys, Verifier};
use proptest::prelude::*;

use crate::{b64, claims, config, issue, keys, segments};

fn payload() -> String {
    b64(serde_json::to_vec(&claims(Role::Admin)).unwrap())
}

fn header_with(alg: &str, kid: &str) -> String {
    b64(serde_json::json!({ "alg": alg, "typ": "JWT", "kid": kid }).to_string())
}

#[test]
fn alg_none_is_refused() {
    let keys = keys();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = format!("{}.{}.", header_with(alg, keys.current_kid()), payload());
        let err = Verifier::verify(&keys, &config(), &token).expect_err(alg);
        assert_eq!(err, AuthError::AlgorithmNotAllowed, "{alg}");
        assert_eq!((err.code(), err.http_status()), ("algorithm_not_allowed", 401));
    }
}

#[test]
fn alg_none_with_a_real_signature_attached_is_refused() {
    let keys = keys();
    let genuine = issue(&keys, Role::Admin);
    let [_, payload, signature] = segments(&genuine);
    let token = format!("{}.{payload}.{signature}", header_with("none", keys.current_kid()));
    assert_eq!(Verifier::verify(&keys, &config(), &token), Err(AuthError::AlgorithmNotAllowed));
}

/// The classic confusion: the attacker knows the public key and signs HS256 with it as the secret,
/// hoping the verifier feeds "the key for this kid" to whatever algorithm the header names.
#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let keys = keys();
    let public = keys.public_keys().into_iter().find(|k| k.kid() == keys.current_kid()).unwrap();
    let jwk = public.to_jwk();
    let secrets: [Vec<u8>; 2] = [public.bytes().to_vec(), jwk["x"].as_str().unwrap().as_bytes().to_vec()];
    for secret in secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some(keys.current_kid().to_owned());
            let token =
                jsonwebtoken::encode(&header, &claims(Role::Admin), &EncodingKey::from_secret(&secret).unwrap())
                    .unwrap();
            assert_eq!(Verifier::verify(&keys, &config(), &token), Err(AuthError::AlgorithmNotAllowed), "{alg:?}");
        }
    }
}

#[test]
fn every_other_algorithm_is_refused() {
    let keys = keys();
    let others = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256", "EdDSA ", "eddsa",
        "EDDSA", "Ed25519", "",
    ];
    for alg in others {
        let token = format!("{}.{}.{}", header_with(alg, keys.current_kid()), payload(), b64([7_u8; 64]));
        assert_eq!(Verifier::verify(&keys, &config(), &token), Err(AuthError::AlgorithmNotAllowed), "{alg:?}");
    }
}

#[test]
fn header_without_alg_or_with_a_non_string_alg_is_malformed() {
    let keys = keys();
    for header in [serde_json::json!({ "kid": keys.current_kid() }), serde_json::json!({ "alg": ["EdDSA"] })] {
        let token = format!("{}.{}.{}", b64(header.to_string()), payload(), b64([7_u8; 64]));
        assert_eq!(Verifier::verify(&keys, &config(), &token), Err(AuthError::MalformedToken), "{header}");
    }
}

#[test]
fn unsupported_crit_header_is_refused() {
    let keys = keys();
    let genuine = issue(&keys, Role::Admin);
    let [_, payload, signature] = segments(&genuine);
    let header = serde_json::json!({ "alg": "EdDSA", "kid": keys.current_kid(), "crit": ["exp"], "exp": 1 });
    let token = format!("{}.{payload}.{signature}", b64(header.to_string()));
    assert_eq!(Verifier::verify(&keys, &config(), &token), Err(AuthError::MalformedToken));
}

#[test]
fn garbage_is_malformed() {
    let keys = keys();
    let long = "a".repeat(lethe_auth::MAX_TOKEN_LEN + 1);
    let garbage = ["", ".", "..", "...", "a.b", "a.b.c", "a.b.c.d", "not a token", "Bearer x.y.z", &long, "ey.ey.ey"];
    for token in garbage {
        let err = Verifier::verify(&keys, &config(), token).expect_err(token);
        assert_eq!(err, AuthError::MalformedToken, "{token:?}");
        assert_eq!(err.code(), "malformed_token");
    }
}

fn arbitrary_keys() -> SigningKeys {
    static KEYS: std::sync::OnceLock<SigningKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(crate::keys).clone()
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic_nor_verify(token in any::<String>()) {
        prop_assert!(Verifier::verify(&arbitrary_keys(), &config(), &token).is_err());
    }

    #[test]
    fn arbitrary_jws_shaped_input_never_verifies(
        header in proptest::collection::vec(any::<u8>(), 0..64),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        signature in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let token = format!("{}.{}.{}", b64(header), b64(payload), b64(signature));
        prop_assert!(Verifier::verify(&arbitrary_keys(), &config(), &token).is_err());
    }

    #[test]
    fn any_alg_but_eddsa_is_not_allowed(alg in "\\PC{0,12}") {
        prop_assume!(alg != "EdDSA");
        let keys = arbitrary_keys();
        let token = format!("{}.{}.{}", header_with(&alg, keys.current_kid()), payload(), b64([1_u8; 64]));
        prop_assert_eq!(Verifier::verify(&keys, &config(), &token), Err(AuthError::AlgorithmNotAllowed));
    }

    #[test]
    fn a_genuine_token_with_any_one_byte_changed_is_refused(index in any::<prop::sample::Index>(), byte in 0x21_u8..0x7f) {
        let keys = arbitrary_keys();
        let token = issue(&keys, Role::Subject);
        let mut bytes = token.clone().into_bytes();
        let at = index.index(bytes.len());
        prop_assume!(bytes[at] != byte);
        bytes[at] = byte;
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert!(Verifier::verify(&keys, &config(), &tampered).is_err());
    }
}
