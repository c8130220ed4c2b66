//! Rate limits per client address and per key answer 429 with a stable code, and store nothing.

use lethe_collect::ratelimit::{Limits, Rate};
use serde_json::json;

use crate::helpers::spawn_app_with;

#[actix_web::test]
async fn a_key_over_its_rate_gets_429() {
    let slow = Rate { per_second: 0.001, burst: 3.0 };
    let app = spawn_app_with(Limits { per_address: Rate { per_second: 1000.0, burst: 1000.0 }, per_key: slow }).await;
    let site = app.site();
    let mut codes = Vec::new();
    for i in 0..5 {
        let (status, body) = app
            .post(
                "/v1/track",
                Some(&site),
                &json!({"anonymousId": "r", "event": "Clicked", "messageId": i.to_string()}),
            )
            .await;
        codes.push((status, body["code"].as_str().map(str::to_owned)));
    }
    // Three pass the limiter (and are refused for lack of consent), the rest are limited.
    assert_eq!(codes[..3].iter().map(|c| c.0).collect::<Vec<_>>(), [403, 403, 403]);
    assert_eq!(codes[3], (429, Some("rate_limited".to_owned())));
    assert_eq!(codes[4].0, 429);
    // The answer says when to retry, in the header as in the message: 1 token at 0.001/s.
    let r = app
        .client
        .post(format!("{}/v1/track", app.address))
        .bearer_auth(&site)
        .json(&json!({"anonymousId": "r", "event": "Clicked", "messageId": "5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((900..=1000).contains(&wait), "{wait}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains(&format!("retry in {wait} s")), "{body}");
    // Another key is not affected.
    let other = app.token(lethe_auth::Role::Admin, None);
    let (status, _) = app.post("/v1/track", Some(&other), &json!({"anonymousId": "r", "event": "Clicked"})).await;
    assert_eq!(status, 403);
}

#[actix_web::test]
async fn an_address_over_its_rate_gets_429_before_any_token_is_checked() {
    let app = spawn_app_with(Limits {
        per_address: Rate { per_second: 0.001, burst: 2.0 },
        per_key: Rate { per_second: 1000.0, burst: 1000.0 },
    })
    .await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(app.post("/v1/track", Some("not-a-token"), &json!({})).await.0);
        }
        v
    };
    assert_eq!(statuses, [401, 401, 429]);
}
