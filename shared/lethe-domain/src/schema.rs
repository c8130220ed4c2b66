//! The stored-event schema catalogue: the latest version of every event type Lethe writes, and the
//! upcasters that turn an older payload into the latest one. Readers only ever see the latest shape;
//! writers only ever write it. An upcaster is added here, never removed, when a version changes.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{DomainError, EventType, Result};

/// Turns a payload of `(event_type, from)` into version `from + 1`.
pub type UpcastFn = fn(Value) -> Value;

/// Event types written by Lethe itself.
pub mod types {
    /// An erasure fence: the subject was erased at this position (no payload).
    pub const ERASURE_FENCE: &str = "lethe.erasure_fence";
    /// A page view.
    pub const PAGE_VIEWED: &str = "page.viewed";
    /// The receipt of a decision, in the subject's stream: written by Lethe only.
    pub const DECISION_SERVED: &str = "decision.served";
    /// An outcome of a decision, in the subject's stream: written by Lethe only.
    pub const OUTCOME_RECORDED: &str = "outcome.recorded";
    /// The receipt of a personalized recommendation list, in the subject's stream: written by
    /// Lethe only.
    pub const RECOMMENDATIONS_SERVED: &str = "recommendations.served";
}

/// The catalogue: latest versions and upcasters.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    latest: BTreeMap<String, u16>,
    upcasters: BTreeMap<(String, u16), UpcastFn>,
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl SchemaRegistry {
    /// An empty registry, for callers that declare their own event types.
    pub fn empty() -> Self {
        Self { latest: BTreeMap::new(), upcasters: BTreeMap::new() }
    }

    /// Lethe's built-in catalogue.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.declare(types::ERASURE_FENCE, 1);
        // page.viewed v1 stored the full URL; v2 keeps host and path only, because query strings
        // carry identifiers (campaign ids, e-mail addresses) that Lethe must not keep.
        r.declare(types::PAGE_VIEWED, 2);
        r.upcaster(types::PAGE_VIEWED, 1, page_viewed_v1_to_v2);
        r
    }

    /// Declares the latest version of an event type.
    pub fn declare(&mut self, event_type: &str, latest: u16) {
        self.latest.insert(event_type.to_owned(), latest);
    }

    /// Registers the upcaster from version `from` to `from + 1`.
    pub fn upcaster(&mut self, event_type: &str, from: u16, f: UpcastFn) {
        self.upcasters.insert((event_type.to_owned(), from), f);
    }

    /// The latest version of an event type, if the catalogue knows it.
    pub fn latest(&self, event_type: &EventType) -> Option<u16> {
        self.latest.get(event_type.as_str()).copied()
    }

    /// Reads a stored payload and brings it to the latest version of its type. Unknown types are
    /// returned as they are (custom events declared by policy carry their own version).
    ///
    /// # Errors
    /// The payload is not JSON, or a step of the chain has no upcaster.
    pub fn upcast(&self, event_type: &EventType, version: u16, payload: &[u8]) -> Result<(u16, Value)> {
        let mut value: Value = serde_json::from_slice(payload).map_err(|e| DomainError::InvalidPayload {
            event_type: event_type.to_string(),
            version,
            reason: e.to_string(),
        })?;
        let Some(latest) = self.latest(event_type) else {
            return Ok((version, value));
        };
        let mut v = version;
        while v < latest {
            let f = self.upcasters.get(&(event_type.as_str().to_owned(), v)).ok_or_else(|| {
                DomainError::MissingUpcaster { event_type: event_type.to_string(), from: v, to: latest }
            })?;
            value = f(value);
            v += 1;
        }
        Ok((v, value))
    }
}

fn page_viewed_v1_to_v2(mut v: Value) -> Value {
    let url = v.get("url").and_then(Value::as_str).unwrap_or_default().to_owned();
    let without_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let without_query = without_scheme.split(['?', '#']).next().unwrap_or_default();
    let (host, path) = match without_query.find('/') {
        Some(i) => (&without_query[..i], &without_query[i..]),
        None => (without_query, "/"),
    };
    if let Some(obj) = v.as_object_mut() {
        obj.remove("url");
        obj.insert("host".into(), Value::String(host.to_owned()));
        obj.insert("path".into(), Value::String(path.to_owned()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn page_viewed_v1_upcasts_without_query_string() {
        let r = SchemaRegistry::builtin();
        let t = EventType::parse(types::PAGE_VIEWED).unwrap();
        let v1 = br#"{"url":"https://shop.example/outdoor/tents?email=a@b.c#top","title":"Tents"}"#;
        let (v, body) = r.upcast(&t, 1, v1).unwrap();
        assert_eq!(v, 2);
        assert_eq!(body, json!({"title": "Tents", "host": "shop.example", "path": "/outdoor/tents"}));
    }

    #[test]
    fn latest_version_passes_through() {
        let r = SchemaRegistry::builtin();
        let t = EventType::parse(types::PAGE_VIEWED).unwrap();
        let (v, body) = r.upcast(&t, 2, br#"{"host":"h","path":"/"}"#).unwrap();
        assert_eq!((v, body), (2, json!({"host": "h", "path": "/"})));
    }

    #[test]
    fn missing_upcaster_is_an_error() {
        let mut r = SchemaRegistry::empty();
        r.declare("x.y", 3);
        r.upcaster("x.y", 2, |v| v);
        let t = EventType::parse("x.y").unwrap();
        let err = r.upcast(&t, 1, b"{}").unwrap_err();
        assert_eq!(err, DomainError::MissingUpcaster { event_type: "x.y".into(), from: 1, to: 3 });
    }

    #[test]
    fn invalid_json_is_an_error() {
        let r = SchemaRegistry::builtin();
        let t = EventType::parse("custom.thing").unwrap();
        assert!(matches!(r.upcast(&t, 1, b"{nope"), Err(DomainError::InvalidPayload { .. })));
    }
}
