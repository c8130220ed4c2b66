//! `lethe-bench`: measures the privacy core against raw sled in one run and prints the figures.
//! Run it in release mode: `cargo run --release -p lethe-bench -- log`.

mod audit;
mod decide;
mod http;
mod load;
mod ml;
mod obd;
mod privacy;

// The allocator the `lethe` binary runs with, so that the figures are those of `lethe serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use lethe_crypto::MasterSource;
use lethe_domain::{
    EventBody, EventType, ExpectedVersion, NewEvent, Position, Pseudonym, Purpose, SchemaVersion, UtcMicros,
};
use lethe_eventlog::{AppendRequest, EventStore, LogConfig, SledEventLog};
use rand::RngCore;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of Lethe's privacy core, side by side with raw sled")]
struct Args {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Debug, Subcommand)]
enum Suite {
    /// Appends, replay, erasure latency and key rotation.
    Log {
        /// Events per append measurement.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events in the replay measurement.
        #[arg(long, default_value_t = 1_000_000)]
        replay_events: u64,
        /// Live subjects in the rotation measurement.
        #[arg(long, default_value_t = 100_000)]
        rotation_subjects: u64,
        /// Events of the large subject in the erasure measurement.
        #[arg(long, default_value_t = 100_000)]
        big_subject_events: u64,
        /// Concurrent writers to try.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
        writers: Vec<usize>,
        /// Subjects of the `receipts` measurement.
        #[arg(long, default_value_t = 100_000)]
        receipt_subjects: u64,
        /// Which measurements to run (also `receipts`: the write path of decision receipts, with
        /// `--events` receipts per cell; and `sled-probe`).
        #[arg(long, value_delimiter = ',', default_value = "appends,replay,erasure,rotation")]
        only: Vec<String>,
    },
    /// The decision API under HTTP load with feature views and a trained model, beside a bare
    /// actix-web handler: the most requests/s, and latency at a fixed rate.
    Decide {
        /// Subjects with feature views.
        #[arg(long, default_value_t = 100_000)]
        subjects: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Server worker threads (both servers).
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Requests per second of the paced run.
        #[arg(long, default_value_t = 5_000.0)]
        rate: f64,
        /// Instead of generating load, print the ports and a token and keep both servers up this many
        /// seconds, for `wrk` (see `tests/load/decide.sh`).
        #[arg(long)]
        hold: Option<u64>,
        /// Most runs of decision receipts the log leaves out of its stream index at once
        /// (`LogConfig::max_unindexed_runs`): a small value measures the log indexing them.
        #[arg(long, default_value_t = lethe_eventlog::DEFAULT_MAX_UNINDEXED_RUNS)]
        max_unindexed: usize,
        /// The log's receipt linger and sync window, as `lethe serve` takes them.
        #[command(flatten)]
        receipts: lethe::cli::ReceiptTiming,
        /// Instead of HTTP load, this many decisions straight through the engine on one thread
        /// (no HTTP, no JSON body), beside as many non-personalized ones: the handler's own cost and
        /// the log writer's per receipt, with less noise than a run under `wrk`.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        engine: Option<u64>,
    },
    /// The Open Bandit Dataset sample replayed through Lethe, and Lethe's policy evaluated off-policy
    /// beside the logged random and Bernoulli Thompson Sampling policies.
    Obd {
        /// Folder with `random/all/all.csv`, `bts/all/all.csv` and `item_context.csv` (written by
        /// `tests/ml/run.sh`).
        #[arg(long, default_value = "target/ml-data/obd")]
        data: std::path::PathBuf,
        /// Exploration share of Lethe's policy.
        #[arg(long, default_value_t = 0.05)]
        epsilon: f64,
    },
    /// The collection API under HTTP load, beside a bare actix-web handler.
    Http {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Server worker threads (both servers).
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Instead of generating load, print the ports and a token and keep both servers up this many
        /// seconds, for an external load generator (see `tests/load/`).
        #[arg(long)]
        hold: Option<u64>,
    },
    /// Privacy operations: erasure to the certificate by subject size and in a burst, and the access
    /// export, each beside its bare storage baseline.
    Privacy {
        /// Subject sizes (events) for erasure latency.
        #[arg(long, value_delimiter = ',', default_value = "10,10000,100000")]
        sizes: Vec<u64>,
        /// Subjects per size and path.
        #[arg(long, default_value_t = 5)]
        per_size: u64,
        /// Subjects in the erasure burst.
        #[arg(long, default_value_t = 10_000)]
        burst: u64,
        /// Events of the exported subject.
        #[arg(long, default_value_t = 10_000)]
        export_events: u64,
    },
    /// The audit chain: append and verify rates, beside plain SHA-256 over the same bytes.
    Audit {
        /// Entries to append and verify.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
    },
    /// A GBM engagement model's predictions for a decision's distinct candidate vectors: Lethe's
    /// row-by-row walk of the trees beside forust's own column-major predict, alternating.
    Gbm {
        /// Rows predicted per call (a 50-candidate slot of the decision benchmark has about 11
        /// distinct vectors).
        #[arg(long, default_value_t = 11)]
        rows: usize,
        /// Calls per timed batch.
        #[arg(long, default_value_t = 20_000)]
        calls: usize,
        /// Batches of each, alternating; the median is printed.
        #[arg(long, default_value_t = 7)]
        batches: usize,
    },
    /// Lethe's engagement models and recommenders on synthetic data and the Open Bandit Dataset sample,
    /// written as CSV for the LightGBM / implicit comparison in `tests/ml/`.
    Ml {
        #[command(flatten)]
        args: ml::MlArgs,
    },
}

const PAYLOAD: usize = 200;
const SUBJECTS_PER_WRITER: u64 = 1000;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.suite {
        Suite::Log {
            events,
            replay_events,
            rotation_subjects,
            big_subject_events,
            writers,
            receipt_subjects,
            only,
        } => {
            println!("lethe-bench log: {PAYLOAD}-byte payloads, durable (fsync) appends, {} cores", cores());
            let on = |name: &str| only.iter().any(|o| o == name);
            if on("appends") {
                appends(events, &writers)?;
            }
            if on("replay") {
                replay(replay_events)?;
            }
            if on("erasure") {
                erasure(big_subject_events)?;
            }
            if on("rotation") {
                rotation(rotation_subjects)?;
            }
            if on("receipts") {
                receipts(receipt_subjects, events)?;
            }
            if on("sled-probe") {
                sled_probe()?;
            }
        }
        Suite::Decide { subjects, seconds, concurrency, workers, rate, hold, max_unindexed, receipts, engine } => {
            decide::run(subjects, seconds, concurrency, workers, rate, hold, max_unindexed, receipts, engine)?;
        }
        Suite::Obd { data, epsilon } => obd::run(&data, epsilon)?,
        Suite::Http { seconds, concurrency, workers, hold } => http::run(seconds, concurrency, workers, hold)?,
        Suite::Audit { entries } => audit::run(entries)?,
        Suite::Ml { args } => ml::run(&args)?,
        Suite::Gbm { rows, calls, batches } => ml::gbm_predict(rows, calls, batches)?,
        Suite::Privacy { sizes, per_size, burst, export_events } => {
            privacy::run(&sizes, per_size, burst, export_events)?
        }
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn open_log(dir: &std::path::Path) -> anyhow::Result<SledEventLog> {
    let master = MasterSource::Hex(hex::encode([7u8; 32]));
    SledEventLog::open(LogConfig::new(dir, master)).context("open log")
}

fn subject(writer: usize, n: u64) -> Pseudonym {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(writer as u64).to_be_bytes());
    b[8..16].copy_from_slice(&n.to_be_bytes());
    Pseudonym::from_bytes(b)
}

fn event(payload: &[u8]) -> NewEvent {
    NewEvent {
        event_type: EventType::parse("page.viewed").expect("valid"),
        schema_version: SchemaVersion::new(2).expect("valid"),
        purpose: Purpose::parse("analytics").expect("valid"),
        time: UtcMicros::now(),
        retention: lethe_domain::Retention::UntilErased,
        payload: payload.to_vec(),
    }
}

fn payload() -> Vec<u8> {
    let mut p = vec![0u8; PAYLOAD];
    rand::thread_rng().fill_bytes(&mut p);
    p
}

/// The log's writer and flusher threads, as `/proc` names them: Linux keeps the first 15 bytes of
/// a thread's name (`lethe-log-writer`, `lethe-log-flusher`).
pub(crate) const LOG_WRITER_THREAD: &str = "lethe-log-write";
const LOG_FLUSHER_THREAD: &str = "lethe-log-flush";

/// The CPU time (user and system) of this process's one thread named `name`, from `/proc`.
pub(crate) fn thread_cpu(name: &str) -> anyhow::Result<Duration> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")?.flatten() {
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else { continue };
        if comm.trim_end() == name {
            found.push(stat_cpu(&task.path().join("stat"))?);
        }
    }
    anyhow::ensure!(found.len() == 1, "{} threads named {name}", found.len());
    Ok(found[0])
}

/// The CPU time (user and system) of the calling thread, from `/proc`.
pub(crate) fn cpu_of_this_thread() -> anyhow::Result<Duration> {
    stat_cpu(std::path::Path::new("/proc/thread-self/stat"))
}

/// The CPU time of a `/proc/…/stat` file. Linux counts it in `USER_HZ` ticks, 100 per second on
/// every architecture it supports today (10 ms each, so a measurement should last seconds).
fn stat_cpu(path: &std::path::Path) -> anyhow::Result<Duration> {
    let ticks = cpu_ticks(&std::fs::read_to_string(path)?).context("unreadable /proc stat line")?;
    Ok(Duration::from_millis(ticks * 10))
}

/// utime + stime of a `/proc/…/stat` line, in clock ticks.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Decision receipts as `/v1/decide` writes them: one event of about 700 bytes for each of many
/// subjects met at random, handed to the log as deferred appends in groups, one group per tick of
/// the receipt writer, at 5 receipts per ms (a larger tick makes larger groups). For each tick: the
/// CPU per receipt of the log's writer thread (staging, sealing, sled's `apply_batch`) and of its
/// flusher thread (the `flush` after the defer window, which writes sled's open buffer and syncs),
/// beside raw sled on one thread applying the same keys at the same pace (one random 42-byte
/// stream key per receipt and one chunk per group, on a tree of that many subjects' stream keys)
/// and flushing as often. The log's tree also holds the subjects' data keys and first events.
fn receipts(subjects: u64, receipts: u64) -> anyhow::Result<()> {
    const RECEIPT: usize = 700;
    /// Receipts per millisecond: `/v1/decide` at 5,000 decisions/s.
    const PER_MS: u64 = 5;
    anyhow::ensure!(subjects > 0 && receipts > 0, "the receipts measurement needs subjects and receipts");
    let defer_ms = u64::try_from(lethe_eventlog::DEFAULT_DEFER_WINDOW.as_millis()).unwrap_or(20);
    println!("\n## Decision receipts ({RECEIPT} bytes, {PER_MS} per ms, over {subjects} subjects; CPU µs per receipt)");
    println!(
        "{:<28} {:>16} {:>14} {:>14} {:>12}",
        "writer tick (group)", "raw sled+flush", "lethe writer", "lethe flusher", "lethe total"
    );
    let mut rng = rand::thread_rng();
    let mut p = vec![0u8; RECEIPT];
    rng.fill_bytes(&mut p);
    // A receipt: one event for subject `s`.
    let receipt =
        |s: u64| AppendRequest { subject: subject(0, s), expected: ExpectedVersion::Any, events: vec![event(&p)] };
    let stream_key = |s: u64, seq: u64| {
        let mut k = Vec::with_capacity(42);
        k.extend_from_slice(b"s/");
        k.extend_from_slice(subject(0, s).as_bytes());
        k.extend_from_slice(&seq.to_be_bytes());
        k
    };
    // Sleeps until the start of group `g`'s tick, so that both sides keep the same pace.
    let pace = |start: Instant, g: u64, tick: Duration| {
        let due = start + tick * u32::try_from(g).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    };
    for tick_ms in [2u64, 10] {
        let tick = Duration::from_millis(tick_ms);
        let per_group = PER_MS * tick_ms;
        let groups = receipts.div_ceil(per_group);
        let total = groups * per_group;
        let who: Vec<Vec<u64>> =
            (0..groups).map(|_| (0..per_group).map(|_| rng.next_u64() % subjects).collect()).collect();

        // Raw sled: the stream index entries and one chunk per group, then a flush as often as
        // the log's defer window lets its flusher run.
        let dir = tempfile::tempdir()?;
        let db = sled::open(dir.path().join("raw"))?;
        for start in (0..subjects).step_by(1000) {
            let mut b = sled::Batch::default();
            for s in start..(start + 1000).min(subjects) {
                b.insert(stream_key(s, 1), &[0u8; 12][..]);
            }
            db.apply_batch(b)?;
        }
        db.flush()?;
        let chunk = vec![0u8; (RECEIPT + 150) * per_group as usize];
        let flush_every = (defer_ms / tick_ms).max(1);
        let before = cpu_of_this_thread()?;
        let start = Instant::now();
        for (g, group) in (0u64..).zip(&who) {
            pace(start, g, tick);
            let mut b = sled::Batch::default();
            let mut k = b"e/".to_vec();
            k.extend_from_slice(&g.to_be_bytes());
            b.insert(k, chunk.as_slice());
            for (i, s) in (0u64..).zip(group) {
                b.insert(stream_key(*s, 2 + g * per_group + i), &[0u8; 12][..]);
            }
            db.apply_batch(b)?;
            if (g + 1) % flush_every == 0 {
                db.flush()?;
            }
        }
        db.flush()?;
        let raw = cpu_of_this_thread()? - before;
        drop(db);

        let dir2 = tempfile::tempdir()?;
        let log = open_log(dir2.path())?;
        for start in (0..subjects).step_by(1000) {
            for r in log.append_batch((start..(start + 1000).min(subjects)).map(receipt).collect()) {
                r?;
            }
        }
        let (tx, rx) = std::sync::mpsc::channel::<bool>();
        let (writer0, flusher0) = (thread_cpu(LOG_WRITER_THREAD)?, thread_cpu(LOG_FLUSHER_THREAD)?);
        let start = Instant::now();
        for (g, group) in (0u64..).zip(&who) {
            pace(start, g, tick);
            let tx = tx.clone();
            log.append_batch_deferred(
                group.iter().copied().map(receipt).collect(),
                Box::new(move |results| {
                    // The receiver outlives every group: it counts them all.
                    let _ = tx.send(results.iter().all(Result::is_ok));
                }),
            );
        }
        drop(tx);
        let answers: Vec<bool> = rx.iter().collect();
        let writer = thread_cpu(LOG_WRITER_THREAD)? - writer0;
        let flusher = thread_cpu(LOG_FLUSHER_THREAD)? - flusher0;
        anyhow::ensure!(answers.len() as u64 == groups && answers.iter().all(|ok| *ok), "a receipt group failed");
        let per = |d: Duration| d.as_secs_f64() * 1e6 / total as f64;
        let cell = format!("{tick_ms} ms ({per_group} receipts)");
        println!(
            "{cell:<28} {:>16.1} {:>14.1} {:>14.1} {:>12.1}",
            per(raw),
            per(writer),
            per(flusher),
            per(writer + flusher)
        );
        // What the receipts waiting for the index cost an open: their marked chunks are read back.
        drop(log);
        let waiting = total.min(lethe_eventlog::DEFAULT_MAX_UNINDEXED_RUNS as u64);
        let started = Instant::now();
        let log = open_log(dir2.path())?;
        let reopened = started.elapsed();
        println!(
            "{:<28} reopened in {:.0} ms with {waiting} receipts waiting for the index",
            "",
            reopened.as_secs_f64() * 1e3
        );
        drop(log);
    }
    Ok(())
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Runs `writers` threads, each doing `per_writer` operations of `batch` events, and returns the
/// elapsed time.
fn run_writers(writers: usize, per_writer: u64, f: Arc<dyn Fn(usize, u64) + Send + Sync>) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let f = Arc::clone(&f);
            std::thread::spawn(move || {
                for i in 0..per_writer {
                    f(w, i);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    start.elapsed()
}

fn appends(events: u64, writers: &[usize]) -> anyhow::Result<()> {
    println!("\n## Appends ({events} events per cell; events/s)");
    println!("{:<8} {:>7} {:>14} {:>14} {:>8}", "writers", "batch", "raw sled", "lethe", "ratio");
    for &batch in &[1u64, 100] {
        for &w in writers {
            let ops = (events / batch / w as u64).max(1);
            let total = ops * batch * w as u64;
            let p = payload();

            let dir = tempfile::tempdir()?;
            let db = sled::open(dir.path().join("raw"))?;
            let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let raw = {
                let (db, p, counter) = (db.clone(), p.clone(), Arc::clone(&counter));
                run_writers(
                    w,
                    ops,
                    Arc::new(move |_, _| {
                        let mut b = sled::Batch::default();
                        for _ in 0..batch {
                            let k = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            b.insert(&k.to_be_bytes()[..], &p[..]);
                        }
                        db.apply_batch(b).expect("raw batch");
                        db.flush().expect("raw flush");
                    }),
                )
            };
            drop(db);

            let dir2 = tempfile::tempdir()?;
            let log: Arc<SledEventLog> = Arc::new(open_log(dir2.path())?);
            // Subjects exist before the clock starts (their data keys are created on first sight,
            // which costs a second fsync; see the new-subjects row).
            let warm: Vec<_> = (0..w)
                .flat_map(|wi| (0..SUBJECTS_PER_WRITER).map(move |n| subject(wi, n)))
                .map(|s| AppendRequest { subject: s, expected: ExpectedVersion::Any, events: vec![event(&p)] })
                .collect();
            for r in log.append_batch(warm) {
                r?;
            }
            let warm_events = log.head().0;
            let lethe = {
                let log = Arc::clone(&log);
                run_writers(
                    w,
                    ops,
                    Arc::new(move |wi, i| {
                        let events = (0..batch).map(|_| event(&p)).collect();
                        let who = subject(wi, i % SUBJECTS_PER_WRITER);
                        let req = AppendRequest { subject: who, expected: ExpectedVersion::Any, events };
                        log.append(req).expect("lethe append");
                    }),
                )
            };
            let stored = log.head().0 - warm_events;
            anyhow::ensure!(stored == total, "lethe stored {stored} of {total}");
            let (r, l) = (rate(total, raw), rate(total, lethe));
            println!("{w:<8} {batch:>7} {r:>14.0} {l:>14.0} {:>7.0}%", 100.0 * l / r);
        }
    }
    // Every append introduces a new subject: its data key is created, wrapped and made durable too.
    let dir = tempfile::tempdir()?;
    let log: Arc<SledEventLog> = Arc::new(open_log(dir.path())?);
    let p = payload();
    let w = writers.iter().copied().max().unwrap_or(1);
    let ops = (events / w as u64).max(1);
    let d = {
        let log = Arc::clone(&log);
        run_writers(
            w,
            ops,
            Arc::new(move |wi, i| {
                let req = AppendRequest {
                    subject: subject(1000 + wi, i),
                    expected: ExpectedVersion::Any,
                    events: vec![event(&p)],
                };
                log.append(req).expect("lethe append");
            }),
        )
    };
    println!("{w:<8} {:>7} {:>14} {:>14.0}   (every event from a new subject)", 1, "-", rate(ops * w as u64, d));
    Ok(())
}

fn fill(log: &SledEventLog, subjects: u64, per_subject: u64) -> anyhow::Result<()> {
    let p = payload();
    let mut reqs = Vec::new();
    for s in 0..subjects {
        let mut left = per_subject;
        while left > 0 {
            let n = left.min(1000);
            left -= n;
            reqs.push(AppendRequest {
                subject: subject(99, s),
                expected: ExpectedVersion::Any,
                events: (0..n).map(|_| event(&p)).collect(),
            });
            if reqs.len() >= 100 {
                for r in log.append_batch(std::mem::take(&mut reqs)) {
                    r?;
                }
            }
        }
    }
    for r in log.append_batch(reqs) {
        r?;
    }
    Ok(())
}

fn replay(n: u64) -> anyhow::Result<()> {
    println!("\n## Replay ({n} events, 10,000 subjects, cold key cache, one thread)");
    let dir = tempfile::tempdir()?;
    {
        let log = open_log(dir.path())?;
        fill(&log, 10_000, n / 10_000)?;
    }
    let log_dir = dir.path().join(lethe_eventlog::LOG_DIR);
    let db = sled::open(&log_dir)?;
    let chunks = lethe_eventlog::RawChunkReader::new(&log_dir);
    let start = Instant::now();
    let mut bytes = 0usize;
    for item in db.scan_prefix(b"e/") {
        // A chunk of the larger groups is in a chunk file: read its bytes there.
        bytes += chunks.resolve(&item?.1)?.len();
    }
    let raw = start.elapsed();
    drop(db);
    let log = open_log(dir.path())?;
    let start = Instant::now();
    let mut plain = 0u64;
    for e in log.read_all(Position(1)) {
        if let EventBody::Plain(p) = e?.body {
            plain += 1;
            std::hint::black_box(p);
        }
    }
    let lethe = start.elapsed();
    anyhow::ensure!(plain == n, "replayed {plain} of {n}");
    std::hint::black_box(bytes);
    println!("{:<44} {:>14.0} events/s", "raw scan, sled + chunk files (no decode)", rate(n, raw));
    println!("{:<44} {:>14.0} events/s", "lethe read_all (decode + AES-256-GCM open)", rate(n, lethe));
    Ok(())
}

fn erasure(big: u64) -> anyhow::Result<()> {
    println!("\n## Erasure latency (fence + key destruction, durable; rotation excluded)");
    let dir = tempfile::tempdir()?;
    let log = open_log(dir.path())?;
    let p = payload();
    let sizes = [(10u64, 6u64), (big, 6)];
    // All subjects are written first, then erased in interleaved order, so that both sizes meet the
    // same background state of the store.
    let mut order = Vec::new();
    for (size, count) in sizes {
        for s in 0..count {
            let who = subject(7, size * 1000 + s);
            let mut left = size;
            while left > 0 {
                let n = left.min(1000);
                left -= n;
                let events = (0..n).map(|_| event(&p)).collect();
                log.append(AppendRequest { subject: who, expected: ExpectedVersion::Any, events })?;
            }
            order.push((size, s, who));
        }
    }
    order.sort_by_key(|(size, s, _)| (*s, *size));
    std::thread::sleep(Duration::from_secs(2));
    // Warm-up: the first erasure after a large write pays for sled's deferred work.
    log.erase(&subject(8, 0))?;
    let mut times: std::collections::BTreeMap<u64, Vec<Duration>> = Default::default();
    for (size, _, who) in order {
        let start = Instant::now();
        let receipt = log.erase(&who)?;
        times.entry(size).or_default().push(start.elapsed());
        anyhow::ensure!(receipt.events_shredded == size, "receipt counts {}", receipt.events_shredded);
    }
    let mut medians = Vec::new();
    for (size, mut t) in times {
        t.sort();
        let median = t[t.len() / 2];
        println!(
            "{:<16} median {:>8.3} ms   max {:>8.3} ms   ({} subjects)",
            format!("{size} events"),
            median.as_secs_f64() * 1e3,
            t.last().expect("non-empty").as_secs_f64() * 1e3,
            t.len()
        );
        medians.push(median);
    }
    println!("ratio of medians (large / small): {:.2}", medians[1].as_secs_f64() / medians[0].as_secs_f64());
    Ok(())
}

/// Raw sled, one thread: how the durable insert rate grows with the batch size.
fn sled_probe() -> anyhow::Result<()> {
    println!("\n## Raw sled, one thread, apply_batch + flush");
    let p = payload();
    for batch in [1u64, 100, 1000, 10_000] {
        let dir = tempfile::tempdir()?;
        let db = sled::open(dir.path().join("raw"))?;
        let total = 200_000u64.min(batch * 2000);
        let start = Instant::now();
        let mut k = 0u64;
        while k < total {
            let mut b = sled::Batch::default();
            for _ in 0..batch {
                b.insert(&k.to_be_bytes()[..], &p[..]);
                k += 1;
            }
            db.apply_batch(b)?;
            db.flush()?;
        }
        println!("batch {batch:>6}: {:>10.0} events/s", rate(total, start.elapsed()));
    }
    Ok(())
}

fn rotation(subjects: u64) -> anyhow::Result<()> {
    println!("\n## Key rotation ({subjects} live subjects)");
    let dir = tempfile::tempdir()?;
    let log = open_log(dir.path())?;
    fill(&log, subjects, 1)?;
    let start = Instant::now();
    let report = log.rotate_keys()?;
    let d = start.elapsed();
    anyhow::ensure!(report.keys_rewrapped == subjects, "re-wrapped {}", report.keys_rewrapped);
    println!(
        "rotate epoch {} -> {}: {} keys re-wrapped in {:.3} s ({:.0} keys/s)",
        report.from_epoch,
        report.to_epoch,
        report.keys_rewrapped,
        d.as_secs_f64(),
        rate(subjects, d)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_reads_utime_and_stime_after_a_command_with_spaces_and_parentheses() {
        // pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime …
        let stat = "4242 (actix-rt|system (2)) S 1 4242 4242 0 -1 4194560 120 0 0 0 1234 56 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(stat), Some(1290));
        assert_eq!(cpu_ticks("4242 (truncated) S 1"), None);
    }

    #[test]
    fn the_cpu_time_of_this_thread_grows_while_it_works() {
        let before = cpu_of_this_thread().expect("read");
        let started = Instant::now();
        let mut x = 0u64;
        // A tick is 10 ms of CPU; two seconds of wall time leave room for a busy machine.
        while cpu_of_this_thread().expect("read") == before && started.elapsed() < Duration::from_secs(2) {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(cpu_of_this_thread().expect("read") > before, "no CPU time read for this thread");
    }
}
