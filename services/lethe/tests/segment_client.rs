//! Compatibility with Segment's official Node library (`@segment/analytics-node`, installed in
//! `tests/segment` by `tests/run.sh`): a site changes only the host, and its events arrive in the
//! log, minimized (invariant 4) and gated by consent (invariant 3).

mod common;

use std::path::Path;
use std::process::Command;

use common::POLICIES;

const CLIENT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/segment");

fn lethe(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lethe"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("LETHE_POLICIES", POLICIES)
        .env("LETHE_MASTER_KEY", "42".repeat(32))
        .output()
        .expect("run lethe")
}

#[test]
fn segments_node_library_sends_to_lethe_by_changing_the_host() {
    assert!(
        Path::new(CLIENT_DIR).join("node_modules/@segment/analytics-node").exists(),
        "@segment/analytics-node is not installed: run ./tests/run.sh (it runs npm ci in tests/segment)"
    );
    let d = tempfile::tempdir().unwrap();
    let master = "42".repeat(32);
    let server = common::serve(d.path(), &[("LETHE_MASTER_KEY", &master)]);
    let base = server.base.clone();
    let client = reqwest::blocking::Client::new();
    let o = lethe(d.path(), &["token", "issue", "--role", "site", "--site", "shop", "--ttl", "10m"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let write_key = String::from_utf8(o.stdout).unwrap().trim().to_owned();

    // The visitor consents to analytics only.
    let consent = common::banner_consent("node-visitor", &["analytics"], &["personalization"]);
    let r = client.post(format!("{base}/v1/consent")).bearer_auth(&write_key).json(&consent).send().unwrap();
    assert_eq!(r.status(), 201);

    let sent = Command::new("node")
        .arg("send.mjs")
        .current_dir(CLIENT_DIR)
        .env("LETHE_HOST", &base)
        .env("LETHE_WRITE_KEY", &write_key)
        .env("LETHE_ANONYMOUS_ID", "node-visitor")
        .output()
        .expect("run node");
    assert!(
        sent.status.success(),
        "{}{}",
        String::from_utf8_lossy(&sent.stdout),
        String::from_utf8_lossy(&sent.stderr)
    );
    drop(server);

    // Read the events back from the log.
    let replay = lethe(d.path(), &["replay", "--json"]);
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert_eq!(summary["by_type"]["page.viewed"], 1, "{summary}");
    assert_eq!(summary["by_type"]["scroll.depth"], 1, "{summary}");
    // `Product Clicked` is analytics (element.clicked) and was consented.
    assert_eq!(summary["by_type"]["element.clicked"], 1, "{summary}");
    assert_eq!(summary["by_type"]["consent.changed"], 1, "{summary}");
    assert_eq!(summary["readable"], 4, "{summary}");

    // Nothing of the raw URL's query string, nor the raw id, is in the data directory.
    let mut hits = Vec::new();
    for entry in walk(d.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for needle in [&b"utm=x"[..], b"node-visitor"] {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(entry.display().to_string());
            }
        }
    }
    assert!(hits.is_empty(), "{hits:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
