//! The Ed25519 signing key set: one current key signs, older keys keep verifying until retired;
//! persisted as versioned JSON that the caller encrypts at rest.
//!
//! How the keys reach jsonwebtoken 12 (`rust_crypto` backend), found by reading its source:
//! - `EncodingKey::from_ed_der` wants a **PKCS#8** document (it calls
//!   `ed25519_dalek::SigningKey::from_pkcs8_der`), so the seed is wrapped with
//!   `ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der` (features `alloc` + `pkcs8`).
//! - `DecodingKey::from_ed_der` does **not** take an SPKI document: the verifier slices the first
//!   32 bytes as the raw public key (and panics on shorter input). We therefore build decoding keys
//!   with `DecodingKey::from_ed_components(x)`, `x` being the base64url raw public key as in a JWK.
//! - Seeds come from the OS generator (`rand::rngs::OsRng`, the workspace's rand 0.8) and go through
//!   `SigningKey::from_bytes`; ed25519-dalek 3's own `generate` wants a `rand_core` 0.10 generator.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{AuthError, Result};

/// The only persisted key-set format written; `from_json` refuses any other.
const STORE_VERSION: u32 = 1;
/// Longest `kid` accepted from a persisted key set.
const MAX_KID_LEN: usize = 128;

/// One Ed25519 key pair with the forms jsonwebtoken needs, prepared once.
#[derive(Clone)]
struct KeyPair {
    signing: ed25519_dalek::SigningKey,
    encoding: EncodingKey,
    decoding: DecodingKey,
    created_at: u64,
}

impl KeyPair {
    fn generate() -> Result<Self> {
        let mut seed = Zeroizing::new([0_u8; ed25519_dalek::SECRET_KEY_LENGTH]);
        rand::rngs::OsRng.try_fill_bytes(seed.as_mut()).map_err(|_| AuthError::KeyGeneration)?;
        Self::from_seed(&seed, crate::now_unix())
    }

    fn from_seed(seed: &[u8; ed25519_dalek::SECRET_KEY_LENGTH], created_at: u64) -> Result<Self> {
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        let pkcs8 = signing.to_pkcs8_der().map_err(|_| AuthError::KeyGeneration)?;
        let encoding = EncodingKey::from_ed_der(pkcs8.as_bytes());
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        let decoding = DecodingKey::from_ed_components(&x).map_err(|_| AuthError::KeyGeneration)?;
        Ok(Self { signing, encoding, decoding, created_at })
    }

    fn public_bytes(&self) -> [u8; ed25519_dalek::PUBLIC_KEY_LENGTH] {
        self.signing.verifying_key().to_bytes()
    }
}

/// A public verification key, for publishing as a JWK (`kty: OKP`, `crv: Ed25519`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    kid: String,
    bytes: [u8; ed25519_dalek::PUBLIC_KEY_LENGTH],
}

impl PublicKey {
    /// The key id put in token headers.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte Ed25519 public key.
    #[must_use]
    pub fn bytes(&self) -> &[u8; ed25519_dalek::PUBLIC_KEY_LENGTH] {
        &self.bytes
    }

    /// The public key as a JWK (RFC 8037), ready for a JWKS document.
    #[must_use]
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.bytes),
        })
    }
}

/// The token signing keys, by `kid`. Exactly one is current (signs new tokens); every key in the
/// set verifies tokens until [`SigningKeys::retire`] removes it.
///
/// `Debug` prints key ids only; private key bytes leave this type only through
/// [`SigningKeys::to_json`].
#[derive(Clone)]
pub struct SigningKeys {
    current_kid: String,
    current: KeyPair,
    /// Keys that no longer sign but still verify; never contains `current_kid`.
    previous: BTreeMap<String, KeyPair>,
}

impl SigningKeys {
    /// A new set holding one freshly generated key, which is current.
    ///
    /// # Errors
    /// [`AuthError::KeyGeneration`] when the operating system's random generator fails.
    pub fn generate() -> Result<Self> {
        Ok(Self { current_kid: new_kid(), current: KeyPair::generate()?, previous: BTreeMap::new() })
    }

    /// Generates a new key and makes it current; the previous keys keep verifying. Returns the new `kid`.
    ///
    /// # Errors
    /// [`AuthError::KeyGeneration`] when the operating system's random generator fails.
    pub fn rotate(&mut self) -> Result<String> {
        let pair = KeyPair::generate()?;
        let kid = new_kid();
        debug_assert!(kid != self.current_kid && !self.previous.contains_key(&kid), "uuid v4 key ids collided");
        let old_kid = std::mem::replace(&mut self.current_kid, kid.clone());
        let old = std::mem::replace(&mut self.current, pair);
        self.previous.insert(old_kid, old);
        Ok(kid)
    }

    /// Removes a key: tokens it signed stop verifying at once.
    ///
    /// # Errors
    /// [`AuthError::CannotRetireCurrentKey`] for the current key (rotate first), and
    /// [`AuthError::NoSuchKey`] when `kid` is not in the set.
    pub fn retire(&mut self, kid: &str) -> Result<()> {
        if kid == self.current_kid {
            return Err(AuthError::CannotRetireCurrentKey);
        }
        match self.previous.remove(kid) {
            Some(_) => Ok(()),
            None => Err(AuthError::NoSuchKey),
        }
    }

    /// The `kid` of the key that signs new tokens.
    #[must_use]
    pub fn current_kid(&self) -> &str {
        &self.current_kid
    }

    /// Every `kid` in the set: the current one first, then the others sorted.
    pub fn kids(&self) -> impl Iterator<Item = &str> + '_ {
        self.pairs().map(|(kid, _)| kid)
    }

    /// The public halves of every key (current first), for a JWKS endpoint or an external verifier.
    #[must_use]
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.pairs().map(|(kid, pair)| PublicKey { kid: kid.to_owned(), bytes: pair.public_bytes() }).collect()
    }

    /// Serializes the whole set, private keys included, as versioned JSON. The result is secret:
    /// encrypt it before it touches a disk. The buffer is wiped when dropped.
    ///
    /// # Errors
    /// [`AuthError::InvalidKeyStore`] if serialization fails (it does not for a well-formed set).
    pub fn to_json(&self) -> Result<Zeroizing<String>> {
        let store = StoreV1 {
            version: STORE_VERSION,
            current: self.current_kid.clone(),
            keys: self
                .pairs()
                .map(|(kid, pair)| StoredKey {
                    kid: kid.to_owned(),
                    created_at: pair.created_at,
                    public: URL_SAFE_NO_PAD.encode(pair.public_bytes()),
                    secret: URL_SAFE_NO_PAD.encode(pair.signing.as_bytes()),
                })
                .collect(),
        };
        serde_json::to_string(&store).map(Zeroizing::new).map_err(|_| AuthError::InvalidKeyStore("cannot serialize"))
    }

    /// Reads a set written by [`SigningKeys::to_json`].
    ///
    /// # Errors
    /// [`AuthError::InvalidKeyStore`] when the JSON does not parse, names an unknown version, repeats a
    /// `kid`, lacks the current `kid`, or holds a key whose bytes are not a 32-byte Ed25519 seed
    /// matching its stored public key.
    pub fn from_json(json: &str) -> Result<Self> {
        let store: StoreV1 = serde_json::from_str(json).map_err(|_| AuthError::InvalidKeyStore("not a key set"))?;
        if store.version != STORE_VERSION {
            return Err(AuthError::InvalidKeyStore("unsupported version"));
        }
        let mut current = None;
        let mut previous = BTreeMap::new();
        for stored in &store.keys {
            if stored.kid.is_empty() || stored.kid.len() > MAX_KID_LEN {
                return Err(AuthError::InvalidKeyStore("bad kid"));
            }
            let pair = stored.to_pair()?;
            let duplicate = if stored.kid == store.current {
                current.replace(pair).is_some()
            } else {
                previous.insert(stored.kid.clone(), pair).is_some()
            };
            if duplicate {
                return Err(AuthError::InvalidKeyStore("duplicate kid"));
            }
        }
        let current = current.ok_or(AuthError::InvalidKeyStore("current kid not in set"))?;
        Ok(Self { current_kid: store.current.clone(), current, previous })
    }

    pub(crate) fn current_encoding(&self) -> (&str, &EncodingKey) {
        (&self.current_kid, &self.current.encoding)
    }

    pub(crate) fn decoding(&self, kid: &str) -> Option<&DecodingKey> {
        if kid == self.current_kid {
            Some(&self.current.decoding)
        } else {
            self.previous.get(kid).map(|pair| &pair.decoding)
        }
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &KeyPair)> + '_ {
        std::iter::once((self.current_kid.as_str(), &self.current))
            .chain(self.previous.iter().map(|(kid, pair)| (kid.as_str(), pair)))
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("current", &self.current_kid)
            .field("previous", &self.previous.keys())
            .finish_non_exhaustive()
    }
}

fn new_kid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Persisted key set, version 1.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct StoreV1 {
    version: u32,
    current: String,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct StoredKey {
    kid: String,
    created_at: u64,
    /// base64url raw Ed25519 public key, checked against the secret on load.
    public: String,
    /// base64url 32-byte Ed25519 seed.
    secret: String,
}

impl StoredKey {
    fn to_pair(&self) -> Result<KeyPair> {
        let seed =
            Zeroizing::new(URL_SAFE_NO_PAD.decode(&self.secret).map_err(|_| AuthError::InvalidKeyStore("bad secret"))?);
        let seed: &[u8; ed25519_dalek::SECRET_KEY_LENGTH] =
            seed.as_slice().try_into().map_err(|_| AuthError::InvalidKeyStore("bad secret length"))?;
        let pair = KeyPair::from_seed(seed, self.created_at)?;
        if URL_SAFE_NO_PAD.encode(pair.public_bytes()) != self.public {
            return Err(AuthError::InvalidKeyStore("public key does not match secret"));
        }
        Ok(pair)
    }
}
