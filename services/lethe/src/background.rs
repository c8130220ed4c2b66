//! Background work `lethe serve` runs beside the HTTP application, shared with the benchmarks so that
//! they measure the service as it runs.

use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use lethe_domain::Position;
use lethe_personalize::Views;

/// How often the feature views catch up with the log.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Starts the two threads that keep the feature views current, every [`FOLLOW_EVERY`]:
/// - `lethe-views-read` reads the new events from the log, decrypts them and reads their payloads
///   ([`Views::read_on`], which takes no lock), at the lowest CPU priority (nice 19, on Linux): a
///   second of decision receipts takes tens of milliseconds of CPU, which would otherwise be taken
///   from the requests in flight;
/// - `lethe-views` applies each batch under the views' write lock ([`Views::apply`]) at the normal
///   priority, so that the lock the decisions wait for is never held by a thread that other work
///   can starve; and writes a sealed checkpoint when one is due (every 5 minutes or 100 000
///   events), so that a restart replays only what follows. A panic in either (a defect) ends
///   neither thread ([`Views::apply_and_checkpoint`]).
///
/// Both end once the views are dropped.
///
/// # Errors
/// A thread cannot be started.
pub fn follow_views(views: &Arc<Views>) -> std::io::Result<()> {
    // One batch waits while the other is applied: the reader stays at most two batches ahead.
    let (tx, rx) = mpsc::sync_channel::<Vec<lethe_features::Prepared>>(1);
    let reader: Weak<Views> = Arc::downgrade(views);
    let applier: Weak<Views> = Arc::downgrade(views);
    std::thread::Builder::new().name("lethe-views".into()).spawn(move || loop {
        let batch = rx.recv_timeout(FOLLOW_EVERY);
        if matches!(batch, Err(mpsc::RecvTimeoutError::Disconnected)) {
            return;
        }
        let Some(views) = applier.upgrade() else { return };
        views.apply_and_checkpoint(batch.ok(), Duration::from_secs(300), 100_000);
    })?;
    std::thread::Builder::new().name("lethe-views-read".into()).spawn(move || {
        lowest_priority();
        // The next position to read: past what was sent, which the applier may not have applied yet.
        let mut cursor = Position(0);
        loop {
            std::thread::sleep(FOLLOW_EVERY);
            let Some(views) = reader.upgrade() else { return };
            let mut applier_gone = false;
            let (next, failed) = views.read_on(views.next().max(cursor), |batch| {
                applier_gone = tx.send(batch).is_err();
                !applier_gone
            });
            cursor = next;
            if applier_gone {
                return;
            }
            if let Some(e) = failed {
                tracing::error!(code = e.code(), "feature views cannot follow the log");
            }
        }
    })?;
    Ok(())
}

/// Lowers the calling thread's CPU priority to nice 19 (a thread of its own on Linux, where the
/// nice value is per thread).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::warn!(error = %e, "the feature views' reader keeps its CPU priority");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use lethe_crypto::MasterSource;
    use lethe_domain::{EventType, ExpectedVersion, NewEvent, Purpose, Retention, SchemaVersion, SubjectId, UtcMicros};
    use lethe_eventlog::{AppendRequest, EventStore, LogConfig, SledEventLog};
    use lethe_policy::Policies;

    use super::*;

    /// The two threads follow the log: events appended after the views were built are applied
    /// within a few rounds, with no caller catching up.
    #[test]
    fn the_views_follow_the_log_on_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::new(dir.path(), MasterSource::Hex("ab".repeat(32)));
        let store: Arc<dyn EventStore> = Arc::new(SledEventLog::open(config).unwrap());
        let views = Arc::new(Views::replay(Arc::clone(&store), &Policies::builtin().unwrap()).unwrap());
        follow_views(&views).unwrap();
        let subject = store.pseudonymize(&SubjectId::parse("follower").unwrap());
        let events = (0..3)
            .map(|i| NewEvent {
                event_type: EventType::parse("page.viewed").unwrap(),
                schema_version: SchemaVersion::new(2).unwrap(),
                purpose: Purpose::parse("analytics").unwrap(),
                time: UtcMicros::now(),
                retention: Retention::Days(30),
                payload: serde_json::to_vec(&serde_json::json!({"host": "shop.example", "path": format!("/p/{i}")}))
                    .unwrap(),
            })
            .collect();
        store.append(AppendRequest { subject, expected: ExpectedVersion::Any, events }).unwrap();
        let head = store.head();
        assert_eq!(views.next(), Position(1), "nothing applied yet");
        let started = Instant::now();
        while views.next() <= head {
            assert!(started.elapsed() < 10 * FOLLOW_EVERY, "the views did not follow the log");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(views.next(), Position(head.0 + 1));
    }
}
