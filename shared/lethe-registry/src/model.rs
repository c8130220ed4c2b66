//! A registered model version, its lifecycle status and its manifest, as values.

use std::collections::BTreeMap;
use std::fmt;

use lethe_domain::{Pseudonym, UtcMicros};

use crate::{Membership, ModelId, ModelName, RegistryError, Result, ShardInfo};

/// Why a model was retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetireReason {
    /// Another version of the same name went live.
    Superseded,
    /// A subject it was trained on was erased or withdrew consent (R-ERASE, invariant 5).
    Unlearning,
    /// It failed as a canary or live model and was taken out.
    RolledBack,
    /// An operator retired it.
    Manual,
    /// Its data window left the retention period (R-RETAIN-1).
    Expired,
}

impl RetireReason {
    /// The reason's stable name, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Superseded => "superseded",
            Self::Unlearning => "unlearning",
            Self::RolledBack => "rolled_back",
            Self::Manual => "manual",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for RetireReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a model is in its lifecycle.
///
/// ```text
/// candidate ──> canary ──> live ──> retired
///     │  ^         │                  ^
///     │  └─────────┘ (rollback)       │ any status, final
///     └──────────────────> live
/// ```
/// At most one version of a name is live and at most one is canary; a version going live retires
/// the previous live version (reason [`RetireReason::Superseded`]) in the same atomic write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Registered, serving no traffic.
    Candidate,
    /// Serving a share of the traffic, in per mille (`1..=1000`), beside the live version.
    Canary {
        /// The share of traffic in per mille.
        share_permille: u16,
    },
    /// Serving the traffic.
    Live,
    /// Out of service for good; its bytes and data key are destroyed.
    Retired {
        /// When it was retired.
        at: UtcMicros,
        /// Why.
        reason: RetireReason,
    },
}

impl Status {
    /// The status without its data.
    pub const fn kind(&self) -> StatusKind {
        match self {
            Self::Candidate => StatusKind::Candidate,
            Self::Canary { .. } => StatusKind::Canary,
            Self::Live => StatusKind::Live,
            Self::Retired { .. } => StatusKind::Retired,
        }
    }

    /// Whether the status is final.
    pub const fn is_retired(&self) -> bool {
        matches!(self, Self::Retired { .. })
    }
}

/// The kind of a [`Status`], for errors and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusKind {
    /// [`Status::Candidate`].
    Candidate,
    /// [`Status::Canary`].
    Canary,
    /// [`Status::Live`].
    Live,
    /// [`Status::Retired`].
    Retired,
}

impl fmt::Display for StatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Candidate => "candidate",
            Self::Canary => "canary",
            Self::Live => "live",
            Self::Retired => "retired",
        })
    }
}

/// What the registry knows of a model's sealed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// SHA-256, lowercase hex, of the stored sealed value (format byte, nonce, ciphertext and tag).
    pub digest: String,
    /// Length of the model bytes (the plaintext) in bytes.
    pub len: u64,
}

/// How a model was trained: what it saw, with which code and settings. Every field is plain data
/// except [`Manifest::membership`], which names the training subjects by salted tag only.
///
/// `features`, `hyperparameters` and `code_version` must not carry identifiers or pseudonyms; the
/// registry checks their shape and size, not their meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The event times the training data covered, `(from, to)`, `from <= to`.
    pub data_window: (UtcMicros, UtcMicros),
    /// The log position the training read up to (R-TRAIN-1: consent was evaluated as of here).
    pub log_position: u64,
    /// How many distinct subjects the model was trained on; equals `membership.len()`.
    pub subjects: u64,
    /// The training subjects, as salted tags.
    pub membership: Membership,
    /// Names of the input features.
    pub features: Vec<String>,
    /// The training settings.
    pub hyperparameters: serde_json::Value,
    /// Offline evaluation figures computed at training time.
    pub metrics: BTreeMap<String, f64>,
    /// The build that trained it (a git revision or a version).
    pub code_version: String,
    /// Empty, or the partition of the subjects into shards: exactly
    /// `membership.shard_counts(shards.len())`.
    pub shards: Vec<ShardInfo>,
}

/// Most feature names in a manifest.
pub const MAX_FEATURES: usize = 10_000;
/// Longest feature name, metric name or code version, in bytes.
pub const MAX_LABEL_LEN: usize = 128;
/// Most metrics in one map.
pub const MAX_METRICS: usize = 1_000;
/// Most shards.
pub const MAX_SHARDS: usize = 65_536;
/// Longest encoded hyperparameters, in bytes.
pub const MAX_HYPERPARAMETERS_LEN: usize = 64 * 1024;

fn is_label(s: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&s.len()) && !s.chars().any(char::is_control)
}

impl Manifest {
    /// The shard of any subject (member or not); `None` when the model is not sharded or its
    /// membership is scrubbed.
    pub fn shard_of(&self, p: &Pseudonym) -> Option<u32> {
        let n = u32::try_from(self.shards.len()).ok()?;
        self.membership.shard_of(p, n)
    }

    /// Checks the rules a manifest must meet to be registered.
    ///
    /// # Errors
    /// [`RegistryError::InvalidManifest`] or [`RegistryError::InvalidMetric`] naming the broken rule.
    pub fn validate(&self) -> Result<()> {
        let bad = |why| Err(RegistryError::InvalidManifest(why));
        if self.data_window.0 > self.data_window.1 {
            return bad("data window ends before it starts");
        }
        if self.membership.is_scrubbed() {
            return bad("membership is scrubbed");
        }
        if self.subjects != self.membership.len() {
            return bad("subject count differs from the membership");
        }
        if self.features.len() > MAX_FEATURES {
            return bad("too many features");
        }
        if !self.features.iter().all(|f| is_label(f)) {
            return bad("feature name empty, too long or with control characters");
        }
        if !is_label(&self.code_version) {
            return bad("code version empty, too long or with control characters");
        }
        let hp =
            serde_json::to_vec(&self.hyperparameters).map_err(|_| RegistryError::InvalidManifest("hyperparameters"))?;
        if hp.len() > MAX_HYPERPARAMETERS_LEN {
            return bad("hyperparameters too large");
        }
        if self.shards.len() > MAX_SHARDS {
            return bad("too many shards");
        }
        if !self.shards.is_empty() {
            let n = u32::try_from(self.shards.len()).map_err(|_| RegistryError::InvalidManifest("too many shards"))?;
            if self.shards != self.membership.shard_counts(n) {
                return bad("shards differ from the membership's partition");
            }
        }
        validate_metrics(&self.metrics)
    }
}

/// Checks metric names and values.
pub(crate) fn validate_metrics(metrics: &BTreeMap<String, f64>) -> Result<()> {
    if metrics.len() > MAX_METRICS {
        return Err(RegistryError::InvalidMetric("too many metrics"));
    }
    for (name, value) in metrics {
        if !is_label(name) {
            return Err(RegistryError::InvalidMetric("name empty, too long or with control characters"));
        }
        if !value.is_finite() {
            return Err(RegistryError::InvalidMetric("value is not finite"));
        }
    }
    Ok(())
}

/// What a training run hands to [`crate::Registry::register`], besides the model bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModel {
    /// The model's name; the version number is assigned per name.
    pub name: ModelName,
    /// The algorithm, such as `als`, `itemknn`, `gbm`, `logistic`.
    pub algorithm: String,
    /// How it was trained.
    pub manifest: Manifest,
    /// Evaluation figures to compare versions by (offline or from a shadow run).
    pub metrics: BTreeMap<String, f64>,
}

/// One registered model version.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    /// Its id.
    pub id: ModelId,
    /// Its name.
    pub name: ModelName,
    /// Its version among the versions of its name: 1, 2, 3…
    pub version: u32,
    /// The algorithm label.
    pub algorithm: String,
    /// Where it is in its lifecycle.
    pub status: Status,
    /// When it was registered.
    pub created_at: UtcMicros,
    /// How it was trained.
    pub manifest: Manifest,
    /// Evaluation figures.
    pub metrics: BTreeMap<String, f64>,
    /// Its sealed bytes (destroyed once retired; the digest stays as a record).
    pub blob: BlobInfo,
}
