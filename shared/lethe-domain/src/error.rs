//! The one error type of the domain crate: values that fail to parse.

/// A value from outside Lethe that does not parse into a domain type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("subject id must be 1 to {max} bytes of printable text")]
    InvalidSubjectId { max: usize },
    #[error("event type `{0}` must be 1 to 64 characters of a-z, 0-9, `.`, `_`, `-` or `:`")]
    InvalidEventType(String),
    #[error("purpose `{0}` must be 1 to 64 characters of a-z, 0-9, `_` or `-`")]
    InvalidPurpose(String),
    #[error("pseudonym must be 64 hexadecimal characters")]
    InvalidPseudonym,
    #[error("retention of {0} days cannot be keyed: it must be 1 to 32767 days, for a time from 1970 on")]
    InvalidRetention(u16),
    #[error("schema version must be at least 1")]
    InvalidSchemaVersion,
    #[error("no upcaster from `{event_type}` version {from} to version {to}")]
    MissingUpcaster { event_type: String, from: u16, to: u16 },
    #[error("payload of `{event_type}` version {version} is not valid JSON: {reason}")]
    InvalidPayload { event_type: String, version: u16, reason: String },
}

/// Result alias of the domain crate.
pub type Result<T, E = DomainError> = std::result::Result<T, E>;
