//! The embedded backend: one sled database (`log/`) and its chunk files (`log/chunks/`), a writer
//! thread that stages and applies groups of appends (syncing the chunk files a group wrote before
//! applying it), and a flusher thread that makes them durable with one fsync per group, overlapping
//! the next group's work. See ARCHITECTURE.md, "The event log", for the write sequence and the
//! recovery rules this file implements.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lethe_crypto::{DataKey, Keyring, MasterSource, SecretBytes, WrappedKey};
use lethe_domain::schema::types;
use lethe_domain::{
    EventBody, EventEnvelope, EventType, KeyId, Position, Pseudonym, PseudonymMap, PseudonymSet, Purpose,
    RecordedEvent, SchemaVersion, Seq, SubjectId, UtcMicros,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backup::{self, BackupHeader, BackupReport};
use crate::chunk_files::{
    ChunkAppender, ChunkFiles, ChunkPointer, DEFAULT_CHUNK_CACHE_TAIL_BYTES, DEFAULT_CHUNK_FILE_MAX_BYTES,
};
use crate::codec::{self, ChunkWriter, StoredRecord, CHUNK_MAX_BYTES};
use crate::layout::{
    self, be_u32, be_u64, dek_key, dek_prefix, event_key, fence_key, multi_stream_value, parse_stream_entry,
    retention_key, stream_key, stream_prefix, stream_value, unindexed_key,
};
use crate::store::{
    AppendDone, AppendRequest, Appended, ErasureReceipt, EventStore, IndexedRuns, Note, RetentionReport,
    RotationReport, SubjectState, SubjectVerify, TakesNote, VerifyReport,
};
use crate::unindexed::{RunRef, Unindexed, MAX_RUNS_PER_ENTRY};
use crate::{LogError, Result};

/// Folder of the log database inside the data directory.
pub const LOG_DIR: &str = "log";

/// The default [`LogConfig::defer_linger`].
pub const DEFAULT_DEFER_LINGER: Duration = Duration::from_millis(5);

/// A group of deferred appends only lingers while it holds fewer events than this.
const LINGER_BELOW_EVENTS: usize = 256;

/// Most notes of deferred appends kept for a reader (`Shared::notes`): past it, a reader that fell
/// behind decrypts the oldest events' payloads instead. About 100 bytes each.
const MAX_NOTES: usize = 65_536;

/// The default [`LogConfig::defer_window`].
pub const DEFAULT_DEFER_WINDOW: Duration = Duration::from_millis(20);

/// How to open the embedded log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub data_dir: PathBuf,
    pub master: MasterSource,
    /// Most events one group commit takes.
    pub max_group_events: usize,
    /// How long the log may hold the fsync of an applied deferred append
    /// ([`EventStore::append_batch_deferred`]) to share it with later appends. 0 makes deferred
    /// appends ordinary ones (no linger either).
    pub defer_window: Duration,
    /// How long the writer waits for more appends before it commits (applies) a small group of
    /// deferred appends only: a trickle of receipts then shares one batch, one chunk and one sync.
    /// An ordinary append, or any other command, ends the wait at once (and is committed with the
    /// group); so does the end of the window of a group already held.
    pub defer_linger: Duration,
    /// Most runs of deferred appends left out of the stream index at once (see `unindexed`): past
    /// it, each group commit indexes the subjects of the oldest ones. More saves index writes when
    /// subjects come back often; it costs memory (about 200 bytes a run) and reading at open.
    pub max_unindexed_runs: usize,
    /// A chunk of at least this many bytes goes to a chunk file, a smaller one stays in sled (see
    /// `chunk_files`). 0 sends every chunk to a file.
    pub chunk_file_min_bytes: usize,
    /// A new chunk file is started once the current one would pass this size.
    pub chunk_file_max_bytes: u64,
    /// How many of the chunk files' newest durable bytes stay in the page cache; the kernel is told to
    /// drop the older ones (readers following the log read the newest back; 0 keeps none cached).
    pub chunk_cache_tail_bytes: u64,
}

/// The default [`LogConfig::chunk_file_min_bytes`]: a leaf of sled's holds up to 17 values, and 17
/// chunks under 4 KiB stay well below the size at which sled writes a leaf to a file of its own.
pub const DEFAULT_CHUNK_FILE_MIN_BYTES: usize = 4096;

/// The default [`LogConfig::max_unindexed_runs`].
pub const DEFAULT_MAX_UNINDEXED_RUNS: usize = 500_000;

/// Most entries one group commit writes to index waiting runs: the writer catches up over several
/// groups rather than stalling one.
const MAX_INDEX_ENTRIES_PER_GROUP: usize = 4096;

/// Most emptied chunk buffers the writer keeps for its next chunks.
const SPARE_CHUNKS: usize = 8;

/// A new chunk, in a spare buffer when there is one.
fn next_chunk(spare: &mut Vec<Vec<u8>>) -> ChunkWriter {
    ChunkWriter::with_buffer(spare.pop().unwrap_or_default())
}

impl LogConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>, master: MasterSource) -> Self {
        Self {
            data_dir: data_dir.into(),
            master,
            max_group_events: 16_384,
            defer_window: DEFAULT_DEFER_WINDOW,
            defer_linger: DEFAULT_DEFER_LINGER,
            max_unindexed_runs: DEFAULT_MAX_UNINDEXED_RUNS,
            chunk_file_min_bytes: DEFAULT_CHUNK_FILE_MIN_BYTES,
            chunk_file_max_bytes: DEFAULT_CHUNK_FILE_MAX_BYTES,
            chunk_cache_tail_bytes: DEFAULT_CHUNK_CACHE_TAIL_BYTES,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct FenceRecord {
    position: u64,
    time: i64,
}

type Reply<T> = SyncSender<T>;

/// Where an append's results go: a thread waiting for them, or a callback that must not block;
/// `Deferred` is a callback whose fsync may wait for the defer window.
enum AppendReply {
    Wait(Reply<Vec<Result<Appended>>>),
    Call(crate::store::AppendDone),
    /// Nobody waits: the log may hold its fsync (contract 8). With the notes of its requests.
    Deferred(crate::store::AppendDone, Vec<Option<Note>>),
}

impl AppendReply {
    fn send(self, results: Vec<Result<Appended>>) -> std::result::Result<(), ()> {
        match self {
            Self::Wait(tx) => tx.send(results).map_err(|_| ()),
            Self::Call(done) | Self::Deferred(done, _) => {
                done(results);
                Ok(())
            }
        }
    }

    fn deferred(&self) -> bool {
        matches!(self, Self::Deferred(..))
    }
}

enum Command {
    Append(Vec<AppendRequest>, AppendReply),
    Erase(Pseudonym, Reply<Result<ErasureReceipt>>),
    Rotate(Reply<Result<RotationReport>>),
    Expire(UtcMicros, Reply<Result<RetentionReport>>),
    Backup(PathBuf, Reply<Result<BackupReport>>),
}

/// Applied groups waiting for the fsync that makes them durable.
struct FlushJob {
    last_position: u64,
    replies: Vec<(AppendReply, Vec<Result<Appended>>)>,
}

struct Shared {
    data_dir: PathBuf,
    log: sled::Db,
    /// The bytes of the chunks whose `e/` values are pointers.
    chunks: ChunkFiles,
    keyring: RwLock<Keyring>,
    cache: RwLock<KeyCache>,
    head: AtomicU64,
    incarnation: u32,
    rotation_pending: AtomicBool,
    poisoned: AtomicBool,
    /// Every period key expiring at or before this instant (µs) is destroyed.
    retention_swept: AtomicI64,
    /// Runs of deferred appends no stream index entry covers yet (written by the writer only).
    unindexed: RwLock<Unindexed>,
    /// The notes of recent deferred appends by position, with their subjects, until a reader takes
    /// them (`read_all_opening_noted`); at most [`MAX_NOTES`], the oldest giving way. An erasure
    /// drops its subject's, a retention sweep all of them.
    notes: Mutex<BTreeMap<u64, (Pseudonym, Note)>>,
    /// Damage found while reading the waiting runs back at open, or chunk files that do not hold what
    /// the log's pointers name: the log then refuses appends and
    /// erasures (they hand out sequences, which could be handed out twice); sweeps and rotations
    /// still run. `verify` reports it.
    open_problems: Vec<String>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<(Pseudonym, KeyId), DataKey, foldhash::fast::RandomState>,
    erased: PseudonymSet,
}

/// The embedded, sled-backed event log.
pub struct SledEventLog {
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Command>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for SledEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledEventLog")
            .field("data_dir", &self.shared.data_dir)
            .field("head", &self.shared.head.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The runs of deferred appends that no stream index entry covers: those of the marked chunks
/// (`u/`) that no entry holds, single or multi-run. Damage (a mark without its chunk, a chunk or an
/// entry that does not parse) is returned as problems, not as an error: the log still opens, for
/// reading, `verify`, sweeps and rotations, and refuses appends and erasures.
fn load_unindexed(log: &sled::Db, chunks: &ChunkFiles) -> Result<(Unindexed, Vec<String>)> {
    let mut problems = Vec::new();
    // The run heads of the marked chunks, per subject.
    let mut candidates: HashMap<Pseudonym, Vec<RunRef>> = HashMap::new();
    for item in log.scan_prefix(layout::UNINDEXED) {
        let (k, _) = item?;
        let Ok(pos) = be_u64(&k[2..]) else {
            problems.push("malformed unindexed mark".into());
            continue;
        };
        let Some(chunk) = log.get(event_key(pos))? else {
            problems.push(format!("chunk at {pos} is marked unindexed but missing"));
            continue;
        };
        match chunks.resolve(chunk).and_then(|chunk| codec::run_heads(&chunk)) {
            Ok(heads) => {
                for (subject, first_seq, count) in heads {
                    candidates.entry(subject).or_default().push(RunRef { first_seq, pos, count });
                }
            }
            Err(e) => problems.push(format!("chunk at {pos} is marked unindexed: {e}")),
        }
    }
    let mut unindexed = Unindexed::default();
    for (subject, mut runs) in candidates {
        runs.sort_unstable_by_key(|r| r.first_seq);
        let covered = match covered_from(log, &subject, runs[0].first_seq) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("the stream index of a subject with waiting runs: {e}"));
                continue;
            }
        };
        for r in runs.into_iter().filter(|r| !covered.contains(&r.first_seq)) {
            unindexed.add(subject, r);
        }
    }
    Ok((unindexed, problems))
}

/// The first sequences of the runs `subject`'s index entries hold from sequence `from` on, in one
/// scan: an entry keyed below `from` holds no run at or past it (a multi-run entry is keyed by its
/// last run).
fn covered_from(log: &sled::Db, subject: &Pseudonym, from: u64) -> Result<HashSet<u64>> {
    let mut covered = HashSet::new();
    for entry in entries_from(log, subject, from) {
        covered.extend(entry?.0.iter().map(|r| r.first_seq));
    }
    Ok(covered)
}

/// `subject`'s stream index entries keyed at sequence `from` or later, in key order: each entry's
/// runs, and whether it is a multi-run entry.
fn entries_from<'a>(
    log: &'a sled::Db,
    subject: &Pseudonym,
    from: u64,
) -> impl Iterator<Item = Result<(Vec<RunRef>, bool)>> + 'a {
    let prefix = stream_prefix(subject.as_bytes());
    log.range(stream_key(subject.as_bytes(), from)..)
        .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
        .map(|item| {
            let (k, v) = item?;
            Ok((parse_stream_entry(be_u64(&k[34..])?, &v)?, layout::is_multi_run(&v)))
        })
}

/// The bytes of the chunks of a log database read directly (by tests and tools): an `e/` value
/// itself, or the bytes its pointer names in a chunk file. Keeps the chunk files open.
#[doc(hidden)]
#[derive(Debug)]
pub struct RawChunkReader(ChunkFiles);

impl RawChunkReader {
    /// Reads the chunk files of the log database in `log_dir`.
    pub fn new(log_dir: &Path) -> Self {
        Self(ChunkFiles::new(log_dir))
    }

    /// The bytes of the chunk that the `e/` value `value` holds.
    ///
    /// # Errors
    /// A damaged pointer or chunk file; IO errors.
    pub fn resolve(&self, value: &[u8]) -> Result<Vec<u8>> {
        self.0.resolve(sled::IVec::from(value)).map(|v| v.to_vec())
    }
}

/// Opens the sled database. sled releases its file lock only when its background threads let go of
/// a dropped database, a moment after the drop; a reopen in the same process waits for that, up to
/// two seconds.
fn open_db(path: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sled::Config::new().path(path).open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(sled::Error::Io(e).into());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

impl SledEventLog {
    /// Opens (or creates) the log in `config.data_dir`: opens the key store, checks and upgrades
    /// the layout, bumps the incarnation, re-applies erasure fences to the key store, completes an
    /// interrupted rotation, and starts the writer.
    ///
    /// # Errors
    /// Key store errors (wrong secret…), a layout from a newer Lethe, storage errors.
    pub fn open(config: LogConfig) -> Result<Self> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| LogError::Io { path: dir.clone(), source })?;
        let keyring = Keyring::open(dir, &config.master)?;
        let log = open_db(&dir.join(LOG_DIR))?;
        layout::check_and_upgrade(&log)?;

        // The key store must be the one this log was written with, and not an older copy of it:
        // an older copy would reuse epoch numbers and bring back destroyed epochs.
        match log.get(layout::META_KEYSTORE)? {
            Some(id) if id.as_ref() != keyring.id().as_bytes() => return Err(LogError::KeyStoreMismatch),
            Some(_) => {}
            None => {
                log.insert(layout::META_KEYSTORE, keyring.id().as_bytes())?;
            }
        }
        let key_store_epoch = keyring.current_epoch().0;
        match log.get(layout::META_EPOCH)?.map(|v| be_u32(&v)).transpose()? {
            Some(log_epoch) if key_store_epoch < log_epoch => {
                return Err(LogError::KeyStoreBehind { key_store: key_store_epoch, log: log_epoch });
            }
            Some(_) => {}
            None => {
                log.insert(layout::META_EPOCH, &key_store_epoch.to_be_bytes())?;
            }
        }

        let incarnation = match log.get(layout::META_INCARNATION)? {
            Some(v) => be_u32(&v)?.checked_add(1).ok_or_else(|| LogError::Corrupt("incarnation exhausted".into()))?,
            None => 1,
        };
        log.insert(layout::META_INCARNATION, &incarnation.to_be_bytes())?;
        log.flush()?;

        // The chunk files, cut back to what the durable pointers cover (after the key store's checks,
        // so that an open refused for the wrong key store leaves them as they were; what is cut
        // is never named by a durable pointer, so a later failure of this open loses nothing).
        let log_dir = dir.join(LOG_DIR);
        let has_pointers = || -> Result<bool> {
            for item in log.scan_prefix(layout::EVENTS) {
                if ChunkPointer::parse(&item?.1).is_some() {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        let (appender, mut chunk_problems) = ChunkAppender::open(
            &log_dir,
            log.get(layout::META_CHUNK_END)?.as_deref(),
            config.chunk_file_max_bytes,
            has_pointers,
        )?;
        let appender = appender.with_cached_tail(config.chunk_cache_tail_bytes);
        let chunks = ChunkFiles::new(&log_dir);

        // The head is the last event of the last chunk. A last chunk whose chunk file cannot give its
        // bytes does not stop the open: the head is then its first position (so that `verify` reads it
        // and names the damage), and appends are refused.
        let head = match log.scan_prefix(layout::EVENTS).next_back() {
            Some(item) => {
                let (k, v) = item?;
                let filed = ChunkPointer::parse(&v).is_some();
                match chunks.resolve(v).and_then(|c| codec::decode_chunk(&c)) {
                    Ok(records) => records.last().map_or(0, |r| r.envelope.position.0),
                    Err(e @ LogError::Corrupt(_)) if filed => {
                        let pos = be_u64(&k[2..])?;
                        chunk_problems.push(format!("chunk at {pos}: {e}"));
                        pos
                    }
                    Err(e) => return Err(e),
                }
            }
            None => 0,
        };
        let rotated_at = log.get(layout::META_ROTATED_AT)?.map(|v| be_u64(&v)).transpose()?.unwrap_or(0);
        let retention_swept =
            log.get(layout::META_RETENTION_SWEPT)?.map(|v| be_u64(&v)).transpose()?.unwrap_or(0).min(i64::MAX as u64);
        let mut cache = KeyCache::default();
        let mut rotation_pending = log.contains_key(layout::META_RETENTION_PENDING)?;
        for item in log.scan_prefix(layout::FENCES) {
            let (k, v) = item?;
            let subject = Pseudonym::from_bytes(k[2..].try_into().map_err(|_| LogError::Corrupt("fence key".into()))?);
            let fence: FenceRecord = postcard::from_bytes(&v).map_err(|e| LogError::Corrupt(e.to_string()))?;
            rotation_pending |= fence.position > rotated_at;
            cache.erased.insert(subject);
        }

        // R-ERASE-2: a fenced subject never has a live key. A key record next to a fence can only
        // come from a restored copy; the fence wins: the key is removed again and a rotation is due.
        let mut revived = 0u64;
        for subject in &cache.erased {
            for item in log.scan_prefix(dek_prefix(subject.as_bytes())) {
                log.remove(item?.0)?;
                revived += 1;
            }
        }
        if revived > 0 {
            // The restored key store may hold the epochs that wrapped those keys: no erasure is final
            // until the next rotation.
            log.insert(layout::META_ROTATED_AT, &0u64.to_be_bytes())?;
            log.flush()?;
            rotation_pending = true;
            tracing::warn!(
                keys = revived,
                "the key store held keys of erased subjects (restored from a copy?); removed them"
            );
        }

        let (unindexed, mut open_problems) = load_unindexed(&log, &chunks)?;
        if !open_problems.is_empty() {
            tracing::error!(
                problems = ?open_problems,
                "the runs of deferred appends could not all be read back; the log refuses appends and erasures until repaired"
            );
        }
        if !chunk_problems.is_empty() {
            tracing::error!(
                problems = ?chunk_problems,
                "chunk files do not hold what the log's pointers name; the log refuses appends and erasures until repaired"
            );
            open_problems.extend(chunk_problems);
        }
        let shared = Arc::new(Shared {
            data_dir: dir.clone(),
            log,
            chunks,
            keyring: RwLock::new(keyring),
            cache: RwLock::new(cache),
            head: AtomicU64::new(head),
            incarnation,
            rotation_pending: AtomicBool::new(rotation_pending),
            poisoned: AtomicBool::new(false),
            retention_swept: AtomicI64::new(retention_swept as i64),
            unindexed: RwLock::new(unindexed),
            notes: Mutex::new(BTreeMap::new()),
            open_problems,
        });

        let (tx, rx) = mpsc::channel();
        let (flush_tx, flush_rx) = mpsc::channel();
        let mut writer = Writer {
            shared: Arc::clone(&shared),
            heads: PseudonymMap::default(),
            max_group: config.max_group_events,
            applied: head,
            flusher: flush_tx,
            defer_window: config.defer_window,
            defer_linger: config.defer_linger,
            deferred: None,
            max_unindexed: config.max_unindexed_runs,
            appender,
            chunk_file_min: config.chunk_file_min_bytes,
            spare_chunks: Vec::new(),
        };
        if shared.keyring.read().expect("keyring lock").epochs().len() > 1 {
            tracing::warn!("completing a key rotation that was interrupted");
            writer.rotate()?;
        }
        let spawn_err = |source| LogError::Io { path: dir.clone(), source };
        let flusher_shared = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("lethe-log-flusher".into())
            .spawn(move || run_flusher(&flusher_shared, &flush_rx))
            .map_err(spawn_err)?;
        let writer = std::thread::Builder::new()
            .name("lethe-log-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(spawn_err)?;
        Ok(Self { shared, tx: Mutex::new(Some(tx)), threads: Mutex::new(vec![writer, flusher]) })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// This open's incarnation number (part of every nonce it seals).
    pub fn incarnation(&self) -> u32 {
        self.shared.incarnation
    }

    /// The current key-encryption-key epoch.
    pub fn current_epoch(&self) -> u32 {
        self.shared.keyring.read().expect("keyring lock").current_epoch().0
    }

    /// Whether the master secret is the development key file.
    pub fn uses_dev_key(&self) -> bool {
        self.shared.keyring.read().expect("keyring lock").uses_dev_key()
    }

    /// Whether this open created the development key file.
    pub fn dev_key_created(&self) -> bool {
        self.shared.keyring.read().expect("keyring lock").dev_key_created()
    }

    /// The unwrapped data key of a subject, if it exists. For forensic tests only.
    #[doc(hidden)]
    pub fn forensic_data_key(&self, subject: &Pseudonym, key_id: KeyId) -> Option<SecretBytes> {
        let raw = self.shared.log.get(dek_key(subject.as_bytes(), key_id.0)).ok()??;
        let wrapped = WrappedKey::parse(&raw).ok()?;
        self.shared.keyring.read().ok()?.unwrap(subject, key_id, &wrapped).ok()
    }

    /// The KEK of a live epoch. For forensic tests only.
    #[doc(hidden)]
    pub fn forensic_epoch_secret(&self, epoch: u32) -> Option<SecretBytes> {
        self.shared.keyring.read().ok()?.epoch_secret_for_forensics(lethe_crypto::Epoch(epoch))
    }

    /// Queues an append whose results go to a callback (`Call` or `Deferred`).
    fn send_append(&self, requests: Vec<AppendRequest>, reply: AppendReply) {
        let n = requests.len();
        let closed = || (0..n).map(|_| Err(LogError::Closed)).collect::<Vec<_>>();
        let tx = self.tx.lock();
        let Some(tx) = tx.as_ref().ok().and_then(|tx| tx.as_ref()) else {
            let _ = reply.send(closed());
            return;
        };
        if let Err(mpsc::SendError(Command::Append(_, reply))) = tx.send(Command::Append(requests, reply)) {
            let _ = reply.send(closed());
        }
    }

    fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (reply, rx) = mpsc::sync_channel(1);
        let tx = self.tx.lock().map_err(|_| LogError::Closed)?;
        tx.as_ref().ok_or(LogError::Closed)?.send(make(reply)).map_err(|_| LogError::Closed)?;
        drop(tx);
        rx.recv().map_err(|_| LogError::Poisoned)
    }
}

impl Drop for SledEventLog {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        // The writer ends when its channel closes and drops the flusher's channel; join in order.
        let threads = self.threads.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for handle in threads {
            let _ = handle.join();
        }
        let _ = self.shared.log.flush();
    }
}

impl Shared {
    /// The data key of `(subject, key_id)`, from the cache or unwrapped from the key store. `None`
    /// when it does not exist (never created, or destroyed by an erasure).
    fn key(&self, subject: &Pseudonym, key_id: KeyId) -> Result<Option<DataKey>> {
        if self.expired(key_id) {
            return Ok(None);
        }
        {
            let cache = self.cache.read().expect("key cache lock");
            if let Some(k) = cache.keys.get(&(*subject, key_id)) {
                return Ok(Some(k.clone()));
            }
            if cache.erased.contains(subject) {
                return Ok(None);
            }
        }
        let Some(raw) = self.log.get(dek_key(subject.as_bytes(), key_id.0))? else {
            return Ok(None);
        };
        let wrapped = WrappedKey::parse(&raw)?;
        let secret = self.keyring.read().expect("keyring lock").unwrap(subject, key_id, &wrapped)?;
        let key = DataKey::new(&secret);
        let mut cache = self.cache.write().expect("key cache lock");
        // An erasure or a retention sweep may have run while the key was unwrapped.
        if cache.erased.contains(subject) || self.expired(key_id) {
            return Ok(None);
        }
        cache.keys.insert((*subject, key_id), key.clone());
        Ok(Some(key))
    }

    /// The key of `(subject, key_id)` in `cache` (the key cache, read-locked by the caller), unless
    /// it is not cached or past its retention. Used from there, not cloned (see `Writer::stage`).
    fn cached<'c>(&self, cache: &'c KeyCache, subject: &Pseudonym, key_id: KeyId) -> Option<&'c DataKey> {
        (!self.expired(key_id)).then(|| cache.keys.get(&(*subject, key_id))).flatten()
    }

    /// Every stored record from position `from` (inclusive) to the durable head, in position order,
    /// sealed.
    fn records_from(&self, from: Position) -> impl Iterator<Item = Result<StoredRecord>> + Send + '_ {
        let from = from.0.max(1);
        let head = self.head.load(Ordering::Acquire);
        // The chunk holding `from` starts at or before it.
        let start = match self.log.range(event_key(0)..=event_key(from)).next_back() {
            Some(Ok((k, _))) => be_u64(&k[2..]).unwrap_or(from),
            _ => from,
        };
        // The bytes of filed chunks are read into one buffer, reused from chunk to chunk.
        let mut buf = Vec::new();
        self.log
            .range(event_key(start)..=event_key(head))
            .map(move |item| -> Result<Vec<StoredRecord>> {
                self.chunks.with_chunk(&item?.1, &mut buf, codec::decode_chunk)
            })
            .flat_map(|chunk| match chunk {
                Ok(records) => records.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
            .filter(move |r| r.as_ref().map_or(true, |rec| rec.envelope.position.0 >= from))
    }

    /// The note kept for the event at `position` (of type `event_type`), taken, when `takes`
    /// accepts it; one it does not accept stays for another reader.
    fn take_note(&self, position: u64, event_type: &str, takes: TakesNote) -> Option<Note> {
        let mut notes = self.notes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match notes.entry(position) {
            std::collections::btree_map::Entry::Occupied(e) if takes(event_type, &e.get().1) => Some(e.remove().1),
            _ => None,
        }
    }

    /// What a payload sealed under `env`'s key reads as once that key is gone: shredded for an
    /// erased subject, expired past a retention sweep.
    ///
    /// # Errors
    /// Fail closed: a key that is gone without an erasure or a sweep is damage, not forgetting.
    fn without_key(&self, env: &EventEnvelope) -> Result<EventBody> {
        if self.cache.read().expect("key cache lock").erased.contains(&env.subject) {
            Ok(EventBody::Shredded)
        } else if self.expired(env.key_id) {
            Ok(EventBody::Expired)
        } else {
            Err(LogError::MissingKey { subject: env.subject, key_id: env.key_id })
        }
    }

    fn open_record(&self, rec: StoredRecord) -> Result<RecordedEvent> {
        let body = if rec.sealed.is_empty() && rec.envelope.event_type.as_str() == types::ERASURE_FENCE {
            EventBody::Empty
        } else {
            // A cached key opens the record under the cache's read lock: no clone of the key, whose
            // count the writer (sealing the subject's next events) touches on the other core.
            if let Some(key) =
                self.cached(&self.cache.read().expect("key cache lock"), &rec.envelope.subject, rec.envelope.key_id)
            {
                return rec.into_event(key);
            }
            match self.key(&rec.envelope.subject, rec.envelope.key_id)? {
                Some(key) => return rec.into_event(&key),
                None => self.without_key(&rec.envelope)?,
            }
        };
        Ok(RecordedEvent { envelope: rec.envelope, body })
    }

    /// Whether `key_id` is a period key that a retention sweep has destroyed.
    fn expired(&self, key_id: KeyId) -> bool {
        key_id.expires_at().is_some_and(|at| at.0 <= self.retention_swept.load(Ordering::Acquire))
    }

    fn fence(&self, subject: &Pseudonym) -> Result<Option<FenceRecord>> {
        self.log
            .get(fence_key(subject.as_bytes()))?
            .map(|v| postcard::from_bytes(&v).map_err(|e| LogError::Corrupt(e.to_string())))
            .transpose()
    }

    /// The log head at the last completed rotation: fences after it are not final yet.
    fn rotated_at(&self) -> Result<u64> {
        self.log.get(layout::META_ROTATED_AT)?.map(|v| be_u64(&v)).transpose().map(|v| v.unwrap_or(0))
    }

    /// The subject's last sequence: its last index entry's (whose key names the highest run) or
    /// its last unindexed run's, whichever is higher.
    fn stream_head(&self, subject: &Pseudonym) -> Result<Option<Seq>> {
        // Waiting runs first (see `stream_runs`).
        let waiting = self.unindexed.read().expect("unindexed lock").last_seq(subject);
        let indexed = match self.log.scan_prefix(stream_prefix(subject.as_bytes())).next_back() {
            Some(item) => {
                let (k, v) = item?;
                parse_stream_entry(be_u64(&k[34..])?, &v)?.last().map(RunRef::last_seq)
            }
            None => None,
        };
        Ok(indexed.max(waiting).map(Seq))
    }

    /// The runs of `subject`'s stream, in sequence order: its index entries and its unindexed runs.
    fn stream_runs(&self, subject: &Pseudonym) -> Result<Vec<RunRef>> {
        // Waiting runs first: the writer indexes them (in sled) before it drops them here, so a run
        // moved in between is found in the index read after.
        let mut runs = self.unindexed.read().expect("unindexed lock").runs_of(subject);
        for entry in entries_from(&self.log, subject, 0) {
            runs.extend(entry?.0);
        }
        runs.sort_unstable_by_key(|r| r.first_seq);
        runs.dedup();
        if let Some(w) = runs.windows(2).find(|w| w[0].first_seq == w[1].first_seq) {
            return Err(LogError::Corrupt(format!(
                "two stream index entries disagree on the run at sequence {}",
                w[0].first_seq
            )));
        }
        Ok(runs)
    }
}

/// The index entry's run that starts at `subject`'s sequence `seq`: a single entry under that
/// sequence, or a run inside a multi-run entry. A subject's multi-run entries hold increasing,
/// disjoint sequences in key order (each takes all the runs waiting when it was written), so the
/// scan stops at the first that starts past `seq`.
fn covering_run(log: &sled::Db, subject: &Pseudonym, seq: u64) -> Result<Option<RunRef>> {
    for entry in entries_from(log, subject, seq) {
        let (runs, multi) = entry?;
        if let Ok(i) = runs.binary_search_by_key(&seq, |r| r.first_seq) {
            return Ok(Some(runs[i]));
        }
        if multi && runs.first().is_some_and(|r| r.first_seq > seq) {
            break;
        }
    }
    Ok(None)
}

/// Makes applied groups durable: one fsync for every job waiting, then publishes the durable head
/// and answers the callers. A failed fsync poisons the log and fails every waiting caller.
fn run_flusher(shared: &Shared, rx: &Receiver<FlushJob>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let last = jobs.iter().map(|j| j.last_position).max().unwrap_or(0);
        let flushed = if shared.poisoned.load(Ordering::Acquire) {
            Err(LogError::Poisoned)
        } else {
            shared.log.flush().map(|_| ()).map_err(LogError::from)
        };
        match flushed {
            Ok(()) => {
                shared.head.fetch_max(last, Ordering::AcqRel);
            }
            Err(e) => {
                tracing::error!(error = %e, "fsync failed; the log stops accepting writes");
                shared.poisoned.store(true, Ordering::Release);
            }
        }
        let ok = !shared.poisoned.load(Ordering::Acquire);
        for job in jobs {
            for (reply, mut results) in job.replies {
                if !ok {
                    for r in results.iter_mut().filter(|r| r.is_ok()) {
                        *r = Err(LogError::Poisoned);
                    }
                }
                let _ = reply.send(results);
            }
        }
    }
}

/// The single writer: owns stream heads and position assignment. It applies each group to sled
/// and hands it to the flusher; erasures and rotations it makes durable itself.
struct Writer {
    shared: Arc<Shared>,
    heads: PseudonymMap<Option<Seq>>,
    max_group: usize,
    /// Last position applied to sled (durable or not).
    applied: u64,
    flusher: Sender<FlushJob>,
    defer_window: Duration,
    defer_linger: Duration,
    /// Applied groups of deferred appends only, and when their fsync is due at the latest.
    deferred: Option<(Instant, FlushJob)>,
    /// [`LogConfig::max_unindexed_runs`].
    max_unindexed: usize,
    /// Appends the bytes of chunks of at least `chunk_file_min` bytes ([`LogConfig::chunk_file_min_bytes`]).
    appender: ChunkAppender,
    chunk_file_min: usize,
    /// Buffers of chunks written to the chunk files, emptied and handed to the next chunks (at most
    /// [`SPARE_CHUNKS`]).
    spare_chunks: Vec<Vec<u8>>,
}

impl Writer {
    fn run(mut self, rx: &Receiver<Command>) {
        let mut next: Option<Command> = None;
        loop {
            if self.deferred.as_ref().is_some_and(|(at, _)| *at <= Instant::now()) {
                self.release_deferred();
            }
            let due = self.deferred.as_ref().map(|(at, _)| *at);
            let cmd = match next.take() {
                Some(c) => c,
                None => {
                    let received = match due {
                        Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                        None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                    };
                    match received {
                        Ok(c) => c,
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            self.release_deferred();
                            return;
                        }
                    }
                }
            };
            if !matches!(cmd, Command::Append(..)) {
                // Erasures, rotations, sweeps and backups flush themselves; nothing applied before
                // them waits past them.
                self.release_deferred();
            }
            match cmd {
                Command::Append(reqs, reply) => {
                    let mut group = vec![(reqs, reply)];
                    let mut events: usize = group[0].0.iter().map(|r| r.events.len()).sum();
                    let mut linger_until: Option<Instant> = None;
                    while events < self.max_group {
                        let received = match rx.try_recv() {
                            Err(mpsc::TryRecvError::Empty) if self.lingers(&group, events) => {
                                let until = *linger_until.get_or_insert_with(|| self.linger_end());
                                rx.recv_timeout(until.saturating_duration_since(Instant::now())).ok()
                            }
                            other => other.ok(),
                        };
                        match received {
                            Some(Command::Append(reqs, reply)) => {
                                events += reqs.iter().map(|r| r.events.len()).sum::<usize>();
                                group.push((reqs, reply));
                            }
                            Some(other) => {
                                next = Some(other);
                                break;
                            }
                            // Nothing more (or the wait is over, or the channel closed: the next
                            // receive sees that).
                            None => break,
                        }
                    }
                    self.commit_group(group);
                }
                Command::Erase(subject, reply) => {
                    let r = self.guarded(|w| w.erase(&subject));
                    let _ = reply.send(r);
                }
                Command::Rotate(reply) => {
                    let r = self.guarded(Writer::rotate);
                    let _ = reply.send(r);
                }
                Command::Expire(now, reply) => {
                    let r = self.guarded(|w| w.expire(now));
                    let _ = reply.send(r);
                }
                Command::Backup(path, reply) => {
                    let _ = reply.send(self.backup(&path));
                }
            }
        }
    }

    /// Whether a group of `events` waits a moment for more ([`LogConfig::defer_linger`]): a small
    /// one of deferred appends only.
    fn lingers(&self, group: &[(Vec<AppendRequest>, AppendReply)], events: usize) -> bool {
        events < LINGER_BELOW_EVENTS
            && !self.defer_linger.is_zero()
            && !self.defer_window.is_zero()
            && group.iter().all(|(_, reply)| reply.deferred())
    }

    /// When a linger that starts now ends: after [`LogConfig::defer_linger`], and never past the
    /// end of the window of a group already held.
    fn linger_end(&self) -> Instant {
        let end = Instant::now() + self.defer_linger;
        self.deferred.as_ref().map_or(end, |(due, _)| end.min(*due))
    }

    /// Runs a write; a storage failure poisons the writer (see the nonce scheme in `codec`).
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(LogError::Poisoned);
        }
        let r = f(self);
        if let Err(LogError::Storage(_) | LogError::Io { .. }) = &r {
            self.shared.poisoned.store(true, Ordering::Release);
        }
        r
    }

    fn head_of(&mut self, subject: &Pseudonym) -> Result<Option<Seq>> {
        if let Some(h) = self.heads.get(subject) {
            return Ok(*h);
        }
        let h = self.shared.stream_head(subject)?;
        self.heads.insert(*subject, h);
        Ok(h)
    }

    fn commit_group(&mut self, mut group: Vec<(Vec<AppendRequest>, AppendReply)>) {
        if self.shared.poisoned.load(Ordering::Acquire) || !self.shared.open_problems.is_empty() {
            for (reqs, reply) in group {
                let _ = reply.send(reqs.iter().map(|_| Err(LogError::Poisoned)).collect());
            }
            return;
        }
        let mut batch = sled::Batch::default();
        let mut new_keys: Vec<(Pseudonym, KeyId, DataKey)> = Vec::new();
        let mut pos = self.applied;
        let mut results: Vec<Vec<Result<Appended>>> = Vec::with_capacity(group.len());
        // Past the limit, the group's batch also indexes the waiting runs of the oldest marked
        // chunks: one multi-run entry per subject (per MAX_RUNS_PER_ENTRY runs), under its last
        // run's first sequence. Room is made for the group's own deferred runs, and more subjects
        // are indexed than it adds runs, so a backlog shrinks whatever the load (a group larger
        // than the limit still passes it, until the next one).
        let incoming: usize = group.iter().filter(|(_, reply)| reply.deferred()).map(|(reqs, _)| reqs.len()).sum();
        // The entries are written under the read lock, from the runs where they wait.
        let plan = self.shared.unindexed.read().expect("unindexed lock").plan(
            self.max_unindexed.saturating_sub(incoming),
            MAX_INDEX_ENTRIES_PER_GROUP + incoming,
            |subject, runs| {
                for part in runs.chunks(MAX_RUNS_PER_ENTRY) {
                    let last = part.last().expect("chunks are not empty").first_seq;
                    batch.insert(&stream_key(subject.as_bytes(), last)[..], multi_stream_value(part));
                }
            },
        );
        for &at in &plan.cleared {
            batch.remove(&unindexed_key(at)[..]);
        }
        // The group's events go into shared chunks (format 4), one run per request; a chunk is
        // closed when the next run would make it too large. Each request keeps its own stream index
        // entry, pointing at the chunk that holds its run, except a deferred append's: its run waits
        // in memory (`unindexed`), and its chunk is marked so that an open finds it again.
        let mut chunk = next_chunk(&mut self.spare_chunks);
        let mut closed: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut chunk_pos = 0u64;
        let mut chunk_marked = false;
        let mut waiting: Vec<(Pseudonym, RunRef)> = Vec::new();
        for (reqs, reply) in &group {
            let deferred = reply.deferred();
            let mut out = Vec::with_capacity(reqs.len());
            for req in reqs {
                let staged_req = self.stage(req, &mut pos, &mut new_keys, &mut batch);
                out.push(staged_req.map(|(appended, records)| {
                    if !chunk.fits(&records) {
                        let next = next_chunk(&mut self.spare_chunks);
                        closed.push((chunk_pos, std::mem::replace(&mut chunk, next).finish()));
                        if std::mem::take(&mut chunk_marked) {
                            batch.insert(&unindexed_key(chunk_pos)[..], &[][..]);
                        }
                    }
                    if chunk.is_empty() {
                        chunk_pos = appended.first_position.0;
                    }
                    chunk.push_run(&records);
                    let count = u32::try_from(records.len()).expect("checked by stage");
                    let first_seq = appended.last_seq.0 + 1 - u64::from(count);
                    if deferred {
                        chunk_marked = true;
                        waiting.push((req.subject, RunRef { first_seq, pos: chunk_pos, count }));
                    } else {
                        batch.insert(
                            &stream_key(req.subject.as_bytes(), first_seq)[..],
                            &stream_value(chunk_pos, count)[..],
                        );
                    }
                    appended
                }));
            }
            results.push(out);
        }
        if !chunk.is_empty() {
            closed.push((chunk_pos, chunk.finish()));
            if chunk_marked {
                batch.insert(&unindexed_key(chunk_pos)[..], &[][..]);
            }
        }
        // Chunks of a certain size go to the chunk files, which are durable before the batch that
        // points at them is applied (see `chunk_files`).
        let stored = self.store_chunks(closed, &mut batch);
        // Marks and waiting runs change together for readers that take the read lock (`verify`).
        let mut unindexed = (!plan.subjects.is_empty() || !waiting.is_empty())
            .then(|| self.shared.unindexed.write().expect("unindexed lock"));
        let applied = stored.and_then(|()| {
            if pos > self.applied || !plan.subjects.is_empty() {
                self.shared.log.apply_batch(batch).map_err(LogError::from)
            } else {
                Ok(())
            }
        });
        if let Err(e) = applied {
            drop(unindexed);
            tracing::error!(error = %e, "applying a group failed; the log stops accepting writes");
            self.shared.poisoned.store(true, Ordering::Release);
            self.heads.clear();
            for ((_, reply), mut r) in group.into_iter().zip(results) {
                for x in r.iter_mut().filter(|x| x.is_ok()) {
                    *x = Err(LogError::Poisoned);
                }
                let _ = reply.send(r);
            }
            return;
        }
        self.applied = pos;
        self.keep_notes(&mut group, &results);
        if let Some(unindexed) = unindexed.as_mut() {
            unindexed.indexed(&plan);
            for (subject, run) in waiting {
                unindexed.add(subject, run);
            }
        }
        drop(unindexed);
        if !new_keys.is_empty() {
            let mut cache = self.shared.cache.write().expect("key cache lock");
            for (s, id, k) in new_keys {
                cache.keys.insert((s, id), k);
            }
        }
        let replies: Vec<_> = group.into_iter().map(|(_, reply)| reply).zip(results).collect();
        let urgent = self.defer_window.is_zero() || replies.iter().any(|(reply, _)| !reply.deferred());
        let job = match self.deferred.take() {
            Some((due, mut held)) => {
                held.last_position = held.last_position.max(pos);
                held.replies.extend(replies);
                if !urgent && due > Instant::now() {
                    self.deferred = Some((due, held));
                    return;
                }
                held
            }
            None if urgent => FlushJob { last_position: pos, replies },
            None => {
                self.deferred = Some((Instant::now() + self.defer_window, FlushJob { last_position: pos, replies }));
                return;
            }
        };
        self.flush_later(job);
    }

    /// Keeps the notes of a group's deferred requests that were stored, each of one event, under its
    /// position (see `Shared::notes`).
    fn keep_notes(&self, group: &mut [(Vec<AppendRequest>, AppendReply)], results: &[Vec<Result<Appended>>]) {
        let mut kept = Vec::new();
        for ((reqs, reply), results) in group.iter_mut().zip(results) {
            let AppendReply::Deferred(_, notes) = reply else { continue };
            for ((req, note), result) in reqs.iter().zip(std::mem::take(notes)).zip(results) {
                if let (Some(note), Ok(a)) = (note, result) {
                    if a.first_position == a.last_position {
                        kept.push((a.first_position.0, (req.subject, note)));
                    }
                }
            }
        }
        if !kept.is_empty() {
            let mut notes = self.shared.notes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            notes.extend(kept);
            while notes.len() > MAX_NOTES {
                notes.pop_first();
            }
        }
    }

    /// Puts a group's chunks into its batch: each of at least `chunk_file_min` bytes as a pointer to
    /// its bytes in a chunk file, synced before this returns, the others as they are; with
    /// `m/chunk_end` when a file was written.
    fn store_chunks(&mut self, chunks: Vec<(u64, Vec<u8>)>, batch: &mut sled::Batch) -> Result<()> {
        let mut filed = false;
        for (pos, bytes) in chunks {
            if bytes.len() >= self.chunk_file_min {
                let pointer = self.appender.append(&bytes)?;
                batch.insert(&event_key(pos)[..], &pointer.encode()[..]);
                filed = true;
                if self.spare_chunks.len() < SPARE_CHUNKS && bytes.capacity() <= 2 * CHUNK_MAX_BYTES {
                    self.spare_chunks.push(bytes);
                }
            } else {
                batch.insert(&event_key(pos)[..], bytes);
            }
        }
        if filed {
            batch.insert(layout::META_CHUNK_END, &self.appender.sync()?[..]);
        }
        Ok(())
    }

    /// Hands the held deferred groups to the flusher.
    fn release_deferred(&mut self) {
        if let Some((_, job)) = self.deferred.take() {
            self.flush_later(job);
        }
    }

    fn flush_later(&self, job: FlushJob) {
        if let Err(mpsc::SendError(job)) = self.flusher.send(job) {
            for (reply, r) in job.replies {
                let _ = reply.send(r.into_iter().map(|_| Err(LogError::Closed)).collect());
            }
        }
    }

    /// Checks one request and seals its events: the records of its run, in position order. Its
    /// new data keys join `batch`; its events and index entry are left to the caller. A refused
    /// request stages nothing and consumes no position.
    fn stage(
        &mut self,
        req: &AppendRequest,
        pos: &mut u64,
        new_keys: &mut Vec<(Pseudonym, KeyId, DataKey)>,
        batch: &mut sled::Batch,
    ) -> Result<(Appended, Vec<StoredRecord>)> {
        let subject = req.subject;
        if req.events.is_empty() {
            return Err(LogError::EmptyAppend);
        }
        if u32::try_from(req.events.len()).is_err() {
            return Err(LogError::Corrupt("request too large".into()));
        }
        if self.shared.cache.read().expect("key cache lock").erased.contains(&subject) {
            return Err(LogError::Erased(subject));
        }
        let head = self.head_of(&subject)?;
        if !req.expected.admits(head) {
            return Err(LogError::Conflict { subject, expected: req.expected, actual: head });
        }
        // Every event's key first, so that a refused event leaves nothing staged.
        let now = UtcMicros::now().0.max(self.shared.retention_swept.load(Ordering::Acquire));
        let mut keys = Vec::with_capacity(req.events.len());
        for ev in &req.events {
            let key_id = ev.retention.key_for(ev.time).map_err(|e| LogError::Retention(e.to_string()))?;
            if key_id.expires_at().is_some_and(|at| at.0 <= now) {
                return Err(LogError::PastRetention { key_id });
            }
            keys.push(key_id);
        }
        // Each key the request seals with: `None` for one in the key cache, used from there under its
        // read lock (held to the end of sealing) rather than cloned, since a clone counts on a line
        // that the views' reader, opening the subject's events on the other core, counts on too. The
        // lock is let go only to fetch a key that is not cached (`Shared::key` may insert it).
        let mut cache = Some(self.shared.cache.read().expect("key cache lock"));
        let mut sealing: Vec<(KeyId, Option<DataKey>)> = Vec::new();
        let mut fresh: Vec<(KeyId, SecretBytes)> = Vec::new();
        for &key_id in &keys {
            if sealing.iter().any(|(id, _)| *id == key_id) {
                continue;
            }
            let key = match new_keys.iter().find(|(s, id, _)| *s == subject && *id == key_id) {
                Some((_, _, k)) => Some(k.clone()),
                None if cache.as_ref().is_some_and(|c| self.shared.cached(c, &subject, key_id).is_some()) => None,
                None => {
                    cache = None;
                    Some(match self.shared.key(&subject, key_id)? {
                        Some(k) => k,
                        None => {
                            let secret = SecretBytes::random();
                            let k = DataKey::new(&secret);
                            fresh.push((key_id, secret));
                            k
                        }
                    })
                }
            };
            sealing.push((key_id, key));
        }
        // Only this thread removes keys from the cache (erasures, retention), so the cached keys found
        // above are there; each is taken from it (a missing one refuses the request) before anything
        // is staged.
        let cache = match cache {
            Some(c) => c,
            None => self.shared.cache.read().expect("key cache lock"),
        };
        let sealing: Vec<(KeyId, &DataKey)> = sealing
            .iter()
            .map(|(id, k)| match k {
                Some(k) => Ok((*id, k)),
                None => self
                    .shared
                    .cached(&cache, &subject, *id)
                    .map(|k| (*id, k))
                    .ok_or(LogError::MissingKey { subject, key_id: *id }),
            })
            .collect::<Result<_>>()?;
        for (key_id, secret) in fresh {
            let wrapped = self.shared.keyring.read().expect("keyring lock").wrap(&subject, key_id, &secret);
            batch.insert(&dek_key(subject.as_bytes(), key_id.0)[..], &wrapped.to_bytes()[..]);
            if let Some(at) = key_id.expires_at() {
                let at = u64::try_from(at.0).unwrap_or(0);
                batch.insert(&retention_key(at, subject.as_bytes(), key_id.0)[..], &[][..]);
            }
            let k = sealing.iter().find(|(id, _)| *id == key_id).map(|(_, k)| (*k).clone()).expect("key staged above");
            new_keys.push((subject, key_id, k));
        }
        let first = *pos + 1;
        let first_seq = head.map_or(0, |s| s.0) + 1;
        let mut seq = first_seq - 1;
        let mut records = Vec::with_capacity(req.events.len());
        for (ev, key_id) in req.events.iter().zip(keys) {
            seq += 1;
            *pos += 1;
            let envelope = EventEnvelope {
                position: Position(*pos),
                subject,
                seq: Seq(seq),
                event_type: ev.event_type.clone(),
                schema_version: ev.schema_version,
                purpose: ev.purpose.clone(),
                time: ev.time,
                key_id,
            };
            let key = sealing.iter().find(|(id, _)| *id == key_id).expect("key staged above").1;
            records.push(StoredRecord::seal(envelope, key, self.shared.incarnation, &ev.payload));
        }
        drop(cache);
        // The writer's head moves now, for the group's later requests of the subject: a group whose
        // apply fails clears every head (the log is poisoned), so none is left ahead of the log.
        self.heads.insert(subject, Some(Seq(seq)));
        Ok((Appended { first_position: Position(first), last_position: Position(*pos), last_seq: Seq(seq) }, records))
    }

    fn erase(&mut self, subject: &Pseudonym) -> Result<ErasureReceipt> {
        let shared = Arc::clone(&self.shared);
        if !shared.open_problems.is_empty() {
            return Err(LogError::Poisoned);
        }
        let digest = hex::encode(Sha256::digest(subject.as_bytes()));
        let epoch = shared.keyring.read().expect("keyring lock").current_epoch().0;
        let head_before = self.applied;
        if let Some(f) = shared.fence(subject)? {
            let events = self.head_of(subject)?.map_or(0, |s| s.0.saturating_sub(1));
            return Ok(ErasureReceipt {
                subject_digest: digest,
                key_ids: Vec::new(),
                wrapped_under_epoch: epoch,
                fence_position: Position(f.position),
                log_head_before: Position(head_before),
                log_head_after: Position(head_before),
                erased_at: UtcMicros(f.time),
                events_shredded: events,
                newly_erased: false,
            });
        }
        let seq = self.head_of(subject)?.map_or(0, |s| s.0) + 1;
        let pos = head_before + 1;
        let now = UtcMicros::now();
        let envelope = EventEnvelope {
            position: Position(pos),
            subject: *subject,
            seq: Seq(seq),
            event_type: EventType::parse(types::ERASURE_FENCE).expect("valid type"),
            schema_version: SchemaVersion::new(1).expect("valid version"),
            purpose: Purpose::necessary(),
            time: now,
            key_id: KeyId(0),
        };
        let fence = postcard::to_stdvec(&FenceRecord { position: pos, time: now.0 }).expect("fence serializes");
        // One atomic batch: the fence event, its index entry, the fence record, and the removal of
        // every data key of the subject.
        let mut batch = sled::Batch::default();
        batch.insert(&event_key(pos)[..], codec::encode_chunk(&[StoredRecord::system(envelope)]));
        batch.insert(&stream_key(subject.as_bytes(), seq)[..], &stream_value(pos, 1)[..]);
        batch.insert(&fence_key(subject.as_bytes())[..], fence);
        let mut key_ids = Vec::new();
        for item in shared.log.scan_prefix(dek_prefix(subject.as_bytes())) {
            let (k, _) = item?;
            let key_id = KeyId(be_u32(&k[34..])?);
            if let Some(at) = key_id.expires_at() {
                let at = u64::try_from(at.0).unwrap_or(0);
                batch.remove(&retention_key(at, subject.as_bytes(), key_id.0)[..]);
            }
            key_ids.push(key_id);
            batch.remove(k);
        }
        {
            // Readers stop using the subject's keys before the batch lands.
            let mut cache = shared.cache.write().expect("key cache lock");
            cache.erased.insert(*subject);
            cache.keys.retain(|(s, _), _| s != subject);
        }
        // What the subject's notes said goes too (a reader would not be handed them any more).
        shared.notes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|_, (s, _)| s != subject);
        shared.log.apply_batch(batch)?;
        shared.log.flush()?;
        self.applied = pos;
        shared.head.fetch_max(pos, Ordering::AcqRel);
        self.heads.insert(*subject, Some(Seq(seq)));
        shared.rotation_pending.store(true, Ordering::Release);
        Ok(ErasureReceipt {
            subject_digest: digest,
            key_ids,
            wrapped_under_epoch: epoch,
            fence_position: Position(pos),
            log_head_before: Position(head_before),
            log_head_after: Position(pos),
            erased_at: now,
            events_shredded: seq - 1,
            newly_erased: true,
        })
    }

    /// Destroys every period key whose retention window ended at or before `now` (R-RETAIN-1): a
    /// range scan of the retention index, then one atomic batch that removes the keys and their
    /// index entries and advances the sweep mark. Final for the data directory after the next
    /// rotation, like an erasure.
    fn expire(&mut self, now: UtcMicros) -> Result<RetentionReport> {
        let shared = Arc::clone(&self.shared);
        let through = now.0.max(shared.retention_swept.load(Ordering::Acquire)).max(0);
        let upper = u64::try_from(through).unwrap_or(0);
        let mut batch = sled::Batch::default();
        let mut subjects = HashSet::new();
        let mut destroyed = 0u64;
        let range = retention_key(0, &[0; 32], 0)..=retention_key(upper, &[0xff; 32], u32::MAX);
        for item in shared.log.range(range) {
            let (k, _) = item?;
            if k.len() != 46 {
                return Err(LogError::Corrupt("malformed retention index entry".into()));
            }
            let subject = Pseudonym::from_bytes(k[10..42].try_into().expect("32 bytes"));
            let key_id = be_u32(&k[42..])?;
            let dek = dek_key(subject.as_bytes(), key_id);
            batch.remove(k);
            // An index entry without its key (a restored copy's leftover) destroys nothing.
            if shared.log.contains_key(dek)? {
                batch.remove(&dek[..]);
                subjects.insert(subject);
                destroyed += 1;
            }
        }
        batch.insert(layout::META_RETENTION_SWEPT, &upper.to_be_bytes()[..]);
        if destroyed > 0 {
            batch.insert(layout::META_RETENTION_PENDING, &[1u8][..]);
        }
        // Readers stop using the keys before the batch lands.
        shared.retention_swept.fetch_max(through, Ordering::AcqRel);
        shared
            .cache
            .write()
            .expect("key cache lock")
            .keys
            .retain(|(_, id), _| id.expires_at().is_none_or(|at| at.0 > through));
        if destroyed > 0 {
            // Notes are seconds old, but none is kept past a destroyed key's sweep.
            shared.notes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        }
        shared.log.apply_batch(batch)?;
        shared.log.flush()?;
        shared.head.fetch_max(self.applied, Ordering::AcqRel);
        if destroyed > 0 {
            shared.rotation_pending.store(true, Ordering::Release);
        }
        Ok(RetentionReport {
            swept_through: UtcMicros(through),
            keys_destroyed: destroyed,
            subjects: subjects.len() as u64,
            rotation_pending: shared.rotation_pending.load(Ordering::Acquire),
        })
    }

    /// Copies the whole database to `path` while no write runs: the writer holds every command
    /// until the copy is done. Everything applied is made durable first, so the copy holds exactly
    /// the durable log.
    fn backup(&mut self, path: &Path) -> Result<BackupReport> {
        let shared = Arc::clone(&self.shared);
        shared.log.flush()?;
        shared.head.fetch_max(self.applied, Ordering::AcqRel);
        let (key_store, epoch) = {
            let keyring = shared.keyring.read().expect("keyring lock");
            (keyring.id().to_owned(), keyring.current_epoch().0)
        };
        let header = BackupHeader {
            format: 1,
            layout: layout::LAYOUT_VERSION,
            created_at: UtcMicros::now(),
            key_store,
            epoch,
            head: self.applied,
            incarnation: shared.incarnation,
        };
        backup::write(&shared.log, &shared.chunks, &header, path)
    }

    fn rotate(&mut self) -> Result<RotationReport> {
        let shared = Arc::clone(&self.shared);
        let mut keyring = shared.keyring.write().expect("keyring lock");
        let plan = keyring.begin_rotation()?;
        let (from, to) = (plan.from.0, plan.to.0);
        let mut batch = sled::Batch::default();
        let mut n = 0u64;
        for item in shared.log.scan_prefix(layout::KEYS) {
            let (k, v) = item?;
            if k.len() != 38 {
                return Err(LogError::Corrupt("malformed key record".into()));
            }
            let subject = Pseudonym::from_bytes(k[2..34].try_into().expect("32 bytes"));
            let key_id = KeyId(be_u32(&k[34..])?);
            let wrapped = WrappedKey::parse(&v)?;
            let secret = keyring.unwrap(&subject, key_id, &wrapped)?;
            batch.insert(k, &keyring.wrap(&subject, key_id, &secret).to_bytes()[..]);
            n += 1;
        }
        batch.insert(layout::META_EPOCH, &to.to_be_bytes()[..]);
        batch.remove(layout::META_RETENTION_PENDING);
        shared.log.apply_batch(batch)?;
        shared.log.flush()?;
        shared.head.fetch_max(self.applied, Ordering::AcqRel);
        keyring.finish_rotation(plan)?;
        drop(keyring);
        let head = self.applied;
        let rotated_at = shared.rotated_at()?;
        let mut finalized = 0;
        for item in shared.log.scan_prefix(layout::FENCES) {
            let (_, v) = item?;
            let f: FenceRecord = postcard::from_bytes(&v).map_err(|e| LogError::Corrupt(e.to_string()))?;
            if f.position > rotated_at {
                finalized += 1;
            }
        }
        shared.log.insert(layout::META_ROTATED_AT, &head.to_be_bytes())?;
        shared.log.flush()?;
        shared.rotation_pending.store(false, Ordering::Release);
        Ok(RotationReport { from_epoch: from, to_epoch: to, keys_rewrapped: n, erasures_finalized: finalized })
    }
}

impl EventStore for SledEventLog {
    fn pseudonymize(&self, id: &SubjectId) -> Pseudonym {
        self.shared.keyring.read().expect("keyring lock").pseudonymize(id)
    }

    fn append_batch(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended>> {
        let n = requests.len();
        match self.send(|reply| Command::Append(requests, AppendReply::Wait(reply))) {
            Ok(results) => results,
            Err(e) => {
                let code = e.code();
                (0..n).map(|_| Err(if code == "log_closed" { LogError::Closed } else { LogError::Poisoned })).collect()
            }
        }
    }

    fn append_batch_then(&self, requests: Vec<AppendRequest>, done: crate::store::AppendDone) {
        self.send_append(requests, AppendReply::Call(done));
    }

    fn append_batch_deferred(&self, requests: Vec<AppendRequest>, done: crate::store::AppendDone) {
        self.send_append(requests, AppendReply::Deferred(done, Vec::new()));
    }

    fn append_batch_deferred_noted(&self, requests: Vec<AppendRequest>, notes: Vec<Option<Note>>, done: AppendDone) {
        self.send_append(requests, AppendReply::Deferred(done, notes));
    }

    fn read_stream(&self, subject: &Pseudonym) -> Result<Vec<RecordedEvent>> {
        let mut out = Vec::new();
        let head = self.shared.head.load(Ordering::Acquire);
        // Requests of one subject in one group share a chunk: fetch it once.
        let mut chunk: Option<(u64, sled::IVec)> = None;
        for RunRef { first_seq, pos, count } in self.shared.stream_runs(subject)? {
            if pos > head {
                break; // applied, not yet durable: invisible to readers
            }
            let raw = match chunk.take() {
                Some((at, raw)) if at == pos => raw,
                _ => {
                    let value = self.shared.log.get(event_key(pos))?;
                    let value = value
                        .ok_or_else(|| LogError::Corrupt(format!("stream index points to missing position {pos}")))?;
                    self.shared.chunks.resolve(value)?
                }
            };
            let records = codec::stream_records(&raw, subject, first_seq, count).map_err(|e| match e {
                LogError::Corrupt(why) => LogError::Corrupt(format!("chunk at {pos}: {why}")),
                other => other,
            })?;
            for rec in records {
                out.push(self.shared.open_record(rec)?);
            }
            chunk = Some((pos, raw));
        }
        Ok(out)
    }

    fn read_all(&self, from: Position) -> Box<dyn Iterator<Item = Result<RecordedEvent>> + Send + '_> {
        self.read_all_opening(from, |_| true)
    }

    fn read_all_opening(
        &self,
        from: Position,
        opens: fn(&str) -> bool,
    ) -> Box<dyn Iterator<Item = Result<RecordedEvent>> + Send + '_> {
        let shared = &self.shared;
        Box::new(shared.records_from(from).map(move |r| {
            r.and_then(|rec| {
                if opens(rec.envelope.event_type.as_str()) {
                    shared.open_record(rec)
                } else {
                    Ok(RecordedEvent { envelope: rec.envelope, body: EventBody::Unopened })
                }
            })
        }))
    }

    fn read_all_opening_noted(
        &self,
        from: Position,
        opens: fn(&str) -> bool,
        takes: TakesNote,
    ) -> Box<dyn Iterator<Item = Result<(RecordedEvent, Option<Note>)>> + Send + '_> {
        let shared = &self.shared;
        Box::new(shared.records_from(from).map(move |r| {
            let rec = r?;
            let ty = rec.envelope.event_type.as_str();
            if !opens(ty) {
                return Ok((RecordedEvent { envelope: rec.envelope, body: EventBody::Unopened }, None));
            }
            if let Some(note) = shared.take_note(rec.envelope.position.0, ty, takes) {
                // The note stands for a payload that could be opened; a tombstone comes without it.
                // Its key is not looked up: a note is kept only for an event sealed under a key the
                // cache holds, or is given with the event's group before a reader can reach the event,
                // and a key leaves the cache only by an erasure, which marks its subject erased first,
                // or by a retention sweep, which first moves the swept time past the key's expiry.
                // Those two marks (`without_key`) answer for the key, without the cache miss of
                // finding it among every subject's.
                return Ok(match shared.without_key(&rec.envelope).ok() {
                    None => (RecordedEvent { envelope: rec.envelope, body: EventBody::Unopened }, Some(note)),
                    Some(body) => (RecordedEvent { envelope: rec.envelope, body }, None),
                });
            }
            shared.open_record(rec).map(|e| (e, None))
        }))
    }

    fn head(&self) -> Position {
        Position(self.shared.head.load(Ordering::Acquire))
    }

    fn writable(&self) -> bool {
        !self.shared.poisoned.load(Ordering::Acquire)
            && self.shared.open_problems.is_empty()
            && self.tx.lock().is_ok_and(|tx| tx.is_some())
    }

    fn rotation_pending(&self) -> bool {
        self.shared.rotation_pending.load(Ordering::Acquire)
    }

    fn runs_waiting_for_index(&self) -> Option<u64> {
        Some(self.shared.unindexed.read().expect("unindexed lock").len() as u64)
    }

    fn waiting_runs_indexed(&self) -> Option<IndexedRuns> {
        Some(self.shared.unindexed.read().expect("unindexed lock").indexed_so_far())
    }

    /// From the key cache's set of erased subjects: filled from the fences at open, and by each
    /// erasure before it answers.
    fn is_erased(&self, subject: &Pseudonym) -> bool {
        self.shared.cache.read().expect("key cache lock").erased.contains(subject)
    }

    fn subject_state(&self, subject: &Pseudonym) -> Result<SubjectState> {
        if let Some(f) = self.shared.fence(subject)? {
            return Ok(SubjectState::Erased {
                fence: Position(f.position),
                erased_at: UtcMicros(f.time),
                rotation_pending: f.position > self.shared.rotated_at()?,
            });
        }
        let mut key_ids = Vec::new();
        for item in self.shared.log.scan_prefix(dek_prefix(subject.as_bytes())) {
            key_ids.push(KeyId(be_u32(&item?.0[34..])?));
        }
        let events = self.shared.stream_head(subject)?.map_or(0, |s| s.0);
        if key_ids.is_empty() && events == 0 {
            return Ok(SubjectState::Unknown);
        }
        Ok(SubjectState::Active { events, key_ids })
    }

    fn erase(&self, subject: &Pseudonym) -> Result<ErasureReceipt> {
        self.send(|reply| Command::Erase(*subject, reply))?
    }

    fn rotate_keys(&self) -> Result<RotationReport> {
        self.send(Command::Rotate)?
    }

    fn expire_keys(&self, now: UtcMicros) -> Result<RetentionReport> {
        self.send(|reply| Command::Expire(now, reply))?
    }

    fn backup(&self, path: &Path) -> Result<BackupReport> {
        self.send(|reply| Command::Backup(path.to_path_buf(), reply))?
    }

    fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            rotation_pending: self.shared.rotation_pending.load(Ordering::Acquire),
            current_epoch: self.current_epoch(),
            ..VerifyReport::default()
        };
        let mut last_seq: HashMap<Pseudonym, u64> = HashMap::new();
        let mut fenced_at: HashMap<Pseudonym, u64> = HashMap::new();
        let rotated_at = self.shared.rotated_at()?;
        let mut expected_pos = 1u64;
        let head = self.shared.head.load(Ordering::Acquire);
        report.problems.extend(self.shared.open_problems.iter().cloned());
        // The marks and the runs waiting in memory (at most the limit of them) as of one moment: the
        // writer changes both while it holds the write lock. Then the index, as the walk needs it
        // (the writer writes an entry before it drops a run).
        let mut marks = BTreeSet::new();
        let mut waiting: HashMap<Pseudonym, Vec<RunRef>> = HashMap::new();
        let waiting_chunks: BTreeSet<u64> = {
            let unindexed = self.shared.unindexed.read().expect("unindexed lock");
            for item in self.shared.log.scan_prefix(layout::UNINDEXED) {
                match be_u64(&item?.0[2..]) {
                    Ok(pos) => {
                        marks.insert(pos);
                    }
                    Err(_) => report.problems.push("malformed unindexed mark".into()),
                }
            }
            waiting.extend(unindexed.all().map(|(s, runs)| (*s, runs.clone())));
            unindexed.chunks().collect()
        };
        // A waiting run's chunk is marked (else an open would not find the run again), and a mark
        // names a chunk with a waiting run (else every open reads it for nothing).
        for &pos in waiting_chunks.iter().filter(|&&p| p <= head) {
            if !marks.contains(&pos) {
                report.problems.push(format!("chunk at {pos} holds a run waiting for the index but is not marked"));
            }
        }
        for &pos in marks.iter().filter(|&&p| p <= head) {
            if !waiting_chunks.contains(&pos) {
                report.problems.push(format!("chunk at {pos} is marked but holds no run waiting for the index"));
            }
        }
        let run_at = |subject: &Pseudonym, seq: u64| -> Result<Option<RunRef>> {
            let runs = waiting.get(subject).map_or(&[][..], Vec::as_slice);
            if let Ok(i) = runs.binary_search_by_key(&seq, |r| r.first_seq) {
                return Ok(Some(runs[i]));
            }
            covering_run(&self.shared.log, subject, seq)
        };
        for item in self.shared.log.range(event_key(1)..=event_key(head)) {
            let (k, v) = item?;
            let chunk_pos = be_u64(&k[2..])?;
            let (records, v) = match self.shared.chunks.resolve(v).and_then(|v| Ok((codec::decode_chunk(&v)?, v))) {
                Ok(r) => r,
                Err(e) => {
                    let problem = format!("chunk at {chunk_pos}: {e}");
                    // (The open may have named it already.)
                    if !self.shared.open_problems.contains(&problem) {
                        report.problems.push(problem);
                    }
                    expected_pos = chunk_pos + 1;
                    continue;
                }
            };
            // Every record is covered by exactly one stream index entry (or waiting run) pointing at
            // this chunk: the first record of each run finds the run of its (subject, seq), whose count then
            // covers that many of the subject's next records in the chunk, with consecutive seqs.
            // Formats 1–3 hold one request of one subject: one entry covers the whole chunk.
            let shared_chunk = codec::is_shared_chunk(&v);
            let first_subject = records[0].envelope.subject;
            let mut runs: HashMap<Pseudonym, (u64, u32)> = HashMap::new();
            let mut entries = 0usize;
            for rec in records {
                let env = rec.envelope.clone();
                let pos = env.position.0;
                if pos != expected_pos {
                    report.problems.push(format!("position {expected_pos} missing before {pos}"));
                }
                expected_pos = pos + 1;
                report.events += 1;
                if !shared_chunk && env.subject != first_subject {
                    report.problems.push(format!("position {pos}: chunk at {chunk_pos} mixes subjects"));
                }
                let prev = last_seq.insert(env.subject, env.seq.0).unwrap_or(0);
                if env.seq.0 != prev + 1 {
                    report.problems.push(format!("position {pos}: sequence {} follows {prev}", env.seq.0));
                }
                match runs.get_mut(&env.subject) {
                    Some((next, left)) if *left > 0 => {
                        if env.seq.0 != *next {
                            report.problems.push(format!(
                                "position {pos}: sequence {} where its stream index entry has {next}",
                                env.seq.0
                            ));
                        }
                        *next = env.seq.0 + 1;
                        *left -= 1;
                    }
                    _ => {
                        entries += 1;
                        match run_at(&env.subject, env.seq.0) {
                            Ok(Some(RunRef { pos: p, count, .. })) if p == chunk_pos && count > 0 => {
                                runs.insert(env.subject, (env.seq.0 + 1, count - 1));
                            }
                            _ => report.problems.push(format!(
                                "chunk at {chunk_pos}: stream index entry missing or wrong (position {pos})"
                            )),
                        }
                    }
                }
                match self.shared.open_record(rec) {
                    Ok(RecordedEvent { body: EventBody::Plain(_), .. }) => report.decrypted += 1,
                    Ok(RecordedEvent { body: EventBody::Shredded, .. }) => report.tombstones += 1,
                    Ok(RecordedEvent { body: EventBody::Expired, .. }) => report.expired += 1,
                    Ok(RecordedEvent { body: EventBody::Empty, .. }) => {
                        report.fences += 1;
                        fenced_at.insert(env.subject, pos);
                    }
                    // `open_record` opens every record it is given.
                    Ok(RecordedEvent { body: EventBody::Unopened, .. }) | Err(_) => report.failures.push(Position(pos)),
                }
            }
            if runs.values().any(|&(_, left)| left > 0) {
                report.problems.push(format!(
                    "chunk at {chunk_pos}: a stream index entry counts more events than the chunk holds"
                ));
            }
            if !shared_chunk && entries > 1 {
                report.problems.push(format!("chunk at {chunk_pos}: holds more than one append"));
            }
        }
        // The stream index holds nothing else: each subject's entries tile its sequences 1..=last
        // without gap or overlap. With the walk above, every entry then points at a chunk holding
        // exactly its events.
        // One subject at a time, in key order: its entries and its waiting runs, sorted.
        let tile = |report: &mut VerifyReport, subject: Pseudonym, mut runs: Vec<RunRef>| {
            runs.sort_unstable_by_key(|r| r.first_seq);
            runs.dedup();
            let mut next = 1u64;
            for r in runs {
                // Applied but not yet durable, and so is everything after it in this stream.
                if r.pos > head {
                    break;
                }
                if r.first_seq != next || r.count == 0 {
                    report.problems.push(format!(
                        "stream index of {}…: entry at sequence {} where {next} was due",
                        &subject.to_hex()[..12],
                        r.first_seq
                    ));
                }
                next = r.first_seq.saturating_add(u64::from(r.count));
            }
            let last = last_seq.get(&subject).copied().unwrap_or(0);
            if next != last.saturating_add(1) {
                report.problems.push(format!(
                    "stream index of {}…: entries cover sequences up to {}, the log holds {last}",
                    &subject.to_hex()[..12],
                    next.saturating_sub(1)
                ));
            }
        };
        // A subject's entries end: its waiting runs join them.
        let mut close = |report: &mut VerifyReport, (s, mut acc): (Pseudonym, Vec<RunRef>)| {
            acc.extend(waiting.remove(&s).unwrap_or_default());
            tile(report, s, acc);
        };
        let mut current: Option<(Pseudonym, Vec<RunRef>)> = None;
        for item in self.shared.log.scan_prefix(layout::STREAMS) {
            let (k, v) = item?;
            let parsed = if k.len() == 42 {
                be_u64(&k[34..]).and_then(|seq| parse_stream_entry(seq, &v))
            } else {
                Err(LogError::Corrupt(String::new()))
            };
            let Ok(runs) = parsed else {
                report.problems.push("malformed stream index entry".into());
                continue;
            };
            let subject = Pseudonym::from_bytes(k[2..34].try_into().expect("32 bytes"));
            match &mut current {
                Some((s, acc)) if *s == subject => acc.extend(runs),
                _ => {
                    if let Some(done) = current.replace((subject, runs)) {
                        close(&mut report, done);
                    }
                }
            }
        }
        if let Some(done) = current.take() {
            close(&mut report, done);
        }
        // Subjects whose runs all wait.
        for (s, runs) in waiting {
            tile(&mut report, s, runs);
        }
        report.subjects = last_seq.len() as u64;
        let cache = self.shared.cache.read().expect("key cache lock");
        report.erased_subjects = cache.erased.len() as u64;
        let mut subjects: Vec<_> = last_seq.into_iter().collect();
        subjects.sort_unstable_by_key(|(s, _)| *s);
        report.per_subject = subjects
            .into_iter()
            .map(|(s, events)| SubjectVerify {
                pseudonym: s.to_hex(),
                events,
                state: match (cache.erased.contains(&s), fenced_at.get(&s)) {
                    (false, _) => "active".into(),
                    (true, Some(&at)) if at > rotated_at => "erased (rotation pending)".into(),
                    (true, _) => "erased".into(),
                },
            })
            .collect();
        Ok(report)
    }
}
