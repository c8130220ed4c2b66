//! `lethe-bench privacy`: the privacy operations end to end, each beside its bare storage baseline in
//! the same run — erasure to the certificate (request log, crypto-shredding, certificate, audit) beside
//! the log's bare erasure, for subjects of several sizes and in a burst; and the access export of a
//! large subject beside reading and decrypting its events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lethe_auth::{AuthConfig, SigningKeys};
use lethe_collect::auth::Auth;
use lethe_collect::CollectState;
use lethe_crypto::{Keyring, MasterSource};
use lethe_domain::{EventType, ExpectedVersion, NewEvent, Pseudonym, Purpose, Retention, SchemaVersion, UtcMicros};
use lethe_dsr::{Channel, Law};
use lethe_eventlog::{AppendRequest, EventStore, LogConfig, SledEventLog};
use lethe_policy::Policies;
use lethe_privacy::controller::ControllerFile;
use lethe_privacy::erasure::{self, Asker};
use lethe_privacy::{Privacy, PrivacyOptions};

fn open(dir: &std::path::Path) -> anyhow::Result<Arc<Privacy>> {
    let master = MasterSource::Hex(hex::encode([9u8; 32]));
    let store: Arc<dyn EventStore> = Arc::new(SledEventLog::open(LogConfig::new(dir, master.clone()))?);
    let auth = Arc::new(Auth::new(SigningKeys::generate()?, AuthConfig::default()));
    let collect = CollectState::build(store, Arc::new(Policies::builtin()?), auth)?;
    let keyring = Keyring::open(dir, &master)?;
    let controller = ControllerFile::builtin()?;
    let options = PrivacyOptions::from_controller(&controller);
    Privacy::open(dir, &keyring, collect, controller, options).context("open privacy")
}

fn who(tag: u8, n: u64) -> Pseudonym {
    let mut b = [0u8; 32];
    b[0] = tag;
    b[8..16].copy_from_slice(&n.to_be_bytes());
    Pseudonym::from_bytes(b)
}

fn json_event(i: u64) -> NewEvent {
    let payload = serde_json::json!({
        "message_id": format!("m-{i}"), "page": {"path": format!("/products/{}", i % 97), "referrer_class": "search"},
        "device_class": "mobile", "daypart": "evening", "scroll_depth": 75, "dwell_ms": 12_000 + i % 1000,
    });
    NewEvent {
        event_type: EventType::parse("page.viewed").expect("valid"),
        schema_version: SchemaVersion::new(2).expect("valid"),
        purpose: Purpose::parse("analytics").expect("valid"),
        time: UtcMicros::now(),
        retention: Retention::Days(395),
        payload: serde_json::to_vec(&payload).expect("serializes"),
    }
}

fn fill(store: &dyn EventStore, subject: Pseudonym, events: u64) -> anyhow::Result<()> {
    let mut left = events;
    while left > 0 {
        let n = left.min(1000);
        let events = (0..n).map(|i| json_event(events - left + i)).collect();
        left -= n;
        store.append(AppendRequest { subject, expected: ExpectedVersion::Any, events })?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut t: Vec<Duration>) -> (Duration, Duration) {
    t.sort();
    (t[t.len() / 2], *t.last().expect("non-empty"))
}

const ASKER: Asker<'static> = Asker { role: "admin", law: Law::Gdpr, channel: Channel::Api };

/// Runs the suite.
///
/// # Errors
/// Any storage failure.
pub fn run(sizes: &[u64], per_size: u64, burst: u64, export_events: u64) -> anyhow::Result<()> {
    println!("lethe-bench privacy: durable (fsync) throughout, {} cores", super::cores());
    latency(sizes, per_size)?;
    burst_run(burst)?;
    export(export_events)?;
    Ok(())
}

/// Erasure latency by subject size: the full erasure to its certificate beside the log's bare
/// erasure (fence and key destruction), subjects of all sizes interleaved.
fn latency(sizes: &[u64], per_size: u64) -> anyhow::Result<()> {
    println!("\n## Erasure latency to the certificate (rotation excluded), {per_size} subjects per size and path");
    let dir = tempfile::tempdir()?;
    let privacy = open(dir.path())?;
    let store = Arc::clone(&privacy.collect.store);
    let mut order = Vec::new();
    for (k, &size) in sizes.iter().enumerate() {
        for s in 0..per_size * 2 {
            let subject = who(k as u8 + 1, s);
            fill(store.as_ref(), subject, size)?;
            order.push((s, size, subject, s % 2 == 0));
        }
    }
    order.sort_by_key(|(s, size, _, _)| (*s, *size));
    std::thread::sleep(Duration::from_secs(1));
    // Warm-up of both paths.
    erasure::erase(&privacy, &who(200, 0), ASKER).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    store.erase(&who(200, 1))?;
    let mut full: std::collections::BTreeMap<u64, Vec<Duration>> = Default::default();
    let mut bare: std::collections::BTreeMap<u64, Vec<Duration>> = Default::default();
    for (_, size, subject, through_privacy) in order {
        let start = Instant::now();
        if through_privacy {
            let cert = erasure::erase(&privacy, &subject, ASKER).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            full.entry(size).or_default().push(start.elapsed());
            anyhow::ensure!(cert.events_shredded == size, "certificate counts {}", cert.events_shredded);
        } else {
            let receipt = store.erase(&subject)?;
            bare.entry(size).or_default().push(start.elapsed());
            anyhow::ensure!(receipt.events_shredded == size, "receipt counts {}", receipt.events_shredded);
        }
    }
    println!(
        "{:<14} {:>22} {:>22} {:>10}",
        "subject", "certificate (median/max)", "bare log erase (med/max)", "overhead"
    );
    let mut medians = Vec::new();
    for &size in sizes {
        let (fm, fx) = median(full.remove(&size).unwrap_or_default());
        let (bm, bx) = median(bare.remove(&size).unwrap_or_default());
        println!(
            "{:<14} {:>10.3} / {:>8.3} ms {:>10.3} / {:>8.3} ms {:>8.3} ms",
            format!("{size} events"),
            ms(fm),
            ms(fx),
            ms(bm),
            ms(bx),
            ms(fm.saturating_sub(bm))
        );
        medians.push(fm);
    }
    if let (Some(first), Some(last)) = (medians.first(), medians.last()) {
        println!(
            "ratio of certificate medians (largest / smallest subject): {:.2}",
            last.as_secs_f64() / first.as_secs_f64()
        );
    }
    Ok(())
}

/// A burst of erasures of small subjects, one after the other, beside the same burst through the
/// log alone.
fn burst_run(n: u64) -> anyhow::Result<()> {
    println!("\n## Erasure burst: {n} subjects of 10 events, one thread");
    let dir = tempfile::tempdir()?;
    let privacy = open(dir.path())?;
    let store = Arc::clone(&privacy.collect.store);
    for s in 0..2 * n {
        // Ten events per subject, written as 100 subjects per group commit.
        if s % 100 == 0 {
            let reqs = (s..(s + 100).min(2 * n))
                .map(|t| AppendRequest {
                    subject: who(50, t),
                    expected: ExpectedVersion::Any,
                    events: (0..10).map(json_event).collect(),
                })
                .collect();
            for r in store.append_batch(reqs) {
                r?;
            }
        }
    }
    let start = Instant::now();
    for s in 0..n {
        erasure::erase(&privacy, &who(50, s), ASKER).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    }
    let full = start.elapsed();
    let start = Instant::now();
    for s in n..2 * n {
        store.erase(&who(50, s))?;
    }
    let bare = start.elapsed();
    println!(
        "certificates: {:>8.0} erasures/s ({:.1} s)   bare log erase: {:>8.0} erasures/s ({:.1} s)   ratio {:.2}",
        n as f64 / full.as_secs_f64(),
        full.as_secs_f64(),
        n as f64 / bare.as_secs_f64(),
        bare.as_secs_f64(),
        full.as_secs_f64() / bare.as_secs_f64()
    );
    let start = Instant::now();
    let rotation = store.rotate_keys()?;
    println!(
        "then one rotation finalizes them: {} erasures, {} keys re-wrapped, {:.1} ms",
        rotation.erasures_finalized,
        rotation.keys_rewrapped,
        ms(start.elapsed())
    );
    Ok(())
}

/// The access export of one large subject beside reading and decrypting its events.
fn export(events: u64) -> anyhow::Result<()> {
    println!("\n## Access export of a subject with {events} events");
    let dir = tempfile::tempdir()?;
    let privacy = open(dir.path())?;
    let store = Arc::clone(&privacy.collect.store);
    let subject = who(90, 0);
    fill(store.as_ref(), subject, events)?;
    let mut reads = Vec::new();
    let mut exports = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let read = store.read_stream(&subject)?;
        reads.push(start.elapsed());
        anyhow::ensure!(read.len() as u64 == events);
        let start = Instant::now();
        let mut out = Vec::new();
        lethe_privacy::rights::export_to(&privacy, &subject, "admin", &mut out)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        exports.push(start.elapsed());
        bytes = out.len();
    }
    let (em, _) = median(exports);
    let (rm, _) = median(reads);
    println!(
        "export (request, audit, decrypt, JSON): median {:.1} ms, {:.1} MB   read + decrypt alone: median {:.1} ms   ratio {:.2}",
        ms(em),
        bytes as f64 / 1e6,
        ms(rm),
        em.as_secs_f64() / rm.as_secs_f64()
    );
    Ok(())
}
