//! Lethe's keys and ciphers: the master secret, the key-encryption keys in epochs, per-subject data
//! keys, keyed pseudonyms and the AEAD that seals every payload. Nothing here knows about the log.
//!
//! The key hierarchy (see ARCHITECTURE.md, "Keys and erasure"):
//! master secret → epoch key-encryption keys (files under `keys/`, destroyed on rotation)
//! → per-subject data keys (wrapped by the current epoch's KEK, stored by the log) → payloads.
//! The pseudonym secret is wrapped by the master secret and kept in its own file.
#![forbid(unsafe_code)]

mod aead;
mod error;
mod keyring;
mod master;
mod shred;

pub use aead::{DataKey, Nonce, SecretBytes, NONCE_LEN, TAG_LEN};
pub use error::{CryptoError, Result};
pub use keyring::{Epoch, Keyring, RotationPlan, WrappedKey, KEYS_DIR, WRAPPED_KEY_LEN, WRAPPED_KEY_MAGIC};
pub use master::{KdfParams, MasterSource, DEV_KEY_FILE};
pub use shred::{destroy_file, write_atomic};

/// Fills a buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut out = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}
