//! LinUCB with a shared parameter vector (Li et al. 2010, "disjoint" model with one arm), and exact
//! unlearning.
//!
//! Each candidate (banner, recommendation variant) is described by a feature vector `x` of dimension `d`
//! that already mixes visitor context and candidate features. The bandit keeps the ridge-regression
//! statistics
//!
//! ```text
//! A = λI + Σ x xᵀ        b = Σ r x        θ = A⁻¹ b
//! ```
//!
//! and scores a candidate by its upper confidence bound `θᵀx + α·√(xᵀA⁻¹x)`. `A⁻¹` is maintained by
//! Sherman–Morrison rank-one updates in `O(d²)`, so learning never inverts a matrix.
//!
//! **Unlearning (R-ERASE-7).** [`LinUcb::remove`] subtracts one earlier observation exactly:
//! `A −= x xᵀ`, `b −= r x`, and `A⁻¹` by the Sherman–Morrison downdate. The statistics are sums, so the
//! result is the model that never saw the observation, up to floating-point rounding. When the downdate
//! is ill-conditioned (`1 − xᵀA⁻¹x` small) `A⁻¹` is recomputed from `A` by Cholesky factorization
//! instead, and removing the last observation resets the model to its prior exactly.

use serde::{Deserialize, Serialize};

use crate::error::{ensure_finite, invalid, BanditError, Result};
use crate::linalg::{cholesky_inverse, dot, mat_vec, scaled_identity};

/// The largest feature dimension accepted; a model holds `2·d²` numbers.
pub const MAX_DIMENSION: usize = 1024;

/// The version of [`LinUcb`]'s serialized form; deserialization rejects any other.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// Below this value of `1 − xᵀA⁻¹x` the Sherman–Morrison downdate would amplify rounding errors by
/// more than 10⁴, so [`LinUcb::remove`] recomputes `A⁻¹` from `A` instead.
const DOWNDATE_MIN_DENOMINATOR: f64 = 1e-4;

/// Relative tolerance when checking that removing the last observation returns `A` to `λI` and `b` to 0.
const RESET_TOLERANCE: f64 = 1e-8;

/// A linear contextual bandit over candidate feature vectors: ridge regression with regularization `λ`
/// and an exploration bonus `α·√(xᵀA⁻¹x)`.
///
/// ```
/// use lethe_bandit::LinUcb;
///
/// let mut bandit = LinUcb::new(2, 1.0, 0.0)?;
/// bandit.update(&[1.0, 0.0], 1.0)?;
/// // θ = A⁻¹b = [1/2, 0]: ridge shrinks the single click towards zero.
/// assert!((bandit.expected(&[1.0, 0.0])? - 0.5).abs() < 1e-12);
/// # Ok::<(), lethe_bandit::BanditError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LinUcbState", into = "LinUcbState")]
pub struct LinUcb {
    dimension: usize,
    lambda: f64,
    alpha: f64,
    observations: u64,
    /// `A`, row-major `d × d`.
    a: Vec<f64>,
    /// `A⁻¹`, row-major `d × d`, exactly symmetric.
    a_inv: Vec<f64>,
    /// `b`.
    b: Vec<f64>,
    /// `θ = A⁻¹ b`, cached; always recomputed from `a_inv` and `b`.
    theta: Vec<f64>,
}

impl LinUcb {
    /// A bandit that has seen nothing: `A = λI`, `b = 0`.
    ///
    /// # Errors
    /// [`BanditError::InvalidParameter`] unless `1 ≤ dimension ≤ MAX_DIMENSION`, `lambda` is finite and
    /// positive, and `alpha` is finite and not negative (`alpha = 0` is greedy).
    pub fn new(dimension: usize, lambda: f64, alpha: f64) -> Result<Self> {
        check_parameters(dimension, lambda, alpha)?;
        Ok(Self::prior(dimension, lambda, alpha))
    }

    fn prior(dimension: usize, lambda: f64, alpha: f64) -> Self {
        Self {
            dimension,
            lambda,
            alpha,
            observations: 0,
            a: scaled_identity(dimension, lambda),
            a_inv: scaled_identity(dimension, 1.0 / lambda),
            b: vec![0.0; dimension],
            theta: vec![0.0; dimension],
        }
    }

    /// The feature dimension `d`.
    #[must_use]
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// The ridge regularization `λ`.
    #[must_use]
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// The exploration weight `α`.
    #[must_use]
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// How many observations the model currently holds (updates minus removals).
    #[must_use]
    pub fn observations(&self) -> u64 {
        self.observations
    }

    /// The ridge estimate `θ = A⁻¹ b`.
    #[must_use]
    pub fn theta(&self) -> &[f64] {
        &self.theta
    }

    /// `A⁻¹`, row-major `d × d`.
    #[must_use]
    pub fn a_inverse(&self) -> &[f64] {
        &self.a_inv
    }

    /// The expected reward `θᵀx`, without exploration bonus.
    ///
    /// # Errors
    /// [`BanditError::DimensionMismatch`], [`BanditError::NonFinite`].
    pub fn expected(&self, x: &[f64]) -> Result<f64> {
        self.check_vector(x)?;
        finite(dot(&self.theta, x), "expected reward")
    }

    /// The upper confidence bound `θᵀx + α·√(xᵀA⁻¹x)` of one candidate.
    ///
    /// # Errors
    /// [`BanditError::DimensionMismatch`], [`BanditError::NonFinite`].
    pub fn score(&self, x: &[f64]) -> Result<f64> {
        self.check_vector(x)?;
        let mut scratch = vec![0.0; self.dimension];
        finite(self.ucb(x, &mut scratch), "score")
    }

    /// The upper confidence bound of every candidate, in order.
    ///
    /// # Errors
    /// [`BanditError::DimensionMismatch`] or [`BanditError::NonFinite`] for the first bad candidate (no
    /// partial result).
    pub fn scores(&self, candidates: &[&[f64]]) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(candidates.len());
        self.scores_into(candidates, &mut out)?;
        Ok(out)
    }

    /// [`scores`](Self::scores) into a caller-owned buffer (cleared first), so a hot path that scores
    /// every request reuses it. Allocates one scratch vector of length `d` per call, none per candidate.
    /// On error `out` is left empty.
    ///
    /// # Errors
    /// As [`scores`](Self::scores).
    pub fn scores_into(&self, candidates: &[&[f64]], out: &mut Vec<f64>) -> Result<()> {
        out.clear();
        for x in candidates {
            self.check_vector(x)?;
        }
        let mut scratch = vec![0.0; self.dimension];
        out.extend(candidates.iter().map(|x| self.ucb(x, &mut scratch)));
        if out.iter().all(|s| s.is_finite()) {
            Ok(())
        } else {
            out.clear();
            Err(BanditError::NonFinite { what: "scores" })
        }
    }

    /// `θᵀx + α·√(xᵀA⁻¹x)` for a vector already checked, using `scratch` (length `d`) for `A⁻¹x`.
    ///
    /// `A⁻¹x` is accumulated as `Σᵢ xᵢ·rowᵢ(A⁻¹)` (A⁻¹ is symmetric): independent lanes the compiler
    /// vectorizes, unlike a reduction per row.
    fn ucb(&self, x: &[f64], scratch: &mut [f64]) -> f64 {
        scratch.fill(0.0);
        for (row, &xi) in self.a_inv.chunks_exact(self.dimension).zip(x) {
            for (s, &m) in scratch.iter_mut().zip(row) {
                *s += xi * m;
            }
        }
        let quadratic = dot(x, scratch);
        // A⁻¹ is positive definite; rounding can still push a tiny quadratic form below zero.
        dot(&self.theta, x) + self.alpha * quadratic.max(0.0).sqrt()
    }

    /// Learns one observation: reward `reward` after showing the candidate with features `x`.
    ///
    /// `A⁻¹ ← A⁻¹ − (A⁻¹x)(A⁻¹x)ᵀ / (1 + xᵀA⁻¹x)`, `O(d²)`. The model is unchanged on error.
    ///
    /// # Errors
    /// [`BanditError::DimensionMismatch`], [`BanditError::NonFinite`] for a NaN or infinite input or a
    /// state that would overflow.
    pub fn update(&mut self, x: &[f64], reward: f64) -> Result<()> {
        self.check_vector(x)?;
        finite(reward, "reward")?;
        let observations =
            self.observations.checked_add(1).ok_or(BanditError::Numerical { what: "observation count" })?;
        let u = mat_vec(&self.a_inv, self.dimension, x);
        let denominator = 1.0 + dot(x, &u);
        let a_inv = rank_one(&self.a_inv, &u, -1.0 / denominator);
        let a = rank_one(&self.a, x, 1.0);
        let b = self.b.iter().zip(x).map(|(bi, xi)| bi + reward * xi).collect();
        self.commit(a, a_inv, b, observations)
    }

    /// Unlearns one earlier [`update`](Self::update) with the same `x` and `reward` exactly (R-ERASE-7):
    /// afterwards the model equals, up to rounding, one that never saw the observation.
    ///
    /// `A −= x xᵀ`, `b −= r x`, and `A⁻¹ ← A⁻¹ + (A⁻¹x)(A⁻¹x)ᵀ / (1 − xᵀA⁻¹x)` (Sherman–Morrison
    /// downdate). When `1 − xᵀA⁻¹x` is below 10⁻⁴ the downdate is ill-conditioned and `A⁻¹` is recomputed
    /// from `A` by Cholesky factorization; when the last observation is removed the model is reset to its
    /// prior exactly. The model is unchanged on error.
    ///
    /// The model cannot tell in general whether `(x, reward)` was learned before: removing something that
    /// never was corrupts it. What it can detect — a diagonal of `A` dropping below `λ`, an `A − xxᵀ` that
    /// is not positive definite, a last observation that does not match — is rejected.
    ///
    /// # Errors
    /// [`BanditError::DimensionMismatch`], [`BanditError::NonFinite`],
    /// [`BanditError::NothingToRemove`] when the model holds no observation,
    /// [`BanditError::InconsistentRemoval`] when the observation cannot have been learned.
    pub fn remove(&mut self, x: &[f64], reward: f64) -> Result<()> {
        self.check_vector(x)?;
        finite(reward, "reward")?;
        let Some(observations) = self.observations.checked_sub(1) else {
            return Err(BanditError::NothingToRemove { what: "the bandit holds no observation" });
        };
        let a = rank_one(&self.a, x, -1.0);
        let b: Vec<f64> = self.b.iter().zip(x).map(|(bi, xi)| bi - reward * xi).collect();
        let d = self.dimension;
        let scale = self.a.iter().fold(1.0_f64, |m, v| m.max(v.abs()));
        let tolerance = RESET_TOLERANCE * scale;
        if a.chunks_exact(d).enumerate().any(|(i, row)| row.get(i).is_none_or(|&v| v < self.lambda - tolerance)) {
            return Err(BanditError::InconsistentRemoval);
        }
        if observations == 0 {
            // Only the prior remains: check that the statistics agree, then reset without rounding residue.
            let prior = scaled_identity(d, self.lambda);
            let b_scale = self.b.iter().fold(1.0_f64, |m, v| m.max(v.abs()));
            let matches = a.iter().zip(&prior).all(|(got, want)| (got - want).abs() <= tolerance)
                && b.iter().all(|v| v.abs() <= RESET_TOLERANCE * b_scale);
            if !matches {
                return Err(BanditError::InconsistentRemoval);
            }
            *self = Self::prior(d, self.lambda, self.alpha);
            return Ok(());
        }
        let u = mat_vec(&self.a_inv, d, x);
        let denominator = 1.0 - dot(x, &u);
        let a_inv = if denominator.is_finite() && denominator > DOWNDATE_MIN_DENOMINATOR {
            rank_one(&self.a_inv, &u, 1.0 / denominator)
        } else {
            cholesky_inverse(&a, d).ok_or(BanditError::InconsistentRemoval)?
        };
        self.commit(a, a_inv, b, observations)
    }

    /// Recomputes `A⁻¹` (and `θ`) from `A` by Cholesky factorization, discarding the rounding error that
    /// many rank-one updates accumulate. `O(d³)`; worth calling after, say, every 10⁵ updates.
    ///
    /// # Errors
    /// [`BanditError::Numerical`] if `A` is not numerically positive definite (the model is unchanged).
    pub fn refresh_inverse(&mut self) -> Result<()> {
        let a_inv = cholesky_inverse(&self.a, self.dimension).ok_or(BanditError::Numerical { what: "cholesky" })?;
        self.commit(self.a.clone(), a_inv, self.b.clone(), self.observations)
    }

    /// Installs new statistics if every number is finite.
    fn commit(&mut self, a: Vec<f64>, a_inv: Vec<f64>, b: Vec<f64>, observations: u64) -> Result<()> {
        let theta = mat_vec(&a_inv, self.dimension, &b);
        for (values, what) in [(&a, "design matrix"), (&a_inv, "inverse design matrix"), (&b, "reward sums")] {
            ensure_finite(values, what)?;
        }
        ensure_finite(&theta, "theta")?;
        self.a = a;
        self.a_inv = a_inv;
        self.b = b;
        self.theta = theta;
        self.observations = observations;
        Ok(())
    }

    fn check_vector(&self, x: &[f64]) -> Result<()> {
        if x.len() != self.dimension {
            return Err(BanditError::DimensionMismatch { expected: self.dimension, found: x.len() });
        }
        ensure_finite(x, "feature vector")
    }
}

/// `m + c·v vᵀ` for a row-major `d × d` matrix `m`; exactly symmetric when `m` is.
fn rank_one(m: &[f64], v: &[f64], c: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(m.len());
    let d = v.len().max(1);
    for (row, &vi) in m.chunks_exact(d).zip(v) {
        let cvi = c * vi;
        out.extend(row.iter().zip(v).map(|(mij, vj)| mij + cvi * vj));
    }
    out
}

fn finite(value: f64, what: &'static str) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(BanditError::NonFinite { what })
    }
}

fn check_parameters(dimension: usize, lambda: f64, alpha: f64) -> Result<()> {
    if !(1..=MAX_DIMENSION).contains(&dimension) {
        return Err(invalid("dimension", "must be between 1 and MAX_DIMENSION"));
    }
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(invalid("lambda", "must be a finite number greater than zero"));
    }
    if !(alpha.is_finite() && alpha >= 0.0) {
        return Err(invalid("alpha", "must be a finite number of at least zero"));
    }
    Ok(())
}

/// The serialized form of [`LinUcb`]; `θ` is recomputed from `A⁻¹` and `b` on load.
#[derive(Serialize, Deserialize)]
struct LinUcbState {
    version: u32,
    dimension: usize,
    lambda: f64,
    alpha: f64,
    observations: u64,
    a: Vec<f64>,
    a_inv: Vec<f64>,
    b: Vec<f64>,
}

impl From<LinUcb> for LinUcbState {
    fn from(model: LinUcb) -> Self {
        Self {
            version: STATE_FORMAT_VERSION,
            dimension: model.dimension,
            lambda: model.lambda,
            alpha: model.alpha,
            observations: model.observations,
            a: model.a,
            a_inv: model.a_inv,
            b: model.b,
        }
    }
}

impl TryFrom<LinUcbState> for LinUcb {
    type Error = BanditError;

    fn try_from(state: LinUcbState) -> Result<Self> {
        if state.version != STATE_FORMAT_VERSION {
            return Err(BanditError::InvalidState { reason: "unknown format version" });
        }
        check_parameters(state.dimension, state.lambda, state.alpha)?;
        let d = state.dimension;
        if state.a.len() != d * d || state.a_inv.len() != d * d || state.b.len() != d {
            return Err(BanditError::InvalidState { reason: "matrix or vector length does not match the dimension" });
        }
        let mut model = Self::prior(d, state.lambda, state.alpha);
        model.commit(state.a, state.a_inv, state.b, state.observations)?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::Rng as _;

    use super::*;
    use crate::seeded_rng;

    fn random_vectors(n: usize, d: usize, seed: u64) -> Vec<(Vec<f64>, f64)> {
        let mut rng = seeded_rng(seed);
        (0..n)
            .map(|_| {
                let x: Vec<f64> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
                (x, f64::from(u8::from(rng.gen_bool(0.3))))
            })
            .collect()
    }

    fn assert_close(a: &[f64], b: &[f64], tolerance: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tolerance * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    fn assert_same_model(a: &LinUcb, b: &LinUcb, tolerance: f64) {
        assert_eq!(a.observations(), b.observations());
        assert_close(&a.a_inv, &b.a_inv, tolerance);
        assert_close(&a.a, &b.a, tolerance);
        assert_close(&a.b, &b.b, tolerance);
        assert_close(a.theta(), b.theta(), tolerance);
    }

    #[test]
    fn hand_checked_single_update() {
        // d = 2, λ = 1, α = 2. After x = [1, 0], r = 1: A = [[2, 0], [0, 1]], b = [1, 0],
        // A⁻¹ = [[1/2, 0], [0, 1]], θ = [1/2, 0].
        // score([1, 0]) = 1/2 + 2·√(1/2) = 1.914213562373095; score([0, 1]) = 0 + 2·√1 = 2.
        let mut bandit = LinUcb::new(2, 1.0, 2.0).unwrap();
        bandit.update(&[1.0, 0.0], 1.0).unwrap();
        assert_close(bandit.a_inverse(), &[0.5, 0.0, 0.0, 1.0], 1e-15);
        assert_close(bandit.theta(), &[0.5, 0.0], 1e-15);
        let candidates: [&[f64]; 2] = [&[1.0, 0.0], &[0.0, 1.0]];
        let scores = bandit.scores(&candidates).unwrap();
        assert_close(&scores, &[0.5 + 2.0 * 0.5_f64.sqrt(), 2.0], 1e-15);
        assert!((bandit.expected(&[1.0, 0.0]).unwrap() - 0.5).abs() < 1e-15);
        assert_eq!(bandit.observations(), 1);
    }

    #[test]
    fn sherman_morrison_matches_direct_inverse() {
        let mut bandit = LinUcb::new(6, 0.7, 1.0).unwrap();
        for (x, r) in random_vectors(200, 6, 3) {
            bandit.update(&x, r).unwrap();
        }
        let direct = cholesky_inverse(&bandit.a, 6).unwrap();
        assert_close(bandit.a_inverse(), &direct, 1e-12);
        let before = bandit.theta().to_vec();
        bandit.refresh_inverse().unwrap();
        assert_close(bandit.theta(), &before, 1e-12);
    }

    #[test]
    fn learns_the_better_direction() {
        // Reward is 1 exactly when the first feature is on.
        let mut bandit = LinUcb::new(2, 1.0, 0.1).unwrap();
        for _ in 0..50 {
            bandit.update(&[1.0, 0.0], 1.0).unwrap();
            bandit.update(&[0.0, 1.0], 0.0).unwrap();
        }
        let candidates: [&[f64]; 2] = [&[1.0, 0.0], &[0.0, 1.0]];
        let scores = bandit.scores(&candidates).unwrap();
        assert!(scores[0] > 0.9 && scores[1] < 0.1, "{scores:?}");
    }

    /// R-ERASE-7 (unlearning): update(x₁..xₙ) then remove(xₖ) equals a bandit that never saw xₖ.
    #[test]
    fn r_erase_7_unlearning_remove_equals_never_seen() {
        let data = random_vectors(40, 8, 11);
        for k in [0, 17, 39] {
            let mut with = LinUcb::new(8, 1.0, 0.5).unwrap();
            let mut without = with.clone();
            for (i, (x, r)) in data.iter().enumerate() {
                with.update(x, *r).unwrap();
                if i != k {
                    without.update(x, *r).unwrap();
                }
            }
            let (xk, rk) = &data[k];
            with.remove(xk, *rk).unwrap();
            assert_same_model(&with, &without, 1e-9);
            let candidates: Vec<&[f64]> = data.iter().map(|(x, _)| x.as_slice()).collect();
            assert_close(&with.scores(&candidates).unwrap(), &without.scores(&candidates).unwrap(), 1e-9);
        }
    }

    #[test]
    fn ill_conditioned_downdate_falls_back_to_cholesky() {
        // x₂ dominates A, so 1 − x₂ᵀA⁻¹x₂ ≈ 1e-6 is below the downdate threshold.
        let x1 = [1.0, 0.5, 0.0];
        let x2 = [0.0, 1e3, 0.0];
        let mut with = LinUcb::new(3, 1.0, 1.0).unwrap();
        with.update(&x1, 1.0).unwrap();
        with.update(&x2, 0.0).unwrap();
        let u = mat_vec(&with.a_inv, 3, &x2);
        assert!(1.0 - dot(&x2, &u) < DOWNDATE_MIN_DENOMINATOR);
        with.remove(&x2, 0.0).unwrap();
        let mut without = LinUcb::new(3, 1.0, 1.0).unwrap();
        without.update(&x1, 1.0).unwrap();
        assert_same_model(&with, &without, 1e-9);
    }

    #[test]
    fn removing_the_last_observation_resets_exactly() {
        let mut bandit = LinUcb::new(3, 2.0, 1.0).unwrap();
        let x = [0.3, -0.7, 0.1];
        bandit.update(&x, 1.0).unwrap();
        bandit.remove(&x, 1.0).unwrap();
        assert_eq!(bandit, LinUcb::new(3, 2.0, 1.0).unwrap());
    }

    #[test]
    fn inconsistent_removals_are_rejected_and_leave_the_model_unchanged() {
        let mut bandit = LinUcb::new(2, 1.0, 1.0).unwrap();
        let err = bandit.remove(&[1.0, 0.0], 1.0).unwrap_err();
        assert_eq!(err.code(), "nothing_to_remove");
        bandit.update(&[1.0, 0.0], 1.0).unwrap();
        bandit.update(&[0.0, 1.0], 0.0).unwrap();
        let before = bandit.clone();
        // Never learned: A's first diagonal would fall to 2 − 4 < λ.
        assert_eq!(bandit.remove(&[2.0, 0.0], 1.0).unwrap_err().code(), "inconsistent_removal");
        // A different reward on the last remaining observation is caught by the reset check.
        bandit.remove(&[0.0, 1.0], 0.0).unwrap();
        assert_eq!(bandit.remove(&[1.0, 0.0], 0.0).unwrap_err().code(), "inconsistent_removal");
        assert_eq!(bandit.observations(), 1);
        assert_ne!(bandit, before);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        for (d, lambda, alpha) in [(0, 1.0, 1.0), (MAX_DIMENSION + 1, 1.0, 1.0), (2, 0.0, 1.0), (2, 1.0, -1.0)] {
            assert_eq!(LinUcb::new(d, lambda, alpha).unwrap_err().code(), "invalid_parameter");
        }
        assert_eq!(LinUcb::new(2, f64::NAN, 1.0).unwrap_err().code(), "invalid_parameter");
        let mut bandit = LinUcb::new(2, 1.0, 1.0).unwrap();
        assert_eq!(bandit.update(&[1.0], 1.0).unwrap_err().code(), "dimension_mismatch");
        assert_eq!(bandit.update(&[1.0, f64::NAN], 1.0).unwrap_err().code(), "non_finite");
        assert_eq!(bandit.update(&[1.0, 0.0], f64::INFINITY).unwrap_err().code(), "non_finite");
        assert_eq!(bandit.update(&[1e200, 1e200], 1.0).unwrap_err().code(), "non_finite");
        assert_eq!(bandit.observations(), 0);
        let candidates: [&[f64]; 2] = [&[1.0, 0.0], &[1.0, 0.0, 0.0]];
        assert_eq!(bandit.scores(&candidates).unwrap_err().code(), "dimension_mismatch");
        assert_eq!(bandit.expected(&[]).unwrap_err().code(), "dimension_mismatch");
        assert_eq!(bandit.score(&[f64::NAN, 0.0]).unwrap_err().code(), "non_finite");
        assert_eq!(bandit.scores(&[]).unwrap(), Vec::<f64>::new());
    }

    #[test]
    fn serde_roundtrip_and_validation() {
        let mut bandit = LinUcb::new(3, 1.5, 0.2).unwrap();
        for (x, r) in random_vectors(10, 3, 5) {
            bandit.update(&x, r).unwrap();
        }
        let json = serde_json::to_string(&bandit).unwrap();
        let back: LinUcb = serde_json::from_str(&json).unwrap();
        assert_same_model(&back, &bandit, 1e-15);
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value["b"] = serde_json::json!([1.0]);
        assert!(serde_json::from_value::<LinUcb>(value.clone()).is_err());
        value["b"] = serde_json::json!([1.0, 2.0, 3.0]);
        value["version"] = serde_json::json!(99);
        assert!(serde_json::from_value::<LinUcb>(value).is_err());
    }

    #[test]
    fn scoring_a_slate_reuses_the_buffer_and_agrees_with_scoring_each_candidate() {
        // d = 16, 50 candidates: the shape of a slot's request. (Its speed is `lethe-bench decide`'s.)
        let mut bandit = LinUcb::new(16, 1.0, 0.5).unwrap();
        let data = random_vectors(50, 16, 9);
        for (x, r) in &data {
            bandit.update(x, *r).unwrap();
        }
        let candidates: Vec<&[f64]> = data.iter().map(|(x, _)| x.as_slice()).collect();
        let mut out = vec![f64::NAN; 3]; // stale content is cleared
        bandit.scores_into(&candidates, &mut out).unwrap();
        assert_eq!(out.len(), 50);
        for (x, s) in candidates.iter().zip(&out) {
            assert_eq!(bandit.score(x).unwrap().to_bits(), s.to_bits());
        }
        let capacity = out.capacity();
        bandit.scores_into(&candidates[..10], &mut out).unwrap();
        assert_eq!((out.len(), out.capacity()), (10, capacity), "the buffer is reused, not reallocated");
        // A bad candidate anywhere: no partial result.
        let short = [0.0; 3];
        let mut mixed = candidates.clone();
        mixed.insert(7, &short);
        assert!(bandit.scores_into(&mixed, &mut out).is_err());
        assert!(out.is_empty());
    }

    proptest! {
        /// R-ERASE-7 (unlearning) as a property: removing any one observation equals never learning it.
        #[test]
        fn r_erase_7_remove_after_update_roundtrip(
            data in prop::collection::vec((prop::collection::vec(-1.0..1.0_f64, 3), -1.0..1.0_f64), 1..25),
            pick in any::<prop::sample::Index>(),
            lambda in 0.5..2.0_f64,
        ) {
            let k = pick.index(data.len());
            let mut with = LinUcb::new(3, lambda, 1.0).unwrap();
            let mut without = with.clone();
            for (i, (x, r)) in data.iter().enumerate() {
                with.update(x, *r).unwrap();
                if i != k {
                    without.update(x, *r).unwrap();
                }
            }
            with.remove(&data[k].0, data[k].1).unwrap();
            assert_same_model(&with, &without, 1e-9);
        }
    }
}
