//! Lethe's domain vocabulary: identifiers, pseudonyms, purposes, event envelopes and the stored-event
//! schema catalogue. This crate does no IO and holds no secrets; every crate above it speaks these types.
#![forbid(unsafe_code)]

mod error;
mod event;
mod ids;
pub mod schema;

pub use error::{DomainError, Result};
pub use event::{
    EventBody, EventEnvelope, ExpectedVersion, NewEvent, Position, RecordedEvent, Retention, SchemaVersion, Seq,
    UtcMicros,
};
pub use ids::{EventType, KeyId, Pseudonym, PseudonymMap, PseudonymSet, Purpose, SubjectId};
