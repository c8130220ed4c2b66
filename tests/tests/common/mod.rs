//! Helpers shared by the scenario tests: data directories with a fixed master key, event builders,
//! recursive copies and byte scans over every file of a data directory.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lethe_crypto::MasterSource;
use lethe_domain::{
    EventType, ExpectedVersion, NewEvent, Pseudonym, Purpose, RecordedEvent, SchemaVersion, SubjectId, UtcMicros,
};
use lethe_eventlog::{AppendRequest, Appended, EventStore, LogConfig, SledEventLog};
pub use lethe_tests::TEST_MASTER_HEX;

/// A fresh, empty temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("lethe-test-").tempdir().expect("create a temporary directory")
}

/// The master secret of test data directories.
pub fn master() -> MasterSource {
    MasterSource::Hex(TEST_MASTER_HEX.to_owned())
}

/// Opens (or creates) the log in `dir` with the test master secret.
pub fn open(dir: &Path) -> SledEventLog {
    retry_while_locked(|| SledEventLog::open(LogConfig::new(dir, master()))).expect("open the log")
}

/// Opens a sled database directly, to read or edit the stored bytes while the log is closed.
pub fn raw_sled(path: &Path) -> sled::Db {
    retry_while_locked(|| sled::open(path)).expect("open the raw sled database")
}

/// sled releases its file lock when its last background IO thread lets go of the database, which
/// can be a moment after the `Db` (or the log holding it) is dropped. A reopen in the same process
/// waits for that, up to two seconds; any other error is returned at once.
pub fn retry_while_locked<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match open() {
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// The pseudonym of an external id.
pub fn pseudonym(log: &SledEventLog, id: &str) -> Pseudonym {
    log.pseudonymize(&SubjectId::parse(id).expect("valid subject id"))
}

/// An event of type `test.recorded`, version 1, purpose `analytics`, at a fixed time.
pub fn event(payload: impl Into<Vec<u8>>) -> NewEvent {
    event_at(payload, UtcMicros(1_700_000_000_000_000))
}

/// An event of type `test.recorded`, version 1, purpose `analytics`, at `time`.
pub fn event_at(payload: impl Into<Vec<u8>>, time: UtcMicros) -> NewEvent {
    NewEvent {
        event_type: EventType::parse("test.recorded").expect("valid type"),
        schema_version: SchemaVersion::new(1).expect("valid version"),
        purpose: Purpose::parse("analytics").expect("valid purpose"),
        time,
        retention: lethe_domain::Retention::UntilErased,
        payload: payload.into(),
    }
}

/// Appends payloads to a subject's stream with `ExpectedVersion::Any`; panics on failure.
pub fn append(log: &SledEventLog, subject: Pseudonym, payloads: &[&[u8]]) -> Appended {
    let events = payloads.iter().map(|p| event(*p)).collect();
    log.append(AppendRequest { subject, expected: ExpectedVersion::Any, events }).expect("append")
}

/// Every event of the log, in position order; panics on a read error.
pub fn read_all(log: &SledEventLog) -> Vec<RecordedEvent> {
    log.read_all(lethe_domain::Position(1)).collect::<Result<_, _>>().expect("read the whole log")
}

/// Copies a directory tree (files and folders; nothing else exists in a data directory).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create copy target");
    for entry in std::fs::read_dir(src).expect("read directory") {
        let entry = entry.expect("directory entry");
        let to = dst.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            assert!(kind.is_file(), "unexpected non-file {}", entry.path().display());
            std::fs::copy(entry.path(), &to).expect("copy file");
        }
    }
}

pub use lethe_testkit::files_under;

/// One occurrence of a needle in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub file: PathBuf,
    pub needle: usize,
    pub offset: usize,
}

/// Finds every occurrence of every needle (each at least 2 bytes long) in `haystack`. A table of
/// the needles' first two bytes filters the offsets worth a hash lookup, so thousands of needles
/// cost little more than one.
pub fn find_in(haystack: &[u8], needles: &[&[u8]]) -> Vec<(usize, usize)> {
    let mut first_two = vec![false; 1 << 16];
    let mut by_len: HashMap<usize, HashMap<&[u8], Vec<usize>>> = HashMap::new();
    for (i, n) in needles.iter().enumerate() {
        assert!(n.len() >= 2, "needles must be at least 2 bytes");
        first_two[usize::from(n[0]) << 8 | usize::from(n[1])] = true;
        by_len.entry(n.len()).or_default().entry(n).or_default().push(i);
    }
    let mut hits = Vec::new();
    for (offset, pair) in haystack.windows(2).enumerate() {
        if !first_two[usize::from(pair[0]) << 8 | usize::from(pair[1])] {
            continue;
        }
        for (len, table) in &by_len {
            if let Some(window) = haystack.get(offset..offset + len) {
                if let Some(ids) = table.get(window) {
                    hits.extend(ids.iter().map(|&id| (id, offset)));
                }
            }
        }
    }
    hits
}

/// Scans every byte of every file under `dir` for every needle.
pub fn scan_dir(dir: &Path, needles: &[&[u8]]) -> Vec<Hit> {
    let mut hits = Vec::new();
    for file in files_under(dir) {
        let bytes = std::fs::read(&file).expect("read file");
        for (needle, offset) in find_in(&bytes, needles) {
            hits.push(Hit { file: file.clone(), needle, offset });
        }
    }
    hits
}

/// `n` random lowercase hex characters.
pub fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from_digit(rng.gen_range(0..16), 16).expect("hex digit")).collect()
}

/// Every event body of the log, with unreadable events (missing keys) left out.
pub fn read_all_lossy(log: &SledEventLog) -> Vec<lethe_domain::EventBody> {
    log.read_all(lethe_domain::Position(1)).filter_map(Result::ok).map(|e| e.body).collect()
}
