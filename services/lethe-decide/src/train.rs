//! Offline training of a slot's engagement (click) model from its logged decisions: the features
//! each personalized receipt recorded for the variant shown, labelled by whether an outcome says it
//! was clicked. Only subjects whose consent for the slot's purpose holds at training time are used,
//! and consent is checked again before registering (R-TRAIN-1, fail closed). Hyperparameters are
//! chosen by grid search under k-fold cross-validation grouped by subject (a subject's decisions
//! never sit on both sides of a fold), on AUC. The model is registered as a candidate, with its
//! members, so erasure and withdrawal find it (R-ERASE-7).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lethe_audit::AuditKind;
use lethe_domain::{Pseudonym, Purpose, UtcMicros};
use lethe_ml::engagement::EngagementModel as _;
use lethe_ml::engagement::{self, EngagementParams, GbmParams, LogisticParams, ModelKind};
use lethe_ml::validation::{grid_search, group_k_fold, Goal};
use lethe_ml::{EngagementDataset, FeatureSchema};
use lethe_registry::{Manifest, Membership, ModelId, ModelName, NewModel};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::engine::{read_receipts, DecideError, Engine, OutcomeKind};
use crate::features::{self, D};

/// Folds of the cross-validation.
pub const FOLDS: usize = 3;
/// Fewest labelled decisions to train on.
pub const MIN_ROWS: usize = 20;

/// One candidate of the grid.
#[derive(Debug, Clone, Serialize)]
struct Candidate {
    kind: ModelKind,
    params: EngagementParams,
}

/// What a training run did.
#[derive(Debug, Clone, Serialize)]
pub struct EngagementReport {
    pub model_id: String,
    pub version: u32,
    pub slot: String,
    pub algorithm: ModelKind,
    /// Decisions with an outcome used as rows, and how many were clicked.
    pub rows: usize,
    pub clicks: usize,
    pub subjects: u64,
    /// Subjects with logged decisions left out because their consent no longer holds.
    pub excluded_subjects: usize,
    pub cv_auc_mean: f64,
    pub cv_auc_sd: f64,
    /// Every candidate with its mean and standard deviation of fold AUCs.
    pub grid: Vec<Value>,
    pub status: &'static str,
}

fn grid() -> Vec<Candidate> {
    let mut out = Vec::new();
    for l2 in [0.1, 1.0, 10.0] {
        let params = EngagementParams {
            logistic: LogisticParams { l2, ..LogisticParams::default() },
            ..EngagementParams::default()
        };
        out.push(Candidate { kind: ModelKind::Logistic, params });
    }
    for (iterations, max_depth) in [(50, 3), (100, 4)] {
        let params = EngagementParams {
            gbm: GbmParams { iterations, max_depth, ..GbmParams::default() },
            ..EngagementParams::default()
        };
        out.push(Candidate { kind: ModelKind::Gbm, params });
    }
    out
}

fn refused(message: impl Into<String>) -> DecideError {
    DecideError::Conflict(message.into())
}

/// Trains the slot's engagement model from the log as it stands and registers it as a candidate.
///
/// # Errors
/// Unknown slot; too few labelled decisions or a single class; a consent change during training;
/// registry errors.
pub fn train_engagement(engine: &Engine, slot: &str, actor: &str) -> Result<EngagementReport, DecideError> {
    train_engagement_replacing(engine, slot, actor, &[])
}

/// As [`train_engagement`], for unlearning: the new version's manifest names the versions it
/// `replaces`, so that a policy version that served one of them serves it instead.
///
/// # Errors
/// As [`train_engagement`].
pub fn train_engagement_replacing(
    engine: &Engine,
    slot: &str,
    actor: &str,
    replaces: &[ModelId],
) -> Result<EngagementReport, DecideError> {
    let index = engine.slots.index_of(slot).ok_or_else(|| DecideError::UnknownSlot(slot.to_owned()))?;
    let purpose = engine.slots.all()[index].purpose.clone();
    let collect = engine.collect();
    let head = collect.store.head();
    // Receipts of this slot, and which of them had an outcome, and a click.
    let logged = read_receipts(collect.store.as_ref());
    let mut served: HashMap<Uuid, (Pseudonym, [f64; D], UtcMicros)> = HashMap::new();
    for s in logged.served {
        if s.properties["slot"].as_str() != Some(slot) {
            continue;
        }
        if let Ok(x) = serde_json::from_value::<[f64; D]>(s.properties["policy"]["features"].clone()) {
            served.insert(s.decision, (s.subject, x, s.at));
        }
    }
    let seen: BTreeSet<Uuid> = logged.outcomes.iter().map(|(id, ..)| *id).collect();
    // A click, a conversion or a positive reward labels the decision engaged.
    let engaged = |k: OutcomeKind, v: Option<f64>| match k {
        OutcomeKind::Impression => false,
        OutcomeKind::Reward => v.is_some_and(|v| v > 0.0),
        OutcomeKind::Click | OutcomeKind::Conversion => true,
    };
    let clicked: BTreeSet<Uuid> =
        logged.outcomes.iter().filter(|(_, k, v)| engaged(*k, *v)).map(|(id, ..)| *id).collect();
    let sale_share = Purpose::parse(lethe_collect::SALE_SHARE).expect("valid purpose");
    let allows = |s: &Pseudonym| collect.book.verdict(s, &purpose, true, &sale_share).allows();
    let mut excluded: BTreeSet<Pseudonym> = BTreeSet::new();
    let mut rows: Vec<(Pseudonym, [f64; D], bool, UtcMicros)> = Vec::new();
    let mut ids: Vec<&Uuid> = served.keys().filter(|id| seen.contains(*id)).collect();
    ids.sort_unstable();
    for id in ids {
        let (subject, x, at) = served[id];
        if allows(&subject) {
            rows.push((subject, x, clicked.contains(id), at));
        } else {
            excluded.insert(subject);
        }
    }
    let clicks = rows.iter().filter(|r| r.2).count();
    if rows.len() < MIN_ROWS || clicks == 0 || clicks == rows.len() {
        return Err(refused(format!(
            "{} labelled decisions with {clicks} clicks: need {MIN_ROWS} or more, clicked and not",
            rows.len()
        )));
    }
    let subjects: Vec<Pseudonym> = rows.iter().map(|r| r.0).collect::<BTreeSet<_>>().into_iter().collect();
    let group: BTreeMap<Pseudonym, u64> = subjects.iter().enumerate().map(|(i, s)| (*s, i as u64)).collect();
    let schema = FeatureSchema::new(features::NAMES).map_err(|e| refused(e.to_string()))?;
    let values: Vec<Vec<f64>> = rows.iter().map(|r| r.1.to_vec()).collect();
    let labels: Vec<bool> = rows.iter().map(|r| r.2).collect();
    let dataset = EngagementDataset::new(schema, &values, labels).map_err(|e| refused(e.to_string()))?;
    let groups: Vec<u64> = rows.iter().map(|r| group[&r.0]).collect();
    let folds = group_k_fold(&groups, FOLDS.min(subjects.len()), 7).map_err(|e| refused(e.to_string()))?;
    let candidates = grid();
    let search = grid_search(&candidates, &folds, Goal::Maximize, |c, fold| {
        let train = dataset.subset(&fold.train)?;
        let test = dataset.subset(&fold.test)?;
        if !train.has_both_classes() || !test.has_both_classes() {
            // A fold without both classes says nothing about ranking: count it as chance.
            return Ok(0.5);
        }
        let model = engagement::train(c.kind, &train, &c.params, 7)?;
        lethe_ml::metrics::auc_roc(test.labels(), &model.predict_dataset(&test)?)
    })
    .map_err(|e| refused(e.to_string()))?;
    let best = search.best_entry().clone();
    let model =
        engagement::train(best.params.kind, &dataset, &best.params.params, 7).map_err(|e| refused(e.to_string()))?;
    let blob = serde_json::to_vec(&model).map_err(|e| refused(e.to_string()))?;
    // R-TRAIN-1, fail closed: a subject who withdrew while training ran stops the run.
    if subjects.iter().any(|s| !allows(s)) {
        return Err(refused("a subject's consent changed during training; train again"));
    }
    let grid_json: Vec<Value> = search
        .entries
        .iter()
        .map(|e| json!({"kind": e.params.kind, "params": e.params.params, "auc_mean": e.mean, "auc_sd": e.sd}))
        .collect();
    let mut metrics = BTreeMap::new();
    metrics.insert("cv_auc_mean".to_owned(), best.mean);
    metrics.insert("cv_auc_sd".to_owned(), best.sd);
    #[allow(clippy::cast_precision_loss)]
    {
        metrics.insert("rows".to_owned(), rows.len() as f64);
        metrics.insert("clicks".to_owned(), clicks as f64);
    }
    let from = rows.iter().map(|r| r.3).min().unwrap_or(UtcMicros(0));
    let to = rows.iter().map(|r| r.3).max().unwrap_or(UtcMicros(0));
    let name =
        ModelName::parse(&crate::engine::engagement_name(slot)).map_err(|e| DecideError::Registry(e.to_string()))?;
    let new = NewModel {
        name,
        algorithm: serde_json::to_value(best.params.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        manifest: Manifest {
            data_window: (from, to),
            log_position: head.0,
            subjects: subjects.len() as u64,
            membership: Membership::new(subjects.iter()),
            features: features::NAMES.iter().map(|s| (*s).to_owned()).collect(),
            hyperparameters: json!({"chosen": best.params, "grid": grid_json, "folds": folds.len(), "grouped_by": "subject", "replaces": replaces.iter().map(ToString::to_string).collect::<Vec<_>>()}),
            metrics: metrics.clone(),
            code_version: format!("lethe {}", env!("CARGO_PKG_VERSION")),
            shards: Vec::new(),
        },
        metrics,
    };
    let version = engine.personalizer().register_model(new, &blob).map_err(|e| DecideError::Registry(e.to_string()))?;
    let report = EngagementReport {
        model_id: version.id.to_string(),
        version: version.version,
        slot: slot.to_owned(),
        algorithm: best.params.kind,
        rows: rows.len(),
        clicks,
        subjects: subjects.len() as u64,
        excluded_subjects: excluded.len(),
        cv_auc_mean: best.mean,
        cv_auc_sd: best.sd,
        grid: grid_json,
        status: "candidate",
    };
    let detail = serde_json::to_value(&report).unwrap_or(Value::Null);
    if let Err(e) = engine.privacy().audit(AuditKind::TrainingRun, actor, None, detail) {
        tracing::error!(code = e.code, "an engagement training run could not be audited");
    }
    Ok(report)
}
