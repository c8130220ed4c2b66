//! The crate's single error type, with a stable machine code per variant.

use crate::{ModelId, StatusKind};

/// `Result` with [`RegistryError`].
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Everything that can go wrong while registering, promoting, retiring or loading a model.
///
/// Messages carry model ids, names, status kinds and fixed reasons only, never model bytes, keys,
/// membership tags or pseudonyms, so they are safe to log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The sled tree failed (IO, corruption reported by sled).
    #[error("registry storage failed: {0}")]
    Storage(#[from] sled::Error),
    /// A stored value or key could not be decoded (truncated, bad JSON, inconsistent with its index),
    /// or sealed bytes fail authentication under the right key.
    #[error("corrupt registry record: {0}")]
    Corrupt(&'static str),
    /// A stored value, or the tree's layout marker, has a format version this build cannot read.
    #[error("unsupported registry format version {version} in {what}")]
    UnsupportedVersion {
        /// Which kind of record.
        what: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// No model has this id.
    #[error("no such model: {0}")]
    NotFound(ModelId),
    /// A model id is not a UUID.
    #[error("invalid model id")]
    InvalidModelId,
    /// A model name is empty, longer than 64 bytes, or not `[a-z][a-z0-9-]*`.
    #[error("invalid model name")]
    InvalidModelName,
    /// An algorithm label is empty, longer than 64 bytes, or has control characters.
    #[error("invalid algorithm label")]
    InvalidAlgorithm,
    /// A manifest breaks a rule (window, subject count, shards, features, code version, size).
    #[error("invalid manifest: {0}")]
    InvalidManifest(&'static str),
    /// A metric has an empty, long or control-character name, or a value that is not finite.
    #[error("invalid metric: {0}")]
    InvalidMetric(&'static str),
    /// Model bytes are larger than [`crate::MAX_BLOB_LEN`].
    #[error("model bytes are too large (at most {max} bytes)")]
    BlobTooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// A canary share outside `1..=1000` per mille.
    #[error("invalid canary share {0}‰ (expected 1..=1000)")]
    InvalidCanaryShare(u16),
    /// The lifecycle does not allow this change of status.
    #[error("a {from} model cannot become {to}")]
    InvalidTransition {
        /// The model's status kind.
        from: StatusKind,
        /// The requested status kind.
        to: StatusKind,
    },
    /// Another version of the same name is already the canary.
    #[error("model {name} already has a canary ({holder})")]
    CanaryTaken {
        /// The model name.
        name: String,
        /// The current canary.
        holder: ModelId,
    },
    /// The model is retired: its status is final and its bytes and key are destroyed.
    #[error("model {0} is retired")]
    ModelRetired(ModelId),
    /// The model's data key record is gone although the model is not retired.
    #[error("the data key of model {0} is destroyed")]
    KeyDestroyed(ModelId),
    /// The key-encryption key given is not the registry's current one.
    #[error("wrong registry key-encryption key")]
    WrongKek,
    /// A rotation to the key-encryption key already in use.
    #[error("the new key-encryption key equals the current one")]
    KekUnchanged,
    /// A name has used every version number.
    #[error("model {0} has no version number left")]
    VersionsExhausted(String),
}

impl RegistryError {
    /// A stable, documented code for API bodies and metrics; never changes once published.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Storage(_) => "registry_storage",
            Self::Corrupt(_) => "registry_corrupt",
            Self::UnsupportedVersion { .. } => "registry_unsupported_version",
            Self::NotFound(_) => "model_not_found",
            Self::InvalidModelId => "invalid_model_id",
            Self::InvalidModelName => "invalid_model_name",
            Self::InvalidAlgorithm => "invalid_algorithm",
            Self::InvalidManifest(_) => "invalid_manifest",
            Self::InvalidMetric(_) => "invalid_metric",
            Self::BlobTooLarge { .. } => "model_blob_too_large",
            Self::InvalidCanaryShare(_) => "invalid_canary_share",
            Self::InvalidTransition { .. } => "invalid_transition",
            Self::CanaryTaken { .. } => "canary_taken",
            Self::ModelRetired(_) => "model_retired",
            Self::KeyDestroyed(_) => "model_key_destroyed",
            Self::WrongKek => "wrong_kek",
            Self::KekUnchanged => "kek_unchanged",
            Self::VersionsExhausted(_) => "versions_exhausted",
        }
    }
}

impl From<sled::transaction::TransactionError<RegistryError>> for RegistryError {
    fn from(e: sled::transaction::TransactionError<RegistryError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => Self::Storage(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_messages_lowercase() {
        let id = ModelId::from_bytes([7; 16]);
        let all = [
            RegistryError::Corrupt("x"),
            RegistryError::UnsupportedVersion { what: "model record", version: 9 },
            RegistryError::NotFound(id),
            RegistryError::InvalidModelId,
            RegistryError::InvalidModelName,
            RegistryError::InvalidAlgorithm,
            RegistryError::InvalidManifest("x"),
            RegistryError::InvalidMetric("x"),
            RegistryError::BlobTooLarge { max: 1 },
            RegistryError::InvalidCanaryShare(0),
            RegistryError::InvalidTransition { from: StatusKind::Live, to: StatusKind::Candidate },
            RegistryError::CanaryTaken { name: "engagement".into(), holder: id },
            RegistryError::ModelRetired(id),
            RegistryError::KeyDestroyed(id),
            RegistryError::WrongKek,
            RegistryError::KekUnchanged,
            RegistryError::VersionsExhausted("engagement".into()),
        ];
        let mut codes = std::collections::HashSet::new();
        for e in &all {
            assert!(codes.insert(e.code()), "duplicate code {}", e.code());
            let msg = e.to_string();
            assert!(msg.chars().next().is_some_and(|c| !c.is_uppercase()), "{msg}");
            assert!(!msg.ends_with('.'), "{msg}");
        }
        assert_eq!(RegistryError::ModelRetired(id).code(), "model_retired");
        assert_eq!(
            RegistryError::InvalidTransition { from: StatusKind::Live, to: StatusKind::Canary }.to_string(),
            "a live model cannot become canary"
        );
    }
}
