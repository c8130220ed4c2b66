//! The crate's single error type, with a stable machine code per variant.

/// `Result` with [`BanditError`].
pub type Result<T, E = BanditError> = std::result::Result<T, E>;

/// Everything that can go wrong while validating inputs, learning, choosing or evaluating.
///
/// Messages name the offending argument, sizes and positions but never carry feature values or rewards,
/// so they are safe to log.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum BanditError {
    /// An input that must hold at least one element holds none.
    #[error("{what} is empty")]
    EmptyInput {
        /// Which input.
        what: &'static str,
    },
    /// A feature vector whose length differs from the bandit's dimension.
    #[error("feature vector has length {found}, the bandit has dimension {expected}")]
    DimensionMismatch {
        /// The bandit's dimension.
        expected: usize,
        /// The vector's length.
        found: usize,
    },
    /// Two inputs that must have the same length do not.
    #[error("{what}: expected length {expected}, found {found}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// A value is NaN or infinite where a finite number is required (or a computation overflowed).
    #[error("{what} holds a value that is not finite")]
    NonFinite {
        /// Which input or result.
        what: &'static str,
    },
    /// A hyperparameter or argument outside its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// What it must satisfy.
        reason: &'static str,
    },
    /// A logged propensity that is not in `(0, 1]`.
    #[error("round {round}: the logged propensity must be in (0, 1]")]
    InvalidPropensity {
        /// The round's index in the log.
        round: usize,
    },
    /// A target policy's probabilities for a round that are not a probability distribution.
    #[error("round {round}: the target probabilities must lie in [0, 1] and sum to 1")]
    InvalidDistribution {
        /// The round's index in the log.
        round: usize,
    },
    /// A logged action that the target policy's probabilities for that round do not cover.
    #[error("round {round}: action {action} is outside the {actions} actions of the target policy")]
    ActionOutOfRange {
        /// The round's index in the log.
        round: usize,
        /// The logged action.
        action: usize,
        /// How many actions the target policy gives probabilities for.
        actions: usize,
    },
    /// An arm index the bandit does not have.
    #[error("arm {arm} does not exist, the bandit has {arms} arms")]
    ArmOutOfRange {
        /// The index given.
        arm: usize,
        /// How many arms there are.
        arms: usize,
    },
    /// Unlearning requested from a model that holds no such observation.
    #[error("nothing to remove: {what}")]
    NothingToRemove {
        /// What is missing.
        what: &'static str,
    },
    /// Removing the observation would leave the design matrix not positive definite, so it cannot have
    /// been learned (with this reward) earlier.
    #[error("the observation to remove was never learned: removing it breaks the model's invariants")]
    InconsistentRemoval,
    /// An arm that reports more clicks than impressions.
    #[error("{arm} arm has more clicks than impressions")]
    ClicksExceedImpressions {
        /// `"live"` or `"canary"`.
        arm: &'static str,
    },
    /// The importance weights of all rounds are zero: the target policy never takes a logged action,
    /// so the self-normalized estimate is undefined.
    #[error("all importance weights are zero")]
    ZeroTotalWeight,
    /// Too few elements for the operation.
    #[error("not enough {what}: need {needed}, found {found}")]
    NotEnoughData {
        /// What is counted.
        what: &'static str,
        /// The minimum.
        needed: usize,
        /// What was given.
        found: usize,
    },
    /// A deserialized state that breaks the type's invariants.
    #[error("invalid state: {reason}")]
    InvalidState {
        /// Which invariant.
        reason: &'static str,
    },
    /// A numerical routine failed (for example a matrix that is not positive definite).
    #[error("numerical failure in {what}")]
    Numerical {
        /// Which routine.
        what: &'static str,
    },
}

impl BanditError {
    /// A stable, machine-readable snake_case code for this error; never changes once published.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::EmptyInput { .. } => "empty_input",
            Self::DimensionMismatch { .. } => "dimension_mismatch",
            Self::LengthMismatch { .. } => "length_mismatch",
            Self::NonFinite { .. } => "non_finite",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::InvalidPropensity { .. } => "invalid_propensity",
            Self::InvalidDistribution { .. } => "invalid_distribution",
            Self::ActionOutOfRange { .. } => "action_out_of_range",
            Self::ArmOutOfRange { .. } => "arm_out_of_range",
            Self::NothingToRemove { .. } => "nothing_to_remove",
            Self::InconsistentRemoval => "inconsistent_removal",
            Self::ClicksExceedImpressions { .. } => "clicks_exceed_impressions",
            Self::ZeroTotalWeight => "zero_total_weight",
            Self::NotEnoughData { .. } => "not_enough_data",
            Self::InvalidState { .. } => "invalid_state",
            Self::Numerical { .. } => "numerical_failure",
        }
    }
}

pub(crate) fn invalid(name: &'static str, reason: &'static str) -> BanditError {
    BanditError::InvalidParameter { name, reason }
}

/// Fails with [`BanditError::NonFinite`] if any value is NaN or infinite.
pub(crate) fn ensure_finite(values: &[f64], what: &'static str) -> Result<()> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(BanditError::NonFinite { what })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_snake_case() {
        let all = [
            BanditError::EmptyInput { what: "x" },
            BanditError::DimensionMismatch { expected: 2, found: 3 },
            BanditError::LengthMismatch { what: "x", expected: 2, found: 3 },
            BanditError::NonFinite { what: "x" },
            invalid("alpha", "must be positive"),
            BanditError::InvalidPropensity { round: 0 },
            BanditError::InvalidDistribution { round: 0 },
            BanditError::ActionOutOfRange { round: 0, action: 3, actions: 2 },
            BanditError::ArmOutOfRange { arm: 3, arms: 2 },
            BanditError::NothingToRemove { what: "x" },
            BanditError::InconsistentRemoval,
            BanditError::ClicksExceedImpressions { arm: "live" },
            BanditError::ZeroTotalWeight,
            BanditError::NotEnoughData { what: "rounds", needed: 2, found: 1 },
            BanditError::InvalidState { reason: "x" },
            BanditError::Numerical { what: "x" },
        ];
        for error in &all {
            let code = error.code();
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{code}");
        }
        let mut codes: Vec<_> = all.iter().map(BanditError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "codes are distinct");
        assert_eq!(BanditError::InvalidPropensity { round: 3 }.code(), "invalid_propensity");
        assert_eq!(
            BanditError::DimensionMismatch { expected: 2, found: 3 }.to_string(),
            "feature vector has length 3, the bandit has dimension 2"
        );
    }
}
