//! The subject rights API (`/v1/me/*`): erasure, opt-out of sale/share, consent withdrawal and the
//! access export. A `subject` token acts for its own subject; an `admin` acts for any subject named
//! with `?subject=` (R-DSR-4). The opt-out also works with no token at all, as the CCPA requires.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use lethe_audit::AuditKind;
use lethe_auth::{Principal, Role};
use lethe_collect::auth::authorize;
use lethe_collect::{append_consent, gpc_header, subject_id, ApiError, SALE_SHARE};
use lethe_consent::{ConsentMethod, ConsentRecord, NoticeRef, PurposeChoice};
use lethe_domain::{EventBody, Pseudonym, Purpose, SubjectId, UtcMicros};
use lethe_dsr::{ActorRole, Channel, Law, Request, RequestKind, Step, SubjectDigest};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::erasure::{self, Asker, ErasureCertificate};
use crate::state::{call_hook, dsr_error, Privacy};
use crate::time::{jiff_ts, rfc3339};

/// The JSON Schema of the access export, published at `/v1/schemas/export.json`.
pub const EXPORT_SCHEMA: &str = include_str!("../schema/export.schema.json");

/// `?subject=` for operators acting for a subject, and `?law=`.
#[derive(Debug, Deserialize)]
pub struct SubjectQuery {
    pub subject: Option<String>,
    pub law: Option<String>,
}

/// Resolves whom a request is about: the token's own subject, or for an admin the `?subject=`.
fn whom(principal: &Principal, query: &SubjectQuery) -> Result<SubjectId, ApiError> {
    match (principal.role(), principal.subject(), query.subject.as_deref()) {
        (Role::Subject, Some(own), None) => Ok(own.clone()),
        (Role::Subject, Some(own), Some(other)) => {
            let other = subject_id(other)?;
            if &other == own {
                Ok(other)
            } else {
                Err(ApiError::new(403, "forbidden_subject", "this token is bound to another subject"))
            }
        }
        (Role::Admin, _, Some(id)) => subject_id(id),
        (Role::Admin, _, None) => {
            Err(ApiError::bad_request("missing_subject", "an admin names the subject with ?subject="))
        }
        _ => Err(ApiError::new(403, "forbidden_role", "this endpoint is for the subject or an admin")),
    }
}

fn law_of(query: &SubjectQuery) -> Result<Law, ApiError> {
    match query.law.as_deref() {
        None => Ok(Law::Gdpr),
        Some(l) => l.parse().map_err(|_| ApiError::bad_request("unknown_law", format!("no law `{l}`: gdpr or ccpa"))),
    }
}

/// The caller, the subject it acts for and the law it asks under: the preamble of every rights
/// endpoint that needs a token.
fn caller(
    privacy: &Privacy,
    req: &HttpRequest,
    query: &SubjectQuery,
) -> Result<(&'static str, SubjectId, Law), ApiError> {
    let principal = authorize(req, &privacy.collect, &[Role::Subject, Role::Admin])?;
    let id = whom(&principal, query)?;
    Ok((role_name(principal.role()), id, law_of(query)?))
}

fn blocking_error(_: actix_web::error::BlockingError) -> ApiError {
    ApiError::new(503, "overloaded", "no worker is free")
}

/// `POST /v1/me/erasure`.
#[utoipa::path(post, path = "/v1/me/erasure", tag = "subject rights", summary = "Erases the subject (crypto-shredding) and answers with a certificate",
    params(("subject" = Option<String>, Query, description = "for an admin: the subject's id"), ("law" = Option<String>, Query, description = "gdpr (default) or ccpa")),
    responses((status = 200, description = "the erasure certificate", body = ErasureCertificate), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 409, description = "a legal hold", body = ApiError), (status = 503, description = "`erasure_incomplete`: the log erased the subject but a store has not forgotten it yet; the erasure stays pending, is retried in the background, and asking again resumes it", body = ApiError)),
    security(("bearer" = [])))]
pub async fn erase(
    privacy: web::Data<Privacy>,
    req: HttpRequest,
    query: web::Query<SubjectQuery>,
) -> Result<HttpResponse, ApiError> {
    let (role, id, law) = caller(&privacy, &req, &query)?;
    let privacy = privacy.into_inner();
    let certificate: ErasureCertificate = web::block(move || {
        let subject = privacy.collect.store.pseudonymize(&id);
        let result = erasure::erase(&privacy, &subject, Asker { role, law, channel: Channel::Api });
        // The log may have forgotten the subject even when a store has not yet (`erasure_incomplete`):
        // the cached verifications of its tokens go either way.
        privacy.collect.auth.forget_subject(&id);
        result
    })
    .await
    .map_err(blocking_error)??;
    Ok(HttpResponse::Ok().json(certificate))
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Site => "site",
        Role::Cms => "cms",
        Role::Subject => "subject",
        Role::Dpo => "dpo",
        Role::Admin => "admin",
    }
}

/// The body of an opt-out without a token.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OptOutBody {
    pub anonymous_id: Option<String>,
    pub user_id: Option<String>,
}

/// `POST /v1/me/opt-out`: "Do Not Sell or Share" (CCPA §1798.120). No identity verification is
/// required (§7026): a token is used when present, else the body names the device's or user's id.
#[utoipa::path(post, path = "/v1/me/opt-out", tag = "subject rights", summary = "Opts out of sale and sharing (no verification needed)",
    request_body(content = Object, description = "anonymousId or userId, when no subject token is sent", content_type = "application/json"),
    params(("subject" = Option<String>, Query, description = "for an admin (with a token): the subject's id")),
    responses((status = 200, description = "the opt-out, recorded and honored", body = Object), (status = 400, body = ApiError), (status = 429, body = ApiError)))]
pub async fn opt_out(
    privacy: web::Data<Privacy>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if body.len() > 4096 {
        return Err(ApiError::new(413, "payload_too_large", "an opt-out body holds at most 4 KB"));
    }
    let gpc = gpc_header(&req);
    // Who acts: the token's role, or without one the subject itself (unverified, as the law allows).
    let (id, role) = if req.headers().contains_key("authorization") {
        let principal = authorize(&req, &privacy.collect, &[Role::Subject, Role::Admin])?;
        let query = web::Query::<SubjectQuery>::from_query(req.query_string())
            .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
        (whom(&principal, &query)?, role_name(principal.role()))
    } else {
        if let Some(addr) = req.peer_addr() {
            privacy.collect.limits.address(addr.ip()).map_err(|r| ApiError::rate_limited(r.0))?;
        }
        let parsed: OptOutBody = lethe_collect::json::object(&body)?;
        let raw = parsed.user_id.or(parsed.anonymous_id).ok_or_else(|| {
            ApiError::bad_request("missing_id", "send a subject token, or a `userId` or `anonymousId`")
        })?;
        (subject_id(&raw)?, role_name(Role::Subject))
    };
    let privacy = privacy.into_inner();
    let channel = if gpc { Channel::GpcSignal } else { Channel::Api };
    let out = web::block(move || {
        let subject = privacy.collect.store.pseudonymize(&id);
        let sale_share = Purpose::parse(SALE_SHARE).expect("valid");
        let position = record_choice(&privacy, subject, &[sale_share], ConsentMethod::Api, "US-CA", gpc)?;
        let request = close_at_once(&privacy, subject, RequestKind::OptOutSaleShare, Law::Ccpa, channel, role)?;
        privacy.audit(
            AuditKind::OptOut,
            role,
            Some(&SubjectDigest::of_pseudonym(subject.as_bytes())),
            json!({"request_id": request, "purposes": [SALE_SHARE], "log_position": position, "gpc": gpc}),
        )?;
        Ok::<_, ApiError>(json!({
            "request_id": request,
            "honored": true,
            "opted_out_of": [SALE_SHARE],
            "message": "Opt-out request honored: your personal information is not sold or shared.",
            "log_position": position,
        }))
    })
    .await
    .map_err(blocking_error)??;
    Ok(HttpResponse::Ok().json(out))
}

/// The body of a withdrawal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawBody {
    pub purposes: Vec<Purpose>,
}

/// `POST /v1/me/withdraw`: withdraws consent for purposes (GDPR Art. 7(3), R-CONSENT-2): one call,
/// no more than granting took; processing for the purposes stops with the response.
#[utoipa::path(post, path = "/v1/me/withdraw", tag = "subject rights", summary = "Withdraws consent for purposes",
    request_body(content = Object, description = "{\"purposes\": [\"analytics\", …]}", content_type = "application/json"),
    params(("subject" = Option<String>, Query, description = "for an admin: the subject's id")),
    responses((status = 200, description = "the withdrawal, recorded", body = Object), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = [])))]
pub async fn withdraw(
    privacy: web::Data<Privacy>,
    req: HttpRequest,
    query: web::Query<SubjectQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let principal = authorize(&req, &privacy.collect, &[Role::Subject, Role::Admin])?;
    let id = whom(&principal, &query)?;
    let mut parsed: WithdrawBody = lethe_collect::json::object(&body)?;
    // Withdrawing a purpose twice is withdrawing it once: the record, the receipt and the audit
    // entry name each purpose once (and stay as small as the policies' list of purposes).
    let mut seen = std::collections::HashSet::new();
    parsed.purposes.retain(|p| seen.insert(p.clone()));
    if parsed.purposes.is_empty() {
        return Err(ApiError::bad_request("empty_choice", "name at least one purpose"));
    }
    for p in &parsed.purposes {
        if privacy.collect.policies.purpose(p).is_none() {
            return Err(ApiError::bad_request("unknown_purpose", format!("no purpose `{p}`")));
        }
    }
    let privacy = privacy.into_inner();
    let role = role_name(principal.role());
    let out = web::block(move || {
        let subject = privacy.collect.store.pseudonymize(&id);
        let position = record_choice(&privacy, subject, &parsed.purposes, ConsentMethod::Api, "EU", false)?;
        for hook in privacy.hooks() {
            call_hook(hook.as_ref(), |h| h.withdrawn(&subject, &parsed.purposes)).map_err(|e| {
                tracing::error!(store = hook.name(), error = %e, "a store failed to take a withdrawal");
                ApiError::new(
                    503,
                    "withdrawal_incomplete",
                    format!("{} could not take the withdrawal; retry", hook.name()),
                )
            })?;
        }
        let request = close_at_once(&privacy, subject, RequestKind::WithdrawConsent, Law::Gdpr, Channel::Api, role)?;
        let names: Vec<&str> = parsed.purposes.iter().map(Purpose::as_str).collect();
        privacy.audit(
            AuditKind::ConsentRecorded,
            role,
            Some(&SubjectDigest::of_pseudonym(subject.as_bytes())),
            json!({"request_id": request, "withdrawn": names, "log_position": position}),
        )?;
        Ok::<_, ApiError>(json!({"request_id": request, "withdrawn": names, "log_position": position}))
    })
    .await
    .map_err(blocking_error)??;
    Ok(HttpResponse::Ok().json(out))
}

/// Appends a consent record that denies `purposes`, under the current notice.
fn record_choice(
    privacy: &Privacy,
    subject: Pseudonym,
    purposes: &[Purpose],
    method: ConsentMethod,
    jurisdiction: &str,
    gpc: bool,
) -> Result<u64, ApiError> {
    let policies = &privacy.collect.policies;
    let notice = policies.notices().next();
    let choices = purposes
        .iter()
        .map(|p| PurposeChoice {
            purpose: p.clone(),
            granted: false,
            legal_basis: policies.purpose(p).map_or("consent", |d| d.legal_basis().as_str()).to_owned(),
        })
        .collect();
    let record = ConsentRecord {
        record_id: uuid::Uuid::new_v4(),
        collected_at: UtcMicros::now(),
        jurisdiction: jurisdiction.to_owned(),
        method,
        notice: NoticeRef {
            id: notice.map_or_else(String::new, |n| n.id().as_str().to_owned()),
            version: notice.map_or(0, |n| n.version().get()),
            content_hash: notice.map_or_else(String::new, |n| n.content_hash().to_owned()),
        },
        choices,
        recipients: vec![],
        locale: "und".into(),
        gpc,
        sdk_version: None,
        subject_is_user: false,
    };
    append_consent(&privacy.collect, subject, record)
}

/// Logs a request that is fulfilled by the same call (opt-out, withdrawal) and closes it.
fn close_at_once(
    privacy: &Privacy,
    subject: Pseudonym,
    kind: RequestKind,
    law: Law,
    channel: Channel,
    role: &str,
) -> Result<String, ApiError> {
    let now = jiff_ts(UtcMicros::now());
    let actor = ActorRole::parse(role).map_err(dsr_error)?;
    let digest = SubjectDigest::of_pseudonym(subject.as_bytes());
    let mut request = Request::receive(kind, law, channel, digest, now, &privacy.deadlines).map_err(dsr_error)?;
    if request.verification().is_required() {
        // The caller's token is the verification: it is bound to this subject, or is an admin's.
        request.verify(Step::new(now, actor.clone())).map_err(dsr_error)?;
    }
    request.start(Step::new(now, actor.clone())).map_err(dsr_error)?;
    request.complete(Step::new(now, actor)).map_err(dsr_error)?;
    privacy.requests.insert(&request).map_err(dsr_error)?;
    privacy.requests.flush().map_err(dsr_error)?;
    Ok(request.id().to_string())
}

/// `GET /v1/me/export`: GDPR Art. 15/20 (R-DSR-2). Streams one JSON document: every event of the
/// subject decrypted (tombstones say why they are empty), the consent history and current state,
/// derived data from every registered store, decisions served, recipients and requests. Its
/// schema is `/v1/schemas/export.json`.
#[utoipa::path(get, path = "/v1/me/export", tag = "subject rights", summary = "Exports everything Lethe holds of the subject (streamed JSON)",
    params(("subject" = Option<String>, Query, description = "for an admin: the subject's id"), ("law" = Option<String>, Query, description = "gdpr (default) or ccpa")),
    responses((status = 200, description = "the export, as described by /v1/schemas/export.json", body = Object), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = [])))]
pub async fn export(
    privacy: web::Data<Privacy>,
    req: HttpRequest,
    query: web::Query<SubjectQuery>,
) -> Result<HttpResponse, ApiError> {
    let (role, id, law) = caller(&privacy, &req, &query)?;
    let privacy = privacy.into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, ApiError>>(16);
    // The head of the document is built before answering, so that failures get a proper status.
    let p = Arc::clone(&privacy);
    let (head, events, subject) = web::block(move || {
        let subject = p.collect.store.pseudonymize(&id);
        let request = close_at_once(&p, subject, RequestKind::Access, law, Channel::Api, role)?;
        let events = p.collect.store.read_stream(&subject).map_err(ApiError::from)?;
        p.audit(
            AuditKind::Export,
            role,
            Some(&SubjectDigest::of_pseudonym(subject.as_bytes())),
            json!({"request_id": request, "events": events.len()}),
        )?;
        Ok::<_, ApiError>((export_head(&p, &subject, &request)?, events, subject))
    })
    .await
    .map_err(blocking_error)??;
    let p = Arc::clone(&privacy);
    tokio::task::spawn_blocking(move || {
        write_body(&p, &subject, head, &events, |b| tx.blocking_send(Ok(Bytes::from(b))).is_ok());
    });
    let stream = tokio_stream(rx);
    Ok(HttpResponse::Ok().content_type("application/json").streaming(stream))
}

/// Writes the export document after its head: the events, decisions and derived data, in chunks of
/// about 60 KB handed to `send`, which returns false to stop (the client went away).
fn write_body(
    privacy: &Privacy,
    subject: &Pseudonym,
    head: Vec<u8>,
    events: &[lethe_domain::RecordedEvent],
    mut send: impl FnMut(Vec<u8>) -> bool,
) {
    if !send(head) {
        return;
    }
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut decisions = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let item = event_json(e);
        if lethe_collect::LETHE_RECORDED.contains(&e.envelope.event_type.as_str()) {
            decisions.push(item.clone());
        }
        serde_json::to_writer(&mut buf, &item).expect("values serialize");
        if buf.len() >= 60 * 1024 && !send(std::mem::take(&mut buf)) {
            return;
        }
    }
    buf.extend_from_slice(b"],\"decisions\":");
    serde_json::to_writer(&mut buf, &decisions).expect("values serialize");
    buf.extend_from_slice(b",\"derived\":");
    let derived: serde_json::Map<String, Value> =
        privacy.hooks().iter().filter_map(|h| h.export(subject).map(|v| (h.name().to_owned(), v))).collect();
    serde_json::to_writer(&mut buf, &derived).expect("values serialize");
    buf.extend_from_slice(b"}");
    send(buf);
}

/// The whole access export of a subject, as the HTTP endpoint streams it, into `out`: logs and
/// closes an access request and audits the export. Blocking; for the CLI and benchmarks.
///
/// # Errors
/// Storage failures.
pub fn export_to(privacy: &Privacy, subject: &Pseudonym, role: &str, out: &mut Vec<u8>) -> Result<u64, ApiError> {
    let request = close_at_once(privacy, *subject, RequestKind::Access, Law::Gdpr, Channel::Api, role)?;
    let events = privacy.collect.store.read_stream(subject).map_err(ApiError::from)?;
    privacy.audit(
        AuditKind::Export,
        role,
        Some(&SubjectDigest::of_pseudonym(subject.as_bytes())),
        json!({"request_id": request, "events": events.len()}),
    )?;
    let head = export_head(privacy, subject, &request)?;
    write_body(privacy, subject, head, &events, |b| {
        out.extend_from_slice(&b);
        true
    });
    Ok(events.len() as u64)
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, ApiError>>,
) -> impl futures_util::Stream<Item = Result<Bytes, ApiError>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Everything of the export before the events array, ending with `"events":[`.
fn export_head(privacy: &Privacy, subject: &Pseudonym, request: &str) -> Result<Vec<u8>, ApiError> {
    let history = privacy.collect.book.history(subject);
    let current = history.current();
    let digest = SubjectDigest::of_pseudonym(subject.as_bytes());
    let requests: Vec<Value> = privacy
        .requests
        .by_subject(&digest)
        .map_err(dsr_error)?
        .iter()
        .map(|r| serde_json::to_value(r).expect("requests serialize"))
        .collect();
    let mut granted = std::collections::BTreeSet::new();
    for r in history.records() {
        granted.extend(r.choices.iter().filter(|c| c.granted).map(|c| c.purpose.clone()));
    }
    let recipients: Vec<Value> = granted
        .iter()
        .filter_map(|p| privacy.collect.policies.purpose(p))
        .flat_map(|d| d.recipients().iter().map(move |r| (d.id().as_str().to_owned(), r.clone())))
        .map(|(purpose, name)| {
            let def = privacy.controller.recipient_named(&name);
            json!({
                "name": name,
                "purpose": purpose,
                "id": def.map(|d| d.id.clone()),
                "third_country_transfers": def.map(|d| d.third_country_transfers.clone()),
            })
        })
        .collect();
    let head = json!({
        "$schema": "/v1/schemas/export.json",
        "format": 1,
        "generated_at": rfc3339(UtcMicros::now()),
        "request_id": request,
        "controller": { "name": privacy.controller.controller.name, "contact": privacy.controller.controller.contact, "dpo": privacy.controller.dpo.contact },
        "subject": { "pseudonym": subject.to_hex() },
        "consent": { "current": current, "history": history.records() },
        "recipients": recipients,
        "requests": requests,
    });
    let mut out = serde_json::to_vec(&head).expect("values serialize");
    out.pop(); // the closing brace: the document goes on
    out.extend_from_slice(b",\"events\":[");
    Ok(out)
}

fn event_json(e: &lethe_domain::RecordedEvent) -> Value {
    let env = &e.envelope;
    let (state, payload) = match &e.body {
        EventBody::Plain(p) => (
            "plain",
            serde_json::from_slice::<Value>(p)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(p).into_owned())),
        ),
        EventBody::Shredded => ("shredded", Value::Null),
        EventBody::Expired => ("expired", Value::Null),
        EventBody::Empty => ("system", Value::Null),
        // Not read here: the export reads the subject's stream, which opens every event.
        EventBody::Unopened => ("sealed", Value::Null),
    };
    json!({
        "position": env.position.0,
        "seq": env.seq.0,
        "type": env.event_type.as_str(),
        "schema_version": env.schema_version.get(),
        "purpose": env.purpose.as_str(),
        "time": rfc3339(env.time),
        "retention_until": env.key_id.expires_at().map(rfc3339),
        "state": state,
        "payload": payload,
    })
}

/// `GET /v1/schemas/export.json`.
#[utoipa::path(get, path = "/v1/schemas/export.json", tag = "subject rights", summary = "The JSON Schema of the access export",
    responses((status = 200, description = "JSON Schema (draft 2020-12)", body = Object)))]
pub async fn export_schema() -> HttpResponse {
    HttpResponse::Ok().content_type("application/schema+json").body(EXPORT_SCHEMA)
}
