//! The decision engine: consent gate, scoring under the slot's deadline, exploration with logged
//! propensities, receipts, outcomes, online learning with exact unlearning, and canaries.
//!
//! The hot path (`gate`, `score`, `record`) reads memory only: consent from the collector's book,
//! features from the views, the policy's linear model from its slot state. Receipts go to the log
//! through a background writer, so a decision never waits for a disk.
//!
//! A policy version may name an offline engagement model of its slot (`PolicyParams::engagement`);
//! its predicted click probability is then the base the online model learns the residual of. As the
//! personalizer's [`Unlearner`] the engine retrains such a model without the subjects who left and
//! swaps the successor in (R-ERASE-7).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Duration;

use lethe_audit::AuditKind;
use lethe_bandit::{CanaryRule, EpsilonGreedy, Exploration, LinUcb};
use lethe_collect::CollectState;
use lethe_consent::Verdict;
use lethe_domain::{EventType, NewEvent, Pseudonym, Purpose, Retention, SchemaVersion, SubjectId, UtcMicros};
use lethe_eventlog::{AppendRequest, EventStore, Note};
use lethe_features::ServedNote;
use lethe_ml::engagement::{EngagementModel as _, TrainedModel};
use lethe_personalize::{Personalizer, Unlearner, Views};
use lethe_privacy::{ErasureHook, Privacy};
use lethe_registry::{Manifest, Membership, ModelId, ModelName, NewModel, RetireReason, Status};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::features::{self, Context, D};
use crate::rank_events::{EventIds, RankEvent};
use crate::slots::{CanarySettings, Content, Slot, Slots, Variant};

pub use lethe_domain::schema::types::{DECISION_SERVED, OUTCOME_RECORDED, RECOMMENDATIONS_SERVED};
/// How long a decision can receive outcomes.
pub const ATTRIBUTION_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Scored for this subject by the slot's model, with consent.
    Personalized,
    /// The same answer anyone gets: no consent, an opt-out, or nothing known of the subject.
    NonPersonalized,
    /// Personalization was allowed but the model was late or failed: the slot's default.
    Fallback,
}

/// Why a decision was not personalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The request names no subject: there is no one to personalize for.
    NoSubject,
    /// The subject never answered for the slot's purpose.
    NoConsent,
    /// The subject refused the slot's purpose.
    ConsentDenied,
    /// The subject withdrew the slot's purpose.
    ConsentWithdrawn,
    /// The subject opted out of sale/share.
    OptedOut,
    /// A Global Privacy Control signal (on this request or on record).
    Gpc,
    /// Nothing known of the subject yet.
    ColdStart,
    /// The model did not answer within the slot's deadline.
    Deadline,
    /// The model failed.
    ModelError,
    /// Too many receipts are on their way to the log (it is behind): a personalized answer needs
    /// its receipt queued, so none is given until the log catches up.
    ReceiptBacklog,
    /// A public site key asked for an `anonymousId` whose pseudonym is a signed-in user's (a
    /// consent record or an event was stored for it under a `userId`): the key may decide for
    /// anonymous visitors only, so nothing of the user's profile shapes the answer (R-DSR-4).
    NotAnonymous,
}

/// A candidate as the caller may send it (open slots) or as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(flatten)]
    pub content: Content,
}

impl From<&Variant> for Candidate {
    fn from(v: &Variant) -> Self {
        Self { id: v.id.clone(), category: v.category.clone(), content: v.content.clone() }
    }
}

/// The candidates of a decision, shared (a slot's declared variants are built once).
pub type Candidates = Arc<Vec<Candidate>>;

/// One chosen variant in an answer: a candidate of its decision ([`Decision::candidates`]), by
/// position, so that an answer copies no candidate's id or content.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// The position of the variant in [`Decision::candidates`].
    pub candidate: usize,
    pub score: f64,
    /// The probability the policy had of choosing it first (1 for deterministic answers).
    pub propensity: f64,
    /// The probability the policy gave this candidate of being chosen first: over the candidates
    /// these sum to 1 (the first of a deterministic answer has 1, the others 0). The Personalizer
    /// API's ranking probabilities; `/v1/decide` answers `propensity` only.
    pub probability: f64,
}

/// What the engine answers.
#[derive(Debug, Clone)]
pub struct Decision {
    pub decision_id: Uuid,
    pub slot: String,
    pub mode: Mode,
    pub reason: Option<Reason>,
    /// The policy version that decided (`None` for non-personalized answers).
    pub model_version: Option<String>,
    /// Whether the first variant was an exploration draw rather than the best score.
    pub explored: bool,
    /// The consent record that allowed a personalized decision.
    pub consent_record: Option<Uuid>,
    /// The candidates the variants were chosen from.
    pub candidates: Candidates,
    pub variants: Vec<Chosen>,
}

impl Decision {
    /// The candidate a chosen variant is.
    pub fn candidate(&self, chosen: &Chosen) -> &Candidate {
        &self.candidates[chosen.candidate]
    }

    /// The id of the variant chosen first (the one an outcome counts for), if any was.
    pub fn first_id(&self) -> Option<&str> {
        self.variants.first().map(|v| self.candidate(v).id.as_str())
    }
}

/// A decision request, parsed.
#[derive(Debug, Clone)]
pub struct DecideRequest {
    /// Whom the decision is for; `None`: no one in particular (a Personalizer Rank call without a
    /// subject), answered non-personalized without consulting anyone's consent.
    pub subject: Option<SubjectId>,
    pub slot: String,
    pub device: Option<String>,
    /// `Sec-GPC: 1` on the request.
    pub gpc: bool,
    /// Candidates a caller sends (open slots), or ids restricting the declared variants.
    pub candidates: Option<Vec<Candidate>>,
    pub count: usize,
    /// The event a Personalizer Rank call names: kept with the decision for its rewards, and
    /// named in its receipt so that a restart rebuilds it.
    pub event: Option<RankEvent>,
    /// The caller is a public site key, which acts for anonymous visitors only: a subject the
    /// consent book knows as a signed-in user is answered non-personalized
    /// ([`Reason::NotAnonymous`]). False for `cms` and `admin` tokens (and the Personalizer API).
    pub anonymous_only: bool,
}

/// A refusal of the engine (the HTTP layer maps codes to statuses).
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no slot `{0}` is declared")]
    UnknownSlot(String),
    #[error("{0}")]
    BadCandidates(String),
    /// Policy parameters (or a canary's share) out of range.
    #[error("{0}")]
    BadParams(String),
    #[error("no decision `{0}` is known (unknown, or past its attribution window)")]
    UnknownDecision(Uuid),
    #[error("no model version `{0}` for this slot")]
    UnknownVersion(String),
    #[error("{0}")]
    Conflict(String),
    #[error("model registry: {0}")]
    Registry(String),
}

impl DecideError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownSlot(_) => "unknown_slot",
            Self::BadCandidates(_) => "invalid_candidates",
            Self::BadParams(_) => "invalid_params",
            Self::UnknownDecision(_) => "unknown_decision",
            Self::UnknownVersion(_) => "unknown_version",
            Self::Conflict(_) => "version_conflict",
            Self::Registry(_) => "registry_error",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownSlot(_) | Self::UnknownDecision(_) | Self::UnknownVersion(_) => 404,
            Self::BadCandidates(_) | Self::BadParams(_) => 400,
            Self::Conflict(_) => 409,
            Self::Registry(_) => 500,
        }
    }
}

/// The largest exploration bonus a new policy version may set ([`PolicyParams::check_new`]).
pub const MAX_ALPHA: f64 = 100.0;
/// The smallest ridge regularization a new policy version may set.
pub const MIN_LAMBDA: f64 = 1e-6;
/// The largest ridge regularization a new policy version may set.
pub const MAX_LAMBDA: f64 = 1e6;
/// The largest magnitude of a prior weight (features and rewards are of order one).
pub const MAX_PRIOR: f64 = 1e3;

/// The settings of a decision policy version, sealed in the registry as its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyParams {
    /// Exploration bonus of the linear UCB score.
    pub alpha: f64,
    /// Ridge regularization (and weight of the prior).
    pub lambda: f64,
    /// Exploration share; `None` takes the slot's.
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// The linear model's prior weights, one per feature.
    pub prior: Vec<f64>,
    /// An offline engagement model of the slot (`lethe decide train`: `engagement-<slot>` in the
    /// registry, by model id). Its predicted click probability replaces `prior · x` as the base the
    /// online model learns the residual of. A version of it that unlearning replaced is followed to
    /// its successor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engagement: Option<String>,
}

impl Default for PolicyParams {
    fn default() -> Self {
        Self { alpha: 0.05, lambda: 10.0, epsilon: None, prior: features::PRIOR.to_vec(), engagement: None }
    }
}

impl PolicyParams {
    /// The engagement model's id ([`PolicyParams::check`] refuses one that does not parse).
    fn engagement_id(&self) -> Option<ModelId> {
        self.engagement.as_deref().and_then(|e| e.parse().ok())
    }

    /// Checks the settings of a version being made (a canary) or evaluated: within ranges in
    /// which every score is a finite number. A `lambda` of 1e-308 passes `> 0` but makes the
    /// exploration bonus infinite, so that every decision of a version built on it would fall
    /// back with `model_error`. Versions already registered are read with [`Self::check`], so
    /// that one registered before these ranges still loads.
    pub(crate) fn check_new(&self) -> Result<(), DecideError> {
        self.check()?;
        let ok = self.alpha <= MAX_ALPHA
            && (MIN_LAMBDA..=MAX_LAMBDA).contains(&self.lambda)
            && self.prior.iter().all(|p| p.abs() <= MAX_PRIOR);
        if ok {
            Ok(())
        } else {
            Err(DecideError::BadParams(format!(
                "policy: alpha in [0, {MAX_ALPHA}], lambda in [{MIN_LAMBDA:e}, {MAX_LAMBDA:e}], \
                 prior of {D} numbers in [-{MAX_PRIOR}, {MAX_PRIOR}]"
            )))
        }
    }

    /// Checks the settings of a registered version: what the model needs to be built at all.
    pub(crate) fn check(&self) -> Result<(), DecideError> {
        let ok = self.alpha.is_finite()
            && self.alpha >= 0.0
            && self.lambda.is_finite()
            && self.lambda > 0.0
            && self.epsilon.is_none_or(|e| (0.0..=1.0).contains(&e))
            && self.prior.len() == D
            && self.prior.iter().all(|p| p.is_finite());
        if self.engagement.is_some() && self.engagement_id().is_none() {
            return Err(DecideError::BadParams("policy: engagement is a model id".into()));
        }
        if ok {
            Ok(())
        } else {
            Err(DecideError::BadParams(format!(
                "policy: alpha ≥ 0, lambda > 0, epsilon in [0, 1], prior of {D} finite numbers"
            )))
        }
    }
}

/// The linear model of a policy version: ridge regression with a prior mean. It learns the residual
/// `reward − prior·x` with LinUCB, which is exactly ridge regression shrunk towards the prior, so
/// removing an update is still exact.
#[derive(Debug, Clone)]
pub struct Model {
    prior: [f64; D],
    /// The offline engagement model that replaces the prior, with its registry id.
    engagement: Option<(ModelId, Arc<TrainedModel>)>,
    ucb: LinUcb,
}

impl Model {
    /// A model that has seen nothing: its expectations are the prior's.
    ///
    /// # Errors
    /// Bad parameters.
    pub fn new(params: &PolicyParams) -> Result<Self, lethe_bandit::BanditError> {
        let mut prior = [0.0; D];
        for (p, v) in prior.iter_mut().zip(&params.prior) {
            *p = *v;
        }
        Ok(Self { prior, engagement: None, ucb: LinUcb::new(D, params.lambda, params.alpha)? })
    }

    /// The same model with `engagement` as its base instead of the prior.
    #[must_use]
    pub fn with_engagement(mut self, engagement: Option<(ModelId, Arc<TrainedModel>)>) -> Self {
        self.engagement = engagement;
        self
    }

    /// The engagement model in use, if any.
    pub fn engagement(&self) -> Option<ModelId> {
        self.engagement.as_ref().map(|(id, _)| *id)
    }

    fn base(&self, x: &[f64]) -> f64 {
        let linear = || self.prior.iter().zip(x).map(|(a, b)| a * b).sum();
        match &self.engagement {
            // A trained model takes the D features it was trained on, so it cannot fail on them;
            // should it, the prior stands in (deterministically, so unlearning stays exact).
            Some((_, m)) => m.predict_proba(x).unwrap_or_else(|_| linear()),
            None => linear(),
        }
    }

    /// Upper confidence bounds of the candidates.
    ///
    /// # Errors
    /// Dimension mismatch or non-finite features.
    pub fn scores(&self, xs: &[[f64; D]]) -> Result<Vec<f64>, lethe_bandit::BanditError> {
        // The candidates of one category (but the default, flagged as such) share their feature
        // vector (`features::vector_of`), so a slot of 50 candidates has a handful of distinct ones:
        // each is scored once.
        let mut distinct: Vec<&[f64; D]> = Vec::new();
        let of: Vec<usize> = xs
            .iter()
            .map(|x| {
                let same = |d: &&[f64; D]| d.iter().zip(x).all(|(a, b)| a.to_bits() == b.to_bits());
                distinct.iter().position(same).unwrap_or_else(|| {
                    distinct.push(x);
                    distinct.len() - 1
                })
            })
            .collect();
        let refs: Vec<&[f64]> = distinct.iter().map(|x| &x[..]).collect();
        let mut out = self.ucb.scores(&refs)?;
        // The engagement model predicts them in one pass (the same values as `base`).
        let batch = self.engagement.as_ref().and_then(|(_, m)| m.predict_rows(&refs).ok());
        match batch {
            Some(bases) => out.iter_mut().zip(bases).for_each(|(o, b)| *o += b),
            None => out.iter_mut().zip(&distinct).for_each(|(o, x)| *o += self.base(&x[..])),
        }
        Ok(of.into_iter().map(|i| out[i]).collect())
    }

    /// The expected reward of `x`.
    ///
    /// # Errors
    /// As [`Model::scores`].
    pub fn expected(&self, x: &[f64]) -> Result<f64, lethe_bandit::BanditError> {
        Ok(self.base(x) + self.ucb.expected(x)?)
    }

    /// Learns one outcome.
    ///
    /// # Errors
    /// As [`Model::scores`].
    pub fn update(&mut self, x: &[f64], reward: f64) -> Result<(), lethe_bandit::BanditError> {
        self.ucb.update(x, reward - self.base(x))
    }

    /// Unlearns one earlier outcome exactly.
    ///
    /// # Errors
    /// As [`Model::scores`].
    pub fn remove(&mut self, x: &[f64], reward: f64) -> Result<(), lethe_bandit::BanditError> {
        self.ucb.remove(x, reward - self.base(x))
    }

    /// Outcomes learned.
    pub fn observations(&self) -> u64 {
        self.ucb.observations()
    }
}

/// A scorer of candidate feature vectors: the slot version's linear model by default. Tests swap in
/// a slow or failing one to prove the fallbacks (invariant 8).
pub trait Scorer: Send + Sync + std::fmt::Debug {
    /// One score per candidate.
    ///
    /// # Errors
    /// The model failed; the decision falls back to the slot's default.
    fn score(&self, model: &Model, xs: &[[f64; D]]) -> Result<Vec<f64>, String>;

    /// Whether it is a bounded amount of arithmetic that cannot block, and so may score on the
    /// request thread (the built-in linear model: candidates × features²). Any other scorer runs on
    /// the blocking pool under the slot's deadline.
    fn inline(&self) -> bool {
        false
    }
}

/// The linear model's upper confidence bounds.
#[derive(Debug, Default)]
pub struct LinearScorer;

impl Scorer for LinearScorer {
    fn score(&self, model: &Model, xs: &[[f64; D]]) -> Result<Vec<f64>, String> {
        model.scores(xs).map_err(|e| e.to_string())
    }

    fn inline(&self) -> bool {
        true
    }
}

/// One policy version of a slot, with what it learned online.
#[derive(Debug, Clone)]
struct Version {
    id: ModelId,
    /// `id#number` (the version's number among the slot's), formatted once: every decision names it.
    label: Arc<str>,
    params: PolicyParams,
    /// Copied on write: decisions in flight share it.
    model: Arc<Model>,
}

impl Version {
    fn new(
        id: ModelId,
        number: u32,
        params: PolicyParams,
        engagement: Option<(ModelId, Arc<TrainedModel>)>,
    ) -> Result<Self, DecideError> {
        params.check()?;
        let model = Model::new(&params).map_err(|e| DecideError::Registry(e.to_string()))?.with_engagement(engagement);
        let label = format!("{id}#{number}").into();
        Ok(Self { id, label, params, model: Arc::new(model) })
    }

    fn label(&self) -> String {
        self.label.to_string()
    }
}

#[derive(Debug)]
struct SlotState {
    live: Version,
    canary: Option<(Version, u16)>,
}

impl SlotState {
    /// The live or canary version with this id.
    fn version(&self, id: ModelId) -> Option<&Version> {
        match &self.canary {
            Some((v, _)) if v.id == id => Some(v),
            _ => (self.live.id == id).then_some(&self.live),
        }
    }

    fn version_mut(&mut self, id: ModelId) -> Option<&mut Version> {
        match &mut self.canary {
            Some((v, _)) if v.id == id => Some(v),
            _ => (self.live.id == id).then_some(&mut self.live),
        }
    }
}

/// Counters per (slot, variant, model version, mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    pub decisions: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub conversions: u64,
    pub value: f64,
}

/// What the engine keeps of a decision until its attribution window ends.
#[derive(Debug, Clone)]
struct Record {
    at: UtcMicros,
    subject: Option<Pseudonym>,
    slot: usize,
    version: Option<ModelId>,
    mode: Mode,
    variant: Shown,
    x: Option<[f64; D]>,
    /// Every candidate's features and the chosen index, for off-policy evaluation (slots with at
    /// most [`OPE_MAX_CANDIDATES`] candidates); boxed, as most decisions have none.
    candidates: Option<Box<(Vec<[f64; D]>, usize)>>,
    propensity: f64,
    impressed: bool,
    clicked: bool,
    /// A decision converts once: a repeated conversion report changes nothing.
    converted: bool,
    /// The reward its first click, conversion or reward reported (0 without one).
    reward: f64,
}

/// The variant a decision showed first, as its record keeps it: a slot's own variant by its index,
/// without a copy of its id (a record lives for the attribution window: a decision allocates one
/// string fewer on the request thread, which would be kept that long among its short-lived ones);
/// another (sent by the caller) by its id.
#[derive(Debug, Clone)]
enum Shown {
    Declared(u32),
    Sent(Box<str>),
}

/// The bytes a receipt's payload is first given room for.
const RECEIPT_CAPACITY: usize = 1024;

/// Most candidates a decision may have for its features to be kept for off-policy evaluation.
pub const OPE_MAX_CANDIDATES: usize = 16;

/// Most decisions held for their outcomes by default (`lethe serve --pending-decisions`; about 0.5 KB
/// each, up to 1.8 KB with 16 candidates' features, so 1–3.5 GB in all). Past it, the oldest give way: an
/// outcome for one of them is an unknown decision (its receipt stays in the log), and
/// `lethe_decisions_evicted_total` counts them. At 5,000 decisions/s this holds the last 6.7 minutes
/// of the 24-hour attribution window; a sustained rate that high needs outcomes reported promptly.
pub const MAX_PENDING_DECISIONS: usize = 2_000_000;

/// Most decision receipts on their way to the log at once (queued, or appended and not yet
/// durable) before decisions stop being personalized (reason `receipt_backlog`). At 5,000
/// decisions/s about 150 are in flight (the log's linger and fsync window, and the hand-over
/// tick); a log that falls behind would otherwise let the queue grow without bound, and with it
/// what a crash would lose: personalized decisions with no receipt to show their lawful basis. At
/// about 1 KB each, the default bounds that at ~20 MB.
pub const DEFAULT_RECEIPT_BACKLOG: usize = 20_000;

/// Decisions in their attribution window, in shards so that no lock stops every request at once.
/// Each shard keeps its decisions in the order of their ids (see [`Shard`]): decision ids are UUIDv7,
/// so a new decision lands at the end of its shard and the oldest is the first to evict. The ids are
/// kept as the integers of their bytes read big-endian ([`Uuid::as_u128`]), which order as the ids
/// do: comparing two is an integer comparison, where comparing two `Uuid`s calls `memcmp`.
#[derive(Debug)]
struct Shards<V> {
    shards: Vec<Mutex<Shard<V>>>,
    per_shard: usize,
    evicted: std::sync::atomic::AtomicU64,
}

/// One shard's decisions in a ring, ordered by id. A decision is appended, where a search tree would
/// walk down to its last leaf for each one, write the record into the leaf and split it every few
/// decisions (12 % of a decision's time on the request thread, in the engine bench); an id is found
/// by binary search. A decision whose id is older than the shard's newest (ids of the same
/// millisecond are not ordered among themselves: their low bits are random) goes to its place, a
/// few entries from the end. No insert rehashes (a hash map doubling under its lock held a request
/// for as long as it took to move every entry of the shard); the ring doubles as the shard first
/// fills, moving entries once per doubling.
#[derive(Debug)]
struct Shard<V> {
    entries: VecDeque<(u128, V)>,
}

impl<V> Shard<V> {
    /// Where `key` is, or would go.
    fn search(&self, key: u128) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&key, |(k, _)| *k)
    }

    fn get(&self, key: &u128) -> Option<&V> {
        self.search(*key).ok().map(|i| &self.entries[i].1)
    }

    fn get_mut(&mut self, key: &u128) -> Option<&mut V> {
        self.search(*key).ok().map(|i| &mut self.entries[i].1)
    }

    /// Inserts or replaces the entry of `key`.
    fn insert(&mut self, key: u128, value: V) {
        if self.entries.back().is_none_or(|(last, _)| *last < key) {
            self.entries.push_back((key, value));
            return;
        }
        match self.search(key) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (key, value)),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<V> Shards<V> {
    const COUNT: usize = 64;

    /// Shards holding at most about `capacity` entries in all.
    fn new(capacity: usize) -> Self {
        Self {
            shards: (0..Self::COUNT).map(|_| Mutex::new(Shard { entries: VecDeque::new() })).collect(),
            per_shard: capacity.div_ceil(Self::COUNT).max(1),
            evicted: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The shard of `id`, whose entries are keyed by [`Uuid::as_u128`].
    fn shard(&self, id: &Uuid) -> std::sync::MutexGuard<'_, Shard<V>> {
        // v7 ids start with the time: take the random tail.
        let i = usize::from(id.as_bytes()[15]) % Self::COUNT;
        self.shards[i].lock().expect("records lock")
    }

    /// Inserts an entry; the oldest of its shard give way when the shard is full.
    fn insert(&self, id: Uuid, value: V) {
        let mut shard = self.shard(&id);
        shard.insert(id.as_u128(), value);
        while shard.len() > self.per_shard {
            shard.entries.pop_front();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The most entries held: the bound per shard, in all shards.
    fn capacity(&self) -> usize {
        self.per_shard.saturating_mul(Self::COUNT)
    }

    /// How many entries the shards hold, and how many were evicted so far.
    fn stats(&self) -> (usize, u64) {
        let held = self.shards.iter().map(|s| s.lock().expect("records lock").len()).sum();
        (held, self.evicted.load(Ordering::Relaxed))
    }

    /// Keeps the entries `keep` accepts; returns how many were removed.
    fn retain(&self, mut keep: impl FnMut(&V) -> bool) -> usize {
        let mut removed = 0;
        for s in &self.shards {
            let mut s = s.lock().expect("records lock");
            let before = s.len();
            s.entries.retain(|(_, v)| keep(v));
            removed += before - s.len();
        }
        removed
    }

    fn for_each(&self, mut f: impl FnMut(&Uuid, &V)) {
        for s in &self.shards {
            for (k, v) in &s.lock().expect("records lock").entries {
                f(&Uuid::from_u128(*k), v);
            }
        }
    }
}

/// One update of a version's model by a subject's outcome, kept for exact unlearning.
#[derive(Debug, Clone)]
struct Contribution {
    slot: usize,
    version: ModelId,
    x: [f64; D],
    reward: f64,
    decision: Uuid,
}

/// An outcome report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Impression,
    Click,
    Conversion,
    /// A reward in [`MIN_REWARD`, `MAX_REWARD`] (the Personalizer API's): the model learns the value
    /// itself, where a click teaches 1; a positive one counts as a click in the figures.
    Reward,
}

/// The least reward an outcome of kind `reward` may carry.
pub const MIN_REWARD: f64 = -1.0;
/// The greatest reward an outcome of kind `reward` may carry.
pub const MAX_REWARD: f64 = 1.0;

/// What the engine did with an outcome.
#[derive(Debug, Clone, Serialize)]
pub struct OutcomeReceipt {
    pub decision_id: Uuid,
    pub recorded: bool,
    /// The reward the decision's model version learned from it (none: it learned nothing, as for a
    /// repeated report, a non-personalized decision or a subject whose consent no longer allows it).
    pub learned: Option<f64>,
    /// A canary verdict the outcome triggered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Value>,
}

/// The decision engine of `lethe serve`.
pub struct Engine {
    pub slots: Slots,
    declared: Vec<Candidates>,
    /// The categories of `declared`, grouped once per slot.
    declared_groups: Vec<CategoryGroups>,
    /// The ids of `declared`, as the JSON array a receipt lists them in, written once per slot.
    declared_ids: Vec<Box<serde_json::value::RawValue>>,
    state: Vec<RwLock<SlotState>>,
    records: Shards<Record>,
    contributions: Mutex<HashMap<Pseudonym, Vec<Contribution>>>,
    counts: Mutex<BTreeMap<CountKey, Counts>>,
    reasons: Mutex<BTreeMap<&'static str, u64>>,
    /// How long decisions took, per slot (index of `slots`).
    latency: Vec<crate::latency::Latency>,
    scorer: RwLock<Arc<dyn Scorer>>,
    /// Whether `scorer` may score on the request thread ([`Scorer::inline`]).
    scores_inline: AtomicBool,
    canary_rule: RwLock<CanaryRule>,
    receipts: mpsc::Sender<(AppendRequest, Option<Note>)>,
    /// The event type and retention of each kind of receipt, read from the policies once.
    receipt_kinds: Vec<(&'static str, EventType, Retention)>,
    /// Receipts queued or not yet durable; the writer's callbacks count them down.
    receipts_in_flight: Arc<AtomicUsize>,
    receipt_backlog: AtomicUsize,
    collect: CollectState,
    views: Arc<Views>,
    personalizer: Arc<Personalizer>,
    privacy: Arc<Privacy>,
    /// The events of Personalizer Rank calls, for their rewards.
    pub rank_events: EventIds,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("slots", &self.slots.all().len()).finish_non_exhaustive()
    }
}

fn registry_error(e: impl std::fmt::Display) -> DecideError {
    DecideError::Registry(e.to_string())
}

fn reason_of(v: Verdict) -> Option<Reason> {
    match v {
        Verdict::NotRequired | Verdict::Granted => None,
        Verdict::NoConsent => Some(Reason::NoConsent),
        Verdict::Denied => Some(Reason::ConsentDenied),
        Verdict::Withdrawn => Some(Reason::ConsentWithdrawn),
        Verdict::GpcOptOut => Some(Reason::Gpc),
    }
}

impl Reason {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSubject => "no_subject",
            Self::NoConsent => "no_consent",
            Self::ConsentDenied => "consent_denied",
            Self::ConsentWithdrawn => "consent_withdrawn",
            Self::OptedOut => "opted_out",
            Self::Gpc => "gpc",
            Self::ColdStart => "cold_start",
            Self::Deadline => "deadline",
            Self::ModelError => "model_error",
            Self::ReceiptBacklog => "receipt_backlog",
            Self::NotAnonymous => "not_anonymous",
        }
    }
}

/// The outcome of the consent gate.
#[derive(Debug, Clone)]
pub enum Gate {
    /// Personalize for this pseudonym, under this consent record.
    Personalize { subject: Pseudonym, consent_record: Option<Uuid> },
    /// Answer what anyone gets.
    NonPersonalized(Reason),
}

/// The work the scorer does off the request thread.
#[derive(Debug)]
pub struct Scoring {
    candidates: Candidates,
    xs: Vec<[f64; D]>,
    count: usize,
    version: Option<(ModelId, String, f64)>,
    /// Shared with the slot state: an outcome that changes the model meanwhile copies it first.
    model: Option<Arc<Model>>,
    cold: bool,
}

/// The scorer's answer: scores and the choice.
#[derive(Debug)]
pub struct Scored {
    order: Vec<usize>,
    scores: Vec<f64>,
    /// Each candidate's probability of being drawn first.
    probabilities: Vec<f64>,
    propensity: f64,
    explored: bool,
}

/// The engine's memory bounds (`lethe serve --pending-decisions`, `--receipt-backlog`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decisions held for their outcomes ([`MAX_PENDING_DECISIONS`] by default).
    pub pending_decisions: usize,
    /// Decision receipts on their way to the log ([`DEFAULT_RECEIPT_BACKLOG`] by default).
    pub receipt_backlog: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { pending_decisions: MAX_PENDING_DECISIONS, receipt_backlog: DEFAULT_RECEIPT_BACKLOG }
    }
}

impl Engine {
    /// Opens the engine with the default [`Limits`]; see [`Engine::open_with`].
    ///
    /// # Errors
    /// Registry errors.
    pub fn open(
        slots: Slots,
        collect: CollectState,
        views: Arc<Views>,
        personalizer: Arc<Personalizer>,
        privacy: Arc<Privacy>,
    ) -> Result<Arc<Self>, DecideError> {
        Self::open_with(slots, collect, views, personalizer, privacy, Limits::default())
    }

    /// Opens the engine: loads (or registers, on first start) each slot's live and canary policy
    /// versions, starts the receipt writer and replays the decisions still in their window, under
    /// `limits` from the start (so a replay never holds more decisions than the bound).
    ///
    /// # Errors
    /// Registry errors.
    pub fn open_with(
        slots: Slots,
        collect: CollectState,
        views: Arc<Views>,
        personalizer: Arc<Personalizer>,
        privacy: Arc<Privacy>,
        limits: Limits,
    ) -> Result<Arc<Self>, DecideError> {
        let mut state = Vec::with_capacity(slots.all().len());
        for slot in slots.all() {
            let name = ModelName::parse(&slot.model_name()).map_err(registry_error)?;
            let reg = personalizer.registry();
            let live = match reg.live(&name).map_err(registry_error)? {
                Some(v) => load_version(&personalizer, &slot.id, v.id, v.version)?,
                None => {
                    let (id, number) =
                        register(&personalizer, &name, &PolicyParams::default(), "initial", collect.store.head().0)?;
                    reg.set_status(id, Status::Live, UtcMicros::now()).map_err(registry_error)?;
                    Version::new(id, number, PolicyParams::default(), None)?
                }
            };
            let canary = match reg.canary(&name).map_err(registry_error)? {
                Some(v) => match v.status {
                    Status::Canary { share_permille } => {
                        Some((load_version(&personalizer, &slot.id, v.id, v.version)?, share_permille))
                    }
                    _ => None,
                },
                None => None,
            };
            state.push(RwLock::new(SlotState { live, canary }));
        }
        let rule = canary_rule(&slots.canary);
        let declared: Vec<Candidates> =
            slots.all().iter().map(|s| Arc::new(s.variants.iter().map(Candidate::from).collect())).collect();
        let declared_ids = declared
            .iter()
            .map(|c| serde_json::value::to_raw_value(&Ids::Sent(c)))
            .collect::<Result<_, _>>()
            .map_err(registry_error)?;
        let declared_groups = declared.iter().map(|c| CategoryGroups::of(c)).collect();
        let (tx, rx) = mpsc::channel::<(AppendRequest, Option<Note>)>();
        let store = Arc::clone(&collect.store);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&in_flight);
        std::thread::Builder::new()
            .name("decision-receipts".into())
            .spawn(move || write_receipts(store.as_ref(), &rx, &counted))
            .map_err(registry_error)?;
        let latency = slots.all().iter().map(|_| crate::latency::Latency::default()).collect();
        let engine = Arc::new(Self {
            declared,
            declared_groups,
            declared_ids,
            latency,
            slots,
            state,
            records: Shards::new(limits.pending_decisions),
            contributions: Mutex::new(HashMap::new()),
            counts: Mutex::new(BTreeMap::new()),
            reasons: Mutex::new(BTreeMap::new()),
            scorer: RwLock::new(Arc::new(LinearScorer)),
            scores_inline: AtomicBool::new(true),
            canary_rule: RwLock::new(rule),
            receipts: tx,
            receipt_kinds: [DECISION_SERVED, OUTCOME_RECORDED, RECOMMENDATIONS_SERVED]
                .into_iter()
                .map(|t| (t, EventType::parse(t).expect("valid type"), receipt_retention(&collect.policies, t)))
                .collect(),
            receipts_in_flight: in_flight,
            receipt_backlog: AtomicUsize::new(limits.receipt_backlog),
            collect,
            views,
            personalizer,
            privacy,
            rank_events: EventIds::default(),
        });
        engine.replay();
        let weak: std::sync::Weak<dyn Unlearner> = Arc::downgrade(&engine) as std::sync::Weak<dyn Unlearner>;
        engine.personalizer.add_unlearner(weak);
        let listening = Arc::downgrade(&engine);
        engine.collect.book.listen(Box::new(move |subject| {
            if let Some(engine) = listening.upgrade() {
                engine.consent_changed(subject);
            }
        }));
        Ok(engine)
    }

    /// Replaces the scorer (tests inject slow, failing or panicking models). It runs on the blocking
    /// pool under the slot's deadline unless it says it may score inline ([`Scorer::inline`]).
    pub fn set_scorer(&self, scorer: Arc<dyn Scorer>) {
        let inline = scorer.inline();
        *self.scorer.write().expect("scorer lock") = scorer;
        self.scores_inline.store(inline, Ordering::Relaxed);
    }

    /// Whether scoring may run on the request thread ([`Scorer::inline`]).
    pub fn scores_inline(&self) -> bool {
        self.scores_inline.load(Ordering::Relaxed)
    }

    /// Replaces the canary rule (audited).
    pub fn set_canary_rule(&self, settings: &CanarySettings, actor: &str) {
        *self.canary_rule.write().expect("rule lock") = canary_rule(settings);
        self.audit(actor, json!({"action": "canary_rule", "rule": settings}));
    }

    /// The consent gate of a request (memory only).
    pub fn gate(&self, req: &DecideRequest, slot: &Slot) -> (Pseudonym, Gate) {
        let Some(id) = &req.subject else {
            // No one's pseudonym: the answer is non-personalized and leaves no receipt.
            return (Pseudonym::from_bytes([0; Pseudonym::LEN]), Gate::NonPersonalized(Reason::NoSubject));
        };
        let subject = self.collect.store.pseudonymize(id);
        // R-DSR-4: an `anonymousId` and a `userId` of the same text are one pseudonym; a site key
        // sending a user's id as an `anonymousId` gets what anyone gets, never her profile.
        if req.anonymous_only && self.collect.book.is_user(&subject) {
            return (subject, Gate::NonPersonalized(Reason::NotAnonymous));
        }
        match self.consent_gate(&subject, slot, req.gpc) {
            Ok(consent_record) => (subject, Gate::Personalize { subject, consent_record }),
            Err(reason) => (subject, Gate::NonPersonalized(reason)),
        }
    }

    /// Whether the subject's consent, as it stands now, allows personalizing `slot` (and learning
    /// from its outcomes): the record that allows it, or why not. `gpc`: the request carried the
    /// GPC signal.
    fn consent_gate(&self, subject: &Pseudonym, slot: &Slot, gpc: bool) -> Result<Option<Uuid>, Reason> {
        let policies = &self.collect.policies;
        let sale_share = &*SALE_SHARE;
        let requires = policies.purpose(&slot.purpose).is_none_or(|p| p.requires_consent());
        let empty = lethe_consent::ConsentHistory::default();
        self.collect.book.with_history(subject, |history| {
            let history = history.unwrap_or(&empty);
            let current = history.current();
            if slot.honor_opt_out {
                if gpc || current.gpc {
                    return Err(Reason::Gpc);
                }
                // An explicit opt-out (the subject API, a GPC signal, an import) — not a banner that
                // merely left the advertising purpose unticked, which says nothing about this slot.
                let opted_out = current
                    .purposes
                    .get(sale_share)
                    .is_some_and(|s| !s.granted && s.method != lethe_consent::ConsentMethod::Banner);
                if opted_out {
                    return Err(Reason::OptedOut);
                }
            }
            if let Some(reason) = reason_of(history.verdict_given(current, &slot.purpose, requires, sale_share)) {
                return Err(reason);
            }
            Ok(current.purposes.get(&slot.purpose).map(|s| s.record_id))
        })
    }

    /// A consent record was added for `subject`: the outcomes it taught slots whose purpose its
    /// consent no longer allows (a banner that withdrew, an opt-out, GPC) are unlearned at once,
    /// exactly as on `POST /v1/me/withdraw` (R-CONSENT-2, R-ERASE-7).
    fn consent_changed(&self, subject: &Pseudonym) {
        if self.contributions_of(subject) == 0 {
            return;
        }
        let refused: Vec<usize> = (0..self.slots.all().len())
            .filter(|&i| self.consent_gate(subject, &self.slots.all()[i], false).is_err())
            .collect();
        if !refused.is_empty() {
            self.unlearn_slots(subject, &refused);
        }
    }

    /// The candidates of a request: the declared variants (restricted to the ids sent), or the
    /// candidates sent to an open slot.
    ///
    /// # Errors
    /// Unknown or duplicate candidate ids, candidates sent to a closed slot.
    pub fn candidates(&self, slot: &Slot, req: &DecideRequest) -> Result<(Candidates, usize), DecideError> {
        let index = self.slots.index_of(&slot.id).ok_or_else(|| DecideError::UnknownSlot(slot.id.clone()))?;
        let declared = &self.declared[index];
        let Some(sent) = &req.candidates else { return Ok((Arc::clone(declared), slot.default)) };
        if sent.is_empty() || sent.len() > crate::slots::MAX_CANDIDATES {
            return Err(DecideError::BadCandidates(format!(
                "send 1..={} candidates, or none for the slot's own",
                crate::slots::MAX_CANDIDATES
            )));
        }
        let mut seen = std::collections::HashSet::new();
        let bad = |id: &str| id.is_empty() || id.len() > 128 || id.chars().any(char::is_control);
        if sent.iter().any(|c| bad(&c.id) || !seen.insert(c.id.as_str())) {
            return Err(DecideError::BadCandidates(
                "candidate ids are 1..=128 bytes without control characters, and distinct".into(),
            ));
        }
        if slot.open_candidates {
            // The caller's first action is its baseline (the Personalizer API's convention).
            return Ok((Arc::new(sent.clone()), 0));
        }
        let mut out = Vec::with_capacity(sent.len());
        for c in sent {
            let v = declared
                .iter()
                .find(|d| d.id == c.id)
                .ok_or_else(|| DecideError::BadCandidates(format!("`{}` is not a variant of `{}`", c.id, slot.id)))?;
            out.push(v.clone());
        }
        let default = out.iter().position(|c| c.id == slot.default_variant().id).unwrap_or(0);
        Ok((Arc::new(out), default))
    }

    /// Prepares the scoring of a personalized decision: features and a copy-free snapshot of the
    /// version that serves this subject (canary by a stable hash of the subject).
    pub fn prepare(
        &self,
        slot_index: usize,
        subject: &Pseudonym,
        candidates: Candidates,
        default: usize,
        ctx: &Context,
        count: usize,
    ) -> Scoring {
        let slot = &self.slots.all()[slot_index];
        let sent;
        let groups = if Arc::ptr_eq(&candidates, &self.declared[slot_index]) {
            &self.declared_groups[slot_index]
        } else {
            sent = CategoryGroups::of(&candidates);
            &sent
        };
        let (xs, cold) = self.views.with(|p| {
            let profile = features::Profile::of(p.view(subject));
            let xs = candidate_vectors(&candidates, groups, default, |n| p.catalog().category_id(n), &profile, ctx);
            (xs, profile.is_cold())
        });
        let state = self.state[slot_index].read().expect("slot lock");
        let version = match &state.canary {
            Some((v, share)) if canary_bucket(subject, v.id) < *share => v,
            _ => &state.live,
        };
        let epsilon = version.params.epsilon.unwrap_or(slot.epsilon);
        Scoring {
            candidates,
            xs,
            count,
            version: Some((version.id, version.label(), epsilon)),
            model: Some(Arc::clone(&version.model)),
            cold,
        }
    }

    /// Scores and chooses (runs off the request thread, under the deadline).
    ///
    /// # Errors
    /// The scorer failed.
    pub fn score(&self, s: &Scoring, seed: u64) -> Result<Scored, String> {
        let scorer = Arc::clone(&self.scorer.read().expect("scorer lock"));
        let model = s.model.as_ref().ok_or("no model")?;
        let scores = scorer.score(model, &s.xs)?;
        if scores.len() != s.xs.len() || scores.iter().any(|v| !v.is_finite()) {
            return Err("the model returned no finite score for some candidate".into());
        }
        let epsilon = s.version.as_ref().map_or(0.0, |v| v.2);
        let probs = EpsilonGreedy { epsilon }.probabilities(&scores).map_err(|e| e.to_string())?;
        // One draw from the request's random seed: a small generator seeds in a few operations,
        // where ChaCha8 computes a 256-byte block first.
        let draw: f64 = rand::rngs::SmallRng::seed_from_u64(seed).gen();
        let mut first = probs.len() - 1;
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if draw < acc {
                first = i;
                break;
            }
        }
        let best = argmax(&scores);
        let order = shown_order(&scores, first, s.count);
        Ok(Scored {
            propensity: probs[first],
            explored: scores[first] < scores[best],
            order,
            scores,
            probabilities: probs,
        })
    }

    /// The answer for `scoring` as scored (or its fallback), recorded and receipted.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        &self,
        subject: Pseudonym,
        gate: &Gate,
        scoring: Option<Scoring>,
        scored: Result<Scored, Reason>,
        ctx: &Context,
        fallback: (Candidates, usize, usize),
        slot_index: usize,
        event: Option<&RankEvent>,
    ) -> Decision {
        let slot = &self.slots.all()[slot_index];
        // Time-ordered with a random tail, without `now_v7`'s process-wide counter lock: a lock a
        // preempted request could hold while the others wait.
        let decision_id = Uuid::new_v7(uuid::Timestamp::now(uuid::NoContext));
        let now = UtcMicros::now();
        let (consent_record, personal_subject) = match gate {
            Gate::Personalize { consent_record, subject } => (*consent_record, Some(*subject)),
            Gate::NonPersonalized(_) => (None, None),
        };
        let mut logged_candidates = None;
        // Borrowed, so that a refused receipt can still give the fallback (below).
        let fixed_fallback = || (fixed(&fallback.0, fallback.1, fallback.2), Arc::clone(&fallback.0));
        let (mode, reason, variants, version, x, propensity, explored, candidates) = match (gate, scoring, scored) {
            (Gate::NonPersonalized(r), _, _) => {
                let (v, c) = fixed_fallback();
                (Mode::NonPersonalized, Some(*r), v, None, None, 1.0, false, c)
            }
            (Gate::Personalize { .. }, Some(s), Ok(sc)) => {
                let mode = if s.cold { Mode::NonPersonalized } else { Mode::Personalized };
                let variants = sc
                    .order
                    .iter()
                    .enumerate()
                    .map(|(rank, i)| Chosen {
                        candidate: *i,
                        score: sc.scores[*i],
                        propensity: if rank == 0 { sc.propensity } else { 1.0 },
                        probability: sc.probabilities[*i],
                    })
                    .collect();
                let reason = s.cold.then_some(Reason::ColdStart);
                let x = s.xs[sc.order[0]];
                if !s.cold && s.xs.len() <= OPE_MAX_CANDIDATES {
                    logged_candidates = Some((s.xs.clone(), sc.order[0]));
                }
                let v = s.version.map(|v| (v.0, v.1));
                (mode, reason, variants, v, Some(x), sc.propensity, sc.explored, s.candidates)
            }
            (Gate::Personalize { .. }, s, Err(r)) => {
                let (v, c) = fixed_fallback();
                let version = s.and_then(|s| s.version.map(|v| (v.0, v.1)));
                (Mode::Fallback, Some(r), v, version, None, 1.0, false, c)
            }
            (Gate::Personalize { .. }, None, Ok(_)) => {
                let (v, c) = fixed_fallback();
                (Mode::Fallback, Some(Reason::ModelError), v, None, None, 1.0, false, c)
            }
        };
        let first = variants.first().map_or("", |v: &Chosen| candidates[v.candidate].id.as_str());
        let version_label = version.as_ref().map(|v| v.1.clone());
        let event_id = event.map(|e| e.id_for(decision_id));
        // The receipt goes into the subject's own stream, under its key, only when consent
        // allowed personalization: it proves the lawful basis. A non-personalized decision is about
        // no one in particular and is only counted. Without a queued receipt there is no
        // personalized answer: the slot's fallback is given instead.
        if personal_subject.is_some() {
            // Serialized straight from borrowed fields: no JSON tree of the candidates is built (and
            // freed by another thread) on the request path.
            let body = ServedReceipt {
                properties: ServedProperties {
                    decision: decision_id,
                    slot: &slot.id,
                    variant: first,
                    model: version_label.as_deref(),
                    event: event_id.as_deref().zip(event).map(|(id, e)| ReceiptEvent { id, deferred: e.deferred }),
                    policy: ServedPolicy {
                        mode,
                        reason,
                        propensity,
                        explored,
                        candidates: if Arc::ptr_eq(&candidates, &self.declared[slot_index]) {
                            Ids::Declared(&self.declared_ids[slot_index])
                        } else {
                            Ids::Sent(&candidates)
                        },
                        consent_record,
                        purpose: &slot.purpose,
                        features: x.as_ref(),
                        candidate_features: logged_candidates.as_ref().map(|(xs, _)| xs),
                    },
                },
                context: ReceiptContext { device_class: ctx.device.map(|d| d.as_str()), daypart: ctx.daypart.as_str() },
            };
            // The views take what they observe of the receipt from its note, not from its payload.
            let note: Note = Arc::new(ServedNote::new(ctx.device, ctx.daypart));
            if !self.receipt(subject, DECISION_SERVED, &slot.purpose, now, &body, Some(note)) {
                let refused = Err(Reason::ReceiptBacklog);
                let gate = Gate::NonPersonalized(Reason::ReceiptBacklog);
                return self.finish(subject, &gate, None, refused, ctx, fallback, slot_index, event);
            }
        }
        if let Some(r) = reason {
            *self.reasons.lock().expect("reasons lock").entry(r.as_str()).or_default() += 1;
        }
        self.count(slot, first, version_label.as_deref(), mode, |c| c.decisions += 1);
        self.records.insert(
            decision_id,
            Record {
                at: now,
                subject: personal_subject,
                slot: slot_index,
                version: version.as_ref().map(|v| v.0),
                mode,
                variant: self.shown(slot_index, &candidates, variants.first().map(|v| v.candidate), first),
                x: x.filter(|_| mode == Mode::Personalized),
                candidates: logged_candidates.map(Box::new),
                propensity,
                impressed: false,
                clicked: false,
                converted: false,
                reward: 0.0,
            },
        );
        let named = !matches!(gate, Gate::NonPersonalized(Reason::NoSubject));
        if let (Some(id), Some(e)) = (&event_id, event) {
            self.rank_events.insert(id, decision_id, named.then_some(subject), !e.deferred);
        }
        // An erasure marks the subject erased before it tells the stores to forget: one that told
        // the engine between this decision's consent gate and the inserts above is seen here, and
        // what they added of the subject goes too (R-ERASE-3).
        if named && (personal_subject.is_some() || event.is_some()) && self.collect.store.is_erased(&subject) {
            self.unlearn(&subject);
            self.rank_events.forget(&subject);
        }
        Decision {
            decision_id,
            slot: slot.id.clone(),
            mode,
            reason,
            model_version: version_label,
            explored,
            consent_record,
            candidates,
            variants,
        }
    }

    /// Records how long a decision of slot `slot_index` took.
    pub fn observe_latency(&self, slot_index: usize, took: std::time::Duration) {
        if let Some(l) = self.latency.get(slot_index) {
            l.observe(took);
        }
    }

    fn count(&self, slot: &Slot, variant: &str, version: Option<&str>, mode: Mode, f: impl FnOnce(&mut Counts)) {
        thread_local! {
            /// The key of the series being counted, its strings reused from one count to the next.
            static PROBE: std::cell::RefCell<CountKey> = const {
                std::cell::RefCell::new((String::new(), String::new(), String::new(), Mode::Fallback))
            };
        }
        PROBE.with_borrow_mut(|probe| {
            probe.0.clear();
            probe.0.push_str(&slot.id);
            probe.1.clear();
            probe.1.push_str(variant);
            probe.2.clear();
            probe.2.push_str(version.unwrap_or("-"));
            probe.3 = mode;
            let mut counts = self.counts.lock().expect("counts lock");
            // A series counted before needs no key of its own.
            if let Some(c) = counts.get_mut(probe) {
                return f(c);
            }
            let key = bounded_key(&counts, probe.clone());
            f(counts.entry(key).or_default());
        });
    }

    /// Queues a receipt for the log, with its `note` for the feature views ([`ServedNote`]). A
    /// decision's (or a recommendation list's) is refused when [`DEFAULT_RECEIPT_BACKLOG`] (or
    /// [`Engine::set_receipt_backlog`]) receipts are already in flight; an outcome's is always
    /// queued (outcomes are bounded by the decisions they follow). False: not queued.
    fn receipt(
        &self,
        subject: Pseudonym,
        event_type: &str,
        purpose: &Purpose,
        time: UtcMicros,
        body: &impl Serialize,
        note: Option<Note>,
    ) -> bool {
        let bounded = event_type != OUTCOME_RECORDED;
        let in_flight = self.receipts_in_flight.fetch_add(1, Ordering::AcqRel);
        if bounded && self.past_backlog(in_flight) {
            self.receipts_in_flight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let (_, event_type, retention) =
            self.receipt_kinds.iter().find(|(t, _, _)| *t == event_type).expect("a kind of receipt").clone();
        let event = NewEvent {
            event_type,
            schema_version: SchemaVersion::new(1).expect("valid"),
            purpose: purpose.clone(),
            time,
            retention,
            payload: {
                // Room for a decision's receipt that lists its candidates' ids (one that also logs
                // their features for off-policy evaluation grows it once more).
                let mut payload = Vec::with_capacity(RECEIPT_CAPACITY);
                serde_json::to_writer(&mut payload, body).expect("receipts serialize");
                payload
            },
        };
        let request = AppendRequest { subject, expected: lethe_domain::ExpectedVersion::Any, events: vec![event] };
        if self.receipts.send((request, note)).is_err() {
            self.receipts_in_flight.fetch_sub(1, Ordering::AcqRel);
            tracing::error!("the receipt writer stopped; a receipt was not logged");
            return false;
        }
        true
    }

    /// Queues the receipt of a personalized recommendation list for `subject`, refused like a
    /// decision's when the log is behind: the items, the recommender version and the consent
    /// record that allowed it, in the subject's stream (the lawful basis, as for a decision). The
    /// receipt's id, or `None`: the caller answers the non-personalized list instead.
    pub fn recommendations_receipt(
        &self,
        subject: Pseudonym,
        slot: &Slot,
        consent_record: Option<Uuid>,
        items: &[&str],
        model: Option<&str>,
    ) -> Option<Uuid> {
        let id = Uuid::new_v7(uuid::Timestamp::now(uuid::NoContext));
        let body = json!({"properties": {
            "decision": id, "slot": slot.id, "items": items, "model": model,
            "policy": {"mode": Mode::Personalized, "consent_record": consent_record, "purpose": slot.purpose},
        }});
        self.receipt(subject, RECOMMENDATIONS_SERVED, &slot.purpose, UtcMicros::now(), &body, None).then_some(id)
    }

    /// Whether decisions are refused a receipt now (the log is behind): personalizing would be
    /// wasted work.
    pub fn receipts_backlogged(&self) -> bool {
        self.past_backlog(self.receipts_in_flight.load(Ordering::Acquire))
    }

    /// Decision receipts queued or appended and not yet durable.
    pub fn receipts_in_flight(&self) -> usize {
        self.receipts_in_flight.load(Ordering::Acquire)
    }

    /// Whether `in_flight` receipts leave no room for a decision's.
    fn past_backlog(&self, in_flight: usize) -> bool {
        in_flight >= self.receipt_backlog.load(Ordering::Relaxed)
    }

    /// Sets how many decision receipts may be in flight at once (`lethe serve --receipt-backlog`;
    /// tests set 0 to stand for a log that is behind).
    pub fn set_receipt_backlog(&self, limit: usize) {
        self.receipt_backlog.store(limit, Ordering::Relaxed);
    }

    /// Records an outcome of a decision: counters, the model's online update (personalized
    /// decisions only), a receipt in the subject's stream, and the canary rule.
    ///
    /// # Errors
    /// Unknown decision.
    pub fn outcome(
        &self,
        decision: Uuid,
        kind: OutcomeKind,
        value: Option<f64>,
    ) -> Result<OutcomeReceipt, DecideError> {
        let now = UtcMicros::now();
        let (rec, update, first_conversion) =
            self.mark(decision, kind, value).ok_or(DecideError::UnknownDecision(decision))?;
        let recorded = update.is_some() || first_conversion;
        let slot = &self.slots.all()[rec.slot];
        // Consent is read again: a subject who withdrew, opted out or sent GPC since the decision
        // teaches the models nothing more and gets no outcome receipt under the purpose; the
        // anonymous counters still count the outcome (R-CONSENT-2).
        let allowed = rec.subject.is_none_or(|s| self.consent_gate(&s, slot, false).is_ok());
        let version_label = rec.version.map(|id| self.version_label(rec.slot, id));
        let first_click = matches!(update, Some((_, r)) if r > 0.0);
        let first_impression = update.is_some() && !matches!(update, Some((Some(_), _)));
        self.count(slot, self.shown_id(rec.slot, &rec.variant), version_label.as_deref(), rec.mode, |c| {
            if first_impression {
                c.impressions += 1;
            }
            if first_click {
                c.clicks += 1;
            }
            if first_conversion {
                c.conversions += 1;
                c.value += value.unwrap_or(0.0);
            }
        });
        if allowed {
            self.learn_from(decision, &rec, update);
        }
        // Read again after learning: a withdrawal recorded meanwhile found nothing of this outcome
        // to unlearn (the book records before it tells its listeners, so one side sees the other).
        let refused = rec.subject.is_some_and(|s| !allowed || self.consent_gate(&s, slot, false).is_err());
        if let Some(subject) = rec.subject.as_ref().filter(|_| refused) {
            self.unlearn_slots(subject, &[rec.slot]);
        }
        // A repeated report records nothing, and leaves no receipt.
        if let Some(subject) = rec.subject.filter(|_| !refused && recorded) {
            let body = json!({
                "properties": {
                    "decision": decision,
                    "slot": slot.id,
                    "variant": self.shown_id(rec.slot, &rec.variant),
                    "outcome": kind,
                    "value": value,
                }
            });
            self.receipt(subject, OUTCOME_RECORDED, &slot.purpose, now, &body, None);
        }
        // The outcome is recorded whatever the canary rule concludes: a rule that cannot judge (or
        // a canary another outcome ended meanwhile) is logged, not answered as a failed outcome.
        let canary = match rec.version {
            Some(v) if self.is_canary(rec.slot, v) => self.judge(rec.slot).unwrap_or_else(|e| {
                tracing::warn!(error = %e, slot = %slot.id, "the canary rule could not judge this outcome");
                None
            }),
            _ => None,
        };
        let learned = update.filter(|_| !refused && rec.x.is_some() && rec.version.is_some()).map(|(_, r)| r);
        Ok(OutcomeReceipt { decision_id: decision, recorded, learned, canary })
    }

    /// How a record keeps the variant `id` shown first, the candidate `index` of `candidates`
    /// (`None`: no variant).
    fn shown(&self, slot: usize, candidates: &Candidates, index: Option<usize>, id: &str) -> Shown {
        match index.and_then(|i| u32::try_from(i).ok()) {
            Some(i) if Arc::ptr_eq(candidates, &self.declared[slot]) => Shown::Declared(i),
            _ => self.shown_by_id(slot, id),
        }
    }

    /// How a record keeps the variant `id` (read from a receipt): by its index when it is one of
    /// the slot's own.
    fn shown_by_id(&self, slot: usize, id: &str) -> Shown {
        match self.declared[slot].iter().position(|c| c.id == id).and_then(|i| u32::try_from(i).ok()) {
            Some(i) => Shown::Declared(i),
            None => Shown::Sent(id.into()),
        }
    }

    /// The id of the variant a record of `slot` keeps.
    fn shown_id<'a>(&'a self, slot: usize, shown: &'a Shown) -> &'a str {
        match shown {
            Shown::Declared(i) => self.declared[slot].get(*i as usize).map_or("", |c| c.id.as_str()),
            Shown::Sent(id) => id,
        }
    }

    fn version_label(&self, slot: usize, id: ModelId) -> String {
        self.state[slot].read().expect("slot lock").version(id).map_or_else(|| id.to_string(), Version::label)
    }

    fn is_canary(&self, slot: usize, id: ModelId) -> bool {
        self.state[slot].read().expect("slot lock").canary.as_ref().is_some_and(|(v, _)| v.id == id)
    }

    fn learn(&self, slot: usize, version: ModelId, x: &[f64; D], previous: Option<f64>, reward: f64) {
        if let Some(m) =
            self.state[slot].write().expect("slot lock").version_mut(version).map(|v| Arc::make_mut(&mut v.model))
        {
            if let Some(p) = previous {
                let _ = m.remove(x, p);
            }
            if let Err(e) = m.update(x, reward) {
                tracing::warn!(error = %e, "an outcome could not update the model");
            }
        }
    }

    /// CTR of the live and canary versions of a slot, and the rule's verdict; applies it.
    ///
    /// # Errors
    /// Registry errors while applying a verdict.
    pub fn judge(&self, slot: usize) -> Result<Option<Value>, DecideError> {
        let (live, canary) = {
            let s = self.state[slot].read().expect("slot lock");
            let Some((c, _)) = &s.canary else { return Ok(None) };
            (s.live.label(), c.label())
        };
        let arm = |label: &str| {
            let counts = self.counts.lock().expect("counts lock");
            let (mut imp, mut clk) = (0, 0);
            for ((s, _, v, m), c) in counts.iter() {
                if s == &self.slots.all()[slot].id && v == label && *m == Mode::Personalized {
                    imp += c.impressions;
                    clk += c.clicks;
                }
            }
            // Counters restart at zero while replayed decisions keep their impressions: a click on
            // one of them counts without its impression. Never more clicks than impressions.
            lethe_bandit::Arm { impressions: imp, clicks: clk.min(imp) }
        };
        let rule = *self.canary_rule.read().expect("rule lock");
        let verdict = lethe_bandit::judge(&rule, arm(&live), arm(&canary)).map_err(registry_error)?;
        let value = serde_json::to_value(verdict).unwrap_or(Value::Null);
        match verdict {
            lethe_bandit::Verdict::Promote { .. } => {
                self.promote(slot, "canary_rule", Some(value.clone()))?;
            }
            lethe_bandit::Verdict::Rollback { .. } => {
                self.rollback(slot, "canary_rule", Some(value.clone()))?;
            }
            lethe_bandit::Verdict::Wait { .. } => return Ok(None),
        }
        Ok(Some(value))
    }

    /// Registers a new policy version of a slot and starts it as a canary on `share_permille` of
    /// the subjects (a previous canary is rolled back first). Audited.
    ///
    /// # Errors
    /// Bad parameters, registry errors.
    pub fn start_canary(
        &self,
        slot: usize,
        params: PolicyParams,
        share_permille: u16,
        actor: &str,
    ) -> Result<Value, DecideError> {
        params.check_new()?;
        if !(1..=1000).contains(&share_permille) {
            return Err(DecideError::BadParams("share_permille is 1..=1000".into()));
        }
        let s = &self.slots.all()[slot];
        let engagement = match params.engagement_id() {
            Some(id) => Some(
                resolve_engagement(&self.personalizer, &s.id, id)
                    .and_then(|m| m.ok_or_else(|| format!("engagement model {id} was unlearned and not replaced")))
                    .map_err(|why| DecideError::BadParams(format!("policy: {why}")))?,
            ),
            None => None,
        };
        if self.state[slot].read().expect("slot lock").canary.is_some() {
            self.rollback(slot, actor, Some(json!({"replaced_by_new_canary": true})))?;
        }
        let name = ModelName::parse(&s.model_name()).map_err(registry_error)?;
        let (id, number) = register(&self.personalizer, &name, &params, "canary", self.collect.store.head().0)?;
        self.personalizer
            .registry()
            .set_status(id, Status::Canary { share_permille }, UtcMicros::now())
            .map_err(registry_error)?;
        if let Some((e, _)) = &engagement {
            // The engagement model serves as a canary too, unless it already serves.
            if self
                .personalizer
                .registry()
                .get(*e)
                .map_err(registry_error)?
                .is_some_and(|v| v.status == Status::Candidate)
            {
                self.personalizer
                    .registry()
                    .set_status(*e, Status::Canary { share_permille }, UtcMicros::now())
                    .map_err(registry_error)?;
            }
        }
        let version = Version::new(id, number, params.clone(), engagement)?;
        let label = version.label();
        self.state[slot].write().expect("slot lock").canary = Some((version, share_permille));
        let detail = json!({"action": "canary_started", "slot": s.id, "version": label, "share_permille": share_permille, "params": params});
        self.audit(actor, detail.clone());
        Ok(detail)
    }

    /// Makes the canary live (the live version retires, superseded). Audited.
    ///
    /// # Errors
    /// No canary; registry errors.
    pub fn promote(&self, slot: usize, actor: &str, evidence: Option<Value>) -> Result<Value, DecideError> {
        self.end_canary(slot, actor, evidence, true)
    }

    /// Takes the canary out of service (retired, rolled back). Audited.
    ///
    /// # Errors
    /// No canary; registry errors.
    pub fn rollback(&self, slot: usize, actor: &str, evidence: Option<Value>) -> Result<Value, DecideError> {
        self.end_canary(slot, actor, evidence, false)
    }

    fn end_canary(
        &self,
        slot: usize,
        actor: &str,
        evidence: Option<Value>,
        promote: bool,
    ) -> Result<Value, DecideError> {
        let s = &self.slots.all()[slot];
        let mut state = self.state[slot].write().expect("slot lock");
        let Some((canary, share)) = state.canary.take() else {
            return Err(DecideError::Conflict(format!("slot `{}` has no canary", s.id)));
        };
        let registry = self.personalizer.registry();
        let now = UtcMicros::now();
        let changed = if promote {
            registry.set_status(canary.id, Status::Live, now)
        } else {
            registry.retire(canary.id, RetireReason::RolledBack, now)
        };
        if let Err(e) = changed {
            let label = canary.label();
            state.canary = Some((canary, share));
            return Err(registry_error(format!("{label}: {e}")));
        }
        let engagement = canary.model.engagement().filter(|e| Some(*e) != state.live.model.engagement());
        let (action, retired) = if promote {
            ("canary_promoted", std::mem::replace(&mut state.live, canary).label())
        } else {
            ("canary_rolled_back", canary.label())
        };
        // The canary's engagement model follows it: live with it, or out of service with it.
        if let Some(e) = engagement {
            let changed = if promote {
                registry.set_status(e, Status::Live, now)
            } else {
                registry.retire(e, RetireReason::RolledBack, now)
            };
            if let Err(err) = changed {
                tracing::warn!(engagement = %e, error = %err, "the canary's engagement model kept its status");
            }
        }
        let detail = json!({"action": action, "slot": s.id, "live": state.live.label(), "retired": retired, "evidence": evidence});
        drop(state);
        self.audit(actor, detail.clone());
        Ok(detail)
    }

    fn audit(&self, actor: &str, detail: Value) {
        if let Err(e) = self.privacy.audit(AuditKind::PolicyChange, actor, None, detail) {
            tracing::error!(code = e.code, "a model version change could not be audited");
        }
    }

    /// The slot's versions and their measured figures.
    pub fn versions(&self, slot: usize) -> Value {
        let s = &self.slots.all()[slot];
        let state = self.state[slot].read().expect("slot lock");
        let figures = |label: &str| {
            let counts = self.counts.lock().expect("counts lock");
            let mut total = Counts::default();
            for ((sl, _, v, _), c) in counts.iter() {
                if sl == &s.id && v == label {
                    total.decisions += c.decisions;
                    total.impressions += c.impressions;
                    total.clicks += c.clicks;
                    total.conversions += c.conversions;
                    total.value += c.value;
                }
            }
            json!({"counts": total, "ctr": ratio(total.clicks, total.impressions)})
        };
        json!({
            "slot": s.id,
            "live": {"version": state.live.label(), "params": state.live.params, "engagement": state.live.model.engagement().map(|e| e.to_string()), "observations": state.live.model.observations(), "figures": figures(&state.live.label())},
            "canary": state.canary.as_ref().map(|(v, share)| json!({"version": v.label(), "share_permille": share, "params": v.params, "engagement": v.model.engagement().map(|e| e.to_string()), "observations": v.model.observations(), "figures": figures(&v.label())})),
        })
    }

    /// Counters per slot, variant, version and mode, with CTR and conversion rate.
    pub fn stats(&self) -> Vec<Value> {
        self.counts
            .lock()
            .expect("counts lock")
            .iter()
            .map(|((slot, variant, version, mode), c)| {
                json!({
                    "slot": slot, "variant": variant, "model_version": version, "mode": mode,
                    "decisions": c.decisions, "impressions": c.impressions, "clicks": c.clicks,
                    "conversions": c.conversions, "value": c.value,
                    "ctr": ratio(c.clicks, c.impressions), "conversion_rate": ratio(c.conversions, c.impressions),
                })
            })
            .collect()
    }

    /// Prometheus lines.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        {
            let counts = self.counts.lock().expect("counts lock");
            type Read = fn(&Counts) -> u64;
            let series: [(&str, Read); 4] = [
                ("lethe_decisions_total", |c| c.decisions),
                ("lethe_decision_impressions_total", |c| c.impressions),
                ("lethe_decision_clicks_total", |c| c.clicks),
                ("lethe_decision_conversions_total", |c| c.conversions),
            ];
            let labelled: Vec<(String, &Counts)> = counts
                .iter()
                .map(|((slot, variant, version, mode), c)| {
                    let mode =
                        serde_json::to_value(mode).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                    let (slot, variant, version) = (label(slot), label(variant), label(version));
                    (format!("slot=\"{slot}\",variant=\"{variant}\",model_version=\"{version}\",mode=\"{mode}\""), c)
                })
                .collect();
            // Each metric's samples together, after its TYPE line (the text format's rule).
            for (name, value) in series {
                out.push_str(&format!("# TYPE {name} counter\n"));
                for (labels, c) in &labelled {
                    out.push_str(&format!("{name}{{{labels}}} {}\n", value(c)));
                }
            }
        }
        out.push_str("# TYPE lethe_decision_reasons_total counter\n");
        for (reason, n) in self.reasons.lock().expect("reasons lock").iter() {
            out.push_str(&format!("lethe_decision_reasons_total{{reason=\"{reason}\"}} {n}\n"));
        }
        out.push_str("# HELP lethe_decide_duration_seconds Time from a decision request's arrival in the engine to its answer.\n");
        out.push_str("# TYPE lethe_decide_duration_seconds histogram\n");
        for (slot, latency) in self.slots.all().iter().zip(&self.latency) {
            latency.render("lethe_decide_duration_seconds", &format!("slot=\"{}\"", slot.id), &mut out);
        }
        let in_flight = self.receipts_in_flight.load(Ordering::Relaxed);
        out.push_str(&format!(
            "# TYPE lethe_decision_receipts_in_flight gauge\nlethe_decision_receipts_in_flight {in_flight}\n"
        ));
        out.push_str(&format!(
            "# HELP lethe_decision_receipt_backlog_limit Receipts in flight past which decisions fall back.\n\
             # TYPE lethe_decision_receipt_backlog_limit gauge\nlethe_decision_receipt_backlog_limit {}\n",
            self.receipt_backlog.load(Ordering::Relaxed)
        ));
        let (pending, evicted) = self.records.stats();
        out.push_str(&format!("# TYPE lethe_decisions_pending gauge\nlethe_decisions_pending {pending}\n"));
        out.push_str(&format!(
            "# HELP lethe_decisions_pending_limit Most decisions held for their outcomes.\n\
             # TYPE lethe_decisions_pending_limit gauge\nlethe_decisions_pending_limit {}\n",
            self.records.capacity()
        ));
        out.push_str(&format!(
            "# TYPE lethe_decisions_evicted_total counter\nlethe_decisions_evicted_total {evicted}\n"
        ));
        out
    }

    /// Drops decisions past their attribution window (their learning contributions stay, for
    /// exact unlearning).
    pub fn expire(&self, now: UtcMicros) -> usize {
        let window = i64::try_from(ATTRIBUTION_WINDOW.as_micros()).unwrap_or(i64::MAX);
        let expired = self.records.retain(|r| r.at.0.saturating_add(window) > now.0);
        if !self.rank_events.is_empty() {
            // A Rank event goes with its decision: a reward for it would find nothing to record.
            // Decision ids are UUIDv7, made when the decision was: their time says whether the
            // decision is past the window, without touching the records under the events' lock.
            let cutoff = now.0.saturating_sub(window);
            self.rank_events.retain_decisions(|id| decided_at(id).is_none_or(|at| at > cutoff));
        }
        expired
    }

    /// How many updates of the subject the models hold (R-ERASE-7 tests read this).
    pub fn contributions_of(&self, subject: &Pseudonym) -> usize {
        self.contributions.lock().expect("contributions lock").get(subject).map_or(0, Vec::len)
    }

    /// The live model's expected reward of `x` (tests compare before and after unlearning).
    pub fn live_expected(&self, slot: usize, x: &[f64; D]) -> f64 {
        self.state[slot].read().expect("slot lock").live.model.expected(x).unwrap_or(f64::NAN)
    }

    /// Removes everything the engine holds of a subject: its pending decisions, and its outcomes
    /// from every model, exactly (R-ERASE-7: a linear model's update is subtracted).
    fn unlearn(&self, subject: &Pseudonym) -> bool {
        let list = self.contributions.lock().expect("contributions lock").remove(subject).unwrap_or_default();
        self.subtract(&list);
        let removed = self.records.retain(|r| r.subject.as_ref() != Some(subject));
        !list.is_empty() || removed > 0
    }

    /// Removes the subject's outcomes from the models of `slots` only, exactly; its pending
    /// decisions of those slots can no longer teach them.
    fn unlearn_slots(&self, subject: &Pseudonym, slots: &[usize]) {
        let taken = {
            let mut all = self.contributions.lock().expect("contributions lock");
            let Some(list) = all.get_mut(subject) else { return };
            let (taken, kept): (Vec<_>, Vec<_>) =
                std::mem::take(list).into_iter().partition(|c| slots.contains(&c.slot));
            *list = kept;
            if list.is_empty() {
                all.remove(subject);
            }
            taken
        };
        self.subtract(&taken);
    }

    /// Subtracts contributions, already taken from the kept list, from the versions they updated.
    fn subtract(&self, contributions: &[Contribution]) {
        for c in contributions {
            if let Some(v) = self.state[c.slot].write().expect("slot lock").version_mut(c.version) {
                let _ = Arc::make_mut(&mut v.model).remove(&c.x, c.reward);
            }
        }
    }

    /// Rebuilds pending decisions and online learning from the receipts in the log (only of
    /// subjects whose consent still allows the slot's purpose).
    fn replay(&self) {
        let Logged { served, outcomes } = read_receipts(self.collect.store.as_ref());
        let mut events = Vec::new();
        for Served { decision: id, subject, at, properties: p } in served {
            let Some(slot) = p["slot"].as_str().and_then(|s| self.slots.index_of(s)) else { continue };
            // The consent that holds now, as for a live decision: GPC and opt-outs included.
            if self.consent_gate(&subject, &self.slots.all()[slot], false).is_err() {
                continue;
            }
            let version = p["model"].as_str().and_then(|m| m.split('#').next()).and_then(|s| s.parse::<ModelId>().ok());
            let x: Option<[f64; D]> = serde_json::from_value(p["policy"]["features"].clone()).ok();
            let variant = p["variant"].as_str().unwrap_or_default();
            let xs: Option<Vec<[f64; D]>> = serde_json::from_value(p["policy"]["candidate_features"].clone()).ok();
            let chosen =
                p["policy"]["candidates"].as_array().and_then(|c| c.iter().position(|id| id.as_str() == Some(variant)));
            let candidates = xs.zip(chosen).filter(|(xs, chosen)| *chosen < xs.len()).map(Box::new);
            let mode = serde_json::from_value(p["policy"]["mode"].clone()).unwrap_or(Mode::Personalized);
            if let Some(event) = p["event"]["id"].as_str() {
                events.push((event.to_owned(), id, subject, p["event"]["deferred"].as_bool().unwrap_or(false)));
            }
            self.records.insert(
                id,
                Record {
                    at,
                    subject: Some(subject),
                    slot,
                    version,
                    mode,
                    variant: self.shown_by_id(slot, variant),
                    x,
                    candidates,
                    propensity: p["policy"]["propensity"].as_f64().unwrap_or(1.0),
                    impressed: false,
                    clicked: false,
                    converted: false,
                    reward: 0.0,
                },
            );
        }
        for (id, kind, value) in outcomes {
            self.replay_outcome(id, kind, value);
        }
        let now = UtcMicros::now();
        self.expire(now);
        // The Rank events of the decisions still held, oldest first: a deferred one is active once
        // its impression was recorded (by `/activate`). A reward held for an event not yet
        // activated was in memory only, and is not rebuilt.
        for (event, id, subject, deferred) in events {
            let impressed = self.records.shard(&id).get(&id.as_u128()).map(|r| r.impressed);
            if let Some(impressed) = impressed {
                self.rank_events.insert(&event, id, Some(subject), !deferred || impressed);
            }
        }
    }

    fn replay_outcome(&self, decision: Uuid, kind: OutcomeKind, value: Option<f64>) {
        if let Some((rec, update, _)) = self.mark(decision, kind, value) {
            self.learn_from(decision, &rec, update);
        }
    }

    /// Marks an outcome on a decision's record, once per decision and kind: the record as it is
    /// now, the update the outcome makes (whether an impression was reported before it, as
    /// `Some(0.0)`, and the reward to learn), and whether it is the decision's first conversion. A click, a conversion or a reward (`value`) is
    /// learned once per decision, the first of them.
    #[allow(clippy::type_complexity)]
    fn mark(
        &self,
        decision: Uuid,
        kind: OutcomeKind,
        value: Option<f64>,
    ) -> Option<(Record, Option<(Option<f64>, f64)>, bool)> {
        let mut records = self.records.shard(&decision);
        let rec = records.get_mut(&decision.as_u128())?;
        let first_conversion = kind == OutcomeKind::Conversion && !rec.converted;
        rec.converted |= first_conversion;
        let update = match kind {
            OutcomeKind::Impression if !rec.impressed && !rec.clicked => {
                rec.impressed = true;
                Some((None, 0.0))
            }
            OutcomeKind::Click | OutcomeKind::Conversion | OutcomeKind::Reward if !rec.clicked => {
                let previous = rec.impressed.then_some(0.0);
                rec.impressed = true;
                rec.clicked = true;
                let reward = match kind {
                    OutcomeKind::Reward => value.unwrap_or(0.0).clamp(MIN_REWARD, MAX_REWARD),
                    _ => 1.0,
                };
                rec.reward = reward;
                Some((previous, reward))
            }
            _ => None,
        };
        Some((rec.clone(), update, first_conversion))
    }

    /// Applies an outcome's model change to the version that decided (personalized decisions
    /// only) and keeps it per subject for exact unlearning.
    fn learn_from(&self, decision: Uuid, rec: &Record, update: Option<(Option<f64>, f64)>) {
        let (Some(subject), Some(x), Some(version), Some((_, reward))) = (rec.subject, rec.x, rec.version, update)
        else {
            return;
        };
        // What the model holds of this decision is its kept contribution, if any: not what the
        // record says was reported (an unlearned or refused impression is not in the model).
        let previous = {
            let mut all = self.contributions.lock().expect("contributions lock");
            let list = all.entry(subject).or_default();
            let previous = list.iter().position(|c| c.decision == decision).map(|i| list.remove(i).reward);
            list.push(Contribution { slot: rec.slot, version, x, reward, decision });
            previous
        };
        self.learn(rec.slot, version, &x, previous, reward);
    }

    /// The logged personalized decisions of a slot that had an impression, with every candidate's
    /// features: (candidates, chosen, reward, propensity), for off-policy evaluation.
    pub fn logged(&self, slot: usize) -> Vec<(Vec<[f64; D]>, usize, f64, f64)> {
        let mut out = Vec::new();
        self.records.for_each(|_, r| {
            if r.slot == slot && r.impressed && r.mode == Mode::Personalized {
                if let Some((xs, chosen)) = r.candidates.as_deref().cloned() {
                    out.push((xs, chosen, r.reward, r.propensity));
                }
            }
        });
        out
    }

    /// The live version's model of a slot.
    pub fn live_model(&self, slot: usize) -> Model {
        self.state[slot].read().expect("slot lock").live.model.as_ref().clone()
    }

    /// The collector state (consent book, store, policies).
    pub fn collect(&self) -> &CollectState {
        &self.collect
    }

    /// The feature views.
    pub fn views(&self) -> &Arc<Views> {
        &self.views
    }

    /// The trainer and registry.
    pub fn personalizer(&self) -> &Arc<Personalizer> {
        &self.personalizer
    }

    /// The privacy service (audit trail).
    pub fn privacy(&self) -> &Arc<Privacy> {
        &self.privacy
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    (b > 0).then(|| a as f64 / b as f64)
}

/// The counters' key: slot, variant, model version label, mode.
type CountKey = (String, String, String, Mode);

/// Most counter series kept: the variants of an open slot are the caller's candidate ids, and a
/// caller sending new ones every time must not grow memory or `/metrics` without bound.
pub const MAX_COUNTED_SERIES: usize = 10_000;

/// The variant label that counts the variants past [`MAX_COUNTED_SERIES`].
pub const OTHER_VARIANT: &str = "(other)";

/// `key`, or once [`MAX_COUNTED_SERIES`] series exist and `key` is not one of them, the same key
/// with its variant counted as [`OTHER_VARIANT`].
fn bounded_key(counts: &BTreeMap<CountKey, Counts>, mut key: CountKey) -> CountKey {
    if counts.len() >= MAX_COUNTED_SERIES && !counts.contains_key(&key) {
        key.1 = OTHER_VARIANT.to_owned();
    }
    key
}

/// A Prometheus label value: backslash, double quote and newline escaped (the text format's rule).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, s)| if *s > v[best] { i } else { best })
}

/// The categories of a list of candidates: each candidate's index among the distinct ones (`of`;
/// no category is one too), and how many there are. Made once per slot for its declared variants,
/// so that a decision compares no names; for the candidates a request sent, once for the request.
#[derive(Debug)]
struct CategoryGroups {
    count: usize,
    of: Vec<usize>,
}

impl CategoryGroups {
    fn of(candidates: &[Candidate]) -> Self {
        let mut firsts: Vec<usize> = Vec::new();
        let of = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let name = c.category.as_deref();
                firsts.iter().position(|f| candidates[*f].category.as_deref() == name).unwrap_or_else(|| {
                    firsts.push(i);
                    firsts.len() - 1
                })
            })
            .collect();
        Self { count: firsts.len(), of }
    }
}

/// The feature vectors of `candidates` (grouped by category in `groups`) for a subject's `profile`
/// in `ctx` (`default`: the index of the slot's default). Each category is resolved, and its vector
/// made, once, for its first candidate other than the default; the default's differs by its flag
/// and is made apart.
fn candidate_vectors(
    candidates: &[Candidate],
    groups: &CategoryGroups,
    default: usize,
    category_id: impl Fn(&str) -> Option<lethe_features::CategoryId>,
    profile: &features::Profile,
    ctx: &Context,
) -> Vec<[f64; D]> {
    let vector = |i: usize, flagged: bool| {
        features::vector_of(profile, ctx, candidates[i].category.as_deref().and_then(&category_id), flagged)
    };
    let mut made: Vec<Option<[f64; D]>> = vec![None; groups.count];
    let mut each = |i: usize| {
        if i == default {
            return vector(i, true);
        }
        *made[groups.of[i]].get_or_insert_with(|| vector(i, false))
    };
    (0..candidates.len()).map(&mut each).collect()
}

/// The default first, then the other candidates in order, `count` of them.
fn fixed(c: &[Candidate], default: usize, count: usize) -> Vec<Chosen> {
    let mut order: Vec<usize> = (0..c.len()).filter(|i| *i != default).collect();
    order.insert(0, default.min(c.len().saturating_sub(1)));
    order
        .into_iter()
        .take(count.max(1))
        .enumerate()
        .map(|(rank, i)| Chosen {
            candidate: i,
            score: 0.0,
            propensity: 1.0,
            probability: if rank == 0 { 1.0 } else { 0.0 },
        })
        .collect()
}

/// A subject's stable bucket (per mille) for a canary version.
fn canary_bucket(subject: &Pseudonym, version: ModelId) -> u16 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(subject.to_hex().as_bytes());
    h.update(version.to_string().as_bytes());
    let d = h.finalize();
    u16::from_be_bytes([d[0], d[1]]) % 1000
}

fn canary_rule(s: &CanarySettings) -> CanaryRule {
    CanaryRule { min_impressions: s.min_impressions, max_relative_drop: s.max_relative_drop, z: s.z }
}

fn register(
    personalizer: &Personalizer,
    name: &ModelName,
    params: &PolicyParams,
    why: &str,
    log_position: u64,
) -> Result<(ModelId, u32), DecideError> {
    let now = UtcMicros::now();
    let new = NewModel {
        name: name.clone(),
        algorithm: "linucb-egreedy".into(),
        manifest: Manifest {
            data_window: (now, now),
            log_position,
            subjects: 0,
            membership: Membership::new(std::iter::empty()),
            features: features::NAMES.iter().map(|s| (*s).to_owned()).collect(),
            hyperparameters: json!({"params": params, "learning": "online, from outcomes of consented decisions", "registered_as": why}),
            metrics: BTreeMap::new(),
            code_version: env!("CARGO_PKG_VERSION").into(),
            shards: Vec::new(),
        },
        metrics: BTreeMap::new(),
    };
    let blob = serde_json::to_vec(params).expect("params serialize");
    let v = personalizer.register_model(new, &blob).map_err(registry_error)?;
    Ok((v.id, v.version))
}

fn load_version(personalizer: &Personalizer, slot: &str, id: ModelId, number: u32) -> Result<Version, DecideError> {
    let bytes = personalizer.load_model(id).map_err(registry_error)?;
    let params: PolicyParams = serde_json::from_slice(&bytes).map_err(registry_error)?;
    let engagement = params.engagement_id().and_then(|e| {
        resolve_engagement(personalizer, slot, e).unwrap_or_else(|why| {
            // The version still serves, on its prior: a start never fails for a lost model.
            tracing::warn!(slot, version = %id, %why, "a policy version's engagement model cannot be loaded");
            None
        })
    });
    Version::new(id, number, params, engagement)
}

/// The registry name of a slot's engagement models.
pub fn engagement_name(slot: &str) -> String {
    format!("engagement-{slot}")
}

/// Loads the engagement model `id` of `slot`, following unlearning to the version that replaced
/// it (its manifest's `replaces`). `None` when unlearning retired it and nothing replaced it.
///
/// # Errors
/// An unknown model, another slot's, one retired for another reason, or bytes that do not load.
pub(crate) fn resolve_engagement(
    personalizer: &Personalizer,
    slot: &str,
    mut id: ModelId,
) -> Result<Option<(ModelId, Arc<TrainedModel>)>, String> {
    let registry = personalizer.registry();
    for _ in 0..64 {
        let v = registry.get(id).map_err(|e| e.to_string())?.ok_or_else(|| format!("no model {id}"))?;
        if v.name.as_str() != engagement_name(slot) {
            return Err(format!("model {id} is `{}`, not slot `{slot}`'s engagement model", v.name.as_str()));
        }
        match v.status {
            Status::Retired { reason: RetireReason::Unlearning, .. } => {
                let key = id.to_string();
                let successor = registry.versions(&v.name).map_err(|e| e.to_string())?.into_iter().find(|w| {
                    w.manifest.hyperparameters["replaces"].as_array().is_some_and(|r| r.iter().any(|x| x == &key))
                });
                match successor {
                    Some(w) => id = w.id,
                    None => return Ok(None),
                }
            }
            Status::Retired { .. } => return Err(format!("engagement model {id} is retired")),
            _ => {
                let bytes = personalizer.load_model(id).map_err(|e| e.to_string())?;
                let model: TrainedModel = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                return Ok(Some((id, Arc::new(model))));
            }
        }
    }
    Err(format!("engagement model {id}: too many successors"))
}

/// A decision receipt read back from the log.
#[derive(Debug)]
pub(crate) struct Served {
    pub decision: Uuid,
    pub subject: Pseudonym,
    pub at: UtcMicros,
    /// The receipt's `properties`.
    pub properties: Value,
}

/// The readable receipts in the log: decisions, and outcomes in log order.
#[derive(Debug, Default)]
pub(crate) struct Logged {
    pub served: Vec<Served>,
    /// Each outcome's decision, kind and value.
    pub outcomes: Vec<(Uuid, OutcomeKind, Option<f64>)>,
}

/// Reads every decision receipt and outcome the log can still decrypt (an erased subject's are
/// shredded, and so left out).
pub(crate) fn read_receipts(store: &dyn EventStore) -> Logged {
    let mut logged = Logged::default();
    for e in store.read_all(lethe_domain::Position(0)).flatten() {
        let t = e.envelope.event_type.as_str();
        if t != DECISION_SERVED && t != OUTCOME_RECORDED {
            continue;
        }
        let lethe_domain::EventBody::Plain(bytes) = &e.body else { continue };
        let Ok(mut v) = serde_json::from_slice::<Value>(bytes) else { continue };
        let properties = v["properties"].take();
        let Some(decision) = properties["decision"].as_str().and_then(|s| Uuid::parse_str(s).ok()) else { continue };
        if t == DECISION_SERVED {
            logged.served.push(Served { decision, subject: e.envelope.subject, at: e.envelope.time, properties });
        } else if let Ok(k) = serde_json::from_value::<OutcomeKind>(properties["outcome"].clone()) {
            logged.outcomes.push((decision, k, properties["value"].as_f64()));
        }
    }
    logged
}

/// When a decision was made, in µs since the epoch, from its UUIDv7 id (`None`: not a v7 id).
fn decided_at(id: &Uuid) -> Option<i64> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    i64::try_from(secs).ok()?.checked_mul(1_000_000)?.checked_add(i64::from(nanos / 1_000))
}

/// The purpose a GPC signal or an opt-out refuses, parsed once.
static SALE_SHARE: std::sync::LazyLock<Purpose> =
    std::sync::LazyLock::new(|| Purpose::parse(lethe_collect::SALE_SHARE).expect("valid purpose"));

/// The payload of a `decision.served` receipt (schema version 1).
#[derive(Serialize)]
struct ServedReceipt<'a> {
    properties: ServedProperties<'a>,
    context: ReceiptContext<'a>,
}

#[derive(Serialize)]
struct ServedProperties<'a> {
    decision: Uuid,
    slot: &'a str,
    variant: &'a str,
    model: Option<&'a str>,
    /// The Personalizer event of a Rank call.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<ReceiptEvent<'a>>,
    policy: ServedPolicy<'a>,
}

#[derive(Serialize)]
struct ServedPolicy<'a> {
    mode: Mode,
    reason: Option<Reason>,
    propensity: f64,
    explored: bool,
    candidates: Ids<'a>,
    consent_record: Option<Uuid>,
    purpose: &'a Purpose,
    features: Option<&'a [f64; D]>,
    candidate_features: Option<&'a Vec<[f64; D]>>,
}

/// A Rank call's event, as its decision's receipt names it.
#[derive(Serialize)]
struct ReceiptEvent<'a> {
    id: &'a str,
    deferred: bool,
}

#[derive(Serialize)]
struct ReceiptContext<'a> {
    device_class: Option<&'a str>,
    daypart: &'a str,
}

/// The candidates' ids, as a JSON array: a slot's own, written once (`Engine::declared_ids`), or
/// those a request sent. (Receipts are JSON: a raw value is written as is only by `serde_json`.)
enum Ids<'a> {
    Declared(&'a serde_json::value::RawValue),
    Sent(&'a [Candidate]),
}

impl Serialize for Ids<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Declared(raw) => raw.serialize(serializer),
            Self::Sent(candidates) => serializer.collect_seq(candidates.iter().map(|c| c.id.as_str())),
        }
    }
}

/// Most variants past the first that [`shown_order`] places by insertion rather than selection.
const FEW_SHOWN: usize = 8;

/// What a decision shows: the drawn candidate `first`, then the best of the others by score (ties by
/// position), `count` in all (at least one). Only the first `count - 1` of the others are ordered.
fn shown_order(scores: &[f64], first: usize, count: usize) -> Vec<usize> {
    let by_score = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    let others = count.max(1) - 1;
    if others <= FEW_SHOWN {
        // A few to show: one pass keeps the best of those seen so far, in order (no list of every
        // candidate to select from).
        let mut order = Vec::with_capacity(others + 1);
        order.push(first);
        for i in (0..scores.len()).filter(|i| *i != first) {
            let at = 1 + order[1..].partition_point(|o| by_score(o, &i).is_lt());
            if at <= others {
                if order.len() > others {
                    order.pop();
                }
                order.insert(at, i);
            }
        }
        return order;
    }
    let mut order: Vec<usize> = (0..scores.len()).filter(|i| *i != first).collect();
    if others < order.len() {
        if others > 0 {
            order.select_nth_unstable_by(others - 1, by_score);
        }
        order.truncate(others);
    }
    order.sort_by(by_score);
    order.insert(0, first);
    order
}

/// The retention of a receipt of type `event_type`, from the policies (its fields' categories).
fn receipt_retention(policies: &lethe_policy::Policies, event_type: &str) -> Retention {
    let event_type = EventType::parse(event_type).expect("valid type");
    policies.retention_of_event(&event_type).map_or(Retention::UntilErased, |r| {
        Retention::Days(u16::try_from(r.days()).unwrap_or(lethe_domain::KeyId::MAX_RETENTION_DAYS))
    })
}

/// How long the receipt writer waits after handing over a batch. Receipts sent meanwhile queue on
/// the channel without waking anyone, so at 5,000 decisions/s the log receives about ten receipts
/// every 2 ms instead of one per decision. Each group commit costs the log a sled batch (two buffer
/// writes; the log's writer also lets a few hand-overs share one group, `LogConfig::defer_linger`),
/// so fewer, slightly larger ones keep the request threads' cores free;
/// much larger ones (5–10 ms) make the writer's bursts long enough to show in the decisions' tail.
const RECEIPT_TICK: std::time::Duration = std::time::Duration::from_millis(2);

/// Receipts handed to the log, counted out of the in-flight count when dropped.
struct InFlight(Arc<AtomicUsize>, usize);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::AcqRel);
    }
}

/// Writes decision and outcome receipts: whatever has queued, as one deferred append (the log may
/// wait [`lethe_eventlog::LogConfig::defer_linger`] for more, and hold its fsync for
/// [`lethe_eventlog::LogConfig::defer_window`]), then a pause of
/// [`RECEIPT_TICK`]. Nothing waits for a receipt, so nothing here waits for the log either.
fn write_receipts(
    store: &dyn EventStore,
    rx: &mpsc::Receiver<(AppendRequest, Option<Note>)>,
    in_flight: &Arc<AtomicUsize>,
) {
    while let Ok(first) = rx.recv() {
        let (mut batch, mut notes) = (vec![first.0], vec![first.1]);
        for (request, note) in rx.try_iter().take(4095) {
            batch.push(request);
            notes.push(note);
        }
        // Counted down when the log answers, or when it drops the callback unanswered (a writer
        // that died): a lost answer must not keep decisions from being personalized for good.
        let answered = InFlight(Arc::clone(in_flight), batch.len());
        store.append_batch_deferred_noted(
            batch,
            notes,
            Box::new(move |results| {
                let _answered = answered;
                for r in results {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "a decision receipt could not be logged");
                    }
                }
            }),
        );
        std::thread::sleep(RECEIPT_TICK);
    }
}

impl Engine {
    /// Gives the versions of `slot` that serve one of the engagement models `old` the engagement
    /// model `new` (or the prior, when `None`), and rebuilds their online models on the new base
    /// from the contributions they learned, so that later unlearning stays exact. Returns how many
    /// versions changed.
    fn rebase(&self, slot: usize, old: &[ModelId], new: Option<(ModelId, Arc<TrainedModel>)>) -> usize {
        let mut state = self.state[slot].write().expect("slot lock");
        let SlotState { live, canary } = &mut *state;
        let mut changed = 0;
        for v in std::iter::once(live).chain(canary.as_mut().map(|(v, _)| v)) {
            if !v.model.engagement().is_some_and(|e| old.contains(&e)) {
                continue;
            }
            let Ok(fresh) = Model::new(&v.params) else { continue };
            let mut model = fresh.with_engagement(new.clone());
            let all = self.contributions.lock().expect("contributions lock");
            for c in all.values().flatten().filter(|c| c.slot == slot && c.version == v.id) {
                let _ = model.update(&c.x, c.reward);
            }
            v.model = Arc::new(model);
            changed += 1;
        }
        changed
    }
}

impl Unlearner for Engine {
    fn owns(&self, name: &ModelName) -> bool {
        self.slots.all().iter().any(|s| name.as_str() == engagement_name(&s.id))
    }

    /// Retrains the slot's engagement model on the receipts that remain (an erased subject's are
    /// shredded, a withdrawn subject's consent no longer allows them), retires the old versions,
    /// gives the successor the status they had, and swaps it into every policy version that served
    /// them. With too little data left there is no successor: those versions serve on their prior.
    fn retrain_without(&self, name: &ModelName, ids: &[ModelId]) -> Result<Value, String> {
        let slot = self
            .slots
            .all()
            .iter()
            .position(|s| name.as_str() == engagement_name(&s.id))
            .ok_or_else(|| format!("`{}` is no slot's engagement model", name.as_str()))?;
        let slot_id = self.slots.all()[slot].id.clone();
        let registry = self.personalizer.registry();
        let mut serving = None;
        for id in ids {
            match registry.get(*id).map_err(|e| e.to_string())?.map(|v| v.status) {
                Some(Status::Live) => serving = Some(Status::Live),
                Some(s @ Status::Canary { .. }) if serving.is_none() => serving = Some(s),
                _ => {}
            }
        }
        let trained = crate::train::train_engagement_replacing(self, &slot_id, "system", ids);
        let now = UtcMicros::now();
        for id in ids {
            if registry
                .get(*id)
                .map_err(|e| e.to_string())?
                .is_some_and(|v| !matches!(v.status, Status::Retired { .. }))
            {
                registry.retire(*id, RetireReason::Unlearning, now).map_err(|e| e.to_string())?;
            }
        }
        let successor = trained.as_ref().ok().and_then(|r| r.model_id.parse::<ModelId>().ok());
        if let (Some(new), Some(status)) = (successor, serving) {
            if let Err(e) = registry.set_status(new, status, now) {
                tracing::warn!(engagement = %new, error = %e, "the retrained engagement model stays a candidate");
            }
        }
        let model = successor.and_then(|id| resolve_engagement(&self.personalizer, &slot_id, id).ok().flatten());
        let rebased = self.rebase(slot, ids, model);
        let detail = json!({
            "action": "engagement_unlearned",
            "slot": slot_id,
            "retired": ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "successor": successor.map(|s| s.to_string()),
            "not_retrained_because": trained.as_ref().err().map(ToString::to_string),
            "policy_versions_rebased": rebased,
        });
        self.audit("system", detail.clone());
        Ok(detail)
    }
}

impl ErasureHook for Engine {
    fn name(&self) -> &str {
        "decision_models"
    }

    fn forget(&self, subject: &Pseudonym) -> Result<bool, String> {
        let unlearned = self.unlearn(subject);
        let events = self.rank_events.forget(subject);
        Ok(unlearned || events)
    }

    fn withdrawn(&self, subject: &Pseudonym, purposes: &[Purpose]) -> Result<(), String> {
        if self.slots.all().iter().any(|s| purposes.contains(&s.purpose)) {
            self.unlearn(subject);
        }
        Ok(())
    }

    /// Outcomes whose receipts no longer decrypt (their retention ended, R-RETAIN-1) are
    /// subtracted from the models exactly, as at erasure; the engagement models are retrained by the
    /// personalizer's queue.
    fn retention_shredded(&self) -> Result<(), String> {
        let readable: std::collections::HashSet<Uuid> =
            read_receipts(self.collect.store.as_ref()).served.iter().map(|s| s.decision).collect();
        let mut gone = Vec::new();
        self.contributions.lock().expect("contributions lock").retain(|_, list| {
            let (kept, expired) = std::mem::take(list).into_iter().partition(|c| readable.contains(&c.decision));
            *list = kept;
            gone.extend::<Vec<Contribution>>(expired);
            !list.is_empty()
        });
        self.subtract(&gone);
        if !gone.is_empty() {
            tracing::info!(outcomes = gone.len(), "outcomes whose retention ended were unlearned");
        }
        Ok(())
    }

    fn export(&self, subject: &Pseudonym) -> Option<Value> {
        let mut pending: Vec<Value> = Vec::new();
        self.records.for_each(|id, r| {
            if r.subject.as_ref() == Some(subject) {
                pending.push(json!({"decision": id, "slot": self.slots.all()[r.slot].id, "variant": self.shown_id(r.slot, &r.variant), "mode": r.mode, "at": r.at.0, "impressed": r.impressed, "clicked": r.clicked}));
            }
        });
        let learned = self.contributions_of(subject);
        let events = self.rank_events.of_subject(subject);
        (!pending.is_empty() || learned > 0 || !events.is_empty()).then(|| {
            json!({"decisions_in_attribution_window": pending, "model_updates_from_your_outcomes": learned,
                "personalizer_events": events})
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new version's settings keep every score finite; a version registered before those ranges
    /// still loads (its settings pass the registered check), so that a start never fails on it.
    #[test]
    fn new_versions_are_bounded_and_registered_ones_still_load() {
        let with = |f: fn(&mut PolicyParams)| {
            let mut p = PolicyParams::default();
            f(&mut p);
            p
        };
        let default = PolicyParams::default();
        assert!(default.check_new().is_ok() && default.check().is_ok());
        for old in [
            with(|p| p.lambda = 1e-308),
            with(|p| p.lambda = 1e7),
            with(|p| p.alpha = 150.0),
            with(|p| p.prior[0] = 5000.0),
        ] {
            assert!(matches!(old.check_new(), Err(DecideError::BadParams(_))), "{old:?}");
            assert!(old.check().is_ok(), "{old:?}");
            assert!(Version::new(ModelId::from_bytes([7; 16]), 1, old.clone(), None).is_ok(), "{old:?} loads");
        }
        for never in [
            with(|p| p.alpha = -1.0),
            with(|p| p.lambda = 0.0),
            with(|p| p.prior[0] = f64::NAN),
            with(|p| p.epsilon = Some(1.5)),
        ] {
            assert!(never.check().is_err() && never.check_new().is_err(), "{never:?}");
        }
    }

    #[test]
    fn counter_series_stop_growing_at_their_bound_and_known_ones_keep_counting() {
        let key = |v: &str| ("personalizer".to_owned(), v.to_owned(), "-".to_owned(), Mode::Personalized);
        let mut counts: BTreeMap<CountKey, Counts> =
            (0..MAX_COUNTED_SERIES).map(|i| (key(&format!("c{i}")), Counts::default())).collect();
        assert_eq!(bounded_key(&counts, key("c7")), key("c7"), "a series already kept");
        assert_eq!(bounded_key(&counts, key("new")), key(OTHER_VARIANT), "a new one past the bound");
        counts.remove(&key("c7"));
        assert_eq!(bounded_key(&counts, key("new")), key("new"), "below the bound a new one is kept");
    }

    /// Scoring each distinct feature vector once gives every candidate exactly the score it gets
    /// alone, after learning, and with several candidates of one vector.
    #[test]
    fn candidates_sharing_a_vector_get_the_score_each_gets_alone() {
        let mut model = Model::new(&PolicyParams::default()).expect("model");
        let x = |c: f64, default: bool| {
            let mut v = [0.0; D];
            v[0] = 1.0;
            v[1] = c;
            v[3] = f64::from(u8::from(c > 0.0));
            v[9] = f64::from(u8::from(default));
            v
        };
        model.update(&x(0.5, false), 1.0).expect("learn");
        model.update(&x(0.0, true), 0.0).expect("learn");
        let xs = [x(0.0, true), x(0.5, false), x(0.0, false), x(0.5, false), x(0.25, false), x(0.0, false)];
        let together = model.scores(&xs).expect("scores");
        let alone: Vec<f64> = xs.iter().map(|v| model.scores(&[*v]).expect("score")[0]).collect();
        assert_eq!(together, alone);
        assert_eq!(together[1], together[3]);
        assert_ne!(together[1], together[2], "different vectors score differently after learning");
    }

    /// Resolving each category name once gives every candidate the vector it gets alone: the
    /// default (flagged), candidates of known and unknown categories and of none, past the most
    /// names remembered too.
    #[test]
    fn candidates_of_one_category_get_the_vector_each_gets_alone() {
        let id = |n: u16| serde_json::from_value::<lethe_features::CategoryId>(json!(n)).expect("an id");
        // Categories cat-0 .. cat-29 are known as ids 1..=30; a subject engaged with half of them.
        let stats = (1..=30u16)
            .filter(|n| n % 2 == 1)
            .map(|n| lethe_features::CategoryStat { category: id(n), views: u32::from(n), clicks: u32::from(n % 2) })
            .collect();
        let profile = features::Profile::from_stats(stats, 200.0, 7.0);
        let ctx = Context::new(Some("mobile"), UtcMicros(20 * 3_600_000_000));
        let resolved = std::cell::Cell::new(0);
        let category_id = |name: &str| {
            resolved.set(resolved.get() + 1);
            name.strip_prefix("cat-").and_then(|n| n.parse::<u16>().ok()).filter(|n| *n < 30).map(|n| id(n + 1))
        };
        let candidate = |i: usize, category: Option<String>| Candidate {
            id: format!("c{i}"),
            category,
            content: Content::default(),
        };
        let alone = |cs: &[Candidate], default: usize| -> Vec<[f64; D]> {
            cs.iter()
                .enumerate()
                .map(|(i, c)| {
                    let cat = c.category.as_deref().and_then(&category_id);
                    features::vector_of(&profile, &ctx, cat, i == default)
                })
                .collect()
        };
        // Ten names over fifty candidates (one unknown, some with none); the default shares a name.
        let few: Vec<Candidate> = (0..50)
            .map(|i| {
                candidate(
                    i,
                    (i % 11 != 10).then(|| if i % 11 == 9 { "gone".into() } else { format!("cat-{}", 3 * (i % 11)) }),
                )
            })
            .collect();
        resolved.set(0);
        let groups = CategoryGroups::of(&few);
        assert_eq!(
            (groups.count, &groups.of[..12]),
            (11, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0][..]),
            "ten names and none"
        );
        let xs = candidate_vectors(&few, &groups, 4, category_id, &profile, &ctx);
        assert_eq!(resolved.get(), 10 + 1, "each name once, and the default's");
        assert_eq!(xs, alone(&few, 4));
        assert!(xs.iter().any(|x| x[1] > 0.0) && xs.iter().any(|x| x[1] == 0.0), "engaged categories and others");
        assert_eq!(xs[4][9], 1.0, "the default is flagged");
        assert_eq!(xs[15][9], 0.0, "the others sharing its name are not");
        // Forty names, the default's named by no other candidate.
        let many: Vec<Candidate> = (0..80).map(|i| candidate(i, Some(format!("cat-{}", i % 40 + i / 79)))).collect();
        let groups = CategoryGroups::of(&many);
        assert_eq!(groups.count, 41);
        resolved.set(0);
        let xs = candidate_vectors(&many, &groups, 79, category_id, &profile, &ctx);
        assert_eq!(resolved.get(), 40 + 1, "no vector for the default's name alone, beside the default's own");
        assert_eq!(xs, alone(&many, 79));
    }

    /// The oracle: every other candidate sorted by score (ties by position), after the drawn one.
    fn sorted_order(scores: &[f64], first: usize, count: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..scores.len()).filter(|i| *i != first).collect();
        order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
        order.insert(0, first);
        order.truncate(count.max(1));
        order
    }

    /// Ordering only the top of the others gives what sorting them all and keeping `count` gives,
    /// ties included, whether the drawn candidate is among the best or not.
    #[test]
    fn the_shown_order_is_the_drawn_candidate_then_the_best_others() {
        let scores: [f64; 8] = [0.5, 0.9, 0.1, 0.9, 0.3, 0.5, 0.7, 0.9];
        for first in [2, 3] {
            for count in [0, 1, 2, 3, 7, 8, 13] {
                let want = sorted_order(&scores, first, count);
                assert_eq!(shown_order(&scores, first, count), want, "first {first}, count {count}");
            }
        }
        assert_eq!(shown_order(&scores, 2, 4), vec![2, 1, 3, 7]);
        assert_eq!(shown_order(&[1.0], 0, 5), vec![0]);
        // Forty candidates on five score levels: a few shown are placed one by one, more selected;
        // both give the full sort's answer.
        let scores: Vec<f64> = (0..40).map(|i| f64::from((i * 7) % 5) / 4.0).collect();
        for first in [0, 13, 39] {
            for count in [1, 2, 5, FEW_SHOWN, FEW_SHOWN + 1, FEW_SHOWN + 2, 20, 40, 45] {
                let want = sorted_order(&scores, first, count);
                assert_eq!(shown_order(&scores, first, count), want, "first {first}, count {count}");
            }
        }
    }

    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        assert_eq!(label("x\"} 1\nfake 1"), "x\\\"} 1\\nfake 1");
        assert_eq!(label("a\\b"), "a\\\\b");
        assert_eq!(label("plain-id"), "plain-id");
    }

    #[test]
    fn receipts_leave_the_in_flight_count_whether_the_log_answers_or_drops_the_callback() {
        let count = Arc::new(AtomicUsize::new(5));
        let answered = InFlight(Arc::clone(&count), 2);
        let callback: lethe_eventlog::AppendDone = Box::new(move |_| {
            let _answered = answered;
        });
        callback(Vec::new());
        assert_eq!(count.load(Ordering::SeqCst), 3);
        // A log whose writer died drops the callback without calling it.
        let lost = InFlight(Arc::clone(&count), 3);
        let callback: lethe_eventlog::AppendDone = Box::new(move |_| {
            let _lost = lost;
        });
        drop(callback);
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    /// A v7 id at `ms` milliseconds whose random tail puts it in shard `shard`.
    fn id_at(ms: u64, shard: u8) -> Uuid {
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        b[6] = 0x70;
        b[8] = 0x80;
        b[15] = shard;
        Uuid::from_bytes(b)
    }

    #[test]
    fn a_full_shard_evicts_its_oldest_decisions_and_counts_them() {
        let shards = Shards::<u64>::new(3 * Shards::<u64>::COUNT);
        // Shard 5 gets five decisions, inserted out of time order; shard 6 gets two.
        for ms in [30, 10, 50, 20, 40] {
            shards.insert(id_at(ms, 5), ms);
        }
        shards.insert(id_at(1, 6), 1);
        shards.insert(id_at(2, 6), 2);
        let kept: Vec<u64> = shards.shard(&id_at(0, 5)).values().copied().collect();
        assert_eq!(kept, vec![30, 40, 50], "the oldest two of the full shard gave way");
        assert_eq!(shards.shard(&id_at(0, 6)).len(), 2, "another shard is untouched");
        assert_eq!(shards.stats(), (5, 2));
    }

    #[test]
    fn a_shard_finds_every_decision_whatever_the_order_they_came_in() {
        let shards = Shards::<u64>::new(1000 * Shards::<u64>::COUNT);
        // Mostly in time order, with some late and some repeated, in one shard.
        let mut order: Vec<u64> = (0..300).collect();
        for i in (0..300).step_by(7) {
            order.swap(i, (i + 3).min(299));
        }
        order.extend([5, 150, 299]);
        for ms in &order {
            shards.insert(id_at(*ms, 9), ms * 10);
        }
        let shard = shards.shard(&id_at(0, 9));
        assert_eq!(shard.len(), 300, "a repeated id replaces its entry");
        assert_eq!(shard.values().copied().collect::<Vec<_>>(), (0..300).map(|ms| ms * 10).collect::<Vec<_>>());
        for ms in 0..300 {
            assert_eq!(shard.get(&id_at(ms, 9).as_u128()), Some(&(ms * 10)));
        }
        assert_eq!(shard.get(&id_at(300, 9).as_u128()), None);
        drop(shard);
        *shards.shard(&id_at(0, 9)).get_mut(&id_at(42, 9).as_u128()).expect("held") = 1;
        assert_eq!(shards.shard(&id_at(0, 9)).get(&id_at(42, 9).as_u128()), Some(&1));
    }

    #[test]
    fn shards_retain_and_visit_every_entry() {
        let shards = Shards::<u64>::new(1000);
        for ms in 0..200 {
            shards.insert(id_at(ms, u8::try_from(ms % 256).unwrap_or(0)), ms);
        }
        assert_eq!(shards.retain(|v| v % 2 == 0), 100);
        let mut seen = Vec::new();
        shards.for_each(|_, v| seen.push(*v));
        seen.sort_unstable();
        assert_eq!(seen, (0..200).step_by(2).collect::<Vec<_>>());
        assert_eq!(shards.stats(), (100, 0));
    }
}
