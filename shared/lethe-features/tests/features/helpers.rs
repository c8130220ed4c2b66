//! Building logs of recorded events the way the collector writes them.

use std::collections::HashMap;

use lethe_consent::{ConsentMethod, ConsentRecord, NoticeRef, PurposeChoice};
use lethe_domain::{
    EventBody, EventEnvelope, EventType, KeyId, Position, Pseudonym, Purpose, RecordedEvent, SchemaVersion, Seq,
    UtcMicros,
};
use lethe_features::{Projector, ProjectorConfig};
use lethe_policy::Policies;
use serde_json::{json, Value};

/// One second in microseconds.
pub const S: i64 = 1_000_000;
/// 2026-03-02T10:00:00Z.
pub const T0: i64 = 1_772_445_600 * S;

pub fn subject(n: u8) -> Pseudonym {
    let mut b = [n; 32];
    b[0] = 0xA5; // never all-equal bytes, so searching a snapshot for it means something
    b[31] = n.wrapping_mul(7).wrapping_add(1);
    Pseudonym::from_bytes(b)
}

pub fn config() -> ProjectorConfig {
    ProjectorConfig::from_policies(&Policies::builtin().expect("builtin policies")).expect("personalization declared")
}

pub fn project(events: &[RecordedEvent]) -> Projector {
    let mut p = Projector::new(config());
    for e in events {
        p.apply(e);
    }
    p
}

pub fn consent_record(at: i64, choices: &[(&str, bool)], method: ConsentMethod, gpc: bool) -> ConsentRecord {
    ConsentRecord {
        record_id: uuid::Uuid::from_u128(u128::try_from(at).unwrap_or(0)),
        collected_at: UtcMicros(at),
        jurisdiction: "EU".into(),
        method,
        notice: NoticeRef { id: "banner".into(), version: 1, content_hash: "00".repeat(32) },
        choices: choices
            .iter()
            .map(|(p, g)| PurposeChoice {
                purpose: Purpose::parse(p).unwrap(),
                granted: *g,
                legal_basis: "consent".into(),
            })
            .collect(),
        recipients: vec![],
        locale: "en".into(),
        gpc,
        sdk_version: None,
        subject_is_user: false,
    }
}

/// The collector's payload of a track call.
pub fn track(event: &str, properties: Value) -> Value {
    json!({
        "message_id": format!("m-{event}-{properties}"),
        "event": event,
        "properties": properties,
        "context": {
            "device_class": "mobile",
            "location": {"country": "DE", "region": "BY"},
            "daypart": "evening",
            "referrer_class": "search",
        },
    })
}

/// The collector's payload of a page call.
pub fn page(properties: Value) -> Value {
    json!({
        "message_id": "p",
        "properties": properties,
        "context": {"device_class": "desktop", "location": {"country": null, "region": null},
                    "daypart": "morning", "referrer_class": "direct"},
        "host": "shop.example", "path": "/tents", "title": "Tents",
    })
}

/// A log being written: positions and sequences are assigned as the event log would.
#[derive(Debug, Default, Clone)]
pub struct Log {
    pub events: Vec<RecordedEvent>,
    seqs: HashMap<Pseudonym, u64>,
}

impl Log {
    pub fn raw(&mut self, s: Pseudonym, at: i64, event_type: &str, purpose: &str, body: EventBody) -> &mut Self {
        let seq = self.seqs.entry(s).or_default();
        *seq += 1;
        let version = if event_type == "page.viewed" { 2 } else { 1 };
        self.events.push(RecordedEvent {
            envelope: EventEnvelope {
                position: Position(self.events.len() as u64 + 1),
                subject: s,
                seq: Seq(*seq),
                event_type: EventType::parse(event_type).unwrap(),
                schema_version: SchemaVersion::new(version).unwrap(),
                purpose: Purpose::parse(purpose).unwrap(),
                time: UtcMicros(at),
                key_id: KeyId::PERMANENT,
            },
            body,
        });
        self
    }

    pub fn consent(&mut self, s: Pseudonym, at: i64, choices: &[(&str, bool)]) -> &mut Self {
        let record = consent_record(at, choices, ConsentMethod::Banner, false);
        self.record(s, record)
    }

    pub fn record(&mut self, s: Pseudonym, record: ConsentRecord) -> &mut Self {
        let at = record.collected_at.0;
        self.raw(s, at, "consent.changed", "necessary", EventBody::Plain(serde_json::to_vec(&record).unwrap()))
    }

    pub fn event(&mut self, s: Pseudonym, at: i64, event_type: &str, payload: &Value) -> &mut Self {
        let purpose = match event_type {
            "purchase.completed" | "item.liked" | "item.disliked" | "item.rated" | "review.submitted"
            | "decision.served" | "outcome.recorded" => "personalization",
            _ => "analytics",
        };
        self.raw(s, at, event_type, purpose, EventBody::Plain(serde_json::to_vec(payload).unwrap()))
    }

    pub fn bytes(&mut self, s: Pseudonym, at: i64, event_type: &str, payload: &[u8]) -> &mut Self {
        self.raw(s, at, event_type, "analytics", EventBody::Plain(payload.to_vec()))
    }

    pub fn item(&mut self, at: i64, body: &Value) -> &mut Self {
        let cms = subject(250);
        self.raw(cms, at, "catalog.item_upserted", "necessary", EventBody::Plain(serde_json::to_vec(body).unwrap()))
    }

    /// A typical shopper: views, clicks, scroll, dwell, a session, a purchase, a like, a rating.
    pub fn shopper(&mut self, s: Pseudonym, start: i64, flavour: u8) -> &mut Self {
        let cat = ["tents", "boots", "stoves", "packs"][usize::from(flavour) % 4];
        let sku = |n: u8| format!("sku-{}", u32::from(flavour) * 10 + u32::from(n));
        self.event(s, start + S, "page.viewed", &page(json!({"category": cat})))
            .event(
                s,
                start + 2 * S,
                "product.viewed",
                &track("Product Viewed", json!({"product_id": sku(1), "category": cat})),
            )
            .event(
                s,
                start + 3 * S,
                "element.clicked",
                &track("Product Clicked", json!({"product_id": sku(1), "category": cat})),
            )
            .event(s, start + 4 * S, "scroll.depth", &track("Scroll Depth", json!({"depth": 40 + u32::from(flavour)})))
            .event(s, start + 5 * S, "time.spent", &track("Time Spent", json!({"seconds": 30})))
            .event(s, start + 6 * S, "product.viewed", &track("Product Viewed", json!({"product_id": sku(2)})))
            .event(
                s,
                start + 7 * S,
                "purchase.completed",
                &track(
                    "Order Completed",
                    json!({"order_id": "o", "revenue": 19.99, "currency": "EUR",
                    "products": [{"product_id": sku(1), "price": 19.99, "quantity": 1}]}),
                ),
            )
            .event(s, start + 8 * S, "item.liked", &track("Product Liked", json!({"item": sku(2)})))
            .event(s, start + 9 * S, "item.rated", &track("Product Rated", json!({"item": sku(1), "rating": 4})))
            .event(s, start + 10 * S, "session.ended", &track("Session Ended", json!({"seconds": 600, "pages": 5})))
    }
}

/// A deterministic shuffle of several subjects' events that keeps each subject's order.
pub fn interleave(events: &[RecordedEvent], seed: u64) -> Vec<RecordedEvent> {
    let mut streams: Vec<Vec<RecordedEvent>> = Vec::new();
    let mut by_subject: HashMap<Pseudonym, usize> = HashMap::new();
    for e in events {
        let i = *by_subject.entry(e.envelope.subject).or_insert_with(|| {
            streams.push(Vec::new());
            streams.len() - 1
        });
        streams[i].push(e.clone());
    }
    for s in &mut streams {
        s.reverse();
    }
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(events.len());
    while out.len() < events.len() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let live: Vec<usize> = (0..streams.len()).filter(|i| !streams[*i].is_empty()).collect();
        let pick = live[usize::try_from(state % live.len() as u64).unwrap()];
        out.extend(streams[pick].pop());
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
