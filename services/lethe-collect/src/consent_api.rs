//! The consent ledger over HTTP: `POST /v1/consent` records a consent change (R-CONSENT-1) and
//! answers with a consent receipt; `GET /v1/consent/{id}` gives the state per purpose, now or at an
//! instant (`?at=`), and whether the current notice must be shown again (R-CONSENT-3).

use actix_web::{web, HttpRequest, HttpResponse};
use lethe_consent::{ConsentMethod, ConsentRecord, NoticeRef, PurposeChoice};
use lethe_domain::{Purpose, UtcMicros};
use lethe_policy::NoticeId;
use serde::Deserialize;
use serde_json::json;

use lethe_auth::Role;

use crate::auth::authorize;
use crate::ingest::{append_consent, gpc_header, subject_id, SALE_SHARE};
use crate::segment::parse_timestamp;
use crate::{ApiError, CollectState};

/// The body of `POST /v1/consent`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsentRequest {
    pub anonymous_id: Option<String>,
    pub user_id: Option<String>,
    pub notice: NoticeShown,
    #[serde(default)]
    pub granted: Vec<Purpose>,
    #[serde(default)]
    pub denied: Vec<Purpose>,
    pub method: ConsentMethod,
    pub jurisdiction: String,
    pub locale: String,
    #[serde(default)]
    pub gpc: bool,
    pub sdk_version: Option<String>,
}

/// The notice the subject saw.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NoticeShown {
    pub id: String,
    pub version: u32,
    pub content_hash: String,
}

fn short(s: &str, max: usize) -> Result<String, ApiError> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("a text field must be 1 to {max} printable characters"),
        ));
    }
    Ok(s.to_owned())
}

/// Decides a consent change: checks it against the policies and the notice, and builds the record.
fn decide(
    state: &CollectState,
    req: ConsentRequest,
    gpc: bool,
) -> Result<(lethe_domain::SubjectId, ConsentRecord), ApiError> {
    let id = req
        .user_id
        .as_deref()
        .or(req.anonymous_id.as_deref())
        .ok_or_else(|| ApiError::bad_request("missing_id", "a consent needs a `userId` or an `anonymousId`"))?;
    let subject = subject_id(id)?;
    let notice_id =
        NoticeId::parse(&req.notice.id).map_err(|e| ApiError::bad_request("unknown_notice", e.to_string()))?;
    let notice = state
        .policies
        .notice(&notice_id)
        .ok_or_else(|| ApiError::bad_request("unknown_notice", format!("no notice `{}`", req.notice.id)))?;
    if req.notice.version != notice.version().get() || req.notice.content_hash != notice.content_hash() {
        return Err(ApiError::new(
            409,
            "notice_outdated",
            format!(
                "the notice shown is not the current one (version {}, hash {}): show it again",
                notice.version(),
                notice.content_hash()
            ),
        ));
    }
    let on_notice: Vec<&Purpose> = notice.purposes().collect();
    let mut choices = Vec::new();
    let mut recipients = Vec::new();
    for (purposes, granted) in [(&req.granted, true), (&req.denied, false)] {
        for purpose in purposes {
            let def = state
                .policies
                .purpose(purpose)
                .ok_or_else(|| ApiError::bad_request("unknown_purpose", format!("no purpose `{purpose}`")))?;
            // R-CONSENT-3: a choice covers only what the notice asked about.
            if !on_notice.contains(&purpose) {
                return Err(ApiError::bad_request(
                    "purpose_not_on_notice",
                    format!("the notice does not ask about `{purpose}`"),
                ));
            }
            if let Some(earlier) = choices.iter().find(|c: &&PurposeChoice| &c.purpose == purpose) {
                return Err(if earlier.granted == granted {
                    ApiError::bad_request("duplicate_purpose", format!("`{purpose}` is listed twice"))
                } else {
                    ApiError::bad_request("contradictory_choice", format!("`{purpose}` is both granted and denied"))
                });
            }
            if granted {
                recipients.extend(def.recipients().iter().cloned());
            }
            choices.push(PurposeChoice {
                purpose: purpose.clone(),
                granted,
                legal_basis: def.legal_basis().as_str().to_owned(),
            });
        }
    }
    let gpc = gpc || req.gpc;
    let sale_share = Purpose::parse(SALE_SHARE).expect("valid");
    if gpc && !choices.iter().any(|c| c.purpose == sale_share) {
        // R-GPC-1: the signal opts out of sale/share unless the subject explicitly chose otherwise.
        let legal_basis =
            state.policies.purpose(&sale_share).map_or("consent", |p| p.legal_basis().as_str()).to_owned();
        choices.push(PurposeChoice { purpose: sale_share, granted: false, legal_basis });
    }
    if choices.is_empty() {
        return Err(ApiError::bad_request("empty_choice", "grant or deny at least one purpose"));
    }
    recipients.sort();
    recipients.dedup();
    let record = ConsentRecord {
        record_id: uuid::Uuid::new_v4(),
        collected_at: UtcMicros::now(),
        jurisdiction: short(&req.jurisdiction, 16)?,
        method: req.method,
        notice: NoticeRef { id: req.notice.id, version: req.notice.version, content_hash: req.notice.content_hash },
        choices,
        recipients,
        locale: short(&req.locale, 35)?,
        gpc,
        sdk_version: req.sdk_version.as_deref().map(|v| short(v, 32)).transpose()?,
        subject_is_user: req.user_id.is_some(),
    };
    Ok((subject, record))
}

/// A site key acting for a signed-in user: refused.
fn user_id_not_allowed(message: &'static str) -> ApiError {
    ApiError::new(403, "user_id_not_allowed", message)
}

/// `POST /v1/consent`.
#[utoipa::path(post, path = "/v1/consent", tag = "consent", summary = "Records a consent change and answers with a receipt",
    request_body(content = Object, description = "anonymousId or userId, notice {id, version, contentHash}, granted, denied, method, jurisdiction, locale, gpc, sdkVersion", content_type = "application/json"),
    responses((status = 201, description = "the consent receipt", body = Object), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, description = "role, origin or subject refuses it: a site key records banner or GPC choices for an anonymousId only, never for a userId or an id recorded as a signed-in user's (`user_id_not_allowed`)", body = ApiError), (status = 409, description = "the notice shown is not the current one", body = ApiError), (status = 429, body = ApiError)),
    security(("bearer" = []), ("write_key" = [])))]
pub(crate) async fn record(
    state: web::Data<CollectState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if body.len() > crate::MAX_EVENT_BYTES {
        return Err(ApiError::new(413, "payload_too_large", "a consent body holds at most 32 KB"));
    }
    let principal = authorize(&req, &state, &[Role::Site, Role::Subject, Role::Admin])?;
    let parsed: ConsentRequest = crate::json::object(&body)?;
    // A public write key is the banner's: it records what a visitor chose on this device (an
    // `anonymousId`, by banner or GPC signal), never a choice for an account or an import.
    if principal.role() == Role::Site {
        if parsed.user_id.is_some() {
            return Err(user_id_not_allowed(
                "a site key records consent for an anonymousId only; send userId with a subject or admin token",
            ));
        }
        if !matches!(parsed.method, ConsentMethod::Banner | ConsentMethod::Gpc) {
            return Err(ApiError::new(
                403,
                "method_not_allowed",
                "a site key records banner or GPC choices; api and import need a subject or admin token",
            ));
        }
    }
    let gpc = gpc_header(&req);
    let state = state.into_inner();
    let (receipt, gpc) = web::block(move || -> Result<_, ApiError> {
        let (id, record) = decide(&state, parsed, gpc)?;
        // R-DSR-4: a subject token records consent for its own subject only.
        if principal.role() == Role::Subject && !principal.may_act_for(&id) {
            return Err(ApiError::new(403, "forbidden_subject", "this token is bound to another subject"));
        }
        let subject = state.store.pseudonymize(&id);
        // R-DSR-4: an `anonymousId` and a `userId` of the same text are one pseudonym, so a site
        // key sending a signed-in user's id as an `anonymousId` would record her consent. The book
        // knows the pseudonyms recorded for a `userId`; the site key may not act for them.
        if principal.role() == Role::Site && state.book.is_user(&subject) {
            return Err(user_id_not_allowed(
                "this id belongs to a signed-in user; send userId with a subject or admin token",
            ));
        }
        let position = append_consent(&state, subject, record.clone())?;
        state.metrics.inc("lethe_consent_changes_total", "recorded");
        Ok((receipt(&record, &subject.to_hex(), position), record.gpc))
    })
    .await
    .map_err(|_| ApiError::new(503, "overloaded", "no worker is free"))??;
    let mut body = receipt;
    if gpc {
        body["gpc"] = json!("honored");
    }
    Ok(HttpResponse::Created().json(body))
}

/// A consent receipt: the Kantara Consent Receipt / ISO/IEC TS 27560 fields Lethe knows.
fn receipt(r: &ConsentRecord, pseudonym: &str, position: u64) -> serde_json::Value {
    json!({
        "receipt_id": r.record_id,
        "version": "lethe-consent-receipt-1",
        "jurisdiction": r.jurisdiction,
        "consent_timestamp": r.collected_at.0,
        "collection_method": r.method,
        "subject": pseudonym,
        "notice": r.notice,
        "purposes": r.choices,
        "recipients": r.recipients,
        "locale": r.locale,
        "gpc": r.gpc,
        "sdk_version": r.sdk_version,
        "log_position": position,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct AtQuery {
    at: Option<String>,
}

/// `GET /v1/consent/{id}`: the state per purpose of every declared purpose.
#[utoipa::path(get, path = "/v1/consent/{id}", tag = "consent", summary = "The consent state per purpose, now or at an instant",
    params(("id" = String, Path, description = "the subject's anonymousId or userId"), ("at" = Option<String>, Query, description = "RFC 3339 instant")),
    responses((status = 200, description = "state per purpose and whether to prompt again", body = Object), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = [])))]
pub(crate) async fn state(
    state: web::Data<CollectState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<AtQuery>,
) -> Result<HttpResponse, ApiError> {
    let principal = authorize(&req, &state, &[Role::Subject, Role::Dpo, Role::Admin])?;
    let id = subject_id(&path.into_inner())?;
    if principal.role() == Role::Subject && !principal.may_act_for(&id) {
        return Err(ApiError::new(403, "forbidden_subject", "this token is bound to another subject"));
    }
    let at =
        query.at.as_deref().map(parse_timestamp).transpose().map_err(|r| ApiError::bad_request(r.code, r.message))?;
    let subject = state.store.pseudonymize(&id);
    let history = state.book.history(&subject);
    let snapshot = match at {
        Some(at) => history.state_at(at),
        None => history.current().clone(),
    };
    let sale_share = Purpose::parse(SALE_SHARE).expect("valid");
    let mut purposes = serde_json::Map::new();
    for def in state.policies.purposes() {
        let verdict = if at.is_some() {
            snapshot.verdict(def.id(), def.requires_consent(), &sale_share)
        } else {
            history.verdict(def.id(), def.requires_consent(), &sale_share)
        };
        let detail = snapshot.purposes.get(def.id());
        purposes.insert(
            def.id().to_string(),
            json!({
                "state": verdict,
                "allowed": verdict.allows(),
                "notice_version": detail.map(|d| d.notice_version),
                "since": detail.map(|d| d.since.0),
                "record_id": detail.map(|d| d.record_id),
            }),
        );
    }
    let notice = state.policies.notices().next();
    let reprompt = notice.is_some_and(|n| snapshot.needs_reprompt(n.version().get()));
    Ok(HttpResponse::Ok().json(json!({
        "subject": subject.to_hex(),
        "purposes": purposes,
        "gpc": snapshot.gpc,
        "reprompt": reprompt,
        "notice": notice.map(|n| json!({"id": n.id().as_str(), "version": n.version().get(), "content_hash": n.content_hash()})),
        "records": history.records().len(),
    })))
}
