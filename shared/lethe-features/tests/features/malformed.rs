//! No payload can make the projector fail or panic: what it cannot use is skipped and counted.

use lethe_features::MAX_PAYLOAD;
use serde_json::{json, Value};

use crate::helpers::{project, subject, track, Log, S, T0};

#[test]
fn malformed_payloads_are_skipped_and_counted() {
    let a = subject(20);
    let mut log = Log::default();
    log.consent(a, T0, &[("analytics", true), ("personalization", true)]);
    let t = T0 + S;
    log.bytes(a, t, "page.viewed", b"{not json")
        .bytes(a, t, "page.viewed", b"[1,2,3]")
        .bytes(a, t, "item.liked", b"\xff\xfe")
        .bytes(a, t, "item.liked", &vec![b' '; MAX_PAYLOAD + 1])
        .event(a, t, "item.liked", &track("Product Liked", json!({})))
        .event(a, t, "item.rated", &track("Product Rated", json!({"item": "x", "rating": 1e308})))
        .event(a, t, "item.rated", &track("Product Rated", json!({"item": "x", "rating": -3})))
        .event(a, t, "scroll.depth", &track("Scroll Depth", json!({"depth": "all the way"})))
        .event(a, t, "time.spent", &track("Time Spent", json!({"seconds": 1e20})))
        .event(a, t, "session.ended", &track("Session Ended", json!({})))
        .event(a, t, "purchase.completed", &track("Order Completed", json!({"revenue": -1})))
        .event(a, t, "purchase.completed", &track("Order Completed", json!({"products": {"a": 1}})))
        .event(a, t, "item.liked", &track("Product Liked", json!({"item": "x".repeat(300)})))
        .event(a, t, "product.viewed", &track("Product Viewed", json!({"product_id": [1], "category": "c"})))
        .event(a, t, "segment.assigned", &track("Segment Assigned", json!({"segment": 5})));
    log.item(t, &json!({"id": ""}));
    log.item(t, &json!({"category": "no id"}));
    let malformed = 17;
    // Types that feed nothing are ignored, not malformed.
    log.event(a, t, "newsletter.signup", &track("Newsletter Signup", json!({})));
    log.event(a, t, "identify", &json!({"traits": {}}));
    let p = project(&log.events);
    let stats = p.stats();
    assert_eq!(stats.malformed, malformed);
    assert_eq!(stats.ignored, 2);
    assert_eq!(stats.applied, 1, "only the consent record");
    let v = p.view(&a).unwrap();
    assert_eq!((v.views(), v.likes(), v.ratings().count, v.purchases().count), (0, (0, 0), 0, 0));
    assert_eq!(v.last_event(), None, "a skipped event leaves no trace, not even recency");
    assert!(p.catalog().is_empty());
}

fn random_value(next: &mut impl FnMut() -> u64, depth: u32) -> Value {
    const KEYS: [&str; 16] = [
        "product_id",
        "item",
        "sku",
        "category",
        "rating",
        "scale",
        "depth",
        "seconds",
        "pages",
        "revenue",
        "products",
        "price",
        "quantity",
        "segment",
        "country",
        "device_class",
    ];
    match next() % if depth > 2 { 6 } else { 8 } {
        0 => Value::Null,
        1 => json!(next() & 1 == 0),
        2 => json!([0.0, -1.0, 1e308, -1e308, 4.5, 100.0, 86_400.0, 1e10][usize::try_from(next() % 8).unwrap()]),
        3 => json!(i64::try_from(next() >> 1).unwrap() * if next() & 1 == 0 { 1 } else { -1 }),
        4 => json!(["", "tents", "x\u{0}y", "DE", "mobile", &"z".repeat(300)][usize::try_from(next() % 6).unwrap()]),
        5 => json!(next() % 7),
        6 => Value::Array((0..next() % 4).map(|_| random_value(next, depth + 1)).collect()),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..next() % 5 {
                m.insert(KEYS[usize::try_from(next() % 16).unwrap()].into(), random_value(next, depth + 1));
            }
            Value::Object(m)
        }
    }
}

#[test]
fn random_payloads_never_panic() {
    let a = subject(21);
    let kinds = [
        "page.viewed",
        "product.viewed",
        "element.clicked",
        "scroll.depth",
        "time.spent",
        "session.ended",
        "survey.answered",
        "purchase.completed",
        "item.liked",
        "item.disliked",
        "item.rated",
        "review.submitted",
        "decision.served",
        "outcome.recorded",
        "segment.assigned",
        "consent.changed",
        "catalog.item_upserted",
        "catalog.item_removed",
    ];
    let fragments: [&[u8]; 14] = [
        b"{",
        b"}",
        b"\"properties\":",
        b"\"item\":",
        b"\"rating\":",
        b"1e308",
        b"-0",
        b"[",
        b"]",
        b",",
        b"\"products\":",
        b"null",
        b"\"\xc3\x28\"",
        b"{\"depth\":101}",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut log = Log::default();
    for i in 0..4000 {
        let at = T0 + i * S;
        if i % 50 == 0 {
            // Random consent records may read as withdrawals (fail closed): grant again now and then.
            log.consent(a, at, &[("personalization", true)]);
        }
        let ty = kinds[usize::try_from(next() % kinds.len() as u64).unwrap()];
        if next() % 4 == 0 {
            let mut payload = Vec::new();
            for _ in 0..next() % 12 {
                payload.extend_from_slice(fragments[usize::try_from(next() % 14).unwrap()]);
            }
            log.bytes(a, at, ty, &payload);
        } else {
            let properties = random_value(&mut next, 0);
            let context = random_value(&mut next, 1);
            log.bytes(a, at, ty, &serde_json::to_vec(&json!({"properties": properties, "context": context})).unwrap());
        }
    }
    let p = project(&log.events);
    let stats = p.stats();
    assert_eq!(stats.events, 4080);
    assert!(stats.malformed > 500 && stats.applied > 500, "{stats:?}");
    // Whatever happened, the projection still serializes, restores and agrees with itself.
    let bytes = p.snapshot_bytes();
    assert_eq!(lethe_features::Projector::from_snapshot(&bytes).unwrap().snapshot_bytes(), bytes);
    assert!(p.statistics_consistent());
}
