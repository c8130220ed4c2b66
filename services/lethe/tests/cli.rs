//! The `lethe` command as an operator uses it: real processes on a temporary data directory.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn lethe(dir: &Path, args: &[&str]) -> Output {
    common::run_lethe(dir, None, args)
}

fn text(o: &Output) -> String {
    common::output_text(o)
}

#[test]
fn a_new_data_dir_works_with_no_setup_and_warns_about_the_dev_key() {
    let d = tempfile::tempdir().unwrap();
    let o = lethe(d.path(), &["log", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("production needs a real secret"), "{}", text(&o));
    assert!(d.path().join("master.key").exists());
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 events"));
}

#[test]
fn erase_then_verify_reports_the_subject_as_erased() {
    let d = tempfile::tempdir().unwrap();
    let o = lethe(d.path(), &["erase", "visitor-123"]);
    assert!(o.status.success(), "{}", text(&o));
    let receipt: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(receipt["newly_erased"], true);
    assert!(!text(&o).contains("visitor-123"), "the identifier must not be echoed");
    let o = lethe(d.path(), &["log", "verify", "--subjects"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("1 erased"), "{out}");
    assert!(out.contains("erased (rotation pending)"), "{out}");
    let o = lethe(d.path(), &["keys", "rotate"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&lethe(d.path(), &["log", "verify", "--subjects"]).stdout).into_owned();
    assert!(out.contains("key epoch 2"), "{out}");
    assert!(!out.contains("rotation pending"), "{out}");
}

#[test]
fn replay_prints_the_same_digest_twice() {
    let d = tempfile::tempdir().unwrap();
    lethe(d.path(), &["erase", "someone"]);
    let a = lethe(d.path(), &["replay", "--json"]);
    let b = lethe(d.path(), &["replay", "--json"]);
    assert!(a.status.success(), "{}", text(&a));
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_slice(&a.stdout).unwrap(), serde_json::from_slice(&b.stdout).unwrap());
    assert_eq!(a, b);
    assert_eq!(a["fences"], 1);
}

#[test]
fn bad_input_is_a_plain_error_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let o = lethe(d.path(), &["erase", ""]);
    assert!(!o.status.success());
    assert!(text(&o).starts_with("error: subject id"), "{}", text(&o));
    assert!(!text(&o).contains("panicked"));
}

#[test]
fn a_receipt_wait_out_of_range_is_refused_before_the_log_is_opened() {
    let d = tempfile::tempdir().unwrap();
    let o = lethe(d.path(), &["--receipt-sync-window-ms", "5000", "log", "verify"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--receipt-sync-window-ms"), "{}", text(&o));
    assert!(!d.path().join("log").exists(), "the data directory was not touched");
    // In range, the same command opens the log and verifies it.
    let o = lethe(d.path(), &["--receipt-sync-window-ms", "40", "--receipt-linger-ms", "20", "log", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(d.path().join("log").exists());
}

#[test]
fn a_wrong_master_key_is_refused_plainly() {
    let d = tempfile::tempdir().unwrap();
    assert!(lethe(d.path(), &["log", "verify"]).status.success());
    let key = d.path().join("other.key");
    std::fs::write(&key, "11".repeat(32)).unwrap();
    let o = lethe(d.path(), &["--master-key-file", key.to_str().unwrap(), "log", "verify"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("does not open the key store"), "{}", text(&o));
}

/// A temporary directory holding `policies/` with copies of these files of the shipped policies.
fn policies_copy(files: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let pol = d.path().join("policies");
    std::fs::create_dir_all(pol.join("notices")).unwrap();
    for f in files {
        std::fs::copy(src.join(f), pol.join(f)).unwrap();
    }
    (d, pol)
}

#[test]
fn a_bad_policy_file_is_named_with_its_line() {
    let (d, pol) = policies_copy(&["purposes.toml", "data_categories.toml", "events.toml", "notices/banner.toml"]);
    let events = std::fs::read_to_string(pol.join("events.toml")).unwrap();
    let line = events.lines().position(|l| l.contains("purpose = \"analytics\"")).unwrap() + 1;
    std::fs::write(pol.join("events.toml"), events.replacen("purpose = \"analytics\"", "purpose = \"analitics\"", 1))
        .unwrap();
    let o = lethe(d.path(), &["policies", "check", pol.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains(&format!("events.toml:{line}:")), "{}", text(&o));
    assert!(text(&o).contains("analitics"), "{}", text(&o));
}

#[test]
fn serve_refuses_to_start_on_invalid_policies() {
    let d = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["--data-dir", d.path().to_str().unwrap(), "--policies", d.path().to_str().unwrap(), "serve"])
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("purposes.toml"), "{}", text(&o));
}

/// The whole loop as an operator runs it: `lethe serve`, a write key from `lethe token issue` while
/// the server holds the log, a consent and a tracked event over HTTP.
#[test]
fn serve_and_token_issue_work_together() {
    let d = tempfile::tempdir().unwrap();
    let server = common::serve(d.path(), &[]);
    let client = reqwest::blocking::Client::new();
    let o = lethe(d.path(), &["token", "issue", "--role", "site", "--site", "shop", "--ttl", "10m"]);
    assert!(o.status.success(), "{}", text(&o));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let consent = common::banner_consent("loop", &["analytics"], &[]);
    let r = client.post(format!("{}/v1/consent", server.base)).bearer_auth(&token).json(&consent).send().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    let r = client
        .post(format!("{}/v1/track", server.base))
        .basic_auth(&token, Some(""))
        .json(&serde_json::json!({"anonymousId": "loop", "event": "Clicked", "messageId": "m"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
}

#[test]
fn policies_check_also_checks_the_sdk_and_slot_files() {
    let (d, pol) = policies_copy(&[
        "purposes.toml",
        "data_categories.toml",
        "events.toml",
        "notices/banner.toml",
        "sdk.toml",
        "slots.toml",
    ]);
    let o = lethe(d.path(), &["policies", "check", pol.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(", sdk.toml, slots.toml: valid"), "{}", text(&o));

    // A broken sdk.toml is named with its line, as `lethe serve` would name it.
    let sdk = std::fs::read_to_string(pol.join("sdk.toml")).unwrap();
    let line = sdk.lines().count() + 2;
    std::fs::write(pol.join("sdk.toml"), format!("{sdk}\n[broken\n")).unwrap();
    let o = lethe(d.path(), &["policies", "check", pol.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains(&format!("sdk.toml:{line}:")), "{}", text(&o));

    // A slot whose purpose no policy declares is refused.
    std::fs::write(pol.join("sdk.toml"), sdk).unwrap();
    let slots = std::fs::read_to_string(pol.join("slots.toml")).unwrap();
    let first = slots.lines().find(|l| l.trim_start().starts_with("purpose =")).expect("a slot purpose");
    std::fs::write(pol.join("slots.toml"), slots.replacen(first, "purpose = \"no_such_purpose\"", 1)).unwrap();
    let o = lethe(d.path(), &["policies", "check", pol.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no_such_purpose"), "{}", text(&o));
}
