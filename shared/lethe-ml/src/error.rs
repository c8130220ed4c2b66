//! The crate's single error type, with a stable machine code per variant.

use crate::recommend::{ItemId, UserId};

/// `Result` with [`MlError`].
pub type Result<T, E = MlError> = std::result::Result<T, E>;

/// Everything that can go wrong while validating inputs, training or scoring.
///
/// Messages name the offending argument and sizes but never carry feature values or identifiers of
/// people, so they are safe to log. Item and user ids are the caller's dense catalogue indices.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum MlError {
    /// An input that must hold at least one element holds none.
    #[error("{what} is empty")]
    EmptyInput {
        /// Which input.
        what: &'static str,
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
    /// A feature vector whose width differs from the model's or dataset's [`crate::FeatureSchema`].
    #[error("feature vector has width {found}, the schema has {expected} features")]
    WidthMismatch {
        /// The schema's width.
        expected: usize,
        /// The vector's width.
        found: usize,
    },
    /// A value is NaN or infinite where a finite number is required.
    #[error("{what} holds a value that is not finite")]
    NonFinite {
        /// Which input.
        what: &'static str,
    },
    /// A finite value outside the range its input allows (a probability above 1, a negative count).
    #[error("{what} holds a value out of range")]
    OutOfRange {
        /// Which input.
        what: &'static str,
    },
    /// Binary labels that are all positive or all negative, where both classes are required.
    #[error("labels hold a single class")]
    SingleClass,
    /// A hyperparameter or argument outside its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// What it must satisfy.
        reason: &'static str,
    },
    /// A feature schema that is empty or names a feature twice.
    #[error("invalid feature schema: {reason}")]
    InvalidSchema {
        /// Why.
        reason: &'static str,
    },
    /// Too few rows, groups or items for the operation.
    #[error("not enough {what}: need {needed}, found {found}")]
    NotEnoughData {
        /// What is counted.
        what: &'static str,
        /// The minimum.
        needed: usize,
        /// What was given.
        found: usize,
    },
    /// A ranked list names the same item twice.
    #[error("item {0} appears twice in a ranked list")]
    DuplicateItem(ItemId),
    /// A ranking metric that is undefined without relevant items (NDCG, recall).
    #[error("no relevant items")]
    NoRelevantItems,
    /// The model does not know this item.
    #[error("unknown item {0}")]
    UnknownItem(ItemId),
    /// The model does not know this user.
    #[error("unknown user {0}")]
    UnknownUser(UserId),
    /// A numerical routine failed (for example a matrix that is not positive definite).
    #[error("numerical failure in {what}")]
    Numerical {
        /// Which routine.
        what: &'static str,
    },
    /// The underlying learning library refused the data or the parameters.
    #[error("{library} failed: {message}")]
    Backend {
        /// The library (`linfa-logistic`, `linfa-ftrl`, `forust-ml`).
        library: &'static str,
        /// Its message.
        message: String,
    },
}

impl MlError {
    /// A stable, machine-readable code for this error; never changes once published.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::EmptyInput { .. } => "empty_input",
            Self::LengthMismatch { .. } => "length_mismatch",
            Self::WidthMismatch { .. } => "width_mismatch",
            Self::NonFinite { .. } => "non_finite",
            Self::OutOfRange { .. } => "out_of_range",
            Self::SingleClass => "single_class",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::InvalidSchema { .. } => "invalid_schema",
            Self::NotEnoughData { .. } => "not_enough_data",
            Self::DuplicateItem(_) => "duplicate_item",
            Self::NoRelevantItems => "no_relevant_items",
            Self::UnknownItem(_) => "unknown_item",
            Self::UnknownUser(_) => "unknown_user",
            Self::Numerical { .. } => "numerical_failure",
            Self::Backend { .. } => "backend_failure",
        }
    }
}

pub(crate) fn invalid(name: &'static str, reason: &'static str) -> MlError {
    MlError::InvalidParameter { name, reason }
}

/// Fails with [`MlError::NonFinite`] if any value is NaN or infinite.
pub(crate) fn ensure_finite(values: &[f64], what: &'static str) -> Result<()> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(MlError::NonFinite { what })
    }
}

/// Fails unless `value` is finite and strictly positive.
pub(crate) fn ensure_positive(value: f64, name: &'static str) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(invalid(name, "must be a finite number greater than zero"))
    }
}

/// Fails unless `value` is finite and not negative.
pub(crate) fn ensure_non_negative(value: f64, name: &'static str) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(invalid(name, "must be a finite number of at least zero"))
    }
}

pub(crate) fn ensure_len(what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(MlError::LengthMismatch { what, expected, found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(MlError::SingleClass.code(), "single_class");
        assert_eq!(MlError::WidthMismatch { expected: 2, found: 3 }.code(), "width_mismatch");
        assert_eq!(MlError::UnknownItem(ItemId(4)).to_string(), "unknown item 4");
    }
}
