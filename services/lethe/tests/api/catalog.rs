//! The catalog API (`PUT /v1/items`, `DELETE /v1/items/{id}`): items reach the feature views'
//! catalog through the log, bad bodies are refused whole with typed codes, only the CMS (or an
//! admin) writes, and items nobody interacted with get related items by their text.

use lethe_auth::Role;
use lethe_decide::catalog_api::catalog_stream;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn put(app: &TestApp, token: Option<&str>, body: &Value) -> (u16, Value) {
    put_raw(app, token, serde_json::to_vec(body).unwrap()).await
}

async fn put_raw(app: &TestApp, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req =
        app.client.put(format!("{}/v1/items", app.address)).header("content-type", "application/json").body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn delete(app: &TestApp, token: Option<&str>, id: &str) -> (u16, Value) {
    let mut req = app.client.delete(format!("{}/v1/items/{id}", app.address));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `(category, text, price)` of a catalog item as the feature views hold it.
fn held(app: &TestApp, id: &str) -> Option<(Option<String>, String, Option<f64>)> {
    app.views.with(|p| {
        p.catalog().get(id).map(|i| (i.category().map(str::to_owned), i.text().to_owned(), i.feature("price")))
    })
}

fn catalog_len(app: &TestApp) -> usize {
    app.views.with(|p| p.catalog().len())
}

#[actix_web::test]
async fn put_items_reach_the_catalog_through_the_log() {
    let app = spawn_app().await;
    let cms = app.token(Role::Cms, None);
    let items = json!([
        {"id": "tent-2p", "category": "tents", "text": "Two-person tent for hiking", "features": {"price": 189.5, "weight_kg": 2.1}},
        {"id": "tent-ul", "category": "tents", "title": "Ultralight hiking tent"},
        {"item_id": "espresso", "text": "Espresso machine"},
    ]);
    let (status, body) = put(&app, Some(&cms), &items).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upserted"], 3);
    app.views.catch_up().unwrap();
    assert_eq!(held(&app, "tent-2p"), Some((Some("tents".into()), "Two-person tent for hiking".into(), Some(189.5))));
    assert_eq!(held(&app, "tent-ul"), Some((Some("tents".into()), "Ultralight hiking tent".into(), None)));
    assert_eq!(held(&app, "espresso"), Some((None, "Espresso machine".into(), None)));

    // One event per item, in the catalog's own stream, under the `necessary` purpose.
    let stream = app.store.read_stream(&catalog_stream()).unwrap();
    assert_eq!(stream.len(), 3);
    for e in &stream {
        assert_eq!(e.envelope.event_type.as_str(), "catalog.item_upserted");
        assert_eq!(e.envelope.purpose.as_str(), "necessary");
    }
    assert_eq!(body["position"], stream[2].envelope.position.0);

    // An upsert replaces the whole item.
    let (status, _) = put(&app, Some(&cms), &json!({"id": "tent-2p", "text": "Two-person tent"})).await;
    assert_eq!(status, 200);
    app.views.catch_up().unwrap();
    assert_eq!(held(&app, "tent-2p"), Some((None, "Two-person tent".into(), None)));

    // A removal.
    let (status, body) = delete(&app, Some(&cms), "espresso").await;
    assert_eq!((status, body["removed"].as_str()), (200, Some("espresso")), "{body}");
    app.views.catch_up().unwrap();
    assert_eq!(held(&app, "espresso"), None);
    let (status, body) = delete(&app, Some(&cms), "espresso").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_item")));

    // The catalog is a projection of the log: views rebuilt from it hold the same items.
    let rebuilt = lethe_personalize::Views::replay(app.store.clone(), &app.state.policies).unwrap();
    let ids = rebuilt.with(|p| {
        let mut ids: Vec<String> = p.catalog().iter().map(|i| i.id().to_owned()).collect();
        ids.sort();
        ids
    });
    assert_eq!(ids, ["tent-2p", "tent-ul"]);
    assert_eq!(rebuilt.with(|p| p.catalog().get("tent-2p").map(|i| i.text().to_owned())).unwrap(), "Two-person tent");
}

#[actix_web::test]
async fn bad_bodies_get_typed_400s_and_store_nothing() {
    let app = spawn_app().await;
    let cms = app.token(Role::Cms, None);
    let long_id = "x".repeat(257);
    let many: Vec<Value> = (0..=10_000).map(|i| json!({"id": format!("i{i}")})).collect();
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{".to_vec(), 400, "invalid_json"),
        (b"\"tent\"".to_vec(), 400, "invalid_json"),
        (b"[]".to_vec(), 400, "empty_batch"),
        (br#"{"category": "tents"}"#.to_vec(), 400, "invalid_json"),
        (br#"{"id": "a", "colour": "red"}"#.to_vec(), 400, "invalid_json"),
        (br#"{"id": "a", "features": {"price": "cheap"}}"#.to_vec(), 400, "invalid_json"),
        (br#"{"id": "a", "features": {"price": 1e999}}"#.to_vec(), 400, "invalid_json"),
        (br#"[{"id": "fine"}, {"id": ""}]"#.to_vec(), 400, "invalid_item"),
        (
            br#"[{"id": "twice", "text": "a"}, {"id": "other"}, {"id": "twice", "text": "b"}]"#.to_vec(),
            400,
            "duplicate_item",
        ),
        (serde_json::to_vec(&json!({"id": long_id})).unwrap(), 400, "invalid_item"),
        (serde_json::to_vec(&json!({"id": "a", "category": "a\nb"})).unwrap(), 400, "invalid_item"),
        (serde_json::to_vec(&json!({"id": "a", "text": "t".repeat(8193)})).unwrap(), 400, "invalid_item"),
        (serde_json::to_vec(&many).unwrap(), 400, "too_many_items"),
        (vec![b' '; 2_000_001], 413, "payload_too_large"),
    ];
    let head = app.store.head();
    for (body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let (s, b) = put_raw(&app, Some(&cms), body).await;
        assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{shown} → {b}");
    }
    let (s, b) = delete(&app, Some(&cms), &"x".repeat(257)).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_item")));
    assert_eq!(app.store.head(), head, "a refused body writes nothing");
    app.views.catch_up().unwrap();
    assert_eq!(catalog_len(&app), 0, "not even the valid items of a refused body");
    // The service keeps serving.
    assert_eq!(put(&app, Some(&cms), &json!({"id": "fine"})).await.0, 200);
}

#[actix_web::test]
async fn only_the_cms_or_an_admin_writes_the_catalog() {
    let app = spawn_app().await;
    let item = json!({"id": "tent", "text": "Tent"});
    let (s, b) = put(&app, Some(&app.site()), &item).await;
    assert_eq!(s, 403, "a site token: {b}");
    let (s, _) = put(&app, Some(&app.token(Role::Subject, Some("ann"))), &item).await;
    assert_eq!(s, 403, "a subject token");
    let (s, _) = put(&app, Some(&app.token(Role::Dpo, None)), &item).await;
    assert_eq!(s, 403, "a DPO token");
    let (s, _) = put(&app, None, &item).await;
    assert_eq!(s, 401);
    assert_eq!(app.store.head().0, 0, "nothing was written");
    let (s, b) = put(&app, Some(&app.token(Role::Admin, None)), &item).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = delete(&app, Some(&app.site()), "tent").await;
    assert_eq!(s, 403);
    app.views.catch_up().unwrap();
    assert!(held(&app, "tent").is_some(), "a refused removal removes nothing");
}

/// A site's track call named like a catalog event is a custom event at most: the catalog never sees
/// it, whatever the visitor consented to.
#[actix_web::test]
async fn a_track_call_cannot_forge_catalog_events() {
    let app = spawn_app().await;
    let (s, _) = app.consent("forger", &["analytics", "personalization"], &[]).await;
    assert_eq!(s, 201);
    for name in ["catalog.item_upserted", "Catalog Item Upserted", "catalog.item_removed"] {
        let (s, b) = app
            .post(
                "/v1/track",
                Some(&app.site()),
                &json!({"anonymousId": "forger", "event": name,
                    "properties": {"id": "forged", "text": "Forged item", "category": "fake"}}),
            )
            .await;
        assert_eq!(s, 200, "{name}: {b}");
    }
    app.views.catch_up().unwrap();
    assert_eq!(held(&app, "forged"), None);
    assert_eq!(catalog_len(&app), 0);
    assert!(app.store.read_stream(&catalog_stream()).unwrap().is_empty());
}

/// Items nobody interacted with (no recommender knows them) get related items by their text.
#[actix_web::test]
async fn related_items_by_text_without_any_interaction() {
    let app = spawn_app().await;
    let cms = app.token(Role::Cms, None);
    let items = json!([
        {"id": "tent-2p", "text": "two-person tent for hiking"},
        {"id": "tent-ul", "text": "ultralight hiking tent"},
        {"id": "espresso", "text": "espresso machine"},
    ]);
    assert_eq!(put(&app, Some(&cms), &items).await.0, 200);
    let ids = |body: &Value| -> Vec<String> {
        body["items"].as_array().unwrap().iter().filter_map(|i| i["id"].as_str().map(str::to_owned)).collect()
    };
    let (status, body) = app.get("/v1/recommendations?item=tent-2p&count=5", Some(&cms)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["modelVersion"], "content-tfidf", "{body}");
    assert_eq!(body["mode"], "non_personalized");
    let related = ids(&body);
    assert_eq!(related.first().map(String::as_str), Some("tent-ul"), "{body}");
    assert!(!related.contains(&"tent-2p".to_owned()), "never the item itself: {body}");
    let espresso = related.iter().position(|i| i == "espresso");
    assert!(espresso.is_none_or(|at| at > 0), "the other tent comes before the espresso machine: {body}");
    assert!(body["items"][0]["score"].as_f64().unwrap() > 0.0);
    assert_eq!(body["items"][0]["title"], "ultralight hiking tent");

    // The model follows the catalog: a changed text (the item count stays) and a new item are used.
    let changed = json!({"id": "espresso", "text": "hiking espresso maker"});
    assert_eq!(put(&app, Some(&cms), &changed).await.0, 200);
    let (_, body) = app.get("/v1/recommendations?item=tent-2p&count=5", Some(&cms)).await;
    assert_eq!(ids(&body), ["tent-ul", "espresso"], "{body}");
    assert_eq!(put(&app, Some(&cms), &json!({"id": "stakes", "text": "two-person tent stakes"})).await.0, 200);
    let (_, body) = app.get("/v1/recommendations?item=tent-2p&count=5", Some(&cms)).await;
    assert_eq!(ids(&body).first().map(String::as_str), Some("stakes"), "three shared words: {body}");
    // An item the catalog does not hold: popularity, and it says why.
    let (_, body) = app.get("/v1/recommendations?item=nope&count=5", Some(&cms)).await;
    assert_eq!((body["reason"].as_str(), body["modelVersion"].as_str()), (Some("cold_start"), None), "{body}");
}
