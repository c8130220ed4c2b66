//! L2-regularized logistic regression through linfa-logistic (L-BFGS), fitted on standardized features
//! and stored as plain weights on the raw features.

use linfa::traits::Fit;
use linfa::Dataset;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::{linear, sigmoid, EngagementModel, ModelKind, MODEL_FORMAT_VERSION};
use crate::dataset::{EngagementDataset, FeatureSchema};
use crate::error::{ensure_positive, invalid, MlError, Result};

/// Hyperparameters of [`LogisticModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticParams {
    /// L2 penalty `α` in linfa's objective `Σ logloss + α/2 · ‖w‖²` (a sum over rows, not a mean), on
    /// standardized features; the intercept is not penalized. Default 1.0.
    pub l2: f64,
    /// L-BFGS iteration limit. Default 200.
    pub max_iterations: u64,
    /// L-BFGS stops when the gradient norm falls below this. Default 1e-6.
    pub gradient_tolerance: f64,
}

impl Default for LogisticParams {
    fn default() -> Self {
        Self { l2: 1.0, max_iterations: 200, gradient_tolerance: 1e-6 }
    }
}

/// A trained logistic regression: `p = σ(w · x + b)` on raw features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticModel {
    pub(crate) format_version: u32,
    schema: FeatureSchema,
    weights: Vec<f64>,
    intercept: f64,
}

impl LogisticModel {
    /// Fits the model. Features are standardized (mean 0, sd 1; constant columns are only centred) for
    /// the optimizer, and the weights are mapped back to raw features afterwards.
    ///
    /// # Errors
    /// [`MlError::SingleClass`], [`MlError::InvalidParameter`], [`MlError::Backend`].
    pub fn train(dataset: &EngagementDataset, params: &LogisticParams) -> Result<Self> {
        ensure_positive(params.l2, "logistic.l2")?;
        ensure_positive(params.gradient_tolerance, "logistic.gradient_tolerance")?;
        if params.max_iterations == 0 {
            return Err(invalid("logistic.max_iterations", "must be at least 1"));
        }
        if !dataset.has_both_classes() {
            return Err(MlError::SingleClass);
        }
        let (n, w) = (dataset.len(), dataset.width());
        let mut mean = vec![0.0; w];
        let mut scale = vec![0.0; w];
        for i in 0..n {
            for (j, v) in dataset.values()[i * w..(i + 1) * w].iter().enumerate() {
                mean[j] += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        for i in 0..n {
            for (j, v) in dataset.values()[i * w..(i + 1) * w].iter().enumerate() {
                scale[j] += (v - mean[j]) * (v - mean[j]);
            }
        }
        for s in &mut scale {
            let sd = (*s / n as f64).sqrt();
            *s = if sd > 1e-12 { sd } else { 1.0 };
        }
        let x = Array2::from_shape_fn((n, w), |(i, j)| (dataset.values()[i * w + j] - mean[j]) / scale[j]);
        let y = Array1::from_vec(dataset.labels().to_vec());
        let fitted = LogisticRegression::default()
            .alpha(params.l2)
            .max_iterations(params.max_iterations)
            .gradient_tolerance(params.gradient_tolerance)
            .with_intercept(true)
            .fit(&Dataset::new(x, y))
            .map_err(|e| match e {
                linfa_logistic::error::Error::TooFewClasses => MlError::SingleClass,
                other => MlError::Backend { library: "linfa-logistic", message: other.to_string() },
            })?;
        // linfa-logistic models the probability of the *more frequent* label (its "positive" class);
        // flip the sign when that is `false`, so the model always gives P(engaged).
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        // σ(Σ w_j (x_j − m_j)/s_j + b) = σ(Σ (w_j/s_j) x_j + b − Σ w_j m_j / s_j)
        let standardized = fitted.params().mapv(|v| sign * v);
        let weights: Vec<f64> = (0..w).map(|j| standardized[j] / scale[j]).collect();
        let intercept = sign * fitted.intercept() - (0..w).map(|j| standardized[j] * mean[j] / scale[j]).sum::<f64>();
        if !intercept.is_finite() || weights.iter().any(|v| !v.is_finite()) {
            return Err(MlError::Numerical { what: "logistic regression" });
        }
        Ok(Self { format_version: MODEL_FORMAT_VERSION, schema: dataset.schema().clone(), weights, intercept })
    }

    /// The weights on the raw features, in schema order.
    #[must_use]
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The intercept.
    #[must_use]
    pub fn intercept(&self) -> f64 {
        self.intercept
    }
}

impl EngagementModel for LogisticModel {
    fn kind(&self) -> ModelKind {
        ModelKind::Logistic
    }

    fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    fn predict_proba(&self, x: &[f64]) -> Result<f64> {
        self.schema.check(x)?;
        Ok(sigmoid(linear(&self.weights, self.intercept, x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// linfa-logistic's "positive" class is the more frequent label; the model must give P(true)
    /// either way.
    #[test]
    fn probability_is_of_engagement_whichever_label_is_more_frequent() {
        let schema = FeatureSchema::new(["x"]).unwrap();
        let xs: Vec<Vec<f64>> = (0..40).map(|i| vec![f64::from(i) / 4.0]).collect();
        for threshold in [3.0, 7.0] {
            // threshold 3 → 28 of 40 positive (majority); threshold 7 → 12 of 40 (minority)
            let labels: Vec<bool> = xs.iter().map(|x| x[0] > threshold).collect();
            let ds = EngagementDataset::new(schema.clone(), &xs, labels).unwrap();
            let m = LogisticModel::train(&ds, &LogisticParams { l2: 0.01, ..LogisticParams::default() }).unwrap();
            assert!(m.weights()[0] > 0.0, "threshold {threshold}: {:?}", m.weights());
            let (high, low) = (m.predict_proba(&[9.75]).unwrap(), m.predict_proba(&[0.0]).unwrap());
            assert!(high > 0.8 && low < 0.2, "threshold {threshold}: p(9.75) = {high}, p(0) = {low}");
        }
    }
}
