//! Invariant 6 (deterministic replay): projections are pure functions of the log and the keys. Reading
//! the whole log twice, from any position, or after a reopen gives the same events; after an erasure,
//! a replay holds no payload of the erased subject and is otherwise what it was (R-ERASE-1).

mod common;

use lethe_domain::{EventBody, ExpectedVersion, Position, Pseudonym, RecordedEvent, UtcMicros};
use lethe_eventlog::{AppendRequest, EventStore, SledEventLog};

const SUBJECTS: usize = 6;

/// What a projection may see of the log: (position, subject, payload) of every readable event.
type View = Vec<(u64, Pseudonym, Vec<u8>)>;

fn view(events: &[RecordedEvent]) -> View {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Plain(p) => Some((e.envelope.position.0, e.envelope.subject, p.clone())),
            EventBody::Shredded | EventBody::Expired | EventBody::Empty | EventBody::Unopened => None,
        })
        .collect()
}

/// Six subjects, interleaved appends of one to four events with distinct times and payloads.
fn seed(log: &SledEventLog) -> Vec<Pseudonym> {
    let subjects: Vec<_> = (0..SUBJECTS).map(|i| common::pseudonym(log, &format!("replay-subject-{i}"))).collect();
    for round in 0..40u64 {
        let subject = subjects[(round as usize * 7) % SUBJECTS];
        let events = (0..=round % 4)
            .map(|i| {
                common::event_at(format!("round {round}, event {i}"), UtcMicros(1_000_000 * round as i64 + i as i64))
            })
            .collect();
        log.append(AppendRequest { subject, expected: ExpectedVersion::Any, events }).expect("append");
    }
    subjects
}

#[test]
fn replay_is_deterministic_and_forgets_an_erased_subject() {
    let dir = common::temp_dir();
    let (subjects, first) = {
        let log = common::open(dir.path());
        let subjects = seed(&log);
        let first = common::read_all(&log);
        assert_eq!(first, common::read_all(&log), "two reads of the same log differ");
        assert_eq!(first.len() as u64, log.head().0);
        // Reading from any position gives the same suffix.
        for from in [1, 2, 17, first.len() as u64, first.len() as u64 + 1] {
            let suffix: Vec<_> = log.read_all(Position(from)).collect::<Result<_, _>>().expect("read suffix");
            assert_eq!(suffix, first[(from - 1) as usize..], "read_all from {from}");
        }
        // read_stream agrees with read_all, subject by subject.
        for s in &subjects {
            let from_all: Vec<_> = first.iter().filter(|e| e.envelope.subject == *s).cloned().collect();
            assert_eq!(log.read_stream(s).expect("read_stream"), from_all);
        }
        (subjects, first)
    };
    assert_eq!(view(&first).len(), first.len(), "every seeded event is readable");

    // A reopen (new incarnation, cold key cache) reads back the same events.
    let log = common::open(dir.path());
    assert_eq!(common::read_all(&log), first, "the log reads differently after a reopen");

    // After an erasure the replay has no payload of the subject and everything else is unchanged.
    let erased = subjects[2];
    assert!(view(&first).iter().any(|(_, s, _)| *s == erased), "the erased subject had events");
    log.erase(&erased).expect("erase");
    let after = common::read_all(&log);
    let want: View = view(&first).into_iter().filter(|(_, s, _)| *s != erased).collect();
    assert_eq!(view(&after), want);
    assert!(after.iter().filter(|e| e.envelope.subject == erased).all(|e| !matches!(e.body, EventBody::Plain(_))));
    assert_eq!(after.len(), first.len() + 1, "the erasure adds its fence and nothing else");
    assert_eq!(
        after[..first.len()].iter().map(|e| &e.envelope).collect::<Vec<_>>(),
        first.iter().map(|e| &e.envelope).collect::<Vec<_>>(),
        "envelopes are never rewritten"
    );
    assert_eq!(common::read_all(&log), after);

    // Still the same after a rotation and a reopen.
    log.rotate_keys().expect("rotate");
    assert_eq!(common::read_all(&log), after);
    drop(log);
    let log = common::open(dir.path());
    assert_eq!(common::read_all(&log), after, "the erased log reads differently after a reopen");
}

/// Three appends of 64 events of 4 KiB: a chunk of about 260 KiB each. Returns what the log reads.
fn append_large_groups(log: &lethe_eventlog::SledEventLog) -> Vec<lethe_domain::RecordedEvent> {
    let subject = common::pseudonym(log, "large-subject");
    for group in 0..3u8 {
        let payloads: Vec<Vec<u8>> = (0..64u8).map(|i| vec![group ^ i; 4096]).collect();
        let events = payloads.into_iter().map(common::event).collect();
        log.append(AppendRequest { subject, expected: ExpectedVersion::Any, events }).expect("append");
    }
    let first = common::read_all(log);
    assert_eq!(first.len(), 192);
    first
}

/// How many files a folder of the log database holds.
fn files_in(dir: &std::path::Path, folder: &str) -> usize {
    std::fs::read_dir(dir.join("log").join(folder)).map_or(0, |entries| entries.filter_map(Result::ok).count())
}

/// Large group commits go to chunk files (layout 7), and sled keeps a pointer to each: sled never
/// stores them as blob files of its own. They read back the same after a reopen.
#[test]
fn large_group_commits_go_to_chunk_files_and_read_back_after_a_reopen() {
    let dir = common::temp_dir();
    let first = append_large_groups(&common::open(dir.path()));
    assert!(files_in(dir.path(), lethe_eventlog::CHUNKS_DIR) > 0, "no chunk file was written");
    let bytes: u64 = std::fs::read_dir(dir.path().join("log").join(lethe_eventlog::CHUNKS_DIR))
        .expect("chunk files")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    assert!(bytes >= 3 * 64 * 4096, "the chunk files hold the three chunks: {bytes} bytes");
    assert_eq!(files_in(dir.path(), "blobs"), 0, "sled wrote a blob file: a large chunk stayed in its tree");
    let log = common::open(dir.path());
    assert_eq!(common::read_all(&log), first, "a log with chunk files reads differently after a reopen");
    assert!(log.verify().expect("verify").ok());
}

/// Group commits too large for sled's log buffers (over 128 KiB), kept in sled (as layouts before 7
/// did, and as `chunk_file_min_bytes` can still ask), are stored by sled as blob files beside the
/// log. They read back the same after a reopen. (That sled syncs them before pointing at them,
/// `vendor/sled/LETHE.md`, is what a power loss would test; a reopen reads the page cache.)
#[test]
fn group_commits_stored_as_blob_files_read_back_after_a_reopen() {
    let dir = common::temp_dir();
    let open = || {
        let mut config = lethe_eventlog::LogConfig::new(dir.path(), common::master());
        config.chunk_file_min_bytes = usize::MAX;
        common::retry_while_locked(|| lethe_eventlog::SledEventLog::open(config.clone())).expect("open")
    };
    let first = append_large_groups(&open());
    assert!(files_in(dir.path(), "blobs") > 0, "no group commit went to a blob file: the test no longer covers them");
    assert_eq!(files_in(dir.path(), lethe_eventlog::CHUNKS_DIR), 0, "a chunk went to a chunk file");
    let log = open();
    assert_eq!(common::read_all(&log), first, "a log with blob files reads differently after a reopen");
}

/// A crash while sled writes a snapshot of its page table leaves a `snap.*.generating` file behind.
/// The log opens anyway and reads the same events (sled 0.34.7 took the leftover for the newest
/// snapshot and refused to open as corrupt; `vendor/sled/LETHE.md`).
#[test]
fn a_snapshot_left_half_written_by_a_crash_does_not_keep_the_log_from_opening() {
    let dir = common::temp_dir();
    let first = {
        let log = common::open(dir.path());
        seed(&log);
        common::read_all(&log)
    };
    // Sorts after every real snapshot: sled takes the last name.
    std::fs::write(dir.path().join("log").join("snap.7FFFFFFFFFFFFFFF.generating"), b"")
        .expect("leave a torn snapshot");
    let log = common::open(dir.path());
    assert_eq!(common::read_all(&log), first, "the log reads differently beside a torn snapshot");
}
