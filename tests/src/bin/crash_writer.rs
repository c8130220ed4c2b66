//! The crash test's victim: opens a data directory and appends batches from a few threads until it
//! is killed. After each acknowledged append it prints an `acked` line and flushes it, so that the
//! test knows exactly which batches the log promised to keep. The first thread's appends are deferred
//! (as decision receipts are), so their runs wait outside the stream index; the log indexes them past
//! a few waiting runs, so that kills land before, during and after that.
//!
//! Usage: `crash_writer <data-dir> <run> <seed>`, master secret in `LETHE_MASTER_KEY` (hex).
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use lethe_crypto::MasterSource;
use lethe_domain::{EventType, ExpectedVersion, NewEvent, Purpose, SchemaVersion, Seq, SubjectId, UtcMicros};
use lethe_eventlog::{AppendRequest, EventStore, LogConfig, SledEventLog, SubjectState};
use lethe_tests::crash::{subject_id, BatchEvent, Line, SUBJECTS};
use rand::{Rng, SeedableRng};

const THREADS: usize = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, run, seed] = args.as_slice() else {
        eprintln!("usage: crash_writer <data-dir> <run> <seed>");
        return ExitCode::from(2);
    };
    let (Ok(run), Ok(seed)) = (run.parse::<u64>(), seed.parse::<u64>()) else {
        eprintln!("run and seed must be numbers");
        return ExitCode::from(2);
    };
    let Ok(master) = std::env::var("LETHE_MASTER_KEY") else {
        eprintln!("LETHE_MASTER_KEY is not set");
        return ExitCode::from(2);
    };
    match write_until_killed(PathBuf::from(dir), run, seed, master) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn print(line: Line) {
    let mut out = std::io::stdout().lock();
    // One write of a short line to a pipe is atomic; a torn last line is ignored by the reader.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn write_until_killed(dir: PathBuf, run: u64, seed: u64, master: String) -> Result<(), String> {
    let mut config = LogConfig::new(dir, MasterSource::Hex(master));
    config.max_unindexed_runs = 16;
    // Every other run keeps every chunk in a chunk file, so that kills land between a chunk file's
    // write and the batch that points at it.
    if run % 2 == 1 {
        config.chunk_file_min_bytes = 0;
    }
    let log = SledEventLog::open(config).map_err(|e| e.to_string())?;
    print(Line::Opened { incarnation: log.incarnation() });
    let subjects: Vec<_> =
        (0..SUBJECTS).map(|i| log.pseudonymize(&SubjectId::parse(&subject_id(i)).expect("valid subject id"))).collect();
    // Stream heads as the log knows them at start; from then on each thread tracks its own subjects.
    let mut heads = Vec::with_capacity(SUBJECTS);
    for s in &subjects {
        let head = match log.subject_state(s).map_err(|e| e.to_string())? {
            SubjectState::Unknown => 0,
            SubjectState::Active { events, .. } => events,
            SubjectState::Erased { .. } => return Err("a crash-test subject is erased".into()),
        };
        heads.push(head);
    }
    let log = &log;
    let subjects = &subjects;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let mine: Vec<(usize, u64)> = (t..SUBJECTS).step_by(THREADS).map(|i| (i, heads[i])).collect();
            scope.spawn(move || {
                let first = run * 1_000_000 + t as u64 * 100_000;
                if let Err(e) = worker(log, subjects, mine, first, seed ^ t as u64, t == 0) {
                    fail(&e);
                }
            });
        }
    });
    Ok(())
}

/// Reports a failure on stdout too (the test reads stdout and refuses any line it does not know, so a
/// failure is seen even if the kill comes before the exit status), then stops the whole process.
fn fail(message: &str) -> ! {
    eprintln!("crash_writer: {message}");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "failed: {message}");
    let _ = out.flush();
    std::process::exit(1)
}

fn worker(
    log: &SledEventLog,
    subjects: &[lethe_domain::Pseudonym],
    mut mine: Vec<(usize, u64)>,
    first_batch: u64,
    seed: u64,
    deferred: bool,
) -> Result<(), String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let event_type = EventType::parse("crash.appended").expect("valid type");
    let purpose = Purpose::parse("analytics").expect("valid purpose");
    for batch in first_batch.. {
        let slot = rng.gen_range(0..mine.len());
        let (subject, head) = mine[slot];
        let size: u32 = rng.gen_range(1..=20);
        let expected = if rng.gen_ratio(1, 5) {
            ExpectedVersion::Any
        } else if head == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(Seq(head))
        };
        let events = (0..size)
            .map(|index| NewEvent {
                event_type: event_type.clone(),
                schema_version: SchemaVersion::new(1).expect("valid version"),
                purpose: purpose.clone(),
                time: UtcMicros::now(),
                retention: lethe_domain::Retention::UntilErased,
                payload: BatchEvent { subject, batch, index, size }.encode(),
            })
            .collect();
        let request = AppendRequest { subject: subjects[subject], expected, events };
        let appended = if deferred {
            let (tx, rx) = std::sync::mpsc::channel();
            log.append_batch_deferred(vec![request], Box::new(move |r| drop(tx.send(r))));
            let mut results = rx.recv().map_err(|_| format!("batch {batch}: no answer"))?;
            results.pop().ok_or_else(|| format!("batch {batch}: no result"))?
        } else {
            log.append(request)
        }
        .map_err(|e| format!("batch {batch}: {e}"))?;
        if appended.last_seq.0 != head + u64::from(size) {
            return Err(format!("batch {batch}: stream at {} after appending {size} to {head}", appended.last_seq.0));
        }
        mine[slot].1 = appended.last_seq.0;
        print(Line::Acked {
            batch,
            subject,
            size,
            first_position: appended.first_position.0,
            last_position: appended.last_position.0,
            last_seq: appended.last_seq.0,
        });
    }
    Ok(())
}
