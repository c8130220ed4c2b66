//! `lethe-bench decide`: the decision API under HTTP load on loopback, beside a bare actix-web
//! handler answering a constant, in the same run. The store holds `subjects` consenting subjects
//! with feature views (page views in ten categories), a slot has 50 candidates, and the slot's
//! engagement model has learned from outcomes before the run. As in `lethe serve`, the feature views
//! follow the log every second (`lethe::background::follow_views`). Prints, for each server: the most
//! requests/s at a fixed concurrency (and the ratio to the bare handler), then the latency
//! percentiles of a paced run at `rate` requests/s (latency measured from the scheduled send
//! time, so a stall counts against every request it delays).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use lethe::app::{Application, Settings};
use lethe_auth::{AuthConfig, Issuer, Role, SigningKeys};
use lethe_collect::auth::Auth;
use lethe_collect::ratelimit::{Limits, Rate, RateLimiter};
use lethe_collect::CollectState;
use lethe_consent::ConsentMethod;

use crate::load::{consent, load, pct, start, Run};
use lethe_crypto::{Keyring, MasterSource};
use lethe_domain::{EventType, ExpectedVersion, NewEvent, Purpose, Retention, SchemaVersion, SubjectId, UtcMicros};
use lethe_eventlog::{AppendRequest, EventStore, LogConfig, SledEventLog};
use lethe_policy::Policies;
use lethe_privacy::controller::ControllerFile;
use lethe_privacy::{Privacy, PrivacyOptions};
use serde_json::{json, Value};

const CATEGORIES: usize = 10;
const CANDIDATES: usize = 50;

/// The benchmark slot: 50 candidates over ten categories.
fn slots_toml() -> String {
    let mut s = String::from(
        "format = 1\n[[slot]]\nid = \"bench\"\nkind = \"recommendations\"\npurpose = \"personalization\"\ndeadline_ms = 50\ndefault = \"c0\"\nepsilon = 0.05\n",
    );
    for c in 0..CANDIDATES {
        s.push_str(&format!(
            "[[slot.variant]]\nid = \"c{c}\"\ncategory = \"cat-{}\"\ntitle = \"Candidate {c}\"\n",
            c % CATEGORIES
        ));
    }
    s
}

fn page_view(subject: usize, i: usize) -> anyhow::Result<NewEvent> {
    let category = format!("cat-{}", (subject + i * (subject % 3)) % CATEGORIES);
    let payload = json!({
        "message_id": format!("p-{subject}-{i}"), "properties": {"category": category},
        "host": "shop.example", "path": format!("/c/{category}"), "title": category,
        "context": {"device_class": "mobile", "daypart": "evening", "referrer_class": "search"},
    });
    Ok(NewEvent {
        event_type: EventType::parse("page.viewed")?,
        schema_version: SchemaVersion::new(2)?,
        purpose: Purpose::parse("analytics")?,
        time: UtcMicros::now(),
        retention: Retention::Days(395),
        payload: serde_json::to_vec(&payload)?,
    })
}

fn row(name: &str, run: &Run, bare: Option<&Run>) {
    let ratio = bare.map_or(String::new(), |b| format!("{:>5.0}% of bare", 100.0 * run.rps() / b.rps()));
    println!(
        "{name:<42} {:>8.0} req/s  p50 {:>6.3} ms  p99 {:>6.3} ms  p99.9 {:>6.3} ms  errors {:>3}  {ratio}",
        run.rps(),
        pct(&run.latencies, 0.5),
        pct(&run.latencies, 0.99),
        pct(&run.latencies, 0.999),
        run.errors
    );
}

/// The baseline: reads the request body (actix-web closes a connection whose request body was left
/// unread, which would make every request a new TCP connection) and answers a constant.
async fn constant(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok().json(json!({"decisionId": "00000000-0000-0000-0000-000000000000", "variants": [{"id": "c0"}]}))
}

/// Runs the decision benchmark.
#[allow(clippy::too_many_arguments)]
pub fn run(
    subjects: usize,
    seconds: u64,
    concurrency: usize,
    workers: usize,
    rate: f64,
    hold: Option<u64>,
    max_unindexed: usize,
    receipts: lethe::cli::ReceiptTiming,
    engine_only: Option<u64>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let master = MasterSource::Hex(hex::encode([9u8; 32]));
    let mut config = LogConfig::new(dir.path(), master.clone());
    config.max_unindexed_runs = max_unindexed;
    receipts.apply(&mut config);
    let store: Arc<dyn EventStore> = Arc::new(SledEventLog::open(config)?);
    let policies = Policies::builtin()?;
    let setup = Instant::now();
    let mut requests = Vec::with_capacity(1000);
    for s in 0..subjects {
        let subject = store.pseudonymize(&SubjectId::parse(&format!("bench-{s}"))?);
        let mut events = vec![consent(&policies, "EU", ConsentMethod::Banner, "en")?];
        for i in 0..3 {
            events.push(page_view(s, i)?);
        }
        requests.push(AppendRequest { subject, expected: ExpectedVersion::Any, events });
        if requests.len() == 1000 || s + 1 == subjects {
            for r in store.append_batch(std::mem::take(&mut requests)) {
                r?;
            }
        }
    }
    let keys = SigningKeys::generate()?;
    let token = Issuer::issue(&keys, &AuthConfig::default(), Role::Cms, Duration::from_secs(3600), None, None, &[])?;
    let auth = Arc::new(Auth::new(keys, AuthConfig::default()));
    let mut collect = CollectState::build(Arc::clone(&store), Arc::new(policies), auth)?;
    let open = Rate { per_second: 1e9, burst: 1e9 };
    collect.limits = Arc::new(RateLimiter::new(Limits { per_address: open, per_key: open }));
    let keyring = Keyring::open(dir.path(), &master)?;
    let controller = ControllerFile::builtin()?;
    let options = PrivacyOptions::from_controller(&controller);
    let privacy = Privacy::open(dir.path(), &keyring, collect.clone(), controller, options)?;
    let personalizer = lethe_personalize::Personalizer::open(
        dir.path(),
        &master,
        Arc::clone(&privacy),
        lethe_personalize::TrainConfig::default(),
    )?;
    let views = Arc::new(lethe_personalize::Views::replay(Arc::clone(&store), &collect.policies)?);
    let slots = lethe_decide::Slots::parse("bench-slots.toml", &slots_toml(), &collect.policies)?;
    let engine =
        lethe_decide::Engine::open(slots, collect.clone(), Arc::clone(&views), personalizer, Arc::clone(&privacy))?;
    privacy.register(engine.clone());
    println!(
        "lethe-bench decide: {subjects} subjects with feature views ({} in the views), {CANDIDATES} candidates, set up in {:.1} s",
        views.subjects(),
        setup.elapsed().as_secs_f64()
    );
    let decide = Arc::new(lethe_decide::DecideState { engine: Arc::clone(&engine), recommenders: Default::default() });
    let lethe_port = start(move || {
        let app = Application::build_with_decisions(
            &Settings { listen: "127.0.0.1:0".into(), workers, ..Settings::default() },
            collect,
            Some(privacy),
            Some(decide),
        )?;
        let port = app.port();
        Ok((port, app.into_server()))
    })?;
    let bare_port = start(move || {
        let server = HttpServer::new(|| App::new().route("/v1/decide", web::post().to(constant)))
            .workers(workers)
            .bind("127.0.0.1:0")?;
        let port = server.addrs()[0].port();
        Ok((port, server.run()))
    })?;
    let bodies: Arc<Vec<Value>> = Arc::new(
        (0..subjects.min(100_000))
            .map(|s| json!({"anonymousId": format!("bench-{s}"), "slot": "bench", "context": {"device": "mobile"}, "count": 5}))
            .collect(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        // As in `lethe serve`: the feature views follow the log every second.
        lethe::background::follow_views(&views)?;
        // Train the engagement model: decisions and their outcomes (a click when the candidate's
        // category is the subject's first one).
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{lethe_port}/v1/decide");
        let trained = Instant::now();
        let mut outcomes = 0;
        for s in 0..2_000usize {
            let r: Value = client.post(&url).bearer_auth(&token).json(&bodies[s % bodies.len()]).send().await?.json().await?;
            let Some(id) = r["decisionId"].as_str().and_then(|d| uuid::Uuid::parse_str(d).ok()) else { continue };
            let chosen: usize = r["variants"][0]["id"].as_str().and_then(|v| v[1..].parse().ok()).unwrap_or(0);
            let kind = if chosen % CATEGORIES == s % CATEGORIES {
                lethe_decide::engine::OutcomeKind::Click
            } else {
                lethe_decide::engine::OutcomeKind::Impression
            };
            if engine.outcome(id, kind, None).is_ok() {
                outcomes += 1;
            }
        }
        println!("online model updated by {outcomes} outcomes in {:.1} s", trained.elapsed().as_secs_f64());
        // The offline engagement model from those receipts, served as the slot's live base.
        tokio::time::sleep(Duration::from_millis(500)).await; // receipts are written in the background
        let offline = Instant::now();
        let e = Arc::clone(&engine);
        let report = tokio::task::spawn_blocking(move || {
            let report = lethe_decide::train::train_engagement(&e, "bench", "bench")?;
            let params = lethe_decide::engine::PolicyParams {
                engagement: Some(report.model_id.clone()),
                ..lethe_decide::engine::PolicyParams::default()
            };
            e.start_canary(0, params, 1000, "bench")?;
            e.promote(0, "bench", None)?;
            anyhow::Ok(report)
        })
        .await??;
        println!(
            "engagement model ({:?}, cv AUC {:.3}) trained offline on {} decisions and promoted in {:.1} s",
            report.algorithm,
            report.cv_auc_mean,
            report.rows,
            offline.elapsed().as_secs_f64()
        );
        let sample: Value = client.post(&url).bearer_auth(&token).json(&bodies[7]).send().await?.json().await?;
        println!(
            "a sample decision: mode {}, {} variants, model {}",
            sample["mode"],
            sample["variants"].as_array().map_or(0, Vec::len),
            sample["modelVersion"]
        );
        if let Some(n) = engine_only {
            return engine_run(&engine, &bodies, usize::try_from(n)?).await;
        }
        if let Some(hold) = hold {
            println!("LETHE_PORT={lethe_port} BARE_PORT={bare_port} SUBJECTS={}", bodies.len());
            println!("TOKEN={token}");
            tokio::time::sleep(Duration::from_secs(hold)).await;
            return anyhow::Ok(());
        }
        println!("{seconds} s per cell, {concurrency} connections, {workers} server workers, 2 cores shared with the load generator");
        let bare = load(format!("http://127.0.0.1:{bare_port}/v1/decide"), token.clone(), Arc::clone(&bodies), concurrency, seconds, None).await;
        row("bare actix, constant (max)", &bare, None);
        let lethe = load(url.clone(), token.clone(), Arc::clone(&bodies), concurrency, seconds, None).await;
        row("lethe /v1/decide, 50 candidates (max)", &lethe, Some(&bare));
        let bare = load(format!("http://127.0.0.1:{bare_port}/v1/decide"), token.clone(), Arc::clone(&bodies), concurrency, seconds, Some(rate)).await;
        row(&format!("bare actix, constant @ {rate:.0}/s"), &bare, None);
        let lethe = load(url, token, Arc::clone(&bodies), concurrency, seconds, Some(rate)).await;
        row(&format!("lethe /v1/decide @ {rate:.0}/s"), &lethe, Some(&bare));
        anyhow::Ok(())
    })
}

/// `--engine N`: decisions straight through `decide_one` on this thread, in batches of 1,000 (after
/// each, the log writer drains the batch's receipts, so that none falls back for a backlog). The
/// baseline, in the same run: as many decisions for subjects with no consent, which the engine
/// answers with the slot's default (consent gate, no features, no model, no receipt). Prints the
/// median and fastest batch (wall time on this thread: the log writer runs beside it on the other
/// core), this thread's CPU time per decision, the log writer's and the feature views' (their reader
/// and applier, which read every receipt back; counted once they have caught up with the log), all
/// over the whole pass (`/proc` counts in 10 ms ticks: use tens of thousands of decisions).
async fn engine_run(engine: &Arc<lethe_decide::Engine>, bodies: &[Value], n: usize) -> anyhow::Result<()> {
    use crate::{cpu_of_this_thread, thread_cpu, LOG_WRITER_THREAD};
    /// The feature views' threads (`lethe::background::follow_views`), as `/proc` shows their names.
    const VIEWS_READER_THREAD: &str = "lethe-views-rea";
    const VIEWS_THREAD: &str = "lethe-views";
    const BATCH: usize = 1_000;
    let request = |subject: String| lethe_decide::engine::DecideRequest {
        subject: Some(SubjectId::parse(&subject).expect("a subject id")),
        slot: "bench".into(),
        device: Some("mobile".into()),
        gpc: false,
        candidates: None,
        count: 5,
        event: None,
        anonymous_only: false,
    };
    let mut medians = Vec::new();
    for personalized in [false, true] {
        let mut per_batch = Vec::new();
        let mut modes = Vec::with_capacity(n);
        let views_cpu =
            || -> anyhow::Result<Duration> { Ok(thread_cpu(VIEWS_READER_THREAD)? + thread_cpu(VIEWS_THREAD)?) };
        let (writer_before, engine_before, views_before) =
            (thread_cpu(LOG_WRITER_THREAD)?, cpu_of_this_thread()?, views_cpu()?);
        let mut done = 0;
        let mut seq = 0usize;
        while done < n {
            let batch = BATCH.min(n - done);
            let requests: Vec<_> = (0..batch)
                .map(|i| {
                    seq = seq.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407 + i);
                    let who = if personalized { "bench" } else { "nobody" };
                    request(format!("{who}-{}", (seq >> 17) % bodies.len()))
                })
                .collect();
            let started = Instant::now();
            for r in requests {
                let d = lethe_decide::api::decide_one(engine, r).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
                modes.push(d.mode);
            }
            per_batch.push(started.elapsed().as_secs_f64() * 1e6 / batch as f64);
            done += batch;
            while engine.receipts_in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let per_decision = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        let engine_us = per_decision(cpu_of_this_thread()? - engine_before);
        let writer_us = per_decision(thread_cpu(LOG_WRITER_THREAD)? - writer_before);
        // The views follow the log every second: wait until they have read and applied the pass.
        let head = engine.collect().store.head();
        let caught_up = Instant::now();
        while engine.views().next() <= head && caught_up.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::ensure!(engine.views().next() > head, "the feature views did not catch up with the log in 60 s");
        let views_us = per_decision(views_cpu()? - views_before);
        let mut counted = std::collections::BTreeMap::<String, usize>::new();
        for m in modes {
            *counted.entry(format!("{m:?}")).or_default() += 1;
        }
        per_batch.sort_by(f64::total_cmp);
        let median = per_batch[per_batch.len() / 2];
        let name = if personalized { "personalized (consenting subjects)" } else { "baseline: no consent, fallback" };
        println!(
            "engine {name:<34} {median:>6.2} µs/decision (median batch; fastest {:.2}), this thread's CPU {engine_us:>5.2} µs, log writer's {writer_us:>5.2} µs, views' {views_us:>5.2} µs  modes {counted:?}",
            per_batch[0],
        );
        medians.push(median);
    }
    println!("engine: a personalized decision costs {:.1}× the baseline (median batches)", medians[1] / medians[0]);
    // Past the limit on waiting receipts (`--max-unindexed`), the log writer indexes them: a
    // subject's waiting receipts share an entry.
    if let Some(i) = engine.collect().store.waiting_runs_indexed().filter(|i| i.entries > 0) {
        println!(
            "engine: the log indexed {} waiting receipts in {} entries ({:.2} a entry)",
            i.runs,
            i.entries,
            i.runs as f64 / i.entries as f64
        );
    }
    Ok(())
}
