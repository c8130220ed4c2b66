//! Drift monitoring: the population stability index of each serving feature against the live
//! model's training distribution, in `/metrics`, with its alert.

use std::sync::Arc;

use serde_json::json;

use crate::helpers::{spawn_app, TestApp};

const MOBILE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
const DESKTOP: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36";

/// A consenting visitor who views the same three products from one device.
async fn shopper(app: &TestApp, id: &str, user_agent: &str) {
    let (status, _) = app.consent(id, &["analytics", "personalization"], &[]).await;
    assert_eq!(status, 201);
    for item in ["tent", "stove", "lamp"] {
        let (status, body) = app
            .post(
                "/v1/track",
                Some(&app.site()),
                &json!({"anonymousId": id, "event": "Product Viewed", "messageId": format!("{id}-{item}"),
                    "properties": {"product_id": item, "category": "outdoor"}, "context": {"userAgent": user_agent}}),
            )
            .await;
        assert_eq!((status, body["result"]["status"].as_str()), (200, Some("stored")), "{body}");
    }
}

/// The value of one sample line, `None` when absent.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[actix_web::test]
async fn a_device_shift_after_training_raises_the_psi_alert() {
    let app = spawn_app().await;
    for n in 0..10 {
        shopper(&app, &format!("mobile-{n}"), MOBILE).await;
    }
    app.views.catch_up().unwrap();
    assert_eq!(sample(&app.metrics().await, "lethe_feature_psi{feature=\"device\"}"), None, "no model, no reference");

    let engine = Arc::clone(&app.engine);
    let report = actix_web::web::block(move || engine.personalizer().train("test")).await.unwrap().expect("trained");
    // The training distribution is held beside the live model, in memory only: every subject on mobile.
    assert!(!report.metrics.keys().any(|k| k.starts_with("train_dist")), "not in the plaintext manifest");
    let m = app.engine.personalizer().live_training_distribution().expect("a reference").to_metrics();
    assert_eq!(m["train_dist.subjects"], 10.0);
    assert_eq!(m["train_dist.device.mobile"], 1.0);
    assert_eq!(m["train_dist.device.desktop"], 0.0);
    // Three product views each: views + clicks in the 2-3 bin.
    assert_eq!(m["train_dist.activity.2-3"], 1.0);
    assert_eq!(m["train_dist.activity.4-7"], 0.0);

    // Serving the population it was trained on: stable.
    let text = app.metrics().await;
    assert_eq!(sample(&text, "lethe_feature_psi{feature=\"device\"}"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "lethe_feature_psi_alert{feature=\"device\"}"), Some(0.0), "{text}");
    assert!(text.contains("# TYPE lethe_feature_psi gauge"), "{text}");

    // As many desktop-only visitors arrive, doing the same: the device share moves from 1/0 to ½/½.
    for n in 0..10 {
        shopper(&app, &format!("desktop-{n}"), DESKTOP).await;
    }
    app.views.catch_up().unwrap();
    let text = app.metrics().await;
    let device = sample(&text, "lethe_feature_psi{feature=\"device\"}").expect("device PSI");
    // (0.5 − 1)·ln(0.5) + (0.5 − 1e-4)·ln(0.5 / 1e-4) ≈ 4.604, far above the 0.2 threshold.
    assert!((device - 4.604_318).abs() < 1e-3, "{text}");
    assert_eq!(sample(&text, "lethe_feature_psi_alert{feature=\"device\"}"), Some(1.0), "{text}");
    // What did not move does not alert.
    assert_eq!(sample(&text, "lethe_feature_psi{feature=\"activity\"}"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "lethe_feature_psi_alert{feature=\"activity\"}"), Some(0.0), "{text}");
}
