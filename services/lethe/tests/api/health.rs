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
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("lethe_collect_events_total{reason=\"no_consent\"} 1"), "{text}");
    assert!(text.contains("lethe_log_head 0"), "{text}");
}
