//! Liveness, readiness, metrics.

use crate::helpers::spawn_app;

#[actix_web::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
}

#[actix_web::test]
async fn readyz_reports_the_log_head() {
    let app = spawn_app().await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["log_head"], 0);
}

#[actix_web::test]
async fn unknown_paths_get_a_typed_json_404() {
    let app = spawn_app().await;
    let (status, body) = app.get("/nope", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}

#[actix_web::test]
async fn metrics_count_outcomes_per_reason() {
    let app = spawn_app().await;
    let site = app.site();
    app.post("/v1/track", Some(&site), &serde_json::json!({"anonymousId": "m1", "event": "Clicked", "messageId": "x"}))
        .await;
    let text = app.metrics().await;
    assert!(text.contains("lethe_collect_events_total{reason=\"no_consent\"} 1"), "{text}");
    assert!(text.contains("lethe_log_head 0"), "{text}");
    assert!(text.contains("lethe_log_runs_waiting_for_index 0"), "{text}");
    assert!(text.contains("lethe_log_waiting_runs_indexed_total 0"), "{text}");
    assert!(text.contains("lethe_log_waiting_runs_index_entries_total 0"), "{text}");
}

/// `/metrics` shows how far the feature views follow the log: behind it until they catch up.
#[actix_web::test]
async fn metrics_show_the_feature_views_position_beside_the_log_head() {
    let app = spawn_app().await;
    let (status, _) = app.consent("v1", &["analytics", "personalization"], &[]).await;
    assert_eq!(status, 201);
    let text = app.metrics().await;
    assert!(text.contains("lethe_log_head 1\n"), "{text}");
    assert!(text.contains("lethe_feature_views_position 0\n"), "{text}");
    assert!(text.contains("lethe_feature_views_failed_events_total 0\n"), "{text}");
    app.views.catch_up().unwrap();
    assert!(app.metrics().await.contains("lethe_feature_views_position 1\n"));
}

/// `/openapi.json` is generated from the handlers and describes every route the service mounts.
#[actix_web::test]
async fn openapi_describes_every_endpoint() {
    let app = spawn_app().await;
    let (status, doc) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/v1/consent", "post"),
        ("/v1/consent/{id}", "get"),
        ("/v1/track", "post"),
        ("/v1/page", "post"),
        ("/v1/identify", "post"),
        ("/v1/batch", "post"),
        ("/v1/import", "post"),
        ("/v1/me/erasure", "post"),
        ("/v1/me/opt-out", "post"),
        ("/v1/me/withdraw", "post"),
        ("/v1/me/export", "get"),
        ("/v1/schemas/export.json", "get"),
        ("/v1/requests", "get"),
        ("/v1/requests", "post"),
        ("/v1/requests/{id}/actions", "post"),
        ("/v1/audit/export", "get"),
        ("/v1/audit/chain", "get"),
        ("/v1/ropa", "get"),
        ("/sdk.js", "get"),
        ("/sdk/config.json", "get"),
        ("/v1/decide", "post"),
        ("/v1/outcomes", "post"),
        ("/v1/recommendations", "get"),
        ("/v1/items", "put"),
        ("/v1/items/{id}", "delete"),
        ("/v1/decide/stats", "get"),
        ("/v1/decide/slots/{slot}/versions", "get"),
        ("/v1/decide/slots/{slot}/canary", "post"),
        ("/v1/decide/slots/{slot}/{action}", "post"),
        ("/v1/decide/slots/{slot}/evaluate", "post"),
        ("/personalizer/v1.0/rank", "post"),
        ("/personalizer/v1.0/events/{eventId}/{action}", "post"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not described");
        // And the route exists: anything but the JSON 404 of unknown paths.
        let concrete = path
            .replace("{id}", "someone")
            .replace("{slot}", "home-hero")
            .replace("{action}", "promote")
            .replace("{eventId}", "some-event");
        let url = format!("{}{concrete}", app.address);
        let r = match method {
            "get" => app.client.get(url),
            "put" => app.client.put(url),
            "delete" => app.client.delete(url),
            _ => app.client.post(url),
        }
        .send()
        .await
        .unwrap();
        assert_ne!(r.status(), 404, "{method} {path} is described but not routed");
    }
    assert_eq!(paths.len(), 35, "a route was added without its description: {:?}", paths.keys().collect::<Vec<_>>());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["ApiError"].is_object());
}

/// A process can serve only some parts: without `collect`, the collection routes and their
/// description are absent, and health still answers.
#[actix_web::test]
async fn a_process_serves_only_the_parts_it_is_given() {
    let app = crate::helpers::spawn_app_serving(lethe_collect::ratelimit::Limits::default(), vec![]).await;
    assert_eq!(app.get("/healthz", None).await.0, 200);
    let (status, body) = app.post("/v1/track", Some(&app.site()), &serde_json::json!({})).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (_, doc) = app.get("/openapi.json", None).await;
    assert!(doc["paths"].get("/v1/track").is_none());
    assert!(doc["paths"].get("/healthz").is_some());
}
