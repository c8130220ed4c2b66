//! Memory per subject of the feature views, measured on synthetic subjects projected through
//! `Projector::apply` (consent record, page and product views, clicks, scroll, dwell, sessions,
//! purchases, likes, ratings), beside a baseline holding the same data as a
//! `HashMap<String, serde_json::Value>` (pseudonym hex → the subject's features as JSON).
//!
//! Two measures: the projector's own accounting (capacities × element sizes, hash tables from
//! their bucket counts; `Projector::memory_usage`), and the growth of the process's resident set
//! (`/proc/self/statm`, Linux), which also pays the allocator's overhead and fragmentation.
//!
//! ```text
//! cargo run --release -p lethe-features --example memory [-- SUBJECTS]
//! ```
//!
//! Default: 1,000,000 subjects (a few minutes on two busy cores; about 2 GB of memory at peak).

use std::collections::HashMap;
use std::time::Instant;

use lethe_consent::{ConsentMethod, ConsentRecord, NoticeRef, PurposeChoice};
use lethe_domain::{
    EventBody, EventEnvelope, EventType, KeyId, Position, Pseudonym, Purpose, RecordedEvent, SchemaVersion, Seq,
    UtcMicros,
};
use lethe_features::{FeatureView, Projector, ProjectorConfig};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ITEMS: u32 = 2_000;
const CATEGORIES: u32 = 40;
const BASELINE_SUBJECTS: usize = 50_000;
/// Metarank's published figure: about 0.8 GiB of Redis per million users.
const METARANK_BYTES_PER_USER: f64 = 0.8 * 1024.0 * 1024.0 * 1024.0 / 1_000_000.0;
const T0: i64 = 1_772_445_600_000_000;

/// Resident set size in bytes (0 where `/proc` is missing).
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()))
        .map_or(0, |pages| pages * 4096)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u32) -> u32 {
        u32::try_from(self.next() % u64::from(n)).unwrap_or(0)
    }

    /// Skewed towards small values (popular items and categories).
    fn skewed(&mut self, n: u32) -> u32 {
        let a = self.below(n);
        let b = self.below(n);
        a.min(b)
    }
}

/// Envelopes are cloned from one template per event type.
struct Templates {
    by_type: HashMap<&'static str, EventEnvelope>,
}

impl Templates {
    fn new() -> Self {
        let mut by_type = HashMap::new();
        for (ty, purpose) in [
            ("consent.changed", "necessary"),
            ("catalog.item_upserted", "necessary"),
            ("page.viewed", "analytics"),
            ("product.viewed", "analytics"),
            ("element.clicked", "analytics"),
            ("scroll.depth", "analytics"),
            ("time.spent", "analytics"),
            ("session.ended", "analytics"),
            ("purchase.completed", "personalization"),
            ("item.liked", "personalization"),
            ("item.rated", "personalization"),
        ] {
            let version = if ty == "page.viewed" { 2 } else { 1 };
            by_type.insert(
                ty,
                EventEnvelope {
                    position: Position(0),
                    subject: Pseudonym::from_bytes([0; 32]),
                    seq: Seq(0),
                    event_type: EventType::parse(ty).expect("valid type"),
                    schema_version: SchemaVersion::new(version).expect("valid version"),
                    purpose: Purpose::parse(purpose).expect("valid purpose"),
                    time: UtcMicros(0),
                    key_id: KeyId::PERMANENT,
                },
            );
        }
        Self { by_type }
    }

    fn event(&self, ty: &'static str, subject: Pseudonym, position: u64, time: i64, payload: Vec<u8>) -> RecordedEvent {
        let mut envelope = self.by_type[ty].clone();
        envelope.subject = subject;
        envelope.position = Position(position);
        envelope.time = UtcMicros(time);
        RecordedEvent { envelope, body: EventBody::Plain(payload) }
    }
}

fn context() -> Value {
    json!({"device_class": "mobile", "location": {"country": "DE", "region": "BY"}, "daypart": "evening", "referrer_class": "search"})
}

fn track(properties: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"message_id": "m", "event": "e", "properties": properties, "context": context()}))
        .expect("serializes")
}

fn pseudonym(i: u64) -> Pseudonym {
    Pseudonym::from_bytes(Sha256::digest(i.to_le_bytes()).into())
}

/// Applies one synthetic subject's events: a consent grant and 5 to 40 behavior events.
fn subject(p: &mut Projector, t: &Templates, rng: &mut Rng, i: u64, position: &mut u64, payloads: &[Vec<u8>]) {
    let s = pseudonym(i);
    let mut time = T0 + i64::try_from(i % 1_000_000).unwrap_or(0) * 1_000;
    let mut emit = |p: &mut Projector, ty: &'static str, payload: Vec<u8>, time: i64| {
        *position += 1;
        p.apply(&t.event(ty, s, *position, time, payload));
    };
    let record = ConsentRecord {
        record_id: uuid::Uuid::from_u64_pair(0, i),
        collected_at: UtcMicros(time),
        jurisdiction: "EU".into(),
        method: ConsentMethod::Banner,
        notice: NoticeRef { id: "banner".into(), version: 1, content_hash: "00".repeat(32) },
        choices: ["analytics", "personalization"]
            .iter()
            .map(|p| PurposeChoice {
                purpose: Purpose::parse(p).expect("valid"),
                granted: true,
                legal_basis: "consent".into(),
            })
            .collect(),
        recipients: vec![],
        locale: "en".into(),
        gpc: false,
        sdk_version: None,
        subject_is_user: false,
    };
    emit(p, "consent.changed", serde_json::to_vec(&record).expect("serializes"), time);
    let n = 5 + rng.below(36);
    for _ in 0..n {
        time += 1_000_000;
        let item = rng.skewed(ITEMS);
        let (ty, payload) = match rng.below(100) {
            0..=24 => ("page.viewed", payloads[usize::try_from(rng.skewed(CATEGORIES)).unwrap_or(0)].clone()),
            25..=54 => ("product.viewed", track(&json!({"product_id": format!("sku-{item}")}))),
            55..=69 => ("element.clicked", track(&json!({"product_id": format!("sku-{item}")}))),
            70..=76 => ("scroll.depth", track(&json!({"depth": rng.below(101)}))),
            77..=83 => ("time.spent", track(&json!({"seconds": rng.below(600)}))),
            84..=88 => ("session.ended", track(&json!({"seconds": rng.below(3600), "pages": rng.below(20)}))),
            89..=92 => (
                "purchase.completed",
                track(&json!({"revenue": f64::from(rng.below(20_000)) / 100.0,
                    "products": [{"product_id": format!("sku-{item}"), "price": 10.0}]})),
            ),
            93..=96 => ("item.liked", track(&json!({"item": format!("sku-{item}")}))),
            _ => ("item.rated", track(&json!({"item": format!("sku-{item}"), "rating": 1 + rng.below(5)}))),
        };
        emit(p, ty, payload, time);
    }
}

#[allow(clippy::cast_precision_loss)]
fn main() {
    let subjects: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let policies = lethe_policy::Policies::builtin().expect("builtin policies");
    let config = ProjectorConfig::from_policies(&policies).expect("personalization is declared");
    let templates = Templates::new();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let page_payloads: Vec<Vec<u8>> = (0..CATEGORIES)
        .map(|c| {
            serde_json::to_vec(&json!({"message_id": "m", "properties": {"category": format!("category-{c}")},
                "context": context(), "host": "shop.example", "path": "/", "title": "t"}))
            .expect("serializes")
        })
        .collect();

    let rss_before = rss();
    let started = Instant::now();
    let mut p = Projector::new(config);
    let mut position = 0u64;
    for item in 0..ITEMS {
        position += 1;
        let body = json!({"id": format!("sku-{item}"), "category": format!("category-{}", item % CATEGORIES),
            "text": format!("Item {item}"), "features": {"price": f64::from(item % 200) + 0.99}});
        let cms = Pseudonym::from_bytes([0xCC; 32]);
        p.apply(&templates.event("catalog.item_upserted", cms, position, T0, serde_json::to_vec(&body).expect("json")));
    }
    for i in 0..subjects {
        subject(&mut p, &templates, &mut rng, i, &mut position, &page_payloads);
    }
    let elapsed = started.elapsed();
    let rss_after = rss();
    let usage = p.memory_usage();
    let stats = p.stats();
    let n = usage.subjects.max(1) as f64;

    println!(
        "lethe-features memory, {} subjects, {} events applied in {:.1} s ({:.0} events/s)",
        usage.subjects,
        stats.events,
        elapsed.as_secs_f64(),
        stats.events as f64 / elapsed.as_secs_f64()
    );
    println!("  skipped: {} malformed, {} without consent", stats.malformed, stats.not_consented);
    println!("  size_of::<FeatureView>()              {:>8} B", std::mem::size_of::<FeatureView>());
    println!(
        "  accounting, serving features            {:>8.1} B/subject (index {:.1} + views {:.1})",
        usage.serving_bytes_per_subject(),
        usage.index_bytes as f64 / n,
        usage.view_bytes as f64 / n
    );
    println!(
        "  accounting, + item ledgers              {:>8.1} B/subject",
        (usage.index_bytes + usage.view_bytes + usage.ledger_bytes) as f64 / n
    );
    println!("  accounting, everything (vocab, catalog) {:>8.1} B/subject", usage.total_bytes_per_subject());
    println!(
        "  resident set growth                     {:>8.1} B/subject",
        rss_after.saturating_sub(rss_before) as f64 / n
    );

    // Erasure: one forget sweeps the vocabularies over every subject.
    let t = Instant::now();
    let forgets = 5u64;
    for i in 0..forgets {
        p.forget(&pseudonym(i * 7));
    }
    println!(
        "  forget (with vocabulary sweep)          {:>8.1} ms each",
        t.elapsed().as_secs_f64() * 1000.0 / forgets as f64
    );

    let t = Instant::now();
    let snapshot = p.snapshot_bytes();
    let snap_time = t.elapsed();
    let t = Instant::now();
    let sealed = p.checkpoint(&[7u8; 32]);
    let seal_time = t.elapsed();
    println!(
        "  snapshot {:.1} B/subject in {:.2} s; checkpoint {} bytes in {:.2} s",
        snapshot.len() as f64 / n,
        snap_time.as_secs_f64(),
        sealed.len(),
        seal_time.as_secs_f64()
    );
    drop(snapshot);
    drop(sealed);

    // Baseline: the same features as JSON in a HashMap<String, Value>, for a sample of subjects.
    let sample = usage.subjects.min(BASELINE_SUBJECTS);
    let rss_before = rss();
    let mut baseline: HashMap<String, Value> = HashMap::new();
    let mut i = forgets * 7;
    while baseline.len() < sample && i < subjects + forgets * 7 {
        let s = pseudonym(i);
        if let Some(v) = p.export(&s) {
            baseline.insert(s.to_hex(), v);
        }
        i += 1;
    }
    let rss_after = rss();
    let base = rss_after.saturating_sub(rss_before) as f64 / baseline.len().max(1) as f64;
    let text: usize = baseline.values().map(|v| serde_json::to_vec(v).map_or(0, |b| b.len())).sum();
    println!(
        "  baseline HashMap<String, serde_json::Value> ({} subjects) {:>8.1} B/subject (resident set growth)",
        baseline.len(),
        base
    );
    println!(
        "  baseline as hex key + compact JSON text (Redis-style string) {:>8.1} B/subject (bytes only)",
        (text + 64 * baseline.len()) as f64 / baseline.len().max(1) as f64
    );
    println!("  Metarank (published, ~0.8 GiB Redis per million users)   {:>8.1} B/user", METARANK_BYTES_PER_USER);
}
