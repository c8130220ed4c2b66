//! Sealed checkpoints: a restore plus the events after its position equals a full replay, and any
//! altered byte is refused with a typed error.

use lethe_features::{FeatureError, Projector};
use serde_json::json;

use crate::helpers::{project, subject, Log, S, T0};

fn log() -> Log {
    let mut log = Log::default();
    log.item(T0, &json!({"id": "sku-1", "category": "tents", "text": "Tent", "features": {"price": 189.0}}));
    for n in 0..5 {
        log.consent(subject(n), T0, &[("analytics", true), ("personalization", true)]);
        log.shopper(subject(n), T0 + i64::from(n) * S, n);
    }
    for n in 0..5 {
        log.shopper(subject(n), T0 + 1000 * S, n + 1);
    }
    log
}

#[test]
fn restore_then_catch_up_equals_a_full_replay() {
    let key = [7u8; 32];
    let all = log().events;
    let half = all.len() / 2;
    let first = project(&all[..half]);
    let sealed = first.checkpoint(&key);
    assert!(!crate::helpers::contains(&sealed, subject(1).as_bytes()), "the pseudonyms are sealed too");

    let (mut restored, position) = Projector::restore(&sealed, &key).unwrap();
    assert_eq!(position, first.position());
    assert_eq!(position.0, half as u64);
    assert_eq!(restored.snapshot_bytes(), first.snapshot_bytes());
    for e in all.iter().filter(|e| e.envelope.position > position) {
        restored.apply(e);
    }
    assert_eq!(restored.snapshot_digest(), project(&all).snapshot_digest());
    assert_eq!(restored.position(), project(&all).position());
    assert!(restored.statistics_consistent());
}

#[test]
fn every_altered_byte_is_refused() {
    let key = [9u8; 32];
    let sealed = project(&log().events).checkpoint(&key);
    // Header (version, position), nonce, body, tag: every region is covered.
    let len = sealed.len();
    for at in [9, 10, 17, 18, 29, 30, len / 2, len - 17, len - 1] {
        let mut bad = sealed.clone();
        bad[at] ^= 0x01;
        let err = Projector::restore(&bad, &key).unwrap_err();
        let expected = if at == 9 { "checkpoint_version" } else { "checkpoint_tampered" };
        assert_eq!(err.code(), expected, "byte {at}");
    }
    assert!(matches!(Projector::restore(&sealed, &[0u8; 32]), Err(FeatureError::CheckpointTampered)));
    assert!(matches!(Projector::restore(&sealed[..len - 1], &key), Err(FeatureError::CheckpointTampered)));
}
