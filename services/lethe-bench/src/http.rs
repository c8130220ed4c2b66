//! `lethe-bench http`: an HTTP load run on loopback against the collection API of an in-process
//! `lethe serve` (release build, real sled store, fsync per group), side by side in the same run with
//! a bare actix-web handler that answers a constant. Prints requests/s, events/s and latency
//! percentiles for batches of 100 events and for single events.

use std::sync::Arc;
use std::time::Duration;

use crate::load::{load, pct, start, Run};

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use lethe::app::{Application, Settings};
use lethe_auth::{AuthConfig, Issuer, Role, SigningKeys};
use lethe_collect::auth::Auth;
use lethe_collect::ratelimit::{Limits, Rate, RateLimiter};
use lethe_collect::CollectState;
use lethe_crypto::MasterSource;
use lethe_eventlog::{EventStore, LogConfig, SledEventLog};
use lethe_policy::Policies;
use serde_json::{json, Value};

const SUBJECTS: usize = 1_000;

/// The baseline: reads the request body (actix-web closes a connection whose request body was left
/// unread, which would make every request a new TCP connection) and answers a constant.
async fn constant(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok().json(json!({"success": true}))
}

fn row(name: &str, run: &Run, events_per_request: u64, bare: Option<&Run>) {
    let rps = run.rps();
    let ratio = bare.map_or(String::new(), |b| format!("{:>6.0}%", 100.0 * rps / b.rps()));
    println!(
        "{name:<34} {rps:>10.0} req/s {:>10.0} events/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {:>3} {ratio}",
        rps * events_per_request as f64,
        pct(&run.latencies, 0.5),
        pct(&run.latencies, 0.99),
        run.errors
    );
}

/// Runs the HTTP comparison.
pub fn run(seconds: u64, concurrency: usize, workers: usize, hold: Option<u64>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn EventStore> =
        Arc::new(SledEventLog::open(LogConfig::new(dir.path(), MasterSource::Hex(hex::encode([9u8; 32]))))?);
    let policies = Policies::builtin()?;
    let keys = SigningKeys::generate()?;
    let token = Issuer::issue(&keys, &AuthConfig::default(), Role::Admin, Duration::from_secs(3600), None, None, &[])?;
    let notice = policies.notices().next().context("a notice")?;
    let notice =
        json!({"id": notice.id().as_str(), "version": notice.version().get(), "contentHash": notice.content_hash()});
    let auth = Arc::new(Auth::new(keys, AuthConfig::default()));
    let mut state = CollectState::build(Arc::clone(&store), Arc::new(policies), auth)?;
    let open = Rate { per_second: 1e9, burst: 1e9 };
    state.limits = Arc::new(RateLimiter::new(Limits { per_address: open, per_key: open }));
    let lethe_state = state.clone();
    let lethe_port = start(move || {
        let app = Application::build(
            &Settings { listen: "127.0.0.1:0".into(), workers, ..Settings::default() },
            lethe_state,
            None,
        )?;
        let port = app.port();
        Ok((port, app.into_server()))
    })?;
    let bare_port = start(move || {
        let server = HttpServer::new(|| {
            App::new()
                .app_data(web::PayloadConfig::new(4 << 20))
                .route("/v1/batch", web::post().to(constant))
                .route("/v1/track", web::post().to(constant))
        })
        .workers(workers)
        .bind("127.0.0.1:0")?;
        let port = server.addrs()[0].port();
        Ok((port, server.run()))
    })?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let client = reqwest::Client::new();
        for s in 0..SUBJECTS {
            let body = json!({"anonymousId": format!("bench-{s}"), "notice": notice, "granted": ["analytics"],
                "method": "api", "jurisdiction": "EU", "locale": "en"});
            let r = client.post(format!("http://127.0.0.1:{lethe_port}/v1/consent")).bearer_auth(&token).json(&body).send().await?;
            anyhow::ensure!(r.status() == 201, "consent: {}", r.status());
        }
        let payload = json!({"product_id": "tent-2p", "category": "outdoor", "pad": "x".repeat(120)});
        let singles: Vec<Value> = (0..10_000)
            .map(|i| json!({"anonymousId": format!("bench-{}", i % SUBJECTS), "event": "Product Clicked", "messageId": format!("s-{i}"), "properties": payload}))
            .collect();
        let batches: Vec<Value> = (0..2_000)
            .map(|b| {
                let batch: Vec<Value> = (0..100)
                    .map(|i| json!({"type": "track", "anonymousId": format!("bench-{}", (b * 7 + i) % SUBJECTS), "event": "Product Clicked", "messageId": format!("b-{b}-{i}"), "properties": payload}))
                    .collect();
                json!({"batch": batch})
            })
            .collect();
        // A browser or app batches the events of one visitor.
        let visitor_batches: Vec<Value> = (0..2_000)
            .map(|b| {
                let batch: Vec<Value> = (0..100)
                    .map(|i| json!({"type": "track", "anonymousId": format!("bench-{}", b % SUBJECTS), "event": "Product Clicked", "messageId": format!("v-{b}-{i}"), "properties": payload}))
                    .collect();
                json!({"batch": batch})
            })
            .collect();
        let (singles, batches, visitor_batches) = (Arc::new(singles), Arc::new(batches), Arc::new(visitor_batches));
        if let Some(hold) = hold {
            println!("LETHE_PORT={lethe_port} BARE_PORT={bare_port} SUBJECTS={SUBJECTS}");
            println!("TOKEN={token}");
            tokio::time::sleep(Duration::from_secs(hold)).await;
            return anyhow::Ok(());
        }
        println!("lethe-bench http: {seconds} s per cell, {concurrency} connections, {workers} server workers, 2 cores shared with the load generator");
        let bare = load(format!("http://127.0.0.1:{bare_port}/v1/batch"), token.clone(), Arc::clone(&batches), concurrency, seconds, None).await;
        row("bare actix, batch of 100", &bare, 100, None);
        let lethe = load(format!("http://127.0.0.1:{lethe_port}/v1/batch"), token.clone(), Arc::clone(&batches), concurrency, seconds, None).await;
        row("lethe /v1/batch, 100 subjects", &lethe, 100, Some(&bare));
        let lethe = load(format!("http://127.0.0.1:{lethe_port}/v1/batch"), token.clone(), Arc::clone(&visitor_batches), concurrency, seconds, None).await;
        row("lethe /v1/batch, 1 visitor", &lethe, 100, Some(&bare));
        let bare = load(format!("http://127.0.0.1:{bare_port}/v1/track"), token.clone(), Arc::clone(&singles), concurrency, seconds, None).await;
        row("bare actix, single event", &bare, 1, None);
        let lethe = load(format!("http://127.0.0.1:{lethe_port}/v1/track"), token.clone(), Arc::clone(&singles), concurrency, seconds, None).await;
        row("lethe /v1/track, single event", &lethe, 1, Some(&bare));
        anyhow::Ok(())
    })?;
    println!("log head after the run: {} events (all durable)", store.head().0);
    Ok(())
}
