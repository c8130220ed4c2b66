//! Messages: what is sent to whom, the history of delivery attempts, the delivery state, and the signed
//! envelope that goes on the wire.

use std::fmt;
use std::str::FromStr;

use lethe_domain::UtcMicros;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{OutboxError, Result};

/// Largest message body accepted by `enqueue`, in bytes of JSON.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest acknowledgement body kept from a recipient's 2xx answer, in bytes; a larger one is dropped.
pub const MAX_ACK_BYTES: usize = 16 * 1024;
/// Longest error text or response excerpt kept in an [`Attempt`], in characters.
pub const MAX_OUTCOME_CHARS: usize = 256;

/// A message's id: a UUID v7 (time-ordered). Sent as the `Lethe-Delivery` header and the envelope's `id`,
/// identical on every retry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    /// A fresh time-ordered id.
    #[must_use]
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps 16 stored bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    /// The 16 bytes (big-endian, as stored in keys).
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0.hyphenated())
    }
}

impl FromStr for MessageId {
    type Err = OutboxError;

    fn from_str(s: &str) -> Result<Self> {
        Uuid::parse_str(s).map(Self).map_err(|_| OutboxError::InvalidMessageId)
    }
}

/// What a message is about, e.g. `subject.erased`: 1 to 64 characters of `[a-z0-9._-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Topic(String);

impl Topic {
    /// The erasure notification of GDPR Art. 19.
    pub const SUBJECT_ERASED: &'static str = "subject.erased";
    /// Longest accepted topic, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Parses a topic.
    ///
    /// # Errors
    /// [`OutboxError::InvalidTopic`] unless 1 to 64 characters of `[a-z0-9._-]`.
    pub fn parse(raw: &str) -> Result<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(OutboxError::InvalidTopic)
        }
    }

    /// The topic `subject.erased`.
    #[must_use]
    pub fn subject_erased() -> Self {
        Self(Self::SUBJECT_ERASED.to_owned())
    }

    /// The topic as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({})", self.0)
    }
}

impl TryFrom<String> for Topic {
    type Error = OutboxError;

    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<Topic> for String {
    fn from(t: Topic) -> Self {
        t.0
    }
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The recipient answered with this HTTP status; for a non-2xx answer, the start of its body
    /// (at most [`MAX_OUTCOME_CHARS`] characters).
    Status {
        /// The HTTP status code.
        code: u16,
        /// The first characters of a failure answer's body, if any.
        excerpt: Option<String>,
    },
    /// No answer: connection refused, timeout, TLS failure… (at most [`MAX_OUTCOME_CHARS`] characters,
    /// never the endpoint URL).
    Error(String),
}

impl Outcome {
    /// A status outcome; the excerpt is cut to [`MAX_OUTCOME_CHARS`] characters and dropped for 2xx.
    #[must_use]
    pub fn status(code: u16, excerpt: Option<&str>) -> Self {
        let excerpt = if (200..300).contains(&code) {
            None
        } else {
            excerpt.map(str::trim).filter(|e| !e.is_empty()).map(truncate_chars)
        };
        Self::Status { code, excerpt }
    }

    /// An error outcome, cut to [`MAX_OUTCOME_CHARS`] characters.
    #[must_use]
    pub fn error(message: &str) -> Self {
        Self::Error(truncate_chars(message))
    }

    /// How the outbox treats this outcome: 2xx delivers; 4xx other than 408 and 429 fails for good; every
    /// other status (3xx, 408, 429, 5xx) and every error is retried.
    #[must_use]
    pub fn disposition(&self) -> Disposition {
        match self {
            Self::Status { code: 200..=299, .. } => Disposition::Delivered,
            Self::Status { code: 408 | 429, .. } => Disposition::Retry,
            Self::Status { code: 400..=499, .. } => Disposition::Permanent,
            Self::Status { .. } | Self::Error(_) => Disposition::Retry,
        }
    }

    /// A short description for `DeadLetter::last_error` (no body excerpt).
    pub(crate) fn summary(&self) -> String {
        match self {
            Self::Status { code, .. } => format!("http status {code}"),
            Self::Error(e) => e.clone(),
        }
    }

    /// The same outcome with its texts cut to the limit (for values built by hand).
    pub(crate) fn bounded(self) -> Self {
        match self {
            Self::Status { code, excerpt } => Self::status(code, excerpt.as_deref()),
            Self::Error(e) => Self::error(&e),
        }
    }
}

/// The consequence of an [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The recipient has the message.
    Delivered,
    /// Try again later, unless the attempts are used up.
    Retry,
    /// The recipient refused it; retrying would not help.
    Permanent,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// When the attempt started (the `now` the delivery pass ran at).
    pub at: UtcMicros,
    /// What came of it.
    pub outcome: Outcome,
    /// How long the request took, in wall-clock milliseconds.
    pub duration_ms: u64,
}

impl Attempt {
    /// Describes an attempt.
    #[must_use]
    pub fn new(at: UtcMicros, outcome: Outcome, duration_ms: u64) -> Self {
        Self { at, outcome: outcome.bounded(), duration_ms }
    }
}

/// Where a message stands.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MessageState {
    /// Waiting for its next attempt. While a delivery is in flight, `next_attempt_at` is the end of the
    /// delivery lease, after which a crashed delivery is retried.
    Pending {
        /// When the message becomes due.
        next_attempt_at: UtcMicros,
    },
    /// The recipient answered 2xx.
    Delivered {
        /// When the successful attempt started.
        at: UtcMicros,
        /// The 2xx status.
        status: u16,
        /// The recipient's JSON answer, if it sent one of at most [`MAX_ACK_BYTES`] bytes.
        ack: Option<serde_json::Value>,
    },
    /// Given up: a permanent refusal, or the attempts are used up.
    DeadLetter {
        /// When the last attempt started.
        at: UtcMicros,
        /// Why (a status or an error; no body).
        last_error: String,
    },
}

impl MessageState {
    /// The state's kind.
    #[must_use]
    pub fn kind(&self) -> StateKind {
        match self {
            Self::Pending { .. } => StateKind::Pending,
            Self::Delivered { .. } => StateKind::Delivered,
            Self::DeadLetter { .. } => StateKind::DeadLetter,
        }
    }
}

/// The kind of a [`MessageState`], for filters and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// [`MessageState::Pending`].
    Pending,
    /// [`MessageState::Delivered`].
    Delivered,
    /// [`MessageState::DeadLetter`].
    DeadLetter,
}

/// A notification to one recipient, with its delivery history.
///
/// The body is stored in plaintext in the outbox's sled tree, and sled keeps overwritten and removed bytes in
/// its files: **a body must carry no external identifier and no personal data** (no user id, e-mail, name).
/// Name the subject by something the recipient already holds that is not an external identifier, such as
/// the pseudonym or an erasure request reference it was given. The outbox cannot check this; it is the
/// caller's responsibility.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// The id (also the `Lethe-Delivery` header).
    pub id: MessageId,
    /// The recipient's id.
    pub recipient_id: String,
    /// What the message is about.
    pub topic: Topic,
    /// The caller's payload, sent as the envelope's `data`.
    pub body: serde_json::Value,
    /// When it was enqueued.
    pub created_at: UtcMicros,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<Attempt>,
    /// Where it stands.
    pub state: MessageState,
}

impl Message {
    /// The number of attempts so far.
    #[must_use]
    pub fn attempt_count(&self) -> u32 {
        u32::try_from(self.attempts.len()).unwrap_or(u32::MAX)
    }
}

/// The JSON document posted to a recipient, and signed: `{"id", "topic", "created_at", "data"}`.
///
/// Recipients deserialize it after checking the signature over the raw bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Envelope {
    /// The message id, equal to the `Lethe-Delivery` header.
    pub id: MessageId,
    /// The topic, equal to the `Lethe-Topic` header.
    pub topic: Topic,
    /// When the message was enqueued, microseconds since the Unix epoch (UTC).
    pub created_at: i64,
    /// The message body.
    pub data: serde_json::Value,
}

impl Envelope {
    /// The envelope of a message.
    #[must_use]
    pub fn of(message: &Message) -> Self {
        Self {
            id: message.id,
            topic: message.topic.clone(),
            created_at: message.created_at.0,
            data: message.body.clone(),
        }
    }

    /// The exact bytes that are signed and posted.
    ///
    /// # Errors
    /// [`OutboxError::Encode`] if the body cannot be encoded (not for values that came from JSON).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|_| OutboxError::Encode)
    }
}

fn truncate_chars(s: &str) -> String {
    match s.char_indices().nth(MAX_OUTCOME_CHARS) {
        Some((cut, _)) => s[..cut].to_owned(),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        let d = |code| Outcome::status(code, None).disposition();
        assert_eq!(d(200), Disposition::Delivered);
        assert_eq!(d(204), Disposition::Delivered);
        assert_eq!(d(400), Disposition::Permanent);
        assert_eq!(d(404), Disposition::Permanent);
        assert_eq!(d(410), Disposition::Permanent);
        assert_eq!(d(408), Disposition::Retry);
        assert_eq!(d(429), Disposition::Retry);
        assert_eq!(d(500), Disposition::Retry);
        assert_eq!(d(503), Disposition::Retry);
        assert_eq!(d(302), Disposition::Retry);
        assert_eq!(Outcome::error("connection refused").disposition(), Disposition::Retry);
    }

    #[test]
    fn outcome_texts_are_bounded() {
        let long = "é".repeat(1000);
        let Outcome::Status { excerpt: Some(e), .. } = Outcome::status(500, Some(&long)) else { panic!() };
        assert_eq!(e.chars().count(), MAX_OUTCOME_CHARS);
        let Outcome::Error(e) = Outcome::error(&long) else { panic!() };
        assert_eq!(e.chars().count(), MAX_OUTCOME_CHARS);
        assert_eq!(Outcome::status(200, Some("ok")), Outcome::Status { code: 200, excerpt: None });
        assert_eq!(Outcome::status(500, Some("  ")), Outcome::Status { code: 500, excerpt: None });
    }

    #[test]
    fn topics() {
        assert_eq!(Topic::parse("subject.erased").unwrap(), Topic::subject_erased());
        for bad in ["", "Subject.Erased", "a b", &"x".repeat(65)] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Topic>("\"BAD\"").is_err());
    }

    #[test]
    fn message_ids_round_trip() {
        let id = MessageId::new_v7();
        assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
        assert_eq!(MessageId::from_bytes(*id.as_bytes()), id);
        assert_eq!(id.as_uuid().get_version_num(), 7);
    }
}
