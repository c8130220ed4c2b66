//! What is audited: the [`AuditKind`]s, the [`AuditRecord`] a caller appends, the [`AuditEntry`] the chain
//! stores, and the rules that keep identifiers out of the chain.

use std::fmt;
use std::str::FromStr;

use serde::ser::{SerializeMap as _, SerializeSeq as _};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::codec::{self, Body, StoredEntry};
use crate::{AuditError, Result};

/// Longest actor (a role name) accepted.
pub const MAX_ACTOR_LEN: usize = 32;
/// Longest subject pseudonym accepted, in hex characters (64 bytes).
pub const MAX_SUBJECT_LEN: usize = 128;
/// Shortest subject pseudonym accepted, in hex characters (8 bytes).
pub const MIN_SUBJECT_LEN: usize = 16;
/// Longest detail accepted, as canonical JSON text.
pub const MAX_DETAIL_LEN: usize = 16 * 1024;
/// Deepest nesting of arrays and objects accepted in a detail.
pub const MAX_DETAIL_DEPTH: usize = 16;
/// Latest time accepted: 9999-12-31T23:59:59.999999Z, in microseconds since the Unix epoch.
pub const MAX_TIME_MICROS: i64 = 253_402_300_799_999_999;

/// What an entry records. Stored and hashed by its snake_case name, so variants may be added (never renamed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// A consent decision was recorded.
    ConsentRecorded,
    /// A data subject request arrived.
    RequestReceived,
    /// A data subject request changed state.
    RequestUpdated,
    /// Personal data was exported.
    Export,
    /// A subject was erased (crypto-shredded).
    Erasure,
    /// A subject opted out.
    OptOut,
    /// Keys were rotated.
    KeyRotation,
    /// Retention shredded expired data.
    RetentionShred,
    /// A policy changed.
    PolicyChange,
    /// A model was trained.
    TrainingRun,
    /// A backup was taken.
    Backup,
    /// A backup was restored.
    Restore,
    /// A recipient was notified of an erasure or rectification.
    RecipientNotified,
    /// An access token was issued.
    TokenIssued,
    /// Anything else; say what in `detail`.
    Other,
}

impl AuditKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 15] = [
        Self::ConsentRecorded,
        Self::RequestReceived,
        Self::RequestUpdated,
        Self::Export,
        Self::Erasure,
        Self::OptOut,
        Self::KeyRotation,
        Self::RetentionShred,
        Self::PolicyChange,
        Self::TrainingRun,
        Self::Backup,
        Self::Restore,
        Self::RecipientNotified,
        Self::TokenIssued,
        Self::Other,
    ];

    /// The snake_case name, as stored, hashed and serialized.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConsentRecorded => "consent_recorded",
            Self::RequestReceived => "request_received",
            Self::RequestUpdated => "request_updated",
            Self::Export => "export",
            Self::Erasure => "erasure",
            Self::OptOut => "opt_out",
            Self::KeyRotation => "key_rotation",
            Self::RetentionShred => "retention_shred",
            Self::PolicyChange => "policy_change",
            Self::TrainingRun => "training_run",
            Self::Backup => "backup",
            Self::Restore => "restore",
            Self::RecipientNotified => "recipient_notified",
            Self::TokenIssued => "token_issued",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditKind {
    type Err = AuditError;

    /// # Errors
    /// [`AuditError::InvalidRecord`] for a name that is no kind.
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or(AuditError::InvalidRecord("unknown audit kind"))
    }
}

/// What a caller appends; the chain assigns `seq`, `prev_hash` and `hash`.
///
/// Holds pseudonyms and digests, never identifiers or personal data: `actor` is a role name,
/// `subject` a hex pseudonym, `content_digest` the hex SHA-256 of the *ciphertext* the entry refers to
/// (see [`content_digest`](crate::content_digest)), so the chain verifies without decrypting anything and
/// keeps verifying after the subject is erased. `detail` is free, but must not hold identifiers either.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// UTC microseconds since the Unix epoch, from the caller's clock; 0 ..= [`MAX_TIME_MICROS`].
    pub time_micros: i64,
    /// What happened.
    pub kind: AuditKind,
    /// Who did it, as a role name: 1 ..= 32 of `a-z 0-9 _ -`, starting with a letter (`dpo`, `subject`,
    /// `system`, `cli`).
    pub actor: String,
    /// Whose data, as a lowercase hex pseudonym of 16 ..= 128 characters.
    pub subject: Option<String>,
    /// A JSON object, at most [`MAX_DETAIL_LEN`] bytes as canonical text and [`MAX_DETAIL_DEPTH`] deep.
    pub detail: Value,
    /// Lowercase hex SHA-256 (64 characters) of the ciphertext the entry refers to.
    pub content_digest: Option<String>,
}

impl AuditRecord {
    /// A record with no subject, an empty detail object and no digest.
    #[must_use]
    pub fn new(time_micros: i64, kind: AuditKind, actor: impl Into<String>) -> Self {
        Self {
            time_micros,
            kind,
            actor: actor.into(),
            subject: None,
            detail: Value::Object(serde_json::Map::new()),
            content_digest: None,
        }
    }

    /// Sets the subject pseudonym (hex).
    #[must_use]
    pub fn subject(mut self, pseudonym_hex: impl Into<String>) -> Self {
        self.subject = Some(pseudonym_hex.into());
        self
    }

    /// Sets the detail object.
    #[must_use]
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// Sets the content digest (hex SHA-256 of ciphertext).
    #[must_use]
    pub fn content_digest(mut self, digest_hex: impl Into<String>) -> Self {
        self.content_digest = Some(digest_hex.into());
        self
    }

    /// Checks every rule and returns the canonical detail text.
    pub(crate) fn validate(&self) -> Result<String> {
        if !(0..=MAX_TIME_MICROS).contains(&self.time_micros) {
            return Err(AuditError::InvalidRecord("time is outside 1970-01-01 ..= 9999-12-31"));
        }
        if !is_role_name(&self.actor) {
            return Err(AuditError::InvalidRecord("actor must be a role name (a-z, 0-9, _ and -), not an identifier"));
        }
        if let Some(s) = &self.subject {
            let ok =
                (MIN_SUBJECT_LEN..=MAX_SUBJECT_LEN).contains(&s.len()) && s.len() % 2 == 0 && codec::is_lower_hex(s);
            if !ok {
                return Err(AuditError::InvalidRecord("subject must be a lowercase hex pseudonym, not an identifier"));
            }
        }
        if let Some(d) = &self.content_digest {
            if codec::parse_hash(d).is_none() {
                return Err(AuditError::InvalidRecord("content digest must be 64 lowercase hex characters"));
            }
        }
        if !self.detail.is_object() {
            return Err(AuditError::InvalidRecord("detail must be a json object"));
        }
        if depth_exceeds(&self.detail, MAX_DETAIL_DEPTH) {
            return Err(AuditError::InvalidRecord("detail is nested too deeply"));
        }
        let text = canonical_json(&self.detail);
        if text.len() > MAX_DETAIL_LEN {
            return Err(AuditError::InvalidRecord("detail is too large"));
        }
        Ok(text)
    }
}

fn is_role_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=MAX_ACTOR_LEN).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// True when `v` nests arrays and objects deeper than `limit` (a scalar has depth 0). Stops descending at
/// the limit, so the recursion is bounded whatever the input.
fn depth_exceeds(v: &Value, limit: usize) -> bool {
    let children: Box<dyn Iterator<Item = &Value>> = match v {
        Value::Array(a) => Box::new(a.iter()),
        Value::Object(o) => Box::new(o.values()),
        _ => return false,
    };
    if limit == 0 {
        return true;
    }
    let mut children = children;
    children.any(|c| depth_exceeds(c, limit - 1))
}

/// The canonical text of a JSON value: compact, object keys sorted by their UTF-8 bytes at every depth,
/// numbers as serde_json writes them (shortest round-trip form). Independent of serde_json's
/// `preserve_order` feature.
///
/// Callers bound the depth first ([`MAX_DETAIL_DEPTH`]).
pub(crate) fn canonical_json(v: &Value) -> String {
    // Serializing a `Value` into memory cannot fail: keys are strings and numbers are finite.
    serde_json::to_string(&Canonical(v)).unwrap_or_default()
}

/// Serializes a [`Value`] with object keys sorted.
pub(crate) struct Canonical<'a>(pub &'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, &Canonical(v))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&Canonical(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// One link of the chain, as stored and exported.
///
/// `hash = SHA-256("lethe-audit-v1\0" || prev_hash bytes || body)`, where body is the fixed binary layout
/// of `seq`, `time_micros`, `kind`, `actor`, `subject`, the canonical text of `detail` and
/// `content_digest` documented in the crate root. Entry 1 has `prev_hash` = 32 zero bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1-based position in the chain.
    pub seq: u64,
    /// UTC microseconds since the Unix epoch, as the caller gave it.
    pub time_micros: i64,
    /// What happened.
    pub kind: AuditKind,
    /// A role name.
    pub actor: String,
    /// A hex pseudonym.
    pub subject: Option<String>,
    /// A JSON object.
    pub detail: Value,
    /// Hex SHA-256 of the ciphertext the entry refers to.
    pub content_digest: Option<String>,
    /// Hex hash of the previous entry (64 zeros for entry 1).
    pub prev_hash: String,
    /// Hex hash of this entry.
    pub hash: String,
}

impl AuditEntry {
    /// Decodes a stored value (no hash check: that is [`AuditChain::verify`](crate::AuditChain::verify)'s job).
    pub(crate) fn from_stored(key_seq: u64, value: &[u8]) -> Result<Self> {
        let bad = |reason: &str| AuditError::tampered(key_seq, format!("undecodable entry: {reason}"));
        let stored = StoredEntry::split(value).map_err(bad)?;
        let body = Body::decode(stored.body).map_err(bad)?;
        if body.seq != key_seq {
            return Err(AuditError::tampered(key_seq, "entry stored under the wrong sequence number"));
        }
        let kind = body.kind.parse().map_err(|_| bad("unknown kind"))?;
        let detail = serde_json::from_str(body.detail).map_err(|_| bad("detail is not json"))?;
        Ok(Self {
            seq: body.seq,
            time_micros: body.time_micros,
            kind,
            actor: body.actor.to_owned(),
            subject: body.subject.map(str::to_owned),
            detail,
            content_digest: body.content_digest.map(str::to_owned),
            prev_hash: hex::encode(stored.prev),
            hash: hex::encode(stored.hash),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn kinds_serialize_as_their_stored_names() {
        for k in AuditKind::ALL {
            assert_eq!(serde_json::to_value(k).expect("json"), json!(k.as_str()));
            assert_eq!(k.as_str().parse::<AuditKind>().expect("parse"), k);
        }
        assert!("Export".parse::<AuditKind>().is_err());
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_whatever_the_insertion_order() {
        let mut a = serde_json::Map::new();
        a.insert("zeta".into(), json!(1));
        a.insert("alpha".into(), json!({"y": [ {"b": 1, "a": 2} ], "x": null}));
        let mut b = serde_json::Map::new();
        b.insert("alpha".into(), json!({"x": null, "y": [ {"a": 2, "b": 1} ]}));
        b.insert("zeta".into(), json!(1));
        let (a, b) = (canonical_json(&Value::Object(a)), canonical_json(&Value::Object(b)));
        assert_eq!(a, b);
        assert_eq!(a, r#"{"alpha":{"x":null,"y":[{"a":2,"b":1}]},"zeta":1}"#);
    }

    #[test]
    fn identifiers_are_refused() {
        let ok = AuditRecord::new(1, AuditKind::Export, "dpo").subject("ab".repeat(16));
        assert!(ok.validate().is_ok());
        for actor in ["", "alice@example.com", "Dpo", "1dpo", &"a".repeat(33)] {
            let r = AuditRecord { actor: actor.to_owned(), ..ok.clone() };
            assert!(matches!(r.validate(), Err(AuditError::InvalidRecord(_))), "{actor}");
        }
        for subject in ["alice@example.com", "AB".repeat(16).as_str(), "abc", &"ab".repeat(65)] {
            let r = ok.clone().subject(subject);
            assert!(matches!(r.validate(), Err(AuditError::InvalidRecord(_))), "{subject}");
        }
        assert!(ok.clone().content_digest("00").validate().is_err());
        assert!(ok.clone().detail(json!([1])).validate().is_err());
        assert!(AuditRecord { time_micros: -1, ..ok.clone() }.validate().is_err());
        assert!(AuditRecord { time_micros: MAX_TIME_MICROS + 1, ..ok }.validate().is_err());
    }

    #[test]
    fn deep_or_large_details_are_refused() {
        let mut deep = json!(1);
        for _ in 0..=MAX_DETAIL_DEPTH {
            deep = json!([deep]);
        }
        let r = AuditRecord::new(1, AuditKind::Other, "cli").detail(json!({ "d": deep }));
        assert!(matches!(r.validate(), Err(AuditError::InvalidRecord("detail is nested too deeply"))));
        let r = AuditRecord::new(1, AuditKind::Other, "cli").detail(json!({ "d": "x".repeat(MAX_DETAIL_LEN) }));
        assert!(matches!(r.validate(), Err(AuditError::InvalidRecord("detail is too large"))));
    }
}
