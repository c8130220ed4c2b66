//! Engagement (click) probability for a dense feature vector describing (user features, context,
//! candidate): logistic regression, FTRL-proximal for online updates, and gradient-boosted trees.
//!
//! Every trained model carries the [`FeatureSchema`] it was trained with, refuses vectors of another
//! width or with NaN, serializes with serde for a model registry, and is bit-for-bit reproducible from
//! the same data, parameters and seed.

mod ftrl;
mod gbm;
mod logistic;

use serde::{Deserialize, Serialize};

pub use ftrl::{FtrlModel, FtrlParams, HoldoutStopping};
pub use gbm::{GbmModel, GbmParams};
pub use logistic::{LogisticModel, LogisticParams};

use crate::dataset::{EngagementDataset, FeatureSchema};
use crate::error::{MlError, Result};
use crate::metrics::auc_roc;
use crate::validation::Fold;

/// The version of the serialized model format written by this crate. Stored in every model.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// The learning algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// L2-regularized logistic regression (linfa-logistic, L-BFGS) on standardized features.
    Logistic,
    /// FTRL-proximal (linfa-ftrl), trainable online one example at a time.
    Ftrl,
    /// Gradient-boosted trees with logistic loss (forust-ml).
    Gbm,
}

/// Hyperparameters for every kind; [`train`] reads the part for the kind it trains.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngagementParams {
    /// For [`ModelKind::Logistic`].
    pub logistic: LogisticParams,
    /// For [`ModelKind::Ftrl`].
    pub ftrl: FtrlParams,
    /// For [`ModelKind::Gbm`].
    pub gbm: GbmParams,
}

/// A trained engagement model.
pub trait EngagementModel {
    /// The algorithm.
    fn kind(&self) -> ModelKind;

    /// The features the model expects, in order.
    fn schema(&self) -> &FeatureSchema;

    /// The probability of engagement for one feature vector.
    ///
    /// # Errors
    /// [`MlError::WidthMismatch`] if `x` does not match [`EngagementModel::schema`],
    /// [`MlError::NonFinite`] for NaN or infinite features.
    fn predict_proba(&self, x: &[f64]) -> Result<f64>;

    /// The probability of engagement for each of `rows` (the candidates of one decision): the same
    /// values as [`EngagementModel::predict_proba`] row by row, in one pass where the model can.
    ///
    /// # Errors
    /// As [`EngagementModel::predict_proba`], for any row.
    fn predict_rows(&self, rows: &[&[f64]]) -> Result<Vec<f64>> {
        rows.iter().map(|x| self.predict_proba(x)).collect()
    }

    /// The probability of engagement for every row of a dataset.
    ///
    /// # Errors
    /// [`MlError::InvalidSchema`] if the dataset's schema is not the model's.
    fn predict_dataset(&self, dataset: &EngagementDataset) -> Result<Vec<f64>> {
        ensure_same_schema(self.schema(), dataset.schema())?;
        (0..dataset.len()).map(|i| self.predict_proba(dataset.row(i).unwrap_or_default())).collect()
    }
}

pub(crate) fn ensure_same_schema(model: &FeatureSchema, data: &FeatureSchema) -> Result<()> {
    if model == data {
        Ok(())
    } else {
        Err(MlError::InvalidSchema { reason: "the dataset's features differ from the model's" })
    }
}

/// Numerically stable logistic function.
pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `w · x + b`.
pub(crate) fn linear(weights: &[f64], intercept: f64, x: &[f64]) -> f64 {
    weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>() + intercept
}

/// A trained model of any kind; the unit a model registry stores (serde, externally tagged by kind).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainedModel {
    /// Logistic regression.
    Logistic(LogisticModel),
    /// FTRL-proximal.
    Ftrl(FtrlModel),
    /// Gradient-boosted trees (boxed: the booster is much larger than the linear models).
    Gbm(Box<GbmModel>),
}

impl TrainedModel {
    /// The serialized format version the model was written with.
    #[must_use]
    pub fn format_version(&self) -> u32 {
        match self {
            Self::Logistic(m) => m.format_version,
            Self::Ftrl(m) => m.format_version,
            Self::Gbm(m) => m.format_version,
        }
    }

    fn inner(&self) -> &dyn EngagementModel {
        match self {
            Self::Logistic(m) => m,
            Self::Ftrl(m) => m,
            Self::Gbm(m) => m.as_ref(),
        }
    }
}

impl EngagementModel for TrainedModel {
    fn kind(&self) -> ModelKind {
        self.inner().kind()
    }

    fn schema(&self) -> &FeatureSchema {
        self.inner().schema()
    }

    fn predict_proba(&self, x: &[f64]) -> Result<f64> {
        self.inner().predict_proba(x)
    }

    fn predict_rows(&self, rows: &[&[f64]]) -> Result<Vec<f64>> {
        self.inner().predict_rows(rows)
    }

    fn predict_dataset(&self, dataset: &EngagementDataset) -> Result<Vec<f64>> {
        self.inner().predict_dataset(dataset)
    }
}

/// Trains a model of `kind` on `dataset` with `params` (only the part for `kind` is read).
///
/// `seed` drives every random choice (FTRL's initial state and example order, the GBM's sampling), so the
/// same inputs give a bit-identical model. Logistic regression uses no randomness.
///
/// # Errors
/// [`MlError::SingleClass`] if the labels do not hold both classes, [`MlError::InvalidParameter`] for
/// hyperparameters out of range, [`MlError::Backend`] if the learning library fails.
pub fn train(
    kind: ModelKind,
    dataset: &EngagementDataset,
    params: &EngagementParams,
    seed: u64,
) -> Result<TrainedModel> {
    if !dataset.has_both_classes() {
        return Err(MlError::SingleClass);
    }
    Ok(match kind {
        ModelKind::Logistic => TrainedModel::Logistic(LogisticModel::train(dataset, &params.logistic)?),
        ModelKind::Ftrl => TrainedModel::Ftrl(FtrlModel::train(dataset, &params.ftrl, seed)?),
        ModelKind::Gbm => TrainedModel::Gbm(Box::new(GbmModel::train(dataset, &params.gbm, seed)?)),
    })
}

/// Trains on each fold's training rows and returns the AUC on its test rows, in fold order.
///
/// # Errors
/// As [`train`] and [`auc_roc`] (for example [`MlError::SingleClass`] when a test fold holds one class),
/// and [`MlError::OutOfRange`] for fold indices past the dataset.
pub fn cross_validate_auc(
    kind: ModelKind,
    dataset: &EngagementDataset,
    params: &EngagementParams,
    folds: &[Fold],
    seed: u64,
) -> Result<Vec<f64>> {
    folds
        .iter()
        .map(|fold| {
            let train_set = dataset.subset(&fold.train)?;
            let test_set = dataset.subset(&fold.test)?;
            let model = train(kind, &train_set, params, seed)?;
            auc_roc(test_set.labels(), &model.predict_dataset(&test_set)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-1000.0) >= 0.0 && sigmoid(-1000.0) < 1e-300);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-15);
    }
}
