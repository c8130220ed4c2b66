//! The DPO's audit export: `GET /v1/audit/export?from=&to=&format=jsonl|csv` (and `lethe audit
//! export`) writes, for a time window, the consent records with their ISO/IEC TS 27560 fields, the
//! request log with deadlines and outcomes, erasure certificates, recipient notices and their
//! acknowledgements, the records of processing generated from `policies/`, and the audit chain's
//! entries. `GET /v1/audit/chain` gives the chain itself as signed JSONL, which `lethe audit verify
//! --file` checks anywhere.

use std::io::Write;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use lethe_audit::AuditKind;
use lethe_auth::Role;
use lethe_collect::auth::authorize;
use lethe_collect::ApiError;
use lethe_consent::{ConsentRecord, CONSENT_CHANGED};
use lethe_domain::{EventBody, Position, UtcMicros};
use lethe_dsr::{ListFilter, SubjectDigest};
use lethe_outbox::{MessageState, Outcome};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::erasure::ErasureCertificate;
use crate::requests_api::describe;
use crate::state::{audit_error, Privacy};
use crate::time::{parse_rfc3339, rfc3339};

/// The output format of the audit export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line, each with a `record` field naming its kind.
    Jsonl,
    /// One row per record: `record,time,id,subject_digest,detail` (detail as JSON).
    Csv,
}

/// The window and format of an export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub format: Option<Format>,
}

/// What an export wrote, by record kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportCounts {
    pub consent_records: u64,
    pub consent_records_shredded: u64,
    pub requests: u64,
    pub certificates: u64,
    pub notices: u64,
    pub audit_entries: u64,
    pub activities: u64,
}

struct Sink<W: Write> {
    out: W,
    format: Format,
}

impl<W: Write> Sink<W> {
    fn record(
        &mut self,
        kind: &str,
        time: Option<UtcMicros>,
        id: &str,
        subject: Option<&str>,
        detail: Value,
    ) -> std::io::Result<()> {
        match self.format {
            Format::Jsonl => {
                let mut line = json!({"record": kind, "time": time.map(rfc3339), "id": id, "subject_digest": subject});
                if let (Value::Object(l), Value::Object(d)) = (&mut line, detail) {
                    l.insert("detail".into(), Value::Object(d));
                }
                serde_json::to_writer(&mut self.out, &line)?;
                self.out.write_all(b"\n")
            }
            Format::Csv => {
                let t = time.map(rfc3339).unwrap_or_default();
                let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
                w.write_record([kind, &t, id, subject.unwrap_or(""), &detail.to_string()])
                    .map_err(std::io::Error::other)?;
                let row = w.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?;
                self.out.write_all(&row)
            }
        }
    }
}

/// Writes the DPO's export for `[from, to]` to `out`; `progress` is called with each log position
/// read. Blocking.
///
/// # Errors
/// Storage failures and write errors.
pub fn write_export<W: Write>(
    privacy: &Privacy,
    from: UtcMicros,
    to: UtcMicros,
    format: Format,
    out: W,
    mut progress: impl FnMut(u64),
) -> Result<ExportCounts, ApiError> {
    let io = |e: std::io::Error| ApiError::new(500, "export_failed", format!("writing the export failed: {e}"));
    let mut sink = Sink { out, format };
    if format == Format::Csv {
        sink.out.write_all(b"record,time,id,subject_digest,detail\n").map_err(io)?;
    }
    let mut counts = ExportCounts::default();
    let in_window = |t: UtcMicros| t >= from && t <= to;
    let now = UtcMicros::now();
    sink.record(
        "header",
        Some(now),
        "lethe-audit-export-1",
        None,
        json!({"from": rfc3339(from), "to": rfc3339(to), "audit_key": privacy.signer().key_id(), "audit_public_key": hex::encode(privacy.signer().verifying_key().as_bytes())}),
    )
    .map_err(io)?;

    // Records of processing (GDPR Art. 30), one line per activity.
    let ropa = crate::ropa::generate(&privacy.collect.policies, &privacy.controller);
    sink.record("controller", None, "controller", None, json!({"controller": ropa.controller, "security_measures": ropa.security_measures, "notices": ropa.policy_notices})).map_err(io)?;
    for a in &ropa.activities {
        let detail = serde_json::to_value(a).expect("activities serialize");
        sink.record("processing_activity", None, &a.purpose, None, detail).map_err(io)?;
        counts.activities += 1;
    }

    // Consent records from the log (R-CONSENT-1; ISO/IEC TS 27560 field names).
    for event in privacy.collect.store.read_all(Position(1)) {
        let event = event.map_err(ApiError::from)?;
        progress(event.envelope.position.0);
        if event.envelope.event_type.as_str() != CONSENT_CHANGED || !in_window(event.envelope.time) {
            continue;
        }
        let digest = SubjectDigest::of_pseudonym(event.envelope.subject.as_bytes()).to_string();
        let id = format!("log:{}", event.envelope.position.0);
        match &event.body {
            EventBody::Plain(p) => {
                let Ok(r) = serde_json::from_slice::<ConsentRecord>(p) else { continue };
                let detail = json!({
                    "record_id": r.record_id,
                    "schema_version": "ISO/IEC TS 27560:2023 (fields as named there)",
                    "jurisdiction": r.jurisdiction,
                    "collection_method": r.method,
                    "notice": { "id": r.notice.id, "version": r.notice.version, "content_hash": r.notice.content_hash },
                    "purposes": r.choices.iter().map(|c| json!({"purpose": c.purpose, "consent_given": c.granted, "legal_basis": c.legal_basis})).collect::<Vec<_>>(),
                    "recipients": r.recipients,
                    "language": r.locale,
                    "gpc": r.gpc,
                    "sdk_version": r.sdk_version,
                    "log_position": event.envelope.position.0,
                });
                sink.record("consent", Some(r.collected_at), &id, Some(&digest), detail).map_err(io)?;
                counts.consent_records += 1;
            }
            _ => {
                let detail =
                    json!({"state": "shredded: the subject was erased", "log_position": event.envelope.position.0});
                sink.record("consent", Some(event.envelope.time), &id, Some(&digest), detail).map_err(io)?;
                counts.consent_records_shredded += 1;
            }
        }
    }

    // The request log, with deadlines and outcomes.
    for r in privacy.requests.list(&ListFilter::all()).map_err(crate::state::dsr_error)? {
        let received = crate::time::micros(r.received_at());
        if !in_window(received) {
            continue;
        }
        let digest = r.subject_digest().to_string();
        let detail = describe(privacy, &r, now);
        sink.record("request", Some(received), &r.id().to_string(), Some(&digest), detail).map_err(io)?;
        counts.requests += 1;
    }

    // Erasure certificates.
    for item in privacy.certificates.iter() {
        let (k, v) = item.map_err(|e| ApiError::new(503, "store_unavailable", e.to_string()))?;
        let Ok(c) = serde_json::from_slice::<ErasureCertificate>(&v) else {
            tracing::error!(key = %String::from_utf8_lossy(&k), "an erasure certificate does not decode");
            continue;
        };
        let at = parse_rfc3339(&c.erased_at).unwrap_or(UtcMicros(0));
        if !in_window(at) {
            continue;
        }
        let digest = c.subject_digest.clone();
        sink.record(
            "erasure_certificate",
            Some(at),
            &c.certificate_id,
            Some(&digest),
            serde_json::to_value(&c).expect("serializes"),
        )
        .map_err(io)?;
        counts.certificates += 1;
    }

    // Recipient notices and their acknowledgements.
    for m in privacy.outbox.list(None).map_err(|e| ApiError::new(503, "outbox_unavailable", e.to_string()))? {
        if !in_window(m.created_at) {
            continue;
        }
        let attempts: Vec<Value> = m
            .attempts
            .iter()
            .map(|a| {
                let outcome = match &a.outcome {
                    Outcome::Status { code, excerpt } => json!({"status": code, "excerpt": excerpt}),
                    Outcome::Error(e) => json!({"error": e}),
                    _ => json!({"other": format!("{:?}", a.outcome)}),
                };
                json!({"at": rfc3339(a.at), "outcome": outcome, "duration_ms": a.duration_ms})
            })
            .collect();
        let state = match &m.state {
            MessageState::Pending { next_attempt_at } => {
                json!({"state": "pending", "next_attempt_at": rfc3339(*next_attempt_at)})
            }
            MessageState::Delivered { at, status, ack } => {
                json!({"state": "delivered", "at": rfc3339(*at), "status": status, "acknowledgement": ack})
            }
            MessageState::DeadLetter { at, last_error } => {
                json!({"state": "dead_letter", "at": rfc3339(*at), "last_error": last_error})
            }
            other => json!({"state": format!("{other:?}")}),
        };
        let detail = json!({"recipient": m.recipient_id, "topic": m.topic.as_str(), "delivery": state, "attempts": attempts, "certificate_id": m.body.get("certificate_id")});
        sink.record("recipient_notice", Some(m.created_at), &m.id.to_string(), None, detail).map_err(io)?;
        counts.notices += 1;
    }

    // The audit chain's entries in the window.
    for entry in privacy.audit.entries_between(from.0, to.0) {
        let e = entry.map_err(audit_error)?;
        let detail = serde_json::to_value(&e).expect("entries serialize");
        sink.record("audit_entry", Some(UtcMicros(e.time_micros)), &e.seq.to_string(), e.subject.as_deref(), detail)
            .map_err(io)?;
        counts.audit_entries += 1;
    }
    sink.out.flush().map_err(io)?;
    Ok(counts)
}

fn window(query: &ExportQuery) -> Result<(UtcMicros, UtcMicros, Format), ApiError> {
    let parse = |t: &Option<String>, default| {
        t.as_deref().map_or(Ok(default), |t| parse_rfc3339(t).map_err(|m| ApiError::bad_request("invalid_time", m)))
    };
    let from = parse(&query.from, UtcMicros(0))?;
    let to = parse(&query.to, UtcMicros(i64::MAX))?;
    if from > to {
        return Err(ApiError::bad_request("invalid_range", "`from` is after `to`"));
    }
    Ok((from, to, query.format.unwrap_or(Format::Jsonl)))
}

/// `GET /v1/audit/export`.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", summary = "The DPO's export: consent records, requests, certificates, recipients, records of processing, audit entries",
    params(("from" = Option<String>, Query, description = "RFC 3339"), ("to" = Option<String>, Query, description = "RFC 3339"), ("format" = Option<String>, Query, description = "jsonl (default) or csv")),
    responses((status = 200, description = "the export", body = String, content_type = "application/x-ndjson"), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = [])))]
pub async fn export(
    privacy: web::Data<Privacy>,
    req: HttpRequest,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let principal = authorize(&req, &privacy.collect, &[Role::Dpo, Role::Admin])?;
    let (from, to, format) = window(&query)?;
    let privacy: Arc<Privacy> = privacy.into_inner();
    let role = if principal.role() == Role::Dpo { "dpo" } else { "admin" };
    let body = web::block(move || {
        let mut out = Vec::new();
        let counts = write_export(&privacy, from, to, format, &mut out, |_| {})?;
        privacy.audit(
            AuditKind::Export,
            role,
            None,
            json!({"what": "audit export", "from": rfc3339(from), "to": rfc3339(to), "counts": counts}),
        )?;
        Ok::<_, ApiError>(out)
    })
    .await
    .map_err(|_| ApiError::new(503, "overloaded", "no worker is free"))??;
    let content_type = if format == Format::Csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    Ok(HttpResponse::Ok().content_type(content_type).body(body))
}

/// `GET /v1/audit/chain`: the audit chain as signed JSONL, ending on a fresh checkpoint.
#[utoipa::path(get, path = "/v1/audit/chain", tag = "audit", summary = "The audit chain as signed JSONL, verifiable with `lethe audit verify --file`",
    responses((status = 200, description = "JSONL: header with public keys, entries and checkpoints", body = String, content_type = "application/x-ndjson"), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = [])))]
pub async fn chain(privacy: web::Data<Privacy>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&req, &privacy.collect, &[Role::Dpo, Role::Admin])?;
    let privacy: Arc<Privacy> = privacy.into_inner();
    let body = web::block(move || {
        let mut out = Vec::new();
        if privacy.audit.head().0 > 0 {
            privacy.audit.export_jsonl_signed(&mut out, 1, UtcMicros::now().0).map_err(audit_error)?;
        } else {
            privacy.audit.export_jsonl(&mut out, 1).map_err(audit_error)?;
        }
        Ok::<_, ApiError>(out)
    })
    .await
    .map_err(|_| ApiError::new(503, "overloaded", "no worker is free"))??;
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").body(body))
}

/// `GET /v1/ropa`: the records of processing (GDPR Art. 30) generated from the policies.
#[utoipa::path(get, path = "/v1/ropa", tag = "audit", summary = "The records of processing activities (GDPR Art. 30), generated from the policies",
    responses((status = 200, description = "controller, activities, security measures", body = Object), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = [])))]
pub async fn ropa(privacy: web::Data<Privacy>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&req, &privacy.collect, &[Role::Dpo, Role::Admin])?;
    Ok(HttpResponse::Ok().json(crate::ropa::generate(&privacy.collect.policies, &privacy.controller)))
}
