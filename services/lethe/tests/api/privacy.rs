//! The privacy part over real HTTP: erasure with its certificate, recipient notices and finality
//! (R-ERASE-1/3/4), opt-out and withdrawal (R-CONSENT-2, R-GPC-1), the access export against its
//! published schema (R-DSR-2), the request log and its deadlines (R-DSR-1), the role matrix
//! (R-DSR-4), and the DPO's audit export and chain (R-AUDIT-1, R-ROPA-1).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use lethe_auth::Role;
use lethe_domain::{EventBody, Pseudonym, SubjectId};
use lethe_privacy::ErasureHook;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_configured, TestApp};

fn pseudonym(app: &TestApp, id: &str) -> Pseudonym {
    app.store.pseudonymize(&SubjectId::parse(id).unwrap())
}

/// Consents to everything on the banner and sends events carrying canary values.
async fn seed(app: &TestApp, id: &str, canary: &str) {
    let (status, body) = app.consent(id, &["analytics", "personalization", "sale_share"], &[]).await;
    assert_eq!(status, 201, "{body}");
    let site = app.site();
    let (status, body) = app
        .post(
            "/v1/track",
            Some(&site),
            &json!({"anonymousId": id, "event": "Product Viewed", "messageId": format!("{canary}-1"),
                "properties": {"product_id": format!("{canary}-product"), "category": "tents"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(
            "/v1/page",
            Some(&site),
            &json!({"anonymousId": id, "messageId": format!("{canary}-2"),
                "context": {"page": {"url": format!("https://shop.example/{canary}-page")}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn erase(app: &TestApp, id: &str) -> (u16, Value) {
    let token = app.token(Role::Subject, Some(id));
    app.post("/v1/me/erasure", Some(&token), &json!({})).await
}

use lethe_testkit::{contains, file_contents_under as files};

/// A store of derived data, registered like a feature view would be.
#[derive(Debug, Default)]
struct Features(Mutex<std::collections::HashMap<Pseudonym, Value>>);

impl ErasureHook for Features {
    fn name(&self) -> &str {
        "test_features"
    }
    fn forget(&self, subject: &Pseudonym) -> Result<bool, String> {
        Ok(self.0.lock().unwrap().remove(subject).is_some())
    }
    fn export(&self, subject: &Pseudonym) -> Option<Value> {
        self.0.lock().unwrap().get(subject).cloned()
    }
}

/// R-ERASE-1, R-ERASE-3, R-AUDIT-1: the erasure answers with a signed certificate that holds no
/// personal data; every event reads as a tombstone; the consent book, the dedup index, registered
/// stores and the privacy database hold nothing of the subject; the audit chain still verifies.
#[actix_web::test]
async fn r_erase_1_3_erasure_reaches_every_store_and_certifies_it() {
    let app = spawn_app().await;
    let features = Arc::new(Features::default());
    app.privacy.register(features.clone());
    seed(&app, "erase-me-7731", "canary9d2e").await;
    seed(&app, "keep-me-1188", "canary44aa").await;
    let subject = pseudonym(&app, "erase-me-7731");
    features.0.lock().unwrap().insert(subject, json!({"affinity": "canary9d2e-tents"}));
    assert!(app.state.book.holds(&subject));
    let own = app.token(Role::Subject, Some("erase-me-7731"));
    assert_eq!(app.get("/v1/consent/erase-me-7731", Some(&own)).await.0, 200);
    assert_eq!(app.state.auth.cached_for(&SubjectId::parse("erase-me-7731").unwrap()), 1);

    let (status, cert) = erase(&app, "erase-me-7731").await;
    assert_eq!(status, 200, "{cert}");
    let text = cert.to_string();
    assert!(!text.contains(&subject.to_hex()) && !text.contains("erase-me-7731"), "PII in the certificate: {text}");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(subject.as_bytes()));
    assert_eq!(cert["subject_digest"], digest);
    assert_eq!(cert["events_shredded"], 3);
    assert!(cert["stores_touched"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap().starts_with("test_features")));
    let parsed: lethe_privacy::ErasureCertificate = serde_json::from_value(cert.clone()).unwrap();
    assert!(lethe_privacy::erasure::verify_certificate(&app.privacy, &parsed));
    let mut forged = parsed.clone();
    forged.events_shredded = 0;
    assert!(!lethe_privacy::erasure::verify_certificate(&app.privacy, &forged), "a changed certificate verifies");

    // R-ERASE-1: tombstones and a fence; the other subject is intact.
    let bodies: Vec<EventBody> = app.store.read_stream(&subject).unwrap().into_iter().map(|e| e.body).collect();
    assert_eq!(bodies, vec![EventBody::Shredded, EventBody::Shredded, EventBody::Shredded, EventBody::Empty]);
    assert_eq!(app.stored("keep-me-1188"), 3);
    // R-ERASE-3: no projection, cache or index holds the subject.
    assert!(!app.state.book.holds(&subject));
    assert_eq!(app.state.auth.cached_for(&SubjectId::parse("erase-me-7731").unwrap()), 0, "token cache");
    assert!(features.export(&subject).is_none());
    app.privacy.db.flush().unwrap();
    let hex_pseudonym = subject.to_hex();
    let needles: [&[u8]; 4] = [subject.as_bytes(), hex_pseudonym.as_bytes(), b"erase-me-7731", b"canary9d2e"];
    for (path, bytes) in files(&app.dir.path().join(lethe_privacy::PRIVACY_DIR)) {
        for n in &needles {
            assert!(!contains(&bytes, n), "{} holds {:?}", path.display(), String::from_utf8_lossy(n));
        }
    }
    // The subject can be re-identified by nobody, and nothing more is stored for it.
    let (status, body) = app
        .post(
            "/v1/track",
            Some(&app.site()),
            &json!({"anonymousId": "erase-me-7731", "event": "Clicked", "messageId": "after"}),
        )
        .await;
    assert_ne!(status, 200, "{body}");
    // A second erasure repeats the first one's facts.
    let (status, again) = erase(&app, "erase-me-7731").await;
    assert_eq!((status, again["newly_erased"].as_bool()), (200, Some(false)));
    // R-AUDIT-1: the chain verifies after the erasure and names the subject only by digest.
    let report = app.privacy.audit.verify().expect("the chain verifies");
    assert!(report.entries_checked >= 4, "{report:?}");
    let (_, requests) = app.get("/v1/requests?status=all", Some(&app.token(Role::Dpo, None))).await;
    let erasures: Vec<&Value> =
        requests["requests"].as_array().unwrap().iter().filter(|r| r["kind"] == "erasure").collect();
    assert_eq!(erasures.len(), 2);
    assert!(erasures.iter().all(|r| r["status"] == "completed" && r["subject_digest"] == digest));
}

/// R-ERASE-4: `lethe serve`'s background work rotates the key epoch within the configured window
/// after an erasure, which makes it final; the rotation is in the audit chain.
#[actix_web::test]
async fn r_erase_4_the_erasure_becomes_final_within_the_window() {
    let app = spawn_app_configured(Default::default(), lethe::app::Part::ALL.to_vec(), |s| {
        s.options.finality = Duration::from_millis(300);
    })
    .await;
    let _bg = lethe_privacy::schedule::start(Arc::clone(&app.privacy), Duration::from_millis(50)).unwrap();
    seed(&app, "final-1", "canaryf1").await;
    let (status, cert) = erase(&app, "final-1").await;
    assert_eq!(status, 200, "{cert}");
    assert!(app.store.rotation_pending());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.store.rotation_pending() {
        assert!(std::time::Instant::now() < deadline, "no rotation within 10 s");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let rotations = app
        .privacy
        .audit
        .entries(1)
        .filter_map(Result::ok)
        .filter(|e| e.kind == lethe_audit::AuditKind::KeyRotation)
        .count();
    assert_eq!(rotations, 1);
    let metrics = app.metrics().await;
    assert!(metrics.contains("lethe_rotation_pending 0"), "{metrics}");
}

/// GDPR Art. 19: every recipient of a purpose the subject granted gets a signed `subject.erased`
/// notice naming the subject by a reference of its own; the acknowledgement is recorded and shows
/// in the DPO's export.
#[actix_web::test]
async fn recipients_are_notified_of_an_erasure_and_their_acknowledgement_is_kept() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&received);
    let server = HttpServer::new(move || {
        let sink = Arc::clone(&sink);
        App::new().route(
            "/erased",
            web::post().to(move |body: web::Json<Value>| {
                let sink = Arc::clone(&sink);
                async move {
                    sink.lock().unwrap().push(body.into_inner());
                    HttpResponse::Ok().json(json!({"acknowledged": true, "ticket": "R-42"}))
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    let app = spawn_app_configured(Default::default(), lethe::app::Part::ALL.to_vec(), |s| {
        let ads = s.controller.recipients.iter_mut().find(|r| r.id == "ad-partners").unwrap();
        ads.webhook = Some(format!("http://127.0.0.1:{port}/erased"));
    })
    .await;
    seed(&app, "shared-with-ads", "canaryad").await;
    let subject = pseudonym(&app, "shared-with-ads");
    let (status, cert) = erase(&app, "shared-with-ads").await;
    assert_eq!(status, 200, "{cert}");
    assert_eq!(cert["recipients_notified"], json!(["ad-partners"]));

    let deliverer =
        lethe_outbox::Deliverer::new(app.privacy.outbox.clone(), lethe_outbox::DeliveryConfig::default()).unwrap();
    let report = deliverer.deliver_due(lethe_domain::UtcMicros::now()).await.unwrap();
    assert_eq!(report.delivered, 1, "{report:?}");
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let data = &got[0]["data"];
    assert_eq!(data["certificate_id"], cert["certificate_id"]);
    assert_eq!(data["subject_ref"], app.privacy.recipient_reference("ad-partners", &subject));
    assert!(!got[0].to_string().contains(&subject.to_hex()), "the notice carries Lethe's pseudonym");

    let (status, export) = app
        .client
        .get(format!("{}/v1/audit/export", app.address))
        .bearer_auth(app.token(Role::Dpo, None))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 200);
    let text = export.text().await.unwrap();
    let notice: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["record"] == "recipient_notice")
        .expect("the notice is exported");
    assert_eq!(notice["detail"]["delivery"]["state"], "delivered");
    assert_eq!(notice["detail"]["delivery"]["acknowledgement"]["ticket"], "R-42");
}

/// R-DSR-4: the rights endpoints admit the subject for itself and an admin for anyone; site, cms
/// and dpo tokens, and a subject token aimed at another subject, are refused; the DPO endpoints
/// refuse everyone but the DPO and admins.
#[actix_web::test]
async fn r_dsr_4_role_matrix_of_the_privacy_endpoints() {
    let app = spawn_app().await;
    seed(&app, "alice-r", "canaryal").await;
    let alice = app.token(Role::Subject, Some("alice-r"));
    for (path, get) in [("/v1/me/erasure", false), ("/v1/me/export", true), ("/v1/me/withdraw", false)] {
        for role in [Role::Site, Role::Cms, Role::Dpo] {
            let token = if role == Role::Site { app.site() } else { app.token(role, None) };
            let (status, body) = if get {
                app.get(path, Some(&token)).await
            } else {
                app.post(path, Some(&token), &json!({"purposes": ["analytics"]})).await
            };
            assert_eq!(status, 403, "{role:?} on {path}: {body}");
        }
        let other = format!("{path}?subject=bob-r");
        let (status, body) = if get {
            app.get(&other, Some(&alice)).await
        } else {
            app.post(&other, Some(&alice), &json!({"purposes": ["analytics"]})).await
        };
        assert_eq!((status, body["code"].as_str()), (403, Some("forbidden_subject")), "{path}");
        let (status, _) = if get { app.get(path, None).await } else { app.post(path, None, &json!({})).await };
        assert_eq!(status, 401, "{path} without a token");
    }
    for path in ["/v1/requests", "/v1/audit/export", "/v1/audit/chain", "/v1/ropa"] {
        for token in [app.site(), app.token(Role::Cms, None), alice.clone()] {
            assert_eq!(app.get(path, Some(&token)).await.0, 403, "{path}");
        }
        assert_eq!(app.get(path, Some(&app.token(Role::Dpo, None))).await.0, 200, "{path}");
    }
    // An admin acts for a named subject; without one it is told to name it.
    let admin = app.token(Role::Admin, None);
    assert_eq!(app.get("/v1/me/export", Some(&admin)).await.1["code"], "missing_subject");
    let r = app
        .client
        .get(format!("{}/v1/me/export?subject=alice-r", app.address))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Nothing of alice was touched by the refused calls.
    assert_eq!(app.stored("alice-r"), 3);
}

/// CCPA opt-out with no verification, and R-GPC-1: the opt-out is recorded in the ledger, logged
/// as a completed CCPA request, and honored at once.
#[actix_web::test]
async fn opt_out_needs_no_token_and_is_honored_at_once() {
    let app = spawn_app().await;
    seed(&app, "carol-o", "canaryco").await;
    let r = app
        .client
        .post(format!("{}/v1/me/opt-out", app.address))
        .header("Sec-GPC", "1")
        .json(&json!({"anonymousId": "carol-o"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["honored"], true);
    assert!(body["message"].as_str().unwrap().contains("Opt-out request honored"));
    let (_, state) = app.get("/v1/consent/carol-o", Some(&app.token(Role::Dpo, None))).await;
    assert_eq!(state["purposes"]["sale_share"]["allowed"], false, "{state}");
    assert_eq!(state["purposes"]["analytics"]["allowed"], true, "{state}");
    let (_, list) = app.get("/v1/requests?status=all&kind=opt_out_sale_share", Some(&app.token(Role::Dpo, None))).await;
    let r = &list["requests"][0];
    assert_eq!(
        (r["law"].as_str(), r["status"].as_str(), r["channel"].as_str()),
        (Some("ccpa"), Some("completed"), Some("gpc_signal"))
    );
    // Malformed bodies are refused with codes and record nothing.
    let (status, body) = app.post("/v1/me/opt-out", None, &json!({"email": "x"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_json")));
    let (status, body) = app.post("/v1/me/opt-out", None, &json!({})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("missing_id")));
    // An admin opting a subject out is named as the admin, in the request and in the audit trail.
    let admin = app.token(Role::Admin, None);
    let (status, body) = app.post("/v1/me/opt-out?subject=carol-a", Some(&admin), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = app.get("/v1/requests?status=all&kind=opt_out_sale_share", Some(&app.token(Role::Dpo, None))).await;
    let by: Vec<&str> =
        list["requests"].as_array().unwrap().iter().filter_map(|r| r["history"][0]["actor_role"].as_str()).collect();
    assert_eq!(by.len(), 2, "{list}");
    assert!(by.contains(&"admin") && by.contains(&"subject"), "{list}");
}

/// R-CONSENT-2: one call withdraws, as one call granted; the next event of that purpose is refused.
#[actix_web::test]
async fn withdrawal_takes_one_call_and_stops_processing_at_once() {
    let app = spawn_app().await;
    seed(&app, "dave-w", "canarydw").await;
    let token = app.token(Role::Subject, Some("dave-w"));
    let (status, body) = app.post("/v1/me/withdraw", Some(&token), &json!({"purposes": ["analytics"]})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(
            "/v1/track",
            Some(&app.site()),
            &json!({"anonymousId": "dave-w", "event": "Clicked", "messageId": "w-after"}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("consent_withdrawn")), "{body}");
    let (status, body) = app.post("/v1/me/withdraw", Some(&token), &json!({"purposes": ["telepathy"]})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("unknown_purpose")));
    let (status, body) = app.post("/v1/me/withdraw", Some(&token), &json!({"purposes": []})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("empty_choice")));
}

/// A purpose named many times is withdrawn once: the record, the answer and the audit entry name it
/// once, so a long list cannot outgrow the audit entry and leave a withdrawal in the log that the
/// audit trail does not show.
#[actix_web::test]
async fn a_purpose_named_many_times_is_withdrawn_once_and_audited() {
    let app = spawn_app().await;
    seed(&app, "dora-w", "canarydd").await;
    let token = app.token(Role::Subject, Some("dora-w"));
    let head = app.store.head();
    let purposes: Vec<&str> = std::iter::repeat_n("analytics", 3000).chain(["personalization"]).collect();
    let (status, body) = app.post("/v1/me/withdraw", Some(&token), &json!({ "purposes": purposes })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["withdrawn"], json!(["analytics", "personalization"]), "{body}");
    assert_eq!(app.store.head().0, head.0 + 1, "one consent record");
    let (status, now) = app.get("/v1/consent/dora-w", Some(&app.token(Role::Admin, None))).await;
    assert_eq!(status, 200, "{now}");
    assert_eq!(now["purposes"]["analytics"]["state"], "withdrawn", "{now}");
    assert_eq!(now["purposes"]["personalization"]["state"], "withdrawn", "{now}");
    let r = app.client.get(format!("{}/v1/audit/export", app.address)).bearer_auth(app.token(Role::Dpo, None));
    let text = r.send().await.unwrap().text().await.unwrap();
    let request = body["request_id"].as_str().unwrap();
    assert!(
        text.lines().any(|l| l.contains("consent_recorded") && l.contains(request)),
        "the withdrawal is in the audit trail: {text}"
    );
}

/// R-DSR-2: a subject seeded in every store — consent ledger, events, a request, a decision, a
/// derived view — finds every seeded value in its export, which validates against the published
/// JSON Schema.
#[actix_web::test]
async fn r_dsr_2_the_export_covers_every_store_and_matches_its_schema() {
    let app = spawn_app().await;
    let features = Arc::new(Features::default());
    app.privacy.register(features.clone());
    seed(&app, "erin-x", "canaryex").await;
    let subject = pseudonym(&app, "erin-x");
    features.0.lock().unwrap().insert(subject, json!({"segment": "canaryex-segment"}));
    let decision = lethe_domain::NewEvent {
        event_type: lethe_domain::EventType::parse("decision.served").unwrap(),
        schema_version: lethe_domain::SchemaVersion::new(1).unwrap(),
        purpose: lethe_domain::Purpose::parse("personalization").unwrap(),
        time: lethe_domain::UtcMicros::now(),
        retention: lethe_domain::Retention::Days(30),
        payload: serde_json::to_vec(&json!({"slot": "home-hero", "variant": "canaryex-variant"})).unwrap(),
    };
    app.store
        .append(lethe_eventlog::AppendRequest {
            subject,
            expected: lethe_domain::ExpectedVersion::Any,
            events: vec![decision],
        })
        .unwrap();
    let (status, _) = app.post("/v1/me/opt-out", None, &json!({"anonymousId": "erin-x"})).await;
    assert_eq!(status, 200);

    let token = app.token(Role::Subject, Some("erin-x"));
    let r = app.client.get(format!("{}/v1/me/export", app.address)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let export: Value = serde_json::from_str(&text).expect("the export is one JSON document");
    for canary in ["canaryex-product", "canaryex-page", "canaryex-segment", "canaryex-variant", "canaryex-1"] {
        assert!(text.contains(canary), "{canary} missing from the export");
    }
    assert_eq!(export["subject"]["pseudonym"], subject.to_hex());
    assert_eq!(export["decisions"].as_array().unwrap().len(), 1);
    assert!(export["consent"]["history"].as_array().unwrap().len() >= 2);
    assert!(export["requests"].as_array().unwrap().iter().any(|r| r["kind"] == "opt_out_sale_share"));
    assert!(export["recipients"].as_array().unwrap().iter().any(|r| r["id"] == "ad-partners"));

    let (status, schema) = app.get("/v1/schemas/export.json", None).await;
    assert_eq!(status, 200);
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(&export).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "the export breaks its schema: {errors:?}");
    // The schema is strict enough to fail: an event without its state does not validate.
    let mut broken = export.clone();
    broken["events"][0].as_object_mut().unwrap().remove("state");
    assert!(!validator.is_valid(&broken));
    // The export itself is audited.
    assert!(app.privacy.audit.entries(1).filter_map(Result::ok).any(|e| e.kind == lethe_audit::AuditKind::Export));
}

/// R-DSR-1 over the API: a request logged with its real receipt time gets the law's deadline in the
/// controller's time zone, and moves through its lifecycle only by allowed steps; a legal hold
/// stops an erasure.
#[actix_web::test]
async fn r_dsr_1_requests_carry_deadlines_and_a_lifecycle() {
    let app = spawn_app().await;
    let dpo = app.token(Role::Dpo, None);
    let (status, r) = app
        .post(
            "/v1/requests",
            Some(&dpo),
            &json!({"kind": "access", "law": "gdpr", "channel": "email", "subject": "frank-d", "received_at": "2026-01-31T10:00:00Z"}),
        )
        .await;
    assert_eq!(status, 201, "{r}");
    // One month from 31 January is the last day of February, end of day in Berlin (UTC+1).
    assert_eq!(r["due"], "2026-02-28T22:59:59.999999Z");
    assert!(r["overdue"].as_bool().unwrap() && r["days_left"].as_i64().unwrap() < -200);
    let id = r["id"].as_str().unwrap().to_owned();
    let act = |body: Value| {
        let (app, dpo, id) = (&app, dpo.clone(), id.clone());
        async move { app.post(&format!("/v1/requests/{id}/actions"), Some(&dpo), &body).await }
    };
    let (status, body) = act(json!({"action": "complete"})).await;
    assert_eq!(status, 409, "an unverified access request cannot complete: {body}");
    assert_eq!(act(json!({"action": "verify"})).await.0, 200);
    assert_eq!(act(json!({"action": "deny"})).await.1["code"], "missing_reason");
    assert_eq!(act(json!({"action": "fly"})).await.1["code"], "unknown_action");
    // A reason the body names that is not one: the body's field, not the query, is wrong.
    let (status, body) = act(json!({"action": "deny", "reason": "bored"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_field")), "{body}");
    let (status, body) =
        act(json!({"action": "deny", "reason": "manifestly_unfounded", "note": "duplicate of an earlier request"}))
            .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("denied")), "{body}");
    assert_eq!(act(json!({"action": "start"})).await.0, 409, "a denied request is closed");

    // CCPA: acknowledge within 10 business days, complete within 45 days.
    let (_, c) = app
        .post(
            "/v1/requests",
            Some(&dpo),
            &json!({"kind": "erasure", "law": "ccpa", "channel": "web_form", "subject": "grace-h", "received_at": "2026-11-27T18:00:00Z"}),
        )
        .await;
    assert!(c["deadlines"]["acknowledge_by"].is_string(), "{c}");
    let cid = c["id"].as_str().unwrap();
    let (status, held) = app
        .post(&format!("/v1/requests/{cid}/actions"), Some(&dpo), &json!({"action": "hold", "reason": "legal_claims"}))
        .await;
    assert_eq!(status, 200, "{held}");
    seed(&app, "grace-h", "canarygh").await;
    let (status, body) = erase(&app, "grace-h").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("legal_hold")), "{body}");
    assert_eq!(app.stored("grace-h"), 3, "nothing was erased under the hold");
    let (_, list) = app.get("/v1/requests?law=ccpa", Some(&dpo)).await;
    assert_eq!(list["count"], 1);
    // Denied while held, the request keeps its hold on record, but no hold stands any more.
    let (status, denied) = app
        .post(
            &format!("/v1/requests/{cid}/actions"),
            Some(&dpo),
            &json!({"action": "deny", "reason": "manifestly_unfounded", "note": "sent twice"}),
        )
        .await;
    assert_eq!((status, denied["status"].as_str()), (200, Some("denied")), "{denied}");
    let (status, body) = erase(&app, "grace-h").await;
    assert_eq!(status, 200, "a hold on a closed request stops nothing: {body}");
    // Denied because of the hold, the request still stops an erasure.
    let (_, c) = app
        .post(
            "/v1/requests",
            Some(&dpo),
            &json!({"kind": "erasure", "law": "gdpr", "channel": "web_form", "subject": "hank-h", "received_at": "2026-11-27T18:00:00Z"}),
        )
        .await;
    let hid = c["id"].as_str().unwrap();
    for action in
        [json!({"action": "hold", "reason": "legal_claims"}), json!({"action": "deny", "reason": "legal_hold"})]
    {
        let (status, body) = app.post(&format!("/v1/requests/{hid}/actions"), Some(&dpo), &action).await;
        assert_eq!(status, 200, "{action} → {body}");
    }
    seed(&app, "hank-h", "canaryhh").await;
    let (status, body) = erase(&app, "hank-h").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("legal_hold")), "{body}");
    assert_eq!(app.get("/v1/requests?status=bogus", Some(&dpo)).await.1["code"], "invalid_query");
}

/// R-AUDIT-1 and R-ROPA-1: the DPO's export holds the records of processing for every purpose,
/// consent records with their notice hash, requests, certificates and audit entries, in JSONL and
/// CSV; the chain export verifies, and one flipped character fails with its position.
#[actix_web::test]
async fn r_audit_1_the_dpo_export_and_the_chain() {
    let app = spawn_app().await;
    seed(&app, "henry-a", "canaryha").await;
    seed(&app, "ivy-a", "canaryia").await;
    assert_eq!(erase(&app, "ivy-a").await.0, 200);
    let dpo = app.token(Role::Dpo, None);
    let get = |path: String| {
        let (app, dpo) = (&app, dpo.clone());
        async move {
            let r = app.client.get(format!("{}{path}", app.address)).bearer_auth(dpo).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, jsonl) = get("/v1/audit/export?format=jsonl".into()).await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let count = |kind: &str| lines.iter().filter(|l| l["record"] == kind).count();
    assert_eq!(count("header"), 1);
    assert_eq!(count("processing_activity"), app.state.policies.purposes().count());
    assert_eq!(count("erasure_certificate"), 1);
    assert!(count("request") >= 1 && count("audit_entry") >= 4, "{} {}", count("request"), count("audit_entry"));
    assert!(lines.iter().any(|l| l["record"] == "audit_entry" && l["detail"]["kind"] == "policy_change"));
    let consents: Vec<&Value> = lines.iter().filter(|l| l["record"] == "consent").collect();
    assert_eq!(consents.len(), 2, "one record each; the erased subject's reads as shredded");
    let readable = consents.iter().find(|c| c["detail"]["notice"].is_object()).expect("henry's record");
    assert_eq!(readable["detail"]["notice"]["content_hash"], app.notice()["contentHash"]);
    assert!(consents.iter().any(|c| c["detail"]["state"].as_str().is_some_and(|s| s.starts_with("shredded"))));
    assert!(!jsonl.contains("canaryia") && !jsonl.contains("ivy-a"));

    let (status, csv_text) = get("/v1/audit/export?format=csv&from=2020-01-01T00:00:00Z".into()).await;
    assert_eq!(status, 200);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["record", "time", "id", "subject_digest", "detail"]
    );
    assert!(reader.records().map(Result::unwrap).any(|r| &r[0] == "erasure_certificate"));
    assert_eq!(get("/v1/audit/export?from=yesterday".into()).await.0, 400);
    assert_eq!(get("/v1/audit/export?from=2027-01-01T00:00:00Z&to=2026-01-01T00:00:00Z".into()).await.0, 400);
    // An empty window holds only the header and the records of processing.
    let (_, empty) = get("/v1/audit/export?from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z".into()).await;
    assert!(empty.lines().all(|l| !l.contains("\"record\":\"consent\"")));

    let (status, chain) = get("/v1/audit/chain".into()).await;
    assert_eq!(status, 200);
    let verifier = app.privacy.signer().verifier();
    let report = lethe_audit::verify_jsonl(chain.as_bytes(), &verifier).expect("the exported chain verifies");
    assert_eq!(report.unsigned_tail, 0);
    let at = chain.find("\"erasure\"").expect("an erasure entry");
    let mut tampered = chain.clone().into_bytes();
    tampered[at + 1] = b'E';
    let err = lethe_audit::verify_jsonl(&tampered[..], &verifier).unwrap_err();
    assert!(matches!(err, lethe_audit::AuditError::Tampered { .. }), "{err}");
}

/// R-RETAIN-1 through collection: each collected event is sealed under the key of its retention
/// period (the shortest retention of its fields' categories), consent proofs under the permanent
/// key; a sweep at a simulated date past the retention destroys the period keys, the events read
/// as expired in the export, the consent proof stays, and the sweep is audited.
#[actix_web::test]
async fn r_retain_1_collected_events_expire_with_their_period_keys() {
    let app = spawn_app().await;
    seed(&app, "kate-r", "canarykr").await;
    let subject = pseudonym(&app, "kate-r");
    let keys = match app.store.subject_state(&subject).unwrap() {
        lethe_eventlog::SubjectState::Active { key_ids, .. } => key_ids,
        other => panic!("{other:?}"),
    };
    assert!(keys.contains(&lethe_domain::KeyId::PERMANENT), "{keys:?}");
    let period_keys: Vec<_> = keys.iter().filter(|k| k.retention_days().is_some()).collect();
    assert!(!period_keys.is_empty(), "{keys:?}");
    let shortest = app.state.policies.categories().map(|c| c.retention().days()).min().unwrap();
    assert!(period_keys.iter().all(|k| u32::from(k.retention_days().unwrap()) >= shortest));

    // Nothing is due today.
    let now = lethe_domain::UtcMicros::now();
    assert_eq!(lethe_privacy::schedule::sweep(&app.privacy, now).unwrap().keys_destroyed, 0);
    // Three years on, every period key is gone; the consent proof is kept.
    let later = lethe_domain::UtcMicros(now.0 + 3 * 365 * 86_400_000_000);
    let report = lethe_privacy::schedule::sweep(&app.privacy, later).unwrap();
    assert_eq!(report.keys_destroyed as usize, period_keys.len());
    let bodies: Vec<EventBody> = app.store.read_stream(&subject).unwrap().into_iter().map(|e| e.body).collect();
    assert!(matches!(bodies[0], EventBody::Plain(_)), "the consent record stays");
    assert!(bodies[1..].iter().all(|b| *b == EventBody::Expired), "{bodies:?}");
    let token = app.token(Role::Subject, Some("kate-r"));
    let text = app
        .client
        .get(format!("{}/v1/me/export", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let export: Value = serde_json::from_str(&text).unwrap();
    let states: Vec<&str> = export["events"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["plain", "expired", "expired"]);
    assert!(!text.contains("canarykr-product"));
    assert!(app
        .privacy
        .audit
        .entries(1)
        .filter_map(Result::ok)
        .any(|e| e.kind == lethe_audit::AuditKind::RetentionShred));
    // The destruction becomes final with the next rotation, as an erasure does.
    assert!(app.store.rotation_pending());
    lethe_privacy::schedule::finalize_if_due(&app.privacy, later, true).unwrap().expect("a rotation");
    assert!(!app.store.rotation_pending());
}

/// A store that counts the subjects it was asked to forget, and fails when told to.
#[derive(Debug, Default)]
struct Forgetful {
    fail: bool,
    calls: std::sync::atomic::AtomicUsize,
}

impl ErasureHook for Forgetful {
    fn name(&self) -> &str {
        if self.fail {
            "broken_store"
        } else {
            "later_store"
        }
    }

    fn forget(&self, _subject: &Pseudonym) -> Result<bool, String> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail {
            Err("disk full".into())
        } else {
            Ok(true)
        }
    }
}

/// R-ERASE (invariant 5, Art. 19): a store that cannot forget the subject is named in the error,
/// but it stops neither the stores after it nor the recipients' notices.
#[actix_web::test]
async fn r_erase_a_store_that_cannot_forget_stops_neither_the_other_stores_nor_the_notices() {
    let app = spawn_app_configured(Default::default(), lethe::app::Part::ALL.to_vec(), |s| {
        let ads = s.controller.recipients.iter_mut().find(|r| r.id == "ad-partners").unwrap();
        ads.webhook = Some("http://127.0.0.1:9/erased".into());
    })
    .await;
    let broken = Arc::new(Forgetful { fail: true, ..Default::default() });
    let later = Arc::new(Forgetful::default());
    app.privacy.register(broken.clone());
    app.privacy.register(later.clone());
    seed(&app, "half-erased", "canaryhe").await;
    let (status, body) = erase(&app, "half-erased").await;
    assert_eq!((status, body["code"].as_str()), (503, Some("erasure_incomplete")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("broken_store"), "{body}");
    assert_eq!(broken.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(later.calls.load(std::sync::atomic::Ordering::SeqCst), 1, "the store after it was told");
    let queued = app.privacy.outbox.list(None).unwrap();
    assert_eq!(queued.len(), 1, "the recipient's notice is queued: {queued:?}");
}

/// A store that fails to forget for its first `failures` calls, then forgets.
#[derive(Debug)]
struct Flaky {
    failures: std::sync::atomic::AtomicUsize,
    calls: std::sync::atomic::AtomicUsize,
}

impl Flaky {
    fn failing(failures: usize) -> Arc<Self> {
        Arc::new(Self { failures: failures.into(), calls: 0.into() })
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl ErasureHook for Flaky {
    fn name(&self) -> &str {
        "flaky_store"
    }

    fn forget(&self, _subject: &Pseudonym) -> Result<bool, String> {
        use std::sync::atomic::Ordering::SeqCst;
        self.calls.fetch_add(1, SeqCst);
        match self.failures.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)) {
            Ok(_) => Err("disk full".into()),
            Err(_) => Ok(true),
        }
    }
}

/// A service that notifies the advertising partners of erasures (their webhook is never reached
/// here: the notices stay queued), with a store registered that fails `failures` times.
async fn app_with_flaky_store(
    failures: usize,
    configure: impl FnOnce(&mut crate::helpers::PrivacySetup),
) -> (TestApp, Arc<Flaky>) {
    let app = spawn_app_configured(Default::default(), lethe::app::Part::ALL.to_vec(), |s| {
        let ads = s.controller.recipients.iter_mut().find(|r| r.id == "ad-partners").unwrap();
        ads.webhook = Some("http://127.0.0.1:9/erased".into());
        configure(s);
    })
    .await;
    let flaky = Flaky::failing(failures);
    app.privacy.register(flaky.clone());
    (app, flaky)
}

/// The certificate ids named by the queued recipient notices.
fn noticed_certificates(app: &TestApp) -> Vec<Value> {
    app.privacy.outbox.list(None).unwrap().iter().map(|m| m.body["certificate_id"].clone()).collect()
}

/// The subject's erasure requests as the DPO lists them.
async fn erasure_requests(app: &TestApp) -> Vec<Value> {
    let (status, list) = app.get("/v1/requests?status=all&kind=erasure", Some(&app.token(Role::Dpo, None))).await;
    assert_eq!(status, 200, "{list}");
    list["requests"].as_array().unwrap().clone()
}

/// R-ERASE-3, R-ERASE-8, Art. 19: the background retry makes the failed store forget, completes
/// the request and issues the certificate under the id the already-queued notice carries, listing
/// every store and the recipient notified; meanwhile the DPO sees what the erasure waits for.
#[actix_web::test]
async fn r_erase_3_the_background_retry_completes_a_pending_erasure_under_the_notified_certificate_id() {
    let (app, flaky) = app_with_flaky_store(1, |_| {}).await;
    seed(&app, "retried-later", "canaryrl").await;
    let (status, body) = erase(&app, "retried-later").await;
    assert_eq!((status, body["code"].as_str()), (503, Some("erasure_incomplete")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("flaky_store"), "{body}");
    let noticed = noticed_certificates(&app);
    assert_eq!(noticed.len(), 1, "the recipient's notice is queued at the first attempt");

    let requests = erasure_requests(&app).await;
    assert_eq!(requests.len(), 1);
    let pending = &requests[0]["erasure_pending"];
    assert_eq!(requests[0]["status"], "in_progress");
    assert_eq!(pending["stores_to_forget"], json!(["flaky_store"]), "{}", requests[0]);
    assert_eq!(pending["certificate_id"], noticed[0]);
    assert_eq!(pending["recipients_notified"], json!(["ad-partners"]));
    assert!(app.metrics().await.contains("lethe_erasures_pending 1\n"));

    let later = lethe_domain::UtcMicros(lethe_domain::UtcMicros::now().0 + 3_600_000_000);
    let report = lethe_privacy::erasure::retry_pending(&app.privacy, later).unwrap();
    assert_eq!((report.retried, report.pending, report.completed.len()), (1, 0, 1), "{report:?}");
    assert_eq!(flaky.calls(), 2);
    let certificate = &report.completed[0];
    assert_eq!(json!(certificate.certificate_id), noticed[0], "the certificate carries the notice's id");
    assert_eq!(certificate.recipients_notified, ["ad-partners"]);
    assert!(certificate.stores_touched.iter().any(|s| s == "flaky_store: removed"), "{certificate:?}");
    assert!(certificate.stores_touched.iter().any(|s| s.starts_with("outbox: 1 recipient notice")));
    assert!(lethe_privacy::erasure::verify_certificate(&app.privacy, certificate));
    assert_eq!(noticed_certificates(&app), noticed, "no notice is queued twice");

    let requests = erasure_requests(&app).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["status"], "completed");
    assert!(requests[0].get("erasure_pending").is_none(), "{}", requests[0]);
    assert!(app.metrics().await.contains("lethe_erasures_pending 0\n"));
    // The DPO's export holds the certificate once.
    let text = app
        .client
        .get(format!("{}/v1/audit/export", app.address))
        .bearer_auth(app.token(Role::Dpo, None))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let certificates: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["record"] == "erasure_certificate")
        .collect();
    assert_eq!(certificates.len(), 1);
    assert_eq!(certificates[0]["id"], noticed[0]);
}

/// R-ERASE-3: asking again while an erasure is pending resumes it (the failed store is called at
/// once) instead of opening a second request; it answers `erasure_incomplete` while the store
/// fails, then the certificate, whose id is the one the queued notice carries.
#[actix_web::test]
async fn r_erase_3_a_repeated_request_resumes_the_pending_erasure() {
    let (app, flaky) = app_with_flaky_store(2, |_| {}).await;
    seed(&app, "asks-twice", "canaryat").await;
    let (status, body) = erase(&app, "asks-twice").await;
    assert_eq!((status, body["code"].as_str()), (503, Some("erasure_incomplete")), "{body}");
    let request_id = erasure_requests(&app).await[0]["id"].clone();
    let noticed = noticed_certificates(&app);

    let (status, body) = erase(&app, "asks-twice").await;
    assert_eq!((status, body["code"].as_str()), (503, Some("erasure_incomplete")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("flaky_store"), "{body}");
    assert_eq!(flaky.calls(), 2, "the repeated request called the failed store at once");
    let requests = erasure_requests(&app).await;
    assert_eq!(requests.len(), 1, "no second request: {requests:?}");
    assert_eq!(requests[0]["erasure_pending"]["attempts"], 2);

    let (status, certificate) = erase(&app, "asks-twice").await;
    assert_eq!(status, 200, "{certificate}");
    assert_eq!(flaky.calls(), 3);
    assert_eq!(certificate["certificate_id"], noticed[0]);
    assert_eq!(certificate["request_id"], request_id);
    assert_eq!(certificate["recipients_notified"], json!(["ad-partners"]));
    assert_eq!(noticed_certificates(&app), noticed, "no notice is queued twice");
    let requests = erasure_requests(&app).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["status"], "completed");
    // Nothing is left for the background work.
    let report = lethe_privacy::erasure::retry_pending(&app.privacy, lethe_domain::UtcMicros(i64::MAX)).unwrap();
    assert_eq!((report.retried, report.pending), (0, 0));
}

/// R-ERASE-3, R-DSR-1: the DPO cannot complete or deny an erasure the log has done while a store has
/// not (409 `erasure_pending`); other steps (an extension) stay open; once `lethe serve`'s
/// background work has made the store forget, the request is complete and the refusal is lifted
/// (a second completion meets the lifecycle's own refusal).
#[actix_web::test]
async fn r_erase_3_the_dpo_cannot_complete_a_pending_erasure() {
    let (app, flaky) = app_with_flaky_store(1, |s| {
        s.options.erasure_retry_first = Duration::from_millis(200);
    })
    .await;
    seed(&app, "dpo-waits", "canarydw2").await;
    assert_eq!(erase(&app, "dpo-waits").await.1["code"], "erasure_incomplete");
    let id = erasure_requests(&app).await[0]["id"].as_str().unwrap().to_owned();
    let dpo = app.token(Role::Dpo, None);
    let act = |body: Value| {
        let (app, dpo, id) = (&app, dpo.clone(), id.clone());
        async move { app.post(&format!("/v1/requests/{id}/actions"), Some(&dpo), &body).await }
    };
    let (status, body) = act(json!({"action": "complete"})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("erasure_pending")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("flaky_store"), "{body}");
    let (status, body) = act(json!({"action": "deny", "reason": "manifestly_unfounded"})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("erasure_pending")), "{body}");
    let (status, body) = act(json!({"action": "extend", "reason": "complexity"})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("extended")), "{body}");
    assert_eq!(body["erasure_pending"]["stores_to_forget"], json!(["flaky_store"]), "{body}");

    let _bg = lethe_privacy::schedule::start(Arc::clone(&app.privacy), Duration::from_millis(50)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let requests = erasure_requests(&app).await;
        if requests[0]["status"] == "completed" {
            assert!(requests[0].get("erasure_pending").is_none(), "{}", requests[0]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the background work did not complete the erasure");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(flaky.calls(), 2);
    let (status, body) = act(json!({"action": "complete"})).await;
    assert_eq!(status, 409, "{body}");
    assert_ne!(body["code"], "erasure_pending", "the erasure is no longer pending: {body}");
    // A request the DPO logged by hand, with no erasure pending, completes as before.
    let (status, logged) = app
        .post(
            "/v1/requests",
            Some(&dpo),
            &json!({"kind": "erasure", "law": "gdpr", "channel": "email", "subject": "dpo-waits"}),
        )
        .await;
    assert_eq!(status, 201, "{logged}");
    let logged_id = logged["id"].as_str().unwrap();
    for action in ["verify", "start", "complete"] {
        let (status, body) =
            app.post(&format!("/v1/requests/{logged_id}/actions"), Some(&dpo), &json!({"action": action})).await;
        assert_eq!(status, 200, "{action}: {body}");
    }
}

/// A store with a defect: it panics when told of a withdrawal.
#[derive(Debug)]
struct PanicsOnWithdrawal;

impl ErasureHook for PanicsOnWithdrawal {
    fn name(&self) -> &str {
        "panicking_store"
    }

    fn forget(&self, _subject: &Pseudonym) -> Result<bool, String> {
        Ok(true)
    }

    fn withdrawn(&self, _subject: &Pseudonym, _purposes: &[lethe_domain::Purpose]) -> Result<(), String> {
        panic!("a defect in the store");
    }
}

/// A store that panics while it takes a withdrawal (a defect) has failed to take it: the subject is
/// told so with the typed 503 of a store that returns an error, naming the store, not a dropped
/// connection; the service keeps answering, and the withdrawal itself is recorded (R-CONSENT-2).
#[actix_web::test]
async fn a_store_that_panics_on_a_withdrawal_gets_a_typed_refusal() {
    let app = spawn_app().await;
    seed(&app, "withdraws-into-a-defect", "canarywd").await;
    app.privacy.register(Arc::new(PanicsOnWithdrawal));
    let token = app.token(Role::Subject, Some("withdraws-into-a-defect"));
    let (status, body) = app.post("/v1/me/withdraw", Some(&token), &json!({"purposes": ["personalization"]})).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("withdrawal_incomplete")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("panicking_store"), "{body}");
    let (status, consent) = app.get("/v1/consent/withdraws-into-a-defect", Some(&token)).await;
    assert_eq!(status, 200, "the service keeps answering: {consent}");
    assert_eq!(consent["purposes"]["personalization"]["state"], "withdrawn", "{consent}");
    assert_eq!(consent["purposes"]["personalization"]["allowed"], false, "{consent}");
}
