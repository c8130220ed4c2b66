//! Azure Personalizer's Rank and Reward API over the decision engine: the key where Azure's SDKs
//! send it, the policy's ranking probabilities, Azure's error shape and limits, and deferred
//! activation.

use lethe_auth::Role;
use lethe_collect::ratelimit::{Limits, Rate};
use lethe_domain::SubjectId;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

const RANK: &str = "/personalizer/v1.0/rank";

/// A visitor who consents to personalization and browses outdoor gear.
async fn outdoor_fan(app: &TestApp, id: &str) {
    let (status, body) = app.consent(id, &["analytics", "personalization"], &["sale_share"]).await;
    assert_eq!(status, 201, "{body}");
    let site = app.site();
    for i in 0..4 {
        let event = json!({"anonymousId": id, "event": "Product Viewed", "messageId": format!("{id}-outdoor-{i}"),
            "properties": {"product_id": format!("outdoor-{i}"), "category": "outdoor"}});
        let (status, body) = app.post("/v1/track", Some(&site), &event).await;
        assert_eq!(status, 200, "{body}");
    }
    app.views.catch_up().expect("views follow the log");
}

/// A POST with the token in Azure's header, `Ocp-Apim-Subscription-Key`.
async fn post_with_key(app: &TestApp, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = app.client.post(format!("{}{path}", app.address)).json(body);
    if let Some(k) = key {
        req = req.header("Ocp-Apim-Subscription-Key", k);
    }
    let r = req.send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn reward(app: &TestApp, event_id: &str, value: f64) -> (u16, Value) {
    let path = format!("/personalizer/v1.0/events/{event_id}/reward");
    app.post(&path, Some(&app.token(Role::Cms, None)), &json!({"value": value})).await
}

async fn activate(app: &TestApp, event_id: &str) -> (u16, Value) {
    app.post(&format!("/personalizer/v1.0/events/{event_id}/activate"), Some(&app.token(Role::Cms, None)), &json!({}))
        .await
}

/// Impressions and clicks counted for a variant of the `personalizer` slot, over versions and modes.
async fn counted(app: &TestApp, variant: &str) -> (u64, u64) {
    let (status, body) = app.get("/v1/decide/stats", Some(&app.token(Role::Cms, None))).await;
    assert_eq!(status, 200, "{body}");
    body["stats"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["slot"] == "personalizer" && s["variant"] == variant)
        .fold((0, 0), |(i, c), s| (i + s["impressions"].as_u64().unwrap(), c + s["clicks"].as_u64().unwrap()))
}

/// Asserts Azure's error shape: `{"error": {"code", "message", "innerError": {"code"}}}` and nothing else.
#[track_caller]
fn assert_azure_error(got: (u16, Value), status: u16, code: &str, inner: &str) {
    let (s, body) = got;
    assert_eq!(
        (s, &body["error"]["code"], &body["error"]["innerError"]["code"]),
        (status, &json!(code), &json!(inner)),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(body["error"].as_object().unwrap().len(), 3, "{body}");
}

#[actix_web::test]
async fn rank_and_reward_are_served_by_the_same_engine() {
    let app = spawn_app().await;
    outdoor_fan(&app, "pam").await;
    let cms = app.token(Role::Cms, None);
    let body = json!({
        "contextFeatures": [{"anonymousId": "pam"}, {"device": "mobile"}],
        "actions": [
            {"id": "generic", "features": [{"category": "misc"}]},
            {"id": "tents", "features": [{"category": "outdoor"}]},
            {"id": "shoes", "features": [{"category": "running"}]}
        ],
        "excludedActions": ["shoes"],
        "eventId": "evt-1",
        "deferActivation": false
    });
    let (status, ranked) = app.post(RANK, Some(&cms), &body).await;
    assert_eq!(status, 201, "{ranked}");
    assert_eq!(ranked["eventId"], "evt-1");
    let ranking = ranked["ranking"].as_array().unwrap();
    assert_eq!(ranking.len(), 3, "{ranked}");
    assert_eq!(ranking[2], json!({"id": "shoes", "probability": 0.0}));
    let first = ranking[0]["id"].as_str().unwrap();
    assert_eq!(ranked["rewardActionId"], first);
    assert_eq!(ranked["lethe"]["mode"], "personalized", "{ranked}");
    assert!(ranked["lethe"]["decisionId"].is_string());
    assert_eq!(counted(&app, first).await, (1, 0), "the impression is recorded at rank time");
    assert_eq!(reward(&app, "evt-1", 1.0).await.0, 204);
    assert_eq!(counted(&app, first).await, (1, 1), "a reward above 0 is a click");
    // Without an eventId, the service makes one, and it takes rewards.
    let (status, ranked) = app.post(RANK, Some(&cms), &json!({"actions": [{"id": "generic"}]})).await;
    assert_eq!(status, 201, "{ranked}");
    let generated = ranked["eventId"].as_str().unwrap();
    assert_eq!(reward(&app, generated, 0.0).await.0, 204);
    // A reward is learned as sent, in [-1, 1]; outside it is refused, not clamped.
    assert_azure_error(reward(&app, generated, 1.5).await, 400, "BadRequest", "invalid_value");
    let mut second = body.clone();
    second["eventId"] = json!("evt-2");
    let (status, ranked) = app.post(RANK, Some(&cms), &second).await;
    assert_eq!(status, 201, "{ranked}");
    assert_eq!(reward(&app, "evt-2", 0.3).await.0, 204);
    let (status, again) = app
        .post("/v1/outcomes", Some(&cms), &json!({"decisionId": ranked["lethe"]["decisionId"], "type": "click"}))
        .await;
    assert_eq!((status, &again["learned"]), (202, &Value::Null), "the reward of 0.3 was what it learned: {again}");
}

#[actix_web::test]
async fn azures_subscription_key_header_carries_a_lethe_token() {
    let app = spawn_app().await;
    let body = json!({"actions": [{"id": "a"}, {"id": "b"}], "eventId": "keyed"});
    let (status, ranked) = post_with_key(&app, RANK, Some(&app.token(Role::Cms, None)), &body).await;
    assert_eq!(status, 201, "{ranked}");
    let admin = app.token(Role::Admin, None);
    let (status, body) =
        post_with_key(&app, "/personalizer/v1.0/events/keyed/reward", Some(&admin), &json!({"value": 1.0})).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(post_with_key(&app, "/personalizer/v1.0/events/keyed/activate", Some(&admin), &json!({})).await.0, 204);
    // Only the cms and admin roles, as with a bearer token.
    let site = post_with_key(&app, RANK, Some(&app.site()), &json!({"actions": [{"id": "a"}]})).await;
    assert_azure_error(site, 403, "Forbidden", "forbidden");
    let forged = post_with_key(&app, RANK, Some("not-a-token"), &json!({"actions": [{"id": "a"}]})).await;
    assert_eq!(forged.0, 401, "{}", forged.1);
    assert_eq!(forged.1["error"]["code"], "Unauthorized");
    let none = post_with_key(&app, RANK, None, &json!({"actions": [{"id": "a"}]})).await;
    assert_azure_error(none, 401, "Unauthorized", "missing_credentials");
}

#[actix_web::test]
async fn ranking_probabilities_are_the_policys_and_sum_to_one() {
    let app = spawn_app().await;
    outdoor_fan(&app, "rosa").await;
    let cms = app.token(Role::Cms, None);
    let actions = json!([
        {"id": "plain", "features": [{"category": "misc"}]},
        {"id": "tents", "features": [{"category": "outdoor"}]},
        {"id": "pans", "features": [{"category": "kitchen"}]},
        {"id": "boots", "features": [{"category": "outdoor"}]}
    ]);
    let body = json!({"contextFeatures": [{"anonymousId": "rosa"}], "actions": actions,
        "excludedActions": ["boots", "boots", "not-sent"]});
    let (status, ranked) = app.post(RANK, Some(&cms), &body).await;
    assert_eq!(status, 201, "{ranked}");
    assert_eq!(ranked["lethe"]["mode"], "personalized", "{ranked}");
    let ranking = ranked["ranking"].as_array().unwrap();
    let ids: Vec<&str> = ranking.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4, "each sent action once; an excluded id never sent is not listed: {ranked}");
    assert_eq!(ranking[3], json!({"id": "boots", "probability": 0.0}));
    let p: Vec<f64> = ranking.iter().map(|r| r["probability"].as_f64().unwrap()).collect();
    // The slot explores (ε = 0.2): every ranked action had a chance of being chosen first.
    assert!(p[..3].iter().all(|p| *p > 0.0 && *p < 1.0), "{ranked}");
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "the probabilities sum to 1: {ranked}");

    // No subject: the baseline, chosen for certain.
    let (status, ranked) = app.post(RANK, Some(&cms), &json!({"actions": actions})).await;
    assert_eq!(status, 201, "{ranked}");
    assert_eq!(ranked["lethe"]["mode"], "non_personalized", "{ranked}");
    assert_eq!(ranked["rewardActionId"], "plain");
    let p: Vec<f64> =
        ranked["ranking"].as_array().unwrap().iter().map(|r| r["probability"].as_f64().unwrap()).collect();
    assert_eq!(p, [1.0, 0.0, 0.0, 0.0], "{ranked}");
}

#[actix_web::test]
async fn a_deferred_event_learns_its_reward_only_once_activated() {
    let app = spawn_app().await;
    let cms = app.token(Role::Cms, None);
    let body = json!({"actions": [{"id": "deferred-first"}, {"id": "deferred-second"}], "eventId": "later",
        "deferActivation": true});
    let (status, ranked) = app.post(RANK, Some(&cms), &body).await;
    assert_eq!(status, 201, "{ranked}");
    assert_eq!(ranked["rewardActionId"], "deferred-first");
    assert_eq!(counted(&app, "deferred-first").await, (0, 0), "no impression while deferred");
    assert_eq!(reward(&app, "later", 1.0).await.0, 204);
    assert_eq!(counted(&app, "deferred-first").await, (0, 0), "a reward before activation is not recorded");
    assert_eq!(activate(&app, "later").await.0, 204);
    assert_eq!(
        counted(&app, "deferred-first").await,
        (1, 1),
        "activation records the impression, then the reward held"
    );
    assert_eq!(activate(&app, "later").await.0, 204);
    assert_eq!(counted(&app, "deferred-first").await, (1, 1), "once");

    // Activated without a reward: an impression only.
    let body = json!({"actions": [{"id": "shown-first"}, {"id": "shown-second"}], "eventId": "shown",
        "deferActivation": true});
    assert_eq!(app.post(RANK, Some(&cms), &body).await.0, 201);
    assert_eq!(activate(&app, "shown").await.0, 204);
    assert_eq!(counted(&app, "shown-first").await, (1, 0));
    assert_eq!(reward(&app, "shown", 1.0).await.0, 204);
    assert_eq!(counted(&app, "shown-first").await, (1, 1), "once active, a reward is recorded at once");
}

#[actix_web::test]
async fn requests_are_checked_as_azure_checks_them() {
    let app = spawn_app().await;
    let cms = app.token(Role::Cms, None);
    let actions = |n: usize| (0..n).map(|i| json!({"id": format!("action-{i}")})).collect::<Vec<_>>();

    // An eventId is at most 256 characters (not bytes), and a longer one is refused, not replaced.
    let long = "é".repeat(256);
    let (status, ranked) = app.post(RANK, Some(&cms), &json!({"actions": actions(2), "eventId": long})).await;
    assert_eq!((status, ranked["eventId"].as_str()), (201, Some(long.as_str())), "{ranked}");
    assert_eq!(reward(&app, &long, 1.0).await.0, 204);
    let too_long = "e".repeat(257);
    let refused = app.post(RANK, Some(&cms), &json!({"actions": actions(2), "eventId": too_long})).await;
    assert_azure_error(refused, 400, "BadRequest", "invalid_event_id");
    let refused = app.post(RANK, Some(&cms), &json!({"actions": actions(2), "eventId": "a\u{0}b"})).await;
    assert_azure_error(refused, 400, "BadRequest", "invalid_event_id");
    let refused = app.post(RANK, Some(&cms), &json!({"actions": [{"id": "\u{0}"}, {"id": "b"}]})).await;
    assert_azure_error(refused, 400, "BadRequest", "invalid_candidates");

    // At most 50 actions, every one ranked.
    let (status, ranked) = app.post(RANK, Some(&cms), &json!({"actions": actions(50)})).await;
    assert_eq!(status, 201, "{ranked}");
    assert_eq!(ranked["ranking"].as_array().unwrap().len(), 50);
    let refused = app.post(RANK, Some(&cms), &json!({"actions": actions(51)})).await;
    assert_azure_error(refused, 400, "BadRequest", "invalid_actions");
    let refused = app.post(RANK, Some(&cms), &json!({"actions": []})).await;
    assert_azure_error(refused, 400, "BadRequest", "invalid_actions");
    // Distinct ids, even among the excluded ones.
    let twice = json!({"actions": [{"id": "a"}, {"id": "b"}, {"id": "b"}], "excludedActions": ["b"]});
    assert_azure_error(app.post(RANK, Some(&cms), &twice).await, 400, "BadRequest", "invalid_actions");

    // A rank body may carry 256 KiB of features.
    let features = json!([{"description": "x".repeat(150 * 1024)}]);
    let big = json!({"actions": [{"id": "a", "features": features}, {"id": "b"}]});
    let (status, body) = app.post(RANK, Some(&cms), &big).await;
    assert_eq!(status, 201, "{body}");
    let features = json!([{"description": "x".repeat(300 * 1024)}]);
    let too_big = json!({"actions": [{"id": "a", "features": features}, {"id": "b"}]});
    assert_azure_error(app.post(RANK, Some(&cms), &too_big).await, 413, "PayloadTooLarge", "payload_too_large");
}

#[actix_web::test]
async fn errors_come_in_azures_shape() {
    let app = spawn_app().await;
    let cms = app.token(Role::Cms, None);
    let r = app
        .client
        .post(format!("{}{RANK}", app.address))
        .bearer_auth(&cms)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let got = (r.status().as_u16(), r.json::<Value>().await.unwrap());
    assert_azure_error(got, 400, "BadRequest", "invalid_json");
    let unknown_slot = app.post(&format!("{RANK}?slot=nowhere"), Some(&cms), &json!({"actions": [{"id": "a"}]})).await;
    assert_azure_error(unknown_slot, 404, "ResourceNotFound", "unknown_slot");
    let bad_query = app.post(&format!("{RANK}?lot=x"), Some(&cms), &json!({"actions": [{"id": "a"}]})).await;
    assert_azure_error(bad_query, 400, "BadRequest", "invalid_query");
    assert_azure_error(reward(&app, "nope", 1.0).await, 404, "ResourceNotFound", "unknown_event");
    assert_azure_error(activate(&app, "nope").await, 404, "ResourceNotFound", "unknown_event");
    assert_eq!(app.post(RANK, Some(&cms), &json!({"actions": [{"id": "a"}], "eventId": "e"})).await.0, 201);
    let again = app.post(RANK, Some(&cms), &json!({"actions": [{"id": "b"}], "eventId": "e"})).await;
    assert_azure_error(again, 409, "BadRequest", "event_id_in_use");
    let bad_value = app.post("/personalizer/v1.0/events/e/reward", Some(&cms), &json!({"value": "high"})).await;
    assert_azure_error(bad_value, 400, "BadRequest", "invalid_json");
    let bad_action = app.post("/personalizer/v1.0/events/e/promote", Some(&cms), &json!({})).await;
    assert_azure_error(bad_action, 404, "ResourceNotFound", "not_found");
    let too_big = json!({"value": 1.0, "padding": "x".repeat(70 * 1024)});
    let too_big = app.post("/personalizer/v1.0/events/e/reward", Some(&cms), &too_big).await;
    assert_azure_error(too_big, 413, "PayloadTooLarge", "payload_too_large");

    let app = spawn_app_with(Limits {
        per_address: Rate { per_second: 1000.0, burst: 1000.0 },
        per_key: Rate { per_second: 0.001, burst: 1.0 },
    })
    .await;
    let cms = app.token(Role::Cms, None);
    assert_eq!(app.post(RANK, Some(&cms), &json!({"actions": [{"id": "a"}]})).await.0, 201);
    let limited = app.post(RANK, Some(&cms), &json!({"actions": [{"id": "a"}]})).await;
    assert_azure_error(limited, 429, "TooManyRequests", "rate_limited");
}

#[actix_web::test]
async fn the_api_description_names_azures_key_and_error_shape() {
    let app = spawn_app().await;
    let (status, doc) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    let key = &doc["components"]["securitySchemes"]["subscription_key"];
    assert_eq!(
        (key["type"].as_str(), key["in"].as_str(), key["name"].as_str()),
        (Some("apiKey"), Some("header"), Some("Ocp-Apim-Subscription-Key")),
        "{key}"
    );
    let rank = &doc["paths"][RANK]["post"];
    assert!(rank["security"].as_array().unwrap().iter().any(|s| s.get("subscription_key").is_some()), "{rank}");
    let error = &rank["responses"]["400"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(error, "#/components/schemas/PersonalizerErrorResponse");
    let schema = &doc["components"]["schemas"]["PersonalizerErrorResponse"];
    assert!(schema["properties"]["error"].is_object(), "{schema}");
    assert!(doc["components"]["schemas"]["PersonalizerErrorDetail"]["properties"]["innerError"].is_object());
}

#[actix_web::test]
async fn a_rank_without_a_subject_is_personalized_for_no_one() {
    let app = spawn_app().await;
    // Whatever id anyone consents for, a subject-less Rank call is not answered under its consent.
    for id in ["personalizer-anonymous", "anonymous"] {
        outdoor_fan(&app, id).await;
    }
    let cms = app.token(Role::Cms, None);
    let body = json!({"contextFeatures": [{"device": "mobile"}],
        "actions": [{"id": "a", "features": [{"category": "kitchen"}]}, {"id": "b", "features": [{"category": "outdoor"}]}]});
    let (status, ranked) = app.post(RANK, Some(&cms), &body).await;
    assert_eq!(status, 201, "{ranked}");
    assert_eq!(
        (ranked["lethe"]["mode"].as_str(), ranked["lethe"]["reason"].as_str()),
        (Some("non_personalized"), Some("no_subject"))
    );
    assert_eq!(ranked["rewardActionId"], "a", "the baseline: the first action");
}

#[actix_web::test]
async fn rank_events_outlive_a_restart_and_go_with_their_subjects_erasure_r_erase_1() {
    let app = spawn_app().await;
    outdoor_fan(&app, "rhea").await;
    let cms = app.token(Role::Cms, None);
    let actions = json!([{"id": "generic", "features": [{"category": "misc"}]},
        {"id": "tents", "features": [{"category": "outdoor"}]}]);
    let mut ranked = Vec::new();
    for (event_id, deferred) in [("rhea-live", false), ("rhea-deferred", true), ("rhea-activated", true)] {
        let body = json!({"contextFeatures": [{"anonymousId": "rhea"}], "actions": actions, "eventId": event_id,
            "deferActivation": deferred});
        let (status, r) = app.post(RANK, Some(&cms), &body).await;
        assert_eq!((status, &r["lethe"]["mode"]), (201, &json!("personalized")), "{r}");
        ranked.push(r["lethe"]["decisionId"].as_str().unwrap().to_owned());
    }
    assert_eq!(activate(&app, "rhea-activated").await.0, 204);
    // No one's Rank call leaves no receipt: it is not rebuilt, and is about no one to erase.
    let (status, _) = app.post(RANK, Some(&cms), &json!({"actions": actions, "eventId": "nobody"})).await;
    assert_eq!(status, 201);
    let served = app.receipts("rhea", "decision.served", 3).await;
    let named: Vec<&Value> = served.iter().map(|r| &r["properties"]["event"]).collect();
    assert_eq!(named[1], &json!({"id": "rhea-deferred", "deferred": true}), "{served:?}");
    app.receipts("rhea", "outcome.recorded", 2).await; // the two impressions

    // A restarted engine knows her events again from the receipts, active as they were.
    let reopened = app.reopened_engine();
    let events = &reopened.rank_events;
    assert_eq!(
        ["rhea-live", "rhea-deferred", "rhea-activated"].map(|e| events.decision(e).map(|d| d.to_string())),
        [0, 1, 2].map(|i| Some(ranked[i].clone()))
    );
    assert_eq!(
        ["rhea-live", "rhea-deferred", "rhea-activated"].map(|e| events.is_active(e)),
        [Some(true), Some(false), Some(true)]
    );
    assert_eq!(events.decision("nobody"), None);
    let rhea = app.store.pseudonymize(&SubjectId::parse("rhea").unwrap());
    let exported = lethe_privacy::ErasureHook::export(reopened.as_ref(), &rhea).unwrap();
    assert_eq!(exported["personalizer_events"], json!(["rhea-live", "rhea-deferred", "rhea-activated"]));

    // Her erasure takes her events (her eventIds may name her): a later reward is unknown.
    let (status, cert) = app.post("/v1/me/erasure", Some(&app.token(Role::Subject, Some("rhea"))), &json!({})).await;
    assert_eq!(status, 200, "{cert}");
    assert_eq!(app.engine.rank_events.of_subject(&rhea), Vec::<String>::new());
    assert_azure_error(reward(&app, "rhea-live", 1.0).await, 404, "ResourceNotFound", "unknown_event");
    assert!(app.engine.rank_events.decision("nobody").is_some(), "no one else's event went");
    // A Rank call naming her after her erasure is answered, but keeps nothing of her.
    let body = json!({"contextFeatures": [{"anonymousId": "rhea"}], "actions": actions, "eventId": "rhea-after"});
    let (status, r) = app.post(RANK, Some(&cms), &body).await;
    assert_eq!((status, &r["lethe"]["mode"]), (201, &json!("non_personalized")), "{r}");
    assert_eq!(
        (app.engine.rank_events.decision("rhea-after"), app.engine.rank_events.of_subject(&rhea).len()),
        (None, 0)
    );
    // An event goes with its decision, when the attribution window ends.
    let now = lethe_domain::UtcMicros::now();
    app.engine.expire(now);
    assert!(app.engine.rank_events.decision("nobody").is_some(), "still in its window");
    app.engine.expire(lethe_domain::UtcMicros(now.0 + 366 * 86_400_000_000));
    assert!(app.engine.rank_events.is_empty(), "gone with its decision");
}
