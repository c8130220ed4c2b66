//! Black-box tests of `lethe-auth` (R-DSR-4: a subject's token reaches only that subject; JWT
//! algorithms allow-listed; `aud`, `iss`, `exp` checked). One test binary, one module per concern.

mod attacks;
mod authorization;
mod keys;
mod principal;
mod rejection;
mod roundtrip;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lethe_auth::{AuthConfig, Claims, Issuer, Role, SigningKeys};
use lethe_domain::SubjectId;

/// A zero-leeway config, so time tests are exact.
pub fn config() -> AuthConfig {
    AuthConfig { leeway_secs: 0, ..AuthConfig::default() }
}

pub fn keys() -> SigningKeys {
    SigningKeys::generate().expect("key generation")
}

pub fn subject(raw: &str) -> SubjectId {
    SubjectId::parse(raw).expect("valid subject id")
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A well-formed token for `role`, with the extra claims that role requires.
pub fn issue(keys: &SigningKeys, role: Role) -> String {
    let alice = subject("alice");
    let (subject_id, site, origins) = role_extras(role, &alice);
    Issuer::issue(keys, &config(), role, Duration::from_secs(600), subject_id, site, &origins).expect("issue")
}

fn role_extras(role: Role, alice: &SubjectId) -> (Option<&SubjectId>, Option<&'static str>, Vec<String>) {
    match role {
        Role::Subject => (Some(alice), None, Vec::new()),
        Role::Site => (None, Some("shop-1"), vec!["https://shop.example".to_owned()]),
        Role::Cms | Role::Dpo | Role::Admin => (None, None, Vec::new()),
    }
}

/// Valid claims for `role`, valid from a minute ago for ten minutes; tests then bend one field.
pub fn claims(role: Role) -> Claims {
    let t = now();
    Claims {
        iss: "lethe".to_owned(),
        aud: "lethe-api".to_owned(),
        sub: role.as_str().to_owned(),
        role,
        exp: t + 600,
        nbf: t - 60,
        iat: t - 60,
        jti: "00000000-0000-4000-8000-000000000000".to_owned(),
        subject_id: (role == Role::Subject).then(|| "alice".to_owned()),
        site: (role == Role::Site).then(|| "shop-1".to_owned()),
        origins: Vec::new(),
    }
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

pub fn segments(token: &str) -> [String; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS compact token has three segments");
    [parts[0].to_owned(), parts[1].to_owned(), parts[2].to_owned()]
}

/// The current key's PKCS#8 document, recovered the way an attacker holding the key store would:
/// lets tests sign tokens with the *right* key but a header or claims `Issuer` would never produce.
pub fn raw_encoding_key(keys: &SigningKeys) -> EncodingKey {
    let store: serde_json::Value = serde_json::from_str(&keys.to_json().expect("to_json")).expect("json");
    let current = store["current"].as_str().expect("current");
    let entry = store["keys"].as_array().expect("keys").iter().find(|k| k["kid"] == current).expect("entry");
    let seed: [u8; 32] = unb64(entry["secret"].as_str().expect("secret")).try_into().expect("32 bytes");
    let der = ed25519_dalek::SigningKey::from_bytes(&seed).to_pkcs8_der().expect("pkcs8");
    EncodingKey::from_ed_der(der.as_bytes())
}

/// Signs arbitrary JSON claims with the current key, with the given `kid` (or none).
pub fn sign_raw(keys: &SigningKeys, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &raw_encoding_key(keys)).expect("encode")
}
