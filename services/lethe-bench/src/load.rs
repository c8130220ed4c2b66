//! What the HTTP benchmarks share: a server on its own actix system, a load generator (closed loop,
//! or paced with latency measured from the scheduled send), percentiles, and the consent record of a
//! synthetic subject.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use lethe_consent::{ConsentMethod, ConsentRecord, NoticeRef, PurposeChoice};
use lethe_domain::{EventType, NewEvent, Purpose, Retention, SchemaVersion, UtcMicros};
use lethe_policy::Policies;
use serde_json::Value;

/// Starts a server on its own thread and actix system; returns its port.
pub fn start<F>(make: F) -> anyhow::Result<u16>
where
    F: FnOnce() -> anyhow::Result<(u16, actix_web::dev::Server)> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            match make() {
                Ok((port, server)) => {
                    let _ = tx.send(Ok(port));
                    let _ = server.await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
    });
    rx.recv().context("server thread")?
}

/// The outcome of one load run.
pub struct Run {
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Run {
    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends `bodies` round-robin from `concurrency` tasks for `seconds`. `rate`: None for as fast as possible (closed loop), else requests/s in total (open loop, latency
/// from the scheduled time).
pub async fn load(
    url: String,
    token: String,
    bodies: Arc<Vec<Value>>,
    concurrency: usize,
    seconds: u64,
    rate: Option<f64>,
) -> Run {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let all = Arc::new(Mutex::new((Vec::new(), 0u64)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (client, url, token, bodies, stop, all) =
            (client.clone(), url.clone(), token.clone(), Arc::clone(&bodies), Arc::clone(&stop), Arc::clone(&all));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = t;
            let period = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r));
            let mut next = Instant::now() + period.map_or(Duration::ZERO, |p| p.mul_f64(t as f64 / concurrency as f64));
            while !stop.load(Ordering::Relaxed) {
                if period.is_some() {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
                }
                let body = &bodies[i % bodies.len()];
                i += concurrency;
                let scheduled = if period.is_some() { next } else { Instant::now() };
                match client.post(&url).bearer_auth(&token).json(body).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(scheduled.elapsed());
                    }
                    _ => errors += 1,
                }
                if let Some(p) = period {
                    next += p;
                }
            }
            let mut all = all.lock().expect("lock");
            all.0.extend(lat);
            all.1 += errors;
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let (mut latencies, errors) = std::mem::take(&mut *all.lock().expect("lock"));
    latencies.sort();
    Run { latencies, errors, elapsed }
}

/// The `p` quantile of sorted latencies, in milliseconds.
pub fn pct(l: &[Duration], p: f64) -> f64 {
    if l.is_empty() {
        return f64::NAN;
    }
    let i = ((l.len() as f64 - 1.0) * p).round() as usize;
    l[i].as_secs_f64() * 1e3
}

/// A consent record granting analytics and personalization, as the event the ledger stores.
pub fn consent(
    policies: &Policies,
    jurisdiction: &str,
    method: ConsentMethod,
    locale: &str,
) -> anyhow::Result<NewEvent> {
    let notice = policies.notices().next().context("a notice")?;
    let record = ConsentRecord {
        record_id: uuid::Uuid::new_v4(),
        collected_at: UtcMicros::now(),
        jurisdiction: jurisdiction.into(),
        method,
        notice: NoticeRef {
            id: notice.id().as_str().to_owned(),
            version: notice.version().get(),
            content_hash: notice.content_hash().to_owned(),
        },
        choices: ["analytics", "personalization"]
            .iter()
            .map(|p| PurposeChoice {
                purpose: Purpose::parse(p).expect("valid"),
                granted: true,
                legal_basis: "consent".into(),
            })
            .collect(),
        recipients: vec![],
        locale: locale.into(),
        gpc: false,
        sdk_version: None,
        subject_is_user: false,
    };
    Ok(NewEvent {
        event_type: EventType::parse("consent.changed")?,
        schema_version: SchemaVersion::new(1)?,
        purpose: Purpose::necessary(),
        time: record.collected_at,
        retention: Retention::UntilErased,
        payload: serde_json::to_vec(&record)?,
    })
}
