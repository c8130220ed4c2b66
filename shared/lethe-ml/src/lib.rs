//! Lethe's machine-learning layer, pure compute: in-memory datasets in, trained models and metrics out.
//!
//! - [`metrics`]: AUC-ROC, log loss, RMSE, NDCG / precision / recall at k.
//! - [`validation`]: seeded k-fold and grouped k-fold, grid search, early stopping.
//! - [`engagement`]: click probability from a dense feature vector (logistic regression, FTRL, GBM).
//! - [`recommend`]: item-kNN, implicit ALS, TF-IDF content similarity, popularity by segment.
//! - [`synthetic`]: seeded data with known structure for tests and benchmarks.
//!
//! **Invariants:** no IO, no clock, no global state. Every random choice comes from a seed given by the
//! caller ([`seeded_rng`], ChaCha8), so training twice with the same inputs and seed gives bit-identical
//! models on the same build and machine. Bad input (empty data, NaN, mismatched lengths, unknown ids)
//! gives an [`MlError`], never a panic. Trained models derive `serde` traits and carry
//! [`engagement::MODEL_FORMAT_VERSION`].
//!
//! ```
//! use lethe_ml::engagement::{train, EngagementModel, EngagementParams, ModelKind};
//! use lethe_ml::synthetic::{engagement, EngagementConfig};
//!
//! let data = engagement(&EngagementConfig { rows: 300, ..EngagementConfig::default() }, 1)?.dataset;
//! let model = train(ModelKind::Logistic, &data, &EngagementParams::default(), 7)?;
//! let p = model.predict_proba(data.row(0).unwrap_or_default())?;
//! assert!((0.0..=1.0).contains(&p));
//! assert_eq!(model.predict_proba(&[1.0]).unwrap_err().code(), "width_mismatch");
//! # Ok::<(), lethe_ml::MlError>(())
//! ```
//!
//! **Privacy note:** models are projections of the log. ALS user factors and any model trained on a
//! subject's events are derived data about that subject; erasure must retrain or drop them.

#![forbid(unsafe_code)]

mod dataset;
pub mod engagement;
mod error;
pub mod metrics;
pub mod recommend;
pub mod synthetic;
pub mod validation;

pub use dataset::{EngagementDataset, FeatureSchema};
pub use error::{MlError, Result};

/// The crate's random number generator (ChaCha8: portable and reproducible across platforms).
pub type Rng = rand_chacha::ChaCha8Rng;

/// A generator seeded from `seed`; the only source of randomness in this crate.
#[must_use]
pub fn seeded_rng(seed: u64) -> Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}
