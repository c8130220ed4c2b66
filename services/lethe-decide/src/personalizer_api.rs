//! Azure Personalizer's Rank and Reward API over the decision engine, so that a former Personalizer
//! user moves to Lethe by changing only its endpoint: `POST /personalizer/v1.0/rank`,
//! `POST /personalizer/v1.0/events/{eventId}/reward` and `/activate`.
//!
//! The key is a Lethe token of role `cms` or `admin`, sent where Azure's SDKs put it
//! (`Ocp-Apim-Subscription-Key`) or as a bearer token. Requests are checked as Azure checks them (at
//! most [`MAX_ACTIONS`] actions with distinct ids, an `eventId` of at most [`MAX_EVENT_ID_CHARS`]
//! characters), and every error comes in Azure's shape, Lethe's stable code as the inner one:
//! `{"error": {"code": "BadRequest", "message": "…", "innerError": {"code": "invalid_json"}}}`.

use std::collections::HashSet;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use lethe_auth::Role;
use lethe_collect::auth::authorize_with;
use lethe_collect::{gpc_header, subject_id, ApiError, CollectState};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{decide_one, DecideState};
use crate::engine::{Candidate, DecideError, DecideRequest, OutcomeKind};
use crate::rank_events::{RankEvent, Reward};

/// Largest body of a Rank call: its actions carry their features.
pub const MAX_RANK_BODY: usize = 256 * 1024;
/// Largest body of a Reward or Activate call.
pub const MAX_EVENT_BODY: usize = crate::api::MAX_BODY;
/// Most actions one Rank call may send (Azure's limit).
pub const MAX_ACTIONS: usize = 50;
/// Longest `eventId`, in characters (Azure's limit).
pub const MAX_EVENT_ID_CHARS: usize = 256;
/// The header Azure's SDKs send the key in.
pub const SUBSCRIPTION_KEY: &str = "ocp-apim-subscription-key";

// --- errors ------------------------------------------------------------------------------------------

/// An error of the Personalizer routes: Lethe's [`ApiError`], answered with the same HTTP status in
/// Azure's shape ([`PersonalizerErrorResponse`]).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PersonalizerError(#[from] pub ApiError);

impl From<DecideError> for PersonalizerError {
    fn from(e: DecideError) -> Self {
        Self(e.into())
    }
}

/// Azure's error body: `{"error": {...}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PersonalizerErrorResponse {
    pub error: PersonalizerErrorDetail,
}

/// Azure's error object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonalizerErrorDetail {
    /// `BadRequest`, `Unauthorized`, `Forbidden`, `ResourceNotFound`, `PayloadTooLarge`,
    /// `TooManyRequests` or `InternalServerError`, after the HTTP status.
    pub code: String,
    pub message: String,
    pub inner_error: PersonalizerInnerError,
}

/// The finer error: Lethe's stable code (`invalid_json`, `unknown_event`, `missing_credentials`…).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PersonalizerInnerError {
    pub code: String,
}

/// Azure's code for an HTTP status (other 4xx answers are `BadRequest`, 5xx `InternalServerError`).
fn azure_code(status: u16) -> &'static str {
    match status {
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "ResourceNotFound",
        413 => "PayloadTooLarge",
        429 => "TooManyRequests",
        s if s >= 500 => "InternalServerError",
        _ => "BadRequest",
    }
}

impl From<&ApiError> for PersonalizerErrorResponse {
    fn from(e: &ApiError) -> Self {
        Self {
            error: PersonalizerErrorDetail {
                code: azure_code(e.status).to_owned(),
                message: e.bounded_message().into_owned(),
                inner_error: PersonalizerInnerError { code: e.code.to_owned() },
            },
        }
    }
}

impl ResponseError for PersonalizerError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        self.0.response().json(PersonalizerErrorResponse::from(&self.0))
    }
}

/// Declares Azure's way to authenticate: the key in `Ocp-Apim-Subscription-Key`.
#[derive(Debug)]
pub struct SubscriptionKey;

impl utoipa::Modify for SubscriptionKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "subscription_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("Ocp-Apim-Subscription-Key"))),
        );
    }
}

// --- request helpers ---------------------------------------------------------------------------------

/// Verifies the credentials: a bearer token, or else a token in `Ocp-Apim-Subscription-Key`; role
/// `cms` or `admin`.
fn authorize(req: &HttpRequest, collect: &CollectState) -> Result<(), ApiError> {
    let key = req
        .headers()
        .get(SUBSCRIPTION_KEY)
        .map(|v| v.to_str().map(str::trim))
        .transpose()
        .map_err(|_| ApiError::new(401, "malformed_credentials", "bad Ocp-Apim-Subscription-Key header"))?;
    authorize_with(req, collect, &[Role::Cms, Role::Admin], key)?;
    Ok(())
}

/// The body, at most `limit` bytes (the route's `PayloadConfig` stops a longer one early).
fn body_of(body: Result<web::Bytes, actix_web::Error>, limit: usize) -> Result<web::Bytes, ApiError> {
    let too_large = || ApiError::new(413, "payload_too_large", format!("a body is at most {limit} bytes"));
    match body {
        Ok(b) if b.len() > limit => Err(too_large()),
        Ok(b) => Ok(b),
        Err(e) if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
        Err(e) => Err(ApiError::bad_request("invalid_body", e.to_string())),
    }
}

// --- Rank --------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RankBody {
    #[serde(default)]
    context_features: Vec<Value>,
    actions: Vec<RankAction>,
    #[serde(default)]
    excluded_actions: Vec<String>,
    event_id: Option<String>,
    #[serde(default)]
    defer_activation: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RankAction {
    id: String,
    #[serde(default)]
    features: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RankQuery {
    slot: Option<String>,
}

/// `POST /personalizer/v1.0/rank`: Azure Personalizer's Rank over the same engine. The subject is
/// the `userId` or `anonymousId` found in `contextFeatures`, and the ranking is personalized only
/// under its consent; without one the answer is the baseline (the first action). `?slot=` names an
/// open slot (default `personalizer`). Each action's `probability` is the one the policy gave it of
/// being chosen first (they sum to 1); excluded actions follow with 0. Unless `deferActivation`, the
/// impression is recorded now.
#[utoipa::path(post, path = "/personalizer/v1.0/rank", tag = "personalizer", summary = "Azure Personalizer's Rank, served by Lethe's decision engine",
    params(("slot" = Option<String>, Query, description = "an open slot (default personalizer)")),
    request_body(content = Object, description = "{contextFeatures, actions: [{id, features}] (1..=50, distinct ids), excludedActions, eventId (at most 256 characters), deferActivation}", content_type = "application/json"),
    responses((status = 201, description = "{ranking: [{id, probability}], eventId, rewardActionId, lethe: {decisionId, mode, reason, modelVersion}}", body = Object),
        (status = 400, body = PersonalizerErrorResponse), (status = 401, body = PersonalizerErrorResponse), (status = 403, body = PersonalizerErrorResponse),
        (status = 409, description = "the eventId names an earlier Rank call still held (event_id_in_use)", body = PersonalizerErrorResponse),
        (status = 413, body = PersonalizerErrorResponse), (status = 429, body = PersonalizerErrorResponse)),
    security(("subscription_key" = []), ("bearer" = [])))]
pub async fn rank(
    state: web::Data<DecideState>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, PersonalizerError> {
    let engine = &state.engine;
    authorize(&req, engine.collect())?;
    let query = web::Query::<RankQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?
        .into_inner();
    let b: RankBody = lethe_collect::json::object(&body_of(body, MAX_RANK_BODY)?)?;
    if b.actions.is_empty() || b.actions.len() > MAX_ACTIONS {
        return Err(ApiError::bad_request("invalid_actions", format!("send 1..={MAX_ACTIONS} actions")).into());
    }
    let mut seen = HashSet::new();
    if !b.actions.iter().all(|a| seen.insert(a.id.as_str())) {
        return Err(ApiError::bad_request("invalid_actions", "action ids are distinct").into());
    }
    let sent_event_id = b.event_id.filter(|e| !e.is_empty());
    if sent_event_id.as_ref().is_some_and(|e| e.chars().count() > MAX_EVENT_ID_CHARS || e.chars().any(char::is_control))
    {
        let message =
            format!("an eventId is at most {MAX_EVENT_ID_CHARS} characters, none of them a control character");
        return Err(ApiError::bad_request("invalid_event_id", message).into());
    }
    // An event id names one decision: sent again while its event is held, a reward could no longer
    // tell which decision it is for (and a restart, which rebuilds events from receipts, would
    // answer differently from the running engine).
    if sent_event_id.as_deref().is_some_and(|e| engine.rank_events.decision(e).is_some()) {
        let message = "this eventId names an earlier Rank call; send a new one for each call";
        return Err(ApiError::new(409, "event_id_in_use", message).into());
    }
    let find =
        |key: &str| b.context_features.iter().find_map(|f| f.get(key).and_then(Value::as_str).map(str::to_owned));
    let device = find("device").or_else(|| find("deviceType"));
    // Without a subject the answer is non-personalized (`no_subject`): no shared stand-in id whose
    // consent anyone could record.
    let subject = find("userId").or_else(|| find("anonymousId")).map(|id| subject_id(&id)).transpose()?;
    let excluded: HashSet<&str> = b.excluded_actions.iter().map(String::as_str).collect();
    let candidates: Vec<Candidate> = b
        .actions
        .iter()
        .filter(|a| !excluded.contains(a.id.as_str()))
        .map(|a| Candidate {
            id: a.id.clone(),
            category: a.features.iter().find_map(|f| f.get("category").and_then(Value::as_str).map(str::to_owned)),
            content: crate::slots::Content::default(),
        })
        .collect();
    if candidates.is_empty() {
        return Err(ApiError::bad_request("invalid_candidates", "send at least one action that is not excluded").into());
    }
    let count = candidates.len();
    let event = RankEvent { id: sent_event_id, deferred: b.defer_activation };
    let request = DecideRequest {
        subject,
        slot: query.slot.unwrap_or_else(|| "personalizer".into()),
        device,
        gpc: gpc_header(&req),
        candidates: Some(candidates),
        count,
        // The engine keeps the event with its decision, and in the decision's receipt.
        event: Some(event.clone()),
        // Only `cms` and `admin` keys reach the Personalizer routes.
        anonymous_only: false,
    };
    let d = decide_one(engine, request).await?;
    let event_id = event.id_for(d.decision_id);
    if !b.defer_activation {
        let engine = Arc::clone(engine);
        let id = d.decision_id;
        let _ = web::block(move || engine.outcome(id, OutcomeKind::Impression, None)).await;
    }
    let ranking: Vec<Value> = d
        .variants
        .iter()
        .map(|v| json!({"id": d.candidate(v).id, "probability": v.probability}))
        .chain(
            b.actions
                .iter()
                .filter(|a| excluded.contains(a.id.as_str()))
                .map(|a| json!({"id": a.id, "probability": 0.0})),
        )
        .collect();
    Ok(HttpResponse::Created().json(json!({
        "ranking": ranking,
        "eventId": event_id,
        "rewardActionId": d.first_id(),
        "lethe": {"decisionId": d.decision_id, "mode": d.mode, "reason": d.reason, "modelVersion": d.model_version},
    })))
}

// --- Reward and Activate -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct RewardBody {
    value: f64,
}

/// A reward as an outcome: the model learns the value itself (a positive one counts as a click in
/// the figures).
fn reward_outcome(value: f64) -> (OutcomeKind, Option<f64>) {
    (OutcomeKind::Reward, Some(value))
}

/// `POST /personalizer/v1.0/events/{eventId}/reward` and `/activate`.
///
/// An event ranked with `deferActivation: true` is inactive until `/activate`. A reward sent for it
/// before then is answered 204 but not recorded: it is held (the first value sent) and recorded
/// when the event is activated, after the impression, and never if the event is not activated.
/// This is what Azure documents for deferred events: without Activate, Personalizer does not learn
/// from the event's reward; with Activate and Reward, it learns from the reward sent.
#[utoipa::path(post, path = "/personalizer/v1.0/events/{eventId}/{action}", tag = "personalizer", summary = "Azure Personalizer's Reward (a value in [-1, 1], learned as sent) and Activate",
    params(("eventId" = String, Path), ("action" = String, Path, description = "reward or activate")),
    request_body(content = Object, description = "{value} for reward", content_type = "application/json"),
    responses((status = 204, description = "recorded, or held until the event is activated"), (status = 400, body = PersonalizerErrorResponse),
        (status = 401, body = PersonalizerErrorResponse), (status = 404, body = PersonalizerErrorResponse)),
    security(("subscription_key" = []), ("bearer" = [])))]
pub async fn event(
    state: web::Data<DecideState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, PersonalizerError> {
    authorize(&req, state.engine.collect())?;
    let ids = &state.engine.rank_events;
    let (event_id, action) = path.into_inner();
    let unknown = || ApiError::new(404, "unknown_event", "no rank call has this eventId");
    let (decision, outcomes) = match action.as_str() {
        "reward" => {
            let b: RewardBody = lethe_collect::json::object(&body_of(body, MAX_EVENT_BODY)?)?;
            crate::api::check_outcome_value(OutcomeKind::Reward, Some(b.value))?;
            match ids.reward(&event_id, b.value).ok_or_else(unknown)? {
                Reward::Record(decision) => (decision, vec![reward_outcome(b.value)]),
                Reward::Held => return Ok(HttpResponse::NoContent().finish()),
            }
        }
        "activate" => {
            let (decision, held) = ids.activate(&event_id).ok_or_else(unknown)?;
            let mut outcomes = vec![(OutcomeKind::Impression, None)];
            outcomes.extend(held.map(reward_outcome));
            (decision, outcomes)
        }
        _ => return Err(ApiError::new(404, "not_found", "actions: reward, activate").into()),
    };
    let engine = Arc::clone(&state.engine);
    web::block(move || {
        outcomes.into_iter().try_for_each(|(kind, value)| engine.outcome(decision, kind, value).map(drop))
    })
    .await
    .map_err(|_| ApiError::new(500, "internal", "task failed"))??;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_take_azures_codes_after_the_status() {
        let cases = [
            (400, "BadRequest"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "ResourceNotFound"),
            (409, "BadRequest"),
            (413, "PayloadTooLarge"),
            (429, "TooManyRequests"),
            (500, "InternalServerError"),
            (503, "InternalServerError"),
        ];
        for (status, code) in cases {
            let body = serde_json::to_value(PersonalizerErrorResponse::from(&ApiError::new(status, "x", "m"))).unwrap();
            assert_eq!(body, json!({"error": {"code": code, "message": "m", "innerError": {"code": "x"}}}), "{status}");
        }
    }
}
