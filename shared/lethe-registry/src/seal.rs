//! Sealing model bytes: a random AES-256-GCM data key per model, the data key wrapped under the
//! caller's registry key-encryption key (KEK), and the KEK's fingerprint. Cipher work goes through
//! `lethe-crypto`, the only crate that touches cipher primitives.
//!
//! Formats (version 1):
//! - wrapped data key, 77 bytes: `1 | KEK fingerprint (16) | nonce (12) | AES-256-GCM(KEK, data key) (32 + 16)`,
//!   associated data `"lethe-registry/data-key" | 1 | model id (16)`;
//! - sealed model bytes: `1 | nonce (12) | AES-256-GCM(data key, model bytes) (len + 16)`, associated
//!   data `"lethe-registry/blob" | 1 | model id (16)`;
//! - KEK fingerprint: the first 16 bytes of HMAC-SHA256(KEK, `"lethe-registry/kek-fingerprint/v1"`).
//!
//! Nonces are random: a data key seals exactly one plaintext, and a KEK wraps one key per model and
//! rotation, far below the 2^32 random-nonce bound.

use hmac::{Hmac, KeyInit, Mac};
use lethe_crypto::{DataKey, SecretBytes, NONCE_LEN, TAG_LEN};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{ModelId, RegistryError, Result};

/// Format byte of wrapped data keys and sealed blobs written by this build.
pub(crate) const FORMAT: u8 = 1;
/// Length of a KEK fingerprint.
pub(crate) const FINGERPRINT_LEN: usize = 16;
/// Length of a wrapped data key record.
pub(crate) const WRAPPED_LEN: usize = 1 + FINGERPRINT_LEN + NONCE_LEN + 32 + TAG_LEN;

const KEY_AAD: &[u8] = b"lethe-registry/data-key";
const BLOB_AAD: &[u8] = b"lethe-registry/blob";
const FINGERPRINT_LABEL: &[u8] = b"lethe-registry/kek-fingerprint/v1";

/// Identifies a KEK without revealing it.
pub(crate) type Fingerprint = [u8; FINGERPRINT_LEN];

pub(crate) fn fingerprint(kek: &SecretBytes) -> Fingerprint {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(kek.expose()).expect("HMAC takes any key length");
    mac.update(FINGERPRINT_LABEL);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; FINGERPRINT_LEN];
    out.copy_from_slice(&full[..FINGERPRINT_LEN]);
    out
}

fn aad(label: &[u8], id: ModelId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(label.len() + 17);
    aad.extend_from_slice(label);
    aad.push(FORMAT);
    aad.extend_from_slice(id.as_bytes());
    aad
}

/// A decoded wrapped-key record.
pub(crate) struct Wrapped<'a> {
    pub(crate) fingerprint: Fingerprint,
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

/// Wraps a data key under the KEK.
pub(crate) fn wrap(kek: &SecretBytes, id: ModelId, key: &SecretBytes) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = lethe_crypto::random_bytes();
    let sealed = DataKey::new(kek).seal(&nonce, &aad(KEY_AAD, id), key.expose());
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.push(FORMAT);
    out.extend_from_slice(&fingerprint(kek));
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    debug_assert_eq!(out.len(), WRAPPED_LEN);
    out
}

/// Parses a wrapped-key record without opening it.
///
/// # Errors
/// Unknown format byte, or a length other than [`WRAPPED_LEN`].
pub(crate) fn parse_wrapped(bytes: &[u8]) -> Result<Wrapped<'_>> {
    let (&format, rest) = bytes.split_first().ok_or(RegistryError::Corrupt("empty data key record"))?;
    if format != FORMAT {
        return Err(RegistryError::UnsupportedVersion { what: "data key record", version: format });
    }
    if bytes.len() != WRAPPED_LEN {
        return Err(RegistryError::Corrupt("data key record has the wrong length"));
    }
    let mut fingerprint = [0u8; FINGERPRINT_LEN];
    fingerprint.copy_from_slice(&rest[..FINGERPRINT_LEN]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&rest[FINGERPRINT_LEN..FINGERPRINT_LEN + NONCE_LEN]);
    Ok(Wrapped { fingerprint, nonce, ciphertext: &rest[FINGERPRINT_LEN + NONCE_LEN..] })
}

/// Opens a wrapped data key.
///
/// # Errors
/// [`RegistryError::WrongKek`] when the record was wrapped under another KEK; `Corrupt` when it
/// fails authentication under the right one.
pub(crate) fn unwrap(kek: &SecretBytes, id: ModelId, w: &Wrapped<'_>) -> Result<SecretBytes> {
    if w.fingerprint != fingerprint(kek) {
        return Err(RegistryError::WrongKek);
    }
    let plain = Zeroizing::new(
        DataKey::new(kek)
            .open(&w.nonce, &aad(KEY_AAD, id), w.ciphertext)
            .map_err(|_| RegistryError::Corrupt("data key record fails authentication"))?,
    );
    let bytes: [u8; 32] =
        plain.as_slice().try_into().map_err(|_| RegistryError::Corrupt("data key has the wrong length"))?;
    Ok(SecretBytes::new(bytes))
}

/// Seals model bytes under a data key; returns the stored value and its digest.
pub(crate) fn seal_blob(key: &SecretBytes, id: ModelId, plaintext: &[u8]) -> (Vec<u8>, String) {
    let nonce: [u8; NONCE_LEN] = lethe_crypto::random_bytes();
    let sealed = DataKey::new(key).seal(&nonce, &aad(BLOB_AAD, id), plaintext);
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(FORMAT);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    let digest = digest(&out);
    (out, digest)
}

/// SHA-256 of a stored sealed value, lowercase hex.
pub(crate) fn digest(sealed: &[u8]) -> String {
    hex::encode(Sha256::digest(sealed))
}

/// Opens a stored sealed value.
///
/// # Errors
/// Unknown format byte; `Corrupt` when it is truncated or fails authentication.
pub(crate) fn open_blob(key: &SecretBytes, id: ModelId, stored: &[u8]) -> Result<Vec<u8>> {
    let (&format, rest) = stored.split_first().ok_or(RegistryError::Corrupt("empty sealed blob"))?;
    if format != FORMAT {
        return Err(RegistryError::UnsupportedVersion { what: "sealed blob", version: format });
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(RegistryError::Corrupt("sealed blob is truncated"));
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    DataKey::new(key)
        .open(&n, &aad(BLOB_AAD, id), ciphertext)
        .map_err(|_| RegistryError::Corrupt("sealed blob fails authentication"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_and_seal_bind_the_model_id() {
        let kek = SecretBytes::new([1; 32]);
        let (a, b) = (ModelId::from_bytes([1; 16]), ModelId::from_bytes([2; 16]));
        let key = SecretBytes::random();
        let w = wrap(&kek, a, &key);
        assert_eq!(w.len(), WRAPPED_LEN);
        let parsed = parse_wrapped(&w).unwrap();
        assert_eq!(unwrap(&kek, a, &parsed).unwrap(), key);
        assert_eq!(unwrap(&kek, b, &parsed).unwrap_err().code(), "registry_corrupt");
        assert_eq!(unwrap(&SecretBytes::new([2; 32]), a, &parsed).unwrap_err().code(), "wrong_kek");

        let (sealed, d) = seal_blob(&key, a, b"model bytes");
        assert_eq!(d, digest(&sealed));
        assert_eq!(open_blob(&key, a, &sealed).unwrap(), b"model bytes");
        assert!(open_blob(&key, b, &sealed).is_err());
        assert!(open_blob(&key, a, &sealed[..10]).is_err());
        let mut v2 = sealed.clone();
        v2[0] = 2;
        assert_eq!(open_blob(&key, a, &v2).unwrap_err().code(), "registry_unsupported_version");
    }
}
