//! Collection through real HTTP: consent gating (invariant 3, R-CONSENT-2/3, R-GPC-1), the Segment
//! shapes, minimization (invariant 4), deduplication and data quality.

use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[actix_web::test]
async fn events_before_consent_are_not_stored_and_say_why() {
    let app = spawn_app().await;
    let (status, body) = app
        .post("/v1/track", Some(&app.site()), &json!({"anonymousId": "v1", "event": "Clicked", "messageId": "m1"}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "no_consent");
    assert_eq!(app.stored("v1"), 0);
}

#[actix_web::test]
async fn grant_then_withdraw_gates_storage_at_once_r_consent_2() {
    let app = spawn_app().await;
    let site = app.site();
    let (status, receipt) = app.consent("v2", &["analytics"], &["personalization"]).await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(receipt["notice"]["content_hash"], app.notice()["contentHash"]);
    assert!(receipt["receipt_id"].is_string() && receipt["subject"].as_str().unwrap().len() == 64);
    let (status, body) = app
        .post(
            "/v1/page",
            Some(&site),
            &json!({"anonymousId": "v2", "messageId": "p1",
            "context": {"page": {"url": "https://shop.example/tents?email=a@b.c"}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"], "stored");
    // Personalization was denied: an event of that purpose is refused.
    let (status, body) = app
        .post("/v1/track", Some(&site), &json!({"anonymousId": "v2", "event": "Product Liked", "messageId": "l1"}))
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("consent_denied")));
    // Withdrawal takes one call, as granting did; the next event is refused.
    let (status, _) = app.consent("v2", &[], &["analytics"]).await;
    assert_eq!(status, 201);
    let (status, body) = app
        .post(
            "/v1/page",
            Some(&site),
            &json!({"anonymousId": "v2", "messageId": "p2", "context": {"page": {"url": "https://shop.example/"}}}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("consent_withdrawn")));
    // Two consent records and one page view are in the log; the page view lost its query string.
    let events =
        app.store.read_stream(&app.store.pseudonymize(&lethe_domain::SubjectId::parse("v2").unwrap())).unwrap();
    assert_eq!(events.len(), 3);
    let lethe_domain::EventBody::Plain(page) = &events[1].body else { panic!("readable") };
    let page: serde_json::Value = serde_json::from_slice(page).unwrap();
    assert_eq!((page["host"].as_str(), page["path"].as_str()), (Some("shop.example"), Some("/tents")));
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&page).unwrap()).contains("a@b.c"));
}

#[actix_web::test]
async fn consent_state_is_a_projection_and_answers_at_an_instant() {
    let app = spawn_app().await;
    app.consent("v3", &["analytics", "personalization"], &[]).await;
    let before = time::OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(5));
    app.consent("v3", &[], &["analytics"]).await;
    let admin = app.token(lethe_auth::Role::Admin, None);
    let (status, now) = app.get("/v1/consent/v3", Some(&admin)).await;
    assert_eq!(status, 200, "{now}");
    assert_eq!(now["purposes"]["analytics"]["state"], "withdrawn");
    assert_eq!(now["purposes"]["personalization"]["state"], "granted");
    assert_eq!(now["purposes"]["necessary"]["state"], "not_required");
    assert_eq!(now["reprompt"], false);
    let at = before.format(&time::format_description::well_known::Rfc3339).unwrap();
    let (_, then) = app.get(&format!("/v1/consent/v3?at={at}"), Some(&admin)).await;
    assert_eq!(then["purposes"]["analytics"]["state"], "granted");
}

#[actix_web::test]
async fn an_outdated_notice_or_a_purpose_it_did_not_show_is_refused_r_consent_3() {
    let app = spawn_app().await;
    let mut notice = app.notice();
    notice["contentHash"] = json!("00".repeat(32));
    let body = json!({"anonymousId": "v4", "notice": notice, "granted": ["analytics"], "method": "banner",
        "jurisdiction": "EU", "locale": "en"});
    let (status, err) = app.post("/v1/consent", Some(&app.site()), &body).await;
    assert_eq!((status, err["code"].as_str()), (409, Some("notice_outdated")));
    let body = json!({"anonymousId": "v4", "notice": app.notice(), "granted": ["necessary", "telepathy"],
        "method": "banner", "jurisdiction": "EU", "locale": "en"});
    let (status, err) = app.post("/v1/consent", Some(&app.site()), &body).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(app.stored("v4"), 0);
}

/// R-CONSENT-1: the public write key records a visitor's banner (or GPC) choice for its device's
/// anonymous id; it cannot record a choice for an account or pass one off as an import, which would
/// let anyone holding the page's key grant or withdraw for someone else.
#[actix_web::test]
async fn the_site_key_records_banner_choices_for_anonymous_ids_only() {
    let app = spawn_app().await;
    let choice = |id: (&str, &str), method: &str| {
        let mut body = json!({"notice": app.notice(), "granted": ["analytics", "personalization", "sale_share"],
            "method": method, "jurisdiction": "EU", "locale": "en"});
        body[id.0] = json!(id.1);
        body
    };
    for (body, code) in [
        (choice(("userId", "victim"), "banner"), "user_id_not_allowed"),
        (choice(("anonymousId", "v9"), "import"), "method_not_allowed"),
        (choice(("anonymousId", "v9"), "api"), "method_not_allowed"),
    ] {
        let (status, err) = app.post("/v1/consent", Some(&app.site()), &body).await;
        assert_eq!((status, err["code"].as_str()), (403, Some(code)), "{body} → {err}");
    }
    assert_eq!((app.stored("victim"), app.stored("v9")), (0, 0), "nothing was recorded");
    let (status, _) = app.post("/v1/consent", Some(&app.site()), &choice(("anonymousId", "v9"), "banner")).await;
    assert_eq!(status, 201);
    // An admin may import a choice for an account.
    let admin = app.token(lethe_auth::Role::Admin, None);
    let (status, body) = app.post("/v1/consent", Some(&admin), &choice(("userId", "u-9"), "import")).await;
    assert_eq!(status, 201, "{body}");
}

/// R-CONSENT-1, R-DSR-4: an `anonymousId` and a `userId` of the same text are one pseudonym, so the
/// site key sending a signed-in user's id as an `anonymousId` would record or withdraw consent in
/// her name. Once a consent record was made for her `userId` (by an admin here), the site key is
/// refused for that id as for a `userId`, nothing is recorded, and a book rebuilt from the log
/// refuses it too; other anonymous ids are unaffected.
#[actix_web::test]
async fn r_consent_1_the_site_key_cannot_record_consent_for_a_user_id_sent_as_an_anonymous_id() {
    let app = spawn_app().await;
    let admin = app.token(lethe_auth::Role::Admin, None);
    let imported = json!({"userId": "u-77", "notice": app.notice(), "granted": ["analytics"], "method": "import",
        "jurisdiction": "EU", "locale": "en"});
    let (status, body) = app.post("/v1/consent", Some(&admin), &imported).await;
    assert_eq!(status, 201, "{body}");
    let (_, before) = app.get("/v1/consent/u-77", Some(&admin)).await;
    let withdraw = json!({"anonymousId": "u-77", "notice": app.notice(), "denied": ["analytics"], "method": "banner",
        "jurisdiction": "EU", "locale": "en"});
    let (status, err) = app.post("/v1/consent", Some(&app.site()), &withdraw).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("user_id_not_allowed")), "{err}");
    let (_, after) = app.get("/v1/consent/u-77", Some(&admin)).await;
    assert_eq!((after["records"].as_u64(), &after["purposes"]), (Some(1), &before["purposes"]), "{after}");
    assert_eq!(app.stored("u-77"), 1, "nothing was recorded");
    // Nor can it write into her stream as an anonymous visitor, or record her GPC opt-out so
    // (R-DSR-4); under her userId, as Segment's browser library sends it, it may.
    let (status, err) = app.track_with_gpc("u-77", "Clicked", "as-anonymous").await;
    assert_eq!((status, err["code"].as_str(), err.get("gpc")), (403, Some("user_id_not_allowed"), None), "{err}");
    let batch = json!({"batch": [{"type": "track", "anonymousId": "u-77", "event": "Clicked", "messageId": "b-1"}]});
    let (status, body) = app.post("/v1/batch", Some(&app.site()), &batch).await;
    assert_eq!((status, &body["results"][0]["reason"]), (200, &json!("user_id_not_allowed")), "{body}");
    let (_, after) = app.get("/v1/consent/u-77", Some(&admin)).await;
    assert_eq!((after["records"].as_u64(), after["gpc"].as_bool()), (Some(1), Some(false)), "{after}");
    assert_eq!(app.stored("u-77"), 1, "nothing was stored");
    let as_user = json!({"userId": "u-77", "event": "Clicked", "messageId": "as-user"});
    let (status, body) = app.post("/v1/track", Some(&app.site()), &as_user).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.stored("u-77"), 2);
    // Another visitor's banner choice is recorded as before.
    let (status, body) = app.consent("v-77", &["analytics"], &[]).await;
    assert_eq!(status, 201, "{body}");
    // Rebuilt from the log (a restart), the book knows the account.
    let rebuilt = lethe_collect::ConsentBook::replay(app.store.as_ref()).unwrap();
    let pseudonym = |id: &str| app.store.pseudonymize(&lethe_domain::SubjectId::parse(id).unwrap());
    assert!(rebuilt.is_user(&pseudonym("u-77")));
    assert!(!rebuilt.is_user(&pseudonym("v-77")));
}

#[actix_web::test]
async fn sec_gpc_opts_out_of_sale_share_is_recorded_and_said_r_gpc_1() {
    let app = spawn_app().await;
    app.consent("v5", &["analytics"], &[]).await;
    let (status, body) = app.track_with_gpc("v5", "Clicked", "g1").await;
    assert_eq!((status, &body["gpc"]), (200, &json!("honored")), "{body}");
    let admin = app.token(lethe_auth::Role::Admin, None);
    let (_, state) = app.get("/v1/consent/v5", Some(&admin)).await;
    assert_eq!(state["gpc"], true);
    assert_eq!(state["purposes"]["sale_share"]["state"], "gpc_opt_out");
    assert_eq!(state["purposes"]["analytics"]["state"], "granted");
    // consent, GPC record, the click
    assert_eq!(app.stored("v5"), 3);
    // A banner grants sale/share again; the next request's signal opts out again, once.
    let (status, _) = app.consent("v5", &["analytics", "sale_share"], &[]).await;
    assert_eq!(status, 201);
    let (_, state) = app.get("/v1/consent/v5", Some(&admin)).await;
    assert_eq!(state["purposes"]["sale_share"]["state"], "granted", "{state}");
    for id in ["g2", "g3"] {
        assert_eq!(app.track_with_gpc("v5", "Clicked", id).await.0, 200);
    }
    let (_, state) = app.get("/v1/consent/v5", Some(&admin)).await;
    assert_eq!(state["purposes"]["sale_share"]["state"], "gpc_opt_out", "{state}");
    // + the banner, one more GPC record, two clicks
    assert_eq!(app.stored("v5"), 7);
    // A grant made with the signal on (the SDK's "allow on this site") answers it: it stands.
    let body = json!({"anonymousId": "v5", "notice": app.notice(), "granted": ["sale_share"], "method": "banner",
        "jurisdiction": "US-CA", "locale": "en", "gpc": true});
    let (status, receipt) = app.post("/v1/consent", Some(&app.site()), &body).await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(app.track_with_gpc("v5", "Clicked", "g4").await.0, 200);
    let (_, state) = app.get("/v1/consent/v5", Some(&admin)).await;
    assert_eq!(state["purposes"]["sale_share"]["state"], "granted", "the override stands: {state}");
    assert_eq!(app.stored("v5"), 9, "+ the override and the click, no GPC record");
}

/// R-GPC-1: the signal is said to be honored only where it was: a message refused before its
/// subject is known (here, a bot's) records no opt-out, and its answer does not claim one; in a
/// batch, one message whose subject it stands for is enough.
#[actix_web::test]
async fn r_gpc_1_honored_is_said_only_for_a_subject_whose_opt_out_stands() {
    let app = spawn_app().await;
    let with_gpc = |path: &str, body: Value| {
        app.client.post(format!("{}{path}", app.address)).bearer_auth(app.site()).header("Sec-GPC", "1").json(&body)
    };
    let bot = json!({"anonymousId": "gpc-bot", "event": "Clicked", "messageId": "b1",
        "context": {"userAgent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}});
    let r = with_gpc("/v1/track", bot.clone()).send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "bot", "{body}");
    assert_eq!(body.get("gpc"), None, "no opt-out was recorded, none is claimed: {body}");
    let admin = app.token(lethe_auth::Role::Admin, None);
    let (_, state) = app.get("/v1/consent/gpc-bot", Some(&admin)).await;
    assert_ne!(state["gpc"], true, "{state}");
    // A batch of the bot's message and a visitor's: honored, for the visitor.
    let visitor = json!({"type": "track", "anonymousId": "gpc-visitor", "event": "Clicked", "messageId": "v1",
        "context": {"location": {"country": "us", "region": "ca"}, "locale": "en-US"}});
    let r = with_gpc("/v1/batch", json!({"batch": [bot, visitor]})).send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["gpc"], "honored", "{body}");
    let (_, state) = app.get("/v1/consent/gpc-visitor", Some(&admin)).await;
    assert_eq!(state["purposes"]["sale_share"]["state"], "gpc_opt_out", "{state}");
    // The record names where and in what language the signal came, as the message told it, and
    // says so when it did not tell (R-CONSENT-1).
    let record_of = |id: &str| {
        let p = app.store.pseudonymize(&lethe_domain::SubjectId::parse(id).unwrap());
        let history = app.state.book.history(&p);
        let r = history.records().last().unwrap();
        (r.jurisdiction.clone(), r.locale.clone(), r.gpc)
    };
    assert_eq!(record_of("gpc-visitor"), ("US-CA".to_owned(), "en-US".to_owned(), true));
    assert_eq!(app.track_with_gpc("gpc-quiet", "Clicked", "q1").await.0, 403, "no consent: nothing stored");
    assert_eq!(record_of("gpc-quiet"), ("unknown".to_owned(), "und".to_owned(), true));
}

#[actix_web::test]
async fn client_category_preferences_are_honored() {
    let app = spawn_app().await;
    app.consent("v6", &["analytics"], &[]).await;
    let (status, body) = app
        .post(
            "/v1/track",
            Some(&app.site()),
            &json!({"anonymousId": "v6", "event": "Clicked", "messageId": "c1",
            "context": {"consent": {"categoryPreferences": {"analytics": false}}}}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("client_denied")));
    assert_eq!(app.stored("v6"), 1);
}

#[actix_web::test]
async fn a_batch_answers_per_event_dedups_and_rejects_anomalies() {
    let app = spawn_app().await;
    app.consent("v7", &["analytics", "personalization"], &[]).await;
    let future = (time::OffsetDateTime::now_utc() + time::Duration::days(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let batch = json!({"batch": [
        {"type": "track", "anonymousId": "v7", "event": "Scroll Depth", "messageId": "b1", "properties": {"depth": 50}},
        {"type": "track", "anonymousId": "v7", "event": "Scroll Depth", "messageId": "b1", "properties": {"depth": 50}},
        {"type": "track", "anonymousId": "v7", "event": "Scroll Depth", "messageId": "b2", "properties": {"depth": 140}},
        {"type": "track", "anonymousId": "v7", "event": "Time Spent", "messageId": "b3", "properties": {"seconds": -4}},
        {"type": "page", "anonymousId": "v7", "messageId": "b4", "timestamp": future},
        {"type": "page", "anonymousId": "v7", "messageId": "b5", "context": {"userAgent": "Googlebot/2.1"}},
        {"type": "track", "anonymousId": "v7", "messageId": "b6"},
        {"type": "track", "anonymousId": "v7", "event": "Order Completed", "messageId": "b7", "properties": {"revenue": 40}}
    ]});
    let (status, body) = app.post("/v1/batch", Some(&app.site()), &batch).await;
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<_> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or(r["status"].as_str().unwrap()).to_owned())
        .collect();
    assert_eq!(
        statuses,
        [
            "stored",
            "duplicate",
            "implausible_value",
            "implausible_value",
            "future_timestamp",
            "bot",
            "missing_event",
            "stored"
        ]
    );
    assert_eq!(app.stored("v7"), 3, "consent + two stored events");
    assert_eq!(app.state.metrics.get("lethe_collect_events_total", "implausible_value"), 2);
}

/// R-RETAIN-1 at the door: an event already past its retention is not stored, and its refusal
/// claims nothing, so the same message sent again with a right timestamp is stored.
#[actix_web::test]
async fn an_event_past_its_retention_is_refused_and_its_corrected_resend_is_stored() {
    let app = spawn_app().await;
    app.consent("v8", &["analytics"], &[]).await;
    let old = json!({"type": "page", "anonymousId": "v8", "messageId": "late", "timestamp": "2001-01-01T00:00:00Z"});
    let fixed = json!({"type": "page", "anonymousId": "v8", "messageId": "late"});
    let (status, body) = app.post("/v1/batch", Some(&app.site()), &json!({"batch": [old]})).await;
    assert_eq!((status, body["results"][0]["reason"].as_str()), (200, Some("past_retention")), "{body}");
    let (status, body) = app.post("/v1/batch", Some(&app.site()), &json!({"batch": [fixed.clone(), fixed]})).await;
    let reasons: Vec<_> =
        body["results"].as_array().unwrap().iter().map(|r| r["reason"].as_str().or(r["status"].as_str())).collect();
    assert_eq!((status, reasons), (200, vec![Some("stored"), Some("duplicate")]), "{body}");
    assert_eq!(app.stored("v8"), 2, "consent + the corrected page view");
}

#[actix_web::test]
async fn identify_links_the_anonymous_id_as_a_pseudonym_only() {
    let app = spawn_app().await;
    app.consent("user-8", &["analytics", "personalization"], &[]).await;
    let (status, body) = app
        .post(
            "/v1/identify",
            Some(&app.site()),
            &json!({"userId": "user-8", "anonymousId": "anon-8", "messageId": "i1",
            "traits": {"plan": "gold"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let subject = app.store.pseudonymize(&lethe_domain::SubjectId::parse("user-8").unwrap());
    let events = app.store.read_stream(&subject).unwrap();
    let lethe_domain::EventBody::Plain(p) = &events.last().unwrap().body else { panic!("readable") };
    let text = String::from_utf8_lossy(p).into_owned();
    assert!(!text.contains("anon-8"), "{text}");
    let anon = app.store.pseudonymize(&lethe_domain::SubjectId::parse("anon-8").unwrap()).to_hex();
    assert!(text.contains(&anon), "{text}");
}

/// Invariant 3: a track call named like a record that needs no consent (a consent change, an
/// identity link, an erasure fence) is refused, so it cannot slip data past consent gating.
#[actix_web::test]
async fn track_calls_named_like_lethe_records_are_refused() {
    let app = spawn_app().await;
    for name in ["Consent Changed", "identify", "lethe erasure_fence"] {
        let (status, body) = app
            .post(
                "/v1/track",
                Some(&app.site()),
                &json!({"anonymousId": "sneaky", "event": name, "messageId": name, "properties": {"email": "a@b.c"}}),
            )
            .await;
        assert_ne!(status, 200, "{name}: {body}");
        assert!(["reserved_event", "unknown_event"].contains(&body["code"].as_str().unwrap_or("")), "{name}: {body}");
    }
    assert_eq!(app.stored("sneaky"), 0);
}

/// Coarse location from the edge: with the CDN's country header configured, an event that names no
/// location gets the country (and region) the edge saw; a location the message names is kept; a
/// malformed header is ignored; and without the setting, the same header is not trusted.
#[actix_web::test]
async fn the_edges_country_header_gives_events_a_coarse_location_when_configured() {
    use lethe_domain::SubjectId;

    async fn send(app: &crate::helpers::TestApp, id: &str, n: u32, country: &str, body_location: Option<&str>) {
        let mut body = json!({"anonymousId": id, "event": "Product Viewed", "messageId": format!("{id}-{n}"),
            "properties": {"product_id": "tent", "category": "outdoor"}});
        if let Some(c) = body_location {
            body["context"] = json!({"location": {"country": c}});
        }
        let r = app
            .client
            .post(format!("{}/v1/track", app.address))
            .bearer_auth(app.site())
            .header("CF-IPCountry", country)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    fn countries(app: &crate::helpers::TestApp, id: &str) -> Vec<serde_json::Value> {
        let p = app.store.pseudonymize(&SubjectId::parse(id).unwrap());
        app.store
            .read_stream(&p)
            .unwrap()
            .into_iter()
            .filter(|e| e.envelope.event_type.as_str() != "consent.changed")
            .filter_map(|e| match e.body {
                lethe_domain::EventBody::Plain(b) => serde_json::from_slice::<serde_json::Value>(&b).ok(),
                _ => None,
            })
            .map(|v| v["context"]["location"]["country"].clone())
            .collect()
    }

    let app = crate::helpers::spawn_app_configured(
        lethe_collect::ratelimit::Limits::default(),
        lethe::app::Part::ALL.to_vec(),
        |setup| setup.edge.country_header = Some("CF-IPCountry".into()),
    )
    .await;
    app.consent("edge-1", &["analytics"], &[]).await;
    send(&app, "edge-1", 1, "de", None).await;
    send(&app, "edge-1", 2, "de", Some("AT")).await;
    send(&app, "edge-1", 3, "XX", None).await;
    send(&app, "edge-1", 4, "Germany", None).await;
    assert_eq!(countries(&app, "edge-1"), [json!("DE"), json!("AT"), json!(null), json!(null)]);

    let untrusting = spawn_app().await;
    untrusting.consent("edge-2", &["analytics"], &[]).await;
    send(&untrusting, "edge-2", 1, "DE", None).await;
    assert_eq!(countries(&untrusting, "edge-2"), [json!(null)]);
}

/// A purpose listed twice with the same choice is named as such; granted and denied at once is a
/// contradiction. Neither is stored.
#[actix_web::test]
async fn a_purpose_chosen_twice_is_refused_with_the_reason() {
    let app = spawn_app().await;
    let (status, body) = app.consent("twice", &["analytics", "analytics"], &[]).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("duplicate_purpose")), "{body}");
    let (status, body) = app.consent("twice", &[], &["analytics", "analytics"]).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("duplicate_purpose")), "{body}");
    let (status, body) = app.consent("twice", &["analytics"], &["analytics"]).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("contradictory_choice")), "{body}");
    assert_eq!(app.stored("twice"), 0, "nothing stored");
}
