//! `lethe backup` and `lethe restore`: a consistent copy of the log database in one file, and the
//! restore that can never bring an erased subject back (R-ERASE-5).
//!
//! What a backup holds: every record of the log — envelopes and ciphertexts, the stream and
//! retention indexes, erasure fences, and the subjects' data keys *wrapped under the key epoch that
//! was current when the backup was taken*. It holds no key-encryption key, no master secret and no
//! pseudonym secret: those stay in `keys/`, which is never part of a backup.
//!
//! When an erasure becomes effective for a backup: at once for every restore into a data directory
//! whose live log knows the erasure (the restore re-applies the live log's fences and takes live
//! keys from the live log), and unconditionally once the key epoch that wrapped the backup's keys
//! is rotated away — the rotation that follows every erasure within the configured window. From then
//! on no copy of `keys/` can unwrap the backup's copy of the subject's key.
//!
//! File format 1: `LETHEBK1` | header length (u32 BE) | header (JSON) | records, each key length
//! (u32 BE), key, value length (u32 BE), value | end mark `u32::MAX` | SHA-256 of everything before.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use lethe_crypto::{Keyring, WrappedKey};
use lethe_domain::{Pseudonym, UtcMicros};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chunk_files::ChunkFiles;
use crate::codec;
use crate::layout::{self, be_u32, be_u64};
use crate::sled_log::{LogConfig, SledEventLog, LOG_DIR};
use crate::store::{EventStore, RotationReport};
use crate::{LogError, Result};

const MAGIC: &[u8; 8] = b"LETHEBK1";
const END: u32 = u32::MAX;
/// How far a restore without the live log moves the incarnation forward: the live log may have
/// opened this many times since the backup without nonce reuse.
const INCARNATION_JUMP: u32 = 1 << 16;

/// The header of a backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    pub format: u32,
    pub layout: u32,
    pub created_at: UtcMicros,
    /// Identity of the key store the backup belongs to.
    pub key_store: String,
    /// The epoch that wrapped every data key in the backup.
    pub epoch: u32,
    /// The last event in the backup.
    pub head: u64,
    pub incarnation: u32,
}

/// What `backup` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub header: BackupHeader,
    pub records: u64,
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub digest: String,
}

/// What `restore` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    pub header: BackupHeader,
    pub records: u64,
    /// Data keys taken from the backup (their epoch is still alive).
    pub keys_from_backup: u64,
    /// Data keys taken from the live log that the restore replaced.
    pub keys_from_live_log: u64,
    /// Subjects in the backup whose keys no longer exist anywhere: erased, expired, or wrapped
    /// under an epoch destroyed since the backup with no live log to take them from.
    pub keys_unrecoverable: u64,
    /// Erasures the live log knew and the backup did not; re-applied after the restore.
    pub erasures_reapplied: u64,
    /// Where the replaced live log was moved, if there was one.
    pub previous_log: Option<PathBuf>,
    /// The rotation that ended the restore.
    pub rotation: RotationReport,
}

/// Writes every record of `db` to `path`, each chunk with its bytes (a chunk kept in a chunk file is
/// written as if it were in sled: a backup needs no chunk file, and a restore keeps every chunk in
/// sled). The caller makes sure no write runs meanwhile.
pub(crate) fn write(db: &sled::Db, chunks: &ChunkFiles, header: &BackupHeader, path: &Path) -> Result<BackupReport> {
    let io = |source| LogError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension("partial");
    let mut out = HashingWriter { inner: BufWriter::new(File::create(&tmp).map_err(io)?), hash: Sha256::new(), n: 0 };
    let head = serde_json::to_vec(header).map_err(|e| LogError::Corrupt(e.to_string()))?;
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&len32(head.len())?.to_be_bytes()).map_err(io)?;
    out.write_all(&head).map_err(io)?;
    let mut records = 0u64;
    for item in db.iter() {
        let (k, v) = item?;
        if k == layout::META_CHUNK_END {
            continue;
        }
        let v = if k.starts_with(layout::EVENTS) { chunks.resolve(v)? } else { v };
        out.write_all(&len32(k.len())?.to_be_bytes()).map_err(io)?;
        out.write_all(&k).map_err(io)?;
        out.write_all(&len32(v.len())?.to_be_bytes()).map_err(io)?;
        out.write_all(&v).map_err(io)?;
        records += 1;
    }
    out.write_all(&END.to_be_bytes()).map_err(io)?;
    let digest = out.hash.clone().finalize();
    let mut inner = out.inner;
    inner.write_all(&digest).map_err(io)?;
    let file = inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(BackupReport {
        path: path.to_path_buf(),
        header: header.clone(),
        records,
        bytes: out.n + 32,
        digest: hex::encode(Sha256::digest(std::fs::read(path).map_err(io)?)),
    })
}

fn len32(n: usize) -> Result<u32> {
    u32::try_from(n).ok().filter(|&n| n != END).ok_or_else(|| LogError::Corrupt("record too large to back up".into()))
}

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    n: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A backup file read and checked whole: the checksum must match before any record is used.
#[derive(Debug)]
pub struct BackupFile {
    pub header: BackupHeader,
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl BackupFile {
    /// Reads a backup and checks its checksum and format.
    ///
    /// # Errors
    /// [`LogError::BadBackup`] for a damaged, truncated or foreign file; I/O errors.
    pub fn read(path: &Path) -> Result<Self> {
        let io = |source| LogError::Io { path: path.to_path_buf(), source };
        let mut bytes = Vec::new();
        BufReader::new(File::open(path).map_err(io)?).read_to_end(&mut bytes).map_err(io)?;
        let bad = |why: &str| LogError::BadBackup(why.to_owned());
        if bytes.len() < MAGIC.len() + 4 + 4 + 32 || &bytes[..8] != MAGIC {
            return Err(bad("not a Lethe backup (format 1)"));
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err(bad("checksum mismatch: the file is damaged or truncated"));
        }
        let mut cur = Cursor { bytes: body, at: 8 };
        let head_len = cur.u32()? as usize;
        let header: BackupHeader =
            serde_json::from_slice(cur.take(head_len)?).map_err(|e| bad(&format!("header: {e}")))?;
        if header.format != 1 {
            return Err(bad("unknown backup format"));
        }
        if header.layout > layout::LAYOUT_VERSION {
            return Err(LogError::LayoutTooNew { found: header.layout, supported: layout::LAYOUT_VERSION });
        }
        let mut records = Vec::new();
        loop {
            let n = cur.u32()?;
            if n == END {
                break;
            }
            let k = cur.take(n as usize)?.to_vec();
            let vn = cur.u32()? as usize;
            records.push((k, cur.take(vn)?.to_vec()));
        }
        if cur.at != body.len() {
            return Err(bad("trailing bytes after the end mark"));
        }
        Ok(Self { header, records })
    }

    /// The records, in key order.
    pub fn records(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.records.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| LogError::BadBackup("truncated record".into()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        be_u32(self.take(4)?)
    }
}

/// What the live log knew when a restore replaced it.
#[derive(Default)]
struct LiveState {
    fences: HashSet<[u8; 32]>,
    keys: HashMap<Vec<u8>, Vec<u8>>,
    incarnation: Option<u32>,
    retention_swept: u64,
}

fn read_live(path: &Path) -> Result<LiveState> {
    let db = sled::Config::new().path(path).open()?;
    let mut live = LiveState::default();
    for item in db.scan_prefix(layout::FENCES) {
        let (k, _) = item?;
        live.fences.insert(k[2..].try_into().map_err(|_| LogError::Corrupt("fence key".into()))?);
    }
    for item in db.scan_prefix(layout::KEYS) {
        let (k, v) = item?;
        live.keys.insert(k.to_vec(), v.to_vec());
    }
    live.incarnation = db.get(layout::META_INCARNATION)?.map(|v| be_u32(&v)).transpose()?;
    live.retention_swept = db.get(layout::META_RETENTION_SWEPT)?.map(|v| be_u64(&v)).transpose()?.unwrap_or(0);
    Ok(live)
}

/// The subjects of the runs waiting for the index in a backup (the run headers of its chunks marked
/// `u/`): a subject whose only events wait (decision receipts) has no `s/` key. A mark that does not
/// read back (malformed, its chunk missing or unreadable) refuses the backup, before anything of
/// the live log is touched.
fn marked_subjects(file: &BackupFile) -> Result<HashSet<[u8; 32]>> {
    let chunks: HashMap<&[u8], &[u8]> = file.records().filter(|(k, _)| k.starts_with(layout::EVENTS)).collect();
    let mut subjects = HashSet::new();
    for (k, _) in file.records().filter(|(k, _)| k.starts_with(layout::UNINDEXED)) {
        let pos = be_u64(&k[2..]).map_err(|_| LogError::BadBackup("a malformed mark of waiting runs".into()))?;
        let chunk = chunks
            .get(&layout::event_key(pos)[..])
            .ok_or_else(|| LogError::BadBackup(format!("the chunk at {pos} of a mark of waiting runs is missing")))?;
        let heads =
            codec::run_heads(chunk).map_err(|e| LogError::BadBackup(format!("the marked chunk at {pos}: {e}")))?;
        subjects.extend(heads.into_iter().map(|(s, _, _)| *s.as_bytes()));
    }
    Ok(subjects)
}

/// Restores `backup` into `config.data_dir`, whose `keys/` must be the key store the backup belongs
/// to. A live log there is moved aside (to `log.before-restore-<time>`) after its erasure fences,
/// keys and sweep mark are read; the restored log then gets, in order: the backup's records, live
/// keys in place of the backup's, the live log's erasures, the live retention sweep, and a key
/// rotation that makes all of them final.
///
/// # Errors
/// A damaged backup, a key store that is not the backup's, storage errors.
pub fn restore(config: LogConfig, backup: &Path) -> Result<(SledEventLog, RestoreReport)> {
    let file = BackupFile::read(backup)?;
    let dir = config.data_dir.clone();
    let keyring = Keyring::open(&dir, &config.master)?;
    if keyring.id() != file.header.key_store {
        return Err(LogError::KeyStoreMismatch);
    }
    let alive: HashSet<u32> = keyring.epochs().into_iter().map(|e| e.0).collect();
    let current_epoch = keyring.current_epoch().0;
    drop(keyring);

    let waiting_subjects = marked_subjects(&file)?;
    let log_path = dir.join(LOG_DIR);
    let (live, previous_log) = if log_path.exists() {
        let live = read_live(&log_path)?;
        let aside = dir.join(format!("{LOG_DIR}.before-restore-{}", UtcMicros::now().0 / 1_000_000));
        std::fs::rename(&log_path, &aside).map_err(|source| LogError::Io { path: log_path.clone(), source })?;
        (live, Some(aside))
    } else {
        (LiveState::default(), None)
    };

    let db = sled::Config::new().path(&log_path).open()?;
    let mut batch = sled::Batch::default();
    let (mut from_backup, mut from_live, mut unrecoverable) = (0u64, 0u64, 0u64);
    let mut backup_fences = HashSet::new();
    let mut backup_subjects = HashSet::new();
    let mut keyed_subjects = HashSet::new();
    for (k, v) in file.records() {
        if k.starts_with(layout::FENCES) {
            backup_fences.insert(<[u8; 32]>::try_from(&k[2..]).map_err(|_| LogError::Corrupt("fence key".into()))?);
        }
        if k.starts_with(layout::STREAMS) && k.len() >= 34 {
            backup_subjects.insert(<[u8; 32]>::try_from(&k[2..34]).expect("32 bytes"));
        }
        if k.starts_with(layout::KEYS) {
            let subject: [u8; 32] = k
                .get(2..34)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| LogError::Corrupt("malformed key record in the backup".into()))?;
            if live.fences.contains(&subject) {
                continue; // erased since the backup: its key is not restored from anywhere
            }
            if let Some(lv) = live.keys.get(k) {
                batch.insert(k, lv.as_slice());
                from_live += 1;
                keyed_subjects.insert(subject);
            } else if WrappedKey::parse(v).is_ok_and(|w| alive.contains(&w.epoch.0)) {
                batch.insert(k, v);
                from_backup += 1;
                keyed_subjects.insert(subject);
            }
            continue;
        }
        if k.starts_with(layout::RETENTION) && k.get(10..42).is_some_and(|s| live.fences.iter().any(|f| f[..] == *s)) {
            continue; // the retention index of a subject erased since the backup
        }
        // (`m/chunk_end` is never in a backup; a restore keeps every chunk in sled.)
        if k == layout::META_INCARNATION
            || k == layout::META_EPOCH
            || k == layout::META_ROTATED_AT
            || k == layout::META_CHUNK_END
        {
            continue;
        }
        batch.insert(k, v);
    }
    backup_subjects.extend(waiting_subjects);
    unrecoverable +=
        backup_subjects.iter().filter(|s| !keyed_subjects.contains(*s) && !backup_fences.contains(*s)).count() as u64;
    let incarnation = match live.incarnation {
        Some(i) => i.max(file.header.incarnation),
        None => file.header.incarnation.saturating_add(INCARNATION_JUMP),
    };
    batch.insert(layout::META_INCARNATION, &incarnation.to_be_bytes()[..]);
    batch.insert(layout::META_EPOCH, &current_epoch.to_be_bytes()[..]);
    // No erasure in the restored log is final until the rotation below.
    batch.insert(layout::META_ROTATED_AT, &0u64.to_be_bytes()[..]);
    db.apply_batch(batch)?;
    db.flush()?;
    drop(db);

    let swept = live.retention_swept;
    let log = SledEventLog::open(config)?;
    let mut reapplied = 0u64;
    let mut fences: Vec<_> = live.fences.difference(&backup_fences).copied().collect();
    fences.sort_unstable();
    for subject in fences {
        log.erase(&Pseudonym::from_bytes(subject))?;
        reapplied += 1;
    }
    if swept > 0 {
        log.expire_keys(UtcMicros(i64::try_from(swept).unwrap_or(i64::MAX)))?;
    }
    let rotation = log.rotate_keys()?;
    let report = RestoreReport {
        header: file.header.clone(),
        records: file.records.len() as u64,
        keys_from_backup: from_backup,
        keys_from_live_log: from_live,
        keys_unrecoverable: unrecoverable,
        erasures_reapplied: reapplied,
        previous_log,
        rotation,
    };
    Ok((log, report))
}
