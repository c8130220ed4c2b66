//! Decisions through the real binary: `lethe serve` decides and logs receipts; after a restart the
//! decisions still in their attribution window come back from the log, and `lethe decide evaluate`
//! estimates a candidate policy off-policy from them.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{output_text, run_lethe, serve};
use serde_json::{json, Value};

const MASTER_KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn token(dir: &Path, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", "issue", "--role", role];
    args.extend_from_slice(extra);
    let o = run_lethe(dir, Some(MASTER_KEY), &args);
    assert!(o.status.success(), "{}", output_text(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

#[test]
fn decisions_survive_a_restart_and_are_evaluated_off_policy_by_the_command() {
    let d = tempfile::tempdir().unwrap();
    let client = reqwest::blocking::Client::new();
    {
        let server = serve(d.path(), &[("LETHE_MASTER_KEY", MASTER_KEY)]);
        let site = token(d.path(), "site", &["--site", "shop", "--origin", "https://shop.example"]);
        let cms = token(d.path(), "cms", &[]);
        for i in 0..4 {
            let id = format!("hiker-{i}");
            let consent = common::banner_consent(&id, &["analytics", "personalization"], &["sale_share"]);
            let r =
                client.post(format!("{}/v1/consent", server.base)).bearer_auth(&site).json(&consent).send().unwrap();
            assert_eq!(r.status(), 201);
            for n in 0..3 {
                let r = client
                    .post(format!("{}/v1/track", server.base))
                    .bearer_auth(&site)
                    .json(&json!({"anonymousId": id, "event": "Product Viewed", "messageId": format!("{id}-{n}"),
                        "properties": {"product_id": format!("tent-{n}"), "category": "outdoor"}}))
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }
        // The views follow the log every second.
        std::thread::sleep(Duration::from_millis(1500));
        for i in 0..4 {
            let r: Value = client
                .post(format!("{}/v1/decide", server.base))
                .bearer_auth(&cms)
                .json(&json!({"anonymousId": format!("hiker-{i}"), "slot": "home-hero"}))
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(r["mode"], "personalized", "{r}");
            let kind = if i % 2 == 0 { "click" } else { "impression" };
            let r = client
                .post(format!("{}/v1/outcomes", server.base))
                .bearer_auth(&cms)
                .json(&json!({"decisionId": r["decisionId"], "type": kind}))
                .send()
                .unwrap();
            assert_eq!(r.status(), 202);
        }
        // Receipts are written in the background: give the writer a moment before stopping.
        std::thread::sleep(Duration::from_millis(500));
    }
    let o = run_lethe(d.path(), Some(MASTER_KEY), &["decide", "evaluate", "--slot", "home-hero", "--epsilon", "0.1"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["rounds"], 4, "{report}");
    assert!((report["logged"]["value"].as_f64().unwrap() - 0.5).abs() < 1e-9, "two clicks in four: {report}");
    for estimator in ["ips", "snips", "doubly_robust"] {
        assert!(report[estimator]["value"].as_f64().is_some_and(f64::is_finite), "{estimator}: {report}");
    }
    // Four labelled decisions are too few to train an engagement model: a typed refusal.
    let o = run_lethe(d.path(), Some(MASTER_KEY), &["decide", "train", "--slot", "home-hero"]);
    assert!(!o.status.success());
    assert!(output_text(&o).contains("4 labelled decisions with 2 clicks"), "{}", output_text(&o));
    let o = run_lethe(d.path(), Some(MASTER_KEY), &["decide", "evaluate", "--slot", "nowhere"]);
    assert!(!o.status.success());
    assert!(output_text(&o).contains("no slot `nowhere`"), "{}", output_text(&o));
}

/// The two memory bounds of the decision engine are operator settings of `lethe serve`: the decisions
/// held for their outcomes (`--pending-decisions`) and the receipts on their way to the log
/// (`--receipt-backlog`). Each shows in `/metrics`; past the first, the oldest decisions give way and
/// are counted; a bound of zero is refused before anything starts.
#[test]
fn the_engine_memory_bounds_are_serve_settings() {
    let d = tempfile::tempdir().unwrap();
    for flag in ["--pending-decisions", "--receipt-backlog"] {
        // An address that cannot be bound: were the bound accepted, `serve` would fail, not hang.
        let o = run_lethe(d.path(), Some(MASTER_KEY), &["serve", "--listen", "not-an-address", flag, "0"]);
        assert_eq!(o.status.code(), Some(2), "{flag} 0: {}", output_text(&o));
        assert!(output_text(&o).contains(flag), "{flag} 0: {}", output_text(&o));
    }
    let client = reqwest::blocking::Client::new();
    let metric = |base: &str, name: &str| -> u64 {
        let text = client.get(format!("{base}/metrics")).send().unwrap().text().unwrap();
        let line =
            text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {text}"));
        line[name.len() + 1..].parse().unwrap()
    };
    let server = common::serve_with(
        d.path(),
        &[("LETHE_MASTER_KEY", MASTER_KEY), ("LETHE_RECEIPT_BACKLOG", "7")],
        &["--pending-decisions", "1"],
    );
    assert_eq!(metric(&server.base, "lethe_decision_receipt_backlog_limit"), 7);
    // One per shard: 64 in all.
    assert_eq!(metric(&server.base, "lethe_decisions_pending_limit"), 64);
    let cms = token(d.path(), "cms", &[]);
    for i in 0..100 {
        let r = client
            .post(format!("{}/v1/decide", server.base))
            .bearer_auth(&cms)
            .json(&json!({"anonymousId": format!("visitor-{i}"), "slot": "home-hero"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (pending, evicted) =
        (metric(&server.base, "lethe_decisions_pending"), metric(&server.base, "lethe_decisions_evicted_total"));
    assert!(pending <= 64, "{pending} held past the bound");
    assert_eq!(pending + evicted, 100, "every decision is held or counted as evicted");
}
