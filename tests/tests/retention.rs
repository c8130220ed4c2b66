//! Retention enforced by keys (R-RETAIN-1): each retention period of a subject has its own data
//! key, and a sweep with a simulated clock destroys the keys whose period left the window. Nothing
//! scans or rewrites the events; they read as `Expired` once their key is gone.

mod common;

use lethe_domain::{EventBody, ExpectedVersion, KeyId, NewEvent, Pseudonym, Retention, SubjectId, UtcMicros};
use lethe_eventlog::{AppendRequest, EventStore, LogError, SledEventLog, SubjectState};

const DAY: i64 = 86_400_000_000;

fn ev(payload: &str, time: UtcMicros, retention: Retention) -> NewEvent {
    NewEvent { retention, ..common::event_at(payload.as_bytes().to_vec(), time) }
}

fn bodies(log: &SledEventLog, s: &Pseudonym) -> Vec<EventBody> {
    log.read_stream(s).expect("read").into_iter().map(|e| e.body).collect()
}

fn plain(p: &str) -> EventBody {
    EventBody::Plain(p.as_bytes().to_vec())
}

/// R-RETAIN-1: a 30-day key dies 30 to 33 days after its period, a 395-day key a year later, the
/// permanent key never; the sweep mark survives a restart; data older than a sweep is refused.
#[test]
fn r_retain_1_period_keys_die_when_their_period_leaves_the_window() {
    let dir = common::temp_dir();
    let log = common::open(dir.path());
    let s = log.pseudonymize(&SubjectId::parse("retention-subject").unwrap());
    let t0 = UtcMicros(UtcMicros::now().0 - DAY);
    let events = vec![
        ev("short-lived-canary-7f3a", t0, Retention::Days(30)),
        ev("year-long-canary-19bd", t0, Retention::Days(395)),
        ev("consent-proof-kept", t0, Retention::UntilErased),
    ];
    log.append(AppendRequest { subject: s, expected: ExpectedVersion::NoStream, events }).expect("append");
    let short = KeyId::for_retention(30, t0).unwrap();
    let year = KeyId::for_retention(395, t0).unwrap();
    let short_secret = log.forensic_data_key(&s, short).expect("the 30-day key exists");
    match log.subject_state(&s).unwrap() {
        SubjectState::Active { key_ids, events } => {
            assert_eq!(events, 3);
            assert_eq!(key_ids.len(), 3, "one key per retention period: {key_ids:?}");
        }
        other => panic!("unexpected state {other:?}"),
    }

    // Today nothing is due.
    assert_eq!(log.expire_keys(UtcMicros::now()).unwrap().keys_destroyed, 0);
    assert_eq!(
        bodies(&log, &s),
        vec![plain("short-lived-canary-7f3a"), plain("year-long-canary-19bd"), plain("consent-proof-kept")]
    );

    // 40 days later the 30-day period is over; 500 days later the year-long one too.
    let report = log.expire_keys(UtcMicros(t0.0 + 40 * DAY)).unwrap();
    assert_eq!((report.keys_destroyed, report.subjects), (1, 1));
    assert!(report.rotation_pending);
    assert_eq!(bodies(&log, &s), vec![EventBody::Expired, plain("year-long-canary-19bd"), plain("consent-proof-kept")]);
    assert_eq!(log.expire_keys(UtcMicros(t0.0 + 500 * DAY)).unwrap().keys_destroyed, 1);
    assert_eq!(bodies(&log, &s), vec![EventBody::Expired, EventBody::Expired, plain("consent-proof-kept")]);
    assert!(log.forensic_data_key(&s, year).is_none());
    let verify = log.verify().unwrap();
    assert!(verify.ok(), "{verify:?}");
    assert_eq!((verify.expired, verify.decrypted), (2, 1));

    // The rotation makes the destruction final: no byte of the data directory holds the key.
    log.rotate_keys().unwrap();
    drop(log);
    let hits = common::scan_dir(dir.path(), &[&short_secret.expose()[..], &b"short-lived-canary-7f3a"[..]]);
    assert!(hits.is_empty(), "the expired key or its plaintext survived: {hits:?}");

    // The sweep mark is durable, and nothing can be stored under a period it already destroyed.
    let log = common::open(dir.path());
    assert_eq!(bodies(&log, &s), vec![EventBody::Expired, EventBody::Expired, plain("consent-proof-kept")]);
    let late = ev("late-arrival", t0, Retention::Days(30));
    let err = log.append(AppendRequest { subject: s, expected: ExpectedVersion::Any, events: vec![late] }).unwrap_err();
    assert!(matches!(err, LogError::PastRetention { .. }), "{err}");
    assert_eq!(err.code(), "past_retention");
    assert_eq!(bodies(&log, &s).len(), 3, "a refused append stores nothing");
    assert!(log.forensic_data_key(&s, short).is_none(), "a destroyed period key is never re-created");
}

/// R-RETAIN-1: the events of one request may span periods and retentions; each is sealed under
/// its own period's key and expires on its own.
#[test]
fn r_retain_1_one_request_spanning_periods_expires_period_by_period() {
    let dir = common::temp_dir();
    let log = common::open(dir.path());
    let s = log.pseudonymize(&SubjectId::parse("spanning-subject").unwrap());
    let now = UtcMicros::now().0;
    // A 10-day retention has 1-day periods: events 5 and 2 days old fall in different periods.
    let events = vec![
        ev("five-days-old", UtcMicros(now - 5 * DAY), Retention::Days(10)),
        ev("two-days-old", UtcMicros(now - 2 * DAY), Retention::Days(10)),
    ];
    log.append(AppendRequest { subject: s, expected: ExpectedVersion::Any, events }).unwrap();
    assert_eq!(log.expire_keys(UtcMicros(now + 6 * DAY)).unwrap().keys_destroyed, 1);
    assert_eq!(bodies(&log, &s), vec![EventBody::Expired, plain("two-days-old")]);
    assert_eq!(log.expire_keys(UtcMicros(now + 9 * DAY)).unwrap().keys_destroyed, 1);
    assert_eq!(bodies(&log, &s), vec![EventBody::Expired, EventBody::Expired]);
}

/// An erased subject's period keys leave the retention index with the erasure; a later sweep
/// finds nothing of it, and its events stay `Shredded` (erasure wins over expiry).
#[test]
fn erasure_removes_period_keys_from_the_retention_index() {
    let dir = common::temp_dir();
    let log = common::open(dir.path());
    let s = log.pseudonymize(&SubjectId::parse("erased-with-periods").unwrap());
    let t0 = UtcMicros(UtcMicros::now().0 - DAY);
    log.append(AppendRequest {
        subject: s,
        expected: ExpectedVersion::Any,
        events: vec![ev("x1", t0, Retention::Days(30))],
    })
    .unwrap();
    let receipt = log.erase(&s).unwrap();
    assert_eq!(receipt.key_ids, vec![KeyId::for_retention(30, t0).unwrap()]);
    assert_eq!(log.expire_keys(UtcMicros(t0.0 + 400 * DAY)).unwrap().keys_destroyed, 0);
    assert_eq!(bodies(&log, &s), vec![EventBody::Shredded, EventBody::Empty]);
}
