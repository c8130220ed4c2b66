//! The crate's single error type, with a stable machine code per variant.

/// `Result` with [`FeatureError`].
pub type Result<T, E = FeatureError> = std::result::Result<T, E>;

/// Everything that can go wrong while building, sealing or restoring feature views, or while
/// upserting catalog items.
///
/// Messages carry fixed reasons, lengths and positions only, never payload contents or
/// pseudonyms, so they are safe to log. A malformed *event* is not an error: [`crate::Projector::apply`]
/// skips it and counts it in [`crate::ProjectionStats`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeatureError {
    /// The policies do not declare the purpose that gates personalization.
    #[error("the policies do not declare the purpose `{0}`")]
    UnknownPurpose(String),
    /// A catalog body is not JSON of the expected shape.
    #[error("invalid item json: {0}")]
    InvalidJson(String),
    /// A catalog item breaks a rule (id length, category length, text length, feature count, a
    /// number that is not finite).
    #[error("invalid item: {0}")]
    InvalidItem(&'static str),
    /// An interned vocabulary (categories, items, locations, segments) has no id left.
    #[error("the {0} vocabulary is full")]
    VocabularyFull(&'static str),
    /// A checkpoint is shorter than its header.
    #[error("checkpoint truncated: {len} bytes")]
    CheckpointTruncated {
        /// The length received.
        len: usize,
    },
    /// The bytes are not a feature checkpoint.
    #[error("not a feature checkpoint")]
    CheckpointFormat,
    /// A checkpoint (or snapshot) of a format version this build cannot read.
    #[error("unsupported feature checkpoint version {0}")]
    CheckpointVersion(u16),
    /// The checkpoint does not open under the key: a wrong key, or altered bytes (header or body).
    #[error("checkpoint authentication failed (wrong key or altered bytes)")]
    CheckpointTampered,
    /// An authenticated snapshot does not decode: written by a different build or corrupted before
    /// sealing.
    #[error("snapshot does not decode: {0}")]
    SnapshotCorrupt(&'static str),
    /// Reading the event log failed.
    #[error("reading the event log failed: {0}")]
    Log(#[from] lethe_eventlog::LogError),
}

impl FeatureError {
    /// A stable, documented code for API bodies and metrics; never changes once published.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::UnknownPurpose(_) => "unknown_purpose",
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidItem(_) => "invalid_item",
            Self::VocabularyFull(_) => "vocabulary_full",
            Self::CheckpointTruncated { .. } => "checkpoint_truncated",
            Self::CheckpointFormat => "checkpoint_format",
            Self::CheckpointVersion(_) => "checkpoint_version",
            Self::CheckpointTampered => "checkpoint_tampered",
            Self::SnapshotCorrupt(_) => "snapshot_corrupt",
            Self::Log(_) => "log_read",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let all = [
            FeatureError::UnknownPurpose("x".into()),
            FeatureError::InvalidJson("x".into()),
            FeatureError::InvalidItem("x"),
            FeatureError::VocabularyFull("x"),
            FeatureError::CheckpointTruncated { len: 0 },
            FeatureError::CheckpointFormat,
            FeatureError::CheckpointVersion(9),
            FeatureError::CheckpointTampered,
            FeatureError::SnapshotCorrupt("x"),
        ];
        let mut codes: Vec<_> = all.iter().map(FeatureError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
