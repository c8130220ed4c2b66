//! Helpers of the process-level tests: a `lethe serve` child that is killed when the test ends, and
//! the consent body a banner sends for the current notice.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The repository's policies.
pub const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");

/// A `lethe serve` child process, killed when dropped, pass or fail.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `lethe serve` on a free port over `dir` with the repository's policies and `env`, and
/// waits until `/healthz` answers.
pub fn serve(dir: &Path, env: &[(&str, &str)]) -> Server {
    serve_with(dir, env, &[])
}

/// [`serve`], with more arguments for `lethe serve` (such as `--demo`).
pub fn serve_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["--data-dir", dir.to_str().unwrap(), "serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("LETHE_POLICIES", POLICIES)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, base: format!("http://127.0.0.1:{port}") };
    let client = reqwest::blocking::Client::new();
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        client.get(format!("{}/healthz", server.base)).send().is_ok_and(|r| r.status() == 200)
    });
    assert!(up, "lethe serve did not come up");
    server
}

/// The body of a banner choice for the current notice of the repository's policies.
pub fn banner_consent(anonymous_id: &str, granted: &[&str], denied: &[&str]) -> serde_json::Value {
    let policies = lethe_policy::Policies::load(Path::new(POLICIES)).unwrap();
    let n = policies.notices().next().unwrap();
    serde_json::json!({"anonymousId": anonymous_id, "granted": granted, "denied": denied, "method": "banner",
        "jurisdiction": "EU", "locale": "en",
        "notice": {"id": n.id().as_str(), "version": n.version().get(), "contentHash": n.content_hash()}})
}

/// Runs `lethe --data-dir DIR ARGS…` with the repository's policies and no master secret from the
/// environment except `master_key` (64 hex characters) when given.
pub fn run_lethe(dir: &Path, master_key: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"));
    cmd.arg("--data-dir").arg(dir).args(args).env_remove("LETHE_MASTER_KEY_FILE").env_remove("LETHE_PASSPHRASE");
    match master_key {
        Some(k) => cmd.env("LETHE_MASTER_KEY", k),
        None => cmd.env_remove("LETHE_MASTER_KEY"),
    };
    cmd.env("LETHE_POLICIES", POLICIES).output().expect("run lethe")
}

/// Standard output and error of a finished command, together.
pub fn output_text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
