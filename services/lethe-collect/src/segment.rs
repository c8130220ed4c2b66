//! The Segment HTTP Tracking API's message shapes (track, page, identify, batch), parsed at the edge
//! into typed messages. Anything that does not parse is rejected with a stable code and nothing of it
//! is stored. See <https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/>.

use std::collections::BTreeMap;

use lethe_domain::{SubjectId, UtcMicros};
use serde_json::{Map, Value};

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// The call a message makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Track { event: String },
    Page { name: Option<String> },
    Identify,
}

/// What the edge keeps of `context` before minimization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub user_agent: Option<String>,
    pub page_url: Option<String>,
    pub page_path: Option<String>,
    pub page_title: Option<String>,
    pub referrer: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
    /// `context.locale` when it is a string (read leniently: nothing is refused for it).
    pub locale: Option<String>,
    /// `context.consent.categoryPreferences`: the site's consent manager's view, per purpose.
    pub category_preferences: BTreeMap<String, bool>,
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: Kind,
    /// `userId` when present, else `anonymousId`.
    pub subject: SubjectId,
    /// Whether `subject` is the `userId` (a signed-in account) rather than an `anonymousId`.
    pub user: bool,
    /// `anonymousId` when a `userId` is also present (identify links the two).
    pub linked_anonymous: Option<SubjectId>,
    pub message_id: Option<String>,
    pub timestamp: Option<UtcMicros>,
    pub properties: Map<String, Value>,
    pub traits: Map<String, Value>,
    pub context: Context,
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, Rejection> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(Rejection::new("invalid_field", format!("`{key}` must be a string"))),
    }
}

fn id_field(v: &Value, key: &str) -> Result<Option<SubjectId>, Rejection> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            SubjectId::parse(s).map(Some).map_err(|e| Rejection::new("invalid_id", format!("`{key}`: {e}")))
        }
        // Segment accepts numeric ids; they are ids like any other.
        Some(Value::Number(n)) => {
            SubjectId::parse(&n.to_string()).map(Some).map_err(|e| Rejection::new("invalid_id", e.to_string()))
        }
        Some(_) => Err(Rejection::new("invalid_id", format!("`{key}` must be a string"))),
    }
}

fn object_field(v: &Value, key: &str) -> Result<Map<String, Value>, Rejection> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(Rejection::new("invalid_field", format!("`{key}` must be an object"))),
    }
}

/// Parses an RFC 3339 timestamp.
///
/// # Errors
/// Not RFC 3339.
pub fn parse_timestamp(s: &str) -> Result<UtcMicros, Rejection> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| Rejection::new("invalid_timestamp", "`timestamp` must be RFC 3339"))?;
    let micros = t.unix_timestamp_nanos() / 1_000;
    i64::try_from(micros).map(UtcMicros).map_err(|_| Rejection::new("invalid_timestamp", "timestamp out of range"))
}

fn context(v: &Value) -> Result<Context, Rejection> {
    let ctx = object_field(v, "context")?;
    let ctx = Value::Object(ctx);
    let page = Value::Object(object_field(&ctx, "page")?);
    let location = Value::Object(object_field(&ctx, "location")?);
    let consent = Value::Object(object_field(&ctx, "consent")?);
    let mut prefs = BTreeMap::new();
    for (k, val) in object_field(&consent, "categoryPreferences")? {
        match val {
            Value::Bool(b) => {
                prefs.insert(k, b);
            }
            _ => return Err(Rejection::new("invalid_field", "`categoryPreferences` values must be booleans")),
        }
    }
    Ok(Context {
        user_agent: str_field(&ctx, "userAgent")?.map(str::to_owned),
        page_url: str_field(&page, "url")?.map(str::to_owned),
        page_path: str_field(&page, "path")?.map(str::to_owned),
        page_title: str_field(&page, "title")?.map(str::to_owned),
        referrer: str_field(&page, "referrer")?.map(str::to_owned),
        country: str_field(&location, "country")?.map(str::to_owned),
        region: str_field(&location, "region")?.map(str::to_owned),
        locale: ctx.get("locale").and_then(Value::as_str).map(str::to_owned),
        category_preferences: prefs,
    })
}

/// Parses one message. `kind` is the endpoint's call (`track`, `page`, `identify`), or `None` inside
/// a batch, where each message says its own `type`.
///
/// # Errors
/// A [`Rejection`] naming the first problem.
pub fn parse(v: &Value, kind: Option<&str>) -> Result<Message, Rejection> {
    if !v.is_object() {
        return Err(Rejection::new("invalid_event", "an event must be a JSON object"));
    }
    let kind = match (kind, str_field(v, "type")?) {
        (Some(k), _) => k.to_owned(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => return Err(Rejection::new("missing_type", "a batch item needs a `type`")),
    };
    let kind = match kind.as_str() {
        "track" => {
            let event = str_field(v, "event")?
                .filter(|e| !e.trim().is_empty())
                .ok_or_else(|| Rejection::new("missing_event", "a track call needs an `event` name"))?;
            Kind::Track { event: event.to_owned() }
        }
        "page" | "screen" => Kind::Page { name: str_field(v, "name")?.map(str::to_owned) },
        "identify" => Kind::Identify,
        other => {
            return Err(Rejection::new(
                "unsupported_type",
                format!("type `{}` is not supported", other.chars().take(32).collect::<String>()),
            ))
        }
    };
    let user = id_field(v, "userId")?;
    let anonymous = id_field(v, "anonymousId")?;
    let (subject, is_user, linked_anonymous) = match (user, anonymous) {
        (Some(u), a) => (u, true, a),
        (None, Some(a)) => (a, false, None),
        (None, None) => return Err(Rejection::new("missing_id", "a message needs a `userId` or an `anonymousId`")),
    };
    let message_id = str_field(v, "messageId")?.map(str::to_owned);
    if message_id.as_deref().is_some_and(|m| m.is_empty() || m.len() > 256) {
        return Err(Rejection::new("invalid_field", "`messageId` must be 1 to 256 characters"));
    }
    let timestamp = str_field(v, "timestamp")?.map(parse_timestamp).transpose()?;
    Ok(Message {
        kind,
        subject,
        user: is_user,
        linked_anonymous,
        message_id,
        timestamp,
        properties: object_field(v, "properties")?,
        traits: object_field(v, "traits")?,
        context: context(v)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_track_call_parses() {
        let m = parse(
            &json!({"userId": "u1", "anonymousId": "a1", "event": "Order Completed", "messageId": "m-1",
                    "timestamp": "2026-11-29T10:00:00Z", "properties": {"revenue": 12.5},
                    "context": {"consent": {"categoryPreferences": {"analytics": true}}}}),
            Some("track"),
        )
        .unwrap();
        assert_eq!(m.kind, Kind::Track { event: "Order Completed".into() });
        assert_eq!(m.subject, SubjectId::parse("u1").unwrap());
        assert_eq!(m.linked_anonymous, Some(SubjectId::parse("a1").unwrap()));
        assert!(m.user, "the subject is the userId");
        let anonymous = parse(&json!({"anonymousId": "a1", "event": "x"}), Some("track")).unwrap();
        assert!(!anonymous.user);
        assert_eq!(m.context.category_preferences.get("analytics"), Some(&true));
        assert!(m.timestamp.is_some());
    }

    #[test]
    fn malformed_messages_are_refused_with_codes() {
        let cases = [
            (json!([1, 2]), Some("track"), "invalid_event"),
            (json!({"event": "x"}), Some("track"), "missing_id"),
            (json!({"userId": "u"}), Some("track"), "missing_event"),
            (json!({"userId": 1.5e300, "event": "x"}), Some("track"), "ok"),
            (json!({"userId": {"a": 1}, "event": "x"}), Some("track"), "invalid_id"),
            (json!({"userId": "u", "event": "x", "timestamp": "yesterday"}), Some("track"), "invalid_timestamp"),
            (json!({"userId": "u", "event": "x", "properties": "p"}), Some("track"), "invalid_field"),
            (json!({"userId": "u"}), None, "missing_type"),
            (json!({"userId": "u", "type": "alias"}), None, "unsupported_type"),
            (json!({"userId": "", "event": "x"}), Some("track"), "invalid_id"),
        ];
        for (v, kind, code) in cases {
            let got = parse(&v, kind).map(|_| "ok").unwrap_or_else(|r| r.code);
            assert_eq!(got, code, "{v}");
        }
    }
}
