//! Replay: rebuilds the log's projections from scratch by reading every event in order. Today the
//! projection is a summary (events per type, live and erased subjects) and a digest over everything
//! a projection can see; the digest is what makes determinism checkable (invariant 6).

use std::collections::{BTreeMap, BTreeSet};

use lethe_domain::{EventBody, Position};
use lethe_eventlog::{EventStore, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    pub events: u64,
    pub readable: u64,
    pub tombstones: u64,
    pub fences: u64,
    pub subjects: u64,
    pub by_type: BTreeMap<String, u64>,
    /// SHA-256 over (position, pseudonym, type, version, purpose, time, payload) of every readable
    /// event, in log order. Equal logs and keys give equal digests.
    pub digest: String,
}

/// Replays the whole log, calling `progress` with each position read.
///
/// # Errors
/// The first event that cannot be read or decrypted.
pub fn replay(store: &dyn EventStore, mut progress: impl FnMut(Position)) -> Result<ReplaySummary> {
    let mut hasher = Sha256::new();
    let mut summary = ReplaySummary {
        events: 0,
        readable: 0,
        tombstones: 0,
        fences: 0,
        subjects: 0,
        by_type: BTreeMap::new(),
        digest: String::new(),
    };
    let mut subjects = BTreeSet::new();
    for event in store.read_all(Position(1)) {
        let event = event?;
        let env = &event.envelope;
        summary.events += 1;
        subjects.insert(env.subject);
        match &event.body {
            EventBody::Plain(payload) => {
                summary.readable += 1;
                *summary.by_type.entry(env.event_type.to_string()).or_default() += 1;
                hasher.update(env.position.0.to_be_bytes());
                hasher.update(env.subject.as_bytes());
                hasher.update(env.event_type.as_str().as_bytes());
                hasher.update(env.schema_version.get().to_be_bytes());
                hasher.update(env.purpose.as_str().as_bytes());
                hasher.update(env.time.0.to_be_bytes());
                hasher.update((payload.len() as u64).to_be_bytes());
                hasher.update(payload);
            }
            EventBody::Shredded | EventBody::Expired => summary.tombstones += 1,
            EventBody::Empty => summary.fences += 1,
            // `read_all` opens every event.
            EventBody::Unopened => {}
        }
        progress(env.position);
    }
    summary.subjects = subjects.len() as u64;
    summary.digest = hex::encode(hasher.finalize());
    Ok(summary)
}
