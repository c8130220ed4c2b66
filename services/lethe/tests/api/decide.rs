//! The decision API: consent-gated personalization with a fallback under every reason (invariants
//! 3 and 8), receipts that carry the consent record, outcomes, canaries, exact unlearning at
//! erasure (R-ERASE-7) and off-policy evaluation. The Personalizer-compatible API is in
//! `personalizer.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lethe_auth::Role;
use lethe_decide::engine::Model;
use lethe_decide::features::D;
use lethe_decide::Scorer;
use lethe_domain::SubjectId;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// The features of an engaged outdoor fan on the outdoor-gear variant: where the tests read the live
/// model's expectation to see what it learned and unlearned.
const PROBE: [f64; D] = [1.0, 0.8, 0.5, 1.0, 0.2, 0.0, 1.0, 1.0, 0.0, 0.0];

/// A visitor who consents to analytics and personalization and browses outdoor gear.
async fn outdoor_fan(app: &TestApp, id: &str) {
    let (status, body) = app.consent(id, &["analytics", "personalization"], &["sale_share"]).await;
    assert_eq!(status, 201, "{body}");
    browse(app, id, "outdoor", 4).await;
}

async fn browse(app: &TestApp, id: &str, category: &str, n: usize) {
    static SENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let site = app.site();
    for _ in 0..n {
        let i = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (status, body) = app
            .post(
                "/v1/track",
                Some(&site),
                &json!({"anonymousId": id, "event": "Product Viewed", "messageId": format!("{id}-{category}-{i}"),
                    "properties": {"product_id": format!("{category}-{i}"), "category": category}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    app.views.catch_up().expect("views follow the log");
}

async fn decide(app: &TestApp, id: &str, slot: &str) -> Value {
    let (status, body) = app
        .post(
            "/v1/decide",
            Some(&app.token(Role::Cms, None)),
            &json!({"anonymousId": id, "slot": slot, "context": {"device": "desktop", "page": "/"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A personalized decision that exploited (ε-greedy explores a few per cent of the time).
async fn exploit(app: &TestApp, id: &str, slot: &str) -> Value {
    for _ in 0..8 {
        let d = decide(app, id, slot).await;
        if d["explored"] != json!(true) {
            return d;
        }
    }
    panic!("eight explorations in a row");
}

async fn outcome(app: &TestApp, decision: &Value, kind: &str) -> Value {
    let (status, body) = app
        .post(
            "/v1/outcomes",
            Some(&app.token(Role::Cms, None)),
            &json!({"decisionId": decision["decisionId"], "type": kind}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body
}

/// Thirty consenting visitors `{prefix}-0` … `{prefix}-29`, one decision of `home-hero` each with
/// its outcome: the even ones browse outdoor gear and click the outdoor-gear banner when shown it;
/// the others browse kitchenware and never click, whatever they are shown.
async fn outdoor_clickers(app: &TestApp, prefix: &str) {
    for i in 0..30 {
        let id = format!("{prefix}-{i}");
        let (status, _) = app.consent(&id, &["analytics", "personalization"], &["sale_share"]).await;
        assert_eq!(status, 201);
        browse(app, &id, if i % 2 == 0 { "outdoor" } else { "kitchen" }, 3).await;
    }
    for i in 0..30 {
        let d = decide(app, &format!("{prefix}-{i}"), "home-hero").await;
        let click = i % 2 == 0 && first(&d) == "outdoor-gear";
        outcome(app, &d, if click { "click" } else { "impression" }).await;
    }
}

fn first(d: &Value) -> &str {
    d["variants"][0]["id"].as_str().unwrap_or_default()
}

/// Decisions made on many threads at once (as the request threads of every core make them): each is
/// counted once, and each is receipted with the consent record and the slot's variants.
#[actix_web::test]
async fn decisions_made_on_many_threads_are_each_counted_once_and_receipted_with_the_slots_variants() {
    let app = spawn_app().await;
    let (status, _) = app.consent("tess", &["analytics", "personalization"], &["sale_share"]).await;
    assert_eq!(status, 201);
    let engine = &app.engine;
    let counted = |slot: &str| -> u64 {
        engine.stats().iter().filter(|c| c["slot"] == slot).map(|c| c["decisions"].as_u64().unwrap_or(0)).sum()
    };
    let before = counted("home-hero");
    let (threads, each): (u64, u64) = (12, 3);
    let ids: Vec<(String, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    // The request path's own entry point, on a runtime of this thread's own.
                    let runtime = actix_web::rt::System::new();
                    (0..each)
                        .map(|_| {
                            let req = lethe_decide::engine::DecideRequest {
                                subject: Some(SubjectId::parse("tess").unwrap()),
                                slot: "home-hero".into(),
                                device: None,
                                gpc: false,
                                candidates: None,
                                count: 2,
                                event: None,
                                anonymous_only: false,
                            };
                            let d = runtime.block_on(lethe_decide::api::decide_one(engine, req)).unwrap();
                            let ids: Vec<&str> = d.candidates.iter().map(|c| c.id.as_str()).collect();
                            assert_eq!(ids, ["default", "outdoor-gear"]);
                            let record = d.consent_record.expect("the consent record that allowed it");
                            (d.decision_id.to_string(), record.to_string())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(counted("home-hero") - before, threads * each);
    let served = app.receipts("tess", "decision.served", ids.len()).await;
    for (id, record) in &ids {
        let r = served.iter().find(|r| r["properties"]["decision"] == json!(id)).expect("each decision's receipt");
        assert_eq!(r["properties"]["policy"]["candidates"], json!(["default", "outdoor-gear"]), "{r}");
        assert_eq!(r["properties"]["policy"]["consent_record"], json!(record), "{r}");
    }
}

#[actix_web::test]
async fn decisions_change_after_consent_is_granted_and_receipts_carry_the_consent_record() {
    let app = spawn_app().await;
    // Analytics only: the visitor's browsing is stored, but no decision uses it.
    let (status, _) = app.consent("erin", &["analytics"], &["personalization", "sale_share"]).await;
    assert_eq!(status, 201);
    browse(&app, "erin", "outdoor", 4).await;
    let d = decide(&app, "erin", "home-hero").await;
    assert_eq!((d["mode"].as_str(), d["reason"].as_str()), (Some("non_personalized"), Some("consent_denied")), "{d}");
    assert_eq!(first(&d), "default");
    assert_eq!(d["variants"][0]["propensity"], 1.0);
    assert!(d["consentRecord"].is_null());

    // She grants personalization; what she browses from now on feeds the views.
    let (status, granted) = app.consent("erin", &["analytics", "personalization"], &["sale_share"]).await;
    assert_eq!(status, 201, "{granted}");
    browse(&app, "erin", "outdoor", 3).await;
    let d = exploit(&app, "erin", "home-hero").await;
    assert_eq!(d["mode"], "personalized", "{d}");
    assert_eq!(first(&d), "outdoor-gear", "{d}");
    assert!(d["reason"].is_null());
    let p = d["variants"][0]["propensity"].as_f64().unwrap();
    assert!((0.9..=1.0).contains(&p), "ε-greedy over two variants with ε = 0.05 gives 0.975: {p}");
    assert!(d["modelVersion"].as_str().is_some_and(|v| v.contains('#')), "{d}");

    // The receipt in her own stream proves the lawful basis: the consent record that allowed it.
    let record = d["consentRecord"].as_str().expect("a consent record").to_owned();
    assert_eq!(
        Some(record.as_str()),
        granted["receipt"]["receipt_id"].as_str().or(granted["receipt_id"].as_str()),
        "{granted}"
    );
    let served = app.receipts("erin", "decision.served", 1).await;
    let r = served.iter().find(|r| r["properties"]["decision"] == d["decisionId"]).expect("this decision's receipt");
    assert_eq!(r["properties"]["policy"]["consent_record"], json!(record));
    assert_eq!(r["properties"]["variant"], "outdoor-gear");
    assert_eq!(r["properties"]["model"], d["modelVersion"]);
    assert_eq!(r["properties"]["policy"]["candidates"], json!(["default", "outdoor-gear"]));
    assert!(r["properties"]["policy"]["propensity"].as_f64().is_some());
    // A request that restricts the slot's variants: its receipt lists those it sent.
    let (status, only) = app
        .post(
            "/v1/decide",
            Some(&app.token(Role::Cms, None)),
            &json!({"anonymousId": "erin", "slot": "home-hero", "candidates": ["outdoor-gear"]}),
        )
        .await;
    assert_eq!((status, only["mode"].as_str()), (200, Some("personalized")), "{only}");
    let mut receipt = None;
    for _ in 0..100 {
        // Receipts are written in the background: wait for this decision's own.
        let served = app.receipts("erin", "decision.served", 1).await;
        receipt = served.into_iter().find(|r| r["properties"]["decision"] == only["decisionId"]);
        if receipt.is_some() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let r = receipt.expect("the restricted decision's receipt");
    assert_eq!(r["properties"]["policy"]["candidates"], json!(["outdoor-gear"]));
    // Every stored field is classified (R-ROPA-1).
    let rule = app.state.policies.event(&lethe_domain::EventType::parse("decision.served").unwrap()).unwrap();
    for key in r["properties"].as_object().unwrap().keys() {
        assert!(rule.category_of(key).is_some(), "receipt field {key} has no category");
    }

    // An outcome is logged too, and counted.
    outcome(&app, &d, "impression").await;
    outcome(&app, &d, "click").await;
    let out = app.receipts("erin", "outcome.recorded", 2).await;
    assert!(out.iter().any(|o| o["properties"]["outcome"] == "click"));
    let (status, stats) = app.get("/v1/decide/stats", Some(&app.token(Role::Dpo, None))).await;
    assert_eq!(status, 200);
    let row = stats["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["variant"] == "outdoor-gear" && s["mode"] == "personalized")
        .expect("a row");
    assert_eq!((row["impressions"].as_u64(), row["clicks"].as_u64()), (Some(1), Some(1)), "{row}");
    assert_eq!(row["ctr"], 1.0);
}

#[actix_web::test]
async fn every_reason_falls_back_to_the_slot_default() {
    let app = spawn_app().await;
    // No consent at all.
    let d = decide(&app, "nobody", "home-hero").await;
    assert_eq!(
        (d["mode"].as_str(), d["reason"].as_str(), first(&d)),
        (Some("non_personalized"), Some("no_consent"), "default")
    );

    // Opt-out of sale/share, by the subject API (no token needed).
    outdoor_fan(&app, "olga").await;
    assert_eq!(exploit(&app, "olga", "home-hero").await["mode"], "personalized");
    let (status, body) = app.post("/v1/me/opt-out", None, &json!({"anonymousId": "olga"})).await;
    assert_eq!(status, 200, "{body}");
    let d = decide(&app, "olga", "home-hero").await;
    assert_eq!((d["reason"].as_str(), first(&d)), (Some("opted_out"), "default"), "{d}");

    // GPC on the request.
    outdoor_fan(&app, "gina").await;
    let r = app
        .client
        .post(format!("{}/v1/decide", app.address))
        .bearer_auth(app.token(Role::Cms, None))
        .header("Sec-GPC", "1")
        .json(&json!({"anonymousId": "gina", "slot": "home-hero"}))
        .send()
        .await
        .unwrap();
    let d: Value = r.json().await.unwrap();
    assert_eq!(
        (d["mode"].as_str(), d["reason"].as_str(), first(&d)),
        (Some("non_personalized"), Some("gpc"), "default")
    );

    // A model that fails.
    #[derive(Debug)]
    struct Failing;
    impl Scorer for Failing {
        fn score(&self, _: &Model, _: &[[f64; D]]) -> Result<Vec<f64>, String> {
            Err("injected failure".into())
        }
    }
    app.engine.set_scorer(Arc::new(Failing));
    let d = decide(&app, "gina", "home-hero").await;
    assert_eq!(
        (d["mode"].as_str(), d["reason"].as_str(), first(&d)),
        (Some("fallback"), Some("model_error"), "default")
    );

    // A model that panics (a defect): the same fallback, and the server goes on answering.
    #[derive(Debug)]
    struct Panicking;
    impl Scorer for Panicking {
        fn score(&self, _: &Model, _: &[[f64; D]]) -> Result<Vec<f64>, String> {
            panic!("a defect, injected")
        }
    }
    app.engine.set_scorer(Arc::new(Panicking));
    let d = decide(&app, "gina", "home-hero").await;
    assert_eq!((d["mode"].as_str(), first(&d)), (Some("fallback"), "default"));
    // `model_error` as soon as the panic has unwound; `deadline` when its report took longer than
    // the slot's 50 ms (a backtrace, when RUST_BACKTRACE asks for one, can).
    assert!(matches!(d["reason"].as_str(), Some("model_error" | "deadline")), "{d}");

    // The same on the request thread, where a scorer that says it is bounded arithmetic runs.
    #[derive(Debug)]
    struct PanickingInline;
    impl Scorer for PanickingInline {
        fn score(&self, _: &Model, _: &[[f64; D]]) -> Result<Vec<f64>, String> {
            panic!("a defect, injected")
        }
        fn inline(&self) -> bool {
            true
        }
    }
    app.engine.set_scorer(Arc::new(PanickingInline));
    assert!(app.engine.scores_inline());
    let d = decide(&app, "gina", "home-hero").await;
    assert_eq!(
        (d["mode"].as_str(), d["reason"].as_str(), first(&d)),
        (Some("fallback"), Some("model_error"), "default")
    );

    // A model slower than the slot's deadline (50 ms): the answer does not wait for it.
    #[derive(Debug)]
    struct Slow;
    impl Scorer for Slow {
        fn score(&self, m: &Model, xs: &[[f64; D]]) -> Result<Vec<f64>, String> {
            std::thread::sleep(Duration::from_secs(2));
            m.scores(xs).map_err(|e| e.to_string())
        }
    }
    app.engine.set_scorer(Arc::new(Slow));
    assert!(!app.engine.scores_inline());
    let started = Instant::now();
    let d = decide(&app, "gina", "home-hero").await;
    assert!(started.elapsed() < Duration::from_secs(1), "the fallback waited for the slow model");
    assert_eq!((d["mode"].as_str(), d["reason"].as_str(), first(&d)), (Some("fallback"), Some("deadline"), "default"));

    // Consent granted but nothing known yet: a cold start.
    app.engine.set_scorer(Arc::new(lethe_decide::engine::LinearScorer));
    let (status, _) = app.consent("newbie", &["analytics", "personalization"], &["sale_share"]).await;
    assert_eq!(status, 201);
    let d = decide(&app, "newbie", "home-hero").await;
    assert_eq!((d["mode"].as_str(), d["reason"].as_str()), (Some("non_personalized"), Some("cold_start")), "{d}");

    let metrics = app.metrics().await;
    let gauge = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}"));
        line[name.len() + 1..].parse().expect("a count")
    };
    let reasons = |reason: &str| gauge(&format!("lethe_decision_reasons_total{{reason=\"{reason}\"}}"));
    for reason in ["no_consent", "opted_out", "gpc", "cold_start"] {
        assert_eq!(reasons(reason), 1, "{reason}: {metrics}");
    }
    assert!(reasons("model_error") >= 2 && reasons("deadline") >= 1, "{metrics}");
    assert_eq!(reasons("model_error") + reasons("deadline"), 4, "{metrics}");
    // Every decision waits for its outcomes, far below the cap: none was evicted.
    assert!(gauge("lethe_decisions_pending") >= 6, "{metrics}");
    assert_eq!(gauge("lethe_decisions_evicted_total"), 0);
    // Every answer above is in the slot's latency histogram; the one that waited out the slow
    // model's deadline (50 ms) is past the 25 ms bucket.
    let decisions: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("lethe_decisions_total{slot=\"home-hero\""))
        .map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()).expect("a count"))
        .sum();
    let count = gauge("lethe_decide_duration_seconds_count{slot=\"home-hero\"}");
    assert_eq!(count, decisions, "{metrics}");
    assert_eq!(gauge("lethe_decide_duration_seconds_bucket{slot=\"home-hero\",le=\"+Inf\"}"), count);
    let within_25ms = gauge("lethe_decide_duration_seconds_bucket{slot=\"home-hero\",le=\"0.025\"}");
    assert!(within_25ms < count, "the deadline's fallback took ≥ 50 ms: {metrics}");
    assert!(within_25ms >= 1, "{metrics}");
}

/// The decision receipts of the subject's stream, once the writer has logged them all.
async fn served_count(app: &TestApp, id: &str) -> usize {
    let p = app.store.pseudonymize(&SubjectId::parse(id).unwrap());
    let count = || {
        app.store
            .read_stream(&p)
            .unwrap()
            .iter()
            .filter(|e| e.envelope.event_type.as_str() == "decision.served")
            .count()
    };
    let mut last = usize::MAX;
    // Settled: the same count twice, 100 ms apart (the writer hands receipts over every 2 ms and the
    // log holds them at most 20 ms).
    loop {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        let now = count();
        if now == last {
            return now;
        }
        last = now;
    }
}

#[actix_web::test]
async fn no_personalized_answer_is_given_without_its_receipt_on_its_way_to_the_log() {
    // Invariants 3 and 8: a personalized decision always leaves its receipt (the lawful basis);
    // when the log is too far behind to take one, the answer is the slot's fallback, with the
    // reason, and personalization resumes once the log catches up.
    let app = spawn_app().await;
    outdoor_fan(&app, "rita").await;
    let d = exploit(&app, "rita", "home-hero").await;
    assert_eq!((d["mode"].as_str(), first(&d)), (Some("personalized"), "outdoor-gear"));
    let before = served_count(&app, "rita").await;
    assert!(before >= 1);

    // A log that is behind: no room for one more receipt.
    app.engine.set_receipt_backlog(0);
    let d = decide(&app, "rita", "home-hero").await;
    assert_eq!(
        (d["mode"].as_str(), d["reason"].as_str(), first(&d)),
        (Some("non_personalized"), Some("receipt_backlog"), "default"),
        "{d}"
    );
    assert_eq!(d["consentRecord"], Value::Null, "no lawful basis is claimed for it: {d}");
    // Also when the room runs out after the model has scored (a race with other requests): the
    // engine refuses the receipt and gives the fallback instead.
    let engine = &app.engine;
    let slot_index = engine.slots.index_of("home-hero").unwrap();
    let slot = &engine.slots.all()[slot_index];
    let req = lethe_decide::engine::DecideRequest {
        subject: Some(SubjectId::parse("rita").unwrap()),
        slot: "home-hero".into(),
        device: Some("desktop".into()),
        gpc: false,
        candidates: None,
        count: 1,
        event: None,
        anonymous_only: false,
    };
    let (candidates, default) = engine.candidates(slot, &req).unwrap();
    let ctx = lethe_decide::features::Context::new(Some("desktop"), lethe_domain::UtcMicros::now());
    let (subject, gate) = engine.gate(&req, slot);
    assert!(matches!(gate, lethe_decide::engine::Gate::Personalize { .. }), "{gate:?}");
    let scoring = engine.prepare(slot_index, &subject, Arc::clone(&candidates), default, &ctx, 1);
    let scored = engine.score(&scoring, 7).unwrap();
    let decision =
        engine.finish(subject, &gate, Some(scoring), Ok(scored), &ctx, (candidates, default, 1), slot_index, None);
    assert_eq!(
        (decision.mode, decision.reason),
        (lethe_decide::Mode::NonPersonalized, Some(lethe_decide::Reason::ReceiptBacklog))
    );
    assert_eq!(decision.consent_record, None);
    assert_eq!(served_count(&app, "rita").await, before, "no receipt was written for either");

    // The log caught up.
    app.engine.set_receipt_backlog(lethe_decide::engine::DEFAULT_RECEIPT_BACKLOG);
    let d = exploit(&app, "rita", "home-hero").await;
    assert_eq!((d["mode"].as_str(), first(&d)), (Some("personalized"), "outdoor-gear"));
    assert!(served_count(&app, "rita").await > before);
    let metrics = app.metrics().await;
    assert!(metrics.contains("lethe_decision_reasons_total{reason=\"receipt_backlog\"} 2\n"), "{metrics}");
    // Every receipt that was queued has been answered by the log.
    assert!(metrics.contains("lethe_decision_receipts_in_flight 0\n"), "{metrics}");
}

#[actix_web::test]
async fn a_withdrawn_subject_gets_non_personalized_answers_at_once() {
    let app = spawn_app().await;
    outdoor_fan(&app, "wanda").await;
    let d = exploit(&app, "wanda", "home-hero").await;
    assert_eq!((d["mode"].as_str(), first(&d)), (Some("personalized"), "outdoor-gear"));
    outcome(&app, &d, "click").await;
    let p = app.store.pseudonymize(&SubjectId::parse("wanda").unwrap());
    assert_eq!(app.engine.contributions_of(&p), 1);
    let token = app.token(Role::Subject, Some("wanda"));
    let (status, body) = app.post("/v1/me/withdraw", Some(&token), &json!({"purposes": ["personalization"]})).await;
    assert_eq!(status, 200, "{body}");
    let d = decide(&app, "wanda", "home-hero").await;
    assert_eq!(
        (d["mode"].as_str(), d["reason"].as_str(), first(&d)),
        (Some("non_personalized"), Some("consent_withdrawn"), "default")
    );
    // R-ERASE-7: what the model learned from her is gone too.
    assert_eq!(app.engine.contributions_of(&p), 0);
}

/// An outcome receipt of `id`'s, by decision id, once the receipts queued before now are written:
/// a marker subject's receipt, queued after, is waited for first (one writer, in order).
async fn outcome_receipt_of(app: &TestApp, id: &str, decision: &Value, marker: &str) -> Option<Value> {
    outdoor_fan(app, marker).await;
    let d = decide(app, marker, "home-hero").await;
    outcome(app, &d, "impression").await;
    app.receipts(marker, "outcome.recorded", 1).await;
    app.receipts(id, "outcome.recorded", 0)
        .await
        .into_iter()
        .find(|r| r["properties"]["decision"] == decision["decisionId"])
}

#[actix_web::test]
async fn r_consent_2_a_banner_withdrawal_unlearns_her_outcomes_and_later_ones_teach_nothing() {
    let app = spawn_app().await;
    let hero = app.engine.slots.index_of("home-hero").unwrap();
    let before_her = app.engine.live_expected(hero, &PROBE);
    outdoor_fan(&app, "walt").await;
    let taught = exploit(&app, "walt", "home-hero").await;
    outcome(&app, &taught, "click").await;
    let pending = exploit(&app, "walt", "home-hero").await;
    let p = app.store.pseudonymize(&SubjectId::parse("walt").unwrap());
    assert_eq!(app.engine.contributions_of(&p), 1);
    assert!((app.engine.live_expected(hero, &PROBE) - before_her).abs() > 1e-6, "her click moved the model");

    // The banner, not the subject API: personalization unticked.
    let (status, body) = app.consent("walt", &["analytics"], &["personalization", "sale_share"]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.engine.contributions_of(&p), 0, "unlearned as the record was added");
    assert!((app.engine.live_expected(hero, &PROBE) - before_her).abs() < 1e-9, "exactly as if never seen");

    // The outcome of a decision made before the withdrawal is counted, but teaches nothing and
    // leaves no receipt under the purpose she withdrew.
    let body = outcome(&app, &pending, "click").await;
    assert_eq!(body["recorded"], json!(true), "{body}");
    assert_eq!(app.engine.contributions_of(&p), 0);
    assert!((app.engine.live_expected(hero, &PROBE) - before_her).abs() < 1e-9);
    assert!(outcome_receipt_of(&app, "walt", &taught, "walt-marker-1").await.is_some(), "the earlier one was logged");
    assert!(outcome_receipt_of(&app, "walt", &pending, "walt-marker-2").await.is_none());
}

/// Withdrawn and granted again within a decision's attribution window: the click that follows is
/// learned on top of what the model holds of that decision (nothing, once its impression was
/// unlearned), so unlearning stays exact.
#[actix_web::test]
async fn r_erase_7_a_regrant_then_a_click_keeps_unlearning_exact() {
    let app = spawn_app().await;
    let hero = app.engine.slots.index_of("home-hero").unwrap();
    // Two others' clicks first, on decisions like hers: the model holds enough of her features
    // that a wrong removal would pass unnoticed.
    for id in ["ray", "roy"] {
        outdoor_fan(&app, id).await;
        let other = exploit(&app, id, "home-hero").await;
        outcome(&app, &other, "click").await;
    }
    let before = app.engine.live_expected(hero, &PROBE);
    outdoor_fan(&app, "rae").await;
    let d = exploit(&app, "rae", "home-hero").await;
    outcome(&app, &d, "impression").await;
    let (status, _) = app.consent("rae", &["analytics"], &["personalization", "sale_share"]).await;
    assert_eq!(status, 201);
    let (status, _) = app.consent("rae", &["analytics", "personalization"], &["sale_share"]).await;
    assert_eq!(status, 201);
    let body = outcome(&app, &d, "click").await;
    assert_eq!(body["learned"], json!(1.0), "{body}");
    let p = app.store.pseudonymize(&SubjectId::parse("rae").unwrap());
    assert_eq!(app.engine.contributions_of(&p), 1);
    let token = app.token(Role::Subject, Some("rae"));
    let (status, body) = app.post("/v1/me/withdraw", Some(&token), &json!({"purposes": ["personalization"]})).await;
    assert_eq!(status, 200, "{body}");
    let after = app.engine.live_expected(hero, &PROBE);
    assert!((after - before).abs() < 1e-9, "exactly as if never seen: {after} vs {before}");
}

#[actix_web::test]
async fn r_gpc_1_a_gpc_signal_unlearns_the_outcomes_of_a_slot_that_honors_opt_outs() {
    let app = spawn_app().await;
    outdoor_fan(&app, "gina").await;
    let d = exploit(&app, "gina", "home-hero").await;
    outcome(&app, &d, "click").await;
    let p = app.store.pseudonymize(&SubjectId::parse("gina").unwrap());
    assert_eq!(app.engine.contributions_of(&p), 1);
    let (status, body) = app.track_with_gpc("gina", "Page Viewed", "gina-gpc").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.engine.contributions_of(&p), 0, "home-hero honors opt-outs: her click is unlearned");
    let d = decide(&app, "gina", "home-hero").await;
    assert_eq!((d["mode"].as_str(), d["reason"].as_str()), (Some("non_personalized"), Some("gpc")));
}

#[actix_web::test]
async fn candidate_ids_of_an_open_slot_cannot_forge_metrics() {
    let app = spawn_app().await;
    let cms = app.token(Role::Cms, None);
    let ask = |id: &'static str| {
        let body = json!({"anonymousId": "mallory", "slot": "personalizer", "candidates": [{"id": id}, {"id": "y"}]});
        let (app, cms) = (&app, &cms);
        async move { app.post("/v1/decide", Some(cms), &body).await }
    };
    // A line break cannot start a series of its own: control characters are refused in ids.
    let (status, body) = ask("x\"} 1\nlethe_forged_total 1\n#").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_candidates")), "{body}");
    // Quotes and backslashes are escaped in the label.
    let (status, body) = ask("x\"} 1 \\ lethe_forged_total 1 #").await;
    assert_eq!(status, 200, "{body}");
    let metrics = app.metrics().await;
    assert!(!metrics.lines().any(|l| l.starts_with("lethe_forged_total")), "{metrics}");
    assert!(metrics.contains(r#"variant="x\"} 1 \\ lethe_forged_total 1 #""#), "escaped in its label: {metrics}");
}

#[actix_web::test]
async fn a_repeated_outcome_report_counts_once_and_leaves_one_receipt() {
    let app = spawn_app().await;
    outdoor_fan(&app, "dora").await;
    let d = exploit(&app, "dora", "home-hero").await;
    let cms = app.token(Role::Cms, None);
    let mut recorded = Vec::new();
    for kind in ["click", "conversion", "conversion", "click"] {
        let (status, body) = app
            .post("/v1/outcomes", Some(&cms), &json!({"decisionId": d["decisionId"], "type": kind, "value": 10.0}))
            .await;
        assert_eq!(status, 202, "{body}");
        recorded.push(body["recorded"].as_bool().unwrap());
    }
    assert_eq!(recorded, [true, true, false, false], "only the first of each kind is recorded");
    let (_, stats) = app.get("/v1/decide/stats", Some(&cms)).await;
    let row = stats["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["slot"] == "home-hero" && r["variant"] == first(&d) && r["mode"] == "personalized")
        .cloned()
        .unwrap();
    assert_eq!((&row["clicks"], &row["conversions"], &row["value"]), (&json!(1), &json!(1), &json!(10.0)), "{row}");
    assert_eq!(row["conversion_rate"], json!(1.0), "never above 1: {row}");
    // One receipt per recorded outcome (the writer is asynchronous: a marker's receipt, queued
    // last, is waited for first).
    let _ = outcome_receipt_of(&app, "dora", &d, "dora-marker").await;
    assert_eq!(app.receipts("dora", "outcome.recorded", 2).await.len(), 2);
}

#[actix_web::test]
async fn a_reward_is_learned_as_sent_once_per_decision() {
    let app = spawn_app().await;
    outdoor_fan(&app, "rex").await;
    let cms = app.token(Role::Cms, None);
    let post = |d: &Value, body: Value| {
        let mut body = body;
        body["decisionId"] = d["decisionId"].clone();
        let (app, cms) = (&app, &cms);
        async move { app.post("/v1/outcomes", Some(cms), &body).await }
    };
    let d = exploit(&app, "rex", "home-hero").await;
    for (body, code) in [
        (json!({"type": "reward"}), "invalid_value"),
        (json!({"type": "reward", "value": 1.5}), "invalid_value"),
        (json!({"type": "reward", "value": -1.01}), "invalid_value"),
        (json!({"type": "conversion", "value": 1e308}), "invalid_value"),
        (json!({"type": "conversion", "value": -3.0}), "invalid_value"),
    ] {
        let (status, r) = post(&d, body.clone()).await;
        assert_eq!((status, r["code"].as_str()), (400, Some(code)), "{body} → {r}");
    }
    let learned = |r: &Value| r["learned"].as_f64();
    let (status, r) = post(&d, json!({"type": "reward", "value": 0.25})).await;
    assert_eq!((status, learned(&r), &r["recorded"]), (202, Some(0.25), &json!(true)), "{r}");
    // The first click, conversion or reward is what the decision teaches; later ones teach nothing.
    let (_, r) = post(&d, json!({"type": "click"})).await;
    assert_eq!((learned(&r), &r["recorded"]), (None, &json!(false)), "{r}");
    let (_, r) = post(&d, json!({"type": "reward", "value": -0.5})).await;
    assert_eq!(learned(&r), None, "{r}");
    let other = exploit(&app, "rex", "home-hero").await;
    let (_, r) = post(&other, json!({"type": "click"})).await;
    assert_eq!(learned(&r), Some(1.0), "a click teaches 1: {r}");
    let other = exploit(&app, "rex", "home-hero").await;
    let (_, r) = post(&other, json!({"type": "reward", "value": -0.5})).await;
    assert_eq!(learned(&r), Some(-0.5), "{r}");
    // Unlearning is exact whatever was learned: each decision's one contribution is kept.
    let p = app.store.pseudonymize(&SubjectId::parse("rex").unwrap());
    assert_eq!(app.engine.contributions_of(&p), 3);
}

/// A restart rebuilds the pending decisions and what they taught from the receipts, under the same
/// consent gate as a live decision: an outcome unlearned because of a GPC signal stays unlearned.
#[actix_web::test]
async fn r_gpc_1_outcomes_unlearned_for_a_gpc_signal_stay_unlearned_after_a_restart() {
    let app = spawn_app().await;
    for id in ["gwen", "glen"] {
        outdoor_fan(&app, id).await;
        let d = exploit(&app, id, "home-hero").await;
        outcome(&app, &d, "click").await;
        app.receipts(id, "outcome.recorded", 1).await;
    }
    let (status, body) = app.track_with_gpc("gwen", "Page Viewed", "gwen-gpc").await;
    assert_eq!(status, 200, "{body}");
    let (gwen, glen) = (
        app.store.pseudonymize(&SubjectId::parse("gwen").unwrap()),
        app.store.pseudonymize(&SubjectId::parse("glen").unwrap()),
    );
    assert_eq!((app.engine.contributions_of(&gwen), app.engine.contributions_of(&glen)), (0, 1));
    let reopened = app.reopened_engine();
    assert_eq!(reopened.contributions_of(&glen), 1, "the replay rebuilds what the log holds");
    assert_eq!(reopened.contributions_of(&gwen), 0, "but not what her GPC signal took back");
}

#[actix_web::test]
async fn r_erase_7_erasure_unlearns_her_outcomes_exactly() {
    let app = spawn_app().await;
    let hero = app.engine.slots.index_of("home-hero").unwrap();
    outdoor_fan(&app, "bob").await;
    for _ in 0..3 {
        let d = exploit(&app, "bob", "home-hero").await;
        outcome(&app, &d, "impression").await;
        outcome(&app, &d, "click").await;
    }
    let before_her = app.engine.live_expected(hero, &PROBE);
    outdoor_fan(&app, "eve").await;
    for _ in 0..4 {
        let d = exploit(&app, "eve", "home-hero").await;
        outcome(&app, &d, "impression").await;
    }
    let p = app.store.pseudonymize(&SubjectId::parse("eve").unwrap());
    assert_eq!(app.engine.contributions_of(&p), 4);
    let with_her = app.engine.live_expected(hero, &PROBE);
    assert!((with_her - before_her).abs() > 1e-6, "her outcomes moved the model");
    let token = app.token(Role::Subject, Some("eve"));
    let (status, cert) = app.post("/v1/me/erasure", Some(&token), &json!({})).await;
    assert_eq!(status, 200, "{cert}");
    assert!(cert.to_string().contains("decision_models"), "the certificate lists the decision models: {cert}");
    assert_eq!(app.engine.contributions_of(&p), 0);
    let after = app.engine.live_expected(hero, &PROBE);
    assert!((after - before_her).abs() < 1e-9, "exactly as if she had never been seen: {after} vs {before_her}");
}

#[actix_web::test]
async fn canaries_are_rolled_back_or_promoted_by_their_measured_ctr_and_audited() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin, None);
    outdoor_fan(&app, "carl").await;
    // The live version: six impressions, six clicks.
    for _ in 0..6 {
        let d = decide(&app, "carl", "home-hero").await;
        outcome(&app, &d, "click").await;
    }
    let rule = json!({"min_impressions": 5, "max_relative_drop": 0.05, "z": 1.64});
    let (status, started) = app
        .post("/v1/decide/slots/home-hero/canary", Some(&admin), &json!({"share_permille": 1000, "rule": rule}))
        .await;
    assert_eq!(status, 201, "{started}");
    let canary = started["version"].as_str().unwrap().to_owned();
    // A canary that nobody clicks is rolled back once it has its impressions.
    let mut verdict = Value::Null;
    for _ in 0..5 {
        let d = decide(&app, "carl", "home-hero").await;
        assert_eq!(d["modelVersion"].as_str(), Some(canary.as_str()), "all traffic goes to the canary");
        verdict = outcome(&app, &d, "impression").await;
    }
    assert_eq!(verdict["canary"]["verdict"], "rollback", "{verdict}");
    let (_, versions) = app.get("/v1/decide/slots/home-hero/versions", Some(&admin)).await;
    assert!(versions["canary"].is_null(), "{versions}");
    assert_ne!(versions["live"]["version"].as_str(), Some(canary.as_str()));

    // A canary as good as live is promoted.
    let (status, started) =
        app.post("/v1/decide/slots/home-hero/canary", Some(&admin), &json!({"share_permille": 1000})).await;
    assert_eq!(status, 201, "{started}");
    let second = started["version"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        let d = decide(&app, "carl", "home-hero").await;
        verdict = outcome(&app, &d, "click").await;
    }
    assert_eq!(verdict["canary"]["verdict"], "promote", "{verdict}");
    let (_, versions) = app.get("/v1/decide/slots/home-hero/versions", Some(&admin)).await;
    assert_eq!(versions["live"]["version"].as_str(), Some(second.as_str()), "{versions}");

    // By hand: a third canary, rolled back by the admin; nothing to promote afterwards.
    let (status, _) =
        app.post("/v1/decide/slots/home-hero/canary", Some(&admin), &json!({"share_permille": 100})).await;
    assert_eq!(status, 201);
    let (status, body) = app.post("/v1/decide/slots/home-hero/rollback", Some(&admin), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.post("/v1/decide/slots/home-hero/promote", Some(&admin), &json!({})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("version_conflict")));
    let (status, body) = app
        .post("/v1/decide/slots/home-hero/canary", Some(&app.token(Role::Cms, None)), &json!({"share_permille": 100}))
        .await;
    assert_eq!(status, 403, "only an admin starts a canary: {body}");
    // A refused request changes nothing: a rule that cannot judge, or a good rule with a bad share.
    let loose = json!({"min_impressions": 1, "max_relative_drop": 0.5, "z": 1.0});
    for (request, code) in [
        (
            json!({"share_permille": 100, "rule": {"min_impressions": 0, "max_relative_drop": 0.05, "z": 1.64}}),
            "invalid_rule",
        ),
        (json!({"share_permille": 5000, "rule": loose}), "invalid_params"),
        // A misspelt parameter is refused, not silently left at its default.
        (
            json!({"share_permille": 100, "params": {"alpha": 0.1, "lambda": 10.0, "prior": vec![0.0; D], "epsilom": 0.5}}),
            "invalid_json",
        ),
    ] {
        let (status, body) = app.post("/v1/decide/slots/home-hero/canary", Some(&admin), &request).await;
        assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{body}");
    }
    let (_, versions) = app.get("/v1/decide/slots/home-hero/versions", Some(&admin)).await;
    assert!(versions["canary"].is_null(), "{versions}");

    // Every change is in the audit trail.
    let r = app
        .client
        .get(format!("{}/v1/audit/export?format=jsonl", app.address))
        .bearer_auth(app.token(Role::Dpo, None))
        .send()
        .await
        .unwrap();
    let trail = r.text().await.unwrap();
    for action in ["canary_started", "canary_rolled_back", "canary_promoted"] {
        assert!(trail.contains(action), "{action} is audited");
    }
    // The one rule that was set is audited; the refused one was never set.
    let rules: Vec<Value> = trail
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e.pointer("/detail/detail/rule").cloned())
        .collect();
    assert_eq!(rules, vec![rule], "{trail}");
}

#[actix_web::test]
async fn off_policy_evaluation_of_a_candidate_policy_from_logged_decisions() {
    let app = spawn_app().await;
    for i in 0..6 {
        let id = format!("ope-{i}");
        outdoor_fan(&app, &id).await;
        let d = decide(&app, &id, "home-hero").await;
        outcome(&app, &d, if first(&d) == "outdoor-gear" { "click" } else { "impression" }).await;
    }
    let cms = app.token(Role::Cms, None);
    let params = json!({"alpha": 0.0, "lambda": 10.0, "epsilon": 0.1, "prior": [0.02, 0.3, 0.2, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03]});
    let (status, report) =
        app.post("/v1/decide/slots/home-hero/evaluate", Some(&cms), &json!({"params": params})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rounds"], 6);
    for estimator in ["logged", "ips", "snips", "doubly_robust"] {
        let e = &report[estimator];
        let v = e["value"].as_f64().expect(estimator);
        assert!(e["ci_low"].as_f64().unwrap() <= v && v <= e["ci_high"].as_f64().unwrap(), "{estimator}: {e}");
    }
    let (status, body) = app.post("/v1/decide/slots/home-cta/evaluate", Some(&cms), &json!({"params": params})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("version_conflict")), "nothing logged for that slot");
    // Bad parameters are refused as such, whether or not anything is logged, by the evaluation and
    // by a canary alike: among them settings that pass as numbers but make every score infinite.
    let admin = app.token(Role::Admin, None);
    for bad in [
        json!({"alpha": -1.0, "lambda": 10.0, "prior": vec![0.0; D]}),
        json!({"alpha": 0.05, "lambda": 1e-308, "prior": vec![0.0; D]}),
        json!({"alpha": 0.05, "lambda": 10.0, "prior": vec![1e308; D]}),
        json!({"alpha": 1e300, "lambda": 10.0, "prior": vec![0.0; D]}),
    ] {
        for slot in ["home-hero", "home-cta"] {
            let (status, body) =
                app.post(&format!("/v1/decide/slots/{slot}/evaluate"), Some(&cms), &json!({"params": bad})).await;
            assert_eq!((status, body["code"].as_str()), (400, Some("invalid_params")), "{slot} {bad}: {body}");
            let (status, body) = app
                .post(
                    &format!("/v1/decide/slots/{slot}/canary"),
                    Some(&admin),
                    &json!({"params": bad, "share_permille": 1000}),
                )
                .await;
            assert_eq!((status, body["code"].as_str()), (400, Some("invalid_params")), "{slot} {bad}: {body}");
        }
    }
    let d = decide(&app, "after-bad-params", "home-hero").await;
    assert_ne!(d["reason"], "model_error", "no canary was started: {d}");
}

#[actix_web::test]
async fn recommendations_fall_back_to_popularity_and_refuse_bad_input() {
    let app = spawn_app().await;
    outdoor_fan(&app, "rita").await;
    let cms = app.token(Role::Cms, None);
    let (status, body) = app.get("/v1/recommendations?anonymousId=stranger&count=3", Some(&cms)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["mode"].as_str(), body["reason"].as_str()), (Some("non_personalized"), Some("no_consent")));
    let (status, body) = app.get("/v1/recommendations?anonymousId=rita&count=2&exclude=seen", Some(&cms)).await;
    assert_eq!(status, 200, "{body}");
    // No recommender is trained yet: a cold start, never an item she has seen.
    assert_eq!(body["reason"], "cold_start");
    let (status, body) = app.get("/v1/recommendations?anonymousId=rita&exclude=everything", Some(&cms)).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_exclude")));
    let (status, body) = app.get("/v1/recommendations?anonymousId=rita&count=0", Some(&cms)).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_count")), "{body}");
    // More than the most an answer holds is answered with that many at most (pages pass their own).
    let (status, body) = app.get("/v1/recommendations?anonymousId=rita&count=1000", Some(&cms)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["items"].as_array().unwrap().len() <= lethe_decide::api::MAX_COUNT, "{body}");
}

#[actix_web::test]
async fn bad_requests_get_typed_errors_and_roles_are_enforced() {
    let app = spawn_app().await;
    let cms = app.token(Role::Cms, None);
    let site = app.site();
    let cases = [
        (json!({"slot": "home-hero"}), 400, "missing_id"),
        (json!({"anonymousId": "a", "slot": "nope"}), 404, "unknown_slot"),
        (json!({"anonymousId": "a", "slot": "home-hero", "candidates": ["ghost"]}), 400, "invalid_candidates"),
        (json!({"anonymousId": "a", "slot": "home-hero", "bogus": 1}), 400, "invalid_json"),
        (json!({"anonymousId": 7, "slot": "home-hero"}), 400, "invalid_json"),
        (json!({"anonymousId": "a", "slot": "home-hero", "count": 0}), 400, "invalid_count"),
    ];
    for (body, status, code) in cases {
        let (s, b) = app.post("/v1/decide", Some(&cms), &body).await;
        assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{body} → {b}");
    }
    let r = app
        .client
        .post(format!("{}/v1/decide", app.address))
        .bearer_auth(&cms)
        .header("content-type", "application/json")
        .body(vec![0xff, 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A public site key decides for an anonymous id only; a subject token not at all.
    let (s, b) = app.post("/v1/decide", Some(&site), &json!({"userId": "u-1", "slot": "home-hero"})).await;
    assert_eq!((s, b["code"].as_str()), (403, Some("user_id_not_allowed")));
    let (s, _) = app.post("/v1/decide", Some(&site), &json!({"anonymousId": "a-1", "slot": "home-hero"})).await;
    assert_eq!(s, 200);
    let subject = app.token(Role::Subject, Some("a-1"));
    let (s, _) = app.post("/v1/decide", Some(&subject), &json!({"anonymousId": "a-1", "slot": "home-hero"})).await;
    assert_eq!(s, 403);
    let (s, _) = app.post("/v1/decide", None, &json!({"anonymousId": "a-1", "slot": "home-hero"})).await;
    assert_eq!(s, 401);
    let (s, b) = app
        .post(
            "/v1/outcomes",
            Some(&cms),
            &json!({"decisionId": "0193b5d2-8c1e-7a00-9000-000000000000", "type": "click"}),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (404, Some("unknown_decision")));
    let (s, b) = app.post("/v1/outcomes", Some(&cms), &json!({"decisionId": "x", "type": "click"})).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_json")));
    // A site cannot forge a decision receipt with a track call.
    let (s, _) = app.consent("forger", &["analytics", "personalization"], &[]).await;
    assert_eq!(s, 201);
    for name in ["Decision Served", "Outcome Recorded"] {
        let (s, b) = app
            .post(
                "/v1/track",
                Some(&site),
                &json!({"anonymousId": "forger", "event": name, "properties": {"slot": "x"}}),
            )
            .await;
        assert_eq!((s, b["code"].as_str()), (400, Some("reserved_event")), "{name}: {b}");
    }
    assert_eq!(app.stored("forger"), 1, "only the consent record");
    // The service keeps serving.
    assert_eq!(decide(&app, "a-1", "home-hero").await["slot"], "home-hero");
}

#[actix_web::test]
async fn recommendations_come_from_the_live_recommender_with_consent() {
    let app = spawn_app().await;
    // Two visitors with overlapping tastes; a third who never consented.
    for (id, items) in [("ann", ["tent", "stove", "lamp"]), ("ben", ["tent", "stove", "boots"])] {
        let (status, _) = app.consent(id, &["analytics", "personalization"], &[]).await;
        assert_eq!(status, 201);
        for item in items {
            let (status, body) = app
                .post(
                    "/v1/track",
                    Some(&app.site()),
                    &json!({"anonymousId": id, "event": "Product Viewed", "messageId": format!("{id}-{item}"),
                        "properties": {"product_id": item, "category": "outdoor"}}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    app.views.catch_up().unwrap();
    let engine = Arc::clone(&app.engine);
    let report = actix_web::web::block(move || engine.personalizer().train("test")).await.unwrap().expect("trained");
    assert_eq!(report.subjects, 2);
    let cms = app.token(Role::Cms, None);
    let (status, body) = app.get("/v1/recommendations?anonymousId=ann&count=3&exclude=seen", Some(&cms)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], "personalized", "{body}");
    let ids: Vec<&str> = body["items"].as_array().unwrap().iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids.first(), Some(&"boots"), "what her neighbour saw and she did not: {body}");
    assert!(!ids.contains(&"tent") && !ids.contains(&"lamp"), "nothing she has seen: {body}");
    // Like a decision, the personalized list left a receipt naming the consent record that allowed it.
    let ann = app.store.pseudonymize(&SubjectId::parse("ann").unwrap());
    let record = app.state.book.history(&ann).current().purposes
        [&lethe_domain::Purpose::parse("personalization").unwrap()]
        .record_id;
    assert_eq!(body["consentRecord"], json!(record), "{body}");
    let served = app.receipts("ann", "recommendations.served", 1).await;
    let p = &served[0]["properties"];
    assert_eq!(p["decision"], body["decisionId"], "{p}");
    assert_eq!((&p["policy"]["consent_record"], &p["items"][0]), (&json!(record), &json!("boots")), "{p}");
    // No receipt can be queued (the log is behind): no personalized list either.
    app.engine.set_receipt_backlog(0);
    let (_, behind) = app.get("/v1/recommendations?anonymousId=ann&count=3", Some(&cms)).await;
    assert_eq!(
        (behind["mode"].as_str(), behind["reason"].as_str()),
        (Some("non_personalized"), Some("receipt_backlog"))
    );
    assert_eq!(behind["decisionId"], Value::Null, "{behind}");
    app.engine.set_receipt_backlog(lethe_decide::engine::DEFAULT_RECEIPT_BACKLOG);
    // Related items need no subject.
    let (status, body) = app.get("/v1/recommendations?item=tent&count=2", Some(&cms)).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body["items"].as_array().unwrap().is_empty(), "{body}");
    // Without consent: popularity, and it says why.
    let (_, body) = app.get("/v1/recommendations?anonymousId=cal&count=3", Some(&cms)).await;
    assert_eq!((body["mode"].as_str(), body["reason"].as_str()), (Some("non_personalized"), Some("no_consent")));
    assert_eq!(body["items"][0]["id"], "stove", "the most engaged item first (ties by id): {body}");
}

#[actix_web::test]
async fn a_cold_start_gets_the_popularity_of_its_segment() {
    let app = spawn_app().await;
    let site = app.site();
    let track = |id: &'static str, n: usize, event: &'static str, props: Value| {
        let (app, site) = (&app, site.clone());
        async move {
            let (status, body) = app
                .post(
                    "/v1/track",
                    Some(&site),
                    &json!({"anonymousId": id, "event": event, "messageId": format!("{id}-seg-{n}"), "properties": props}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    // Campers like tents and stoves; a coffee lover views espresso machines more than anyone.
    for id in ["camper-1", "camper-2", "coffee-1", "newbie-camper"] {
        let (status, _) = app.consent(id, &["analytics", "personalization"], &[]).await;
        assert_eq!(status, 201);
    }
    for id in ["camper-1", "camper-2", "newbie-camper"] {
        track(id, 0, "Segment Assigned", json!({"segment": "campers"})).await;
    }
    for (n, item) in ["tent", "stove", "tent"].iter().enumerate() {
        track("camper-1", n + 1, "Product Viewed", json!({"product_id": item, "category": "outdoor"})).await;
        track("camper-2", n + 1, "Product Viewed", json!({"product_id": item, "category": "outdoor"})).await;
    }
    for n in 0..8 {
        track("coffee-1", n + 1, "Product Viewed", json!({"product_id": "espresso", "category": "kitchen"})).await;
    }
    app.views.catch_up().unwrap();
    let cms = app.token(Role::Cms, None);
    let ids = |body: &Value| -> Vec<String> {
        body["items"].as_array().unwrap().iter().filter_map(|i| i["id"].as_str().map(str::to_owned)).collect()
    };
    // Overall, the espresso machine is the most viewed.
    let (_, overall) = app.get("/v1/recommendations?anonymousId=stranger&count=3", Some(&cms)).await;
    assert_eq!(ids(&overall).first().map(String::as_str), Some("espresso"), "{overall}");
    // A consenting newcomer in the campers segment: the campers' favourites.
    let (status, body) = app.get("/v1/recommendations?anonymousId=newbie-camper&count=2", Some(&cms)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["reason"].as_str(), body["segment"].as_str()), (Some("cold_start"), Some("campers")), "{body}");
    assert_eq!(ids(&body), ["tent", "stove"]);
    // Without consent, only a segment the CMS names from the page's context is used.
    let (_, body) = app.get("/v1/recommendations?anonymousId=stranger&count=2&segment=campers", Some(&cms)).await;
    assert_eq!((body["reason"].as_str(), body["segment"].as_str()), (Some("no_consent"), Some("campers")));
    assert_eq!(ids(&body), ["tent", "stove"]);
}

/// R-TRAIN-1: the engagement model is trained offline from the logged decisions and outcomes of
/// subjects whose consent holds at training time, its hyperparameters chosen by grid search under
/// k-fold cross-validation grouped by subject, and registered with its members (R-ERASE-7).
#[actix_web::test]
async fn the_engagement_model_trains_on_logged_outcomes_of_consenting_subjects_only() {
    let app = spawn_app().await;
    outdoor_clickers(&app, "eng").await;
    // One of the clickers withdraws before training.
    let token = app.token(Role::Subject, Some("eng-0"));
    let (status, _) = app.post("/v1/me/withdraw", Some(&token), &json!({"purposes": ["personalization"]})).await;
    assert_eq!(status, 200);
    // Receipts are written in the background.
    app.receipts("eng-29", "outcome.recorded", 1).await;
    let engine = Arc::clone(&app.engine);
    let report = actix_web::web::block(move || lethe_decide::train::train_engagement(&engine, "home-hero", "test"))
        .await
        .unwrap()
        .expect("trained");
    assert_eq!((report.rows, report.subjects, report.excluded_subjects), (29, 29, 1), "{report:?}");
    assert!(report.clicks > 5 && report.clicks < 25, "{report:?}");
    assert_eq!(report.grid.len(), 5, "every candidate was cross-validated");
    assert!(report.cv_auc_mean > 0.8, "clicks follow the outdoor affinity: {report:?}");
    assert_eq!(report.status, "candidate");
    let registry = app.engine.personalizer().registry();
    let member = |id: &str| {
        let p = app.store.pseudonymize(&SubjectId::parse(id).unwrap());
        registry.containing(&p).unwrap().iter().any(|m| m.to_string() == report.model_id)
    };
    assert!(member("eng-2") && member("eng-3"));
    assert!(!member("eng-0"), "the withdrawn subject is not in the model");
    // Too little to learn from: a typed refusal.
    let engine = Arc::clone(&app.engine);
    let err = actix_web::web::block(move || lethe_decide::train::train_engagement(&engine, "home-cta", "test"))
        .await
        .unwrap()
        .expect_err("nothing logged");
    assert_eq!(err.code(), "version_conflict");
}

/// The offline engagement model, trained through the admin API, serves as a canary of the slot,
/// is promoted with it, and, when a subject it was trained on is erased, is retrained without her
/// and swapped into the live version in place of the old one, which is retired (R-ERASE-7).
#[actix_web::test]
async fn r_erase_7_the_engagement_model_serves_as_a_canary_and_is_retrained_without_an_erased_subject() {
    use lethe_ml::engagement::{EngagementModel as _, TrainedModel};
    use lethe_registry::{ModelId, RetireReason, Status};

    let app = spawn_app().await;
    let admin = app.token(Role::Admin, None);
    let hero = app.engine.slots.index_of("home-hero").unwrap();
    outdoor_clickers(&app, "canary").await;
    app.receipts("canary-29", "outcome.recorded", 1).await;

    // Trained by the running service, as a candidate.
    let (status, report) = app.post("/v1/decide/slots/home-hero/train", Some(&admin), &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "candidate");
    let first_model: ModelId = report["model_id"].as_str().unwrap().parse().unwrap();
    let registry = app.engine.personalizer().registry();
    let load = |id: ModelId| -> TrainedModel {
        serde_json::from_slice(&app.engine.personalizer().load_model(id).unwrap()).unwrap()
    };

    // Served as the canary's base on every subject.
    let params = json!({"alpha": 0.05, "lambda": 10.0, "prior": lethe_decide::features::PRIOR, "engagement": first_model.to_string()});
    let (status, body) = app
        .post("/v1/decide/slots/home-hero/canary", Some(&admin), &json!({"params": params, "share_permille": 1000}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(matches!(registry.get(first_model).unwrap().unwrap().status, Status::Canary { .. }));
    let (_, versions) = app.get("/v1/decide/slots/home-hero/versions", Some(&admin)).await;
    assert_eq!(versions["canary"]["engagement"], first_model.to_string(), "{versions}");
    let d = decide(&app, "canary-4", "home-hero").await;
    assert_eq!(d["modelVersion"], versions["canary"]["version"], "{d}");
    // Another slot's model, or no model, is refused.
    let bad = json!({"alpha": 0.05, "lambda": 10.0, "prior": lethe_decide::features::PRIOR, "engagement": first_model.to_string()});
    let (status, body) =
        app.post("/v1/decide/slots/home-cta/canary", Some(&admin), &json!({"params": bad, "share_permille": 10})).await;
    assert_eq!(status, 400, "{body}");

    // Promoted with it: the live version's expectation of a fresh context is the model's prediction.
    let (status, body) = app.post("/v1/decide/slots/home-hero/promote", Some(&admin), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(registry.get(first_model).unwrap().unwrap().status, Status::Live);
    let predicted = load(first_model).predict_proba(&PROBE).unwrap();
    assert!((app.engine.live_expected(hero, &PROBE) - predicted).abs() < 1e-9);

    // An erased member: the model is retrained without her, and the live version serves the successor.
    let erased = app.store.pseudonymize(&SubjectId::parse("canary-2").unwrap());
    assert!(registry.containing(&erased).unwrap().contains(&first_model));
    let token = app.token(Role::Subject, Some("canary-2"));
    let (status, cert) = app.post("/v1/me/erasure", Some(&token), &json!({})).await;
    assert_eq!(status, 200, "{cert}");
    let personalizer = Arc::clone(app.engine.personalizer());
    actix_web::web::block(move || personalizer.unlearn_pending()).await.unwrap().expect("unlearned");
    let old = registry.get(first_model).unwrap().unwrap();
    assert!(matches!(old.status, Status::Retired { reason: RetireReason::Unlearning, .. }), "{:?}", old.status);
    assert!(app.engine.personalizer().load_model(first_model).is_err(), "its bytes are gone");
    assert!(registry.containing(&erased).unwrap().is_empty(), "no model holds her");
    let (_, versions) = app.get("/v1/decide/slots/home-hero/versions", Some(&admin)).await;
    let successor: ModelId = versions["live"]["engagement"].as_str().expect("a successor serves").parse().unwrap();
    assert_ne!(successor, first_model);
    let new = registry.get(successor).unwrap().unwrap();
    assert_eq!(new.status, Status::Live);
    assert_eq!((old.manifest.subjects, new.manifest.subjects), (30, 29), "the same subjects but her");
    assert_eq!(new.manifest.hyperparameters["replaces"], json!([first_model.to_string()]));
    let predicted = load(successor).predict_proba(&PROBE).unwrap();
    assert!((app.engine.live_expected(hero, &PROBE) - predicted).abs() < 1e-9);
}

/// R-RETAIN-1 reaches the online models: once the retention of decision receipts (395 days) ends,
/// a sweep destroys their keys and the outcomes they carried are subtracted exactly, as at erasure.
#[actix_web::test]
async fn r_retain_1_outcomes_whose_receipts_expired_are_unlearned_exactly() {
    let app = spawn_app().await;
    let hero = app.engine.slots.index_of("home-hero").unwrap();
    let before = app.engine.live_expected(hero, &PROBE);
    outdoor_fan(&app, "old-timer").await;
    for _ in 0..3 {
        let d = exploit(&app, "old-timer", "home-hero").await;
        outcome(&app, &d, "impression").await;
        outcome(&app, &d, "click").await;
    }
    app.receipts("old-timer", "outcome.recorded", 3).await;
    let p = app.store.pseudonymize(&SubjectId::parse("old-timer").unwrap());
    assert_eq!(app.engine.contributions_of(&p), 3);
    assert!((app.engine.live_expected(hero, &PROBE) - before).abs() > 1e-6, "her clicks moved the model");

    // A year on, nothing has expired yet.
    let day = 86_400_000_000_i64;
    let now = lethe_domain::UtcMicros::now().0;
    let privacy = Arc::clone(&app.privacy);
    actix_web::web::block(move || lethe_privacy::schedule::sweep(&privacy, lethe_domain::UtcMicros(now + 300 * day)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(app.engine.contributions_of(&p), 3);

    let privacy = Arc::clone(&app.privacy);
    let report = actix_web::web::block(move || {
        lethe_privacy::schedule::sweep(&privacy, lethe_domain::UtcMicros(now + 400 * day))
    })
    .await
    .unwrap()
    .unwrap();
    assert!(report.keys_destroyed > 0, "{report:?}");
    assert_eq!(app.engine.contributions_of(&p), 0);
    let after = app.engine.live_expected(hero, &PROBE);
    assert!(
        (after - before).abs() < 1e-9,
        "exactly as if the expired outcomes had never been seen: {after} vs {before}"
    );
}

/// Tracks `n` outdoor product views under a `userId` with the site key, as Segment's browser
/// library does for a signed-in visitor (allowed: tracking is not acting for her).
async fn browse_signed_in(app: &TestApp, user: &str, device: &str, n: usize) {
    for i in 0..n {
        let (status, body) = app
            .post(
                "/v1/track",
                Some(&app.site()),
                &json!({"userId": user, "anonymousId": device, "event": "Product Viewed",
                    "messageId": format!("{user}-signed-in-{i}"), "properties": {"product_id": format!("tent-{i}"), "category": "outdoor"}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    app.views.catch_up().expect("views follow the log");
}

async fn decide_with(app: &TestApp, token: &str, who: (&str, &str)) -> Value {
    let mut body = json!({"slot": "home-hero", "context": {"device": "desktop", "page": "/"}});
    body[who.0] = json!(who.1);
    // The policy explores now and then: an exploring answer says so and is asked again.
    for _ in 0..8 {
        let (status, d) = app.post("/v1/decide", Some(token), &body).await;
        assert_eq!(status, 200, "never an error page for the CMS (invariant 8): {d}");
        if d["explored"] != json!(true) {
            return d;
        }
    }
    panic!("eight explorations in a row");
}

/// R-DSR-4, R-CONSENT-1, R-PSEUDO-1: an `anonymousId` and a `userId` of the same text are one
/// pseudonym, so a public site key (in every page, anyone has it) sending a signed-in user's id as
/// an `anonymousId` would read decisions computed from her profile and record consent in her name.
/// Lethe knows from the log which pseudonyms are accounts (a consent record or an event stored for
/// a `userId`): the site key's decisions and recommendations for them are what anyone gets
/// (`not_anonymous`, no receipt), and its consent for them is refused; the user's own tokens, the
/// CMS, and genuinely anonymous visitors are unaffected, and a rebuild from the log knows the same.
#[actix_web::test]
async fn r_dsr_4_a_site_key_cannot_act_for_a_signed_in_user_by_sending_her_id_as_an_anonymous_id() {
    let app = spawn_app().await;
    let site = app.site();
    let cms = app.token(Role::Cms, None);
    // Her consent, recorded for her userId with her own token; she browses outdoor gear signed in.
    let her_token = app.token(Role::Subject, Some("u-42"));
    let grant = json!({"userId": "u-42", "notice": app.notice(), "granted": ["analytics", "personalization"],
        "method": "api", "jurisdiction": "EU", "locale": "en"});
    let (status, body) = app.post("/v1/consent", Some(&her_token), &grant).await;
    assert_eq!(status, 201, "{body}");
    browse_signed_in(&app, "u-42", "device-42", 4).await;
    let u42 = app.store.pseudonymize(&SubjectId::parse("u-42").unwrap());
    assert!(app.state.book.is_user(&u42));

    // The CMS, for her userId: personalized from her profile.
    let d = decide_with(&app, &cms, ("userId", "u-42")).await;
    assert_eq!((d["mode"].as_str(), first(&d)), (Some("personalized"), "outdoor-gear"), "{d}");
    let served = served_count(&app, "u-42").await;
    assert!(served >= 1);

    // The site key, with her userId as an anonymousId: what anyone gets, and why; no receipt.
    for _ in 0..3 {
        let d = decide_with(&app, &site, ("anonymousId", "u-42")).await;
        assert_eq!(
            (d["mode"].as_str(), d["reason"].as_str(), first(&d)),
            (Some("non_personalized"), Some("not_anonymous"), "default"),
            "{d}"
        );
        assert_eq!((&d["consentRecord"], &d["modelVersion"]), (&Value::Null, &Value::Null), "{d}");
    }
    let (status, recs) = app.get("/v1/recommendations?anonymousId=u-42&count=3", Some(&site)).await;
    assert_eq!(status, 200, "{recs}");
    assert_eq!((recs["mode"].as_str(), recs["reason"].as_str()), (Some("non_personalized"), Some("not_anonymous")));
    assert_eq!((&recs["decisionId"], &recs["consentRecord"]), (&Value::Null, &Value::Null), "{recs}");
    assert_eq!(served_count(&app, "u-42").await, served, "no decision.served receipt for the site key's requests");
    assert!(app.metrics().await.contains("lethe_decision_reasons_total{reason=\"not_anonymous\"} 3\n"));

    // Nor may it record or withdraw consent in her name (R-CONSENT-1: her ledger stays hers).
    let records = app.state.book.history(&u42).records().len();
    let stored = app.stored("u-42");
    for (granted, denied) in [(json!(["analytics"]), json!(["personalization"])), (json!([]), json!(["analytics"]))] {
        let body = json!({"anonymousId": "u-42", "notice": app.notice(), "granted": granted, "denied": denied,
            "method": "banner", "jurisdiction": "EU", "locale": "en"});
        let (status, err) = app.post("/v1/consent", Some(&site), &body).await;
        assert_eq!((status, err["code"].as_str()), (403, Some("user_id_not_allowed")), "{err}");
        assert!(err["message"].as_str().unwrap().contains("signed-in user"), "{err}");
    }
    assert_eq!((app.state.book.history(&u42).records().len(), app.stored("u-42")), (records, stored));
    let d = decide_with(&app, &cms, ("userId", "u-42")).await;
    assert_eq!(d["mode"], "personalized", "her consent stands: {d}");

    // An account known only by its events (its consent record predates the mark, or came as an
    // anonymousId): the first event stored for its userId makes it one.
    let u43 = app.store.pseudonymize(&SubjectId::parse("u-43").unwrap());
    let (status, body) = app.consent("u-43", &["analytics", "personalization"], &["sale_share"]).await;
    assert_eq!(status, 201, "not known as an account yet: {body}");
    assert!(!app.state.book.is_user(&u43));
    browse_signed_in(&app, "u-43", "device-43", 4).await;
    assert!(app.state.book.is_user(&u43));
    let d = decide_with(&app, &site, ("anonymousId", "u-43")).await;
    assert_eq!((d["mode"].as_str(), d["reason"].as_str()), (Some("non_personalized"), Some("not_anonymous")), "{d}");

    // A genuinely anonymous visitor: the site key records her banner choice and is answered for her.
    outdoor_fan(&app, "v-7").await;
    let d = decide_with(&app, &site, ("anonymousId", "v-7")).await;
    assert_eq!((d["mode"].as_str(), first(&d)), (Some("personalized"), "outdoor-gear"), "{d}");
    assert!(served_count(&app, "v-7").await >= 1);
    let (status, body) = app.consent("v-7", &["analytics"], &["personalization"]).await;
    assert_eq!(status, 201, "{body}");

    // A restart: the book and the engine rebuilt from the log know the same accounts.
    let rebuilt = lethe_collect::CollectState::build(
        Arc::clone(&app.store),
        Arc::clone(&app.state.policies),
        Arc::clone(&app.state.auth),
    )
    .unwrap();
    let v7 = app.store.pseudonymize(&SubjectId::parse("v-7").unwrap());
    assert!(rebuilt.book.is_user(&u42) && rebuilt.book.is_user(&u43));
    assert!(!rebuilt.book.is_user(&v7));
    let reopened = app.reopened_engine_with(rebuilt);
    let slot = reopened.slots.get("home-hero").unwrap();
    let request = |id: &str, anonymous_only: bool| lethe_decide::engine::DecideRequest {
        subject: Some(SubjectId::parse(id).unwrap()),
        slot: "home-hero".into(),
        device: Some("desktop".into()),
        gpc: false,
        candidates: None,
        count: 1,
        event: None,
        anonymous_only,
    };
    let gate = |id: &str, anonymous_only: bool| reopened.gate(&request(id, anonymous_only), slot).1;
    use lethe_decide::engine::Gate;
    assert!(matches!(gate("u-42", true), Gate::NonPersonalized(lethe_decide::Reason::NotAnonymous)));
    assert!(matches!(gate("u-43", true), Gate::NonPersonalized(lethe_decide::Reason::NotAnonymous)));
    assert!(matches!(gate("u-42", false), Gate::Personalize { .. }), "the CMS still personalizes for her");
    assert!(matches!(gate("v-7", true), Gate::NonPersonalized(lethe_decide::Reason::ConsentWithdrawn)));
}

/// The decision receipts as the feature views read the log: each with the note the log hands over
/// with it, if any (taken: a note is handed out once).
fn receipts_as_the_views_read_them(app: &TestApp) -> Vec<(lethe_domain::RecordedEvent, Option<lethe_eventlog::Note>)> {
    use lethe_features::Projector;
    app.store
        .read_all_opening_noted(lethe_domain::Position(0), Projector::opens, Projector::takes_note)
        .map(Result::unwrap)
        .filter(|(e, _)| e.envelope.event_type.as_str() == "decision.served")
        .collect()
}

/// The feature views take Lethe's decision receipts from the notes the engine leaves with them,
/// in place of decrypting and parsing the receipts: each note observes exactly what its receipt's
/// payload does, is handed out once, and the views it builds are byte for byte the views a
/// replay of the receipts' payloads builds.
#[actix_web::test]
async fn the_views_learn_from_a_decision_receipts_note_what_its_payload_says() {
    use lethe_domain::{EventBody, Position, RecordedEvent};
    use lethe_features::ServedNote;
    let app = spawn_app().await;
    outdoor_fan(&app, "nora").await;
    for _ in 0..3 {
        decide(&app, "nora", "home-hero").await;
    }
    app.receipts("nora", "decision.served", 3).await;
    let served = |e: &RecordedEvent| e.envelope.event_type.as_str() == "decision.served";
    // As the views read the log: the receipts come unopened, each with its note.
    let noted = receipts_as_the_views_read_them(&app);
    assert_eq!(noted.len(), 3);
    let plain: Vec<RecordedEvent> = app.store.read_all(Position(0)).map(Result::unwrap).filter(served).collect();
    for ((e, note), p) in noted.iter().zip(&plain) {
        assert_eq!(e.body, EventBody::Unopened, "a noted receipt is not decrypted");
        let note = note.as_ref().and_then(|n| n.downcast_ref::<ServedNote>()).expect("the engine's note");
        assert!(note.agrees_with(p), "the note observes what the payload says: {note:?}");
    }
    // Handed out once: a second read opens the payloads.
    let again = receipts_as_the_views_read_them(&app);
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|(e, n)| n.is_none() && matches!(e.body, EventBody::Plain(_))));
}

/// The views that followed the log through the notes of the decision receipts are byte for byte
/// the views a replay of the receipts' payloads builds, and count the decisions.
#[actix_web::test]
async fn views_built_from_the_notes_are_the_views_a_replay_of_the_payloads_builds() {
    use lethe_features::Projector;
    let app = spawn_app().await;
    outdoor_fan(&app, "olga").await;
    outdoor_fan(&app, "pia").await;
    for id in ["olga", "olga", "pia"] {
        decide(&app, id, "home-hero").await;
    }
    app.receipts("olga", "decision.served", 2).await;
    app.receipts("pia", "decision.served", 1).await;
    app.views.catch_up().expect("views follow the log");
    // The views took the notes: none is left, and a reader now opens the receipts.
    let left = receipts_as_the_views_read_them(&app);
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|(e, n)| n.is_none() && matches!(e.body, lethe_domain::EventBody::Plain(_))));
    let olga = app.store.pseudonymize(&SubjectId::parse("olga").unwrap());
    assert_eq!(app.views.with(|p| p.view(&olga).map(|v| v.decisions().0)), Some(2));
    let live = app.views.with(Projector::snapshot_bytes);
    let replayed = lethe_personalize::Views::replay(Arc::clone(&app.store), &app.state.policies).expect("replay");
    assert_eq!(live, replayed.with(Projector::snapshot_bytes), "the notes observed what the payloads say");
}
