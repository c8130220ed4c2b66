//! Personalization models trained only on consented data. [`Personalizer::train`] selects the
//! training set by consent at training time (R-TRAIN-1, [`select`]), trains the recommenders of
//! `lethe-ml` (item-kNN, ALS, popularity), evaluates them on held-out interactions (NDCG@10,
//! precision@10), re-checks every member's consent just before registering (fail closed), and
//! registers the chosen model in `lethe-registry` with its manifest: window, log position, salted
//! membership, hyperparameters, metrics, code version. The registry lives in `<data>/models`; its
//! key-encryption key is a sealed blob of the key store.
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
use lethe_ml::recommend::{evaluate_at_k, AlsModel, AlsParams, Interactions, ItemId, ItemKnn, ItemKnnParams, UserId};
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
        }
    }
}

/// Training settings.
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    pub seed: u64,
    /// Held-out interactions per subject for evaluation.
    pub holdout_per_subject: usize,
    pub k: usize,
    pub knn: ItemKnnParams,
    pub als: AlsParams,
    /// Shards of the membership, so unlearning can tell which part of the data a subject was in.
    pub shards: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            holdout_per_subject: 1,
            k: 10,
            knn: ItemKnnParams::default(),
            als: AlsParams::default(),
            shards: 8,
        }
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
        let (chosen, knn_ndcg) = match all.split_holdout(c.holdout_per_subject, c.seed) {
            Ok((train, test)) if !test.is_empty() => {
                let knn = ItemKnn::train(&train, &c.knn)?;
                let k = evaluate_at_k(&knn, &train, &test, c.k)?;
                let als = AlsModel::train(&train, &c.als, c.seed)?;
                let a = evaluate_at_k(&als, &train, &test, c.k)?;
                metrics.insert("itemknn_ndcg_at_10".to_owned(), k.ndcg);
                metrics.insert("itemknn_precision_at_10".to_owned(), k.precision);
                metrics.insert("als_ndcg_at_10".to_owned(), a.ndcg);
                metrics.insert("als_precision_at_10".to_owned(), a.precision);
                metrics.insert("evaluated_subjects".to_owned(), k.users as f64);
                (if a.ndcg > k.ndcg { "als" } else { "itemknn" }, k.ndcg.max(a.ndcg))
            }
            _ => ("itemknn", 0.0),
        };
        metrics.insert("ndcg_at_10".to_owned(), knn_ndcg);
        let distribution = drift::training_distribution(self, &subjects);
        let stored = StoredRecommender {
            algorithm: chosen.to_owned(),
            items: items.clone(),
            knn: (chosen == "itemknn").then(|| ItemKnn::train(&all, &c.knn)).transpose()?,
            als: (chosen == "als").then(|| AlsModel::train(&all, &c.als, c.seed)).transpose()?,
        };
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
            hyperparameters: json!({"knn": c.knn, "als": c.als, "holdout_per_subject": c.holdout_per_subject, "k": c.k, "seed": c.seed}),
            metrics: metrics.clone(),
            code_version: format!("lethe {}", env!("CARGO_PKG_VERSION")),
            shards,
        };
        let now = UtcMicros::now();
        let new = NewModel { name: name(), algorithm: chosen.to_owned(), manifest, metrics: metrics.clone() };
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
            algorithm: chosen.to_owned(),
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
        let ids = self.registry.containing(subject)?;
        let now = UtcMicros::now().0.to_be_bytes();
        for id in &ids {
            self.pending.insert(id.to_string().as_bytes(), &now[..])?;
        }
        self.pending.flush()?;
        Ok(ids.len())
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
        let ids: Vec<ModelId> = queued.iter().filter_map(|(id, _)| id.parse::<ModelId>().ok()).collect();
        let set = select(self.privacy.collect.store.as_ref(), &self.privacy.collect.policies)?;
        let report = if set.interactions.is_empty() {
            // Nobody is left to train on: the old versions are retired and nothing replaces them.
            let now = UtcMicros::now();
            for id in &ids {
                if self.registry.get(*id)?.is_some_and(|v| !matches!(v.status, Status::Retired { .. })) {
                    self.registry.retire(*id, RetireReason::Unlearning, now)?;
                }
            }
            None
        } else {
            Some(self.train_on(set, "system", &ids)?)
        };
        self.rotate_kek()?;
        for (id, _) in &queued {
            self.pending.remove(id.as_bytes())?;
        }
        self.pending.flush()?;
        Ok(report)
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
