//! Behavior ingestion: each message is parsed, checked for plausibility, minimized, gated by the
//! subject's consent for the event's purpose, deduplicated by `messageId`, and appended to the log as
//! one durable event. A message is either stored or not at all, and the caller is told which, and
//! why. A stored message keeps only the properties (and identify traits) that the policies classify
//! (R-ROPA-1): the others are dropped before anything is written, and counted.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use lethe_consent::{
    ConsentMethod, ConsentRecord, NoticeRef, PurposeChoice, Verdict, CONSENT_CHANGED, CONSENT_SCHEMA_VERSION,
};
use lethe_domain::schema::types;
use lethe_domain::{
    EventType, ExpectedVersion, NewEvent, Pseudonym, Purpose, Retention, SchemaVersion, SubjectId, UtcMicros,
};
use lethe_eventlog::AppendRequest;
use lethe_policy::Policies;
use serde::Serialize;
use serde_json::{json, Map, Value};

use lethe_auth::Role;

use crate::auth::authorize_with;
use crate::minimize::{daypart, device_class, is_bot, referrer_class, split_url};
use crate::segment::{self, Kind, Message, Rejection};
use crate::{ApiError, CollectState, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES};

/// How far in the future a client timestamp may be (clock skew).
const MAX_FUTURE_MICROS: i64 = 10 * 60 * 1_000_000;
/// The reasons of a refusal for want of consent (answered 403 by the single-event endpoints).
const CONSENT_REFUSALS: [&str; 6] =
    ["no_consent", "consent_denied", "consent_withdrawn", "gpc_opt_out", "client_denied", "user_id_not_allowed"];

/// Who sent a request of messages, as the checks need it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The request carried `Sec-GPC: 1`.
    pub gpc: bool,
    /// The caller is a public site key: it may not write as an `anonymousId` what is a signed-in
    /// user's pseudonym (R-DSR-4).
    pub site_key: bool,
}

/// Purpose that a Global Privacy Control signal opts out of.
pub const SALE_SHARE: &str = "sale_share";

/// The counter of properties and traits dropped because the policies do not classify them.
pub const FIELDS_DROPPED: &str = "lethe_collect_fields_dropped_total";
/// Raw fields that minimization removes from `properties` (query strings carry identifiers): they
/// are never stored, whatever the policies say.
const MINIMIZED_PROPERTIES: [&str; 4] = ["url", "path", "referrer", "search"];

/// The outcome of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Outcome {
    Stored {
        position: u64,
        /// Properties and traits left out because the policies do not classify them.
        #[serde(skip_serializing_if = "is_zero")]
        dropped_fields: usize,
    },
    Duplicate,
    Rejected {
        reason: &'static str,
        message: String,
    },
}

/// One line of a batch answer.
#[derive(Debug, Clone, Serialize)]
pub struct EventResult {
    #[serde(rename = "messageId", skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The request carried the GPC signal and the message's subject stands opted out of sale/share
    /// by it (recorded now or before). False for a message refused before its subject was known.
    #[serde(skip)]
    pub gpc_honored: bool,
}

/// Whether the request carries `Sec-GPC: 1`.
pub fn gpc_header(req: &HttpRequest) -> bool {
    req.headers().get("sec-gpc").and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() == "1")
}

fn parse_body(body: &[u8], limit: usize) -> Result<Value, ApiError> {
    if body.len() > limit {
        return Err(ApiError::new(413, "payload_too_large", format!("body over {limit} bytes")));
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("invalid_utf8", "the body is not UTF-8"))?;
    serde_json::from_str(text).map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}")))
}

const fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn reject(code: &'static str, message: impl Into<String>) -> Outcome {
    Outcome::Rejected { reason: code, message: message.into() }
}

/// Whether a refusal says nothing of the message: the log could not take it now (a retry may succeed).
fn retryable(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Rejected { reason: "store_unavailable", .. })
}

/// The HTTP status of a single message's outcome. A log that cannot take the message answers 503,
/// so that clients that retry only server errors (Segment's libraries, the SDK) send it again.
fn status_of(outcome: &Outcome) -> u16 {
    match outcome {
        Outcome::Stored { .. } | Outcome::Duplicate => 200,
        Outcome::Rejected { reason, .. } if CONSENT_REFUSALS.contains(reason) => 403,
        Outcome::Rejected { reason, .. } if *reason == "event_too_large" => 413,
        Outcome::Rejected { reason, .. } if *reason == "subject_erased" => 410,
        Outcome::Rejected { .. } if retryable(outcome) => 503,
        Outcome::Rejected { .. } => 400,
    }
}

/// The HTTP status of a batch: 200 with its per-message results, or 503 when the log could not
/// take some of them (the whole batch may be sent again: what was stored answers `duplicate`).
fn batch_status<'a>(mut outcomes: impl Iterator<Item = &'a Outcome>) -> u16 {
    if outcomes.any(retryable) {
        503
    } else {
        200
    }
}

/// The event type a message is stored as, by the Segment spec's event names where they exist.
pub fn event_type_for(kind: &Kind) -> Result<EventType, Rejection> {
    let name = match kind {
        Kind::Page { .. } => return Ok(EventType::parse("page.viewed").expect("valid")),
        Kind::Identify => return Ok(EventType::parse("identify").expect("valid")),
        Kind::Track { event } => event,
    };
    let known = match name.to_ascii_lowercase().as_str() {
        "order completed" | "purchase completed" | "purchase" => "purchase.completed",
        "product clicked" | "element clicked" | "clicked" | "click" => "element.clicked",
        "scroll depth" | "scrolled" => "scroll.depth",
        "time spent" | "time on page" => "time.spent",
        "session ended" => "session.ended",
        "product liked" | "liked" => "item.liked",
        "product disliked" | "disliked" => "item.disliked",
        "product rated" | "rating submitted" | "rated" => "item.rated",
        "review submitted" | "product reviewed" => "review.submitted",
        "survey answered" | "survey response" => "survey.answered",
        _ => "",
    };
    if !known.is_empty() {
        return Ok(EventType::parse(known).expect("valid"));
    }
    let mut normalized = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            normalized.push(c.to_ascii_lowercase());
        } else if !normalized.ends_with('.') && !normalized.is_empty() {
            normalized.push('.');
        }
    }
    let normalized = normalized.trim_end_matches('.');
    EventType::parse(normalized)
        .map_err(|_| Rejection::new("unknown_event", "the event name cannot be a Lethe event type"))
}

fn number(props: &serde_json::Map<String, Value>, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| props.get(*k).and_then(Value::as_f64))
}

/// Impossible values for the event types that carry measurements.
fn plausibility(event_type: &str, m: &Message) -> Result<(), Rejection> {
    let p = &m.properties;
    let bad = |what: &str| Err(Rejection::new("implausible_value", what.to_owned()));
    match event_type {
        "scroll.depth" => match number(p, &["depth", "percent", "scroll_depth"]) {
            Some(d) if (0.0..=100.0).contains(&d) => Ok(()),
            Some(_) => bad("scroll depth must be between 0 and 100"),
            None => bad("scroll depth needs `depth` (0 to 100)"),
        },
        "time.spent" | "session.ended" => match number(p, &["seconds", "duration", "duration_seconds"]) {
            Some(s) if (0.0..=86_400.0).contains(&s) => Ok(()),
            Some(_) => bad("a duration must be between 0 and 86400 seconds"),
            None => Ok(()),
        },
        "item.rated" => match number(p, &["rating", "stars"]) {
            Some(r) if (0.0..=10.0).contains(&r) => Ok(()),
            _ => bad("a rating must be between 0 and 10"),
        },
        "purchase.completed" => match number(p, &["revenue", "total", "value"]) {
            Some(v) if v < 0.0 => bad("a purchase cannot have a negative value"),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The payload stored (encrypted) for a message of `event_type`: minimized context, never the raw
/// IP, user agent, query string or identifiers; and how many properties and traits were dropped
/// because the policies do not classify them (R-ROPA-1). A declared event type keeps only the
/// properties its rule classifies, and identify only the traits it classifies (none by default:
/// traits are typically direct identifiers); an undeclared type keeps its properties, which the
/// `[custom]` rule classifies whole. `pseudonymize` keys the linked anonymous id of an identify.
fn payload(
    m: &Message,
    event_type: &EventType,
    policies: &Policies,
    pseudonymize: &dyn Fn(&SubjectId) -> Pseudonym,
    time: UtcMicros,
) -> (Value, usize) {
    // Server-side libraries put the page in `properties`, browsers in `context.page`.
    let prop = |k: &str| m.properties.get(k).and_then(Value::as_str).map(str::to_owned);
    let page_url = m.context.page_url.clone().or_else(|| prop("url"));
    let page_path = m.context.page_path.clone().or_else(|| prop("path"));
    let referrer = m.context.referrer.clone().or_else(|| prop("referrer"));
    let (host, path) = match (&page_url, &page_path) {
        (Some(url), _) => split_url(url),
        (None, Some(path)) => (None, split_url(path).1),
        (None, None) => (None, String::new()),
    };
    let rule = policies.event(event_type);
    let classified = |key: &str| rule.is_none_or(|r| r.category_of(key).is_some());
    let mut dropped = 0;
    // Raw URLs carry query strings (and with them identifiers): only host and path are kept. An
    // identify keeps no property: it is a necessary record of a link, and its fields are Lethe's own.
    let identify = m.kind == Kind::Identify;
    let mut properties = Map::new();
    for (key, value) in &m.properties {
        if MINIMIZED_PROPERTIES.contains(&key.as_str()) {
            continue;
        }
        if classified(key) && !identify {
            properties.insert(key.clone(), value.clone());
        } else {
            dropped += 1;
        }
    }
    let hour = u8::try_from(time.0.div_euclid(3_600_000_000).rem_euclid(24)).unwrap_or(0);
    let mut body = json!({
        "message_id": m.message_id,
        "properties": properties,
        "context": {
            "device_class": device_class(m.context.user_agent.as_deref()),
            "location": {"country": m.context.country, "region": m.context.region},
            "daypart": daypart(hour),
            "referrer_class": referrer_class(referrer.as_deref(), host.as_deref()),
        },
    });
    if m.user {
        // Lethe's own mark, never a client's property: the subject is a signed-in account (its
        // `userId`), which a public site key may not act for as an `anonymousId` (R-DSR-4). The
        // consent book learns it from here, at collection and on replay.
        body[SUBJECT_IS_USER] = json!(true);
    }
    match &m.kind {
        Kind::Track { event } => body["event"] = json!(event),
        Kind::Page { name } => {
            body["host"] = json!(host);
            body["path"] = json!(path);
            body["title"] = json!(m.context.page_title.clone().or_else(|| name.clone()));
        }
        Kind::Identify => {
            // Needing no consent, it carries no context of the visit either.
            body.as_object_mut().expect("an object").remove("context");
            // Only traits a rule classifies, and never one named like a field Lethe fills itself
            // (a client's `linked_anonymous` would be an identifier stored as it came).
            let mut traits = Map::new();
            for (key, value) in &m.traits {
                if key != "linked_anonymous" && rule.is_some_and(|r| r.category_of(key).is_some()) {
                    traits.insert(key.clone(), value.clone());
                } else {
                    dropped += 1;
                }
            }
            body["traits"] = Value::Object(traits);
            // The anonymous id is linked as a pseudonym, never as itself.
            body["linked_anonymous"] = json!(m.linked_anonymous.as_ref().map(|a| pseudonymize(a).to_hex()));
        }
    }
    (body, dropped)
}

/// The jurisdiction a GPC record names: the message's location as `country-region` (`US-CA`), the
/// country alone, or `unknown`: never one Lethe did not see. Codes are letters and digits only.
fn gpc_jurisdiction(ctx: &segment::Context) -> String {
    let code = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|c| (1..=8).contains(&c.len()) && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
            .map(str::to_ascii_uppercase)
    };
    match (code(&ctx.country), code(&ctx.region)) {
        (Some(country), Some(region)) => format!("{country}-{region}"),
        (Some(country), None) => country,
        (None, _) => "unknown".to_owned(),
    }
}

/// The locale a GPC record names: the message's `context.locale` when it looks like a language tag
/// (letters, digits and hyphens, at most 35 characters), else `und` (undetermined, BCP 47).
fn gpc_locale(ctx: &segment::Context) -> String {
    ctx.locale
        .as_deref()
        .filter(|l| (2..=35).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map_or_else(|| "und".to_owned(), str::to_owned)
}

/// Records a GPC opt-out for a subject the first time its device sends the signal (R-GPC-1), with
/// the jurisdiction and locale the message tells, and the notice in force.
fn record_gpc(state: &CollectState, subject: Pseudonym, m: &segment::Message) -> Result<(), ApiError> {
    let sale_share = Purpose::parse(SALE_SHARE).expect("valid");
    // Recorded unless already answered (an opt-out stands, or the SDK's "allow on this site" granted
    // sale/share with the signal on); a grant made without the signal is overridden by this one.
    if state.book.with_history(&subject, |h| h.is_some_and(|h| h.gpc_answered(&sale_share))) {
        return Ok(());
    }
    let legal_basis = state.policies.purpose(&sale_share).map_or("consent", |p| p.legal_basis().as_str()).to_owned();
    let notice = state.policies.notices().next();
    let record = ConsentRecord {
        record_id: uuid::Uuid::new_v4(),
        collected_at: UtcMicros::now(),
        jurisdiction: gpc_jurisdiction(&m.context),
        method: ConsentMethod::Gpc,
        notice: NoticeRef {
            id: notice.map_or_else(String::new, |n| n.id().as_str().to_owned()),
            version: notice.map_or(0, |n| n.version().get()),
            content_hash: notice.map_or_else(String::new, |n| n.content_hash().to_owned()),
        },
        choices: vec![PurposeChoice { purpose: sale_share, granted: false, legal_basis }],
        recipients: vec![],
        locale: gpc_locale(&m.context),
        gpc: true,
        sdk_version: None,
        subject_is_user: m.user,
    };
    append_consent(state, subject, record)?;
    state.metrics.inc("lethe_consent_changes_total", "gpc");
    Ok(())
}

/// Event types only Lethe writes, whatever purpose they fall under: decision receipts and their
/// outcomes prove the lawful basis of a decision, so a site cannot forge them with a track call.
pub const LETHE_RECORDED: [&str; 3] = [types::DECISION_SERVED, types::OUTCOME_RECORDED, types::RECOMMENDATIONS_SERVED];

/// The top-level field of a stored event whose subject came from a `userId`: Lethe's own, classified
/// by `[context]` in `events.toml` (R-ROPA-1), written only when true.
pub const SUBJECT_IS_USER: &str = "subject_is_user";

/// Appends a consent record and, once durable, adds it to the consent book.
pub fn append_consent(state: &CollectState, subject: Pseudonym, record: ConsentRecord) -> Result<u64, ApiError> {
    let event = NewEvent {
        event_type: EventType::parse(CONSENT_CHANGED).expect("valid"),
        schema_version: SchemaVersion::new(CONSENT_SCHEMA_VERSION).expect("valid"),
        purpose: Purpose::necessary(),
        time: record.collected_at,
        // Proof of consent is kept for as long as the subject's data exists (GDPR 7(1)).
        retention: Retention::UntilErased,
        payload: serde_json::to_vec(&record).expect("records serialize"),
    };
    let appended =
        state.store.append(AppendRequest { subject, expected: ExpectedVersion::Any, events: vec![event] })?;
    state.book.add_consent(subject, record);
    Ok(appended.last_position.0)
}

/// The length of a value's JSON, counted without building it.
fn serialized_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    serde_json::to_writer(&mut c, v).map_or(usize::MAX, |()| c.0)
}

/// A message that passed every check and holds its `messageId` claim, ready to append.
struct Ready {
    subject: Pseudonym,
    message_id: String,
    event: NewEvent,
    /// Properties and traits dropped from the payload as unclassified.
    dropped: usize,
    /// The subject is the message's `userId`: once stored, the book knows it for an account.
    user: bool,
}

enum Step {
    Done(Outcome),
    Ready(Box<Ready>),
}

/// Messages checked and sealed, waiting for their append: the outcome of each message that is done
/// already, the ready ones, and the ready ones grouped by subject in request order.
struct Staged {
    outcomes: Vec<Option<Outcome>>,
    /// Per message: whether the GPC signal stands for its subject.
    gpc_honored: Vec<bool>,
    ready: Vec<(usize, Ready)>,
    by_subject: Vec<(Pseudonym, Vec<usize>)>,
}

/// Checks every message and prepares one append request per subject (the events of a subject in
/// message order). Memory only, unless `gpc` records an opt-out.
fn stage_all(
    state: &CollectState,
    raws: &[Value],
    kind: Option<&str>,
    caller: Caller,
    now: UtcMicros,
) -> (Staged, Vec<AppendRequest>) {
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(raws.len());
    let mut ready: Vec<(usize, Ready)> = Vec::new();
    let mut gpc_honored = vec![false; raws.len()];
    for (i, raw) in raws.iter().enumerate() {
        match prepare(state, raw, kind, caller, now, &mut gpc_honored[i]) {
            Ok(Step::Done(o)) => outcomes.push(Some(o)),
            Ok(Step::Ready(r)) => {
                outcomes.push(None);
                ready.push((i, *r));
            }
            Err(e) => outcomes.push(Some(reject(e.code, e.bounded_message()))),
        }
    }
    let mut by_subject: Vec<(Pseudonym, Vec<usize>)> = Vec::new();
    for (k, (_, r)) in ready.iter().enumerate() {
        match by_subject.iter_mut().find(|(s, _)| *s == r.subject) {
            Some((_, ks)) => ks.push(k),
            None => by_subject.push((r.subject, vec![k])),
        }
    }
    let requests = by_subject
        .iter()
        .map(|(subject, ks)| AppendRequest {
            subject: *subject,
            expected: ExpectedVersion::Any,
            events: ks.iter().map(|k| ready[*k].1.event.clone()).collect(),
        })
        .collect();
    (Staged { outcomes, gpc_honored, ready, by_subject }, requests)
}

/// Processes messages, synchronously (call from a blocking thread: it waits for an fsync). Every
/// message that passes its checks is appended in one group commit; each gets its own outcome.
pub(crate) fn process_all(
    state: &CollectState,
    raws: &[Value],
    kind: Option<&str>,
    caller: Caller,
    now: UtcMicros,
) -> Vec<EventResult> {
    let (staged, requests) = stage_all(state, raws, kind, caller, now);
    let appended = if requests.is_empty() { Vec::new() } else { state.store.append_batch(requests) };
    finish_all(state, raws, staged, appended)
}

/// [`process_all`] without holding a thread while the log makes the events durable: the checks
/// run here, the append is awaited. A GPC signal records an opt-out first, which waits, so such a
/// request takes a blocking thread.
async fn process_async(
    state: Arc<CollectState>,
    raws: Vec<Value>,
    kind: Option<&'static str>,
    caller: Caller,
) -> Result<Vec<EventResult>, ApiError> {
    if caller.gpc {
        return web::block(move || process_all(&state, &raws, kind, caller, UtcMicros::now()))
            .await
            .map_err(|_| ApiError::new(503, "overloaded", "no worker is free"));
    }
    let (staged, requests) = stage_all(&state, &raws, kind, caller, UtcMicros::now());
    let appended = if requests.is_empty() {
        Vec::new()
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        state.store.append_batch_then(
            requests,
            Box::new(move |results| {
                let _ = tx.send(results);
            }),
        );
        rx.await.map_err(|_| ApiError::new(503, "log_closed", "the event log stopped"))?
    };
    Ok(finish_all(&state, &raws, staged, appended))
}

/// The outcome of every message once its subject's append is done (or refused).
fn finish_all(
    state: &CollectState,
    raws: &[Value],
    staged: Staged,
    appended: Vec<lethe_eventlog::Result<lethe_eventlog::Appended>>,
) -> Vec<EventResult> {
    let Staged { mut outcomes, gpc_honored, ready, by_subject } = staged;
    for ((_, ks), appended) in by_subject.iter().zip(appended) {
        for (n, k) in ks.iter().enumerate() {
            let (i, r) = &ready[*k];
            outcomes[*i] = Some(match &appended {
                Ok(a) => {
                    if r.user {
                        state.book.mark_user(r.subject);
                    }
                    if r.dropped > 0 {
                        state.metrics.add(FIELDS_DROPPED, "unclassified", r.dropped as u64);
                    }
                    Outcome::Stored { position: a.first_position.0 + n as u64, dropped_fields: r.dropped }
                }
                Err(e) => {
                    state.book.release_message(&r.subject, &r.message_id);
                    let e = ApiError::from(e);
                    reject(e.code, e.bounded_message())
                }
            });
        }
    }
    raws.iter()
        .zip(outcomes)
        .zip(gpc_honored)
        .map(|((raw, outcome), gpc_honored)| {
            let outcome = outcome.unwrap_or_else(|| reject("internal", "no outcome"));
            let label = match &outcome {
                Outcome::Stored { .. } => "stored",
                Outcome::Duplicate => "duplicate",
                Outcome::Rejected { reason, .. } => reason,
            };
            state.metrics.inc("lethe_collect_events_total", label);
            let message_id = raw.get("messageId").and_then(Value::as_str).map(str::to_owned);
            EventResult { message_id, outcome, gpc_honored }
        })
        .collect()
}

/// Checks one message and, when it passes, seals it. With the GPC signal, records the opt-out of
/// the message's subject once it is known; `gpc_honored` then says the signal stands for it.
fn prepare(
    state: &CollectState,
    raw: &Value,
    kind: Option<&str>,
    caller: Caller,
    now: UtcMicros,
    gpc_honored: &mut bool,
) -> Result<Step, ApiError> {
    let done = |code, message: String| Ok(Step::Done(reject(code, message)));
    if serialized_len(raw) > MAX_EVENT_BYTES {
        return done("event_too_large", format!("an event may hold at most {MAX_EVENT_BYTES} bytes"));
    }
    let m = match segment::parse(raw, kind) {
        Ok(m) => m,
        Err(r) => return done(r.code, r.message),
    };
    if m.context.user_agent.as_deref().is_some_and(is_bot) {
        return done("bot", "automated clients are not collected".into());
    }
    let time = m.timestamp.unwrap_or(now);
    if time.0 > now.0 + MAX_FUTURE_MICROS {
        return done("future_timestamp", "the timestamp is in the future".into());
    }
    if time.0 < 946_684_800_000_000 {
        return done("implausible_timestamp", "the timestamp is before 2000".into());
    }
    let event_type = match event_type_for(&m.kind) {
        Ok(t) => t,
        Err(r) => return done(r.code, r.message),
    };
    let Some(purpose) = state.policies.purpose_for(&event_type).cloned() else {
        return done("unknown_event", format!("`{event_type}` is not declared in the policies"));
    };
    // Records that need no consent (consent changes, identity links, erasure fences) are written by
    // Lethe's own endpoints; a track call named like one would slip past consent gating.
    if matches!(m.kind, Kind::Track { .. })
        && (purpose == Purpose::necessary() || LETHE_RECORDED.contains(&event_type.as_str()))
    {
        return done("reserved_event", format!("`{event_type}` is recorded by Lethe itself, not by a track call"));
    }
    if let Err(r) = plausibility(event_type.as_str(), &m) {
        return done(r.code, r.message);
    }
    let subject = state.store.pseudonymize(&m.subject);
    // R-DSR-4: an `anonymousId` and a `userId` of the same text are one pseudonym. The public key
    // may write under a userId (Segment's browser library does), but not as an anonymous visitor
    // into a signed-in user's stream, nor record her GPC opt-out that way.
    if caller.site_key && !m.user && state.book.is_user(&subject) {
        return done("user_id_not_allowed", "this anonymousId is a signed-in user's id; send it as userId".into());
    }
    if caller.gpc {
        record_gpc(state, subject, &m)?;
        *gpc_honored = true;
    }
    if m.context.category_preferences.get(purpose.as_str()) == Some(&false) {
        return done("client_denied", format!("the site's consent manager denies `{purpose}`"));
    }
    let requires = state.policies.purpose(&purpose).is_none_or(|p| p.requires_consent());
    let sale_share = Purpose::parse(SALE_SHARE).expect("valid");
    let why = match state.book.verdict(&subject, &purpose, requires, &sale_share) {
        Verdict::NotRequired | Verdict::Granted => None,
        Verdict::NoConsent => Some("no_consent"),
        Verdict::Denied => Some("consent_denied"),
        Verdict::Withdrawn => Some("consent_withdrawn"),
        Verdict::GpcOptOut => Some("gpc_opt_out"),
    };
    if let Some(code) = why {
        return done(code, format!("no consent for `{purpose}`: nothing was stored"));
    }
    let version = state.policies.event(&event_type).map_or(1, |r| r.schema_version().get());
    // R-RETAIN-1: the event's key is the one of its retention period; retentions past what a key
    // can name are clamped to the longest, which is still finite.
    let retention = state.policies.retention_of_event(&event_type).map_or(Retention::UntilErased, |r| {
        Retention::Days(u16::try_from(r.days()).unwrap_or(lethe_domain::KeyId::MAX_RETENTION_DAYS))
    });
    // Data already past its retention is not stored at all.
    if retention.key_for(time).ok().and_then(lethe_domain::KeyId::expires_at).is_some_and(|at| at <= now) {
        return done(
            "past_retention",
            "the event is older than its data categories may be kept: nothing was stored".into(),
        );
    }
    // Claimed last: a message refused above leaves no claim behind (a corrected resend is stored,
    // and refusals grow no index).
    let message_id = m.message_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if !state.book.claim_message(&subject, &message_id) {
        return Ok(Step::Done(Outcome::Duplicate));
    }
    let (body, dropped) = payload(&m, &event_type, &state.policies, &|id| state.store.pseudonymize(id), time);
    let event = NewEvent {
        schema_version: SchemaVersion::new(version).expect("policy versions start at 1"),
        event_type,
        purpose,
        time,
        retention,
        payload: serde_json::to_vec(&body).expect("payload serializes"),
    };
    Ok(Step::Ready(Box::new(Ready { subject, message_id, event, dropped, user: m.user })))
}

/// Roles that may send behavior: a site's write key, or an operator.
const COLLECTORS: &[Role] = &[Role::Site, Role::Admin];

async fn single(
    state: web::Data<CollectState>,
    req: HttpRequest,
    body: web::Bytes,
    kind: &'static str,
) -> Result<HttpResponse, ApiError> {
    let mut value = parse_body(&body, MAX_EVENT_BYTES)?;
    let principal = authorize_with(&req, &state, COLLECTORS, value.get("writeKey").and_then(Value::as_str))?;
    let gpc = gpc_header(&req);
    let caller = Caller { gpc, site_key: principal.role() == Role::Site };
    let (country, region) = state.edge.of(req.headers());
    state.edge.apply(country.as_deref(), region.as_deref(), &mut value);
    let result = process_async(state.into_inner(), vec![value], Some(kind), caller)
        .await?
        .pop()
        .ok_or_else(|| ApiError::new(500, "internal", "no outcome"))?;
    let status = status_of(&result.outcome);
    let mut body = json!({ "success": status == 200, "result": result });
    if let Outcome::Rejected { reason, message } = &result.outcome {
        body["code"] = json!(reason);
        body["message"] = json!(message);
    }
    if gpc && result.gpc_honored {
        body["gpc"] = json!("honored");
    }
    Ok(HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("valid status")).json(body))
}

#[utoipa::path(post, path = "/v1/track", tag = "collection", summary = "Records a track call",
    request_body(content = Object, description = "Segment HTTP Tracking API message(s)", content_type = "application/json"),
    responses((status = 200, description = "stored or duplicate", body = Object), (status = 400, description = "malformed input", body = ApiError), (status = 410, description = "the subject was erased", body = Object), (status = 503, description = "the log cannot take it now; send it again", body = Object), (status = 401, description = "no valid credentials", body = ApiError), (status = 403, description = "role, origin or consent refuses it", body = ApiError), (status = 413, description = "over the size limits", body = ApiError), (status = 429, description = "rate limited", body = ApiError)),
    params(("Sec-GPC" = Option<String>, Header, description = "Global Privacy Control: `1` opts out of sale/share")),
    security(("bearer" = []), ("write_key" = [])))]
pub(crate) async fn track(s: web::Data<CollectState>, r: HttpRequest, b: web::Bytes) -> Result<HttpResponse, ApiError> {
    single(s, r, b, "track").await
}

#[utoipa::path(post, path = "/v1/page", tag = "collection", summary = "Records a page view",
    request_body(content = Object, description = "Segment HTTP Tracking API message(s)", content_type = "application/json"),
    responses((status = 200, description = "stored or duplicate", body = Object), (status = 400, description = "malformed input", body = ApiError), (status = 410, description = "the subject was erased", body = Object), (status = 503, description = "the log cannot take it now; send it again", body = Object), (status = 401, description = "no valid credentials", body = ApiError), (status = 403, description = "role, origin or consent refuses it", body = ApiError), (status = 413, description = "over the size limits", body = ApiError), (status = 429, description = "rate limited", body = ApiError)),
    params(("Sec-GPC" = Option<String>, Header, description = "Global Privacy Control: `1` opts out of sale/share")),
    security(("bearer" = []), ("write_key" = [])))]
pub(crate) async fn page(s: web::Data<CollectState>, r: HttpRequest, b: web::Bytes) -> Result<HttpResponse, ApiError> {
    single(s, r, b, "page").await
}

#[utoipa::path(post, path = "/v1/identify", tag = "collection", summary = "Records an identify call",
    request_body(content = Object, description = "Segment HTTP Tracking API message(s)", content_type = "application/json"),
    responses((status = 200, description = "stored or duplicate", body = Object), (status = 400, description = "malformed input", body = ApiError), (status = 410, description = "the subject was erased", body = Object), (status = 503, description = "the log cannot take it now; send it again", body = Object), (status = 401, description = "no valid credentials", body = ApiError), (status = 403, description = "role, origin or consent refuses it", body = ApiError), (status = 413, description = "over the size limits", body = ApiError), (status = 429, description = "rate limited", body = ApiError)),
    params(("Sec-GPC" = Option<String>, Header, description = "Global Privacy Control: `1` opts out of sale/share")),
    security(("bearer" = []), ("write_key" = [])))]
pub(crate) async fn identify(
    s: web::Data<CollectState>,
    r: HttpRequest,
    b: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    single(s, r, b, "identify").await
}

/// `POST /v1/batch`: up to 2,500 messages and 500 KB; one result per message, in order.
#[utoipa::path(post, path = "/v1/batch", tag = "collection", summary = "Records up to 2,500 messages",
    request_body(content = Object, description = "Segment HTTP Tracking API message(s)", content_type = "application/json"),
    responses((status = 200, description = "one result per message, in order", body = Object), (status = 503, description = "the log could not take some messages: the same results; send the batch again (what was stored answers duplicate)", body = Object), (status = 400, description = "malformed input", body = ApiError), (status = 401, description = "no valid credentials", body = ApiError), (status = 403, description = "role, origin or consent refuses it", body = ApiError), (status = 413, description = "over the size limits", body = ApiError), (status = 429, description = "rate limited", body = ApiError)),
    params(("Sec-GPC" = Option<String>, Header, description = "Global Privacy Control: `1` opts out of sale/share")),
    security(("bearer" = []), ("write_key" = [])))]
pub(crate) async fn batch(
    state: web::Data<CollectState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let value = parse_body(&body, MAX_BATCH_BYTES)?;
    let principal = authorize_with(&req, &state, COLLECTORS, value.get("writeKey").and_then(Value::as_str))?;
    let items = match value.get("batch") {
        Some(Value::Array(items)) => items.clone(),
        _ => return Err(ApiError::bad_request("invalid_batch", "the body needs a `batch` array")),
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("empty_batch", "the batch is empty"));
    }
    if items.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::new(413, "batch_too_large", format!("a batch holds at most {MAX_BATCH_EVENTS} events")));
    }
    let gpc = gpc_header(&req);
    let (country, region) = state.edge.of(req.headers());
    let mut items = items;
    for item in &mut items {
        state.edge.apply(country.as_deref(), region.as_deref(), item);
    }
    let caller = Caller { gpc, site_key: principal.role() == Role::Site };
    let results = process_async(state.into_inner(), items, None, caller).await?;
    let stored = results.iter().filter(|r| !matches!(r.outcome, Outcome::Rejected { .. })).count();
    let status = batch_status(results.iter().map(|r| &r.outcome));
    let honored = results.iter().any(|r| r.gpc_honored);
    let mut body = json!({ "success": stored == results.len(), "accepted": stored, "rejected": results.len() - stored, "results": results });
    if gpc && honored {
        body["gpc"] = json!("honored");
    }
    Ok(HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("valid status")).json(body))
}

/// `POST /v1/import`: Segment's name for a batch.
#[utoipa::path(post, path = "/v1/import", tag = "collection", summary = "Records up to 2,500 messages (Segment's import endpoint)",
    request_body(content = Object, description = "Segment HTTP Tracking API message(s)", content_type = "application/json"),
    responses((status = 200, description = "one result per message, in order", body = Object), (status = 503, description = "the log could not take some messages: the same results; send the batch again (what was stored answers duplicate)", body = Object), (status = 400, description = "malformed input", body = ApiError), (status = 401, description = "no valid credentials", body = ApiError), (status = 403, description = "role, origin or consent refuses it", body = ApiError), (status = 413, description = "over the size limits", body = ApiError), (status = 429, description = "rate limited", body = ApiError)),
    params(("Sec-GPC" = Option<String>, Header, description = "Global Privacy Control: `1` opts out of sale/share")),
    security(("bearer" = []), ("write_key" = [])))]
pub(crate) async fn import(
    s: web::Data<CollectState>,
    r: HttpRequest,
    b: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    batch(s, r, b).await
}

/// A subject id from a path or body, parsed at the edge.
pub fn subject_id(raw: &str) -> Result<SubjectId, ApiError> {
    SubjectId::parse(raw).map_err(|e| ApiError::bad_request("invalid_id", e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use lethe_domain::{EventBody, EventEnvelope, KeyId, Position, RecordedEvent, Seq};
    use lethe_eventlog::{
        Appended, BackupReport, ErasureReceipt, EventStore, LogError, RetentionReport, RotationReport, SubjectState,
        VerifyReport,
    };
    use lethe_policy::{CategoryId, CustomEvents, EventRule};
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::testing::grant;

    /// R-CONSENT-1: a GPC record names only the jurisdiction and locale the message told.
    #[test]
    fn a_gpc_record_names_the_messages_location_and_locale_or_says_it_does_not_know() {
        let ctx = |country: Option<&str>, region: Option<&str>, locale: Option<&str>| segment::Context {
            country: country.map(str::to_owned),
            region: region.map(str::to_owned),
            locale: locale.map(str::to_owned),
            ..segment::Context::default()
        };
        assert_eq!(gpc_jurisdiction(&ctx(Some("us"), Some("ca"), None)), "US-CA");
        assert_eq!(gpc_jurisdiction(&ctx(Some("DE"), None, None)), "DE");
        assert_eq!(gpc_jurisdiction(&ctx(Some("DE"), Some("x y"), None)), "DE", "a malformed region is left out");
        assert_eq!(gpc_jurisdiction(&ctx(None, Some("CA"), None)), "unknown");
        assert_eq!(gpc_jurisdiction(&ctx(Some("United States of America"), None, None)), "unknown");
        assert_eq!(gpc_locale(&ctx(None, None, Some("pt-BR"))), "pt-BR");
        assert_eq!(gpc_locale(&ctx(None, None, Some("<script>"))), "und");
        assert_eq!(gpc_locale(&ctx(None, None, None)), "und");
    }

    #[test]
    fn segment_event_names_map_to_lethe_types() {
        let t = |e: &str| event_type_for(&Kind::Track { event: e.into() }).map(|t| t.to_string());
        assert_eq!(t("Order Completed").unwrap(), "purchase.completed");
        assert_eq!(t("Scroll Depth").unwrap(), "scroll.depth");
        assert_eq!(t("Newsletter Signup!").unwrap(), "newsletter.signup");
        assert!(t("!!!").is_err());
    }

    /// The repository's `policies/`, as `lethe serve` reads them.
    fn repo_policies() -> Policies {
        Policies::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A property (and trait) no rule classifies, of the kind clients send.
    const UNDECLARED: &str = "email";

    /// A Segment message (batch form) of a declared event type carrying every property its rule
    /// declares (identify: as traits too), one undeclared property, and a full browser context.
    fn message_for(rule: &EventRule) -> Value {
        let mut properties: Map<String, Value> =
            rule.fields().map(|(field, _)| (field.to_owned(), json!(format!("{field}-value")))).collect();
        properties.insert(UNDECLARED.into(), json!("someone@example.com"));
        let mut m = json!({
            "userId": "user-1", "anonymousId": "anon-1", "messageId": "m-1", "timestamp": "2026-11-29T10:00:00Z",
            "properties": properties,
            "context": {
                "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1",
                "page": {"url": "https://shop.example/tents?utm=x", "title": "Tents", "referrer": "https://www.google.com/?q=x"},
                "location": {"country": "DE", "region": "BE"},
            },
        });
        match rule.event_type().as_str() {
            "page.viewed" => m["type"] = json!("page"),
            "identify" => {
                m["type"] = json!("identify");
                m["traits"] = m["properties"].clone();
            }
            other => {
                m["type"] = json!("track");
                m["event"] = json!(other);
            }
        }
        m
    }

    /// Every key of a stored payload with where it is: `top`, `context`, `context.location`,
    /// `properties` or `traits`.
    fn stored_keys(body: &Value) -> Vec<(&'static str, String)> {
        let mut keys = Vec::new();
        for (key, value) in body.as_object().expect("a payload is an object") {
            match (key.as_str(), value) {
                ("properties", Value::Object(p)) => keys.extend(p.keys().map(|k| ("properties", k.clone()))),
                ("traits", Value::Object(t)) => keys.extend(t.keys().map(|k| ("traits", k.clone()))),
                ("context", Value::Object(c)) => {
                    for (key, value) in c {
                        match (key.as_str(), value) {
                            ("location", Value::Object(l)) => {
                                keys.extend(l.keys().map(|k| ("context.location", k.clone())));
                            }
                            _ => keys.push(("context", key.clone())),
                        }
                    }
                }
                _ => keys.push(("top", key.clone())),
            }
        }
        keys
    }

    /// The data category of a stored key: context fields by `[context]`, properties and traits by
    /// the event's rule (or `[custom]`), top-level fields by either.
    fn category_of<'p>(policies: &'p Policies, t: &EventType, scope: &str, key: &str) -> Option<&'p CategoryId> {
        match scope {
            "context" | "context.location" => policies.category_of_context(key),
            "top" => policies.category_of_context(key).or_else(|| policies.category_of(t, key)),
            _ => policies.category_of(t, key),
        }
    }

    fn assert_classified(policies: &Policies, t: &EventType, body: &Value) {
        for (scope, key) in stored_keys(body) {
            assert!(
                category_of(policies, t, scope, &key).is_some(),
                "`{t}` stores `{scope}.{key}`, which policies/events.toml does not classify (R-ROPA-1)"
            );
        }
    }

    fn pseudonymize(id: &SubjectId) -> Pseudonym {
        Pseudonym::from_bytes(Sha256::digest(id.expose().as_bytes()).into())
    }

    /// R-ROPA-1, the CI check: for every event type the repository's policies declare, a message
    /// carrying every declared property and an undeclared one is stored with every key classified
    /// (by `[context]` or the event's rule), the undeclared property (and trait) gone and counted,
    /// and every declared property kept.
    #[test]
    fn r_ropa_1_every_stored_field_of_every_declared_event_type_is_classified() {
        let policies = repo_policies();
        let time = segment::parse_timestamp("2026-11-29T10:00:00Z").unwrap();
        let mut checked = Vec::new();
        for rule in policies.events() {
            let t = rule.event_type();
            let m = segment::parse(&message_for(rule), None).unwrap_or_else(|r| panic!("{t}: {r:?}"));
            if event_type_for(&m.kind).ok().as_ref() != Some(t) {
                // Only types Lethe writes itself are out of a Segment message's reach: the erasure
                // fence, and the catalog events of `PUT /v1/items`.
                let own = t.as_str().starts_with(CustomEvents::RESERVED_PREFIX) || t.as_str().starts_with("catalog.");
                assert!(own, "no Segment message maps to `{t}`");
                continue;
            }
            let (body, dropped) = payload(&m, t, &policies, &pseudonymize, time);
            assert_classified(&policies, t, &body);
            assert!(body["properties"].get(UNDECLARED).is_none(), "{t}: {body}");
            assert!(body.get("traits").and_then(|tr| tr.get(UNDECLARED)).is_none(), "{t}: {body}");
            if m.kind == Kind::Identify {
                // Nothing of the client's but classified traits: no property, no context, and no
                // field Lethe fills itself.
                assert_eq!(body["properties"], json!({}), "{body}");
                assert!(body.get("context").is_none(), "{body}");
                assert!(!body.to_string().contains("linked_anonymous-value"), "{body}");
                assert_eq!(dropped, 2 * (rule.fields().count() + 1), "{t}: {body}");
                checked.push(t.as_str());
                continue;
            }
            assert_eq!(dropped, 1, "{t}: {body}");
            for (field, _) in rule.fields().filter(|(f, _)| !MINIMIZED_PROPERTIES.contains(f)) {
                assert!(body["properties"].get(field).is_some(), "{t}: declared property `{field}` was dropped");
            }
            checked.push(t.as_str());
        }
        for t in ["page.viewed", "identify", "element.clicked", "purchase.completed", "item.rated"] {
            assert!(checked.contains(&t), "{t} was not checked: {checked:?}");
        }
    }

    /// Identify keeps the linked pseudonym and only the traits its rule classifies: none in the
    /// repository's policies, as traits are typically direct identifiers.
    #[test]
    fn identify_stores_no_unclassified_trait() {
        let policies = repo_policies();
        let raw = json!({"type": "identify", "userId": "u-1", "anonymousId": "a-1",
            "traits": {"email": "ann@example.com", "name": "Ann", "plan": "gold"}});
        let m = segment::parse(&raw, None).unwrap();
        let t = event_type_for(&m.kind).unwrap();
        let (body, dropped) = payload(&m, &t, &policies, &pseudonymize, UtcMicros(1_800_000_000_000_000));
        assert_eq!(dropped, 3, "{body}");
        assert_eq!(body["traits"], json!({}));
        let linked = pseudonymize(&SubjectId::parse("a-1").unwrap()).to_hex();
        assert_eq!(body["linked_anonymous"], json!(linked));
        assert!(!body.to_string().contains("ann@example.com"), "{body}");
        assert_classified(&policies, &t, &body);
    }

    /// A log that cannot take a message answers a server error, which clients retry; a refusal of
    /// the message itself does not.
    #[test]
    fn only_a_log_that_cannot_take_the_message_answers_a_retryable_status() {
        let stored = Outcome::Stored { position: 1, dropped_fields: 0 };
        let cases = [
            (stored.clone(), 200),
            (Outcome::Duplicate, 200),
            (reject("no_consent", ""), 403),
            (reject("event_too_large", ""), 413),
            (reject("subject_erased", ""), 410),
            (reject("store_unavailable", ""), 503),
            (reject("implausible_value", ""), 400),
        ];
        for (outcome, status) in &cases {
            assert_eq!(status_of(outcome), *status, "{outcome:?}");
        }
        let unavailable = reject("store_unavailable", "");
        let refused = reject("no_consent", "");
        assert_eq!(batch_status([&stored, &refused].into_iter()), 200, "per-message refusals are in the results");
        assert_eq!(
            batch_status([&stored, &unavailable].into_iter()),
            503,
            "send the batch again: stored ones are duplicates"
        );
    }

    /// An undeclared (custom) event type keeps every property: `[custom]` classifies them all.
    #[test]
    fn custom_events_keep_their_properties() {
        let policies = repo_policies();
        let raw = json!({"type": "track", "anonymousId": "a-1", "event": "Wishlist Shared",
            "properties": {"wishlist_id": "w-9", "items": 3, UNDECLARED: "x@example.com", "url": "https://s.example/?id=1"}});
        let m = segment::parse(&raw, None).unwrap();
        let t = event_type_for(&m.kind).unwrap();
        assert!(policies.event(&t).is_none());
        let (body, dropped) = payload(&m, &t, &policies, &pseudonymize, UtcMicros(1_800_000_000_000_000));
        assert_eq!(dropped, 0);
        assert_eq!(body["properties"], json!({"wishlist_id": "w-9", "items": 3, UNDECLARED: "x@example.com"}));
        assert_classified(&policies, &t, &body);
    }

    /// An in-memory log, enough for the collection path.
    #[derive(Debug, Default)]
    struct MemoryStore {
        events: Mutex<Vec<(Pseudonym, NewEvent)>>,
    }

    impl EventStore for MemoryStore {
        fn pseudonymize(&self, id: &SubjectId) -> Pseudonym {
            pseudonymize(id)
        }
        fn append_batch(&self, requests: Vec<AppendRequest>) -> Vec<lethe_eventlog::Result<Appended>> {
            let mut events = self.events.lock().unwrap();
            requests
                .into_iter()
                .map(|r| {
                    let first = events.len() as u64 + 1;
                    events.extend(r.events.into_iter().map(|e| (r.subject, e)));
                    let last = events.len() as u64;
                    Ok(Appended { first_position: Position(first), last_position: Position(last), last_seq: Seq(last) })
                })
                .collect()
        }
        fn read_stream(&self, _: &Pseudonym) -> lethe_eventlog::Result<Vec<RecordedEvent>> {
            Ok(Vec::new())
        }
        fn read_all(
            &self,
            from: Position,
        ) -> Box<dyn Iterator<Item = lethe_eventlog::Result<RecordedEvent>> + Send + '_> {
            let events = self.events.lock().unwrap();
            let recorded: Vec<_> = events
                .iter()
                .enumerate()
                .skip(usize::try_from(from.0.saturating_sub(1)).unwrap())
                .map(|(i, (subject, e))| {
                    Ok(RecordedEvent {
                        envelope: EventEnvelope {
                            position: Position(i as u64 + 1),
                            subject: *subject,
                            seq: Seq(i as u64 + 1),
                            event_type: e.event_type.clone(),
                            schema_version: e.schema_version,
                            purpose: e.purpose.clone(),
                            time: e.time,
                            key_id: KeyId::PERMANENT,
                        },
                        body: EventBody::Plain(e.payload.clone()),
                    })
                })
                .collect();
            Box::new(recorded.into_iter())
        }
        fn head(&self) -> Position {
            Position(self.events.lock().unwrap().len() as u64)
        }
        fn writable(&self) -> bool {
            true
        }
        fn rotation_pending(&self) -> bool {
            false
        }
        fn subject_state(&self, _: &Pseudonym) -> lethe_eventlog::Result<SubjectState> {
            Ok(SubjectState::Unknown)
        }
        fn erase(&self, _: &Pseudonym) -> lethe_eventlog::Result<ErasureReceipt> {
            Err(LogError::Closed)
        }
        fn rotate_keys(&self) -> lethe_eventlog::Result<RotationReport> {
            Err(LogError::Closed)
        }
        fn expire_keys(&self, _: UtcMicros) -> lethe_eventlog::Result<RetentionReport> {
            Err(LogError::Closed)
        }
        fn backup(&self, _: &Path) -> lethe_eventlog::Result<BackupReport> {
            Err(LogError::Closed)
        }
        fn verify(&self) -> lethe_eventlog::Result<VerifyReport> {
            Ok(VerifyReport::default())
        }
    }

    /// Through the whole collection path: the unclassified properties of a declared event are left
    /// out of what is appended, the event itself is stored (never rejected for them), the answer
    /// says how many were dropped, and the counter counts them.
    #[test]
    fn unclassified_properties_are_dropped_counted_and_the_event_stored() {
        let store = Arc::new(MemoryStore::default());
        let keys = lethe_auth::SigningKeys::generate().unwrap();
        let auth = Arc::new(crate::auth::Auth::new(keys, lethe_auth::AuthConfig::default()));
        let state = CollectState::build(store.clone(), Arc::new(repo_policies()), auth).unwrap();
        let subject = pseudonymize(&SubjectId::parse("v-1").unwrap());
        state.book.add_consent(subject, grant(&["analytics"], false));
        let raws = [
            json!({"type": "track", "anonymousId": "v-1", "event": "Product Clicked", "messageId": "c-1",
                "properties": {"product_id": "tent-2p", "category": "outdoor", "email": "v@example.com", "session_id": "s-77"}}),
            json!({"type": "track", "anonymousId": "v-1", "event": "Scroll Depth", "messageId": "c-2",
                "properties": {"depth": 75}}),
        ];
        let results = process_all(&state, &raws, None, Caller::default(), UtcMicros::now());
        assert_eq!(results[0].outcome, Outcome::Stored { position: 1, dropped_fields: 2 });
        assert_eq!(results[1].outcome, Outcome::Stored { position: 2, dropped_fields: 0 });
        let answer = serde_json::to_value(&results).unwrap();
        assert_eq!(answer[0]["dropped_fields"], 2, "{answer}");
        assert!(answer[1].get("dropped_fields").is_none(), "{answer}");
        assert_eq!(state.metrics.get(FIELDS_DROPPED, "unclassified"), 2);
        assert!(state.metrics.render().contains("lethe_collect_fields_dropped_total{reason=\"unclassified\"} 2"));

        let events = store.events.lock().unwrap();
        let stored: Value = serde_json::from_slice(&events[0].1.payload).unwrap();
        assert_eq!(stored["properties"], json!({"product_id": "tent-2p", "category": "outdoor"}));
        assert!(!String::from_utf8_lossy(&events[0].1.payload).contains("v@example.com"));
        let stored: Value = serde_json::from_slice(&events[1].1.payload).unwrap();
        assert_eq!(stored["properties"], json!({"depth": 75}));
    }

    /// R-DSR-4, R-PSEUDO-1: an `anonymousId` and a `userId` of the same text share one pseudonym,
    /// so the book learns which pseudonyms are signed-in accounts from what is stored: an event
    /// whose subject was the message's `userId` carries Lethe's `subject_is_user` (classified, and
    /// absent from anonymous events), a consent record for a `userId` says so, and a replay of the
    /// log knows exactly what the running book knew. Events refused for want of consent teach
    /// nothing (they are not in the log).
    #[test]
    fn r_dsr_4_the_book_knows_the_pseudonyms_stored_under_a_user_id_and_replay_agrees() {
        let store = Arc::new(MemoryStore::default());
        let keys = lethe_auth::SigningKeys::generate().unwrap();
        let auth = Arc::new(crate::auth::Auth::new(keys, lethe_auth::AuthConfig::default()));
        let policies = repo_policies();
        let state = CollectState::build(store.clone(), Arc::new(policies), auth).unwrap();
        let pseudonym = |id: &str| pseudonymize(&SubjectId::parse(id).unwrap());
        // Consent for the user, recorded for her userId; and for two anonymous visitors.
        append_consent(&state, pseudonym("u-42"), grant(&["analytics"], true)).unwrap();
        append_consent(&state, pseudonym("a-1"), grant(&["analytics"], false)).unwrap();
        append_consent(&state, pseudonym("a-2"), grant(&["analytics"], false)).unwrap();
        assert!(state.book.is_user(&pseudonym("u-42")), "a consent record for a userId marks it");
        assert!(!state.book.is_user(&pseudonym("a-1")));
        let raws = [
            // A site's browser library tracks a signed-in visitor under her userId.
            json!({"type": "track", "userId": "u-7", "anonymousId": "a-2", "event": "Product Clicked", "messageId": "m-1"}),
            json!({"type": "track", "anonymousId": "a-1", "event": "Product Clicked", "messageId": "m-2"}),
            // No consent for this user: refused, nothing stored, nothing learned.
            json!({"type": "track", "userId": "u-9", "event": "Product Clicked", "messageId": "m-3"}),
            // An identify needs no consent: a stored link for a userId marks it.
            json!({"type": "identify", "userId": "u-8", "anonymousId": "a-3", "messageId": "m-4"}),
        ];
        // Consent is per pseudonym: u-7 needs its own (here recorded as if for an anonymousId).
        append_consent(&state, pseudonym("u-7"), grant(&["analytics"], false)).unwrap();
        assert!(!state.book.is_user(&pseudonym("u-7")), "not yet: its consent came as an anonymousId");
        let results = process_all(&state, &raws, None, Caller::default(), UtcMicros::now());
        assert!(matches!(results[0].outcome, Outcome::Stored { .. }), "{results:?}");
        assert!(matches!(results[1].outcome, Outcome::Stored { .. }), "{results:?}");
        assert!(matches!(results[2].outcome, Outcome::Rejected { reason: "no_consent", .. }), "{results:?}");
        assert!(matches!(results[3].outcome, Outcome::Stored { .. }), "{results:?}");
        let users = ["u-42", "u-7", "u-8"];
        let anonymous = ["a-1", "a-2", "a-3", "u-9"];
        for id in users {
            assert!(state.book.is_user(&pseudonym(id)), "{id}");
        }
        for id in anonymous {
            assert!(!state.book.is_user(&pseudonym(id)), "{id}");
        }
        {
            let events = store.events.lock().unwrap();
            let payloads: Vec<Value> =
                events.iter().map(|(_, e)| serde_json::from_slice(&e.payload).unwrap()).collect();
            let marked: Vec<_> = events
                .iter()
                .zip(&payloads)
                .filter(|(_, p)| p.get(SUBJECT_IS_USER).is_some())
                .map(|((s, _), p)| (*s, p[SUBJECT_IS_USER].clone()))
                .collect();
            assert_eq!(
                marked,
                [(pseudonym("u-42"), json!(true)), (pseudonym("u-7"), json!(true)), (pseudonym("u-8"), json!(true))],
                "only what came for a userId is marked, and only as true"
            );
            let classified = repo_policies();
            for ((_, e), p) in events.iter().zip(&payloads).filter(|(e, _)| e.1.event_type.as_str() != CONSENT_CHANGED)
            {
                assert_classified(&classified, &e.event_type, p);
            }
        }
        // Deterministic on replay: the same accounts, nothing more.
        let replayed = crate::ConsentBook::replay(store.as_ref()).unwrap();
        for id in users {
            assert!(replayed.is_user(&pseudonym(id)), "{id} after replay");
        }
        for id in anonymous {
            assert!(!replayed.is_user(&pseudonym(id)), "{id} after replay");
        }
        // An erasure forgets it with the rest.
        assert!(replayed.forget(&pseudonym("u-8")));
        assert!(!replayed.is_user(&pseudonym("u-8")) && !replayed.holds(&pseudonym("u-8")));
    }
}
