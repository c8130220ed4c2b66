//! Chunk files (layout 7): the bytes of larger chunks outside sled, behind pointers. What an open
//! does with bytes no durable pointer covers, how damage shows, and what a backup holds.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use lethe_domain::{EventBody, ExpectedVersion, Position, Pseudonym};
use lethe_eventlog::{
    codec, AppendRequest, BackupFile, EventStore, LogConfig, LogError, SledEventLog, CHUNKS_DIR, LOG_DIR,
};

/// Opens the log with every chunk in a chunk file.
fn open(dir: &Path) -> SledEventLog {
    open_with(dir, lethe_eventlog::DEFAULT_CHUNK_FILE_MAX_BYTES)
}

/// Opens the log with every chunk in a chunk file, a new file past `max_file` bytes.
fn open_with(dir: &Path, max_file: u64) -> SledEventLog {
    let mut config = LogConfig::new(dir, common::master());
    config.chunk_file_min_bytes = 0;
    config.chunk_file_max_bytes = max_file;
    common::retry_while_locked(|| SledEventLog::open(config.clone())).expect("open the log")
}

/// The chunk files, in order, with their lengths.
fn chunk_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(LOG_DIR).join(CHUNKS_DIR))
        .expect("the chunk files folder")
        .map(|e| {
            let path = e.expect("entry").path();
            let len = std::fs::metadata(&path).expect("metadata").len();
            (path, len)
        })
        .collect();
    files.sort();
    files
}

/// Two subjects, three appends each, in separate group commits.
fn seed(log: &SledEventLog) -> (Pseudonym, Pseudonym) {
    let a = common::pseudonym(log, "chunk-a");
    let b = common::pseudonym(log, "chunk-b");
    for i in 0..3 {
        for s in [a, b] {
            let events = vec![common::event(format!("event {i}").into_bytes())];
            log.append(AppendRequest { subject: s, expected: ExpectedVersion::Any, events }).expect("append");
        }
    }
    (a, b)
}

/// Appends one event to `s`.
fn append_one(log: &SledEventLog, s: Pseudonym, payload: &[u8]) -> Result<lethe_eventlog::Appended, LogError> {
    log.append(AppendRequest { subject: s, expected: ExpectedVersion::Any, events: vec![common::event(payload)] })
}

/// `verify` names the damage (a problem that mentions `what`), and appends are refused.
fn assert_damage_named_and_appends_refused(log: &SledEventLog, a: Pseudonym, what: &str) {
    let report = log.verify().expect("verify");
    assert!(report.problems.iter().any(|p| p.contains(what)), "{:?}", report.problems);
    assert_eq!(append_one(log, a, b"x").expect_err("appends are refused").code(), "log_poisoned");
}

fn bodies(log: &SledEventLog, s: &Pseudonym) -> Vec<EventBody> {
    log.read_stream(s).expect("read_stream").into_iter().map(|e| e.body).collect()
}

/// A group whose batch never became durable may have left its chunk's bytes at the end of a chunk
/// file, and a later file. The open cuts both off (sled's `m/chunk_end` says where the durable
/// pointers end); the log reads the same, and new appends go on from there.
#[test]
fn bytes_past_the_durable_end_of_the_chunk_files_are_cut_off_at_open() {
    let dir = common::temp_dir();
    let (a, before) = {
        let log = open(dir.path());
        let (a, _) = seed(&log);
        (a, common::read_all(&log))
    };
    let files = chunk_files(dir.path());
    assert_eq!(files.len(), 1, "six small chunks fit one chunk file: {files:?}");
    let (last, durable_len) = files[0].clone();
    OpenOptions::new().append(true).open(&last).expect("open").write_all(&[0xAB; 1000]).expect("write");
    let stray = last.with_file_name("00000099.chunks");
    std::fs::write(&stray, b"a file no pointer names").expect("write");

    let log = open(dir.path());
    assert_eq!(chunk_files(dir.path()), vec![(last.clone(), durable_len)], "the tail and the stray file are gone");
    assert_eq!(common::read_all(&log), before);
    append_one(&log, a, b"after").expect("append after the cut");
    drop(log);
    let log = open(dir.path());
    let read = bodies(&log, &a);
    assert_eq!(read.len(), 4);
    assert_eq!(read[3], EventBody::Plain(b"after".to_vec()));
    assert!(log.verify().expect("verify").ok());
}

/// A changed byte in a chunk file fails the chunk's CRC: reads of what it holds fail with
/// `log_corrupt` (never garbage), `verify` names the chunk, and the rest of the log still reads.
#[test]
fn a_changed_byte_in_a_chunk_file_fails_its_checksum_and_verify_names_it() {
    let dir = common::temp_dir();
    let (a, b) = seed(&open(dir.path()));
    let (file, len) = chunk_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&file).expect("read");
    // The first chunk (subject a's first event) starts at offset 0.
    bytes[20] ^= 0x01;
    std::fs::write(&file, &bytes).expect("write");
    assert_eq!(std::fs::metadata(&file).expect("metadata").len(), len);

    let log = open(dir.path());
    let err = log.read_stream(&a).expect_err("a's first chunk is damaged");
    assert_eq!(err.code(), "log_corrupt");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(bodies(&log, &b).len(), 3, "b's chunks are intact");
    let report = log.verify().expect("verify");
    assert!(!report.ok());
    assert!(
        report.problems.iter().any(|p| p.starts_with("chunk at 1:") && p.contains("checksum mismatch")),
        "{:?}",
        report.problems
    );
    assert!(log.read_all(Position(1)).any(|r| r.is_err()), "read_all passes the damage on");
}

/// A chunk file shorter than the log's pointers need (lost or cut by something else): the log
/// opens, reads what it can and says what is missing, and refuses appends, which would leave the
/// missing bytes a hole under new ones.
#[test]
fn a_chunk_file_shorter_than_the_pointers_need_keeps_the_log_from_appending() {
    let dir = common::temp_dir();
    let (a, b) = seed(&open(dir.path()));
    let (file, len) = chunk_files(dir.path())[0].clone();
    OpenOptions::new().write(true).open(&file).expect("open").set_len(len - 10).expect("truncate");

    let log = open(dir.path());
    assert_eq!(bodies(&log, &a).len(), 3, "a's chunks are whole");
    assert_eq!(log.read_stream(&b).expect_err("b's last chunk is cut").code(), "log_corrupt");
    assert_damage_named_and_appends_refused(&log, a, "the log's pointers need");
    assert_eq!(chunk_files(dir.path())[0].1, len - 10, "nothing was written");
}

/// A backup holds each chunk's bytes, never a pointer (it needs no chunk file) nor `m/chunk_end`;
/// a restore keeps every chunk in sled and reads the same. The live log moved aside keeps its
/// chunk files.
#[test]
fn a_backup_holds_the_bytes_of_chunks_in_chunk_files_and_restores_without_them() {
    let dir = common::temp_dir();
    let backups = common::temp_dir();
    let path = backups.path().join("chunks.bak");
    let before = {
        let log = open(dir.path());
        seed(&log);
        log.backup(&path).expect("backup");
        common::read_all(&log)
    };
    let file = BackupFile::read(&path).expect("read the backup");
    let mut chunks = 0;
    for (k, v) in file.records() {
        assert_ne!(k, b"m/chunk_end", "the backup names the live log's chunk files");
        if k.starts_with(b"e/") {
            chunks += 1;
            assert_eq!(v[0], codec::CHUNK_FORMAT, "a backup's chunk is its bytes");
            codec::decode_chunk(v).expect("decodes without a chunk file");
        }
    }
    assert_eq!(chunks, 6);

    let (log, report) = lethe_eventlog::restore(LogConfig::new(dir.path(), common::master()), &path).expect("restore");
    assert_eq!(common::read_all(&log), before);
    assert!(log.verify().expect("verify").ok());
    assert!(chunk_files(dir.path()).is_empty(), "the restored log keeps its chunks in sled");
    let aside = report.previous_log.expect("the live log was moved aside");
    assert_eq!(std::fs::read_dir(aside.join(CHUNKS_DIR)).expect("its chunk files").count(), 1);
}

/// Pointers without `m/chunk_end` (which the batch holding them always writes): the open cannot
/// tell which bytes are durable, so it removes nothing, says so, and refuses appends.
#[test]
fn pointers_without_the_chunk_files_end_keep_every_file_and_refuse_appends() {
    let dir = common::temp_dir();
    let (a, _) = seed(&open(dir.path()));
    let files = chunk_files(dir.path());
    {
        let db = common::raw_sled(&dir.path().join(LOG_DIR));
        db.remove(b"m/chunk_end").expect("remove").expect("the log stored where its chunk files end");
        db.flush().expect("flush");
    }
    let log = open(dir.path());
    assert_eq!(chunk_files(dir.path()), files, "no chunk file was removed or cut");
    assert_eq!(bodies(&log, &a).len(), 3);
    assert_damage_named_and_appends_refused(&log, a, "m/chunk_end");
}

/// Past `chunk_file_max_bytes` the writer starts a new chunk file; chunks in several files read
/// back the same after a reopen, and appends go on in the newest file.
#[test]
fn chunks_spread_over_several_files_read_back_after_a_reopen() {
    let dir = common::temp_dir();
    let before = {
        let log = open_with(dir.path(), 300);
        seed(&log);
        common::read_all(&log)
    };
    let files = chunk_files(dir.path());
    assert!(files.len() >= 3, "six chunks of about 150 bytes over files of 300: {files:?}");
    let log = open_with(dir.path(), 300);
    assert_eq!(common::read_all(&log), before);
    let a = common::pseudonym(&log, "chunk-a");
    append_one(&log, a, b"more").expect("append");
    drop(log);
    let log = open_with(dir.path(), 300);
    assert_eq!(bodies(&log, &a).len(), 4);
    assert!(log.verify().expect("verify").ok());
    assert!(chunk_files(dir.path()).len() >= files.len());
}
