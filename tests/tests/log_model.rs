//! The sled log against an in-memory model, under random sequences of appends (every kind of
//! `ExpectedVersion`, several requests per group commit), reads, erasures, key rotations and
//! reopens.
//!
//! Proves the `EventStore` contracts (shared/lethe-eventlog/src/store.rs: conflicts on a wrong
//! expected version, streams numbered 1, 2, 3…, positions unique and increasing, each request all or
//! nothing), invariant 2 (append-only: nothing read back ever changes except erased payloads turning
//! into tombstones), R-ERASE-1 (an erased subject's payloads read as `Shredded`), R-ERASE-2 (appends
//! for an erased subject are refused, also after a reopen) and invariant 6 (a reopened log reads
//! back the same).
//!
//! Deferred appends (decision receipts) are part of the model: their runs wait outside the stream
//! index (layout 6) until more than the log's limit are waiting, which each case sets between 0
//! (indexed with the next group) and a number no case reaches (indexed never, found again at every
//! reopen from the marked chunks). Each case also sets where chunks go (layout 7): every one to a
//! chunk file, the larger ones, or none; the chunk files are small, so a case spans several.

mod common;

use std::collections::BTreeSet;

use lethe_domain::{EventBody, ExpectedVersion, KeyId, NewEvent, Position, Pseudonym, Seq};
use lethe_eventlog::{AppendRequest, Appended, EventStore, LogConfig, LogError, SledEventLog, SubjectState};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const SUBJECTS: usize = 4;

/// How an append states its expectation, relative to the stream's real version.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    NoStream,
    /// The stream's real version (`NoStream` for an empty stream).
    Correct,
    /// Off by `delta` from the real version (above it, or below when `below` and possible).
    Wrong {
        delta: u64,
        below: bool,
    },
}

#[derive(Debug, Clone)]
struct AppendSpec {
    subject: usize,
    expect: Expect,
    payloads: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
enum Op {
    /// One group commit of one or more requests.
    Append(Vec<AppendSpec>),
    /// The same, as one deferred append (`append_batch_deferred`), waited for.
    AppendDeferred(Vec<AppendSpec>),
    Read(usize),
    Erase(usize),
    Rotate,
    Reopen,
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        2 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        3 => Just(Expect::Correct),
        2 => (1u64..=3, any::<bool>()).prop_map(|(delta, below)| Expect::Wrong { delta, below }),
    ]
}

fn append_spec() -> impl Strategy<Value = AppendSpec> {
    // An empty request now and then: it must fail with `EmptyAppend` and nothing else.
    let payloads = prop_oneof![
        1 => Just(Vec::new()),
        12 => proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 1..5),
    ];
    (0..SUBJECTS, expect(), payloads).prop_map(|(subject, expect, payloads)| AppendSpec { subject, expect, payloads })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(append_spec(), 1..4).prop_map(Op::Append),
        4 => proptest::collection::vec(append_spec(), 1..4).prop_map(Op::AppendDeferred),
        3 => (0..SUBJECTS).prop_map(Op::Read),
        1 => (0..SUBJECTS).prop_map(Op::Erase),
        1 => Just(Op::Rotate),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ModelEvent {
    Payload(Vec<u8>),
    Fence,
}

/// What the log should hold: every event in position order, who is erased, the key epoch and the
/// log head at the last rotation (erasures after it are not final yet).
#[derive(Debug, Clone)]
struct Model {
    log: Vec<(usize, ModelEvent)>,
    erased: BTreeSet<usize>,
    rotated_at: u64,
    epoch: u32,
}

/// What an append should answer.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Appended(Appended),
    Conflict(Option<Seq>),
    Erased,
    Empty,
}

impl Model {
    fn head(&self) -> u64 {
        self.log.len() as u64
    }

    /// (position, event) of a subject's stream.
    fn stream(&self, subject: usize) -> Vec<(u64, &ModelEvent)> {
        let events = self.log.iter().enumerate().filter(|(_, (s, _))| *s == subject);
        events.map(|(i, (_, e))| (i as u64 + 1, e)).collect()
    }

    fn stream_len(&self, subject: usize) -> u64 {
        self.stream(subject).len() as u64
    }

    fn fence(&self, subject: usize) -> Option<u64> {
        self.stream(subject).iter().find(|(_, e)| **e == ModelEvent::Fence).map(|(pos, _)| *pos)
    }

    /// Erasures written since the last rotation.
    fn pending_erasures(&self) -> u64 {
        (0..SUBJECTS).filter(|s| self.fence(*s).is_some_and(|f| f > self.rotated_at)).count() as u64
    }

    fn payloads(&self, subject: usize) -> u64 {
        self.stream(subject).iter().filter(|(_, e)| matches!(e, ModelEvent::Payload(_))).count() as u64
    }

    fn expected_version(&self, spec: &AppendSpec) -> ExpectedVersion {
        let len = self.stream_len(spec.subject);
        match spec.expect {
            Expect::Any => ExpectedVersion::Any,
            Expect::NoStream => ExpectedVersion::NoStream,
            Expect::Correct if len == 0 => ExpectedVersion::NoStream,
            Expect::Correct => ExpectedVersion::Exact(Seq(len)),
            // `Exact(0)` on an empty stream is left out: whether it means "no stream" is not part
            // of the contract the model checks.
            Expect::Wrong { delta, below: true } if len > 0 && delta <= len => ExpectedVersion::Exact(Seq(len - delta)),
            Expect::Wrong { delta, .. } => ExpectedVersion::Exact(Seq(len + delta)),
        }
    }

    /// Applies one request the way the contract says, independently of `ExpectedVersion::admits`.
    fn append(&mut self, spec: &AppendSpec, expected: ExpectedVersion) -> Outcome {
        if spec.payloads.is_empty() {
            return Outcome::Empty;
        }
        if self.erased.contains(&spec.subject) {
            return Outcome::Erased;
        }
        let len = self.stream_len(spec.subject);
        let admitted = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => len == 0,
            ExpectedVersion::Exact(Seq(s)) => len > 0 && s == len,
        };
        if !admitted {
            return Outcome::Conflict((len > 0).then_some(Seq(len)));
        }
        let first = self.head() + 1;
        for p in &spec.payloads {
            self.log.push((spec.subject, ModelEvent::Payload(p.clone())));
        }
        Outcome::Appended(Appended {
            first_position: Position(first),
            last_position: Position(self.head()),
            last_seq: Seq(len + spec.payloads.len() as u64),
        })
    }
}

fn outcome(r: lethe_eventlog::Result<Appended>) -> Outcome {
    match r {
        Ok(a) => Outcome::Appended(a),
        Err(LogError::Conflict { actual, .. }) => Outcome::Conflict(actual),
        Err(LogError::Erased(_)) => Outcome::Erased,
        Err(LogError::EmptyAppend) => Outcome::Empty,
        Err(e) => panic!("unexpected append error: {e}"),
    }
}

/// The body a read must return for a model event.
fn body_of(model: &Model, subject: usize, e: &ModelEvent) -> EventBody {
    match e {
        ModelEvent::Fence => EventBody::Empty,
        ModelEvent::Payload(_) if model.erased.contains(&subject) => EventBody::Shredded,
        ModelEvent::Payload(p) => EventBody::Plain(p.clone()),
    }
}

fn check_stream(log: &SledEventLog, model: &Model, subjects: &[Pseudonym], subject: usize) {
    let got = log.read_stream(&subjects[subject]).expect("read_stream");
    let want = model.stream(subject);
    assert_eq!(got.len(), want.len(), "stream of subject {subject}");
    for (i, (g, (pos, e))) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.envelope.subject, subjects[subject]);
        assert_eq!((g.envelope.position, g.envelope.seq), (Position(*pos), Seq(i as u64 + 1)), "subject {subject}");
        assert_eq!(g.body, body_of(model, subject, e), "subject {subject}, seq {}", i + 1);
    }
    let state = log.subject_state(&subjects[subject]).expect("subject_state");
    match (&state, model.erased.contains(&subject)) {
        (SubjectState::Erased { fence, rotation_pending, .. }, true) => {
            // The erasure is final once a rotation has run after its fence.
            let at = model.fence(subject).expect("an erased stream holds a fence");
            assert_eq!((*fence, *rotation_pending), (Position(at), at > model.rotated_at), "subject {subject}");
        }
        (SubjectState::Unknown, false) => assert!(want.is_empty(), "subject {subject} has events but reads as unknown"),
        (SubjectState::Active { events, key_ids }, false) => {
            assert_eq!((*events, key_ids.as_slice()), (want.len() as u64, &[KeyId(0)][..]), "subject {subject}");
        }
        (state, erased) => panic!("subject {subject}: state {state:?}, erased in the model: {erased}"),
    }
}

fn check_everything(log: &SledEventLog, model: &Model, subjects: &[Pseudonym]) {
    let all = common::read_all(log);
    assert_eq!(all.len(), model.log.len(), "read_all length");
    for (i, (got, (subject, e))) in all.iter().zip(&model.log).enumerate() {
        assert_eq!((got.envelope.position, got.envelope.subject), (Position(i as u64 + 1), subjects[*subject]));
        assert_eq!(got.body, body_of(model, *subject, e), "position {}", i + 1);
    }
    let report = log.verify().expect("verify");
    assert!(report.ok(), "{report:?}");
    let count = |f: &dyn Fn(&(usize, ModelEvent)) -> bool| model.log.iter().filter(|x| f(x)).count() as u64;
    assert_eq!(report.events, model.head());
    assert_eq!(report.decrypted, count(&|(s, e)| matches!(e, ModelEvent::Payload(_)) && !model.erased.contains(s)));
    assert_eq!(report.tombstones, count(&|(s, e)| matches!(e, ModelEvent::Payload(_)) && model.erased.contains(s)));
    assert_eq!(report.fences, model.erased.len() as u64);
    assert_eq!(report.erased_subjects, model.erased.len() as u64);
    assert_eq!(report.subjects, model.log.iter().map(|(s, _)| *s).collect::<BTreeSet<_>>().len() as u64);
    assert_eq!(report.rotation_pending, model.pending_erasures() > 0);
    assert_eq!(report.current_epoch, model.epoch);
}

/// Opens the log with at most `max_unindexed` runs of deferred appends left out of the index, and
/// chunks of `chunk_min` bytes or more in chunk files (a new file past 400 bytes: several files), none
/// of their durable bytes left in the page cache (reads come from the files themselves).
fn open(dir: &std::path::Path, max_unindexed: usize, chunk_min: usize) -> SledEventLog {
    common::retry_while_locked(|| {
        let mut config = LogConfig::new(dir, common::master());
        config.max_unindexed_runs = max_unindexed;
        config.chunk_file_min_bytes = chunk_min;
        config.chunk_file_max_bytes = 400;
        config.chunk_cache_tail_bytes = 0;
        SledEventLog::open(config)
    })
    .expect("open the log")
}

fn run(ops: &[Op], max_unindexed: usize, chunk_min: usize) {
    let dir = common::temp_dir();
    let mut log = open(dir.path(), max_unindexed, chunk_min);
    let subjects: Vec<Pseudonym> =
        (0..SUBJECTS).map(|i| common::pseudonym(&log, &format!("model-subject-{i}"))).collect();
    let mut model = Model { log: Vec::new(), erased: BTreeSet::new(), rotated_at: 0, epoch: 1 };
    assert_eq!(log.current_epoch(), 1);

    for op in ops {
        match op {
            Op::Append(specs) | Op::AppendDeferred(specs) => {
                let mut next = model.clone();
                let mut requests = Vec::new();
                let mut want = Vec::new();
                for spec in specs {
                    let expected = next.expected_version(spec);
                    want.push(next.append(spec, expected));
                    let events = spec.payloads.iter().map(|p| NewEvent { payload: p.clone(), ..common::event("") });
                    requests.push(AppendRequest {
                        subject: subjects[spec.subject],
                        expected,
                        events: events.collect(),
                    });
                }
                let results = if matches!(op, Op::AppendDeferred(_)) {
                    let (tx, rx) = std::sync::mpsc::channel();
                    log.append_batch_deferred(requests, Box::new(move |r| tx.send(r).expect("send")));
                    rx.recv_timeout(std::time::Duration::from_secs(10)).expect("a deferred append is answered")
                } else {
                    log.append_batch(requests)
                };
                let got: Vec<Outcome> = results.into_iter().map(outcome).collect();
                assert_eq!(got, want, "append {specs:?}");
                model = next;
            }
            Op::Read(s) => check_stream(&log, &model, &subjects, *s),
            Op::Erase(s) => {
                let receipt = log.erase(&subjects[*s]).expect("erase");
                let newly = model.erased.insert(*s);
                assert_eq!(receipt.newly_erased, newly);
                assert_eq!(receipt.wrapped_under_epoch, model.epoch);
                assert_eq!(receipt.events_shredded, model.payloads(*s));
                if newly {
                    let had_key = model.payloads(*s) > 0;
                    assert_eq!(receipt.key_ids, if had_key { vec![KeyId(0)] } else { Vec::new() });
                    assert_eq!(receipt.log_head_before, Position(model.head()));
                    model.log.push((*s, ModelEvent::Fence));
                    assert_eq!(
                        (receipt.fence_position, receipt.log_head_after),
                        (Position(model.head()), Position(model.head()))
                    );
                } else {
                    assert_eq!(Some(receipt.fence_position.0), model.fence(*s));
                    assert!(receipt.key_ids.is_empty());
                    assert_eq!(
                        (receipt.log_head_before, receipt.log_head_after),
                        (Position(model.head()), Position(model.head()))
                    );
                }
            }
            Op::Rotate => {
                let report = log.rotate_keys().expect("rotate");
                let live_keys =
                    (0..SUBJECTS).filter(|s| !model.erased.contains(s) && model.payloads(*s) > 0).count() as u64;
                assert_eq!(
                    (report.from_epoch, report.to_epoch, report.keys_rewrapped, report.erasures_finalized),
                    (model.epoch, model.epoch + 1, live_keys, model.pending_erasures())
                );
                model.epoch += 1;
                model.rotated_at = model.head();
            }
            Op::Reopen => {
                let incarnation = log.incarnation();
                drop(log);
                log = open(dir.path(), max_unindexed, chunk_min);
                assert_eq!(log.incarnation(), incarnation + 1, "every open bumps the incarnation");
            }
        }
        assert_eq!(log.head(), Position(model.head()), "head after {op:?}");
        assert_eq!(log.current_epoch(), model.epoch, "epoch after {op:?}");
    }
    check_everything(&log, &model, &subjects);
    for s in 0..SUBJECTS {
        check_stream(&log, &model, &subjects, s);
    }
    drop(log);
    let log = open(dir.path(), max_unindexed, chunk_min);
    check_everything(&log, &model, &subjects);
    for s in 0..SUBJECTS {
        check_stream(&log, &model, &subjects, s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        // Failing cases are kept in `log_model.proptest-regressions` beside this file and replayed first.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_log_behaves_like_its_model(
        ops in proptest::collection::vec(op(), 1..40),
        max_unindexed in prop_oneof![Just(0usize), 1usize..6, Just(usize::MAX)],
        // Every chunk in a chunk file, those of two events or more (about 150 bytes an event),
        // or every chunk in sled.
        chunk_min in prop_oneof![Just(0usize), Just(300usize), Just(usize::MAX)],
    ) {
        run(&ops, max_unindexed, chunk_min);
    }
}

/// A fixed sequence that visits every branch of the model at least once, so that a change which
/// makes random sequences miss a branch still fails somewhere.
#[test]
fn a_fixed_sequence_covers_every_operation() {
    let spec = |subject, expect, n: usize| AppendSpec { subject, expect, payloads: vec![vec![subject as u8; 3]; n] };
    let ops = [
        Op::Append(vec![spec(0, Expect::NoStream, 2), spec(0, Expect::Correct, 1), spec(1, Expect::Any, 3)]),
        Op::Append(vec![spec(0, Expect::Wrong { delta: 1, below: true }, 1), spec(1, Expect::NoStream, 1)]),
        Op::Append(vec![spec(2, Expect::Wrong { delta: 2, below: false }, 1), spec(2, Expect::Correct, 0)]),
        Op::Read(0),
        Op::Erase(0),
        Op::Append(vec![spec(0, Expect::Any, 1), spec(1, Expect::Correct, 2)]),
        Op::Read(0),
        Op::Erase(0),
        Op::Erase(3),
        Op::Reopen,
        Op::Append(vec![spec(0, Expect::Any, 1), spec(3, Expect::NoStream, 1)]),
        Op::Rotate,
        Op::Read(0),
        Op::Read(1),
        Op::Rotate,
        Op::Reopen,
        Op::Read(3),
        // Deferred appends between ordinary ones, for the same subjects, across a reopen.
        Op::AppendDeferred(vec![spec(1, Expect::Any, 1), spec(2, Expect::Any, 1)]),
        Op::Append(vec![spec(1, Expect::Correct, 1)]),
        Op::AppendDeferred(vec![spec(1, Expect::Correct, 2), spec(2, Expect::Wrong { delta: 1, below: false }, 1)]),
        Op::Read(1),
        Op::Reopen,
        Op::Read(1),
        Op::AppendDeferred(vec![spec(2, Expect::Any, 1)]),
        Op::Erase(2),
        Op::Read(2),
        Op::Reopen,
        Op::Read(2),
    ];
    // Deferred runs indexed with the next group, after a few, and never; every chunk in a chunk
    // file, and every chunk in sled.
    for max_unindexed in [0, 2, usize::MAX] {
        for chunk_min in [0, usize::MAX] {
            run(&ops, max_unindexed, chunk_min);
        }
    }
}
