//! The crate's single error type, with a stable machine code per variant.

/// `Result` with [`OutboxError`].
pub type Result<T, E = OutboxError> = std::result::Result<T, E>;

/// Everything that can go wrong while configuring the outbox, storing messages, delivering them, or
/// verifying a signature.
///
/// Messages never carry message bodies, acknowledgements, secrets or endpoint URLs, so they are safe to log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The sled tree failed (IO, corruption reported by sled).
    #[error("outbox storage failed: {0}")]
    Storage(#[from] sled::Error),
    /// A stored record could not be decoded (truncated bytes, bad JSON, bad key).
    #[error("corrupt outbox record: {0}")]
    Corrupt(&'static str),
    /// A stored record, or the tree's layout marker, has a version this build cannot read.
    #[error("unsupported outbox format version {0}")]
    UnsupportedVersion(u8),
    /// A recipient id is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid recipient id")]
    InvalidRecipientId,
    /// A recipient's display name is empty, too long, or has control characters.
    #[error("invalid recipient name")]
    InvalidRecipientName,
    /// An endpoint is not an absolute `http` or `https` URL with a host.
    #[error("invalid recipient endpoint: {0}")]
    InvalidEndpoint(&'static str),
    /// A webhook secret is shorter than the minimum length.
    #[error("webhook secret is too short (at least {min} bytes)")]
    WeakSecret {
        /// The minimum length in bytes.
        min: usize,
    },
    /// Two recipients share an id.
    #[error("duplicate recipient id")]
    DuplicateRecipient,
    /// A message names a recipient that is not configured.
    #[error("unknown recipient")]
    UnknownRecipient,
    /// A topic is empty, too long, or has characters outside `[a-z0-9._-]`.
    #[error("invalid topic")]
    InvalidTopic,
    /// A message body is larger than the limit once encoded as JSON.
    #[error("message body is too large (at most {max} bytes)")]
    BodyTooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// A retry policy breaks a rule (zero attempts, base above max, jitter outside `0..=1`).
    #[error("invalid retry policy: {0}")]
    InvalidRetryPolicy(&'static str),
    /// A delivery setting breaks a rule (zero concurrency, zero timeout).
    #[error("invalid delivery config: {0}")]
    InvalidDeliveryConfig(&'static str),
    /// No message has this id.
    #[error("no such message")]
    NotFound,
    /// A message id is not a UUID.
    #[error("invalid message id")]
    InvalidMessageId,
    /// A value could not be encoded as JSON.
    #[error("json encoding failed")]
    Encode,
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("http client could not be built")]
    HttpClient,
    /// A background task failed to complete (panicked or was cancelled).
    #[error("background task failed")]
    Task,
    /// A `Lethe-Signature` header is not `t=<secs>,v1=<hex>[,v1=<hex>…]`.
    #[error("malformed signature header")]
    MalformedSignature,
    /// No `v1` signature in the header matches the body under the secret.
    #[error("signature does not match")]
    SignatureMismatch,
    /// The signature's timestamp lies outside the tolerance around now.
    #[error("signature timestamp outside tolerance")]
    SignatureExpired,
}

impl OutboxError {
    /// A stable, documented code for API bodies and metrics; never changes once published.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Storage(_) => "outbox_storage",
            Self::Corrupt(_) => "outbox_corrupt",
            Self::UnsupportedVersion(_) => "outbox_unsupported_version",
            Self::InvalidRecipientId => "invalid_recipient_id",
            Self::InvalidRecipientName => "invalid_recipient_name",
            Self::InvalidEndpoint(_) => "invalid_endpoint",
            Self::WeakSecret { .. } => "weak_webhook_secret",
            Self::DuplicateRecipient => "duplicate_recipient",
            Self::UnknownRecipient => "unknown_recipient",
            Self::InvalidTopic => "invalid_topic",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::InvalidRetryPolicy(_) => "invalid_retry_policy",
            Self::InvalidDeliveryConfig(_) => "invalid_delivery_config",
            Self::NotFound => "message_not_found",
            Self::InvalidMessageId => "invalid_message_id",
            Self::Encode => "json_encode_failed",
            Self::HttpClient => "http_client_failed",
            Self::Task => "background_task_failed",
            Self::MalformedSignature => "malformed_signature",
            Self::SignatureMismatch => "signature_mismatch",
            Self::SignatureExpired => "signature_expired",
        }
    }
}

impl From<sled::transaction::TransactionError<OutboxError>> for OutboxError {
    fn from(e: sled::transaction::TransactionError<OutboxError>) -> Self {
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
    fn codes_are_stable_and_messages_lowercase() {
        let all = [
            OutboxError::Corrupt("x"),
            OutboxError::UnsupportedVersion(9),
            OutboxError::InvalidRecipientId,
            OutboxError::InvalidRecipientName,
            OutboxError::InvalidEndpoint("x"),
            OutboxError::WeakSecret { min: 16 },
            OutboxError::DuplicateRecipient,
            OutboxError::UnknownRecipient,
            OutboxError::InvalidTopic,
            OutboxError::BodyTooLarge { max: 1 },
            OutboxError::InvalidRetryPolicy("x"),
            OutboxError::InvalidDeliveryConfig("x"),
            OutboxError::NotFound,
            OutboxError::InvalidMessageId,
            OutboxError::Encode,
            OutboxError::HttpClient,
            OutboxError::Task,
            OutboxError::MalformedSignature,
            OutboxError::SignatureMismatch,
            OutboxError::SignatureExpired,
        ];
        let mut codes = std::collections::HashSet::new();
        for e in &all {
            assert!(codes.insert(e.code()), "duplicate code {}", e.code());
            let msg = e.to_string();
            assert!(msg.chars().next().is_some_and(|c| !c.is_uppercase()), "{msg}");
            assert!(!msg.ends_with('.'), "{msg}");
        }
        assert_eq!(OutboxError::SignatureMismatch.code(), "signature_mismatch");
    }
}
