//! In-memory engagement datasets: the ordered feature schema and dense rows with binary labels.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{ensure_finite, ensure_len, MlError, Result};

/// The ordered names of the features of a dense feature vector.
///
/// A trained model stores the schema it was trained with and refuses vectors of another width, so a
/// feature added upstream cannot silently shift every other feature by one position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct FeatureSchema {
    names: Vec<String>,
}

impl FeatureSchema {
    /// A schema with these feature names, in this order.
    ///
    /// # Errors
    /// [`MlError::InvalidSchema`] if `names` is empty, or a name is empty or repeated.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Result<Self> {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.is_empty() {
            return Err(MlError::InvalidSchema { reason: "a schema needs at least one feature" });
        }
        let mut seen = HashSet::with_capacity(names.len());
        for name in &names {
            if name.is_empty() {
                return Err(MlError::InvalidSchema { reason: "feature names must not be empty" });
            }
            if !seen.insert(name.as_str()) {
                return Err(MlError::InvalidSchema { reason: "feature names must be unique" });
            }
        }
        Ok(Self { names })
    }

    /// The feature names, in vector order.
    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of features.
    #[must_use]
    pub fn width(&self) -> usize {
        self.names.len()
    }

    /// The position of a named feature.
    #[must_use]
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Checks that `x` is a finite vector of this schema's width.
    ///
    /// # Errors
    /// [`MlError::WidthMismatch`] or [`MlError::NonFinite`].
    pub fn check(&self, x: &[f64]) -> Result<()> {
        if x.len() != self.width() {
            return Err(MlError::WidthMismatch { expected: self.width(), found: x.len() });
        }
        ensure_finite(x, "feature vector")
    }
}

impl TryFrom<Vec<String>> for FeatureSchema {
    type Error = MlError;

    fn try_from(names: Vec<String>) -> Result<Self> {
        Self::new(names)
    }
}

impl From<FeatureSchema> for Vec<String> {
    fn from(schema: FeatureSchema) -> Self {
        schema.names
    }
}

/// Rows of dense features with a binary label each (engaged or not), and optionally a group id per row
/// (such as a pseudonymous subject number) for grouped cross-validation.
///
/// Construction validates everything once: at least one row, every row of the schema's width, every
/// value finite.
#[derive(Debug, Clone, PartialEq)]
pub struct EngagementDataset {
    schema: FeatureSchema,
    /// Row-major, `rows × schema.width()`.
    values: Vec<f64>,
    labels: Vec<bool>,
    groups: Option<Vec<u64>>,
}

impl EngagementDataset {
    /// A dataset from one vector per row.
    ///
    /// # Errors
    /// [`MlError::EmptyInput`] without rows, [`MlError::LengthMismatch`] if `labels` has another
    /// length, [`MlError::WidthMismatch`] for a row of the wrong width, [`MlError::NonFinite`] for NaN
    /// or infinite values.
    pub fn new(schema: FeatureSchema, rows: &[Vec<f64>], labels: Vec<bool>) -> Result<Self> {
        let mut values = Vec::with_capacity(rows.len() * schema.width());
        for row in rows {
            schema.check(row)?;
            values.extend_from_slice(row);
        }
        Self::from_row_major(schema, values, labels)
    }

    /// A dataset from row-major values (`labels.len() × schema.width()` of them).
    ///
    /// # Errors
    /// As [`EngagementDataset::new`].
    pub fn from_row_major(schema: FeatureSchema, values: Vec<f64>, labels: Vec<bool>) -> Result<Self> {
        if labels.is_empty() {
            return Err(MlError::EmptyInput { what: "dataset" });
        }
        ensure_len("feature values", labels.len() * schema.width(), values.len())?;
        ensure_finite(&values, "dataset features")?;
        Ok(Self { schema, values, labels, groups: None })
    }

    /// The same dataset with one group id per row.
    ///
    /// # Errors
    /// [`MlError::LengthMismatch`] unless there is exactly one group per row.
    pub fn with_groups(mut self, groups: Vec<u64>) -> Result<Self> {
        ensure_len("groups", self.labels.len(), groups.len())?;
        self.groups = Some(groups);
        Ok(self)
    }

    /// The feature schema.
    #[must_use]
    pub fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    /// The number of rows (never zero).
    #[must_use]
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always `false`: a dataset has at least one row. Present for API symmetry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The number of features per row.
    #[must_use]
    pub fn width(&self) -> usize {
        self.schema.width()
    }

    /// Row `i`'s features, or `None` past the end.
    #[must_use]
    pub fn row(&self, i: usize) -> Option<&[f64]> {
        let w = self.width();
        self.values.get(i * w..(i + 1) * w)
    }

    /// Every row's features, row-major.
    #[must_use]
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The labels.
    #[must_use]
    pub fn labels(&self) -> &[bool] {
        &self.labels
    }

    /// The group ids, if set.
    #[must_use]
    pub fn groups(&self) -> Option<&[u64]> {
        self.groups.as_deref()
    }

    /// The rows at `indices`, in that order (used for cross-validation folds).
    ///
    /// # Errors
    /// [`MlError::EmptyInput`] for no indices, [`MlError::OutOfRange`] for an index past the end.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        if indices.is_empty() {
            return Err(MlError::EmptyInput { what: "subset indices" });
        }
        let mut values = Vec::with_capacity(indices.len() * self.width());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let row = self.row(i).ok_or(MlError::OutOfRange { what: "subset indices" })?;
            values.extend_from_slice(row);
            labels.push(self.labels[i]);
        }
        let groups = self.groups.as_ref().map(|g| indices.iter().map(|&i| g[i]).collect());
        Ok(Self { schema: self.schema.clone(), values, labels, groups })
    }

    /// Whether both labels occur.
    #[must_use]
    pub fn has_both_classes(&self) -> bool {
        self.labels.iter().any(|&l| l) && self.labels.iter().any(|&l| !l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> FeatureSchema {
        FeatureSchema::new(["a", "b"]).unwrap()
    }

    #[test]
    fn schema_rejects_duplicates_and_empty() {
        assert_eq!(FeatureSchema::new(Vec::<String>::new()).unwrap_err().code(), "invalid_schema");
        assert_eq!(FeatureSchema::new(["a", "a"]).unwrap_err().code(), "invalid_schema");
        assert_eq!(FeatureSchema::new(["a", ""]).unwrap_err().code(), "invalid_schema");
        assert_eq!(schema().index_of("b"), Some(1));
    }

    #[test]
    fn dataset_validates_rows() {
        let err = EngagementDataset::new(schema(), &[vec![1.0]], vec![true]).unwrap_err();
        assert_eq!(err, MlError::WidthMismatch { expected: 2, found: 1 });
        let err = EngagementDataset::new(schema(), &[vec![1.0, f64::NAN]], vec![true]).unwrap_err();
        assert_eq!(err.code(), "non_finite");
        let err = EngagementDataset::new(schema(), &[vec![1.0, 2.0]], vec![true, false]).unwrap_err();
        assert_eq!(err.code(), "length_mismatch");
        let err = EngagementDataset::new(schema(), &[], vec![]).unwrap_err();
        assert_eq!(err.code(), "empty_input");
    }

    #[test]
    fn subset_and_values() {
        let ds = EngagementDataset::new(schema(), &[vec![1.0, 2.0], vec![3.0, 4.0]], vec![true, false])
            .unwrap()
            .with_groups(vec![7, 8])
            .unwrap();
        let sub = ds.subset(&[1]).unwrap();
        assert_eq!(sub.row(0), Some(&[3.0, 4.0][..]));
        assert_eq!(sub.groups(), Some(&[8][..]));
        assert_eq!(ds.values(), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(ds.subset(&[2]).unwrap_err().code(), "out_of_range");
    }
}
