//! Events as the log knows them: what a caller appends ([`NewEvent`]), the plaintext envelope every
//! stored event carries ([`EventEnvelope`]) and what a read returns ([`RecordedEvent`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{DomainError, EventType, KeyId, Pseudonym, Purpose, Result};

/// Position of an event in the whole log; the first event is at position 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Position(pub u64);

/// Sequence of an event in its subject's stream; the first event of a stream is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Seq(pub u64);

/// Version of an event type's payload schema; starts at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SchemaVersion(u16);

impl SchemaVersion {
    /// Parses a schema version.
    ///
    /// # Errors
    /// Version 0 does not exist.
    pub fn new(v: u16) -> Result<Self> {
        if v == 0 {
            Err(DomainError::InvalidSchemaVersion)
        } else {
            Ok(Self(v))
        }
    }

    /// The version number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

/// Microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UtcMicros(pub i64);

impl UtcMicros {
    /// The current time from the system clock.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for UtcMicros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}µs", self.0)
    }
}

/// The version an append expects the subject's stream to be at; a mismatch is a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this sequence.
    Exact(Seq),
}

impl ExpectedVersion {
    /// Whether a stream whose last event is `head` (None: empty) satisfies this expectation.
    pub fn admits(self, head: Option<Seq>) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => head.is_none(),
            Self::Exact(seq) => head == Some(seq),
        }
    }
}

/// How long an event's data is kept, which decides the data key that seals it (R-RETAIN-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Kept until the subject is erased: sealed under the permanent key.
    UntilErased,
    /// Kept this many days after the event's time (at most one key period more), then shredded.
    Days(u16),
}

impl Retention {
    /// The data key of an event at `time` under this retention.
    ///
    /// # Errors
    /// A retention a key id cannot express ([`KeyId::for_retention`]).
    pub fn key_for(self, time: UtcMicros) -> Result<KeyId> {
        match self {
            Self::UntilErased => Ok(KeyId::PERMANENT),
            Self::Days(d) => KeyId::for_retention(d, time),
        }
    }
}

/// An event as a caller hands it to the log: the payload is plaintext here and sealed by the log.
#[derive(Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_type: EventType,
    pub schema_version: SchemaVersion,
    pub purpose: Purpose,
    pub time: UtcMicros,
    /// How long the payload is kept; decides the data key that seals it.
    pub retention: Retention,
    /// Serialized payload (JSON by convention). Personal data: it is only ever stored encrypted.
    pub payload: Vec<u8>,
}

impl fmt::Debug for NewEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEvent")
            .field("event_type", &self.event_type)
            .field("schema_version", &self.schema_version)
            .field("purpose", &self.purpose)
            .field("time", &self.time)
            .field("retention", &self.retention)
            .field("payload", &format_args!("<{} bytes>", self.payload.len()))
            .finish()
    }
}

/// The plaintext part of a stored event. Every field is pseudonymous or non-identifying; the
/// AEAD's associated data binds all of them to the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub position: Position,
    pub subject: Pseudonym,
    pub seq: Seq,
    pub event_type: EventType,
    pub schema_version: SchemaVersion,
    pub purpose: Purpose,
    pub time: UtcMicros,
    /// Generation of the subject's data key that sealed the payload.
    pub key_id: KeyId,
}

/// The body of an event as read back.
#[derive(Clone, PartialEq, Eq)]
pub enum EventBody {
    /// The decrypted payload.
    Plain(Vec<u8>),
    /// The subject was erased: the key that sealed this payload is gone (R-ERASE-1 tombstone).
    Shredded,
    /// The payload's retention period ended and its key was destroyed (R-RETAIN-1 tombstone).
    Expired,
    /// A system record with no payload, such as an erasure fence.
    Empty,
    /// Left sealed: the reader asked to open only events of other types
    /// (`EventStore::read_all_opening`).
    Unopened,
}

impl fmt::Debug for EventBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(p) => write!(f, "Plain(<{} bytes>)", p.len()),
            Self::Shredded => f.write_str("Shredded"),
            Self::Expired => f.write_str("Expired"),
            Self::Empty => f.write_str("Empty"),
            Self::Unopened => f.write_str("Unopened"),
        }
    }
}

/// An event read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub envelope: EventEnvelope,
    pub body: EventBody,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_version_admits() {
        assert!(ExpectedVersion::Any.admits(None));
        assert!(ExpectedVersion::Any.admits(Some(Seq(4))));
        assert!(ExpectedVersion::NoStream.admits(None));
        assert!(!ExpectedVersion::NoStream.admits(Some(Seq(1))));
        assert!(ExpectedVersion::Exact(Seq(3)).admits(Some(Seq(3))));
        assert!(!ExpectedVersion::Exact(Seq(3)).admits(Some(Seq(2))));
        assert!(!ExpectedVersion::Exact(Seq(3)).admits(None));
    }

    #[test]
    fn schema_version_zero_is_refused() {
        assert!(SchemaVersion::new(0).is_err());
        assert_eq!(SchemaVersion::new(2).unwrap().get(), 2);
    }
}
