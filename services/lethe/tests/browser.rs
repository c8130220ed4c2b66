//! The consent SDK and the demo shop in a real headless Chromium: `lethe serve --demo` runs, and the
//! Node scripts of `tests/browser` (playwright-core, installed by `tests/run.sh`) drive the browser
//! and read the results back from the consent ledger and the log with an admin token
//! (R-CONSENT-1..4, R-GPC-1, R-GCM-1). Screenshots go to `target/browser-artifacts/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BROWSER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/browser");
/// Where Debian's `chromium` package puts the browser; `LETHE_CHROMIUM` overrides it.
const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser run is expected in about a minute; this stops a hung one.
const NODE_TIMEOUT: Duration = Duration::from_secs(300);
const MASTER: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from);
    target.join("browser-artifacts")
}

fn token(dir: &Path, role: &str) -> String {
    let o = common::run_lethe(dir, Some(MASTER), &["token", "issue", "--role", role, "--ttl", "30m"]);
    assert!(o.status.success(), "{}", common::output_text(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_sdk_and_the_demo_shop_keep_their_promises_in_a_real_browser() {
    let chromium = std::env::var("LETHE_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is missing at {chromium}: run ./tests/run.sh (it installs it with `apt-get install -y chromium`), \
         or set LETHE_CHROMIUM"
    );
    assert!(
        Path::new(BROWSER_DIR).join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run ./tests/run.sh (it runs `npm ci` in tests/browser)"
    );
    let mut scripts: Vec<String> = std::fs::read_dir(BROWSER_DIR)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".test.mjs"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 5, "the browser scripts are missing from tests/browser: {scripts:?}");

    let d = tempfile::tempdir().unwrap();
    let server = common::serve_with(d.path(), &[("LETHE_MASTER_KEY", MASTER)], &["--demo"]);
    let admin = token(d.path(), "admin");
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).unwrap();

    let mut child = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(&scripts)
        .current_dir(BROWSER_DIR)
        .env("LETHE_BASE", &server.base)
        .env("LETHE_ADMIN_TOKEN", &admin)
        .env("LETHE_ARTIFACTS", &artifacts)
        .env("LETHE_CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is required for the browser tests: run ./tests/run.sh");
    // Read the output while waiting, so that a full pipe never blocks the child.
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let stderr = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > NODE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = format!("{}{}", stdout.join().unwrap(), stderr.join().unwrap());
    drop(server);
    match status {
        Some(s) if s.success() => println!("{output}\nscreenshots in {}", artifacts.display()),
        Some(s) => panic!("the browser tests failed ({s}):\n{output}"),
        None => panic!("the browser tests did not finish within {NODE_TIMEOUT:?}:\n{output}"),
    }
    for shot in ["banner.png", "demo-after-consent.png", "demo-personalized.png"] {
        assert!(artifacts.join(shot).exists(), "no screenshot {shot} in {}", artifacts.display());
    }
}

/// `/sdk.js` and its configuration are always served; the demo (which hands out tokens) only with
/// `--demo`.
#[test]
fn the_demo_is_served_only_when_asked_for() {
    let d = tempfile::tempdir().unwrap();
    let server = common::serve(d.path(), &[("LETHE_MASTER_KEY", MASTER)]);
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", server.base)).send().unwrap();
    let sdk = get("/sdk.js");
    assert_eq!(sdk.status(), 200);
    assert_eq!(sdk.headers()["content-type"], "text/javascript; charset=utf-8");
    let integrity = sdk.headers()["lethe-integrity"].to_str().unwrap().to_owned();
    let etag = sdk.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"'), "a strong ETag: {etag}");
    let config: serde_json::Value = get("/sdk/config.json").json().unwrap();
    assert_eq!(config["sdk"]["integrity"], integrity.as_str());
    // The content-addressed copy is the same file, cached for a year; revalidation answers 304.
    let path = config["sdk"]["path"].as_str().unwrap();
    let hashed = get(path);
    assert_eq!(hashed.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(hashed.text().unwrap(), get("/sdk.js").text().unwrap());
    let again = client.get(format!("{}/sdk.js", server.base)).header("if-none-match", &etag).send().unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(get("/sdk/lethe.0000000000000000.js").status(), 404);
    for path in ["/demo", "/demo/privacy"] {
        assert_eq!(get(path).status(), 404, "{path} is served without --demo");
    }
    let r = client.post(format!("{}/demo/subject-token", server.base)).body(r#"{"anonymousId":"x"}"#).send().unwrap();
    assert_eq!(r.status(), 404);
}
