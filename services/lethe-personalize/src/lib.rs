//! Personalization models trained only on consented data. [`Personalizer::train`] selects the
//! training set by consent at training time (R-TRAIN-1, [`select()`]) and chooses a recommender of
//! `lethe-ml` by cross-validated grid search: the interactions of every subject with two or more are
//! dealt into [`TrainConfig::folds`] folds (3 by default; seeded, so a run is reproducible), each
//! candidate of [`TrainConfig::grid`] (three item-kNN and two ALS variants by default) is trained on
//! every fold's rest and scored by NDCG@10 and precision@10 on what it held out, and the best mean
//! NDCG wins, the earlier candidate on a tie. The winner is retrained on all the data. With too little
//! data to hold anything out, item-kNN with [`TrainConfig::knn`] is trained unevaluated. Training then
//! re-checks every member's consent just before registering (fail closed), and registers the model in
//! `lethe-registry` with its manifest: window, log position, salted membership, hyperparameters (the
//! chosen candidate and the evaluated grid with each candidate's mean and standard deviation), metrics
//! (`ndcg_at_10`, `precision_at_10` and their `_sd` for the chosen candidate, the same with an
//! `itemknn_` or `als_` prefix for each algorithm's best, `evaluated_subjects`, `cv_folds`), code
//! version. Training blocks: with the default grid it trains 16 models (5 candidates × 3 folds, plus
//! the winner). The registry lives in `<data>/models`; its key-encryption key is a sealed blob of the
//! key store.
//!
//! Unlearning (R-ERASE-7): the personalizer is an [`ErasureHook`] of the privacy service. When a
//! subject is erased or withdraws personalization, every model containing it is marked in a durable
//! queue; [`Personalizer::unlearn_pending`] (run by `lethe serve`'s background work within the
//! configured window) retrains without the subject, retires the old versions for unlearning (their
//! sealed bytes and keys destroyed) and rotates the registry's KEK so the destruction is final.
#![forbid(unsafe_code)]

pub mod drift;
pub mod select;
pub mod views;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use lethe_audit::AuditKind;
use lethe_crypto::{Keyring, SecretBytes};
use lethe_domain::{Pseudonym, Purpose, UtcMicros};
use lethe_ml::recommend::{
    default_grid, search, user_k_fold, AlsModel, Candidate, Interactions, ItemId, ItemKnn, ItemKnnParams, Trained,
    UserId,
};
use lethe_privacy::{ErasureHook, Privacy};
use lethe_registry::{
    Manifest, Membership, ModelId, ModelName, ModelVersion, NewModel, Registry, RetireReason, Status,
};
use serde::Serialize;
use serde_json::json;

pub use select::{select, Excluded, TrainingSet, PERSONALIZATION};
pub use views::Views;

/// Folder of the model registry inside the data directory.
pub const MODELS_DIR: &str = "models";
const KEK_BLOB: &str = "registry-kek";
/// The name recommendations are registered under.
pub const RECOMMENDER: &str = "recs";

/// What can stop training or unlearning.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the log cannot be read: {0}")]
    Log(#[from] lethe_eventlog::LogError),
    #[error("no subject may be trained on (consent, interactions): nothing was trained")]
    NothingToTrain,
    #[error("consent changed during training for {0} subject(s): nothing was registered; train again")]
    ConsentChanged(usize),
    #[error("model: {0}")]
    Model(#[from] lethe_ml::MlError),
    #[error("registry: {0}")]
    Registry(#[from] lethe_registry::RegistryError),
    #[error("models database: {0}")]
    Storage(#[from] sled::Error),
    #[error("key store: {0}")]
    Keys(#[from] lethe_crypto::CryptoError),
    #[error("audit: {0}")]
    Audit(String),
    #[error("unlearning by {0}")]
    Unlearner(String),
}

impl TrainError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Log(_) => "log_unreadable",
            Self::NothingToTrain => "nothing_to_train",
            Self::ConsentChanged(_) => "consent_changed",
            Self::Model(_) => "model_error",
            Self::Registry(_) => "registry_error",
            Self::Storage(_) => "storage_error",
            Self::Keys(_) => "key_store_error",
            Self::Audit(_) => "audit_unavailable",
            Self::Unlearner(_) => "unlearning_failed",
        }
    }
}

/// Training settings.
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    /// Seeds the folds and ALS.
    pub seed: u64,
    /// Cross-validation folds (2 at least; a smaller value counts as 2): each fold holds out about
    /// `1/folds` of every subject's interactions. Default 3.
    pub folds: usize,
    /// The cutoff of NDCG@k and precision@k. Default 10 (the metric names say 10 whatever it is).
    pub k: usize,
    /// The candidates of the grid search, in tie-break order: the earlier wins a tie. Each costs one
    /// training per fold. Default [`default_grid`]: three item-kNN and two ALS variants.
    pub grid: Vec<Candidate>,
    /// The item-kNN parameters trained without evaluation when there is too little data to
    /// cross-validate (no subject with two interactions) or the grid is empty.
    pub knn: ItemKnnParams,
    /// Shards of the membership, so unlearning can tell which part of the data a subject was in.
    pub shards: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { seed: 7, folds: 3, k: 10, grid: default_grid(), knn: ItemKnnParams::default(), shards: 8 }
    }
}

/// A trained recommender as stored in the registry (sealed): the item vocabulary and the model.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct StoredRecommender {
    pub algorithm: String,
    pub items: Vec<String>,
    pub knn: Option<ItemKnn>,
    pub als: Option<AlsModel>,
}

/// What a training run did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub model_id: String,
    pub version: u32,
    pub algorithm: String,
    pub status: String,
    pub subjects: u64,
    pub items: usize,
    pub interactions: usize,
    pub excluded: Excluded,
    pub metrics: BTreeMap<String, f64>,
    pub log_position: u64,
    /// Versions retired by this run (superseded or unlearned).
    pub retired: Vec<String>,
}

/// The trainer, the registry and the unlearning queue.
pub struct Personalizer {
    privacy: Arc<Privacy>,
    registry: Registry,
    pending: sled::Tree,
    kek: Mutex<SecretBytes>,
    keyring_dir: std::path::PathBuf,
    master: lethe_crypto::MasterSource,
    /// The serving feature views, when attached: training records their distribution ([`drift`]).
    views: OnceLock<Arc<Views>>,
    /// The live model's training distribution of the serving features, in memory only ([`drift`]).
    train_dist: Mutex<Option<(ModelId, drift::Distribution)>>,
    /// Services that retrain their own models for unlearning.
    unlearners: Mutex<Vec<std::sync::Weak<dyn Unlearner>>>,
    pub config: TrainConfig,
}

impl std::fmt::Debug for Personalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Personalizer").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Personalizer {
    /// Opens the registry in `<data>/models` with its KEK from the key store (created on first use).
    ///
    /// # Errors
    /// Storage and key store errors.
    pub fn open(
        data_dir: &Path,
        master: &lethe_crypto::MasterSource,
        privacy: Arc<Privacy>,
        config: TrainConfig,
    ) -> Result<Arc<Self>, TrainError> {
        let keyring = Keyring::open(data_dir, master)?;
        let kek = match keyring.blob(KEK_BLOB)? {
            Some(b) => {
                SecretBytes::new(b[..].try_into().map_err(|_| TrainError::Audit("registry key damaged".into()))?)
            }
            None => {
                let k = SecretBytes::random();
                keyring.put_blob(KEK_BLOB, k.expose())?;
                k
            }
        };
        let db = sled::Config::new().path(data_dir.join(MODELS_DIR)).open()?;
        let registry = Registry::open(db.open_tree("registry")?)?;
        let pending = db.open_tree("unlearning")?;
        Ok(Arc::new(Self {
            privacy,
            registry,
            pending,
            kek: Mutex::new(kek),
            keyring_dir: data_dir.to_path_buf(),
            master: master.clone(),
            views: OnceLock::new(),
            train_dist: Mutex::new(None),
            unlearners: Mutex::new(Vec::new()),
            config,
        }))
    }

    /// Attaches the serving feature views, so that training records the features' distribution
    /// from them instead of replaying the log ([`drift`]). The first call wins.
    pub fn attach_views(&self, views: Arc<Views>) {
        let _ = self.views.set(views);
    }

    /// The live model's training distribution of the serving features, when this process trained
    /// it (it is kept in memory only: see [`drift`]).
    pub fn live_training_distribution(&self) -> Option<drift::Distribution> {
        let live = self.registry.live(&name()).ok().flatten()?;
        let held = self.train_dist.lock().expect("drift lock");
        held.as_ref().filter(|(id, _)| *id == live.id).map(|(_, d)| d.clone())
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers a model version whose bytes are sealed under the registry KEK (the decision
    /// service registers its policy versions this way).
    ///
    /// # Errors
    /// Registry errors (an invalid manifest, storage).
    pub fn register_model(&self, new: NewModel, blob: &[u8]) -> Result<ModelVersion, TrainError> {
        Ok(self.registry.register(new, blob, &self.kek.lock().expect("kek lock"), UtcMicros::now())?)
    }

    /// The bytes of a model version, opened.
    ///
    /// # Errors
    /// Registry errors (unknown or retired version).
    pub fn load_model(&self, id: ModelId) -> Result<Vec<u8>, TrainError> {
        Ok(self.registry.load_blob(id, &self.kek.lock().expect("kek lock"))?)
    }

    /// The live recommender's bytes, opened.
    ///
    /// # Errors
    /// Registry errors; `None` when nothing is live.
    pub fn live_recommender(&self) -> Result<Option<(ModelVersion, StoredRecommender)>, TrainError> {
        let Some(v) = self.registry.live(&name())? else { return Ok(None) };
        let bytes = self.registry.load_blob(v.id, &self.kek.lock().expect("kek lock"))?;
        let model = serde_json::from_slice(&bytes).map_err(|e| TrainError::Audit(format!("stored model: {e}")))?;
        Ok(Some((v, model)))
    }

    /// Trains on the log as it stands, registers the best recommender and makes it live. Blocking.
    ///
    /// # Errors
    /// Nothing to train, a consent change during training (fail closed), storage errors.
    pub fn train(&self, actor: &str) -> Result<TrainReport, TrainError> {
        let set = select(self.privacy.collect.store.as_ref(), &self.privacy.collect.policies)?;
        self.train_on(set, actor, &[])
    }

    /// Trains on a selected set; `replaces` are versions to retire for unlearning once the new one is
    /// live.
    ///
    /// # Errors
    /// As [`Self::train`].
    pub fn train_on(&self, set: TrainingSet, actor: &str, replaces: &[ModelId]) -> Result<TrainReport, TrainError> {
        if set.interactions.is_empty() {
            return Err(TrainError::NothingToTrain);
        }
        let items: Vec<String> = {
            let mut all: Vec<String> = set.interactions.values().flat_map(|m| m.keys().cloned()).collect();
            all.sort_unstable();
            all.dedup();
            all
        };
        let index: BTreeMap<&str, u32> = items.iter().enumerate().map(|(i, s)| (s.as_str(), i as u32)).collect();
        let subjects: Vec<Pseudonym> = set.interactions.keys().copied().collect();
        let triples: Vec<(UserId, ItemId, f64)> = set
            .interactions
            .values()
            .enumerate()
            .flat_map(|(u, m)| m.iter().map(move |(item, w)| (u, item, *w)))
            .map(|(u, item, w)| (UserId(u as u32), ItemId(index[item.as_str()]), w))
            .collect();
        let all = Interactions::from_triples(&triples)?;
        let c = &self.config;
        let mut metrics = BTreeMap::new();
        // Cross-validated grid search; it needs someone to hold out, a subject with two interactions.
        let found = if c.grid.is_empty() || all.iter().all(|(_, history)| history.len() < 2) {
            None
        } else {
            let folds = user_k_fold(&all, c.folds.max(2), c.seed)?;
            Some(search(&c.grid, &all, &folds, c.k, c.seed)?)
        };
        let (chosen, validation) = match &found {
            Some(found) => {
                let best = &found.best_entry().score;
                metrics.insert("ndcg_at_10".to_owned(), best.ndcg_mean);
                metrics.insert("ndcg_at_10_sd".to_owned(), best.ndcg_sd);
                metrics.insert("precision_at_10".to_owned(), best.precision_mean);
                metrics.insert("precision_at_10_sd".to_owned(), best.precision_sd);
                // Each algorithm's best candidate, so the two stay comparable from one run to the next.
                for algorithm in ["itemknn", "als"] {
                    if let Some(e) = found.best_of(algorithm) {
                        metrics.insert(format!("{algorithm}_ndcg_at_10"), e.score.ndcg_mean);
                        metrics.insert(format!("{algorithm}_ndcg_at_10_sd"), e.score.ndcg_sd);
                        metrics.insert(format!("{algorithm}_precision_at_10"), e.score.precision_mean);
                        metrics.insert(format!("{algorithm}_precision_at_10_sd"), e.score.precision_sd);
                    }
                }
                metrics.insert("evaluated_subjects".to_owned(), found.users as f64);
                metrics.insert("cv_folds".to_owned(), found.folds as f64);
                let grid: Vec<serde_json::Value> = found
                    .entries
                    .iter()
                    .map(|e| {
                        let mut entry = json!(e.candidate);
                        entry["ndcg_mean"] = json!(e.score.ndcg_mean);
                        entry["ndcg_sd"] = json!(e.score.ndcg_sd);
                        entry["precision_mean"] = json!(e.score.precision_mean);
                        entry["precision_sd"] = json!(e.score.precision_sd);
                        entry
                    })
                    .collect();
                let validation = json!({"method": "k-fold per subject", "folds": found.folds, "grid": grid});
                (found.best_entry().candidate.clone(), validation)
            }
            None => {
                metrics.insert("ndcg_at_10".to_owned(), 0.0);
                let why = if c.grid.is_empty() { "no grid" } else { "no subject has two interactions to hold one out" };
                let validation = json!({"method": format!("none: {why}")});
                (Candidate::ItemKnn(c.knn.clone()), validation)
            }
        };
        let distribution = drift::training_distribution(self, &subjects);
        let (knn, als) = match chosen.train(&all, c.seed)? {
            Trained::ItemKnn(m) => (Some(m), None),
            Trained::Als(m) => (None, Some(m)),
        };
        let stored = StoredRecommender { algorithm: chosen.algorithm().to_owned(), items: items.clone(), knn, als };
        let blob = serde_json::to_vec(&stored).map_err(|e| TrainError::Audit(e.to_string()))?;

        // R-TRAIN-1, fail closed: consent is checked again against the live consent book just before
        // the model can serve; anyone who withdrew or was erased meanwhile voids the run.
        let changed = subjects.iter().filter(|s| !self.consents_now(s)).count();
        if changed > 0 {
            return Err(TrainError::ConsentChanged(changed));
        }
        let membership = Membership::new(&subjects);
        let shards = if c.shards > 1 { membership.shard_counts(c.shards) } else { Vec::new() };
        let manifest = Manifest {
            data_window: set.window,
            log_position: set.log_position,
            subjects: subjects.len() as u64,
            membership,
            features: vec!["item interactions (views 1, clicks 2, likes 3, ratings, purchases 5)".to_owned()],
            hyperparameters: json!({"chosen": chosen, "validation": validation, "k": c.k, "seed": c.seed}),
            metrics: metrics.clone(),
            code_version: format!("lethe {}", env!("CARGO_PKG_VERSION")),
            shards,
        };
        let now = UtcMicros::now();
        let new =
            NewModel { name: name(), algorithm: chosen.algorithm().to_owned(), manifest, metrics: metrics.clone() };
        let version = {
            let kek = self.kek.lock().expect("kek lock");
            self.registry.register(new, &blob, &kek, now)?
        };
        // Versions trained on a subject that left are retired for unlearning first (their bytes and
        // keys destroyed), so that the record says why; any other live version is superseded.
        let mut retired = Vec::new();
        for id in replaces {
            if let Some(v) = self.registry.get(*id)? {
                if !matches!(v.status, Status::Retired { .. }) {
                    self.registry.retire(*id, RetireReason::Unlearning, now)?;
                }
                retired.push(id.to_string());
            }
        }
        let previous = self.registry.live(&name())?;
        let live = self.registry.set_status(version.id, Status::Live, now)?;
        *self.train_dist.lock().expect("drift lock") = distribution.map(|d| (live.id, d));
        retired.extend(previous.iter().map(|p| p.id.to_string()));
        let report = TrainReport {
            model_id: live.id.to_string(),
            version: live.version,
            algorithm: chosen.algorithm().to_owned(),
            status: "live".to_owned(),
            subjects: subjects.len() as u64,
            items: items.len(),
            interactions: all.len(),
            excluded: set.excluded.clone(),
            metrics,
            log_position: set.log_position,
            retired,
        };
        self.privacy
            .audit(AuditKind::TrainingRun, actor, None, serde_json::to_value(&report).expect("serializes"))
            .map_err(|e| TrainError::Audit(e.message))?;
        Ok(report)
    }

    fn consents_now(&self, subject: &Pseudonym) -> bool {
        let purpose = Purpose::parse(PERSONALIZATION).expect("valid");
        let sale_share = Purpose::parse(lethe_collect::SALE_SHARE).expect("valid");
        let requires = self.privacy.collect.policies.purpose(&purpose).is_none_or(|d| d.requires_consent());
        self.privacy.collect.book.verdict(subject, &purpose, requires, &sale_share).allows()
    }

    /// Queues every live or candidate model containing `subject` for unlearning. Returns how many.
    ///
    /// # Errors
    /// Registry or storage errors.
    pub fn mark_for_unlearning(&self, subject: &Pseudonym) -> Result<usize, TrainError> {
        self.enqueue(self.registry.containing(subject)?)
    }

    /// Adds `ids` to the durable unlearning queue, stamped now; a model already queued keeps its
    /// first stamp, so that later erasures never push back the deadline of earlier ones
    /// (R-ERASE-7). Returns how many.
    fn enqueue(&self, ids: impl IntoIterator<Item = ModelId>) -> Result<usize, TrainError> {
        let now = UtcMicros::now().0.to_be_bytes();
        let mut queued = 0;
        for id in ids {
            // Err(CompareAndSwapError): already queued, and its stamp stays.
            let _ = self.pending.compare_and_swap(id.to_string().as_bytes(), None::<&[u8]>, Some(&now[..]))?;
            queued += 1;
        }
        self.pending.flush()?;
        Ok(queued)
    }

    /// Queues every model trained on subjects for retraining: after a retention sweep destroyed keys,
    /// a model may hold what the log no longer does (R-RETAIN-1). Retraining reads only what still
    /// decrypts. Returns how many were queued.
    ///
    /// # Errors
    /// Registry or storage errors.
    pub fn mark_all_for_retraining(&self) -> Result<usize, TrainError> {
        let trained = self.registry.all()?.into_iter();
        self.enqueue(
            trained.filter(|v| v.manifest.subjects > 0 && !matches!(v.status, Status::Retired { .. })).map(|v| v.id),
        )
    }

    /// Models waiting for unlearning, with the time they were queued.
    ///
    /// # Errors
    /// Storage errors.
    pub fn pending(&self) -> Result<Vec<(String, UtcMicros)>, TrainError> {
        let mut out = Vec::new();
        for item in self.pending.iter() {
            let (k, v) = item?;
            let at = v.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(0);
            out.push((String::from_utf8_lossy(&k).into_owned(), UtcMicros(at)));
        }
        Ok(out)
    }

    /// Retrains without the subjects that left, retires the queued versions for unlearning and
    /// rotates the registry's KEK. Blocking; `lethe serve` runs it within the finality window.
    ///
    /// # Errors
    /// Training, registry or key store errors; the queue is kept for the next attempt.
    pub fn unlearn_pending(&self) -> Result<Option<TrainReport>, TrainError> {
        let queued = self.pending()?;
        if queued.is_empty() {
            return Ok(None);
        }
        let mut ids: Vec<ModelId> = Vec::new();
        let mut owned: BTreeMap<String, (Arc<dyn Unlearner>, Vec<ModelId>)> = BTreeMap::new();
        for id in queued.iter().filter_map(|(id, _)| id.parse::<ModelId>().ok()) {
            let Some(v) = self.registry.get(id)?.filter(|v| !matches!(v.status, Status::Retired { .. })) else {
                continue;
            };
            match self.unlearner_of(&v.name) {
                Some(u) => owned.entry(v.name.as_str().to_owned()).or_insert_with(|| (u, Vec::new())).1.push(id),
                None if v.name == name() => ids.push(id),
                None => {
                    // Nobody can retrain it here: it stops serving.
                    self.registry.retire(id, RetireReason::Unlearning, UtcMicros::now())?;
                }
            }
        }
        // Models of other services (the decision engine's engagement models) are retrained by them.
        for (model, (unlearner, ids)) in &owned {
            let name = ModelName::parse(model).map_err(|e| TrainError::Unlearner(e.to_string()))?;
            unlearner.retrain_without(&name, ids).map_err(|e| TrainError::Unlearner(format!("{model}: {e}")))?;
        }
        let set = if ids.is_empty() {
            None
        } else {
            Some(select(self.privacy.collect.store.as_ref(), &self.privacy.collect.policies)?)
        };
        let report = if let Some(set) = set.filter(|s| !s.interactions.is_empty()) {
            Some(self.train_on(set, "system", &ids)?)
        } else {
            // Nobody is left to train on: the old versions are retired and nothing replaces them.
            let now = UtcMicros::now();
            for id in &ids {
                if self.registry.get(*id)?.is_some_and(|v| !matches!(v.status, Status::Retired { .. })) {
                    self.registry.retire(*id, RetireReason::Unlearning, now)?;
                }
            }
            None
        };
        self.rotate_kek()?;
        for (id, _) in &queued {
            self.pending.remove(id.as_bytes())?;
        }
        self.pending.flush()?;
        Ok(report)
    }

    /// Hands the models named as `unlearner` owns to it for unlearning (the decision engine registers
    /// itself for its engagement models). Held weakly: the owner holds the personalizer.
    pub fn add_unlearner(&self, unlearner: std::sync::Weak<dyn Unlearner>) {
        self.unlearners.lock().expect("unlearners lock").push(unlearner);
    }

    fn unlearner_of(&self, name: &ModelName) -> Option<Arc<dyn Unlearner>> {
        let list = self.unlearners.lock().expect("unlearners lock");
        list.iter().filter_map(std::sync::Weak::upgrade).find(|u| u.owns(name))
    }

    /// Re-wraps every surviving model key under a new KEK and replaces the sealed KEK, so the keys of
    /// retired models become unrecoverable.
    fn rotate_kek(&self) -> Result<(), TrainError> {
        let mut kek = self.kek.lock().expect("kek lock");
        let new = SecretBytes::random();
        self.registry.rotate_kek(&kek, &new)?;
        Keyring::open(&self.keyring_dir, &self.master)?.put_blob(KEK_BLOB, new.expose())?;
        *kek = new;
        Ok(())
    }
}

/// A service whose models live in this registry and that retrains them itself when a subject they
/// hold leaves (R-ERASE-7): [`Personalizer::unlearn_pending`] hands it the queued versions.
pub trait Unlearner: Send + Sync {
    /// Whether models of this name are this service's.
    fn owns(&self, name: &ModelName) -> bool;

    /// Retrains the models of `name` without the subjects that left, and retires `ids` (reason
    /// unlearning) so that they never serve again, whether or not a successor could be trained.
    ///
    /// # Errors
    /// A message; the queue is kept and the call repeated later.
    fn retrain_without(&self, name: &ModelName, ids: &[ModelId]) -> Result<serde_json::Value, String>;
}

fn name() -> ModelName {
    ModelName::parse(RECOMMENDER).expect("valid model name")
}

impl ErasureHook for Personalizer {
    fn name(&self) -> &str {
        "model_registry"
    }

    fn forget(&self, subject: &Pseudonym) -> Result<bool, String> {
        self.mark_for_unlearning(subject).map(|n| n > 0).map_err(|e| e.to_string())
    }

    fn withdrawn(&self, subject: &Pseudonym, purposes: &[Purpose]) -> Result<(), String> {
        if purposes.iter().any(|p| p.as_str() == PERSONALIZATION) {
            self.mark_for_unlearning(subject).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn retention_shredded(&self) -> Result<(), String> {
        self.mark_all_for_retraining().map(|_| ()).map_err(|e| e.to_string())
    }

    fn export(&self, subject: &Pseudonym) -> Option<serde_json::Value> {
        let ids = self.registry.containing(subject).ok()?;
        let versions: Vec<serde_json::Value> = ids
            .iter()
            .filter_map(|id| self.registry.get(*id).ok().flatten())
            .map(|v| json!({"model": v.name.as_str(), "version": v.version, "algorithm": v.algorithm, "trained_on_window": [v.manifest.data_window.0 .0, v.manifest.data_window.1 .0]}))
            .collect();
        (!versions.is_empty()).then(|| json!({"models_trained_on_you": versions}))
    }
}
