//! Crash safety of the sled log, tested the way sled tests itself: a child process appends until it
//! is killed with SIGKILL at a random moment, and the parent checks the log's contracts on reopen.
//!
//! Proves the `EventStore` contracts (shared/lethe-eventlog/src/store.rs): "an `Ok` from an append
//! means the events are durable" and "the events of one request are all stored or none is, even
//! across a crash"; invariant 2 (append-only: positions 1, 2, 3… without gaps, streams without
//! gaps); invariant 1's nonce scheme (every open bumps the incarnation, so a `seq` sealed but never
//! acknowledged before a crash is never sealed again under the same nonce).
//!
//! `LETHE_CRASH_RUNS` (default 25) sets the number of kills, `LETHE_CRASH_SEED` replays a run.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use lethe_domain::{EventBody, Position, Pseudonym, Seq};
use lethe_eventlog::EventStore;
use lethe_tests::crash::{subject_id, BatchEvent, Line, SUBJECTS};
use rand::{Rng, SeedableRng};

/// What the log holds of one batch: (position, seq, event) in log order.
type Stored = Vec<(u64, u64, BatchEvent)>;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

struct Run {
    lines: Vec<Line>,
    stderr: String,
}

/// Starts `crash_writer`, lets it append for `delay`, then kills it with SIGKILL.
fn run_and_kill(dir: &std::path::Path, run: u64, seed: u64, delay: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
        .arg(dir)
        .arg(run.to_string())
        .arg(seed.to_string())
        .env("LETHE_MASTER_KEY", common::TEST_MASTER_HEX)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crash_writer");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).expect("read crash_writer's stdout");
        out
    });
    std::thread::sleep(delay);
    // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no chance to clean up.
    let _ = child.kill();
    let status = child.wait().expect("wait for crash_writer");
    let out = reader.join().expect("stdout reader");
    let mut stderr = String::new();
    child.stderr.take().expect("piped stderr").read_to_string(&mut stderr).expect("read stderr");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "run {run}: crash_writer stopped on its own ({status}) before it was killed: {stderr}"
    );
    // Only complete lines count: the last one may have been cut by the kill.
    let lines = out
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| match l.strip_prefix("failed: ") {
            Some(reason) => panic!("run {run}: crash_writer failed: {reason}"),
            None => Line::parse(l).unwrap_or_else(|| panic!("run {run}: unreadable line {l:?}")),
        })
        .collect();
    Run { lines, stderr }
}

#[test]
fn a_killed_writer_loses_no_acknowledged_batch_and_tears_none() {
    let runs = env_u64("LETHE_CRASH_RUNS").unwrap_or(25);
    let seed = env_u64("LETHE_CRASH_SEED").unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("crash test: {runs} runs, LETHE_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = common::temp_dir();

    let (subjects, mut last_incarnation): (Vec<Pseudonym>, u32) = {
        let log = common::open(dir.path());
        let subjects = (0..SUBJECTS).map(|i| common::pseudonym(&log, &subject_id(i))).collect();
        (subjects, log.incarnation())
    };
    // Every acknowledged append of every run so far: batch id -> the child's `Acked` line.
    let mut acked: BTreeMap<u64, Line> = BTreeMap::new();
    let mut in_flight_kept = 0usize;
    // What the log held at the last check: batches, stream heads, head position.
    let mut batches: BTreeMap<u64, Stored> = BTreeMap::new();
    let mut stream_heads: BTreeMap<Pseudonym, u64> = BTreeMap::new();
    let mut checked_head = 0u64;

    for run in 0..runs {
        let delay = Duration::from_millis(rng.gen_range(50..=400));
        let Run { lines, stderr } = run_and_kill(dir.path(), run, rng.gen(), delay);
        let mut child_incarnation = None;
        for line in lines {
            match line {
                Line::Opened { incarnation } => child_incarnation = Some(incarnation),
                Line::Acked { batch, .. } => assert!(acked.insert(batch, line).is_none(), "batch {batch} acked twice"),
            }
        }

        let log = common::open(dir.path());
        let incarnation = log.incarnation();
        match child_incarnation {
            Some(c) => {
                assert_eq!(c, last_incarnation + 1, "run {run}: the child's open must bump the incarnation");
                assert_eq!(incarnation, c + 1, "run {run}: reopening after the kill must bump the incarnation");
            }
            // Killed before it said so: it may or may not have bumped the counter.
            None => assert!(
                incarnation == last_incarnation + 1 || incarnation == last_incarnation + 2,
                "run {run}: incarnation {incarnation} after {last_incarnation}; stderr: {stderr}"
            ),
        }
        last_incarnation = incarnation;

        // Every event decrypts and positions run 1, 2, 3… up to the head. `verify` below re-reads the
        // whole log after every kill; the payload checks re-read it all every few runs and otherwise
        // read what this run added (debug builds decrypt about 20k events a second).
        let full = run % 5 == 4 || run + 1 == runs;
        if full {
            batches.clear();
            stream_heads.clear();
            checked_head = 0;
        }
        let events: Vec<_> =
            log.read_all(Position(checked_head + 1)).collect::<Result<_, _>>().expect("every event reads back");
        for e in &events {
            let env = &e.envelope;
            checked_head += 1;
            assert_eq!(env.position, Position(checked_head), "run {run}: positions must be contiguous from 1");
            let head = stream_heads.entry(env.subject).or_default();
            assert_eq!(env.seq, Seq(*head + 1), "run {run}: stream sequence gap at position {}", env.position.0);
            *head += 1;
            let EventBody::Plain(payload) = &e.body else {
                panic!("run {run}: position {} does not read as plaintext: {:?}", env.position.0, e.body);
            };
            let ev = BatchEvent::parse(payload)
                .unwrap_or_else(|| panic!("run {run}: position {} holds a foreign payload", env.position.0));
            assert_eq!(
                env.subject, subjects[ev.subject],
                "run {run}: batch {} stored under the wrong subject",
                ev.batch
            );
            batches.entry(ev.batch).or_default().push((env.position.0, env.seq.0, ev));
        }
        assert_eq!(log.head(), Position(checked_head), "run {run}: head disagrees with the events read");

        // No torn batch: whatever the log holds of a batch, it holds all of it, contiguously.
        for (batch, stored) in &batches {
            let size = stored[0].2.size;
            assert_eq!(
                stored.len(),
                size as usize,
                "run {run}: batch {batch} is torn: {} of {size} events",
                stored.len()
            );
            for (k, (pos, seq, ev)) in stored.iter().enumerate() {
                assert_eq!(
                    (ev.index, ev.size, ev.subject),
                    (k as u32, size, stored[0].2.subject),
                    "run {run}: batch {batch}"
                );
                assert_eq!(*pos, stored[0].0 + k as u64, "run {run}: batch {batch} is not contiguous in position");
                assert_eq!(*seq, stored[0].1 + k as u64, "run {run}: batch {batch} is not contiguous in its stream");
            }
        }

        // Acknowledged means durable, exactly where the acknowledgement said.
        for line in acked.values() {
            let Line::Acked { batch, subject, size, first_position, last_position, last_seq } = *line else {
                unreachable!("only acked lines are kept")
            };
            let stored =
                batches.get(&batch).unwrap_or_else(|| panic!("run {run}: acknowledged batch {batch} was lost"));
            let first = stored.first().expect("non-empty");
            let last = stored.last().expect("non-empty");
            assert_eq!(
                (first.2.subject, first.2.size, first.0, last.0, last.1),
                (subject, size, first_position, last_position, last_seq),
                "run {run}: batch {batch} is not where its acknowledgement put it"
            );
        }
        in_flight_kept += batches.keys().filter(|b| **b / 1_000_000 == run && !acked.contains_key(b)).count();

        let report = log.verify().expect("verify");
        assert!(report.ok(), "run {run}: verify found problems: {report:?}");
        assert_eq!((report.events, report.decrypted), (checked_head, checked_head), "run {run}");
    }

    eprintln!(
        "crash test: {} acknowledged batches survived {runs} kills; {in_flight_kept} unacknowledged batch(es) were kept whole",
        acked.len()
    );
    assert!(!acked.is_empty(), "no run acknowledged anything: the test proved nothing");
}
