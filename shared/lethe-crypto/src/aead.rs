//! AES-256-GCM sealing with explicit nonces and associated data, and secret byte arrays that are
//! zeroed on drop and never printed.

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CryptoError, Result};

/// Length of an AES-GCM nonce in bytes.
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag in bytes.
pub const TAG_LEN: usize = 16;

/// A 96-bit nonce. Callers decide how it is made unique under a key; see the log's nonce scheme.
pub type Nonce = [u8; NONCE_LEN];

/// 32 secret bytes: zeroed on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes([u8; 32]);

impl SecretBytes {
    /// Wraps key material.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Fresh random key material from the OS CSPRNG.
    pub fn random() -> Self {
        Self(crate::random_bytes())
    }

    /// The secret bytes. Callers must not copy them anywhere that outlives the call.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// An AES-256-GCM key with its expanded schedule, ready to seal and open.
///
/// The schedule (over 600 bytes) is shared: a clone copies a pointer (and counts it). It is zeroed on
/// drop of the last clone.
#[derive(Clone)]
pub struct DataKey {
    cipher: Arc<Aes256Gcm>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// Builds a cipher from key material.
    pub fn new(secret: &SecretBytes) -> Self {
        let cipher = Aes256Gcm::new_from_slice(secret.expose()).expect("32-byte key is valid for AES-256");
        Self { cipher: Arc::new(cipher) }
    }

    /// Encrypts `plaintext`, authenticating `aad`; returns ciphertext followed by the tag.
    pub fn seal(&self, nonce: &Nonce, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.cipher
            .encrypt(&(*nonce).into(), Payload { msg: plaintext, aad })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail")
    }

    /// Decrypts and authenticates.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] when the key, nonce, associated data or ciphertext does not match.
    pub fn open(&self, nonce: &Nonce, aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>> {
        self.cipher.decrypt(&(*nonce).into(), Payload { msg: ciphertext, aad }).map_err(|_| CryptoError::Decrypt)
    }

    /// [`DataKey::open`] in the ciphertext's own buffer: it becomes the plaintext (no copy).
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] as [`DataKey::open`]; the buffer's content is then unspecified.
    pub fn open_in_place(&self, nonce: &Nonce, aad: &[u8], mut sealed: Vec<u8>) -> Result<Vec<u8>> {
        self.cipher.decrypt_in_place(&(*nonce).into(), aad, &mut sealed).map_err(|_| CryptoError::Decrypt)?;
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let k = DataKey::new(&SecretBytes::random());
        let n = [7u8; 12];
        let ct = k.seal(&n, b"aad-1", b"hello");
        assert_eq!(k.open(&n, b"aad-1", &ct).unwrap(), b"hello");
        assert!(k.open(&n, b"aad-2", &ct).is_err());
        assert!(k.open(&[8u8; 12], b"aad-1", &ct).is_err());
        let other = DataKey::new(&SecretBytes::random());
        assert!(other.open(&n, b"aad-1", &ct).is_err());
        assert_eq!(k.open_in_place(&n, b"aad-1", ct.clone()).unwrap(), b"hello");
        assert!(k.open_in_place(&n, b"aad-2", ct.clone()).is_err());
        let mut flipped = ct;
        flipped[0] ^= 1;
        assert!(k.open_in_place(&n, b"aad-1", flipped).is_err());
    }

    /// A clone shares the schedule.
    #[test]
    fn clones_share_the_schedule() {
        assert!(std::mem::size_of::<DataKey>() <= std::mem::size_of::<usize>());
        let k = DataKey::new(&SecretBytes::random());
        let c = k.clone();
        assert!(Arc::ptr_eq(&k.cipher, &c.cipher));
        assert_eq!(c.open(&[1; 12], b"", &k.seal(&[1; 12], b"", b"x")).unwrap(), b"x");
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", SecretBytes::new([1; 32])), "SecretBytes(<redacted>)");
    }
}
