// TEMPORARY: A/B micro-benchmark of group commits across many subjects. Not to be kept.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lethe_crypto::MasterSource;
use lethe_domain::{EventType, ExpectedVersion, NewEvent, Pseudonym, Purpose, SchemaVersion, UtcMicros};
use lethe_eventlog::{AppendRequest, EventStore, LogConfig, SledEventLog};

fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn subject(n: u64) -> Pseudonym {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b[8] = 0xab;
    Pseudonym::from_bytes(b)
}

fn event(p: &[u8]) -> NewEvent {
    NewEvent {
        event_type: EventType::parse("page.viewed").unwrap(),
        schema_version: SchemaVersion::new(2).unwrap(),
        purpose: Purpose::parse("analytics").unwrap(),
        time: UtcMicros::now(),
        retention: lethe_domain::Retention::UntilErased,
        payload: p.to_vec(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode: &'static str = if args.get(1).map(String::as_str) == Some("one") { "one" } else { "many" };
    let threads: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(4);
    let secs: u64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(5);
    const SUBJECTS: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let log =
        Arc::new(SledEventLog::open(LogConfig::new(dir.path(), MasterSource::Hex(hex::encode([7u8; 32])))).unwrap());
    let p = vec![0x5au8; 200];
    for chunk in (0..SUBJECTS).collect::<Vec<_>>().chunks(500) {
        let reqs = chunk
            .iter()
            .map(|&s| AppendRequest { subject: subject(s), expected: ExpectedVersion::Any, events: vec![event(&p)] })
            .collect();
        for r in log.append_batch(reqs) {
            r.unwrap();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let c0 = cpu_ticks();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (log, stop, done, p) = (Arc::clone(&log), Arc::clone(&stop), Arc::clone(&done), p.clone());
            std::thread::spawn(move || {
                let mut i = t as u64 * 7919;
                while !stop.load(Ordering::Relaxed) {
                    let reqs: Vec<AppendRequest> = if mode == "many" {
                        (0..100)
                            .map(|_| {
                                i += 1;
                                AppendRequest {
                                    subject: subject(i % SUBJECTS),
                                    expected: ExpectedVersion::Any,
                                    events: vec![event(&p)],
                                }
                            })
                            .collect()
                    } else {
                        i += 1;
                        vec![AppendRequest {
                            subject: subject(i % SUBJECTS),
                            expected: ExpectedVersion::Any,
                            events: (0..100).map(|_| event(&p)).collect(),
                        }]
                    };
                    for r in log.append_batch(reqs) {
                        r.unwrap();
                    }
                    done.fetch_add(100, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let el = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ticks() - c0) as f64 / 100.0;
    let n = done.load(Ordering::Relaxed) as f64;
    // Reads: 2000 subjects' streams.
    let r0 = Instant::now();
    let mut read = 0usize;
    for s in 0..2000u64 {
        read += log.read_stream(&subject(s * 5)).unwrap().len();
    }
    let rd = r0.elapsed().as_secs_f64();
    let blobs = std::fs::read_dir(dir.path().join("log/blobs")).map(|d| d.count()).unwrap_or(0);
    let bytes: u64 = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("blobs={blobs} log_bytes={bytes}");
    println!(
        "mode={mode} threads={threads} events/s={:.0} cpu_us/event={:.2} read_stream: {:.1} us/event ({read} events)",
        n / el,
        cpu / n * 1e6,
        rd / read as f64 * 1e6
    );
}
