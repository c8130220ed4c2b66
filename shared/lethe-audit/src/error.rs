//! The crate's single error type, with a stable machine code per variant.

/// `Result` with [`AuditError`].
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// Everything that can go wrong while appending to, reading, exporting or verifying the audit chain.
///
/// Messages carry sequence numbers, key ids and fixed reasons only: never record contents, so they are
/// safe to log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Verification found the chain altered; `seq` is the first position that fails (for a JSONL export,
    /// the reason also names the line). Reasons include a hash mismatch, a `prev_hash` mismatch, a gap in
    /// the sequence, undecodable bytes, a bad or untrusted checkpoint signature, and a checkpoint whose hash
    /// is not the chain's.
    #[error("audit chain tampered at seq {seq}: {reason}")]
    Tampered {
        /// The first sequence number whose proof fails (0: before the first entry, e.g. a JSONL header).
        seq: u64,
        /// What failed there, in lowercase prose.
        reason: String,
    },
    /// A record the caller asked to append breaks a rule (an actor that is not a role name, a subject that
    /// is not a hex pseudonym, a digest that is not hex SHA-256, a detail that is not a small JSON object,
    /// a time out of range).
    #[error("invalid audit record: {0}")]
    InvalidRecord(&'static str),
    /// A key id or key bytes that cannot be used, or a key id trusted twice with different keys.
    #[error("invalid audit key: {0}")]
    InvalidKey(&'static str),
    /// The operating system's random generator failed.
    #[error("audit signing key generation failed")]
    KeyGeneration,
    /// A checkpoint was requested on a chain with no entries.
    #[error("the audit chain is empty")]
    EmptyChain,
    /// An export was asked to start beyond the end of the chain.
    #[error("sequence range is out of bounds")]
    InvalidRange,
    /// The chain holds `u64::MAX` entries.
    #[error("audit sequence numbers are exhausted")]
    SequenceExhausted,
    /// The sled tree failed.
    #[error("audit storage failed: {0}")]
    Storage(#[from] sled::Error),
    /// Reading or writing an export failed.
    #[error("audit export i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// Writing the CSV export failed.
    #[error("audit csv export failed: {0}")]
    Csv(#[from] csv::Error),
}

impl AuditError {
    /// A stable, documented code for API bodies and metrics; never changes once published.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Tampered { .. } => "audit_tampered",
            Self::InvalidRecord(_) => "invalid_audit_record",
            Self::InvalidKey(_) => "invalid_audit_key",
            Self::KeyGeneration => "audit_key_generation_failed",
            Self::EmptyChain => "audit_chain_empty",
            Self::InvalidRange => "audit_invalid_range",
            Self::SequenceExhausted => "audit_sequence_exhausted",
            Self::Storage(_) => "audit_storage",
            Self::Io(_) => "audit_io",
            Self::Csv(_) => "audit_csv",
        }
    }

    /// The position a [`AuditError::Tampered`] names, `None` for every other variant.
    #[must_use]
    pub const fn tampered_seq(&self) -> Option<u64> {
        match self {
            Self::Tampered { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    pub(crate) fn tampered(seq: u64, reason: impl Into<String>) -> Self {
        Self::Tampered { seq, reason: reason.into() }
    }
}
