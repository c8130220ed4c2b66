//! Off-policy evaluation: the click rate a *target* policy would have had, estimated from rounds logged
//! under a different *logging* policy.
//!
//! Each [`LoggedRound`] holds the action shown, its reward and the logging policy's propensity for it.
//! Per round `i`, the target policy is given as its probability for every action, `target[i][a] =
//! π(a | xᵢ)`. With the importance weight `wᵢ = π(Aᵢ | xᵢ) / p(Aᵢ | xᵢ)` (optionally clipped at
//! [`OpeOptions::max_weight`]):
//!
//! | estimator | value | standard error |
//! |---|---|---|
//! | [`ips`] | `mean(wᵢ rᵢ)` | sample std of `wᵢ rᵢ` / √n |
//! | [`snips`] | `Σ wᵢ rᵢ / Σ wᵢ` | delta method, see [`snips`] |
//! | [`doubly_robust`] | `mean(Σₐ π(a\|xᵢ) q̂(i, a) + wᵢ (rᵢ − q̂(i, Aᵢ)))` | sample std of the terms / √n |
//! | [`on_policy`] | `mean(rᵢ)` | sample std of `rᵢ` / √n |
//!
//! Every [`Estimate`] carries a 95 % normal-approximation interval `value ± 1.96·std_error`. Sample
//! standard deviations use the `n − 1` divisor, so at least two rounds are required.
//!
//! Clipping weights trades bias for variance: the clipped estimate is biased towards the rewards of
//! actions the logging policy favoured.
//!
//! # Errors
//!
//! The estimators taking a target policy validate all inputs before computing and fail with:
//! [`BanditError::EmptyInput`] for an empty log; [`BanditError::NotEnoughData`] for a single round (no
//! standard error); [`BanditError::LengthMismatch`] when `target` does not have one row per round;
//! [`BanditError::NonFinite`] for a NaN or infinite reward; [`BanditError::InvalidPropensity`] for a
//! propensity outside `(0, 1]` (including NaN); [`BanditError::InvalidDistribution`] for a target row that
//! is empty, holds a value outside `[0, 1]` or does not sum to 1 within [`DISTRIBUTION_TOLERANCE`];
//! [`BanditError::ActionOutOfRange`] for a logged action beyond its row; [`BanditError::InvalidParameter`]
//! for a `max_weight` that is not finite and positive.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, BanditError, Result};

/// The standard normal quantile for a two-sided 95 % interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// How far a round's target probabilities may sum from 1 before they are rejected.
pub const DISTRIBUTION_TOLERANCE: f64 = 1e-6;

/// One logged decision: the action shown, the reward observed and the logging policy's propensity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoggedRound {
    /// The index of the action (candidate) shown.
    pub action: usize,
    /// The observed reward (1 for a click, 0 otherwise, or any finite number).
    pub reward: f64,
    /// The probability with which the logging policy chose `action`, in `(0, 1]`.
    pub propensity: f64,
}

/// Estimator options.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct OpeOptions {
    /// Clip every importance weight at this value (finite and positive); `None` for no clipping.
    pub max_weight: Option<f64>,
}

/// A point estimate with its standard error and 95 % normal-approximation interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The estimated mean reward per round.
    pub value: f64,
    /// The estimated standard error of `value`.
    pub std_error: f64,
    /// `value − 1.96·std_error`.
    pub ci_low: f64,
    /// `value + 1.96·std_error`.
    pub ci_high: f64,
    /// The number of rounds used.
    pub rounds: usize,
}

impl Estimate {
    fn new(value: f64, std_error: f64, rounds: usize) -> Result<Self> {
        if !(value.is_finite() && std_error.is_finite()) {
            return Err(BanditError::NonFinite { what: "estimate" });
        }
        Ok(Self { value, std_error, ci_low: value - Z_95 * std_error, ci_high: value + Z_95 * std_error, rounds })
    }

    /// The estimate from per-round terms: their mean, and sample standard deviation over √n.
    fn from_terms(terms: &[f64]) -> Result<Self> {
        let n = terms.len() as f64;
        let mean = terms.iter().sum::<f64>() / n;
        let variance = terms.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (n - 1.0);
        Self::new(mean, (variance / n).sqrt(), terms.len())
    }
}

/// Inverse propensity scoring: `mean(wᵢ rᵢ)`. Unbiased without clipping, but high-variance when the
/// target policy favours actions the logging policy rarely took.
///
/// ```
/// use lethe_bandit::{ips, LoggedRound, OpeOptions};
///
/// let log = [
///     LoggedRound { action: 0, reward: 1.0, propensity: 0.5 },
///     LoggedRound { action: 1, reward: 0.0, propensity: 0.5 },
/// ];
/// // The target always shows action 0: weights 2 and 0.
/// let estimate = ips(&log, &[[1.0, 0.0], [1.0, 0.0]], &OpeOptions::default())?;
/// assert_eq!(estimate.value, 1.0);
/// # Ok::<(), lethe_bandit::BanditError>(())
/// ```
///
/// # Errors
/// See the [module documentation](crate::ope#errors).
pub fn ips<T: AsRef<[f64]>>(log: &[LoggedRound], target: &[T], options: &OpeOptions) -> Result<Estimate> {
    let weights = weights(log, target, options)?;
    let terms: Vec<f64> = weights.iter().zip(log).map(|(w, round)| w * round.reward).collect();
    Estimate::from_terms(&terms)
}

/// Self-normalized IPS: `Σ wᵢ rᵢ / Σ wᵢ`. Slightly biased, much lower variance than [`ips`], and invariant
/// to a constant shift of the rewards.
///
/// The standard error is the **delta method** one: with `V` the estimate and `w̄` the mean weight,
/// `std_error² = Σ (wᵢ (rᵢ − V) / w̄)² / ((n − 1)·n)`.
///
/// # Errors
/// See the [module documentation](crate::ope#errors), and [`BanditError::ZeroTotalWeight`] when the target policy gives
/// probability 0 to every logged action.
pub fn snips<T: AsRef<[f64]>>(log: &[LoggedRound], target: &[T], options: &OpeOptions) -> Result<Estimate> {
    let weights = weights(log, target, options)?;
    let total_weight: f64 = weights.iter().sum();
    if total_weight <= 0.0 {
        return Err(BanditError::ZeroTotalWeight);
    }
    let value = weights.iter().zip(log).map(|(w, round)| w * round.reward).sum::<f64>() / total_weight;
    let n = log.len() as f64;
    let mean_weight = total_weight / n;
    let squares: f64 =
        weights.iter().zip(log).map(|(w, round)| (w * (round.reward - value) / mean_weight).powi(2)).sum();
    Estimate::new(value, (squares / ((n - 1.0) * n)).sqrt(), log.len())
}

/// Doubly robust estimation (Dudík, Langford & Li 2011): the reward model's prediction for the target
/// policy, corrected by importance-weighted residuals on the logged action,
///
/// `mean over rounds of Σₐ π(a | xᵢ) q̂(i, a) + wᵢ (rᵢ − q̂(i, Aᵢ))`.
///
/// Unbiased (without clipping) when either the propensities or the reward model are correct; with a
/// good reward model its variance is far below [`ips`]'s. `reward_model(i, a)` is `q̂` for round `i` and
/// action `a`; it is called for the logged action and every action with positive target probability.
///
/// # Errors
/// See the [module documentation](crate::ope#errors), and [`BanditError::NonFinite`] when the reward model returns a NaN or
/// infinite value.
pub fn doubly_robust<T, Q>(log: &[LoggedRound], target: &[T], reward_model: Q, options: &OpeOptions) -> Result<Estimate>
where
    T: AsRef<[f64]>,
    Q: Fn(usize, usize) -> f64,
{
    let weights = weights(log, target, options)?;
    let mut terms = Vec::with_capacity(log.len());
    for (i, ((round, probabilities), w)) in log.iter().zip(target).zip(&weights).enumerate() {
        let mut direct = 0.0;
        for (a, &p) in probabilities.as_ref().iter().enumerate() {
            if p > 0.0 {
                direct += p * finite_prediction(reward_model(i, a))?;
            }
        }
        let logged = finite_prediction(reward_model(i, round.action))?;
        terms.push(direct + w * (round.reward - logged));
    }
    Estimate::from_terms(&terms)
}

/// The on-policy estimate: the mean logged reward, i.e. the value of the logging policy itself.
///
/// # Errors
/// [`BanditError::NotEnoughData`] for fewer than two rounds, [`BanditError::NonFinite`] for a NaN or
/// infinite reward, [`BanditError::InvalidPropensity`] for a propensity outside `(0, 1]`.
pub fn on_policy(log: &[LoggedRound]) -> Result<Estimate> {
    check_log(log)?;
    let rewards: Vec<f64> = log.iter().map(|round| round.reward).collect();
    Estimate::from_terms(&rewards)
}

fn finite_prediction(value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(BanditError::NonFinite { what: "reward model prediction" })
    }
}

/// Validates the log on its own: at least two rounds, finite rewards, propensities in `(0, 1]`.
fn check_log(log: &[LoggedRound]) -> Result<()> {
    if log.is_empty() {
        return Err(BanditError::EmptyInput { what: "log" });
    }
    if log.len() < 2 {
        return Err(BanditError::NotEnoughData { what: "rounds", needed: 2, found: log.len() });
    }
    for (i, round) in log.iter().enumerate() {
        if !round.reward.is_finite() {
            return Err(BanditError::NonFinite { what: "reward" });
        }
        if !(round.propensity > 0.0 && round.propensity <= 1.0) {
            return Err(BanditError::InvalidPropensity { round: i });
        }
    }
    Ok(())
}

/// The (optionally clipped) importance weights, after validating everything; see the module's errors.
fn weights<T: AsRef<[f64]>>(log: &[LoggedRound], target: &[T], options: &OpeOptions) -> Result<Vec<f64>> {
    check_log(log)?;
    if target.len() != log.len() {
        return Err(BanditError::LengthMismatch { what: "target", expected: log.len(), found: target.len() });
    }
    if let Some(max) = options.max_weight {
        if !(max.is_finite() && max > 0.0) {
            return Err(invalid("max_weight", "must be a finite number greater than zero"));
        }
    }
    let mut weights = Vec::with_capacity(log.len());
    for (i, (round, row)) in log.iter().zip(target).enumerate() {
        let row = row.as_ref();
        let is_distribution = !row.is_empty()
            && row.iter().all(|p| (0.0..=1.0).contains(p))
            && (row.iter().sum::<f64>() - 1.0).abs() <= DISTRIBUTION_TOLERANCE;
        if !is_distribution {
            return Err(BanditError::InvalidDistribution { round: i });
        }
        let Some(&target_probability) = row.get(round.action) else {
            return Err(BanditError::ActionOutOfRange { round: i, action: round.action, actions: row.len() });
        };
        let w = target_probability / round.propensity;
        weights.push(options.max_weight.map_or(w, |max| w.min(max)));
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;
    use crate::seeded_rng;

    const NO_CLIP: OpeOptions = OpeOptions { max_weight: None };

    /// 4 rounds, 2 actions.
    ///
    /// | round | action | reward | propensity | π(0) | π(1) | w = π(A)/p |
    /// |---|---|---|---|---|---|---|
    /// | 0 | 0 | 1 | 0.50 | 0.8 | 0.2 | 1.6 |
    /// | 1 | 1 | 0 | 0.50 | 0.8 | 0.2 | 0.4 |
    /// | 2 | 1 | 1 | 0.25 | 0.5 | 0.5 | 2.0 |
    /// | 3 | 0 | 0 | 0.75 | 1.0 | 0.0 | 4/3 |
    fn hand_case() -> (Vec<LoggedRound>, Vec<[f64; 2]>) {
        let log = [(0, 1.0, 0.5), (1, 0.0, 0.5), (1, 1.0, 0.25), (0, 0.0, 0.75)]
            .map(|(action, reward, propensity)| LoggedRound { action, reward, propensity })
            .to_vec();
        (log, vec![[0.8, 0.2], [0.8, 0.2], [0.5, 0.5], [1.0, 0.0]])
    }

    fn assert_estimate(got: &Estimate, value: f64, std_error: f64) {
        assert!((got.value - value).abs() < 1e-12, "value {} vs {value}", got.value);
        assert!((got.std_error - std_error).abs() < 1e-12, "std error {} vs {std_error}", got.std_error);
        assert!((got.ci_low - (value - Z_95 * std_error)).abs() < 1e-12);
        assert!((got.ci_high - (value + Z_95 * std_error)).abs() < 1e-12);
    }

    #[test]
    fn ips_hand_checked() {
        // w·r = [1.6, 0, 2, 0], mean 3.6 / 4 = 0.9.
        // Deviations [0.7, −0.9, 1.1, −0.9], squares sum 3.32, sample variance 3.32 / 3,
        // std error √(3.32 / 3 / 4) = √0.276667 = 0.525991127935317.
        let (log, target) = hand_case();
        let estimate = ips(&log, &target, &NO_CLIP).unwrap();
        assert_estimate(&estimate, 0.9, (3.32_f64 / 12.0).sqrt());
        assert_eq!(estimate.rounds, 4);
        // Clipped at 1.5: w = [1.5, 0.4, 1.5, 4/3], w·r = [1.5, 0, 1.5, 0], mean 0.75,
        // sample variance 4·0.75² / 3 = 0.75, std error √(0.75 / 4) = 0.433012701892219.
        let clipped = ips(&log, &target, &OpeOptions { max_weight: Some(1.5) }).unwrap();
        assert_estimate(&clipped, 0.75, (0.75_f64 / 4.0).sqrt());
    }

    #[test]
    fn snips_hand_checked() {
        // Σw = 1.6 + 0.4 + 2 + 4/3 = 16/3, Σw·r = 3.6, V = 3.6 / (16/3) = 0.675, w̄ = 4/3.
        // w(r − V) = [0.52, −0.27, 0.65, −0.9]; squared and divided by w̄² = 16/9:
        // (0.2704 + 0.0729 + 0.4225 + 0.81) · 9/16 = 1.5758 · 0.5625 = 0.8863875.
        // std error = √(0.8863875 / (3 · 4)) = 0.271782311786474.
        let (log, target) = hand_case();
        assert_estimate(&snips(&log, &target, &NO_CLIP).unwrap(), 0.675, (0.886_387_5_f64 / 12.0).sqrt());
    }

    #[test]
    fn doubly_robust_hand_checked() {
        // q̂(·, 0) = 0.6, q̂(·, 1) = 0.2.
        // Direct part Σₐ π(a) q̂(a): [0.52, 0.52, 0.40, 0.60].
        // Correction w (r − q̂(A)): [1.6·0.4, 0.4·(−0.2), 2·0.8, 4/3·(−0.6)] = [0.64, −0.08, 1.6, −0.8].
        // Terms [1.16, 0.44, 2.0, −0.2], mean 3.4 / 4 = 0.85.
        // Deviations [0.31, −0.41, 1.15, −1.05], squares sum 2.6892, std error √(2.6892 / 12) = 0.473392015141785.
        let (log, target) = hand_case();
        let q = |_round: usize, action: usize| if action == 0 { 0.6 } else { 0.2 };
        assert_estimate(&doubly_robust(&log, &target, q, &NO_CLIP).unwrap(), 0.85, (2.6892_f64 / 12.0).sqrt());
    }

    #[test]
    fn on_policy_hand_checked() {
        // Rewards [1, 0, 1, 0]: mean 0.5, sample variance 1/3, std error √(1/12).
        let (log, _) = hand_case();
        assert_estimate(&on_policy(&log).unwrap(), 0.5, (1.0_f64 / 12.0).sqrt());
    }

    /// Logging policy p = [0.5, 0.3, 0.2] over three actions with click rates [0.2, 0.5, 0.7].
    const LOGGING: [f64; 3] = [0.5, 0.3, 0.2];
    const RATES: [f64; 3] = [0.2, 0.5, 0.7];

    fn simulate(rounds: usize, seed: u64) -> Vec<LoggedRound> {
        let mut rng = seeded_rng(seed);
        (0..rounds)
            .map(|_| {
                let (action, propensity) = crate::explore::sample(&LOGGING, &mut rng).unwrap();
                let reward = f64::from(u8::from(rng.gen_bool(RATES[action])));
                LoggedRound { action, reward, propensity }
            })
            .collect()
    }

    #[test]
    fn ips_of_the_logging_policy_is_the_logged_mean() {
        // True value of the logging policy: 0.5·0.2 + 0.3·0.5 + 0.2·0.7 = 0.39.
        for seed in 0..5 {
            let log = simulate(20_000, seed);
            let target = vec![LOGGING; log.len()];
            let by_ips = ips(&log, &target, &NO_CLIP).unwrap();
            let logged = on_policy(&log).unwrap();
            assert!((by_ips.value - logged.value).abs() < 1e-12);
            assert!((by_ips.value - 0.39).abs() < 4.0 * by_ips.std_error, "{by_ips:?}");
            assert!(by_ips.ci_low < 0.39 + 0.02 && by_ips.ci_high > 0.39 - 0.02);
        }
    }

    #[test]
    fn estimators_recover_a_different_target_policy() {
        // Target π = [0.1, 0.2, 0.7]: true value 0.02 + 0.10 + 0.49 = 0.61.
        let log = simulate(50_000, 7);
        let target = vec![[0.1, 0.2, 0.7]; log.len()];
        let rough_model = |_: usize, _: usize| 0.4;
        for estimate in [
            ips(&log, &target, &NO_CLIP).unwrap(),
            snips(&log, &target, &NO_CLIP).unwrap(),
            doubly_robust(&log, &target, rough_model, &NO_CLIP).unwrap(),
        ] {
            assert!((estimate.value - 0.61).abs() < 4.0 * estimate.std_error, "{estimate:?}");
            assert!(estimate.std_error < 0.01);
        }
    }

    #[test]
    fn doubly_robust_with_a_perfect_model_beats_ips() {
        let perfect = |_: usize, a: usize| RATES.get(a).copied().unwrap_or(0.0);
        for seed in 0..5 {
            let log = simulate(5_000, 100 + seed);
            let target = vec![[0.1, 0.2, 0.7]; log.len()];
            let by_ips = ips(&log, &target, &NO_CLIP).unwrap();
            let by_dr = doubly_robust(&log, &target, perfect, &NO_CLIP).unwrap();
            assert!(by_dr.std_error < 0.75 * by_ips.std_error, "DR {by_dr:?} vs IPS {by_ips:?}");
            assert!((by_dr.value - 0.61).abs() < 4.0 * by_dr.std_error);
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let (log, target) = hand_case();
        let code = |result: Result<Estimate>| result.unwrap_err().code();
        assert_eq!(code(ips(&[], &target[..0], &NO_CLIP)), "empty_input");
        assert_eq!(code(ips(&log[..1], &target[..1], &NO_CLIP)), "not_enough_data");
        assert_eq!(code(ips(&log, &target[..3], &NO_CLIP)), "length_mismatch");
        assert_eq!(code(ips(&log, &target, &OpeOptions { max_weight: Some(0.0) })), "invalid_parameter");
        assert_eq!(code(ips(&log, &target, &OpeOptions { max_weight: Some(f64::NAN) })), "invalid_parameter");
        for propensity in [0.0, -0.5, 1.5, f64::NAN] {
            let mut bad = log.clone();
            bad[2].propensity = propensity;
            assert_eq!(code(snips(&bad, &target, &NO_CLIP)), "invalid_propensity");
            assert_eq!(code(on_policy(&bad)), "invalid_propensity");
        }
        let mut bad = log.clone();
        bad[0].reward = f64::INFINITY;
        assert_eq!(code(ips(&bad, &target, &NO_CLIP)), "non_finite");
        let mut bad = log.clone();
        bad[1].action = 2;
        assert_eq!(code(ips(&bad, &target, &NO_CLIP)), "action_out_of_range");
        for row in [[0.5, 0.6], [1.2, -0.2], [f64::NAN, 1.0]] {
            let mut bad = target.clone();
            bad[3] = row;
            assert_eq!(code(ips(&log, &bad, &NO_CLIP)), "invalid_distribution");
        }
        assert_eq!(code(ips(&log, &vec![Vec::<f64>::new(); 4], &NO_CLIP)), "invalid_distribution");
        let never = vec![[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        assert_eq!(code(snips(&log, &never, &NO_CLIP)), "zero_total_weight");
        assert_eq!(code(doubly_robust(&log, &target, |_, _| f64::NAN, &NO_CLIP)), "non_finite");
    }
}
