//! Bernoulli Thompson sampling: one Beta posterior per arm over its click probability.
//!
//! Arm `i` starts from the prior `Beta(α₀, β₀)` (default `Beta(1, 1)`, uniform) and after `sᵢ` clicks and
//! `fᵢ` non-clicks has the posterior `Beta(α₀ + sᵢ, β₀ + fᵢ)`. [`BernoulliThompson::choose`] draws one
//! click probability per arm from its posterior and shows the arm with the largest draw.
//!
//! Thompson sampling has no closed-form propensity. [`BernoulliThompson::propensities`] estimates it by
//! Monte Carlo — repeat the draw many times and count how often each arm wins — which is how the Open
//! Bandit Dataset's Bernoulli TS ("BTS") propensities were made. The estimate is itself random: an arm
//! can get propensity 0 by never winning, so log enough draws (10⁴–10⁵) for off-policy evaluation.
//!
//! Beta variates are `X / (X + Y)` with `X ~ Gamma(α)`, `Y ~ Gamma(β)`, both drawn by Marsaglia and
//! Tsang's method (2000); all randomness comes from the generator the caller passes.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, BanditError, Result};

/// The largest number of arms accepted.
pub const MAX_ARMS: usize = 1 << 20;

/// Per-arm Beta posteriors over a Bernoulli (click / no click) reward.
///
/// ```
/// use lethe_bandit::{seeded_rng, BernoulliThompson};
///
/// let mut bandit = BernoulliThompson::new(3)?;
/// bandit.update(1, true)?;
/// let mut rng = seeded_rng(7);
/// let arm = bandit.choose(&mut rng);
/// let propensities = bandit.propensities(&mut rng, 10_000)?;
/// assert!(arm < 3 && propensities[1] > propensities[0]);
/// # Ok::<(), lethe_bandit::BanditError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ThompsonState", into = "ThompsonState")]
pub struct BernoulliThompson {
    prior_alpha: f64,
    prior_beta: f64,
    successes: Vec<u64>,
    failures: Vec<u64>,
}

impl BernoulliThompson {
    /// `arms` arms with the uniform prior `Beta(1, 1)`.
    ///
    /// # Errors
    /// [`BanditError::InvalidParameter`] unless `1 ≤ arms ≤ MAX_ARMS`.
    pub fn new(arms: usize) -> Result<Self> {
        Self::with_prior(arms, 1.0, 1.0)
    }

    /// `arms` arms with the prior `Beta(alpha, beta)`, for instance centred on a known base click rate.
    ///
    /// # Errors
    /// [`BanditError::InvalidParameter`] unless `1 ≤ arms ≤ MAX_ARMS` and both prior parameters are
    /// finite and positive.
    pub fn with_prior(arms: usize, alpha: f64, beta: f64) -> Result<Self> {
        check(arms, alpha, beta)?;
        Ok(Self { prior_alpha: alpha, prior_beta: beta, successes: vec![0; arms], failures: vec![0; arms] })
    }

    /// The number of arms.
    #[must_use]
    pub fn arms(&self) -> usize {
        self.successes.len()
    }

    /// Arm `arm`'s posterior `(α, β)`.
    ///
    /// # Errors
    /// [`BanditError::ArmOutOfRange`].
    pub fn posterior(&self, arm: usize) -> Result<(f64, f64)> {
        let (s, f) = self.counts(arm)?;
        Ok((self.prior_alpha + s as f64, self.prior_beta + f as f64))
    }

    /// Arm `arm`'s posterior mean click probability `α / (α + β)`.
    ///
    /// # Errors
    /// [`BanditError::ArmOutOfRange`].
    pub fn mean(&self, arm: usize) -> Result<f64> {
        let (a, b) = self.posterior(arm)?;
        Ok(a / (a + b))
    }

    /// Draws a click probability for every arm from its posterior and returns the arm with the largest
    /// (the lowest index among exact ties).
    pub fn choose<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let mut best = (0, f64::NEG_INFINITY);
        for (arm, (&s, &f)) in self.successes.iter().zip(&self.failures).enumerate() {
            let draw = beta(self.prior_alpha + s as f64, self.prior_beta + f as f64, rng);
            if draw > best.1 {
                best = (arm, draw);
            }
        }
        best.0
    }

    /// Monte Carlo estimate of the probability that [`choose`](Self::choose) returns each arm: the share
    /// of `draws` independent choices that each arm wins. Sums to exactly 1.
    ///
    /// # Errors
    /// [`BanditError::InvalidParameter`] for `draws = 0`.
    pub fn propensities<R: Rng + ?Sized>(&self, rng: &mut R, draws: usize) -> Result<Vec<f64>> {
        if draws == 0 {
            return Err(invalid("draws", "must be at least 1"));
        }
        let mut wins = vec![0_usize; self.arms()];
        for _ in 0..draws {
            if let Some(w) = wins.get_mut(self.choose(rng)) {
                *w += 1;
            }
        }
        Ok(wins.into_iter().map(|w| w as f64 / draws as f64).collect())
    }

    /// Learns one reward for `arm`: a click adds one to `α`, no click one to `β`.
    ///
    /// # Errors
    /// [`BanditError::ArmOutOfRange`], [`BanditError::Numerical`] if a count would overflow.
    pub fn update(&mut self, arm: usize, reward: bool) -> Result<()> {
        let count = self.count_mut(arm, reward)?;
        *count = count.checked_add(1).ok_or(BanditError::Numerical { what: "reward count" })?;
        Ok(())
    }

    /// Unlearns one earlier [`update`](Self::update) exactly (R-ERASE-7): the posterior is the one that
    /// never saw it.
    ///
    /// # Errors
    /// [`BanditError::ArmOutOfRange`], [`BanditError::NothingToRemove`] when the arm holds no such reward.
    pub fn remove(&mut self, arm: usize, reward: bool) -> Result<()> {
        let count = self.count_mut(arm, reward)?;
        *count = count.checked_sub(1).ok_or(BanditError::NothingToRemove { what: "the arm holds no such reward" })?;
        Ok(())
    }

    fn counts(&self, arm: usize) -> Result<(u64, u64)> {
        match (self.successes.get(arm), self.failures.get(arm)) {
            (Some(&s), Some(&f)) => Ok((s, f)),
            _ => Err(BanditError::ArmOutOfRange { arm, arms: self.arms() }),
        }
    }

    fn count_mut(&mut self, arm: usize, reward: bool) -> Result<&mut u64> {
        let arms = self.arms();
        let counts = if reward { &mut self.successes } else { &mut self.failures };
        counts.get_mut(arm).ok_or(BanditError::ArmOutOfRange { arm, arms })
    }
}

fn check(arms: usize, alpha: f64, beta: f64) -> Result<()> {
    if !(1..=MAX_ARMS).contains(&arms) {
        return Err(invalid("arms", "must be between 1 and MAX_ARMS"));
    }
    if !(alpha.is_finite() && alpha > 0.0 && beta.is_finite() && beta > 0.0) {
        return Err(invalid("prior", "alpha and beta must be finite numbers greater than zero"));
    }
    Ok(())
}

/// A `Beta(a, b)` variate for finite positive `a`, `b`.
pub(crate) fn beta<R: Rng + ?Sized>(a: f64, b: f64, rng: &mut R) -> f64 {
    let x = gamma(a, rng);
    let y = gamma(b, rng);
    let total = x + y;
    if total > 0.0 && total.is_finite() {
        x / total
    } else {
        // Both draws underflowed (tiny shapes): Beta(a, b) then concentrates on {0, 1} with P(1) = a/(a+b).
        f64::from(u8::from(rng.gen::<f64>() * (a + b) < a))
    }
}

/// A `Gamma(shape, 1)` variate for finite positive `shape` (Marsaglia & Tsang 2000).
fn gamma<R: Rng + ?Sized>(shape: f64, rng: &mut R) -> f64 {
    // For shape < 1: Gamma(k) = Gamma(k + 1) · U^(1/k).
    let (k, boost) = if shape < 1.0 { (shape + 1.0, Some(1.0 / shape)) } else { (shape, None) };
    let d = k - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    let value = loop {
        let z = standard_normal(rng);
        let v = 1.0 + c * z;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = open_unit(rng);
        let z2 = z * z;
        if u < 1.0 - 0.0331 * z2 * z2 || u.ln() < 0.5 * z2 + d * (1.0 - v + v.ln()) {
            break d * v;
        }
    };
    match boost {
        Some(exponent) => value * open_unit(rng).powf(exponent),
        None => value,
    }
}

/// A standard normal variate (Box–Muller, one of the pair).
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let radius = (-2.0 * open_unit(rng).ln()).sqrt();
    radius * (std::f64::consts::TAU * rng.gen::<f64>()).cos()
}

/// A uniform variate in `(0, 1]`, safe to take the logarithm of.
fn open_unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    1.0 - rng.gen::<f64>()
}

/// The serialized form of [`BernoulliThompson`].
#[derive(Serialize, Deserialize)]
struct ThompsonState {
    prior_alpha: f64,
    prior_beta: f64,
    successes: Vec<u64>,
    failures: Vec<u64>,
}

impl From<BernoulliThompson> for ThompsonState {
    fn from(model: BernoulliThompson) -> Self {
        Self {
            prior_alpha: model.prior_alpha,
            prior_beta: model.prior_beta,
            successes: model.successes,
            failures: model.failures,
        }
    }
}

impl TryFrom<ThompsonState> for BernoulliThompson {
    type Error = BanditError;

    fn try_from(state: ThompsonState) -> Result<Self> {
        if state.successes.len() != state.failures.len() {
            return Err(BanditError::InvalidState { reason: "successes and failures have different lengths" });
        }
        check(state.successes.len(), state.prior_alpha, state.prior_beta)?;
        Ok(Self {
            prior_alpha: state.prior_alpha,
            prior_beta: state.prior_beta,
            successes: state.successes,
            failures: state.failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeded_rng;

    fn moments(a: f64, b: f64, draws: usize, seed: u64) -> (f64, f64) {
        let mut rng = seeded_rng(seed);
        let samples: Vec<f64> = (0..draws).map(|_| beta(a, b, &mut rng)).collect();
        assert!(samples.iter().all(|x| (0.0..=1.0).contains(x)));
        let mean = samples.iter().sum::<f64>() / draws as f64;
        let variance = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (draws - 1) as f64;
        (mean, variance)
    }

    #[test]
    fn beta_sampler_matches_the_moments() {
        // Beta(a, b): mean a/(a+b), variance ab / ((a+b)²(a+b+1)).
        for (a, b) in [(2.0, 5.0), (0.5, 0.5), (30.0, 70.0), (1.0, 1.0), (0.2, 3.0)] {
            let (mean, variance) = moments(a, b, 100_000, 17);
            let want_mean = a / (a + b);
            let want_variance = a * b / ((a + b) * (a + b) * (a + b + 1.0));
            assert!((mean - want_mean).abs() < 0.005, "Beta({a}, {b}) mean {mean} vs {want_mean}");
            assert!((variance - want_variance).abs() < 0.05 * want_variance, "Beta({a}, {b}) variance {variance}");
        }
        // Vanishing shapes still give a value in [0, 1].
        let mut rng = seeded_rng(1);
        assert!((0..100).map(|_| beta(1e-300, 1e-300, &mut rng)).all(|x| x == 0.0 || x == 1.0));
    }

    #[test]
    fn hand_checked_two_arm_propensities() {
        // Arm 0 after one click: Beta(2, 1), density 2x. Arm 1: Beta(1, 1) = U.
        // P(arm 0 wins) = P(U < X) = E[X] = 2/3.
        let mut bandit = BernoulliThompson::new(2).unwrap();
        bandit.update(0, true).unwrap();
        let p = bandit.propensities(&mut seeded_rng(5), 100_000).unwrap();
        assert!((p[0] - 2.0 / 3.0).abs() < 0.01 && (p[1] - 1.0 / 3.0).abs() < 0.01, "{p:?}");
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(bandit.posterior(0).unwrap(), (2.0, 1.0));
        assert!((bandit.mean(0).unwrap() - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn a_fresh_bandit_is_uniform_and_a_trained_one_exploits() {
        let mut bandit = BernoulliThompson::new(4).unwrap();
        let mut rng = seeded_rng(9);
        for p in bandit.propensities(&mut rng, 100_000).unwrap() {
            assert!((p - 0.25).abs() < 0.01);
        }
        // True click rates 2 %, 5 %, 3 %, 1 %: play 5 000 rounds.
        let rates = [0.02, 0.05, 0.03, 0.01];
        for _ in 0..5_000 {
            let arm = bandit.choose(&mut rng);
            bandit.update(arm, rng.gen_bool(rates[arm])).unwrap();
        }
        let p = bandit.propensities(&mut rng, 10_000).unwrap();
        assert!(p[1] > 0.5, "{p:?}");
    }

    #[test]
    fn seeded_runs_are_deterministic() {
        let mut bandit = BernoulliThompson::with_prior(3, 2.0, 50.0).unwrap();
        bandit.update(2, true).unwrap();
        let run = |seed| {
            let mut rng = seeded_rng(seed);
            let choices: Vec<usize> = (0..50).map(|_| bandit.choose(&mut rng)).collect();
            (choices, bandit.propensities(&mut rng, 1_000).unwrap())
        };
        assert_eq!(run(3), run(3));
    }

    #[test]
    fn remove_unlearns_exactly() {
        let mut bandit = BernoulliThompson::new(2).unwrap();
        let fresh = bandit.clone();
        bandit.update(1, false).unwrap();
        bandit.remove(1, false).unwrap();
        assert_eq!(bandit, fresh);
        assert_eq!(bandit.remove(1, true).unwrap_err().code(), "nothing_to_remove");
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert_eq!(BernoulliThompson::new(0).unwrap_err().code(), "invalid_parameter");
        assert_eq!(BernoulliThompson::new(MAX_ARMS + 1).unwrap_err().code(), "invalid_parameter");
        assert_eq!(BernoulliThompson::with_prior(2, 0.0, 1.0).unwrap_err().code(), "invalid_parameter");
        assert_eq!(BernoulliThompson::with_prior(2, 1.0, f64::NAN).unwrap_err().code(), "invalid_parameter");
        let mut bandit = BernoulliThompson::new(2).unwrap();
        assert_eq!(bandit.update(2, true).unwrap_err().code(), "arm_out_of_range");
        assert_eq!(bandit.remove(5, false).unwrap_err().code(), "arm_out_of_range");
        assert_eq!(bandit.posterior(2).unwrap_err().code(), "arm_out_of_range");
        assert_eq!(bandit.propensities(&mut seeded_rng(0), 0).unwrap_err().code(), "invalid_parameter");
    }

    #[test]
    fn serde_roundtrip_and_validation() {
        let mut bandit = BernoulliThompson::with_prior(3, 1.0, 19.0).unwrap();
        bandit.update(0, true).unwrap();
        bandit.update(2, false).unwrap();
        let json = serde_json::to_string(&bandit).unwrap();
        assert_eq!(json, r#"{"prior_alpha":1.0,"prior_beta":19.0,"successes":[1,0,0],"failures":[0,0,1]}"#);
        assert_eq!(serde_json::from_str::<BernoulliThompson>(&json).unwrap(), bandit);
        for bad in [
            r#"{"prior_alpha":1.0,"prior_beta":1.0,"successes":[],"failures":[]}"#,
            r#"{"prior_alpha":1.0,"prior_beta":1.0,"successes":[1],"failures":[]}"#,
            r#"{"prior_alpha":-1.0,"prior_beta":1.0,"successes":[1],"failures":[0]}"#,
        ] {
            assert!(serde_json::from_str::<BernoulliThompson>(bad).is_err(), "{bad}");
        }
    }
}
