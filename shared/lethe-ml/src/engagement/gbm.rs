//! Gradient-boosted trees with logistic loss through forust-ml (XGBoost's algorithm, histogram splits).
//!
//! Training runs single-threaded: the box this runs on is small, and it keeps results independent of
//! thread scheduling.

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

use super::{sigmoid, EngagementModel, ModelKind, MODEL_FORMAT_VERSION};
use crate::dataset::{EngagementDataset, FeatureSchema};
use crate::error::{ensure_non_negative, ensure_positive, invalid, MlError, Result};

/// Hyperparameters of [`GbmModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbmParams {
    /// Number of trees. Default 100.
    pub iterations: usize,
    /// Shrinkage applied to each tree. Default 0.1.
    pub learning_rate: f64,
    /// Maximum tree depth. Default 4.
    pub max_depth: usize,
    /// L2 penalty on leaf weights (XGBoost's λ). Default 1.0.
    pub l2: f64,
    /// Minimum loss reduction to split (XGBoost's γ). Default 0.0.
    pub gamma: f64,
    /// Minimum hessian sum in a leaf. Default 1.0.
    pub min_leaf_weight: f64,
    /// Histogram bins per feature, 2 to 65535. Default 256.
    pub nbins: u16,
    /// Share of rows sampled per tree, in (0, 1]. Default 1.0.
    pub subsample: f64,
    /// Share of features sampled per tree, in (0, 1]. Default 1.0.
    pub colsample_bytree: f64,
}

impl Default for GbmParams {
    fn default() -> Self {
        Self {
            iterations: 100,
            learning_rate: 0.1,
            max_depth: 4,
            l2: 1.0,
            gamma: 0.0,
            min_leaf_weight: 1.0,
            nbins: 256,
            subsample: 1.0,
            colsample_bytree: 1.0,
        }
    }
}

impl GbmParams {
    fn validate(&self) -> Result<()> {
        if self.iterations == 0 {
            return Err(invalid("gbm.iterations", "must be at least 1"));
        }
        if self.max_depth == 0 {
            return Err(invalid("gbm.max_depth", "must be at least 1"));
        }
        if self.nbins < 2 {
            return Err(invalid("gbm.nbins", "must be at least 2"));
        }
        ensure_positive(self.learning_rate, "gbm.learning_rate")?;
        ensure_non_negative(self.l2, "gbm.l2")?;
        ensure_non_negative(self.gamma, "gbm.gamma")?;
        ensure_non_negative(self.min_leaf_weight, "gbm.min_leaf_weight")?;
        for (value, name) in [(self.subsample, "gbm.subsample"), (self.colsample_bytree, "gbm.colsample_bytree")] {
            if !(value > 0.0 && value <= 1.0) {
                return Err(invalid(name, "must lie in (0, 1]"));
            }
        }
        Ok(())
    }
}

fn backend(e: forust_ml::errors::ForustError) -> MlError {
    MlError::Backend { library: "forust-ml", message: e.to_string() }
}

/// A trained gradient-boosted tree ensemble.
#[derive(Serialize, Deserialize)]
pub struct GbmModel {
    pub(crate) format_version: u32,
    schema: FeatureSchema,
    booster: GradientBooster,
}

impl std::fmt::Debug for GbmModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GbmModel")
            .field("format_version", &self.format_version)
            .field("schema", &self.schema)
            .field("trees", &self.booster.trees.len())
            .finish_non_exhaustive()
    }
}

impl GbmModel {
    /// Fits the ensemble; `seed` drives row and column sampling.
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`], [`MlError::SingleClass`], [`MlError::Backend`].
    pub fn train(dataset: &EngagementDataset, params: &GbmParams, seed: u64) -> Result<Self> {
        params.validate()?;
        if !dataset.has_both_classes() {
            return Err(MlError::SingleClass);
        }
        let mut booster = GradientBooster::default()
            .set_objective_type(ObjectiveType::LogLoss)
            .set_iterations(params.iterations)
            .set_learning_rate(params.learning_rate as f32)
            .set_max_depth(params.max_depth)
            .set_l2(params.l2 as f32)
            .set_gamma(params.gamma as f32)
            .set_min_leaf_weight(params.min_leaf_weight as f32)
            .set_nbins(params.nbins)
            .set_subsample(params.subsample as f32)
            .set_colsample_bytree(params.colsample_bytree)
            .set_initialize_base_score(true)
            .set_parallel(false)
            .set_seed(seed);
        let columns = dataset.column_major();
        let matrix = Matrix::new(&columns, dataset.len(), dataset.width());
        let y: Vec<f64> = dataset.labels().iter().map(|&l| if l { 1.0 } else { 0.0 }).collect();
        booster.fit_unweighted(&matrix, &y, None).map_err(backend)?;
        Ok(Self { format_version: MODEL_FORMAT_VERSION, schema: dataset.schema().clone(), booster })
    }

    /// The number of trees.
    #[must_use]
    pub fn trees(&self) -> usize {
        self.booster.trees.len()
    }

    fn log_odds(&self, columns: &[f64], rows: usize) -> Vec<f64> {
        self.booster.predict(&Matrix::new(columns, rows, self.schema.width()), false)
    }
}

impl EngagementModel for GbmModel {
    fn kind(&self) -> ModelKind {
        ModelKind::Gbm
    }

    fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    fn predict_proba(&self, x: &[f64]) -> Result<f64> {
        self.schema.check(x)?;
        // One row: column-major and row-major coincide.
        let z = self.log_odds(x, 1).first().copied().ok_or(MlError::Numerical { what: "gbm prediction" })?;
        Ok(sigmoid(z))
    }

    fn predict_rows(&self, rows: &[&[f64]]) -> Result<Vec<f64>> {
        let width = self.schema.width();
        let mut columns = vec![0.0; rows.len() * width];
        for (r, x) in rows.iter().enumerate() {
            self.schema.check(x)?;
            for (c, v) in x.iter().enumerate() {
                columns[c * rows.len() + r] = *v;
            }
        }
        Ok(self.log_odds(&columns, rows.len()).into_iter().map(sigmoid).collect())
    }

    fn predict_dataset(&self, dataset: &EngagementDataset) -> Result<Vec<f64>> {
        super::ensure_same_schema(&self.schema, dataset.schema())?;
        Ok(self.log_odds(&dataset.column_major(), dataset.len()).into_iter().map(sigmoid).collect())
    }
}
