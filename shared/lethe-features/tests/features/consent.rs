//! Invariant 3 / R-CONSENT-2: only events under a personalization grant feed features; a
//! withdrawal stops them at once and clears what was built.

use lethe_consent::{ConsentHistory, ConsentMethod, CONSENT_CHANGED};
use lethe_domain::{EventBody, Purpose};
use lethe_features::{Projector, ProjectorConfig};
use serde_json::json;

use crate::helpers::{consent_record, project, subject, track, Log, S, T0};

#[test]
fn an_analytics_only_subject_builds_no_personalization_features() {
    let a = subject(1);
    let mut log = Log::default();
    log.consent(a, T0, &[("analytics", true), ("personalization", false)]).shopper(a, T0, 0);
    let p = project(&log.events);
    assert!(!p.holds(&a));
    assert!(p.view(&a).is_none());
    assert!(p.export(&a).is_none());
    assert_eq!(p.catalog().stats("sku-1"), None, "not even item statistics");
    assert_eq!(p.stats().not_consented, 10);
    assert_eq!(p.subjects(), 0);
    // Nothing of it reaches the snapshot either.
    assert_eq!(p.snapshot_bytes(), project(&[]).snapshot_bytes());
}

#[test]
fn a_subject_that_never_answered_builds_nothing() {
    let a = subject(2);
    let mut log = Log::default();
    log.shopper(a, T0, 0);
    let p = project(&log.events);
    assert!(!p.holds(&a));
    assert_eq!(p.stats().not_consented, 10);
}

#[test]
fn grant_then_withdraw_stops_and_clears_then_a_new_grant_starts_afresh() {
    let a = subject(3);
    let b = subject(4);
    let mut log = Log::default();
    log.consent(a, T0, &[("analytics", true), ("personalization", true)])
        .consent(b, T0, &[("analytics", true), ("personalization", true)])
        .shopper(a, T0, 0)
        .shopper(b, T0, 0);
    let mut p = project(&log.events);
    assert_eq!(p.view(&a).unwrap().views(), 3);
    assert_eq!(p.catalog().stats("sku-1").unwrap().users, 2);

    // Withdrawal at T0 + 60 s: the features and a's share of item statistics go at once.
    let mut more = Log::default();
    more.consent(a, T0 + 60 * S, &[("personalization", false)]);
    more.shopper(a, T0 + 61 * S, 0);
    for e in &more.events {
        // Keep positions increasing after the first log.
        let mut e = e.clone();
        e.envelope.position.0 += 1000;
        p.apply(&e);
    }
    assert!(!p.holds(&a));
    assert_eq!(p.stats().withdrawals, 1);
    assert_eq!(p.stats().not_consented, 10, "nothing after the withdrawal is used");
    assert_eq!(p.catalog().stats("sku-1").unwrap().users, 1);
    assert!(p.statistics_consistent());

    // A new grant starts from nothing: only what comes after it counts.
    let mut again = Log::default();
    again.consent(a, T0 + 120 * S, &[("personalization", true)]);
    again.event(a, T0 + 121 * S, "item.liked", &track("Product Liked", json!({"item": "sku-9"})));
    for e in &again.events {
        let mut e = e.clone();
        e.envelope.position.0 += 2000;
        p.apply(&e);
    }
    let v = p.view(&a).unwrap();
    assert_eq!((v.views(), v.likes()), (0, (1, 0)));
}

#[test]
fn behaviour_from_before_the_grant_is_not_used_even_when_recorded_after_it() {
    let a = subject(5);
    let mut log = Log::default();
    log.consent(a, T0 + 10 * S, &[("analytics", true), ("personalization", true)])
        // Delivered late, timestamped before consent.
        .event(a, T0 + 5 * S, "item.liked", &track("Product Liked", json!({"item": "early"})))
        .event(a, T0 + 11 * S, "item.liked", &track("Product Liked", json!({"item": "late"})));
    let p = project(&log.events);
    let v = p.view(&a).unwrap();
    assert_eq!(v.likes(), (1, 0));
    let liked: Vec<_> = v.recently_liked().filter_map(|i| p.catalog().item_key(i)).collect();
    assert_eq!(liked, ["late"]);
    assert_eq!(p.stats().not_consented, 1);
}

#[test]
fn the_gate_agrees_with_lethe_consent_after_every_record() {
    // Grants, denials, records that do not mention personalization, GPC, re-grants.
    let records = [
        consent_record(T0, &[("analytics", true)], ConsentMethod::Banner, false),
        consent_record(T0 + S, &[("personalization", true)], ConsentMethod::Banner, false),
        consent_record(T0 + 2 * S, &[("sale_share", false)], ConsentMethod::Gpc, true),
        consent_record(T0 + 3 * S, &[("personalization", true), ("personalization", false)], ConsentMethod::Api, false),
        consent_record(T0 + 4 * S, &[("analytics", false)], ConsentMethod::Banner, false),
        consent_record(T0 + 5 * S, &[("personalization", true)], ConsentMethod::Import, false),
        consent_record(T0 + 6 * S, &[("personalization", false)], ConsentMethod::Gpc, true),
    ];
    let a = subject(6);
    let purpose = Purpose::parse("personalization").unwrap();
    let sale_share = Purpose::parse("sale_share").unwrap();
    let mut p = Projector::new(crate::helpers::config());
    let mut history = ConsentHistory::default();
    let mut log = Log::default();
    for r in records {
        history.push(r.clone());
        log.record(a, r);
        p.apply(log.events.last().unwrap());
        assert_eq!(
            p.holds(&a),
            history.verdict(&purpose, true, &sale_share).allows(),
            "after {} records",
            history.records().len()
        );
    }
}

#[test]
fn an_unreadable_consent_record_fails_closed() {
    let a = subject(7);
    let mut log = Log::default();
    log.consent(a, T0, &[("personalization", true)]).raw(
        a,
        T0 + S,
        CONSENT_CHANGED,
        "necessary",
        EventBody::Plain(br#"{"choices":[{"purpose":"personalization","granted":false}]}"#.to_vec()),
    );
    let p = project(&log.events);
    assert!(!p.holds(&a), "an unreadable record may be a withdrawal: personalization stops");
    assert_eq!(p.stats().malformed, 1);
}

#[test]
fn a_purpose_without_consent_admits_everyone() {
    let a = subject(8);
    let mut log = Log::default();
    log.shopper(a, T0, 1);
    let mut p = Projector::new(ProjectorConfig::new(Purpose::parse("personalization").unwrap(), false));
    for e in &log.events {
        p.apply(e);
    }
    assert_eq!(p.view(&a).unwrap().views(), 3);
}
