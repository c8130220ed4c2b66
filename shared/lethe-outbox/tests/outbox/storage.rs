//! Storage: durability across a restart, input checks, layout versioning, pruning.

use std::time::Duration;

use lethe_domain::UtcMicros;
use lethe_outbox::{
    Attempt, MessageState, Outbox, OutboxError, Outcome, RetryPolicy, StateKind, Stats, Topic, MAX_BODY_BYTES,
};
use lethe_testkit::sled_open_retrying;
use serde_json::json;

use crate::helpers::{at, closed_port_url, deliverer, policy, recipient, temp_tree, Reply, TestRecipient, T0};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_messages_survive_a_restart_and_are_delivered() {
    let server = TestRecipient::always(Reply::with_body(200, r#"{"ack":"yes"}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = server.url("/h");
    let open = |path: &std::path::Path| {
        let db = sled_open_retrying(path);
        let outbox =
            Outbox::open(db.open_tree("outbox").unwrap(), vec![recipient("crm", &endpoint)], policy()).unwrap();
        (db, outbox)
    };

    let (db, outbox) = open(dir.path());
    let id = outbox.enqueue("crm", &Topic::subject_erased(), json!({"erasure_request": "er-5"}), T0).unwrap();
    // One failed attempt before the restart, recorded as a deliverer would.
    outbox.record_attempt(id, Attempt::new(T0, Outcome::status(502, Some("bad gateway")), 4), None).unwrap();
    drop(outbox);
    drop(db);

    let (db, outbox) = open(dir.path());
    let m = outbox.get(id).unwrap().expect("message survived");
    assert_eq!(m.state, MessageState::Pending { next_attempt_at: at(T0, 10) });
    assert_eq!(m.attempts.len(), 1);
    assert_eq!(outbox.stats().unwrap(), Stats { pending: 1, delivered: 0, dead_letter: 0 });
    assert_eq!(outbox.next_due_at().unwrap(), Some(at(T0, 10)));
    assert_eq!(outbox.due(at(T0, 10)).unwrap(), vec![m]);

    let r = deliverer(&outbox).deliver_due(at(T0, 10)).await.unwrap();
    assert_eq!((r.attempted, r.delivered), (1, 1));
    drop(outbox);
    drop(db);

    // The acknowledgement is durable too.
    let (_db, outbox) = open(dir.path());
    let m = outbox.get(id).unwrap().unwrap();
    assert_eq!(m.state, MessageState::Delivered { at: at(T0, 10), status: 200, ack: Some(json!({"ack": "yes"})) });
    assert_eq!(m.attempts.len(), 2);
    assert_eq!(outbox.stats().unwrap(), Stats { pending: 0, delivered: 1, dead_letter: 0 });
    assert_eq!(outbox.next_due_at().unwrap(), None);
    assert_eq!(server.by_delivery().get(&id.to_string()), Some(&1));
    server.stop().await;
}

#[test]
fn a_claim_lost_in_a_crash_only_delays_the_message() {
    let (_db, tree) = temp_tree();
    let outbox = Outbox::open(tree, vec![recipient("crm", &closed_port_url())], policy()).unwrap();
    let id = outbox.enqueue("crm", &Topic::subject_erased(), json!({}), T0).unwrap();
    let claimed = outbox.claim_due(T0, 10, Duration::from_secs(300)).unwrap();
    assert_eq!(claimed.len(), 1);
    // Claimed: invisible to a second claim until the lease runs out.
    assert!(outbox.claim_due(T0, 10, Duration::from_secs(300)).unwrap().is_empty());
    assert!(outbox.due(at(T0, 299)).unwrap().is_empty());
    assert_eq!(outbox.due(at(T0, 300)).unwrap()[0].id, id);
    assert_eq!(outbox.claim_due(at(T0, 300), 10, Duration::from_secs(300)).unwrap()[0].id, id);
}

#[test]
fn enqueue_checks_its_input() {
    let (_db, tree) = temp_tree();
    let outbox = Outbox::open(tree, vec![recipient("crm", "https://crm.example/h")], policy()).unwrap();
    let topic = Topic::subject_erased();
    assert!(matches!(outbox.enqueue("nobody", &topic, json!({}), T0), Err(OutboxError::UnknownRecipient)));
    let huge = json!({"x": "a".repeat(MAX_BODY_BYTES)});
    assert!(matches!(outbox.enqueue("crm", &topic, huge.clone(), T0), Err(OutboxError::BodyTooLarge { .. })));
    assert!(matches!(
        outbox.enqueue_all(&topic, |_| true, |_| huge.clone(), T0),
        Err(OutboxError::BodyTooLarge { .. })
    ));
    assert_eq!(outbox.stats().unwrap(), Stats::default());
    assert!(outbox.enqueue_all(&topic, |_| false, |_| json!({}), T0).unwrap().is_empty());
    let missing = lethe_outbox::MessageId::new_v7();
    assert!(outbox.get(missing).unwrap().is_none());
    assert!(matches!(
        outbox.record_attempt(missing, Attempt::new(T0, Outcome::status(200, None), 1), None),
        Err(OutboxError::NotFound)
    ));
}

#[test]
fn open_refuses_bad_configuration_and_newer_layouts() {
    let (_db, tree) = temp_tree();
    let twice = vec![recipient("crm", "https://a.example/h"), recipient("crm", "https://b.example/h")];
    assert!(matches!(Outbox::open(tree.clone(), twice, policy()), Err(OutboxError::DuplicateRecipient)));
    let bad = RetryPolicy { max_attempts: 0, ..policy() };
    assert!(matches!(Outbox::open(tree.clone(), Vec::new(), bad), Err(OutboxError::InvalidRetryPolicy(_))));

    Outbox::open(tree.clone(), Vec::new(), policy()).unwrap();
    assert_eq!(tree.get("v/layout").unwrap().unwrap().as_ref(), [1]);
    tree.insert("v/layout", &[9]).unwrap();
    assert!(matches!(Outbox::open(tree, Vec::new(), policy()), Err(OutboxError::UnsupportedVersion(9))));
}

#[test]
fn a_late_attempt_on_a_finished_message_only_joins_its_history() {
    let (_db, tree) = temp_tree();
    let outbox = Outbox::open(tree, vec![recipient("crm", "https://crm.example/h")], policy()).unwrap();
    let id = outbox.enqueue("crm", &Topic::subject_erased(), json!({}), T0).unwrap();
    outbox.record_attempt(id, Attempt::new(T0, Outcome::status(200, None), 1), Some(json!({"ok": true}))).unwrap();
    let m = outbox.record_attempt(id, Attempt::new(at(T0, 1), Outcome::error("timeout"), 5000), None).unwrap();
    assert_eq!(m.attempts.len(), 2);
    assert_eq!(m.state, MessageState::Delivered { at: T0, status: 200, ack: Some(json!({"ok": true})) });
    assert_eq!(outbox.stats().unwrap(), Stats { pending: 0, delivered: 1, dead_letter: 0 });
}

#[test]
fn list_filters_by_state_and_prune_removes_only_old_finished_messages() {
    let (_db, tree) = temp_tree();
    let outbox = Outbox::open(tree, vec![recipient("crm", "https://crm.example/h")], policy()).unwrap();
    let topic = Topic::subject_erased();
    let delivered = outbox.enqueue("crm", &topic, json!({"n": 1}), T0).unwrap();
    let dead = outbox.enqueue("crm", &topic, json!({"n": 2}), T0).unwrap();
    let pending = outbox.enqueue("crm", &topic, json!({"n": 3}), T0).unwrap();
    outbox.record_attempt(delivered, Attempt::new(T0, Outcome::status(200, None), 1), None).unwrap();
    outbox.record_attempt(dead, Attempt::new(at(T0, 100), Outcome::status(410, None), 1), None).unwrap();

    let ids = |kind| outbox.list(Some(kind)).unwrap().into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(StateKind::Delivered), [delivered]);
    assert_eq!(ids(StateKind::DeadLetter), [dead]);
    assert_eq!(ids(StateKind::Pending), [pending]);
    assert_eq!(outbox.list(None).unwrap().len(), 3);

    assert_eq!(outbox.prune_finished(at(T0, 50)).unwrap(), 1);
    assert!(outbox.get(delivered).unwrap().is_none());
    assert_eq!(outbox.prune_finished(UtcMicros(i64::MAX)).unwrap(), 1);
    assert_eq!(outbox.stats().unwrap(), Stats { pending: 1, delivered: 0, dead_letter: 0 });
    assert_eq!(outbox.list(None).unwrap().len(), 1);
}
