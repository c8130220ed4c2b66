//! The storage contract every log backend honours, and the values it returns. Callers hold an
//! `Arc<dyn EventStore>` and never see which backend is behind it.

use std::fmt::Debug;

use lethe_domain::{ExpectedVersion, KeyId, NewEvent, Position, Pseudonym, RecordedEvent, Seq, SubjectId, UtcMicros};
use serde::Serialize;

use crate::Result;

/// Events to append to one subject's stream, all or nothing.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub subject: Pseudonym,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// What receives the results of [`EventStore::append_batch_then`].
pub type AppendDone = Box<dyn FnOnce(Vec<Result<Appended>>) + Send>;

/// What the appender of a one-event request knows of its payload, for the reader that follows the
/// log and would otherwise decrypt and parse the payload to learn it (the feature views, reading
/// Lethe's own decision receipts): kept in memory only, never stored, and handed out once. See
/// [`EventStore::append_batch_deferred_noted`] and [`EventStore::read_all_opening_noted`].
pub type Note = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// Whether a reader takes `note` in place of the payload of an event of type `event_type`.
pub type TakesNote = fn(&str, &Note) -> bool;

/// Where an acknowledged append landed. Acknowledged means durable (fsynced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Appended {
    pub first_position: Position,
    pub last_position: Position,
    /// The stream's version after the append.
    pub last_seq: Seq,
}

/// How the sled log has indexed the runs of deferred appends that waited for the stream index (see
/// [`EventStore::waiting_runs_indexed`]): since it opened, so many runs in so many entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IndexedRuns {
    pub runs: u64,
    pub entries: u64,
}

/// The erasure state of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SubjectState {
    /// No event and no key.
    Unknown,
    /// Live: its data keys exist.
    Active { events: u64, key_ids: Vec<KeyId> },
    /// Erased at `fence`: keys destroyed, appends refused.
    Erased { fence: Position, erased_at: UtcMicros, rotation_pending: bool },
}

/// What an erasure did. Holds no personal data: the subject appears only as a digest of its
/// pseudonym.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasureReceipt {
    /// SHA-256 of the pseudonym, hex.
    pub subject_digest: String,
    /// Generations of the subject's data key that were destroyed.
    pub key_ids: Vec<KeyId>,
    /// Epoch under which the destroyed keys were wrapped; the erasure is final for the data
    /// directory once this epoch is rotated away.
    pub wrapped_under_epoch: u32,
    pub fence_position: Position,
    pub log_head_before: Position,
    pub log_head_after: Position,
    pub erased_at: UtcMicros,
    /// Events of the subject that now read as tombstones.
    pub events_shredded: u64,
    /// False when the subject had already been erased (the receipt then describes the first erasure).
    pub newly_erased: bool,
}

/// What a key rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    pub from_epoch: u32,
    pub to_epoch: u32,
    pub keys_rewrapped: u64,
    /// Erasures that became final with this rotation.
    pub erasures_finalized: u64,
}

/// What a retention sweep did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Every period key expiring at or before this instant is now destroyed.
    pub swept_through: UtcMicros,
    pub keys_destroyed: u64,
    /// Subjects that lost at least one key.
    pub subjects: u64,
    /// True until a rotation makes the destruction final for the data directory.
    pub rotation_pending: bool,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub events: u64,
    pub decrypted: u64,
    pub tombstones: u64,
    /// Events whose retention period ended and whose key was destroyed.
    pub expired: u64,
    pub fences: u64,
    pub subjects: u64,
    pub erased_subjects: u64,
    pub rotation_pending: bool,
    pub current_epoch: u32,
    /// Positions whose payload failed to decrypt though the subject's key exists: tampering or
    /// corruption.
    pub failures: Vec<Position>,
    /// Index and sequence inconsistencies.
    pub problems: Vec<String>,
    /// Every subject seen, in pseudonym order.
    pub per_subject: Vec<SubjectVerify>,
}

/// One subject's line in a [`VerifyReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectVerify {
    pub pseudonym: String,
    pub events: u64,
    /// `active`, `erased` or `erased (rotation pending)`.
    pub state: String,
}

impl VerifyReport {
    /// Whether the log is sound.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.problems.is_empty()
    }
}

/// An append-only, encrypted event log.
///
/// Contracts (ARCHITECTURE.md, "The event log"): an `Ok` from an append means the events are
/// durable; the events of one request are all stored or none is, even across a crash; a subject's
/// events are numbered 1, 2, 3… without gaps; positions are unique and increasing in commit order.
pub trait EventStore: Send + Sync + Debug {
    /// The keyed pseudonym of an external identifier.
    fn pseudonymize(&self, id: &SubjectId) -> Pseudonym;

    /// Appends one request, durably.
    ///
    /// # Errors
    /// Version conflict, erased subject, empty request, storage failure.
    fn append(&self, request: AppendRequest) -> Result<Appended> {
        self.append_batch(vec![request]).pop().expect("one result per request")
    }

    /// Appends several requests in one group commit; each succeeds or fails on its own, and all
    /// that succeed become durable together.
    fn append_batch(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended>>;

    /// [`EventStore::append_batch`] without waiting: `done` receives the results once the appends
    /// are durable (or refused). It runs on the log's own thread, so it must not block (send the
    /// results on a channel). An async caller awaits them without holding a thread. The default
    /// appends synchronously and calls `done` before returning.
    fn append_batch_then(&self, requests: Vec<AppendRequest>, done: AppendDone) {
        done(self.append_batch(requests));
    }

    /// [`EventStore::append_batch_then`] for appends nobody waits on (decision receipts): the log
    /// may hold their fsync for a short window to share it with later appends, so that a steady
    /// trickle of them costs a few fsyncs a second instead of one each (in the sled log, a group
    /// large enough for a chunk file still syncs that file before it is applied). `done` still receives the
    /// results once they are durable. The default is [`EventStore::append_batch_then`].
    fn append_batch_deferred(&self, requests: Vec<AppendRequest>, done: AppendDone) {
        self.append_batch_then(requests, done);
    }

    /// [`EventStore::append_batch_deferred`], with a note for each request of one event (`notes`
    /// runs beside `requests`; a missing or `None` one is no note). A backend may keep the notes of
    /// the events it stored for a while, to hand each once to [`EventStore::read_all_opening_noted`]:
    /// a note is what the payload says, known without decrypting it. The default keeps none.
    fn append_batch_deferred_noted(&self, requests: Vec<AppendRequest>, notes: Vec<Option<Note>>, done: AppendDone) {
        let _ = notes;
        self.append_batch_deferred(requests, done);
    }

    /// One subject's events in sequence order; erased payloads read as [`lethe_domain::EventBody::Shredded`].
    ///
    /// # Errors
    /// Storage or decryption failure.
    fn read_stream(&self, subject: &Pseudonym) -> Result<Vec<RecordedEvent>>;

    /// Every event from `from` (inclusive) in position order, decrypted.
    fn read_all(&self, from: Position) -> Box<dyn Iterator<Item = Result<RecordedEvent>> + Send + '_>;

    /// As [`Self::read_all`], but only the events whose type `opens` accepts are decrypted; the
    /// others come with their envelope and [`lethe_domain::EventBody::Unopened`]. For a reader that
    /// follows the whole log for a few types (the feature views). The default decrypts every event.
    fn read_all_opening(
        &self,
        from: Position,
        opens: fn(&str) -> bool,
    ) -> Box<dyn Iterator<Item = Result<RecordedEvent>> + Send + '_> {
        let _ = opens;
        self.read_all(from)
    }

    /// [`Self::read_all_opening`], each event with the note its appender left
    /// ([`Self::append_batch_deferred_noted`]), when the backend still keeps it and `takes` accepts
    /// it: such an event is not decrypted, and comes [`lethe_domain::EventBody::Unopened`] with its
    /// note, only when its payload could have been opened (its key is there: an erased subject's
    /// or an expired event comes [`lethe_domain::EventBody::Shredded`] or
    /// [`lethe_domain::EventBody::Expired`], without a note). A note is handed out once, to the first
    /// reader that takes it. The default keeps no notes: every event comes as
    /// [`Self::read_all_opening`] gives it.
    fn read_all_opening_noted(
        &self,
        from: Position,
        opens: fn(&str) -> bool,
        takes: TakesNote,
    ) -> Box<dyn Iterator<Item = Result<(RecordedEvent, Option<Note>)>> + Send + '_> {
        let _ = takes;
        Box::new(self.read_all_opening(from, opens).map(|r| r.map(|e| (e, None))))
    }

    /// The position of the last committed event (0 when empty).
    fn head(&self) -> Position;

    /// Whether appends can be accepted (false once a failed write stopped the writer).
    fn writable(&self) -> bool;

    /// Whether an erasure or a retention sweep waits for [`Self::rotate_keys`] to become final.
    fn rotation_pending(&self) -> bool;

    /// How many runs of deferred appends wait for the stream index, for a backend that keeps them
    /// out of it for a while (the sled log: see `unindexed`); `None` for one that does not.
    fn runs_waiting_for_index(&self) -> Option<u64> {
        None
    }

    /// How many waiting runs were indexed since the log opened, and in how many index entries (a
    /// subject's waiting runs share one): runs per entry is what the limit on waiting runs saves,
    /// the index writes a receipt would otherwise cost. `None` for a backend that keeps no runs waiting.
    fn waiting_runs_indexed(&self) -> Option<IndexedRuns> {
        None
    }

    /// The erasure state of a subject.
    ///
    /// # Errors
    /// Storage failure.
    fn subject_state(&self, subject: &Pseudonym) -> Result<SubjectState>;

    /// Whether the subject was erased (the log holds its erasure fence), answered from memory where
    /// the backend can: callers on a request path ask it. A storage failure answers `false` here;
    /// [`Self::subject_state`] reports it.
    fn is_erased(&self, subject: &Pseudonym) -> bool {
        matches!(self.subject_state(subject), Ok(SubjectState::Erased { .. }))
    }

    /// Crypto-shreds a subject: writes an erasure fence to the log and destroys the subject's data
    /// keys in the live key store. Final for the data directory after the next [`Self::rotate_keys`].
    ///
    /// # Errors
    /// Storage failure.
    fn erase(&self, subject: &Pseudonym) -> Result<ErasureReceipt>;

    /// Rotates the key-encryption-key epoch: re-wraps every surviving data key and destroys the old
    /// epoch's secret, which makes every earlier erasure final.
    ///
    /// # Errors
    /// Storage or key store failure.
    fn rotate_keys(&self) -> Result<RotationReport>;

    /// Destroys the data keys of every retention period that ended at or before `now`
    /// (R-RETAIN-1); their events then read as [`lethe_domain::EventBody::Expired`]. Final for the
    /// data directory after the next [`Self::rotate_keys`].
    ///
    /// # Errors
    /// Storage failure.
    fn expire_keys(&self, now: UtcMicros) -> Result<RetentionReport>;

    /// Writes a consistent backup of the log to `path` (see [`crate::backup`] for what it holds and
    /// when an erasure reaches it). Appends wait while it runs.
    ///
    /// # Errors
    /// Storage and I/O errors.
    fn backup(&self, path: &std::path::Path) -> Result<crate::BackupReport>;

    /// Reads and decrypts every event and checks the indexes.
    ///
    /// # Errors
    /// Storage failure.
    fn verify(&self) -> Result<VerifyReport>;
}
