//! Invariant 5: forgetting removes the subject from every view and index at once, and leaves a
//! projection byte-identical to one that never saw the subject.

use lethe_domain::EventBody;
use serde_json::json;

use crate::helpers::{contains, project, subject, track, Log, S, T0};

/// Two shoppers; `a` also touches strings nobody else uses.
fn log_with(a_included: bool) -> Log {
    let (a, b) = (subject(10), subject(11));
    let mut log = Log::default();
    log.item(T0, &json!({"id": "sku-1", "category": "tents"}));
    log.consent(b, T0, &[("analytics", true), ("personalization", true)]).shopper(b, T0, 0);
    if a_included {
        log.consent(a, T0, &[("analytics", true), ("personalization", true)])
            .shopper(a, T0, 0)
            .event(
                a,
                T0 + 20 * S,
                "product.viewed",
                &track("Product Viewed", json!({"product_id": "only-a-sku", "category": "only-a-category"})),
            )
            .event(a, T0 + 21 * S, "decision.served", &json!({"properties": {"segment": "only-a-segment"}}))
            .event(a, T0 + 22 * S, "session.ended", &json!({"properties": {"seconds": 5, "country": "Narnia"}}));
    }
    log
}

#[test]
fn forget_removes_everything_and_equals_a_log_without_the_subject() {
    let a = subject(10);
    let mut p = project(&log_with(true).events);
    assert!(p.holds(&a));
    assert_eq!(p.catalog().stats("sku-1").unwrap().users, 2);
    assert!(p.catalog().item_id("only-a-sku").is_some());
    let before = p.snapshot_bytes();
    assert!(contains(&before, a.as_bytes()));
    assert!(contains(&before, b"only-a-category"));

    assert!(p.forget(&a));
    assert!(!p.holds(&a));
    assert!(p.view(&a).is_none());
    assert_eq!(p.interactions(&a).count(), 0);
    assert_eq!(p.catalog().stats("sku-1").unwrap().users, 1, "its share of item statistics is gone");
    assert_eq!(p.catalog().stats("only-a-sku"), None);
    // Strings only the subject's payloads brought are swept from memory too.
    assert_eq!(p.catalog().item_id("only-a-sku"), None);
    assert_eq!(p.catalog().category_id("only-a-category"), None);
    assert!(p.statistics_consistent());

    let after = p.snapshot_bytes();
    assert!(!contains(&after, a.as_bytes()), "no byte sequence of the pseudonym remains");
    for s in [&b"only-a-sku"[..], b"only-a-category", b"only-a-segment", b"Narnia"] {
        assert!(!contains(&after, s), "{}", String::from_utf8_lossy(s));
    }
    assert_eq!(after, project(&log_with(false).events).snapshot_bytes());
    assert!(!p.forget(&a), "a second forget finds nothing");
    assert_eq!(p.stats().forgotten, 1);
}

#[test]
fn an_erasure_fence_in_the_log_forgets_and_shredded_payloads_are_ignored() {
    let a = subject(10);
    // What replay sees after an erasure: the subject's payloads shredded, then the fence.
    let mut replayed = log_with(true);
    for e in &mut replayed.events {
        if e.envelope.subject == a {
            e.body = EventBody::Shredded;
        }
    }
    replayed.raw(a, T0 + 30 * S, "lethe.erasure_fence", "necessary", EventBody::Empty);
    let p = project(&replayed.events);
    assert!(!p.holds(&a));
    assert_eq!(p.stats().unreadable, 14);
    assert_eq!(p.snapshot_bytes(), project(&log_with(false).events).snapshot_bytes());

    // Live: the subject's events were applied in clear, then the fence arrives.
    let mut live = log_with(true);
    live.raw(a, T0 + 30 * S, "lethe.erasure_fence", "necessary", EventBody::Empty);
    let q = project(&live.events);
    assert!(!q.holds(&a));
    assert_eq!(q.snapshot_digest(), p.snapshot_digest());
}

#[test]
fn expired_payloads_are_ignored() {
    let a = subject(12);
    let mut log = Log::default();
    log.consent(a, T0, &[("personalization", true)]).raw(a, T0 + S, "page.viewed", "analytics", EventBody::Expired);
    let p = project(&log.events);
    assert_eq!(p.view(&a).unwrap().views(), 0);
    assert_eq!(p.stats().unreadable, 1);
}
