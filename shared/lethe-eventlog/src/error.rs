//! The error type of the event log.

use lethe_crypto::CryptoError;
use lethe_domain::{ExpectedVersion, Pseudonym, Seq};

/// What can go wrong appending to or reading from the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("version conflict on subject {subject:?}: expected {expected:?}, stream is at {actual:?}")]
    Conflict { subject: Pseudonym, expected: ExpectedVersion, actual: Option<Seq> },
    #[error("subject {0:?} was erased; nothing more can be stored for it")]
    Erased(Pseudonym),
    #[error("the event's retention cannot be keyed: {0}")]
    Retention(String),
    #[error("the event is older than its retention allows (its key {key_id:?} is already due for destruction); it was not stored")]
    PastRetention { key_id: lethe_domain::KeyId },
    #[error("an append needs at least one event")]
    EmptyAppend,
    #[error("the data directory has layout version {found}, newer than the {supported} this version of Lethe understands; upgrade Lethe")]
    LayoutTooNew { found: u32, supported: u32 },
    #[error("no data key {key_id:?} for subject {subject:?}, which is not erased: the key store is incomplete or the log was altered")]
    MissingKey { subject: Pseudonym, key_id: lethe_domain::KeyId },
    #[error("the key store is at epoch {key_store} but the log was last written under epoch {log}: keys/ was restored from an older copy; restore the key store that belongs to this log")]
    KeyStoreBehind { key_store: u32, log: u32 },
    #[error("the key store in keys/ does not belong to this log (identity mismatch); restore the key store that belongs to this log")]
    KeyStoreMismatch,
    #[error("unusable backup: {0}")]
    BadBackup(String),
    #[error("corrupt log: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error("the log stopped accepting writes after a failed write; reopen it")]
    Poisoned,
    #[error("the log is closed")]
    Closed,
    #[error("io error on {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

impl LogError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Conflict { .. } => "version_conflict",
            Self::Erased(_) => "subject_erased",
            Self::EmptyAppend => "empty_append",
            Self::Retention(_) => "invalid_retention",
            Self::PastRetention { .. } => "past_retention",
            Self::LayoutTooNew { .. } => "layout_too_new",
            Self::Corrupt(_) => "log_corrupt",
            Self::BadBackup(_) => "bad_backup",
            Self::MissingKey { .. } => "missing_key",
            Self::KeyStoreBehind { .. } => "key_store_behind_log",
            Self::KeyStoreMismatch => "key_store_mismatch",
            Self::Crypto(CryptoError::Decrypt) => "decrypt_failed",
            Self::Crypto(_) => "key_store_error",
            Self::Storage(_) | Self::Io { .. } => "storage_error",
            Self::Poisoned => "log_poisoned",
            Self::Closed => "log_closed",
        }
    }
}

/// Result alias of the event log.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
