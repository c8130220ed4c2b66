//! Invariant 6: the same events give byte-identical views, whatever the interleaving of subjects.

use serde_json::json;

use crate::helpers::{interleave, project, subject, Log, S, T0};

fn catalog_then_shoppers(subjects: u8) -> (Log, Log) {
    let mut catalog = Log::default();
    for f in 0..4u32 {
        for n in 1..=2u32 {
            let cat = ["tents", "boots", "stoves", "packs"][f as usize];
            catalog.item(T0, &json!({"id": format!("sku-{}", f * 10 + n), "category": cat, "text": "x", "features": {"price": 19.99}}));
        }
    }
    let mut behaviour = Log::default();
    for n in 0..subjects {
        behaviour.consent(subject(n), T0, &[("analytics", true), ("personalization", n % 3 != 0)]);
        behaviour.shopper(subject(n), T0 + i64::from(n) * S, n);
        behaviour.shopper(subject(n), T0 + 100 * S + i64::from(n) * S, n.wrapping_add(1));
    }
    (catalog, behaviour)
}

#[test]
fn the_same_events_give_the_same_snapshot() {
    let (catalog, behaviour) = catalog_then_shoppers(12);
    let all: Vec<_> = catalog.events.iter().chain(&behaviour.events).cloned().collect();
    let a = project(&all);
    let b = project(&all);
    assert_eq!(a.snapshot_bytes(), b.snapshot_bytes());
    assert_eq!(a.subjects(), 8, "a third of the subjects did not consent to personalization");
    assert!(a.statistics_consistent());
}

#[test]
fn interleaving_subjects_differently_gives_the_same_digest() {
    let (catalog, behaviour) = catalog_then_shoppers(12);
    let digest = |seed: u64| {
        let mut events = catalog.events.clone();
        events.extend(interleave(&behaviour.events, seed));
        project(&events).snapshot_digest()
    };
    let first = digest(1);
    for seed in [2, 3, 99, 12_345] {
        assert_eq!(digest(seed), first, "seed {seed}");
    }
    // And the digest does see the data: one event less changes it.
    let mut fewer = catalog.events.clone();
    fewer.extend(behaviour.events[..behaviour.events.len() - 1].iter().cloned());
    assert_ne!(project(&fewer).snapshot_digest(), first);
}

#[test]
fn a_snapshot_restores_to_the_same_bytes() {
    let (catalog, behaviour) = catalog_then_shoppers(6);
    let all: Vec<_> = catalog.events.iter().chain(&behaviour.events).cloned().collect();
    let p = project(&all);
    let bytes = p.snapshot_bytes();
    let q = lethe_features::Projector::from_snapshot(&bytes).unwrap();
    assert_eq!(q.snapshot_bytes(), bytes);
    assert!(q.statistics_consistent());
    assert_eq!(q.catalog().stats("sku-1"), p.catalog().stats("sku-1"));
    assert_eq!(q.catalog().len(), p.catalog().len());
}
