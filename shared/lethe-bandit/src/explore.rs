//! From scores to a random choice with its exact propensity.
//!
//! Off-policy evaluation ([`crate::ope`]) needs, for every logged decision, the probability with which the
//! shown variant was chosen. An [`Exploration`] policy maps a score per candidate to a probability per
//! candidate ([`Exploration::probabilities`]) and samples from it ([`Exploration::choose`]); the returned
//! propensity is exactly the probability of the returned index, not an estimate.
//!
//! - [`EpsilonGreedy`]: the best-scoring candidates share `1 − ε`, and every candidate gets `ε / n`.
//! - [`Softmax`]: probabilities proportional to `exp(score / temperature)`.
//! - [`choose_slate`]: k distinct candidates for k positions.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ensure_finite, invalid, BanditError, Result};

/// A rule that turns one score per candidate into one probability per candidate.
pub trait Exploration {
    /// The probability of choosing each candidate: every value in `[0, 1]`, summing to 1 up to rounding.
    ///
    /// # Errors
    /// [`BanditError::EmptyInput`] for no scores, [`BanditError::NonFinite`] for a NaN or infinite score,
    /// [`BanditError::InvalidParameter`] for an invalid policy parameter.
    fn probabilities(&self, scores: &[f64]) -> Result<Vec<f64>>;

    /// Draws one candidate and returns `(index, propensity)`, where `propensity` is exactly
    /// `probabilities(scores)[index]` and always positive.
    ///
    /// # Errors
    /// As [`probabilities`](Self::probabilities).
    fn choose<R: Rng + ?Sized>(&self, scores: &[f64], rng: &mut R) -> Result<(usize, f64)> {
        let probabilities = self.probabilities(scores)?;
        sample(&probabilities, rng)
    }
}

/// ε-greedy exploration: with probability `1 − ε` show a best-scoring candidate, otherwise a uniformly
/// random one.
///
/// `P(i) = ε/n + (1 − ε)/m` when candidate `i` is one of the `m` candidates tied for the maximum score,
/// `ε/n` otherwise. With `ε = 0.1` over 4 candidates and a unique maximum: `0.925, 0.025, 0.025, 0.025`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpsilonGreedy {
    /// The exploration probability, in `[0, 1]`. With `ε = 0` candidates below the maximum get
    /// probability 0 and cannot be evaluated off-policy.
    pub epsilon: f64,
}

impl EpsilonGreedy {
    /// A validated policy.
    ///
    /// # Errors
    /// [`BanditError::InvalidParameter`] unless `0 ≤ epsilon ≤ 1`.
    pub fn new(epsilon: f64) -> Result<Self> {
        let policy = Self { epsilon };
        policy.check()?;
        Ok(policy)
    }

    fn check(&self) -> Result<()> {
        if (0.0..=1.0).contains(&self.epsilon) {
            Ok(())
        } else {
            Err(invalid("epsilon", "must be in [0, 1]"))
        }
    }
}

impl Exploration for EpsilonGreedy {
    fn probabilities(&self, scores: &[f64]) -> Result<Vec<f64>> {
        self.check()?;
        let max = max_score(scores)?;
        let n = scores.len() as f64;
        // Exact float equality: ties are scores that compare equal, as an argmax would see them.
        let tied = scores.iter().filter(|&&s| s == max).count() as f64;
        let base = self.epsilon / n;
        let bonus = (1.0 - self.epsilon) / tied;
        let probabilities = scores.iter().map(|&s| if s == max { base + bonus } else { base }).collect();
        Ok(probabilities)
    }
}

/// Softmax (Boltzmann) exploration: `P(i) ∝ exp(score_i / temperature)`.
///
/// A low temperature approaches greedy, a high one uniform. Computed as `exp((sᵢ − max s) / T)` so large
/// scores cannot overflow; a candidate far below the maximum can still get probability 0 by underflow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Softmax {
    /// The temperature, finite and positive.
    pub temperature: f64,
}

impl Softmax {
    /// A validated policy.
    ///
    /// # Errors
    /// [`BanditError::InvalidParameter`] unless `temperature` is finite and positive.
    pub fn new(temperature: f64) -> Result<Self> {
        let policy = Self { temperature };
        policy.check()?;
        Ok(policy)
    }

    fn check(&self) -> Result<()> {
        if self.temperature.is_finite() && self.temperature > 0.0 {
            Ok(())
        } else {
            Err(invalid("temperature", "must be a finite number greater than zero"))
        }
    }
}

impl Exploration for Softmax {
    fn probabilities(&self, scores: &[f64]) -> Result<Vec<f64>> {
        self.check()?;
        let max = max_score(scores)?;
        let mut weights: Vec<f64> = scores.iter().map(|s| ((s - max) / self.temperature).exp()).collect();
        // The maximum contributes exp(0) = 1, so the total is at least 1.
        let total: f64 = weights.iter().sum();
        if !total.is_finite() {
            return Err(BanditError::Numerical { what: "softmax normalization" });
        }
        for w in &mut weights {
            *w /= total;
        }
        Ok(weights)
    }
}

/// `k` distinct candidates for `k` positions, with the propensity of the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slate {
    /// Candidate indices, position by position.
    pub indices: Vec<usize>,
    /// The probability with which `indices[0]` was drawn for the first position. The other positions are
    /// deterministic given the first, so this is also the probability of the whole slate.
    pub propensity: f64,
}

/// Fills `k` positions: the first is drawn from `policy` with its exact propensity, the remaining `k − 1`
/// are the best-scoring other candidates in descending score order (ties by lower index).
///
/// The logged propensity ([`Slate::propensity`]) is that of the first position; evaluate off-policy per
/// first position, not per item shown lower in the slate.
///
/// # Errors
/// [`BanditError::InvalidParameter`] for `k = 0`, [`BanditError::NotEnoughData`] when there are fewer
/// than `k` candidates, and the errors of [`Exploration::probabilities`].
pub fn choose_slate<P, R>(scores: &[f64], k: usize, policy: &P, rng: &mut R) -> Result<Slate>
where
    P: Exploration + ?Sized,
    R: Rng + ?Sized,
{
    if k == 0 {
        return Err(invalid("k", "must be at least 1"));
    }
    if scores.len() < k {
        return Err(BanditError::NotEnoughData { what: "candidates", needed: k, found: scores.len() });
    }
    let (first, propensity) = policy.choose(scores, rng)?;
    let mut rest: Vec<usize> = (0..scores.len()).filter(|&i| i != first).collect();
    // Indices come from 0..len, so indexing cannot fail; descending score, then ascending index (stable sort).
    rest.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut indices = Vec::with_capacity(k);
    indices.push(first);
    indices.extend(rest.into_iter().take(k - 1));
    Ok(Slate { indices, propensity })
}

/// The largest score after checking that there is one and all are finite.
fn max_score(scores: &[f64]) -> Result<f64> {
    if scores.is_empty() {
        return Err(BanditError::EmptyInput { what: "scores" });
    }
    ensure_finite(scores, "scores")?;
    Ok(scores.iter().copied().fold(f64::NEG_INFINITY, f64::max))
}

/// Inverse-CDF sampling that never returns an index of probability 0.
pub(crate) fn sample<R: Rng + ?Sized>(probabilities: &[f64], rng: &mut R) -> Result<(usize, f64)> {
    let u: f64 = rng.gen();
    let mut cumulative = 0.0;
    let mut last_positive = None;
    for (i, &p) in probabilities.iter().enumerate() {
        if p > 0.0 {
            cumulative += p;
            last_positive = Some((i, p));
            if u < cumulative {
                return Ok((i, p));
            }
        }
    }
    // Rounding left the total a hair below u: the last candidate with positive probability absorbs it.
    last_positive.ok_or(BanditError::Numerical { what: "sampling from an all-zero distribution" })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::seeded_rng;

    fn assert_close(a: &[f64], b: &[f64], tolerance: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tolerance, "{a:?} vs {b:?}");
        }
    }

    fn frequencies<P: Exploration>(policy: &P, scores: &[f64], draws: usize, seed: u64) -> Vec<f64> {
        let mut rng = seeded_rng(seed);
        let probabilities = policy.probabilities(scores).unwrap();
        let mut counts = vec![0_usize; scores.len()];
        for _ in 0..draws {
            let (i, p) = policy.choose(scores, &mut rng).unwrap();
            assert_eq!(p, probabilities[i], "the propensity is the exact probability");
            counts[i] += 1;
        }
        counts.into_iter().map(|c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn epsilon_greedy_hand_checked() {
        // ε = 0.1, n = 4, unique max: 0.1/4 = 0.025 each, plus 0.9 for the max.
        let p = EpsilonGreedy::new(0.1).unwrap().probabilities(&[0.2, 0.9, 0.1, 0.3]).unwrap();
        assert_close(&p, &[0.025, 0.925, 0.025, 0.025], 1e-15);
        // ε = 0.2, n = 4, two tied maxima: 0.05 each, the maxima split 0.8 → 0.45.
        let p = EpsilonGreedy { epsilon: 0.2 }.probabilities(&[1.0, 3.0, 3.0, 0.0]).unwrap();
        assert_close(&p, &[0.05, 0.45, 0.45, 0.05], 1e-15);
        // ε = 1 is uniform, ε = 0 greedy.
        assert_close(&EpsilonGreedy { epsilon: 1.0 }.probabilities(&[5.0, 1.0]).unwrap(), &[0.5, 0.5], 0.0);
        assert_close(&EpsilonGreedy { epsilon: 0.0 }.probabilities(&[5.0, 1.0]).unwrap(), &[1.0, 0.0], 0.0);
    }

    #[test]
    fn softmax_hand_checked() {
        // Scores [0, ln 3] at T = 1: weights 1 and 3 → 1/4, 3/4. Doubling scores and T changes nothing.
        let ln3 = 3.0_f64.ln();
        assert_close(&Softmax::new(1.0).unwrap().probabilities(&[0.0, ln3]).unwrap(), &[0.25, 0.75], 1e-15);
        assert_close(&Softmax { temperature: 2.0 }.probabilities(&[0.0, 2.0 * ln3]).unwrap(), &[0.25, 0.75], 1e-15);
        // Huge scores do not overflow.
        assert_close(&Softmax { temperature: 1.0 }.probabilities(&[1e300, 1e300]).unwrap(), &[0.5, 0.5], 0.0);
    }

    #[test]
    fn empirical_frequencies_match_probabilities() {
        let scores = [0.2, 0.9, 0.1, 0.3];
        let eps = EpsilonGreedy { epsilon: 0.1 };
        assert_close(&frequencies(&eps, &scores, 100_000, 1), &eps.probabilities(&scores).unwrap(), 0.01);
        let soft = Softmax { temperature: 0.25 };
        assert_close(&frequencies(&soft, &scores, 100_000, 2), &soft.probabilities(&scores).unwrap(), 0.01);
    }

    #[test]
    fn choices_are_reproducible_from_the_seed() {
        let scores = [0.5, 0.4, 0.6];
        let policy = Softmax { temperature: 0.1 };
        let draw = |seed| {
            let mut rng = seeded_rng(seed);
            (0..20).map(|_| policy.choose(&scores, &mut rng).unwrap().0).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
    }

    #[test]
    fn slate_draws_the_first_and_fills_by_score() {
        let scores = [0.1, 0.9, 0.5, 0.7, 0.5];
        // ε = 0: the first position is the argmax with propensity 1, then descending, ties by index.
        let greedy = EpsilonGreedy { epsilon: 0.0 };
        let slate = choose_slate(&scores, 4, &greedy, &mut seeded_rng(0)).unwrap();
        assert_eq!(slate, Slate { indices: vec![1, 3, 2, 4], propensity: 1.0 });
        // ε = 1: a uniform first pick with propensity 1/5, never repeated below.
        let uniform = EpsilonGreedy { epsilon: 1.0 };
        let mut rng = seeded_rng(3);
        for _ in 0..100 {
            let slate = choose_slate(&scores, 3, &uniform, &mut rng).unwrap();
            assert!((slate.propensity - 0.2).abs() < 1e-15);
            let mut sorted = slate.indices.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 3);
        }
        assert_eq!(choose_slate(&scores, 0, &greedy, &mut rng).unwrap_err().code(), "invalid_parameter");
        assert_eq!(choose_slate(&scores, 6, &greedy, &mut rng).unwrap_err().code(), "not_enough_data");
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let mut rng = seeded_rng(0);
        assert_eq!(EpsilonGreedy::new(1.5).unwrap_err().code(), "invalid_parameter");
        assert_eq!(EpsilonGreedy::new(f64::NAN).unwrap_err().code(), "invalid_parameter");
        assert_eq!(EpsilonGreedy { epsilon: -0.1 }.probabilities(&[1.0]).unwrap_err().code(), "invalid_parameter");
        assert_eq!(Softmax::new(0.0).unwrap_err().code(), "invalid_parameter");
        assert_eq!(
            Softmax { temperature: f64::INFINITY }.choose(&[1.0], &mut rng).unwrap_err().code(),
            "invalid_parameter"
        );
        assert_eq!(EpsilonGreedy { epsilon: 0.1 }.choose(&[], &mut rng).unwrap_err().code(), "empty_input");
        assert_eq!(Softmax { temperature: 1.0 }.probabilities(&[1.0, f64::NAN]).unwrap_err().code(), "non_finite");
        assert_eq!(sample(&[0.0, 0.0], &mut rng).unwrap_err().code(), "numerical_failure");
    }

    proptest! {
        /// Probabilities always sum to 1 and lie in (0, 1]; the chosen index has positive propensity.
        #[test]
        fn propensities_sum_to_one_and_are_positive(
            scores in prop::collection::vec(-10.0..10.0_f64, 1..30),
            epsilon in 0.001..=1.0_f64,
            temperature in 0.1..10.0_f64,
            seed in any::<u64>(),
        ) {
            let mut rng = seeded_rng(seed);
            let all = [
                EpsilonGreedy { epsilon }.probabilities(&scores).unwrap(),
                Softmax { temperature }.probabilities(&scores).unwrap(),
            ];
            for probabilities in all {
                let total: f64 = probabilities.iter().sum();
                prop_assert!((total - 1.0).abs() < 1e-12, "sum {}", total);
                prop_assert!(probabilities.iter().all(|&p| p > 0.0 && p <= 1.0), "{:?}", probabilities);
            }
            let (i, p) = Softmax { temperature }.choose(&scores, &mut rng).unwrap();
            prop_assert!(i < scores.len() && p > 0.0);
            let (i, p) = EpsilonGreedy { epsilon }.choose(&scores, &mut rng).unwrap();
            prop_assert!(i < scores.len() && p > 0.0);
        }
    }
}
