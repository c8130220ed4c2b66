//! R-CRYPTO-1, invariant 1: every payload is sealed with AES-256-GCM under its subject's key, with a
//! nonce unique per key and associated data binding the whole envelope. Proved from the outside:
//! records are edited with raw sled while the log is closed, and the log must refuse every ciphertext
//! that was moved or whose envelope was changed; and a million events written over several
//! incarnations never reuse a (subject, key generation, nonce) triple.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use lethe_domain::{
    EventBody, EventType, ExpectedVersion, NewEvent, Position, Pseudonym, Purpose, SchemaVersion, UtcMicros,
};
use lethe_eventlog::codec::{self, StoredRecord};
use lethe_eventlog::{AppendRequest, EventStore, LogError, LOG_DIR};

/// The key of event `pos` in the log database (`layout`: `e/` + position, u64 big-endian).
fn event_key(pos: u64) -> Vec<u8> {
    let mut k = b"e/".to_vec();
    k.extend_from_slice(&pos.to_be_bytes());
    k
}

/// Opens the closed log's sled database directly, lets `f` edit it, and closes it again.
fn edit_raw_log<T>(dir: &Path, f: impl FnOnce(&sled::Db) -> T) -> T {
    let db = common::raw_sled(&dir.join(LOG_DIR));
    let out = f(&db);
    db.flush().expect("flush the raw log database");
    out
}

/// The chunk holding position `pos`: its key and its records.
fn chunk_of(db: &sled::Db, pos: u64) -> (sled::IVec, Vec<StoredRecord>) {
    let (k, v) = db.range(event_key(0)..=event_key(pos)).next_back().expect("a chunk").expect("read");
    (k, codec::decode_chunk(&v).expect("decode"))
}

fn read_record(db: &sled::Db, pos: u64) -> StoredRecord {
    let (_, records) = chunk_of(db, pos);
    records.into_iter().find(|r| r.envelope.position.0 == pos).unwrap_or_else(|| panic!("no event at {pos}"))
}

/// Puts `rec` in place of the record at `pos` in its chunk, leaving the others as they are.
fn write_record(db: &sled::Db, pos: u64, rec: &StoredRecord) {
    let (k, mut records) = chunk_of(db, pos);
    let slot = records.iter_mut().find(|r| r.envelope.position.0 == pos).expect("the record");
    *slot = rec.clone();
    db.insert(k, codec::encode_chunk(&records)).expect("insert");
}

/// Swaps nonce and ciphertext between the records at two positions.
fn swap_ciphertexts(db: &sled::Db, a: u64, b: u64) {
    let (mut ra, mut rb) = (read_record(db, a), read_record(db, b));
    std::mem::swap(&mut ra.nonce, &mut rb.nonce);
    std::mem::swap(&mut ra.sealed, &mut rb.sealed);
    write_record(db, a, &ra);
    write_record(db, b, &rb);
}

/// Subject A: positions 1, 2, 3; subject B: position 4; A again: positions 5 to 9.
fn seeded_log(dir: &Path) -> (Pseudonym, Pseudonym) {
    let log = common::open(dir);
    let a = common::pseudonym(&log, "alice@example.com");
    let b = common::pseudonym(&log, "bob@example.com");
    common::append(&log, a, &[b"a-1", b"a-2", b"a-3"]);
    common::append(&log, b, &[b"b-1"]);
    common::append(&log, a, &[b"a-4", b"a-5", b"a-6", b"a-7", b"a-8"]);
    let all = common::read_all(&log);
    assert!(all.iter().all(|e| matches!(e.body, EventBody::Plain(_))), "untampered events decrypt");
    (a, b)
}

/// Reopens the log and returns the positions that fail to decrypt, per `read_all` and per `verify`.
fn failing_positions(dir: &Path) -> (BTreeSet<u64>, BTreeSet<u64>, lethe_eventlog::VerifyReport) {
    let log = common::open(dir);
    let mut failed = BTreeSet::new();
    let mut read = 0u64;
    for item in log.read_all(Position(1)) {
        read += 1;
        match item {
            Ok(e) => assert!(matches!(e.body, EventBody::Plain(_)), "position {read} reads as {:?}", e.body),
            Err(e) => {
                assert!(matches!(e, LogError::Crypto(lethe_crypto::CryptoError::Decrypt)), "position {read}: {e}");
                assert_eq!(e.code(), "decrypt_failed");
                failed.insert(read);
            }
        }
    }
    assert_eq!(read, log.head().0, "read_all goes on past a record that fails");
    let report = log.verify().expect("verify");
    let reported = report.failures.iter().map(|p| p.0).collect();
    (failed, reported, report)
}

#[test]
fn ciphertexts_swapped_between_two_events_of_one_subject_fail_to_decrypt() {
    let dir = common::temp_dir();
    seeded_log(dir.path());
    edit_raw_log(dir.path(), |db| swap_ciphertexts(db, 2, 3));
    let (failed, reported, report) = failing_positions(dir.path());
    assert_eq!(failed, BTreeSet::from([2, 3]));
    assert_eq!(reported, failed);
    assert!(!report.ok());
    assert_eq!(report.decrypted, 7, "the untouched events still decrypt");
}

#[test]
fn ciphertexts_swapped_between_two_subjects_fail_to_decrypt() {
    let dir = common::temp_dir();
    let (a, _) = seeded_log(dir.path());
    edit_raw_log(dir.path(), |db| swap_ciphertexts(db, 1, 4));
    let (failed, reported, _) = failing_positions(dir.path());
    assert_eq!(failed, BTreeSet::from([1, 4]));
    assert_eq!(reported, failed);
    let log = common::open(dir.path());
    assert!(log.read_stream(&a).is_err(), "a stream holding a moved ciphertext does not read");
}

#[test]
fn a_changed_envelope_field_breaks_decryption() {
    let dir = common::temp_dir();
    seeded_log(dir.path());
    edit_raw_log(dir.path(), |db| {
        let mut r = read_record(db, 5);
        r.envelope.purpose = Purpose::parse("marketing").expect("valid purpose");
        write_record(db, 5, &r);
        let mut r = read_record(db, 6);
        r.envelope.time = UtcMicros(r.envelope.time.0 + 1);
        write_record(db, 6, &r);
        let mut r = read_record(db, 7);
        r.envelope.event_type = EventType::parse("test.renamed").expect("valid type");
        write_record(db, 7, &r);
        let mut r = read_record(db, 8);
        r.envelope.schema_version = SchemaVersion::new(2).expect("valid version");
        write_record(db, 8, &r);
        // Position 9 is written back unchanged: re-encoding alone must not break anything.
        let r = read_record(db, 9);
        write_record(db, 9, &r);
    });
    let (failed, reported, report) = failing_positions(dir.path());
    assert_eq!(failed, BTreeSet::from([5, 6, 7, 8]));
    assert_eq!(reported, failed);
    assert!(report.problems.is_empty(), "these fields are not indexed: {:?}", report.problems);
}

#[test]
fn a_record_copied_whole_to_another_position_is_flagged_by_verify() {
    let dir = common::temp_dir();
    seeded_log(dir.path());
    // Replaces event 3 with an exact copy of event 2 (envelope included), which decrypts.
    edit_raw_log(dir.path(), |db| {
        let copy = read_record(db, 2);
        write_record(db, 3, &copy);
    });
    let log = common::open(dir.path());
    let report = log.verify().expect("verify");
    assert!(!report.ok(), "a duplicated record must not verify");
    assert!(report.problems.iter().any(|p| p.contains("position 3")), "{:?}", report.problems);
}

/// Invariant 1, "a unique nonce per key": one million events in groups of 1000 (ten requests of 100
/// events each), spread over 500 subjects and written by five incarnations of the log. Every stored
/// (subject, key generation, nonce) is distinct, and every nonce is `incarnation | seq` of a real
/// incarnation.
#[test]
fn a_million_events_never_reuse_a_nonce_under_one_key() {
    const OPENS: u64 = 5;
    const GROUPS_PER_OPEN: u64 = 200;
    const REQUESTS_PER_GROUP: u64 = 10;
    const EVENTS_PER_REQUEST: u64 = 100;
    const SUBJECTS: u64 = 500;
    /// Threads submitting groups at once, so that the writer has the next group queued while it
    /// commits one (it may then merge them into one commit).
    const SUBMITTERS: u64 = 2;
    let total = OPENS * GROUPS_PER_OPEN * REQUESTS_PER_GROUP * EVENTS_PER_REQUEST;
    let dir = common::temp_dir();
    let started = std::time::Instant::now();
    let mut incarnations = BTreeSet::new();
    let template = common::event("");
    for _ in 0..OPENS {
        let log = common::open(dir.path());
        assert!(incarnations.insert(log.incarnation()), "every open has its own incarnation");
        let subjects: Vec<Pseudonym> =
            (0..SUBJECTS).map(|i| common::pseudonym(&log, &format!("nonce-subject-{i}"))).collect();
        std::thread::scope(|scope| {
            for t in 0..SUBMITTERS {
                let (log, subjects, template) = (&log, &subjects, &template);
                scope.spawn(move || {
                    for g in (t..GROUPS_PER_OPEN).step_by(SUBMITTERS as usize) {
                        let requests = (0..REQUESTS_PER_GROUP)
                            .map(|r| {
                                let subject = subjects[((g * REQUESTS_PER_GROUP + r) % SUBJECTS) as usize];
                                let events = (0..EVENTS_PER_REQUEST)
                                    .map(|i| NewEvent {
                                        payload: format!("{g}:{r}:{i}").into_bytes(),
                                        ..template.clone()
                                    })
                                    .collect();
                                AppendRequest { subject, expected: ExpectedVersion::Any, events }
                            })
                            .collect();
                        for r in log.append_batch(requests) {
                            r.expect("append");
                        }
                    }
                });
            }
        });
        assert_eq!(log.head().0, incarnations.len() as u64 * total / OPENS);
    }
    let written = started.elapsed();

    let mut seen: HashSet<[u8; 48]> = HashSet::with_capacity(total as usize);
    let mut records = 0u64;
    let chunks = lethe_eventlog::RawChunkReader::new(&dir.path().join(LOG_DIR));
    edit_raw_log(dir.path(), |db| {
        for item in db.scan_prefix(b"e/") {
            let (_, raw) = item.expect("scan");
            // A chunk of a group this size is in a chunk file; its `e/` value points at it.
            let raw = chunks.resolve(&raw).expect("the chunk's bytes");
            for rec in codec::decode_chunk(&raw).expect("decode") {
                records += 1;
                let env = &rec.envelope;
                let inc = u32::from_be_bytes(rec.nonce[..4].try_into().expect("4 bytes"));
                assert!(incarnations.contains(&inc), "position {}: nonce of unknown incarnation {inc}", env.position.0);
                assert_eq!(
                    rec.nonce,
                    codec::nonce(inc, env.seq),
                    "position {}: nonce is not incarnation | seq",
                    env.position.0
                );
                let mut triple = [0u8; 48];
                triple[..32].copy_from_slice(env.subject.as_bytes());
                triple[32..36].copy_from_slice(&env.key_id.0.to_be_bytes());
                triple[36..].copy_from_slice(&rec.nonce);
                assert!(seen.insert(triple), "position {}: nonce reused under the same key", env.position.0);
            }
        }
    });
    assert_eq!(records, total);
    eprintln!("{total} events written in {written:?}, scanned in {:?}", started.elapsed() - written);
}
