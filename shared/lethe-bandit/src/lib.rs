//! Contextual bandits, exploration with exact propensities, off-policy evaluation and canary judging for
//! Lethe's decision service, pure compute.
//!
//! The decision service picks which banner or recommendation variant to show a visitor, logs the
//! probability with which it picked it (the *propensity*), and learns from click rewards. This crate holds
//! the arithmetic for every step of that loop:
//!
//! - [`linucb`]: [`LinUcb`], a shared-parameter linear contextual bandit (ridge regression plus an upper
//!   confidence bonus) with **exact unlearning** of a single earlier observation ([`LinUcb::remove`],
//!   R-ERASE-7).
//! - [`explore`]: turning scores into a random choice with its exact propensity: [`EpsilonGreedy`],
//!   [`Softmax`], and [`choose_slate`] for k distinct positions.
//! - [`thompson`]: [`BernoulliThompson`], per-arm Beta posteriors with Thompson sampling and Monte Carlo
//!   propensities (how the Open Bandit Dataset's BTS propensities were made).
//! - [`ope`]: off-policy evaluation of a target policy from logged feedback: [`ips`], [`snips`],
//!   [`doubly_robust`] and the [`on_policy`] mean, each with a 95 % interval ([`Estimate`]).
//! - [`canary`]: [`judge`], the rule that promotes or rolls back a canary model version on its measured
//!   click-through rate against the live version.
//!
//! **Invariants:** no IO, no clock, no global state. Every random choice comes from a generator handed in
//! by the caller (use [`seeded_rng`] for reproducible runs). Bad input (mismatched dimensions, NaN or
//! infinite numbers, propensities outside `(0, 1]`, unknown arms) gives a [`BanditError`] with a stable
//! [`code`](BanditError::code), never a panic. State types derive `serde` traits and are validated again
//! when deserialized.
//!
//! ```
//! use lethe_bandit::{seeded_rng, EpsilonGreedy, Exploration, LinUcb};
//!
//! let mut bandit = LinUcb::new(2, 1.0, 0.5)?;
//! bandit.update(&[1.0, 0.0], 1.0)?;
//! let candidates: [&[f64]; 2] = [&[1.0, 0.0], &[0.0, 1.0]];
//! let scores = bandit.scores(&candidates)?;
//! let (shown, propensity) = EpsilonGreedy { epsilon: 0.1 }.choose(&scores, &mut seeded_rng(7))?;
//! assert!(shown < 2 && propensity > 0.0);
//!
//! // Unlearning: the bandit forgets the observation exactly.
//! bandit.remove(&[1.0, 0.0], 1.0)?;
//! assert_eq!(bandit.observations(), 0);
//! assert_eq!(bandit.update(&[1.0], 1.0).unwrap_err().code(), "dimension_mismatch");
//! # Ok::<(), lethe_bandit::BanditError>(())
//! ```
//!
//! **Privacy note:** a bandit's parameters are a projection of the observations it learned from. When a
//! subject is erased, call [`LinUcb::remove`] (or [`BernoulliThompson::remove`]) with each of their logged
//! observations, or rebuild the model from the remaining log.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod canary;
mod error;
pub mod explore;
mod linalg;
pub mod linucb;
pub mod ope;
pub mod thompson;

pub use canary::{judge, Arm, CanaryRule, CanaryStats, Verdict, WaitReason};
pub use error::{BanditError, Result};
pub use explore::{choose_slate, EpsilonGreedy, Exploration, Slate, Softmax};
pub use linucb::LinUcb;
pub use ope::{doubly_robust, ips, on_policy, snips, Estimate, LoggedRound, OpeOptions};
pub use thompson::BernoulliThompson;

/// The crate's suggested random number generator (ChaCha8: portable and reproducible across platforms).
pub type Rng = rand_chacha::ChaCha8Rng;

/// A generator seeded from `seed`, for reproducible choices, simulations and Monte Carlo propensities.
#[must_use]
pub fn seeded_rng(seed: u64) -> Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}
