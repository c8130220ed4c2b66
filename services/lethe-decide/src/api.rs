//! The HTTP endpoints of the decision service: decisions, outcomes, recommendations and the policy
//! versions of each slot (canary, promote, rollback, evaluation). The Personalizer-compatible Rank
//! and Reward API is in `personalizer_api`.

use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use lethe_auth::Role;
use lethe_collect::auth::authorize;
use lethe_collect::{gpc_header, subject_id, ApiError};
use lethe_domain::{SubjectId, UtcMicros};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::engine::{
    Candidate, DecideError, DecideRequest, Decision, Engine, Gate, OutcomeKind, PolicyParams, Reason, MAX_REWARD,
    MIN_REWARD,
};
use crate::features::Context;
use crate::recommend::{Exclude, Recommenders};
use crate::slots::CanarySettings;

/// Largest body a decision endpoint reads.
pub const MAX_BODY: usize = 64 * 1024;
/// Most variants or items one answer holds.
pub const MAX_COUNT: usize = 100;

/// The state of the decision endpoints.
#[derive(Debug)]
pub struct DecideState {
    pub engine: Arc<Engine>,
    pub recommenders: Recommenders,
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> Self {
        ApiError::new(e.status(), e.code(), e.to_string())
    }
}

/// A JSON object body of at most [`MAX_BODY`] bytes as `T`.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::new(413, "payload_too_large", format!("a body is at most {MAX_BODY} bytes")));
    }
    lethe_collect::json::object(body)
}

/// How many variants or items a request asks for: `default` when it does not say, at most
/// [`MAX_COUNT`] (a page asking for more gets that many; fewer when fewer exist); 0 is refused.
fn count_of(count: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match count.unwrap_or(default) {
        0 => Err(ApiError::bad_request(
            "invalid_count",
            format!("count is 1 or more (at most {MAX_COUNT} are answered)"),
        )),
        n => Ok(n.min(MAX_COUNT)),
    }
}

/// The subject of a request: `userId` (not for a public site key) or `anonymousId`. A site key's
/// `anonymousId` that is a signed-in user's is caught by the engine's gate (`anonymous_only`).
fn subject_of(role: Role, anonymous: Option<&str>, user: Option<&str>) -> Result<SubjectId, ApiError> {
    match (user, anonymous) {
        (Some(_), _) if role == Role::Site => Err(ApiError::new(
            403,
            "user_id_not_allowed",
            "a site key may decide for an anonymousId only; send userId with a cms token",
        )),
        (Some(u), _) => subject_id(u),
        (None, Some(a)) => subject_id(a),
        (None, None) => Err(ApiError::bad_request("missing_id", "send anonymousId or userId")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DecideBody {
    anonymous_id: Option<String>,
    user_id: Option<String>,
    slot: String,
    #[serde(default)]
    context: ContextBody,
    candidates: Option<Vec<CandidateBody>>,
    count: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContextBody {
    device: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    page: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    referrer: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    location: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    time: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CandidateBody {
    Id(String),
    Full(Candidate),
}

impl CandidateBody {
    fn into_candidate(self) -> Candidate {
        match self {
            Self::Id(id) => Candidate { id, category: None, content: crate::slots::Content::default() },
            Self::Full(c) => c,
        }
    }
}

/// Makes one decision: the consent gate, then (when allowed) the model under the slot's deadline,
/// off the request thread; the slot's default on any failure. Never an error for a failing model.
/// How long it took joins the slot's `lethe_decide_duration_seconds` histogram.
pub async fn decide_one(engine: &Arc<Engine>, req: DecideRequest) -> Result<Decision, ApiError> {
    let started = Instant::now();
    let slot_index = engine.slots.index_of(&req.slot).ok_or_else(|| DecideError::UnknownSlot(req.slot.clone()))?;
    let decision = decide_in(engine, req, slot_index, started).await?;
    engine.observe_latency(slot_index, started.elapsed());
    Ok(decision)
}

async fn decide_in(
    engine: &Arc<Engine>,
    req: DecideRequest,
    slot_index: usize,
    started: Instant,
) -> Result<Decision, ApiError> {
    let slot = &engine.slots.all()[slot_index];
    let event = req.event.as_ref();
    let (candidates, default) = engine.candidates(slot, &req)?;
    let count = req.count.clamp(1, MAX_COUNT.min(candidates.len()));
    let now = UtcMicros::now();
    let ctx = Context::new(req.device.as_deref(), now);
    let (subject, gate) = engine.gate(&req, slot);
    let fallback = (candidates.clone(), default, count);
    let Gate::Personalize { .. } = gate else {
        return Ok(engine.finish(subject, &gate, None, Err(Reason::NoConsent), &ctx, fallback, slot_index, event));
    };
    if engine.receipts_backlogged() {
        // No receipt could be queued for a personalized answer: do not compute one.
        let gate = Gate::NonPersonalized(Reason::ReceiptBacklog);
        return Ok(engine.finish(subject, &gate, None, Err(Reason::ReceiptBacklog), &ctx, fallback, slot_index, event));
    }
    let scoring = engine.prepare(slot_index, &subject, candidates, default, &ctx, count);
    let deadline = slot.deadline.saturating_sub(started.elapsed());
    let seed = rand::random::<u64>();
    if engine.scores_inline() {
        // The built-in model: bounded arithmetic, on this thread; the deadline still holds. A
        // defect that panics in it falls back as a failing model does off the thread.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.score(&scoring, seed)))
            .unwrap_or_else(|_| Err("the model panicked".into()));
        let result = match result {
            Ok(_) if started.elapsed() > slot.deadline => Err(Reason::Deadline),
            Ok(scored) => Ok(scored),
            Err(e) => Err(model_failed(&slot.id, &e)),
        };
        return Ok(engine.finish(subject, &gate, Some(scoring), result, &ctx, fallback, slot_index, event));
    }
    let worker = Arc::clone(engine);
    let (scoring, result) = match actix_web::rt::time::timeout(
        deadline,
        actix_web::rt::task::spawn_blocking(move || {
            let r = worker.score(&scoring, seed);
            (scoring, r)
        }),
    )
    .await
    {
        Ok(Ok((s, Ok(scored)))) => (Some(s), Ok(scored)),
        Ok(Ok((s, Err(e)))) => (Some(s), Err(model_failed(&slot.id, &e))),
        Ok(Err(_)) => (None, Err(Reason::ModelError)),
        Err(_) => (None, Err(Reason::Deadline)),
    };
    Ok(engine.finish(subject, &gate, scoring, result, &ctx, fallback, slot_index, event))
}

/// A model that failed: logged; the decision falls back to the slot's default.
fn model_failed(slot: &str, error: &str) -> Reason {
    tracing::warn!(error, slot, "the model failed; serving the fallback");
    Reason::ModelError
}

/// `POST /v1/decide`.
#[utoipa::path(post, path = "/v1/decide", tag = "decisions", summary = "Decides what a slot shows a visitor",
    request_body(content = Object, description = "{anonymousId | userId, slot, context: {device, page, referrer}, candidates?, count?}", content_type = "application/json"),
    responses((status = 200, description = "the decision: variants with score and propensity, mode and reason (`no_consent`, `opted_out`, `gpc`, `cold_start`, `deadline`, `model_error`, `receipt_backlog`, `not_anonymous`: a site key asked for an anonymousId recorded as a signed-in user's, answered non-personalized), model version", body = Object),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, description = "unknown slot", body = ApiError)),
    security(("bearer" = [])))]
pub async fn decide(
    state: web::Data<DecideState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let engine = &state.engine;
    let principal = authorize(&req, engine.collect(), &[Role::Site, Role::Cms, Role::Admin])?;
    let b: DecideBody = parse(&body)?;
    let subject = subject_of(principal.role(), b.anonymous_id.as_deref(), b.user_id.as_deref())?;
    let request = DecideRequest {
        subject: Some(subject),
        slot: b.slot,
        device: b.context.device,
        gpc: gpc_header(&req),
        candidates: b.candidates.map(|c| c.into_iter().map(CandidateBody::into_candidate).collect()),
        count: count_of(b.count, 1)?,
        event: None,
        // A site key may decide for anonymous visitors only (see `subject_of`).
        anonymous_only: principal.role() == Role::Site,
    };
    let d = decide_one(engine, request).await?;
    after_the_ready_requests().await;
    Ok(decision_response(&d))
}

/// Lets the worker's other ready requests be decided before this answer is written (one yield to
/// the scheduler, which runs the tasks woken meanwhile first). Under load the answers of one
/// scheduler tick then leave together: a client with many connections is woken once for several of
/// them instead of once each, and the workers are preempted by it less often. On the benchmark's
/// full load this took the host's context switches from about 0.7 to 0.45 per decision. An answer
/// with nothing else ready waits for one more poll of its task.
async fn after_the_ready_requests() {
    actix_web::rt::task::yield_now().await;
}

/// A decision's answer, written into a buffer with room for it (`HttpResponseBuilder::json` starts
/// small and grows it several times).
fn decision_response(d: &Decision) -> HttpResponse {
    let mut body = Vec::with_capacity(256 + 160 * d.variants.len());
    match serde_json::to_writer(&mut body, &decision_json(d)) {
        Ok(()) => HttpResponse::Ok().content_type(actix_web::http::header::ContentType::json()).body(body),
        Err(e) => HttpResponse::from_error(actix_web::error::JsonPayloadError::Serialize(e)),
    }
}

/// A decision as the API answers it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DecisionOut<'a> {
    decision_id: Uuid,
    slot: &'a str,
    mode: crate::engine::Mode,
    reason: Option<Reason>,
    model_version: Option<&'a str>,
    explored: bool,
    consent_record: Option<Uuid>,
    variants: Variants<'a>,
}

/// A decision's variants as the API answers them: each chosen one's id and content, from its
/// candidate.
#[derive(Debug)]
struct Variants<'a>(&'a Decision);

impl serde::Serialize for Variants<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        serializer.collect_seq(d.variants.iter().map(|v| {
            let c = d.candidate(v);
            VariantOut { id: &c.id, score: v.score, propensity: v.propensity, content: &c.content }
        }))
    }
}

#[derive(serde::Serialize)]
struct VariantOut<'a> {
    id: &'a str,
    score: f64,
    /// The probability the policy had of choosing it first (1 for deterministic answers).
    propensity: f64,
    content: &'a crate::slots::Content,
}

fn decision_json(d: &Decision) -> DecisionOut<'_> {
    DecisionOut {
        decision_id: d.decision_id,
        slot: &d.slot,
        mode: d.mode,
        reason: d.reason,
        model_version: d.model_version.as_deref(),
        explored: d.explored,
        consent_record: d.consent_record,
        variants: Variants(d),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutcomeBody {
    decision_id: Uuid,
    #[serde(rename = "type")]
    kind: OutcomeKind,
    /// Informational: an outcome counts for the decision, under the variant it drew (the first of
    /// the variants it showed).
    #[serde(default)]
    #[allow(dead_code)]
    variant: Option<String>,
    value: Option<f64>,
}

/// The largest value of an impression, click or conversion: an amount, bounded so that the sums
/// of the statistics stay finite (`1e308` three times would make them infinite for good).
pub const MAX_OUTCOME_VALUE: f64 = 1e12;

/// Checks an outcome's value: a conversion's is an amount in [0, [`MAX_OUTCOME_VALUE`]]; a reward
/// needs one in [`MIN_REWARD`, `MAX_REWARD`].
pub(crate) fn check_outcome_value(kind: OutcomeKind, value: Option<f64>) -> Result<(), ApiError> {
    let ok = match (kind, value) {
        (OutcomeKind::Reward, Some(v)) => (MIN_REWARD..=MAX_REWARD).contains(&v),
        (OutcomeKind::Reward, None) => false,
        (_, Some(v)) => (0.0..=MAX_OUTCOME_VALUE).contains(&v),
        (_, None) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_value",
            format!(
                "a reward's value is in [{MIN_REWARD}, {MAX_REWARD}]; any other value is in [0, {MAX_OUTCOME_VALUE:e}]"
            ),
        ))
    }
}

/// `POST /v1/outcomes`.
#[utoipa::path(post, path = "/v1/outcomes", tag = "decisions", summary = "Reports an impression, click or conversion of a decision",
    request_body(content = Object, description = "{decisionId, type: impression | click | conversion | reward, value?, variant?} (`variant` is informational: an outcome counts for the decision, under the variant it drew)", content_type = "application/json"),
    responses((status = 202, description = "recorded", body = Object), (status = 400, body = ApiError), (status = 404, description = "unknown decision", body = ApiError)),
    security(("bearer" = [])))]
pub async fn outcomes(
    state: web::Data<DecideState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let engine = Arc::clone(&state.engine);
    authorize(&req, engine.collect(), &[Role::Site, Role::Cms, Role::Admin])?;
    let b: OutcomeBody = parse(&body)?;
    check_outcome_value(b.kind, b.value)?;
    let receipt = web::block(move || engine.outcome(b.decision_id, b.kind, b.value))
        .await
        .map_err(|_| ApiError::new(500, "internal", "outcome task failed"))??;
    Ok(HttpResponse::Accepted().json(receipt))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecsQuery {
    anonymous_id: Option<String>,
    user_id: Option<String>,
    item: Option<String>,
    count: Option<usize>,
    /// `seen`, `bought`, `seen,bought` or `none`.
    exclude: Option<String>,
    slot: Option<String>,
    /// A segment the caller knows the visitor is in (from the page's own context), whose
    /// popularity answers a cold start.
    segment: Option<String>,
}

/// `GET /v1/recommendations`.
#[utoipa::path(get, path = "/v1/recommendations", tag = "decisions", summary = "Recommended items for a subject, or items related to an item",
    params(("anonymousId" = Option<String>, Query), ("userId" = Option<String>, Query), ("item" = Option<String>, Query, description = "related items instead"),
        ("count" = Option<usize>, Query), ("exclude" = Option<String>, Query, description = "seen, bought"),
        ("segment" = Option<String>, Query, description = "a segment whose popularity answers a cold start")),
    responses((status = 200, description = "items, mode and reason (`not_anonymous`: a site key asked for an anonymousId recorded as a signed-in user's, answered non-personalized)", body = Object), (status = 400, body = ApiError)),
    security(("bearer" = [])))]
pub async fn recommendations(
    state: web::Data<DecideState>,
    req: HttpRequest,
    query: web::Query<RecsQuery>,
) -> Result<HttpResponse, ApiError> {
    let engine = &state.engine;
    let principal = authorize(&req, engine.collect(), &[Role::Site, Role::Cms, Role::Admin])?;
    let q = query.into_inner();
    let count = count_of(q.count, 10)?;
    let mut exclude = Exclude::default();
    for part in q.exclude.as_deref().unwrap_or("").split(',').filter(|s| !s.is_empty()) {
        match part {
            "seen" => exclude.seen = true,
            "bought" => exclude.bought = true,
            "none" => {}
            other => {
                return Err(ApiError::bad_request("invalid_exclude", format!("`{other}`: use seen, bought or none")))
            }
        }
    }
    let personalizer = engine.personalizer();
    let views = engine.views();
    let mut receipt = None;
    let answer = if let Some(item) = &q.item {
        state.recommenders.related(personalizer, views, item, count)
    } else {
        let subject = subject_of(principal.role(), q.anonymous_id.as_deref(), q.user_id.as_deref())?;
        let slot_id = q.slot.unwrap_or_else(|| {
            engine
                .slots
                .all()
                .iter()
                .find(|s| s.kind == crate::slots::SlotKind::Recommendations)
                .map_or_else(|| "home-recs".to_owned(), |s| s.id.clone())
        });
        let slot = engine.slots.get(&slot_id).ok_or_else(|| DecideError::UnknownSlot(slot_id.clone()))?;
        let request = DecideRequest {
            subject: Some(subject),
            slot: slot_id.clone(),
            device: None,
            gpc: gpc_header(&req),
            candidates: None,
            count,
            event: None,
            anonymous_only: principal.role() == Role::Site,
        };
        let (pseudonym, gate) = engine.gate(&request, slot);
        let segment = q.segment.as_deref();
        let anyone = |r| state.recommenders.for_subject(personalizer, views, None, Some(r), count, exclude, segment);
        match gate {
            // No receipt could be queued for a personalized list: do not compute one.
            Gate::Personalize { .. } if engine.receipts_backlogged() => anyone(Reason::ReceiptBacklog),
            Gate::Personalize { consent_record, .. } => {
                let answer = state.recommenders.for_subject(
                    personalizer,
                    views,
                    Some(&pseudonym),
                    None,
                    count,
                    exclude,
                    segment,
                );
                if answer.personalized {
                    // A personalized list, like a decision, is served only with its receipt.
                    let items: Vec<&str> = answer.items.iter().map(|i| i.id.as_str()).collect();
                    let model = answer.model_version.as_deref();
                    match engine.recommendations_receipt(pseudonym, slot, consent_record, &items, model) {
                        Some(id) => receipt = Some((id, consent_record)),
                        None => return Ok(recommendations_json(&anyone(Reason::ReceiptBacklog), None)),
                    }
                }
                answer
            }
            Gate::NonPersonalized(r) => anyone(r),
        }
    };
    Ok(recommendations_json(&answer, receipt))
}

/// A recommendation list as the API answers it; a personalized one names its receipt and the
/// consent record that allowed it.
fn recommendations_json(answer: &crate::recommend::Answer, receipt: Option<(Uuid, Option<Uuid>)>) -> HttpResponse {
    let mode = if answer.personalized { "personalized" } else { "non_personalized" };
    HttpResponse::Ok().json(json!({
        "items": answer.items, "mode": mode, "reason": answer.reason, "modelVersion": answer.model_version,
        "segment": answer.segment, "decisionId": receipt.map(|r| r.0), "consentRecord": receipt.and_then(|r| r.1),
    }))
}

fn slot_index(engine: &Engine, slot: &str) -> Result<usize, ApiError> {
    engine.slots.index_of(slot).ok_or_else(|| DecideError::UnknownSlot(slot.to_owned()).into())
}

/// `GET /v1/decide/stats`.
#[utoipa::path(get, path = "/v1/decide/stats", tag = "decisions", summary = "CTR and conversion rate per slot, variant, model version and mode",
    responses((status = 200, body = Object), (status = 401, body = ApiError), (status = 403, body = ApiError)), security(("bearer" = [])))]
pub async fn stats(state: web::Data<DecideState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&req, state.engine.collect(), &[Role::Cms, Role::Dpo, Role::Admin])?;
    Ok(HttpResponse::Ok().json(json!({ "stats": state.engine.stats() })))
}

/// `GET /v1/decide/slots/{slot}/versions`.
#[utoipa::path(get, path = "/v1/decide/slots/{slot}/versions", tag = "decisions", summary = "The live and canary policy versions of a slot with their figures",
    params(("slot" = String, Path)), responses((status = 200, body = Object), (status = 404, body = ApiError)), security(("bearer" = [])))]
pub async fn versions(
    state: web::Data<DecideState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, state.engine.collect(), &[Role::Cms, Role::Dpo, Role::Admin])?;
    let i = slot_index(&state.engine, &path)?;
    Ok(HttpResponse::Ok().json(state.engine.versions(i)))
}

/// Policy parameters as an admin sends them: an unknown field (a misspelt `epsilon`) is refused,
/// not ignored. Versions already registered keep reading leniently ([`PolicyParams`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamsBody {
    alpha: f64,
    lambda: f64,
    #[serde(default)]
    epsilon: Option<f64>,
    prior: Vec<f64>,
    #[serde(default)]
    engagement: Option<String>,
}

impl From<ParamsBody> for PolicyParams {
    fn from(p: ParamsBody) -> Self {
        Self { alpha: p.alpha, lambda: p.lambda, epsilon: p.epsilon, prior: p.prior, engagement: p.engagement }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryBody {
    #[serde(default)]
    params: Option<ParamsBody>,
    share_permille: u16,
    #[serde(default)]
    rule: Option<CanarySettings>,
}

/// `POST /v1/decide/slots/{slot}/canary`.
#[utoipa::path(post, path = "/v1/decide/slots/{slot}/canary", tag = "decisions", summary = "Registers a new policy version and serves it to a share of the subjects",
    params(("slot" = String, Path)), request_body(content = Object, description = "{params?: {alpha, lambda, epsilon?, prior, engagement?} (an unknown field is refused), share_permille, rule?: {min_impressions, max_relative_drop, z}}", content_type = "application/json"),
    responses((status = 201, body = Object), (status = 400, body = ApiError), (status = 403, body = ApiError)), security(("bearer" = [])))]
pub async fn canary(
    state: web::Data<DecideState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, state.engine.collect(), &[Role::Admin])?;
    let i = slot_index(&state.engine, &path)?;
    let b: CanaryBody = parse(&body)?;
    if let Some(rule) = &b.rule {
        rule.check().map_err(|e| ApiError::bad_request("invalid_rule", e))?;
    }
    let engine = Arc::clone(&state.engine);
    let params = b.params.map_or_else(PolicyParams::default, PolicyParams::from);
    let detail = web::block(move || engine.start_canary(i, params, b.share_permille, "admin"))
        .await
        .map_err(|_| ApiError::new(500, "internal", "canary task failed"))??;
    // The rule changes only with a canary that started: a refused request changes nothing.
    if let Some(rule) = &b.rule {
        state.engine.set_canary_rule(rule, "admin");
    }
    Ok(HttpResponse::Created().json(detail))
}

/// `POST /v1/decide/slots/{slot}/promote` and `/rollback`.
#[utoipa::path(post, path = "/v1/decide/slots/{slot}/{action}", tag = "decisions", summary = "Promotes or rolls back the canary by hand, or trains the slot's engagement model as a candidate (audited)",
    description = "`train` fits the slot's engagement model on the logged outcomes of consenting subjects (grid search under k-fold grouped by subject) and registers it as a candidate; serve it with `POST /v1/decide/slots/{slot}/canary` and `{\"params\": {\"engagement\": model_id, …}}`.",
    params(("slot" = String, Path), ("action" = String, Path, description = "promote, rollback or train")),
    responses((status = 200, body = Object), (status = 409, description = "no canary; too few labelled decisions to train", body = ApiError)), security(("bearer" = [])))]
pub async fn act(
    state: web::Data<DecideState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, state.engine.collect(), &[Role::Admin])?;
    let (slot, action) = path.into_inner();
    let i = slot_index(&state.engine, &slot)?;
    let engine = Arc::clone(&state.engine);
    let detail = match action.as_str() {
        "promote" => web::block(move || engine.promote(i, "admin", None)).await,
        "rollback" => web::block(move || engine.rollback(i, "admin", None)).await,
        "train" => {
            web::block(move || {
                crate::train::train_engagement(&engine, &slot, "admin")
                    .map(|r| serde_json::to_value(r).unwrap_or(serde_json::Value::Null))
            })
            .await
        }
        _ => return Err(ApiError::new(404, "not_found", "actions: promote, rollback, train")),
    }
    .map_err(|_| ApiError::new(500, "internal", "task failed"))??;
    Ok(HttpResponse::Ok().json(detail))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateBody {
    params: ParamsBody,
    #[serde(default)]
    max_weight: Option<f64>,
}

/// `POST /v1/decide/slots/{slot}/evaluate`: off-policy evaluation of a candidate policy.
#[utoipa::path(post, path = "/v1/decide/slots/{slot}/evaluate", tag = "decisions", summary = "Estimates a candidate policy's CTR from the logged decisions (IPS, SNIPS, DR)",
    params(("slot" = String, Path)), request_body(content = Object, description = "{params: {alpha, lambda, epsilon?, prior, engagement?} (an unknown field is refused), max_weight?}", content_type = "application/json"),
    responses((status = 200, body = Object), (status = 400, body = ApiError), (status = 409, description = "nothing logged yet", body = ApiError)), security(("bearer" = [])))]
pub async fn evaluate(
    state: web::Data<DecideState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, state.engine.collect(), &[Role::Cms, Role::Dpo, Role::Admin])?;
    let i = slot_index(&state.engine, &path)?;
    let b: EvaluateBody = parse(&body)?;
    let engine = Arc::clone(&state.engine);
    let params = PolicyParams::from(b.params);
    let report = web::block(move || crate::ope::evaluate_slot(&engine, i, &params, b.max_weight))
        .await
        .map_err(|_| ApiError::new(500, "internal", "evaluation task failed"))??;
    Ok(HttpResponse::Ok().json(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Chosen, Mode};
    use crate::slots::Content;

    fn candidate(id: &str, title: Option<&str>) -> Candidate {
        Candidate {
            id: id.into(),
            category: None,
            content: Content { title: title.map(Into::into), ..Content::default() },
        }
    }

    #[test]
    fn an_answer_names_each_chosen_candidate_with_its_content_in_the_order_chosen() {
        let candidates =
            Arc::new(vec![candidate("a", Some("A")), candidate("b", None), candidate("c", Some("C \"quoted\""))]);
        let d = Decision {
            decision_id: Uuid::nil(),
            slot: "s".into(),
            mode: Mode::Personalized,
            reason: None,
            model_version: Some("m#1".into()),
            explored: true,
            consent_record: None,
            candidates,
            variants: vec![
                Chosen { candidate: 2, score: 0.75, propensity: 0.5, probability: 0.5 },
                Chosen { candidate: 0, score: 0.25, propensity: 1.0, probability: 0.3 },
            ],
        };
        let answer: Value = serde_json::to_value(decision_json(&d)).unwrap();
        assert_eq!(
            answer["variants"],
            json!([
                {"id": "c", "score": 0.75, "propensity": 0.5, "content": {"title": "C \"quoted\""}},
                {"id": "a", "score": 0.25, "propensity": 1.0, "content": {"title": "A"}},
            ])
        );
        assert_eq!(d.first_id(), Some("c"));
        let no_variants = Decision { variants: Vec::new(), ..d };
        assert_eq!(no_variants.first_id(), None);
        assert_eq!(serde_json::to_value(decision_json(&no_variants)).unwrap()["variants"], json!([]));
    }
}
