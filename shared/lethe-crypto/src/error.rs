//! The error type of the crypto crate.

use std::path::PathBuf;

/// What can go wrong with keys and ciphers.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("decryption failed: wrong key, or the ciphertext or its envelope was altered")]
    Decrypt,
    #[error("the master secret does not open the key store in {0}")]
    WrongMasterSecret(PathBuf),
    #[error("invalid master secret: {0}")]
    InvalidMasterSecret(String),
    #[error("the key store in {dir} needs a passphrase (set LETHE_PASSPHRASE)")]
    PassphraseRequired { dir: PathBuf },
    #[error("key-encryption key of epoch {0} is missing (destroyed by a rotation, or the key store is incomplete)")]
    MissingEpoch(u32),
    #[error("malformed key material in {path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("malformed wrapped key: {0}")]
    MalformedWrappedKey(&'static str),
    #[error("key derivation failed: {0}")]
    Kdf(String),
    #[error("io error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl CryptoError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// Result alias of the crypto crate.
pub type Result<T, E = CryptoError> = std::result::Result<T, E>;
