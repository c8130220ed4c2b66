//! Against the real event log: replay, erasure through the log's fence, and catch-up after a
//! restored checkpoint.

use std::sync::Arc;

use lethe_crypto::MasterSource;
use lethe_domain::schema::types::RECOMMENDATIONS_SERVED;
use lethe_domain::{
    EventBody, EventType, ExpectedVersion, NewEvent, Position, Purpose, RecordedEvent, Retention, SchemaVersion,
    UtcMicros,
};
use lethe_eventlog::{AppendRequest, EventStore, LogConfig, SledEventLog};
use lethe_features::Projector;
use serde_json::{json, Value};

use crate::helpers::{config, consent_record, subject, track, S, T0};

fn event(ty: &str, purpose: &str, at: i64, payload: &Value) -> NewEvent {
    NewEvent {
        event_type: EventType::parse(ty).unwrap(),
        schema_version: SchemaVersion::new(if ty == "page.viewed" { 2 } else { 1 }).unwrap(),
        purpose: Purpose::parse(purpose).unwrap(),
        time: UtcMicros(at),
        retention: Retention::UntilErased,
        payload: serde_json::to_vec(payload).unwrap(),
    }
}

fn shopper(store: &dyn EventStore, n: u8, at: i64) {
    let record = consent_record(
        at,
        &[("analytics", true), ("personalization", true)],
        lethe_consent::ConsentMethod::Banner,
        false,
    );
    let events = vec![
        event("consent.changed", "necessary", at, &serde_json::to_value(&record).unwrap()),
        event(
            "product.viewed",
            "analytics",
            at + S,
            &track("Product Viewed", json!({"product_id": "sku-1", "category": "tents"})),
        ),
        event(
            "item.liked",
            "personalization",
            at + 2 * S,
            &track("Product Liked", json!({"item": format!("only-{n}")})),
        ),
    ];
    store.append(AppendRequest { subject: subject(n), expected: ExpectedVersion::Any, events }).unwrap();
}

#[test]
fn replay_erase_and_catch_up_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> =
        Arc::new(SledEventLog::open(LogConfig::new(dir.path(), MasterSource::Hex(hex::encode([5u8; 32])))).unwrap());
    for n in 0..3 {
        shopper(store.as_ref(), n, T0 + i64::from(n) * S);
    }
    let mut live = Projector::replay(store.as_ref(), config()).unwrap();
    assert_eq!(live.subjects(), 3);
    assert_eq!(live.position(), store.head());
    let key = [1u8; 32];
    let sealed = live.checkpoint(&key);

    // Erase subject 1: the log fences it and shreds its payloads.
    store.erase(&subject(1)).unwrap();
    shopper(store.as_ref(), 3, T0 + 10 * S);
    live.catch_up(store.as_ref()).unwrap();
    assert!(!live.holds(&subject(1)), "the fence reached the live projection");
    assert_eq!(live.catalog().item_id("only-1"), None);
    assert_eq!(live.subjects(), 3);

    // A rebuild from the log gives byte-identical views.
    let rebuilt = Projector::replay(store.as_ref(), config()).unwrap();
    assert_eq!(rebuilt.snapshot_digest(), live.snapshot_digest());
    assert_eq!(rebuilt.stats().unreadable, 3, "subject 1's shredded payloads");

    // So does the checkpoint taken before the erasure, once caught up: it replays only the events
    // after its position, the fence among them.
    let (mut restored, position) = Projector::restore(&sealed, &key).unwrap();
    assert!(restored.holds(&subject(1)), "an old checkpoint still holds the erased subject");
    let seen = restored.stats().events;
    restored.catch_up(store.as_ref()).unwrap();
    assert_eq!(restored.stats().events - seen, store.head().0 - position.0);
    assert_eq!(restored.snapshot_digest(), live.snapshot_digest());
}

/// R-ERASE-3: the views read the log without holding their lock, so a batch of events can be read
/// before an erasure's fence reaches the projector and applied after it. Such a batch changes
/// nothing: the subject stays forgotten, and the views equal a full replay. Events the views do not
/// use (here a receipt of recommendations) are read without being decrypted.
#[test]
fn r_erase_3_a_batch_read_before_an_erasure_adds_nothing_of_the_subject_and_unused_events_stay_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> =
        Arc::new(SledEventLog::open(LogConfig::new(dir.path(), MasterSource::Hex(hex::encode([6u8; 32])))).unwrap());
    shopper(store.as_ref(), 0, T0);
    let receipt =
        event(RECOMMENDATIONS_SERVED, "personalization", T0 + 5 * S, &json!({"properties": {"slot": "home"}}));
    store.append(AppendRequest { subject: subject(0), expected: ExpectedVersion::Any, events: vec![receipt] }).unwrap();

    // Only the receipt is left sealed; every envelope is there, in order.
    let opened: Vec<RecordedEvent> = store.read_all(Position(1)).collect::<Result<_, _>>().unwrap();
    let filtered: Vec<RecordedEvent> =
        store.read_all_opening(Position(1), Projector::opens).collect::<Result<_, _>>().unwrap();
    assert_eq!(opened.len(), 4);
    assert_eq!(
        filtered.iter().map(|e| &e.envelope).collect::<Vec<_>>(),
        opened.iter().map(|e| &e.envelope).collect::<Vec<_>>()
    );
    for (o, f) in opened.iter().zip(&filtered) {
        if o.envelope.event_type.as_str() == RECOMMENDATIONS_SERVED {
            assert!(matches!(o.body, EventBody::Plain(_)));
            assert_eq!(f.body, EventBody::Unopened);
        } else {
            assert_eq!(f.body, o.body);
        }
    }
    let mut live = Projector::replay(store.as_ref(), config()).unwrap();
    assert_eq!(live.position(), store.head());
    assert_eq!(live.stats().ignored, 1, "the receipt moves the position and nothing else");
    let mut from_opened = Projector::new(config());
    from_opened.apply_new(opened);
    assert_eq!(from_opened.snapshot_digest(), live.snapshot_digest());

    // Subject 1 arrives; a reader takes the new events, then the subject is erased and the fence
    // reaches the projector first (as `Views`' forget does, under its lock).
    shopper(store.as_ref(), 1, T0 + 10 * S);
    let stale: Vec<RecordedEvent> =
        store.read_all_opening(live.next(), Projector::opens).collect::<Result<_, _>>().unwrap();
    assert_eq!(stale.len(), 3);
    store.erase(&subject(1)).unwrap();
    live.catch_up(store.as_ref()).unwrap();
    assert!(!live.holds(&subject(1)));
    live.apply_new(stale.clone());
    assert!(!live.holds(&subject(1)), "the stale batch brings the erased subject back");
    assert_eq!(live.catalog().item_id("only-1"), None);
    assert_eq!(live.snapshot_digest(), Projector::replay(store.as_ref(), config()).unwrap().snapshot_digest());
    // Applied to a projector that had not seen them, the same events do hold the subject.
    let mut earlier = Projector::new(config());
    earlier.apply_new(filtered);
    assert!(!earlier.holds(&subject(1)));
    earlier.apply_new(stale);
    assert!(earlier.holds(&subject(1)));
}
