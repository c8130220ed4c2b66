//! Training-set selection (R-TRAIN-1): one pass over the log that folds every subject's consent and
//! gathers its item interactions, then keeps only the subjects whose consent to personalization
//! holds *now*, at training time. A subject who withdrew or was erased after its data was written is
//! out; an event that cannot be read for any reason other than an erasure or an expiry stops the
//! training (fail closed).

use std::collections::{BTreeMap, HashMap};

use lethe_consent::{ConsentHistory, ConsentRecord, CONSENT_CHANGED};
use lethe_domain::{EventBody, Position, Pseudonym, Purpose, UtcMicros};
use lethe_eventlog::EventStore;
use lethe_policy::Policies;
use serde::Serialize;
use serde_json::Value;

use crate::TrainError;

/// The purpose training serves; a subject is trained on only while it grants this one.
pub const PERSONALIZATION: &str = "personalization";

/// How much one interaction counts, by event type.
fn weight(event_type: &str, payload: &Value) -> Option<f64> {
    match event_type {
        "purchase.completed" => Some(5.0),
        "item.liked" => Some(3.0),
        "item.rated" | "review.submitted" => {
            let r = payload.pointer("/properties/rating").or_else(|| payload.pointer("/properties/stars"));
            Some(r.and_then(Value::as_f64).map_or(2.0, |r| (r / 2.5).clamp(0.5, 4.0)))
        }
        "element.clicked" => Some(2.0),
        "item.disliked" => None,
        _ => Some(1.0),
    }
}

/// The item ids an event names: `product_id`, `item_id`, `sku` or `item` in its properties, and the
/// `product_id`s of a purchase's `products`.
fn items(payload: &Value) -> Vec<String> {
    let Some(props) = payload.get("properties") else { return Vec::new() };
    let mut out = Vec::new();
    for key in ["product_id", "item_id", "sku", "item"] {
        if let Some(id) =
            props.get(key).and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string())))
        {
            out.push(id);
            break;
        }
    }
    if let Some(products) = props.get("products").and_then(Value::as_array) {
        for p in products {
            if let Some(id) = p.get("product_id").or_else(|| p.get("sku")).and_then(Value::as_str) {
                out.push(id.to_owned());
            }
        }
    }
    out.retain(|s| !s.is_empty() && s.len() <= 128);
    out
}

/// Why subjects were left out, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Excluded {
    /// Never granted personalization, or denied it.
    pub no_consent: u64,
    /// Granted, then withdrew.
    pub withdrawn: u64,
    /// Erased (their events read as tombstones).
    pub erased: u64,
    /// Consented, but no interaction with an item.
    pub no_interactions: u64,
}

/// The subjects and interactions a model may be trained on.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    /// Per subject, item id → summed interaction weight.
    pub interactions: BTreeMap<Pseudonym, BTreeMap<String, f64>>,
    /// Event times covered, `(first, last)`.
    pub window: (UtcMicros, UtcMicros),
    /// The log position read up to: consent was evaluated as of here.
    pub log_position: u64,
    pub excluded: Excluded,
}

impl TrainingSet {
    /// The subjects in the set.
    pub fn subjects(&self) -> impl Iterator<Item = &Pseudonym> {
        self.interactions.keys()
    }
}

/// Reads the whole log and selects by consent as it stands at the end of the log.
///
/// # Errors
/// [`TrainError::Log`] for any event that cannot be read (fail closed).
pub fn select(store: &dyn EventStore, policies: &Policies) -> Result<TrainingSet, TrainError> {
    let purpose = Purpose::parse(PERSONALIZATION).expect("valid purpose");
    let requires = policies.purpose(&purpose).is_none_or(|d| d.requires_consent());
    let sale_share = Purpose::parse(lethe_collect::SALE_SHARE).expect("valid purpose");
    let mut consents: HashMap<Pseudonym, ConsentHistory> = HashMap::new();
    let mut raw: HashMap<Pseudonym, Vec<(UtcMicros, String, f64)>> = HashMap::new();
    let mut erased: std::collections::HashSet<Pseudonym> = std::collections::HashSet::new();
    let mut set = TrainingSet {
        interactions: BTreeMap::new(),
        window: (UtcMicros(i64::MAX), UtcMicros(i64::MIN)),
        log_position: 0,
        excluded: Excluded::default(),
    };
    for event in store.read_all(Position(1)) {
        let event = event?;
        let env = &event.envelope;
        set.log_position = set.log_position.max(env.position.0);
        let payload = match &event.body {
            EventBody::Plain(p) => p,
            EventBody::Shredded => {
                erased.insert(env.subject);
                continue;
            }
            EventBody::Expired | EventBody::Empty | EventBody::Unopened => continue,
        };
        if env.event_type.as_str() == CONSENT_CHANGED {
            if let Ok(record) = serde_json::from_slice::<ConsentRecord>(payload) {
                consents.entry(env.subject).or_default().push(record);
            }
            continue;
        }
        let Ok(value) = serde_json::from_slice::<Value>(payload) else { continue };
        let Some(w) = weight(env.event_type.as_str(), &value) else { continue };
        for item in items(&value) {
            raw.entry(env.subject).or_default().push((env.time, item, w));
        }
    }
    let mut subjects: Vec<Pseudonym> = consents.keys().chain(raw.keys()).copied().collect();
    subjects.sort_unstable();
    subjects.dedup();
    set.excluded.erased = erased.len() as u64;
    for s in subjects {
        if erased.contains(&s) {
            continue;
        }
        let verdict =
            consents.get(&s).map_or(lethe_consent::Verdict::NoConsent, |h| h.verdict(&purpose, requires, &sale_share));
        match verdict {
            lethe_consent::Verdict::Granted | lethe_consent::Verdict::NotRequired => {}
            lethe_consent::Verdict::Withdrawn => {
                set.excluded.withdrawn += 1;
                continue;
            }
            _ => {
                set.excluded.no_consent += 1;
                continue;
            }
        }
        let Some(events) = raw.remove(&s) else {
            set.excluded.no_interactions += 1;
            continue;
        };
        let entry = set.interactions.entry(s).or_default();
        for (t, item, w) in events {
            set.window.0 = set.window.0.min(t);
            set.window.1 = set.window.1.max(t);
            *entry.entry(item).or_default() += w;
        }
    }
    if set.interactions.is_empty() {
        set.window = (UtcMicros(0), UtcMicros(0));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_and_weights_come_from_the_segment_properties() {
        let purchase =
            json!({"properties": {"order_id": "o1", "products": [{"product_id": "tent-1"}, {"sku": "stove-2"}]}});
        assert_eq!(items(&purchase), ["tent-1", "stove-2"]);
        assert_eq!(weight("purchase.completed", &purchase), Some(5.0));
        let rated = json!({"properties": {"product_id": 42, "rating": 5}});
        assert_eq!(items(&rated), ["42"]);
        assert_eq!(weight("item.rated", &rated), Some(2.0));
        assert_eq!(weight("item.disliked", &rated), None);
        assert!(items(&json!({"properties": {"product_id": ""}})).is_empty());
        assert!(items(&json!({"event": "x"})).is_empty());
    }
}
