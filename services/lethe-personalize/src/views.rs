//! The live feature views of `lethe serve`: a [`Projector`] kept in memory, restored at start from
//! a sealed checkpoint (or rebuilt from the log), kept current by [`Views::catch_up`], and an
//! [`ErasureHook`] so that an erasure removes the subject from every view at once and the access
//! export includes the subject's features.
//!
//! **Checkpoints.** Views are personal data, so they are never written to disk in plaintext (sled
//! and the file system keep deleted bytes: a plaintext view entry would survive an erasure). They
//! are written only as the sealed checkpoints of `lethe_features::snapshot` (AES-256-GCM, the log
//! position in the authenticated header), in `<data>/views/checkpoint` (temp file, fsync, rename,
//! fsync of the folder). The key of a checkpoint is a 32-byte blob of the key store, sealed under
//! the master secret: `views-key-<generation>` ([`Keyring::put_blob`]). The key files are only
//! ever listed, read and destroyed through the [`Keyring`] ([`Keyring::blob_names`],
//! [`Keyring::destroy_blob`]): only `lethe-crypto` touches secret files.
//!
//! [`Views::open`] restores the checkpoint with the newest key that opens it and replays only the
//! events after its position ([`Projector::catch_up`]); it falls back to a full replay (with a
//! warning, never an error) when there is no checkpoint, no key opens it, its format version is
//! unknown, it is truncated or corrupt, the policies' gate changed, or it lies ahead of the log.
//! [`Views::origin`] says which happened. [`Views::checkpoint`] and [`Views::checkpoint_if_due`]
//! write a new checkpoint under the current key (`lethe serve` does it periodically and at
//! shutdown).
//!
//! **Erasure (invariant 5, R-ERASE-3).** Deleting or overwriting a checkpoint file does not
//! destroy its bytes; destroying its key does. So [`ErasureHook::forget`] forgets the subject, then
//! stores a *new* key under a new generation, writes a fresh checkpoint under it, and only then
//! destroys every other generation's key file (overwritten, synced, unlinked): every checkpoint
//! that held the subject, wherever its bytes went, no longer opens. The erasure fails (and stays
//! open, to be retried) only if an old key cannot be destroyed (or the key store cannot be opened
//! to destroy it); if the new checkpoint cannot be written, the next start replays the log.
//! [`Views::open`] also moves to a new generation at every start, so a checkpoint that outlived an
//! erasure made while the views were not running (or an interrupted rotation) is unreadable once
//! the views are back; `lethe erase` and `lethe restore`, which run without the views, call
//! [`discard_checkpoint`].
//!
//! **Retention (R-RETAIN-1, invariant 5).** A retention sweep destroys the keys of expired periods,
//! so their events no longer decrypt; the views still hold what was derived from them, in memory
//! and in the checkpoint. [`ErasureHook::retention_shredded`], which the sweep of `lethe serve`
//! calls, rebuilds the projector by a full replay of the log (the expired events are left out, a
//! subject held only by them is gone), swaps it in, and then re-keys the checkpoint exactly as a
//! forget does. The replay runs beside the live views (twice the memory for its duration) and
//! holds back checkpoints and erasures, not reads or catch-ups. A sweep made while the views are
//! not running (`lethe retention sweep`) is not seen by them, so that command discards the
//! checkpoint ([`discard_checkpoint`]) when it destroyed keys, and the next start replays.
//!
//! Lock order: the checkpoint state, then the projector. Checkpoints are sealed under the
//! projector's read lock; a forget or a retention rebuild holds the checkpoint state throughout, so
//! no checkpoint taken before it can be written after it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use lethe_crypto::{CryptoError, Keyring, MasterSource, SecretBytes};
use lethe_domain::{Position, Pseudonym, Purpose, RecordedEvent};
use lethe_eventlog::{EventStore, Note};
use lethe_features::{FeatureError, Prepared, Projector, ProjectorConfig};
use lethe_policy::Policies;
use lethe_privacy::ErasureHook;

/// Folder of the feature-view checkpoint inside the data directory.
pub const VIEWS_DIR: &str = "views";

/// Most events [`Views::catch_up`] applies under one hold of the write lock.
const CATCH_UP_BATCH: usize = 4_096;

/// The checkpoint file inside [`VIEWS_DIR`].
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Prefix of the key store blobs holding checkpoint keys: `views-key-<generation>`.
pub const KEY_BLOB_PREFIX: &str = "views-key-";

/// What can go wrong with the views or their checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    /// Building the projection (the gate is missing from the policies, the log cannot be read).
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// The key store cannot be opened or written, or a checkpoint key cannot be destroyed.
    #[error("key store: {0}")]
    Keys(#[from] CryptoError),
    /// A checkpoint file cannot be read, written or destroyed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl ViewsError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Features(e) => e.code(),
            Self::Keys(_) => "key_store_error",
            Self::Io { .. } => "checkpoint_io",
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io { path: path.to_path_buf(), source }
    }
}

/// How the views in memory were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Restored from the checkpoint covering the log up to `position`, then `caught_up` events
    /// after it were applied.
    Restored { position: Position, caught_up: u64 },
    /// Replayed from the whole log (`events` events). `fallback` is why no checkpoint was used:
    /// `no_checkpoint`, `checkpoint_unreadable` (IO), `key_store_error`, `key_missing`,
    /// `checkpoint_tampered` (opens under no stored key), `checkpoint_truncated`,
    /// `checkpoint_format`, `checkpoint_version`, `snapshot_corrupt`, `policy_changed` (the
    /// policies' gate differs from the checkpoint's) or `checkpoint_ahead_of_log` (the log was
    /// replaced); `None` when [`Views::replay`] was asked for.
    Replayed { events: u64, fallback: Option<&'static str> },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Restored { position, caught_up } => {
                write!(f, "restored from the checkpoint at position {} and caught up {caught_up} events", position.0)
            }
            Self::Replayed { events, fallback: Some(why) } => write!(f, "replayed {events} events ({why})"),
            Self::Replayed { events, fallback: None } => write!(f, "replayed {events} events"),
        }
    }
}

/// A checkpoint written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The log position it covers.
    pub position: Position,
    /// The generation of its key (`views-key-<generation>`).
    pub generation: u64,
    /// Its size.
    pub bytes: usize,
}

/// The feature views, shared by the handlers and the background catch-up.
pub struct Views {
    projector: RwLock<Projector>,
    store: Arc<dyn EventStore>,
    origin: Origin,
    /// `None` for views built by [`Views::replay`]: they are never checkpointed.
    sealer: Option<Sealer>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl Views {
    /// Replays the whole log into fresh views that are never checkpointed (tests, benches and
    /// offline commands).
    ///
    /// # Errors
    /// The policies lack the personalization purpose, or the log cannot be read.
    pub fn replay(store: Arc<dyn EventStore>, policies: &Policies) -> Result<Self, FeatureError> {
        let projector = Projector::replay(store.as_ref(), ProjectorConfig::from_policies(policies)?)?;
        let origin = Origin::Replayed { events: projector.stats().events, fallback: None };
        Ok(Self { projector: RwLock::new(projector), store, origin, sealer: None })
    }

    /// Restores the views from the checkpoint in `<data_dir>/views` and catches up from its
    /// position, or replays the whole log when the checkpoint cannot be used (see the module
    /// docs; a warning says why). Then writes a fresh checkpoint under a new key and destroys
    /// every older key, so that nothing sealed before this start opens again.
    ///
    /// # Errors
    /// The policies lack the personalization purpose, or the log cannot be read. A missing, bad
    /// or unreadable checkpoint, or a key store that cannot be used, is never an error.
    pub fn open(
        store: Arc<dyn EventStore>,
        policies: &Policies,
        data_dir: &Path,
        master: &MasterSource,
    ) -> Result<Self, ViewsError> {
        let started = Instant::now();
        let config = ProjectorConfig::from_policies(policies)?;
        let sealer = Sealer {
            data_dir: data_dir.to_path_buf(),
            master: master.clone(),
            state: Mutex::new(SealState { key: None, written: None, attempted: Instant::now(), failed: false }),
        };
        let (projector, origin) = match sealer.restore(&config, store.head()) {
            Ok(mut p) => {
                let position = p.position();
                p.catch_up(store.as_ref())?;
                let caught_up = p.stats().events;
                (p, Origin::Restored { position, caught_up })
            }
            Err((fallback, why)) => {
                tracing::warn!(reason = fallback, detail = %why, "feature views: no usable checkpoint; replaying the whole log");
                let p = Projector::replay(store.as_ref(), config)?;
                let events = p.stats().events;
                (p, Origin::Replayed { events, fallback: Some(fallback) })
            }
        };
        let views = Self { projector: RwLock::new(projector), store, origin, sealer: Some(sealer) };
        if let Some(sealer) = &views.sealer {
            let mut state = sealer.state();
            match sealer.rotate(&mut state, &views.projector) {
                Ok(Some(_)) => {}
                Ok(None) => tracing::warn!("feature views: no checkpoint could be written at start"),
                Err(e) => {
                    tracing::error!(code = e.code(), error = %e, "feature views: the checkpoint keys cannot be rotated; an older checkpoint may still open")
                }
            }
        }
        tracing::info!(
            origin = %views.origin,
            subjects = views.subjects(),
            millis = started.elapsed().as_millis() as u64,
            "feature views opened"
        );
        Ok(views)
    }

    /// How the views were obtained at start.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Applies the events appended since the last call, [`CATCH_UP_BATCH`] at a time: each batch
    /// is read, decrypted and its payloads read without the views' lock ([`Self::read_on`]), so
    /// that decisions keep reading the views meanwhile, then applied under the write lock
    /// ([`Self::apply`]).
    ///
    /// # Errors
    /// The log cannot be read (the events before the failure are applied).
    pub fn catch_up(&self) -> Result<(), FeatureError> {
        let (_, failed) = self.read_on(self.next(), |batch| {
            self.apply(batch);
            true
        });
        failed.map_or(Ok(()), Err)
    }

    /// The log position after the last event the views applied.
    pub fn next(&self) -> Position {
        self.projector.read().expect("views lock").next()
    }

    /// Reads the log from `from` to its head without the views' lock, in batches of
    /// [`CATCH_UP_BATCH`] events, decrypted where the views use them and their payloads read
    /// ([`Projector::prepare`]; a decision receipt whose note the log still keeps is taken from its
    /// note instead, [`Projector::prepare_noted`]), and hands each batch to `each` until it returns
    /// false. Returns the position after the last event handed on, with the error that stopped the
    /// read early, if one did (the events before it are handed on).
    pub fn read_on(
        &self,
        mut from: Position,
        mut each: impl FnMut(Vec<Prepared>) -> bool,
    ) -> (Position, Option<FeatureError>) {
        loop {
            let mut failed = None;
            // Lethe's own decision receipts come with their notes when the log still keeps them:
            // they are taken in place of decrypting and parsing the receipts.
            let batch: Vec<(RecordedEvent, Option<Note>)> = self
                .store
                .read_all_opening_noted(from, Projector::opens, Projector::takes_note)
                .take(CATCH_UP_BATCH)
                .map_while(|event| event.map_err(|e| failed = Some(e.into())).ok())
                .collect();
            let full = batch.len() == CATCH_UP_BATCH;
            if let Some((last, _)) = batch.last() {
                from = Position(last.envelope.position.0 + 1);
                if !each(Projector::prepare_noted(batch)) {
                    return (from, None);
                }
            }
            if failed.is_some() || !full {
                return (from, failed);
            }
        }
    }

    /// Applies events read by [`Self::read_on`] under the write lock. Those the views applied
    /// already (another caller caught up; an erasure's forget catches up to its fence under the
    /// lock; a rebuild swapped in views of a later position) are passed over.
    /// An event whose application panicked (a defect) is passed over by the projector, its
    /// subject's features dropped ([`Projector::apply`]); it is logged here.
    pub fn apply(&self, batch: Vec<Prepared>) {
        if !batch.is_empty() {
            let mut projector = self.projector.write().expect("views lock");
            let failed = projector.stats().failed;
            projector.apply_prepared(batch);
            let now = projector.stats().failed;
            if now > failed {
                tracing::error!(
                    events = now - failed,
                    through = projector.position().0,
                    "applying events to the feature views panicked: they were passed over and their subjects' features dropped"
                );
            }
        }
    }

    /// One round of the thread that keeps the views current (`lethe serve`): applies `batch`, if
    /// one came, then writes a checkpoint if one is due ([`Self::checkpoint_if_due`]). A panic in
    /// either (a defect) is contained and logged, so that the views keep following the log and the
    /// next round runs; false when one was. A checkpoint cut short counts as a failed attempt: it is
    /// tried again after `every`.
    pub fn apply_and_checkpoint(&self, batch: Option<Vec<Prepared>>, every: Duration, events: u64) -> bool {
        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(batch) = batch {
                self.apply(batch);
            }
            if let Err(e) = self.checkpoint_if_due(every, events) {
                tracing::warn!(code = e.code(), error = %e, "cannot checkpoint the feature views");
            }
        }));
        if round.is_err() {
            tracing::error!("the feature views panicked while applying events or writing a checkpoint; they carry on");
        }
        round.is_ok()
    }

    /// Writes a checkpoint of the views as they stand, under the current key (a new key when there
    /// is none). `None` for views built by [`Self::replay`].
    ///
    /// # Errors
    /// The checkpoint or its key cannot be written.
    pub fn checkpoint(&self) -> Result<Option<CheckpointInfo>, ViewsError> {
        let Some(sealer) = &self.sealer else { return Ok(None) };
        let mut state = sealer.state();
        sealer.write_or_rotate(&mut state, &self.projector).map(Some)
    }

    /// Writes a checkpoint when the views moved past the last one and either `every` has passed
    /// since the last attempt or `events` positions were added (after a failed attempt, only once
    /// `every` has passed).
    ///
    /// # Errors
    /// As [`Self::checkpoint`].
    pub fn checkpoint_if_due(&self, every: Duration, events: u64) -> Result<Option<CheckpointInfo>, ViewsError> {
        let Some(sealer) = &self.sealer else { return Ok(None) };
        let mut state = sealer.state();
        let position = self.projector.read().expect("views lock").position();
        let written = state.written.unwrap_or(Position(0));
        let moved = state.written != Some(position);
        let by_time = state.attempted.elapsed() >= every;
        let by_events = !state.failed && position.0.saturating_sub(written.0) >= events;
        if !moved || !(by_time || by_events) {
            return Ok(None);
        }
        sealer.write_or_rotate(&mut state, &self.projector).map(Some)
    }

    /// Whether the views hold anything of the subject.
    pub fn holds(&self, subject: &Pseudonym) -> bool {
        self.projector.read().expect("views lock").holds(subject)
    }

    /// How many subjects have views.
    pub fn subjects(&self) -> usize {
        self.projector.read().expect("views lock").subjects()
    }

    /// Runs `f` over the projector.
    pub fn with<T>(&self, f: impl FnOnce(&Projector) -> T) -> T {
        f(&self.projector.read().expect("views lock"))
    }

    /// Replays the whole log into a new projector and swaps it in; returns how many events the
    /// replay read. The live views keep serving (and catching up) during the replay; the events
    /// appended meanwhile, erasure fences among them, are applied to the new projector under the
    /// write lock before the swap, so an erasure whose forget reached the old projector during the
    /// replay also holds for the new one.
    fn rebuild(&self) -> Result<u64, FeatureError> {
        let config = self.projector.read().expect("views lock").config().clone();
        let mut fresh = Projector::replay(self.store.as_ref(), config)?;
        let mut live = self.projector.write().expect("views lock");
        fresh.catch_up(self.store.as_ref())?;
        let events = fresh.stats().events;
        *live = fresh;
        Ok(events)
    }

    /// Invariant 5: a new checkpoint under a new key, then every older key destroyed (nothing for
    /// views that are never checkpointed). `after` names the cause, for the log.
    fn reseal(&self, state: Option<&mut SealState>, after: &str) -> Result<(), String> {
        let (Some(sealer), Some(state)) = (&self.sealer, state) else { return Ok(()) };
        if sealer.rotate(state, &self.projector).map_err(|e| format!("feature view checkpoint: {e}"))?.is_none() {
            tracing::warn!(
                "feature views: the checkpoint after {after} could not be written; the next start replays the log"
            );
        }
        Ok(())
    }
}

impl ErasureHook for Views {
    fn name(&self) -> &str {
        "feature_views"
    }

    fn forget(&self, subject: &Pseudonym) -> Result<bool, String> {
        // The checkpoint state is held throughout: no checkpoint sealed before the forget can be
        // written after it.
        let mut state = self.sealer.as_ref().map(Sealer::state);
        let held = {
            // Events up to the fence are applied first, so that nothing of the subject arrives after.
            let mut p = self.projector.write().expect("views lock");
            p.catch_up(self.store.as_ref()).map_err(|e| e.to_string())?;
            p.forget(subject)
        };
        self.reseal(state.as_deref_mut(), "an erasure")?;
        Ok(held)
    }

    fn retention_shredded(&self) -> Result<(), String> {
        // As for a forget, the checkpoint state is held throughout: no checkpoint of the views as
        // they were before the rebuild can be written after it.
        let mut state = self.sealer.as_ref().map(Sealer::state);
        let started = Instant::now();
        let events = self.rebuild().map_err(|e| format!("feature views rebuild: {e}"))?;
        tracing::info!(
            events,
            subjects = self.subjects(),
            millis = started.elapsed().as_millis() as u64,
            "feature views rebuilt from the log after a retention sweep"
        );
        self.reseal(state.as_deref_mut(), "a retention sweep")
    }

    fn withdrawn(&self, _subject: &Pseudonym, _purposes: &[Purpose]) -> Result<(), String> {
        // The withdrawal's consent record is in the log already: applying it clears the features.
        self.catch_up().map_err(|e| e.to_string())
    }

    fn export(&self, subject: &Pseudonym) -> Option<serde_json::Value> {
        let _ = self.catch_up();
        self.projector.read().expect("views lock").export(subject)
    }
}

/// Destroys every checkpoint key of the views in `data_dir` (overwritten, synced, unlinked, through
/// the key store opened with `master`) and the checkpoint file, so that no checkpoint written so far
/// opens again; the next [`Views::open`] replays the log. For commands that erase or replace the
/// log while the views are not running (`lethe erase`, `lethe restore`). Returns how many keys were
/// destroyed.
///
/// # Errors
/// The key store cannot be opened (as [`Keyring::open`]: it is created when there is none), or a
/// key or checkpoint file cannot be destroyed.
pub fn discard_checkpoint(data_dir: &Path, master: &MasterSource) -> Result<usize, ViewsError> {
    let destroyed = destroy_keys(&Keyring::open(data_dir, master)?, None)?;
    let views = data_dir.join(VIEWS_DIR);
    for file in [views.join(CHECKPOINT_FILE), views.join(CHECKPOINT_FILE).with_extension("tmp")] {
        lethe_crypto::destroy_file(&file)?;
    }
    Ok(destroyed)
}

/// Writes and restores checkpoints.
struct Sealer {
    data_dir: PathBuf,
    master: MasterSource,
    state: Mutex<SealState>,
}

struct SealState {
    /// The current key and its generation; `None` until one is stored.
    key: Option<(u64, SecretBytes)>,
    /// The position of the last checkpoint written.
    written: Option<Position>,
    attempted: Instant,
    failed: bool,
}

fn key_name(generation: u64) -> String {
    format!("{KEY_BLOB_PREFIX}{generation}")
}

/// The generations of the checkpoint keys in the key store, with those of which only the temp file
/// of an interrupted store is left.
fn generations(keyring: &Keyring) -> Result<Vec<u64>, CryptoError> {
    Ok(keyring
        .blob_names(KEY_BLOB_PREFIX)?
        .iter()
        .filter_map(|name| name.strip_prefix(KEY_BLOB_PREFIX)?.parse::<u64>().ok().filter(|g| key_name(*g) == *name))
        .collect())
}

/// Destroys every checkpoint key but `keep`'s, and any leftover temp file ([`Keyring::destroy_blob`]).
/// Returns how many keys were destroyed.
fn destroy_keys(keyring: &Keyring, keep: Option<u64>) -> Result<usize, ViewsError> {
    let keep = keep.map(key_name);
    let mut destroyed = 0;
    for name in keyring.blob_names(KEY_BLOB_PREFIX)? {
        if keep.as_ref() != Some(&name) {
            destroyed += usize::from(keyring.destroy_blob(&name)?);
        }
    }
    Ok(destroyed)
}

/// Writes `bytes` to `path` atomically ([`lethe_crypto::write_atomic`]) in a folder of its owner's.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ViewsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(ViewsError::io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    lethe_crypto::write_atomic(path, bytes).map_err(|e| match e {
        CryptoError::Io { path, source } => ViewsError::Io { path, source },
        other => ViewsError::Keys(other),
    })
}

impl Sealer {
    fn file(&self) -> PathBuf {
        self.data_dir.join(VIEWS_DIR).join(CHECKPOINT_FILE)
    }

    /// Opens the checkpoint with the newest key that opens it; on failure, a reason code and
    /// details for the log.
    fn restore(&self, config: &ProjectorConfig, head: Position) -> Result<Projector, (&'static str, String)> {
        let path = self.file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(("no_checkpoint", format!("{} does not exist", path.display())))
            }
            Err(e) => return Err(("checkpoint_unreadable", format!("{}: {e}", path.display()))),
        };
        let keyring = Keyring::open(&self.data_dir, &self.master).map_err(|e| ("key_store_error", e.to_string()))?;
        let mut generations = generations(&keyring).map_err(|e| ("key_store_error", e.to_string()))?;
        generations.sort_unstable_by(|a, b| b.cmp(a));
        let mut tried = 0;
        for generation in generations {
            let key = match keyring.blob(&key_name(generation)) {
                Ok(Some(k)) => match <[u8; 32]>::try_from(&k[..]) {
                    Ok(k) => SecretBytes::new(k),
                    Err(_) => continue,
                },
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(generation, error = %e, "feature views: a checkpoint key does not open");
                    continue;
                }
            };
            tried += 1;
            match Projector::restore(&bytes, key.expose()) {
                Ok((p, position)) => {
                    if p.config() != config {
                        return Err(("policy_changed", "the policies' personalization gate changed".into()));
                    }
                    if position > head {
                        return Err((
                            "checkpoint_ahead_of_log",
                            format!("the checkpoint covers position {} but the log ends at {}", position.0, head.0),
                        ));
                    }
                    return Ok(p);
                }
                Err(FeatureError::CheckpointTampered) => continue,
                Err(e) => return Err((e.code(), e.to_string())),
            }
        }
        if tried == 0 {
            Err(("key_missing", "no checkpoint key in the key store".into()))
        } else {
            Err(("checkpoint_tampered", format!("the checkpoint opens under none of {tried} stored key(s)")))
        }
    }

    /// The checkpoint state. A panic while a checkpoint was written (a defect) leaves nothing in
    /// it that a later checkpoint cannot set right: a rotation lists the generations from the key
    /// store, and the write it cut short counts as a failed attempt (see [`Self::write`]). So the
    /// lock's poisoning is passed over: an erasure or a retention sweep must still reseal the
    /// views (R-ERASE-3).
    fn state(&self) -> MutexGuard<'_, SealState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Seals the views under the current key and writes them. The attempt counts as failed until
    /// the file is written, so one that errs or panics is retried only after the period.
    fn write(&self, state: &mut SealState, projector: &RwLock<Projector>) -> Result<CheckpointInfo, ViewsError> {
        state.attempted = Instant::now();
        state.failed = true;
        #[cfg(test)]
        tests::fail_here();
        let (generation, key) = state.key.as_ref().expect("a current key");
        let (bytes, position) = {
            let p = projector.read().expect("views lock");
            (p.checkpoint(key.expose()), p.position())
        };
        write_atomic(&self.file(), &bytes)?;
        state.failed = false;
        state.written = Some(position);
        let info = CheckpointInfo { position, generation: *generation, bytes: bytes.len() };
        tracing::debug!(position = position.0, generation, bytes = bytes.len(), "feature views checkpointed");
        Ok(info)
    }

    fn write_or_rotate(
        &self,
        state: &mut SealState,
        projector: &RwLock<Projector>,
    ) -> Result<CheckpointInfo, ViewsError> {
        if state.key.is_some() {
            return self.write(state, projector);
        }
        match self.rotate(state, projector)? {
            Some(info) => Ok(info),
            // The reason was logged; retried once the period has passed.
            None => Err(ViewsError::Io {
                path: self.file(),
                source: std::io::Error::other("no checkpoint key could be stored"),
            }),
        }
    }

    /// Stores a new key under the next generation, writes a checkpoint under it, then destroys
    /// every other generation's key (invariant 5). `Ok(None)` when the new key or checkpoint could
    /// not be written (logged): the old keys are destroyed all the same.
    ///
    /// # Errors
    /// The key store cannot be opened, or an old key cannot be destroyed: a checkpoint that may
    /// hold an erased subject (or expired data) could still open.
    fn rotate(
        &self,
        state: &mut SealState,
        projector: &RwLock<Projector>,
    ) -> Result<Option<CheckpointInfo>, ViewsError> {
        let keyring = match Keyring::open(&self.data_dir, &self.master) {
            Ok(k) => k,
            Err(e) => {
                // No checkpoint under the old key from now on; the next one tries a new key again.
                state.key = None;
                state.attempted = Instant::now();
                state.failed = true;
                return Err(e.into());
            }
        };
        let newest = generations(&keyring)?.into_iter().max();
        let next = newest.max(state.key.as_ref().map(|(g, _)| *g)).map_or(1, |g| g.saturating_add(1));
        let key = SecretBytes::random();
        let stored = keyring.put_blob(&key_name(next), key.expose());
        let mut written = None;
        match stored {
            Ok(()) => {
                state.key = Some((next, key));
                match self.write(state, projector) {
                    Ok(info) => written = Some(info),
                    Err(e) => tracing::warn!(code = e.code(), error = %e, "feature views: cannot write a checkpoint"),
                }
            }
            Err(e) => {
                state.key = None;
                state.attempted = Instant::now();
                state.failed = true;
                tracing::warn!(error = %e, "feature views: cannot store a new checkpoint key");
            }
        }
        destroy_keys(&keyring, state.key.as_ref().map(|(g, _)| *g))?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use lethe_consent::{CONSENT_CHANGED, CONSENT_SCHEMA_VERSION};
    use lethe_domain::{EventType, ExpectedVersion, NewEvent, Retention, SchemaVersion, SubjectId, UtcMicros};
    use lethe_eventlog::{AppendRequest, LogConfig, SledEventLog};

    use super::*;

    thread_local! {
        /// Whether the next checkpoint written on this thread panics: a defect, injected by a test.
        static FAIL_NEXT: Cell<bool> = const { Cell::new(false) };
    }

    /// Panics once after this thread's test asked for it.
    pub(super) fn fail_here() {
        if FAIL_NEXT.with(|f| f.replace(false)) {
            panic!("a defect, injected while a checkpoint is written");
        }
    }

    /// A banner's grant of analytics and personalization, written to the log as the collector writes it.
    fn grant(store: &dyn EventStore, subject: Pseudonym) {
        let record = lethe_testkit::banner_record(&[("analytics", true), ("personalization", true)], UtcMicros::now());
        let event = NewEvent {
            event_type: EventType::parse(CONSENT_CHANGED).unwrap(),
            schema_version: SchemaVersion::new(CONSENT_SCHEMA_VERSION).unwrap(),
            purpose: Purpose::necessary(),
            time: UtcMicros::now(),
            retention: Retention::UntilErased,
            payload: serde_json::to_vec(&record).unwrap(),
        };
        store.append(AppendRequest { subject, expected: ExpectedVersion::Any, events: vec![event] }).unwrap();
    }

    fn page_view(store: &dyn EventStore, subject: Pseudonym) {
        let event = NewEvent {
            event_type: EventType::parse("page.viewed").unwrap(),
            schema_version: SchemaVersion::new(2).unwrap(),
            purpose: Purpose::parse("analytics").unwrap(),
            time: UtcMicros::now(),
            retention: Retention::Days(30),
            payload: br#"{"host": "shop.example", "path": "/p/1"}"#.to_vec(),
        };
        store.append(AppendRequest { subject, expected: ExpectedVersion::Any, events: vec![event] }).unwrap();
    }

    /// A panic while a checkpoint is written (a defect) is contained in the views' round, which
    /// carries on; the cut-short attempt counts as failed (tried again after its period, then
    /// written); and an erasure still forgets and moves the checkpoint to a new key, destroying the
    /// others (R-ERASE-3, invariant 5), where the poisoned lock used to make it panic.
    #[test]
    fn a_panic_while_checkpointing_is_contained_and_erasures_still_reseal() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterSource::Hex("ef".repeat(32));
        let store: Arc<dyn EventStore> =
            Arc::new(SledEventLog::open(LogConfig::new(dir.path(), master.clone())).unwrap());
        let views = Views::open(Arc::clone(&store), &Policies::builtin().unwrap(), dir.path(), &master).unwrap();
        let generations_now = || generations(&Keyring::open(dir.path(), &master).unwrap()).unwrap();
        let at_open = generations_now();
        assert_eq!(at_open.len(), 1, "a start writes a checkpoint under a key of its own");
        let subject = store.pseudonymize(&SubjectId::parse("checkpointed-visitor").unwrap());
        grant(store.as_ref(), subject);
        page_view(store.as_ref(), subject);
        views.catch_up().unwrap();
        assert!(views.holds(&subject));

        FAIL_NEXT.with(|f| f.set(true));
        assert!(!views.apply_and_checkpoint(None, Duration::ZERO, 0), "the injected panic is contained");
        assert!(!FAIL_NEXT.with(Cell::get), "the checkpoint was attempted");
        // Not at once: the attempt failed, so only the period brings the next one.
        assert!(views.checkpoint_if_due(Duration::from_secs(3600), 1).unwrap().is_none());
        let info = views.checkpoint_if_due(Duration::ZERO, 1).unwrap().expect("written once due");
        assert_eq!(info.position, views.with(Projector::position));
        page_view(store.as_ref(), subject);
        assert!(views.apply_and_checkpoint(None, Duration::ZERO, 0), "a round without a defect");

        ErasureHook::forget(&views, &subject).unwrap();
        assert!(!views.holds(&subject));
        let after = generations_now();
        assert_eq!(after.len(), 1, "every other key is destroyed: {after:?}");
        assert!(after[0] > at_open[0], "the checkpoint moved to a new key: {at_open:?} → {after:?}");
    }
}
