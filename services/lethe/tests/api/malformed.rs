//! Bad input gets a clear 4xx with a stable code, nothing is stored, and the service keeps serving.

use serde_json::json;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn the_malformed_input_matrix() {
    let app = spawn_app().await;
    app.consent("mal", &["analytics"], &[]).await;
    let site = app.site();
    let send = |path: &'static str, body: Vec<u8>, ctype: &'static str| {
        app.client
            .post(format!("{}{path}", app.address))
            .bearer_auth(&site)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let big_event = json!({"anonymousId": "mal", "event": "Clicked", "properties": {"pad": "x".repeat(40_000)}});
    let huge_batch = json!({"batch": (0..2_501).map(|i| json!({"type": "track", "anonymousId": "mal", "event": "Clicked", "messageId": i.to_string()})).collect::<Vec<_>>()});
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/v1/track", b"{not json".to_vec(), 400, "invalid_json"),
        ("/v1/track", vec![0xff, 0xfe, b'{', b'}'], 400, "invalid_utf8"),
        ("/v1/track", b"[1,2,3]".to_vec(), 400, "invalid_event"),
        ("/v1/track", br#"{"event":"Clicked"}"#.to_vec(), 400, "missing_id"),
        ("/v1/track", br#"{"anonymousId":5.5,"event":{"a":1}}"#.to_vec(), 400, "invalid_field"),
        ("/v1/track", serde_json::to_vec(&big_event).unwrap(), 413, "payload_too_large"),
        ("/v1/batch", br#"{"batch": "nope"}"#.to_vec(), 400, "invalid_batch"),
        ("/v1/batch", br#"{"batch": []}"#.to_vec(), 400, "empty_batch"),
        ("/v1/batch", serde_json::to_vec(&huge_batch).unwrap(), 413, "batch_too_large"),
        ("/v1/batch", vec![b' '; 600_000], 413, "payload_too_large"),
        ("/v1/consent", br#"{"anonymousId": 3}"#.to_vec(), 400, "invalid_json"),
    ];
    for (path, body, status, code) in cases {
        let r = send(path, body, "application/json").await.unwrap();
        let got = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{path}: {body}");
    }
    // Nothing of any of it was stored, and the service still serves.
    assert_eq!(app.stored("mal"), 1, "only the consent record");
    let ok = send(
        "/v1/track",
        serde_json::to_vec(&json!({"anonymousId": "mal", "event": "Clicked", "messageId": "fine"})).unwrap(),
        "text/plain",
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200, "sendBeacon's text/plain bodies are accepted");
    assert_eq!(app.stored("mal"), 2);
}

/// Errors raised by the HTTP layer itself are JSON with a stable code too.
#[actix_web::test]
async fn transport_level_errors_are_json_with_codes() {
    let app = spawn_app().await;
    // A method the path does not take falls through to the JSON not-found answer.
    let r = app.client.get(format!("{}/v1/track", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    let r = app
        .client
        .post(format!("{}/v1/batch", app.address))
        .bearer_auth(app.site())
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200, "the service keeps serving");
}
