//! The on-disk layout of the sled backend, its version, and the steps that upgrade an older layout.
//! `migrations/` at the repository root documents every step; `LAYOUT_VERSION` here must match
//! `migrations/LAYOUT_VERSION` (a test checks it).
//!
//! Keys of the log database (one sled tree, so one batch is atomic across all of them):
//! - `m/layout` → u32 BE: layout version
//! - `m/incarnation` → u32 BE: bumped at every open for writing (part of every payload nonce)
//! - `m/rotated_at` → u64 BE: log head at the last completed key rotation
//! - `m/epoch` → u32 BE: the newest key epoch the log's keys were wrapped under (never reused)
//! - `m/keystore` → the identity of the key store that belongs to this log
//! - `e/` pos (u64 BE) → chunk ([`crate::codec`]): events with consecutive positions starting at
//!   `pos`. Layout 5 writes the events of one group commit, of any number of subjects, into shared
//!   chunks (format 4, split at about 512 records or 64 KB); layouts 3 and 4 wrote the events of
//!   one append (format 3); layouts 1 and 2 one event per key (formats 1 and 2). All stay readable.
//!   Layout 7 keeps the bytes of a larger chunk in a chunk file (`log/chunks/`); its value is then a
//!   pointer (format 5: file, offset, length, CRC-32).
//! - `s/` pseudonym (32) seq (u64 BE) → pos (u64 BE) count (u32 BE): one entry per append request
//!   (but a deferred one's, see below):
//!   the chunk holding the subject's events `seq..seq+count` (in a shared chunk, among other
//!   subjects' events). Layout 2 stored one entry per event, with no count.
//!   Layout 6 also writes multi-run entries (see [`multi_stream_value`]) under the first sequence of
//!   their last run: the runs of deferred appends, indexed in bulk some time after they were written.
//! - `u/` pos (u64 BE) → empty: a chunk holding runs of deferred appends that no `s/` entry covers
//!   yet (layout 6; see [`crate::unindexed`]); removed in the batch that indexes its last one
//! - `f/` pseudonym (32) → fence record: position and time of the subject's erasure
//! - `k/` pseudonym (32) key id (u32 BE) → the subject's data key, wrapped under an epoch KEK
//! - `r/` expiry (u64 BE, µs) pseudonym (32) key id (u32 BE) → empty: the retention index, so that
//!   the keys whose period left the retention window are found without scanning (layout 4)
//! - `m/retention_swept` → u64 BE (µs): every period key expiring at or before it is destroyed
//! - `m/retention_pending` → present while a sweep destroyed keys that no rotation has finalized
//! - `m/chunk_end` → file (u32 BE) length (u64 BE): where the chunk files end that the log's
//!   pointers cover (layout 7; see [`crate::chunk_files`])
//!
//! Everything lives in one tree so that one batch (events or pointers to them, index, a new subject's
//! key, a fence and the removal of keys) is atomic, and one fsync makes a whole group durable. (The
//! bytes of a chunk in a chunk file are synced before the batch pointing at them is applied.)

use sled::Db;

use crate::codec;
use crate::unindexed::RunRef;
use crate::{LogError, Result};

/// The layout this version writes.
pub const LAYOUT_VERSION: u32 = 7;

pub(crate) const META_LAYOUT: &[u8] = b"m/layout";
pub(crate) const META_INCARNATION: &[u8] = b"m/incarnation";
pub(crate) const META_ROTATED_AT: &[u8] = b"m/rotated_at";
pub(crate) const META_EPOCH: &[u8] = b"m/epoch";
pub(crate) const META_KEYSTORE: &[u8] = b"m/keystore";
pub(crate) const EVENTS: &[u8] = b"e/";
pub(crate) const STREAMS: &[u8] = b"s/";
pub(crate) const FENCES: &[u8] = b"f/";
pub(crate) const UNINDEXED: &[u8] = b"u/";
pub(crate) const KEYS: &[u8] = b"k/";
pub(crate) const RETENTION: &[u8] = b"r/";
pub(crate) const META_RETENTION_SWEPT: &[u8] = b"m/retention_swept";
pub(crate) const META_RETENTION_PENDING: &[u8] = b"m/retention_pending";
pub(crate) const META_CHUNK_END: &[u8] = b"m/chunk_end";

pub(crate) fn event_key(pos: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(EVENTS);
    k[2..].copy_from_slice(&pos.to_be_bytes());
    k
}

pub(crate) fn stream_key(subject: &[u8; 32], seq: u64) -> [u8; 42] {
    let mut k = [0u8; 42];
    k[..2].copy_from_slice(STREAMS);
    k[2..34].copy_from_slice(subject);
    k[34..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn stream_value(pos: u64, count: u32) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..8].copy_from_slice(&pos.to_be_bytes());
    v[8..].copy_from_slice(&count.to_be_bytes());
    v
}

/// The first byte of a multi-run stream index value.
const MULTI_RUN: u8 = b'M';

/// A stream index value covering several runs of one subject, each in its own chunk (layout 6):
/// `'M'`, then per run `first seq (u64 BE) pos (u64 BE) count (u32 BE)`, in sequence order. Its key
/// is the first sequence of the last run, so a subject's last key still names its last sequence.
/// The length (1 + 20 n) never equals a single entry's (8 or 12 bytes).
pub(crate) fn multi_stream_value(runs: &[RunRef]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 20 * runs.len());
    v.push(MULTI_RUN);
    for r in runs {
        v.extend_from_slice(&r.first_seq.to_be_bytes());
        v.extend_from_slice(&r.pos.to_be_bytes());
        v.extend_from_slice(&r.count.to_be_bytes());
    }
    v
}

/// Whether a stream index value is a multi-run entry.
pub(crate) fn is_multi_run(v: &[u8]) -> bool {
    v.len() % 20 == 1 && v.first() == Some(&MULTI_RUN)
}

/// The runs of a stream index entry whose key names sequence `key_seq`: one for a single entry
/// (layout-2 entries, 8 bytes, cover one event), one or more for a multi-run entry, whose last run
/// must start at `key_seq`.
pub(crate) fn parse_stream_entry(key_seq: u64, v: &[u8]) -> Result<Vec<RunRef>> {
    let bad = || LogError::Corrupt("malformed stream index entry".into());
    match v.len() {
        8 => Ok(vec![RunRef { first_seq: key_seq, pos: be_u64(v)?, count: 1 }]),
        12 => Ok(vec![RunRef { first_seq: key_seq, pos: be_u64(&v[..8])?, count: be_u32(&v[8..])? }]),
        n if n > 1 && is_multi_run(v) => {
            let runs = v[1..]
                .chunks_exact(20)
                .map(|r| Ok(RunRef { first_seq: be_u64(&r[..8])?, pos: be_u64(&r[8..16])?, count: be_u32(&r[16..])? }))
                .collect::<Result<Vec<_>>>()?;
            if runs.iter().any(|r| r.count == 0 || r.first_seq == 0) {
                return Err(bad());
            }
            let ordered = runs
                .windows(2)
                .all(|w| w[0].first_seq.checked_add(u64::from(w[0].count)).is_some_and(|end| end <= w[1].first_seq));
            if !ordered || runs.last().map(|r| r.first_seq) != Some(key_seq) {
                return Err(bad());
            }
            Ok(runs)
        }
        _ => Err(bad()),
    }
}

pub(crate) fn unindexed_key(pos: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(UNINDEXED);
    k[2..].copy_from_slice(&pos.to_be_bytes());
    k
}

pub(crate) fn stream_prefix(subject: &[u8; 32]) -> [u8; 34] {
    let mut k = [0u8; 34];
    k[..2].copy_from_slice(STREAMS);
    k[2..].copy_from_slice(subject);
    k
}

pub(crate) fn fence_key(subject: &[u8; 32]) -> [u8; 34] {
    let mut k = [0u8; 34];
    k[..2].copy_from_slice(FENCES);
    k[2..].copy_from_slice(subject);
    k
}

pub(crate) fn dek_key(subject: &[u8; 32], key_id: u32) -> [u8; 38] {
    let mut k = [0u8; 38];
    k[..2].copy_from_slice(KEYS);
    k[2..34].copy_from_slice(subject);
    k[34..].copy_from_slice(&key_id.to_be_bytes());
    k
}

pub(crate) fn dek_prefix(subject: &[u8; 32]) -> [u8; 34] {
    let mut k = [0u8; 34];
    k[..2].copy_from_slice(KEYS);
    k[2..].copy_from_slice(subject);
    k
}

/// The retention index entry of a period key.
pub(crate) fn retention_key(expires_at: u64, subject: &[u8; 32], key_id: u32) -> [u8; 46] {
    let mut k = [0u8; 46];
    k[..2].copy_from_slice(RETENTION);
    k[2..10].copy_from_slice(&expires_at.to_be_bytes());
    k[10..42].copy_from_slice(subject);
    k[42..].copy_from_slice(&key_id.to_be_bytes());
    k
}

pub(crate) fn be_u64(bytes: &[u8]) -> Result<u64> {
    bytes.try_into().map(u64::from_be_bytes).map_err(|_| LogError::Corrupt("expected 8 bytes".into()))
}

pub(crate) fn be_u32(bytes: &[u8]) -> Result<u32> {
    bytes.try_into().map(u32::from_be_bytes).map_err(|_| LogError::Corrupt("expected 4 bytes".into()))
}

/// Reads the layout version; an empty database is stamped with the current one.
///
/// # Errors
/// [`LogError::LayoutTooNew`] for a layout from a newer Lethe; storage errors.
pub(crate) fn check_and_upgrade(db: &Db) -> Result<u32> {
    let found = match db.get(META_LAYOUT)? {
        Some(v) => be_u32(&v)?,
        None if db.is_empty() => {
            db.insert(META_LAYOUT, &LAYOUT_VERSION.to_be_bytes())?;
            db.flush()?;
            return Ok(LAYOUT_VERSION);
        }
        None => return Err(LogError::Corrupt("data directory has no layout version".into())),
    };
    if found > LAYOUT_VERSION {
        return Err(LogError::LayoutTooNew { found, supported: LAYOUT_VERSION });
    }
    let mut v = found;
    while v < LAYOUT_VERSION {
        tracing::info!(from = v, to = v + 1, "upgrading the on-disk layout");
        match v {
            1 => upgrade_1_to_2(db)?,
            2 => stamp(db, 3)?,
            3 => stamp(db, 4)?,
            4 => stamp(db, 5)?,
            5 => stamp(db, 6)?,
            6 => stamp(db, 7)?,
            other => return Err(LogError::Corrupt(format!("no upgrade step from layout {other}"))),
        }
        v += 1;
    }
    Ok(found)
}

/// Layout 2 added the per-subject stream index `s/`; layout 1 found a subject's events by scanning.
/// The step builds the index from the events, then stamps the version, in one atomic batch.
fn upgrade_1_to_2(db: &Db) -> Result<()> {
    let mut batch = sled::Batch::default();
    for item in db.scan_prefix(EVENTS) {
        let (_, v) = item?;
        for rec in codec::decode_chunk(&v)? {
            let e = rec.envelope;
            batch.insert(&stream_key(e.subject.as_bytes(), e.seq.0)[..], &e.position.0.to_be_bytes()[..]);
        }
    }
    batch.insert(META_LAYOUT, &2u32.to_be_bytes()[..]);
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

/// Layout 7 keeps the bytes of larger chunks in chunk files, behind pointer values (format 5); a
/// layout-6 log has none, so the step only stamps the version, which keeps an older Lethe (which
/// would read a pointer as a damaged chunk) out.
///
/// Layout 6 leaves the runs of deferred appends out of the stream index for a while (chunks marked
/// `u/`, multi-run `s/` entries written later); a layout-5 log has neither, so the step only stamps
/// the version, which keeps an older Lethe (blind to unindexed runs) out.
///
/// Layout 5 stores the events of a whole group commit in shared chunks (chunk format 4, several
/// subjects); the stream index keeps one entry per append request, now pointing into a shared chunk.
/// Chunks of formats 1–3 stay readable as they are, so the step only stamps the version; the stamp
/// is what keeps an older Lethe, which cannot read format 4, from opening the directory.
///
/// Layout 4 adds period keys and their retention index `r/`; a layout-3 log has only permanent
/// keys, so the index starts empty and the step only stamps the version.
///
/// Layout 3 stores the events of one append as one chunk under the position of its first event, and
/// its stream index entries carry the chunk's event count. Layout-2 values (single records, 8-byte
/// index entries) are read as chunks of one, so the step only stamps the version.
fn stamp(db: &Db, version: u32) -> Result<()> {
    db.insert(META_LAYOUT, &version.to_be_bytes())?;
    db.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_migrations_folder_agree_on_the_layout_version() {
        let documented: u32 = include_str!("../../../migrations/LAYOUT_VERSION").trim().parse().unwrap();
        assert_eq!(documented, LAYOUT_VERSION);
    }

    #[test]
    fn keys_sort_by_position_and_sequence() {
        assert!(event_key(2) < event_key(10));
        assert!(event_key(255) < event_key(256));
        let s = [9u8; 32];
        assert!(stream_key(&s, 9) < stream_key(&s, 10));
        assert!(stream_key(&s, 1).starts_with(&stream_prefix(&s)));
    }

    #[test]
    fn empty_database_is_stamped_and_newer_layout_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        assert_eq!(check_and_upgrade(&db).unwrap(), LAYOUT_VERSION);
        db.insert(META_LAYOUT, &(LAYOUT_VERSION + 1).to_be_bytes()).unwrap();
        let err = check_and_upgrade(&db).unwrap_err();
        assert!(matches!(err, LogError::LayoutTooNew { .. }));
        assert!(err.to_string().contains("upgrade Lethe"), "{err}");
    }
}
