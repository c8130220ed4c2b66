//! The request log for the DPO (R-DSR-1): `GET /v1/requests` lists requests with their due dates
//! and days left; `POST /v1/requests` logs one that arrived by another channel; `POST
//! /v1/requests/{id}/actions` moves one through its lifecycle (verify, start, extend, complete, deny,
//! hold, release, acknowledge). An erasure that has not reached every store yet shows what it still
//! waits for (`erasure_pending`), and cannot be completed or denied by hand.

use actix_web::{web, HttpRequest, HttpResponse};
use lethe_audit::AuditKind;
use lethe_auth::Role;
use lethe_collect::auth::authorize;
use lethe_collect::{subject_id, ApiError};
use lethe_domain::UtcMicros;
use lethe_dsr::{
    ActorRole, Channel, DenialReason, ExtensionReason, HoldReason, Law, ListFilter, Note, Request, RequestId,
    RequestKind, Status, Step, SubjectDigest,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::state::{dsr_error, Privacy};
use crate::time::jiff_ts;

/// Filters of `GET /v1/requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `open` (default), `all`, or one status.
    pub status: Option<String>,
    pub law: Option<String>,
    pub kind: Option<String>,
    /// `true`: only requests past their deadline.
    pub overdue: Option<bool>,
}

/// One request as the DPO sees it: the record plus the clock.
pub fn view(r: &Request, now: UtcMicros) -> Value {
    let mut v = serde_json::to_value(r).expect("requests serialize");
    v["due"] = json!(r.due().to_string());
    v["days_left"] = json!(r.days_left(jiff_ts(now)));
    v["overdue"] = json!(r.is_overdue(jiff_ts(now)));
    v["acknowledgement_overdue"] = json!(r.is_acknowledgement_overdue(jiff_ts(now)));
    v
}

/// [`view`], with `erasure_pending` when the request is an erasure that has not reached every store
/// yet: its certificate id, the stores still to forget the subject, the recipients notified, the
/// attempts and when the next one is due (or `{"unreadable": true}` when its record cannot be read).
pub fn describe(privacy: &Privacy, r: &Request, now: UtcMicros) -> Value {
    let mut v = view(r, now);
    if r.kind() == RequestKind::Erasure {
        match crate::erasure::pending_erasure(privacy, r.id()) {
            Ok(None) => {}
            Ok(Some(pending)) => v["erasure_pending"] = pending.view(),
            Err(_) => v["erasure_pending"] = json!({"unreadable": true}),
        }
    }
    v
}

/// A query parameter's value (`code` `invalid_query`) or a body field's (`invalid_field`).
fn parse<T: std::str::FromStr>(code: &'static str, what: &'static str, raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::bad_request(code, format!("unknown {what} `{raw}`")))
}

/// `GET /v1/requests`.
#[utoipa::path(get, path = "/v1/requests", tag = "requests", summary = "Lists data-subject requests with due dates and days left",
    params(("status" = Option<String>, Query, description = "open (default), all, or a status"), ("law" = Option<String>, Query), ("kind" = Option<String>, Query), ("overdue" = Option<bool>, Query)),
    responses((status = 200, description = "requests, soonest due first", body = Object), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = [])))]
pub async fn list(
    privacy: web::Data<Privacy>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &privacy.collect, &[Role::Dpo, Role::Admin])?;
    let now = UtcMicros::now();
    let mut filter = match query.status.as_deref() {
        None | Some("open") => ListFilter::all().open(),
        Some("all") => ListFilter::all(),
        Some(s) => ListFilter::all().statuses([parse::<Status>("invalid_query", "status", s)?]),
    };
    if let Some(l) = &query.law {
        filter = filter.law(parse::<Law>("invalid_query", "law", l)?);
    }
    if let Some(k) = &query.kind {
        filter = filter.kind(parse::<RequestKind>("invalid_query", "kind", k)?);
    }
    if query.overdue == Some(true) {
        filter = filter.overdue_at(jiff_ts(now));
    }
    let privacy = privacy.into_inner();
    let items = web::block(move || {
        let requests = privacy.requests.list(&filter).map_err(dsr_error)?;
        Ok::<_, ApiError>(requests.iter().map(|r| describe(&privacy, r, now)).collect::<Vec<Value>>())
    })
    .await
    .map_err(|_| ApiError::new(503, "overloaded", "no worker is free"))??;
    Ok(HttpResponse::Ok().json(json!({ "requests": items, "count": items.len() })))
}

/// The body of `POST /v1/requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub kind: RequestKind,
    pub law: Law,
    pub channel: Channel,
    /// The subject's id (user id or anonymous id); stored only as a digest of its pseudonym.
    pub subject: String,
    /// RFC 3339; default now. A request logged late keeps the deadline of its real receipt.
    pub received_at: Option<String>,
}

/// `POST /v1/requests`: logs a request received by email, form or phone.
#[utoipa::path(post, path = "/v1/requests", tag = "requests", summary = "Logs a request received by another channel",
    request_body(content = Object, description = "{kind, law, channel, subject, received_at?}", content_type = "application/json"),
    responses((status = 201, description = "the request with its deadlines", body = Object), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 422, description = "`unsupported_kind`: the law does not give this kind of request", body = ApiError)),
    security(("bearer" = [])))]
pub async fn create(privacy: web::Data<Privacy>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let principal = authorize(&req, &privacy.collect, &[Role::Dpo, Role::Admin])?;
    let parsed: NewRequest = lethe_collect::json::object(&body)?;
    let id = subject_id(&parsed.subject)?;
    let received = match parsed.received_at.as_deref() {
        Some(t) => crate::time::parse_rfc3339(t).map_err(|m| ApiError::bad_request("invalid_time", m))?,
        None => UtcMicros::now(),
    };
    if received > UtcMicros::now() {
        return Err(ApiError::bad_request("invalid_time", "a request cannot be received in the future"));
    }
    let privacy = privacy.into_inner();
    let role = if principal.role() == Role::Dpo { "dpo" } else { "admin" };
    let out = web::block(move || {
        let digest = SubjectDigest::of_pseudonym(privacy.collect.store.pseudonymize(&id).as_bytes());
        let request =
            Request::receive(parsed.kind, parsed.law, parsed.channel, digest, jiff_ts(received), &privacy.deadlines)
                .map_err(dsr_error)?;
        privacy.requests.insert(&request).map_err(dsr_error)?;
        privacy.requests.flush().map_err(dsr_error)?;
        privacy.audit(
            AuditKind::RequestReceived,
            role,
            Some(&digest),
            json!({"request_id": request.id().to_string(), "kind": parsed.kind.as_str(), "law": parsed.law.as_str(), "channel": parsed.channel.as_str()}),
        )?;
        Ok::<_, ApiError>(view(&request, UtcMicros::now()))
    })
    .await
    .map_err(|_| ApiError::new(503, "overloaded", "no worker is free"))??;
    Ok(HttpResponse::Created().json(out))
}

/// The body of `POST /v1/requests/{id}/actions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// verify, start, extend, complete, deny, hold, release, acknowledge, extension_notice.
    pub action: String,
    /// The reason code for extend, deny and hold.
    pub reason: Option<String>,
    pub note: Option<String>,
}

/// `POST /v1/requests/{id}/actions`.
#[utoipa::path(post, path = "/v1/requests/{id}/actions", tag = "requests", summary = "Moves a request through its lifecycle",
    params(("id" = String, Path, description = "the request id")),
    request_body(content = Object, description = "{action, reason?, note?}", content_type = "application/json"),
    responses((status = 200, description = "the request after the action", body = Object), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 409, description = "not allowed in the request's state, or an erasure still pending (`erasure_pending`)", body = ApiError), (status = 503, description = "an erasure closed by hand could not queue a notice it owes (`erasure_incomplete`): it stays pending", body = ApiError)),
    security(("bearer" = [])))]
pub async fn act(
    privacy: web::Data<Privacy>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let principal = authorize(&req, &privacy.collect, &[Role::Dpo, Role::Admin])?;
    let id = RequestId::parse(&path.into_inner()).map_err(dsr_error)?;
    let action: Action = lethe_collect::json::object(&body)?;
    let role = if principal.role() == Role::Dpo { "dpo" } else { "admin" };
    let actor = ActorRole::parse(role).map_err(dsr_error)?;
    let note = action.note.as_deref().map(Note::parse).transpose().map_err(dsr_error)?;
    let reason = action.reason.clone();
    let need_reason =
        || reason.clone().ok_or_else(|| ApiError::bad_request("missing_reason", "this action needs a `reason` code"));
    enum Change {
        Verify,
        Start,
        Extend(ExtensionReason),
        Complete,
        Deny(DenialReason),
        Hold(HoldReason),
        Release,
        Acknowledge,
        ExtensionNotice,
    }
    let change = match action.action.as_str() {
        "verify" => Change::Verify,
        "start" => Change::Start,
        "extend" => Change::Extend(parse("invalid_field", "extension reason", &need_reason()?)?),
        "complete" => Change::Complete,
        "deny" => Change::Deny(parse("invalid_field", "denial reason", &need_reason()?)?),
        "hold" => Change::Hold(parse("invalid_field", "hold reason", &need_reason()?)?),
        "release" => Change::Release,
        "acknowledge" => Change::Acknowledge,
        "extension_notice" => Change::ExtensionNotice,
        other => return Err(ApiError::bad_request("unknown_action", format!("no action `{other}`"))),
    };
    let privacy = privacy.into_inner();
    let out = web::block(move || {
        if privacy.requests.get(id).map_err(dsr_error)?.is_none() {
            return Err(ApiError::new(404, "unknown_request", "no such request"));
        }
        // An erasure the log has done but a store has not is closed by its own retries, with its
        // certificate (R-ERASE-3): never denied, and completed by hand only when none of the stores
        // it waits for is run by this process any more (the certificate then says so).
        if matches!(change, Change::Complete | Change::Deny(_)) {
            if let Some(pending) = crate::erasure::pending_erasure(&privacy, id)? {
                if matches!(change, Change::Deny(_)) {
                    return Err(crate::erasure::still_pending(&pending));
                }
                crate::erasure::close_by_hand(&privacy, id, role)?;
                let closed = privacy.requests.get(id).map_err(dsr_error)?;
                let closed = closed.ok_or_else(|| ApiError::new(404, "unknown_request", "no such request"))?;
                return Ok(describe(&privacy, &closed, UtcMicros::now()));
            }
        }
        let now = jiff_ts(UtcMicros::now());
        let updated = privacy
            .requests
            .update(id, |r| {
                let mut step = Step::new(now, actor.clone());
                if let Some(n) = &note {
                    step = step.with_note(n.clone());
                }
                match &change {
                    Change::Verify => r.verify(step),
                    Change::Start => r.start(step),
                    Change::Extend(why) => r.extend(step, *why),
                    Change::Complete => r.complete(step),
                    Change::Deny(why) => r.deny(step, *why),
                    Change::Hold(why) => r.place_hold(step, *why),
                    Change::Release => r.release_hold(step),
                    Change::Acknowledge => r.acknowledge(now),
                    Change::ExtensionNotice => r.record_extension_notice(now),
                }
            })
            .map_err(dsr_error)?;
        privacy.requests.flush().map_err(dsr_error)?;
        privacy.audit(
            AuditKind::RequestUpdated,
            role,
            Some(updated.subject_digest()),
            json!({"request_id": id.to_string(), "action": action.action, "reason": action.reason, "status": updated.status().as_str()}),
        )?;
        Ok(describe(&privacy, &updated, UtcMicros::now()))
    })
    .await
    .map_err(|_| ApiError::new(503, "overloaded", "no worker is free"))??;
    Ok(HttpResponse::Ok().json(out))
}
