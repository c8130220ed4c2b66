//! FTRL-proximal logistic regression through linfa-ftrl: trained in seeded passes over the data, and
//! updatable online one observed outcome at a time.
//!
//! linfa-ftrl fits no intercept, so the model appends a constant 1.0 feature internally.

use linfa::traits::FitWith;
use linfa::{Dataset, ParamGuard};
use linfa_ftrl::Ftrl;
use ndarray::{Array1, Array2};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{sigmoid, EngagementModel, ModelKind, MODEL_FORMAT_VERSION};
use crate::dataset::{EngagementDataset, FeatureSchema};
use crate::error::{ensure_non_negative, ensure_positive, invalid, MlError, Result};
use crate::metrics::log_loss;
use crate::seeded_rng;
use crate::validation::{EarlyStopping, Goal, StopDecision};

/// Early stopping for FTRL epochs: hold out a share of the rows and stop when their log loss has not
/// improved for `patience` epochs; the best epoch's model is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutStopping {
    /// Share of rows held out, in (0, 0.5]. The held-out rows are not trained on.
    pub holdout_fraction: f64,
    /// Epochs without improvement before stopping (at least 1).
    pub patience: usize,
}

/// Hyperparameters of [`FtrlModel`] (McMahan et al. 2013, per-coordinate learning rates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FtrlParams {
    /// Learning-rate scale α. Default 0.1.
    pub alpha: f64,
    /// Learning-rate smoothing β. Default 1.0.
    pub beta: f64,
    /// L1 strength λ₁ (sparsity). Default 0.0.
    pub l1: f64,
    /// L2 strength λ₂. Default 1.0.
    pub l2: f64,
    /// Passes over the training rows (each in a fresh seeded order). Default 5.
    pub epochs: usize,
    /// Optional early stopping on a held-out share of the rows. Default none.
    pub early_stopping: Option<HoldoutStopping>,
}

impl Default for FtrlParams {
    fn default() -> Self {
        Self { alpha: 0.1, beta: 1.0, l1: 0.0, l2: 1.0, epochs: 5, early_stopping: None }
    }
}

impl FtrlParams {
    fn validate(&self) -> Result<()> {
        ensure_positive(self.alpha, "ftrl.alpha")?;
        ensure_non_negative(self.beta, "ftrl.beta")?;
        ensure_non_negative(self.l1, "ftrl.l1")?;
        ensure_non_negative(self.l2, "ftrl.l2")?;
        if self.epochs == 0 {
            return Err(invalid("ftrl.epochs", "must be at least 1"));
        }
        if let Some(stop) = &self.early_stopping {
            if !(stop.holdout_fraction > 0.0 && stop.holdout_fraction <= 0.5) {
                return Err(invalid("ftrl.early_stopping.holdout_fraction", "must lie in (0, 0.5]"));
            }
            if stop.patience == 0 {
                return Err(invalid("ftrl.early_stopping.patience", "must be at least 1"));
            }
        }
        Ok(())
    }

    /// linfa's parameter object; `rng` only seeds the initial state of a new model.
    fn linfa(&self, rng: ChaCha8Rng) -> linfa_ftrl::FtrlParams<f64, ChaCha8Rng> {
        Ftrl::params_with_rng(rng).alpha(self.alpha).beta(self.beta).l1_ratio(self.l1).l2_ratio(self.l2)
    }
}

fn backend(e: linfa_ftrl::FtrlError) -> MlError {
    MlError::Backend { library: "linfa-ftrl", message: e.to_string() }
}

/// A trained FTRL-proximal model; keeps its optimizer state (`z`, `n`) so it can go on learning.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FtrlModel {
    pub(crate) format_version: u32,
    schema: FeatureSchema,
    params: FtrlParams,
    /// Over the schema's features plus a trailing constant 1.0 (the intercept).
    state: Ftrl<f64>,
}

impl FtrlModel {
    /// Trains `params.epochs` passes over the rows, one example per update, in an order shuffled afresh
    /// each epoch from `seed`. `seed` also draws linfa-ftrl's initial `z`.
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`], [`MlError::SingleClass`], [`MlError::Backend`].
    pub fn train(dataset: &EngagementDataset, params: &FtrlParams, seed: u64) -> Result<Self> {
        params.validate()?;
        if !dataset.has_both_classes() {
            return Err(MlError::SingleClass);
        }
        let mut rng = seeded_rng(seed);
        let init_rng = seeded_rng(seed ^ 0x5eed_f7a1);
        let linfa_params = params.linfa(init_rng);
        let valid = linfa_params.check_ref().map_err(backend)?;
        let mut model = Self {
            format_version: MODEL_FORMAT_VERSION,
            schema: dataset.schema().clone(),
            params: params.clone(),
            state: Ftrl::new(valid.clone(), dataset.width() + 1),
        };

        let mut rows: Vec<usize> = (0..dataset.len()).collect();
        let (train_rows, holdout) = match &params.early_stopping {
            None => (rows, None),
            Some(stop) => {
                rows.shuffle(&mut rng);
                let held = ((dataset.len() as f64 * stop.holdout_fraction).round() as usize).max(1);
                if held >= dataset.len() {
                    return Err(MlError::NotEnoughData { what: "rows", needed: 2, found: dataset.len() });
                }
                let holdout = dataset.subset(&rows[..held])?;
                let stopper = EarlyStopping::new(Goal::Minimize, stop.patience, 0.0)?;
                (rows[held..].to_vec(), Some((holdout, stopper)))
            }
        };
        let mut holdout = holdout;
        let mut best: Option<Ftrl<f64>> = None;
        let mut order = train_rows;
        for _ in 0..params.epochs {
            order.shuffle(&mut rng);
            for &i in &order {
                let row = dataset.row(i).ok_or(MlError::OutOfRange { what: "row index" })?;
                model.learn(row, dataset.labels()[i])?;
            }
            if let Some((set, stopper)) = holdout.as_mut() {
                let loss = log_loss(set.labels(), &model.predict_dataset(set)?)?;
                match stopper.observe(loss)? {
                    StopDecision::Improved => best = Some(model.state.clone()),
                    StopDecision::Continue => {}
                    StopDecision::Stop => break,
                }
            }
        }
        if let Some(state) = best {
            model.state = state;
        }
        Ok(model)
    }

    /// One FTRL step on an observed outcome, without validating `x`.
    fn learn(&mut self, x: &[f64], engaged: bool) -> Result<()> {
        let width = x.len() + 1;
        let mut records = Array2::<f64>::ones((1, width));
        records.iter_mut().zip(x).for_each(|(r, v)| *r = *v);
        let data = Dataset::new(records, Array1::from_vec(vec![engaged]));
        // The RNG is unused when a model is passed in.
        let params = self.params.linfa(seeded_rng(0));
        let valid = params.check_ref().map_err(backend)?;
        self.state = valid.fit_with(Some(self.state.clone()), &data).map_err(backend)?;
        Ok(())
    }

    /// Learns from one observed outcome (online update).
    ///
    /// # Errors
    /// [`MlError::WidthMismatch`], [`MlError::NonFinite`]; the model is unchanged on error.
    pub fn update(&mut self, x: &[f64], engaged: bool) -> Result<()> {
        self.schema.check(x)?;
        self.learn(x, engaged)
    }

    /// Learns from every row of `dataset`, in row order.
    ///
    /// # Errors
    /// [`MlError::InvalidSchema`] if the dataset's schema differs from the model's.
    pub fn update_batch(&mut self, dataset: &EngagementDataset) -> Result<()> {
        super::ensure_same_schema(&self.schema, dataset.schema())?;
        for (i, &label) in dataset.labels().iter().enumerate() {
            self.learn(dataset.row(i).unwrap_or_default(), label)?;
        }
        Ok(())
    }

    /// The current weights on the schema's features, followed by the intercept.
    #[must_use]
    pub fn weights(&self) -> Vec<f64> {
        self.state.get_weights().to_vec()
    }

    /// The hyperparameters.
    #[must_use]
    pub fn params(&self) -> &FtrlParams {
        &self.params
    }
}

impl EngagementModel for FtrlModel {
    fn kind(&self) -> ModelKind {
        ModelKind::Ftrl
    }

    fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    fn predict_proba(&self, x: &[f64]) -> Result<f64> {
        self.schema.check(x)?;
        let w = self.state.get_weights();
        let (features, intercept) =
            w.as_slice().and_then(|s| s.split_last().map(|(b, f)| (f, *b))).unwrap_or((&[], 0.0));
        Ok(sigmoid(super::linear(features, intercept, x)))
    }
}
