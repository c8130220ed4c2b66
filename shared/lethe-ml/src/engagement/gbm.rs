//! Gradient-boosted trees with logistic loss through forust-ml (XGBoost's algorithm, histogram splits).
//!
//! Training runs single-threaded: the box this runs on is small, and it keeps results independent of
//! thread scheduling.
//!
//! # Exclusive feature bundling
//!
//! forust-ml builds one histogram per column and node, so one-hot encoded categoricals (dozens of sparse
//! 0/1 columns) cost it many times what the same information costs as one numeric column. With
//! [`GbmParams::feature_bundling`] (on by default) training first applies exclusive feature bundling (EFB,
//! Ke et al. 2017, "LightGBM", without LightGBM's tolerated conflicts):
//!
//! - a column is *bundleable* if every training value is exactly 0 or 1 and at least one is 1;
//! - bundleable columns, most 1s first (ties by position), go greedily into the first group in which no
//!   training row already has a 1, else into a new group; a group holds at most 254 columns (and at most
//!   `nbins − 1`, so that every code gets its own histogram bin); at most 1024 groups are opened, and a
//!   column finding no room once they are stays as it is;
//! - each group of two or more columns becomes one column holding 0 when none of its columns is active
//!   and `1 + k` when its `k`-th column (in schema order) is; a group of one stays as it was.
//!
//! The booster sees the unbundled columns in schema order, then the bundles in the order of their first
//! column. The plan is part of the serialized model and applied to every prediction, so prediction sees
//! exactly the encoding training saw. At prediction a bundled column counts as *active* when its value is
//! at least 1 (where an unbundled tree would split a 0/1 column); if several columns of one bundle are
//! active in one row, which training never saw, the first of them in schema order wins. Models serialized
//! before bundling existed carry no plan and predict as before (an empty plan is the identity).

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

use super::{sigmoid, EngagementModel, ModelKind, MODEL_FORMAT_VERSION};
use crate::dataset::{EngagementDataset, FeatureSchema};
use crate::error::{ensure_non_negative, ensure_positive, invalid, MlError, Result};

/// Hyperparameters of [`GbmModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbmParams {
    /// Number of trees. Default 100.
    pub iterations: usize,
    /// Shrinkage applied to each tree. Default 0.1.
    pub learning_rate: f64,
    /// Maximum tree depth. Default 4.
    pub max_depth: usize,
    /// L2 penalty on leaf weights (XGBoost's λ). Default 1.0.
    pub l2: f64,
    /// Minimum loss reduction to split (XGBoost's γ). Default 0.0.
    pub gamma: f64,
    /// Minimum hessian sum in a leaf. Default 1.0.
    pub min_leaf_weight: f64,
    /// Histogram bins per feature, 2 to 65535. Default 256.
    pub nbins: u16,
    /// Share of rows sampled per tree, in (0, 1]. Default 1.0.
    pub subsample: f64,
    /// Share of features sampled per tree, in (0, 1]. Default 1.0. With feature bundling, a bundle is one
    /// feature.
    pub colsample_bytree: f64,
    /// Exclusive feature bundling of sparse 0/1 columns (see the module documentation). Default `true`;
    /// parameters serialized before the switch existed read as `true`.
    #[serde(default = "default_feature_bundling")]
    pub feature_bundling: bool,
}

fn default_feature_bundling() -> bool {
    true
}

impl Default for GbmParams {
    fn default() -> Self {
        Self {
            iterations: 100,
            learning_rate: 0.1,
            max_depth: 4,
            l2: 1.0,
            gamma: 0.0,
            min_leaf_weight: 1.0,
            nbins: 256,
            subsample: 1.0,
            colsample_bytree: 1.0,
            feature_bundling: true,
        }
    }
}

impl GbmParams {
    fn validate(&self) -> Result<()> {
        if self.iterations == 0 {
            return Err(invalid("gbm.iterations", "must be at least 1"));
        }
        if self.max_depth == 0 {
            return Err(invalid("gbm.max_depth", "must be at least 1"));
        }
        if self.nbins < 2 {
            return Err(invalid("gbm.nbins", "must be at least 2"));
        }
        ensure_positive(self.learning_rate, "gbm.learning_rate")?;
        ensure_non_negative(self.l2, "gbm.l2")?;
        ensure_non_negative(self.gamma, "gbm.gamma")?;
        ensure_non_negative(self.min_leaf_weight, "gbm.min_leaf_weight")?;
        for (value, name) in [(self.subsample, "gbm.subsample"), (self.colsample_bytree, "gbm.colsample_bytree")] {
            if !(value > 0.0 && value <= 1.0) {
                return Err(invalid(name, "must lie in (0, 1]"));
            }
        }
        Ok(())
    }
}

fn backend(e: forust_ml::errors::ForustError) -> MlError {
    MlError::Backend { library: "forust-ml", message: e.to_string() }
}

/// The most columns in one bundle: codes 0..=254 fit LightGBM's 255 bins and forust-ml's default 256.
const MAX_BUNDLE: usize = 254;

/// Groups searched for room for a bundleable column; bounds the planning time and the bitsets' memory.
const MAX_GROUPS: usize = 1024;

/// How the schema's columns map to the columns the booster is trained on (see the module documentation).
/// Empty, it is the identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct BundlePlan {
    /// The schema columns passed through unchanged, ascending; the booster's first columns. Empty when
    /// `bundles` is.
    passthrough: Vec<usize>,
    /// The schema columns of each bundle, ascending within a bundle, bundles by first column; the
    /// booster's columns after `passthrough`.
    bundles: Vec<Vec<usize>>,
}

impl BundlePlan {
    fn is_identity(&self) -> bool {
        self.bundles.is_empty()
    }

    /// Finds the bundles of `values` (row-major, `width` columns), `max_bundle` columns at most per bundle.
    fn fit(values: &[f64], width: usize, max_bundle: usize) -> Self {
        let max_bundle = max_bundle.min(MAX_BUNDLE);
        if max_bundle < 2 || width < 2 {
            return Self::default();
        }
        let rows = values.len() / width;
        let mut binary = vec![true; width];
        let mut active: Vec<Vec<usize>> = vec![Vec::new(); width];
        for (r, row) in values.chunks_exact(width).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                if v == 1.0 {
                    if binary[j] {
                        active[j].push(r);
                    }
                } else if v != 0.0 && binary[j] {
                    binary[j] = false;
                    active[j] = Vec::new();
                }
            }
        }
        let mut candidates: Vec<usize> = (0..width).filter(|&j| binary[j] && !active[j].is_empty()).collect();
        // Most 1s first (the hardest to place); the sort is stable, so ties keep schema order.
        candidates.sort_by_key(|&j| std::cmp::Reverse(active[j].len()));

        // Each group: its columns and a bitset of the rows where one of them is 1.
        let words = rows.div_ceil(64);
        let mut groups: Vec<(Vec<usize>, Vec<u64>)> = Vec::new();
        for j in candidates {
            let rows_of_j = &active[j];
            let free = |bits: &[u64]| rows_of_j.iter().all(|&r| bits[r / 64] & (1 << (r % 64)) == 0);
            let slot = groups.iter().position(|(cols, bits)| cols.len() < max_bundle && free(bits));
            let slot = match slot {
                Some(g) => g,
                None if groups.len() < MAX_GROUPS => {
                    groups.push((Vec::new(), vec![0; words]));
                    groups.len() - 1
                }
                None => continue,
            };
            let (cols, bits) = &mut groups[slot];
            cols.push(j);
            for &r in rows_of_j {
                bits[r / 64] |= 1 << (r % 64);
            }
        }

        let mut bundles: Vec<Vec<usize>> = groups
            .into_iter()
            .filter(|(cols, _)| cols.len() >= 2)
            .map(|(mut cols, _)| {
                cols.sort_unstable();
                cols
            })
            .collect();
        if bundles.is_empty() {
            return Self::default();
        }
        bundles.sort_unstable_by_key(|cols| cols[0]);
        let mut bundled = vec![false; width];
        for &j in bundles.iter().flatten() {
            bundled[j] = true;
        }
        let passthrough = (0..width).filter(|&j| !bundled[j]).collect();
        Self { passthrough, bundles }
    }

    /// The number of columns the booster sees for a schema of `width` columns.
    fn output_width(&self, width: usize) -> usize {
        if self.is_identity() {
            width
        } else {
            self.passthrough.len() + self.bundles.len()
        }
    }

    /// The booster's columns for `rows` (each of the schema's width), column-major.
    fn columns(&self, rows: &[&[f64]], width: usize) -> Vec<f64> {
        let n = rows.len();
        let mut row = vec![0.0; self.output_width(width)];
        let mut out = vec![0.0; n * row.len()];
        for (r, x) in rows.iter().enumerate() {
            self.row_into(x, &mut row);
            for (c, &v) in row.iter().enumerate() {
                out[c * n + r] = v;
            }
        }
        out
    }

    /// The booster's row for `x` (of the schema's width) in `out` (of [`BundlePlan::output_width`]):
    /// what [`BundlePlan::columns`] gives that row.
    fn row_into(&self, x: &[f64], out: &mut [f64]) {
        if self.is_identity() {
            out.copy_from_slice(x);
            return;
        }
        let (passthrough, bundled) = out.split_at_mut(self.passthrough.len());
        for (o, &j) in passthrough.iter_mut().zip(&self.passthrough) {
            *o = x[j];
        }
        for (o, cols) in bundled.iter_mut().zip(&self.bundles) {
            *o = cols.iter().position(|&j| x[j] >= 1.0).map_or(0.0, |k| (k + 1) as f64);
        }
    }
}

/// A trained gradient-boosted tree ensemble.
#[derive(Serialize, Deserialize)]
pub struct GbmModel {
    pub(crate) format_version: u32,
    schema: FeatureSchema,
    /// Absent from models serialized before feature bundling, and from models without bundles.
    #[serde(default, skip_serializing_if = "BundlePlan::is_identity")]
    bundling: BundlePlan,
    booster: GradientBooster,
}

impl std::fmt::Debug for GbmModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GbmModel")
            .field("format_version", &self.format_version)
            .field("schema", &self.schema)
            .field("bundles", &self.bundling.bundles)
            .field("trees", &self.booster.trees.len())
            .finish_non_exhaustive()
    }
}

impl GbmModel {
    /// Fits the ensemble; `seed` drives row and column sampling.
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`], [`MlError::SingleClass`], [`MlError::Backend`].
    pub fn train(dataset: &EngagementDataset, params: &GbmParams, seed: u64) -> Result<Self> {
        params.validate()?;
        if !dataset.has_both_classes() {
            return Err(MlError::SingleClass);
        }
        let mut booster = GradientBooster::default()
            .set_objective_type(ObjectiveType::LogLoss)
            .set_iterations(params.iterations)
            .set_learning_rate(params.learning_rate as f32)
            .set_max_depth(params.max_depth)
            .set_l2(params.l2 as f32)
            .set_gamma(params.gamma as f32)
            .set_min_leaf_weight(params.min_leaf_weight as f32)
            .set_nbins(params.nbins)
            .set_subsample(params.subsample as f32)
            .set_colsample_bytree(params.colsample_bytree)
            .set_initialize_base_score(true)
            .set_parallel(false)
            .set_seed(seed);
        let width = dataset.width();
        let bundling = if params.feature_bundling {
            BundlePlan::fit(dataset.values(), width, usize::from(params.nbins) - 1)
        } else {
            BundlePlan::default()
        };
        let rows: Vec<&[f64]> = dataset.values().chunks_exact(width).collect();
        let columns = bundling.columns(&rows, width);
        let matrix = Matrix::new(&columns, rows.len(), bundling.output_width(width));
        let y: Vec<f64> = dataset.labels().iter().map(|&l| if l { 1.0 } else { 0.0 }).collect();
        booster.fit_unweighted(&matrix, &y, None).map_err(backend)?;
        Ok(Self { format_version: MODEL_FORMAT_VERSION, schema: dataset.schema().clone(), bundling, booster })
    }

    /// The number of trees.
    #[must_use]
    pub fn trees(&self) -> usize {
        self.booster.trees.len()
    }

    /// The exclusive feature bundles the model was trained with: the schema positions of each bundle's
    /// columns, ascending, bundles by first column. Empty without bundling.
    #[must_use]
    pub fn bundles(&self) -> &[Vec<usize>] {
        &self.bundling.bundles
    }

    /// Log-odds of `rows`, each already checked against the schema.
    ///
    /// Row by row, each through every tree: the same sums, in the same order, as the booster's own
    /// `predict` (its base score, then each tree's leaf in turn), which lays the rows out
    /// column-major first and allocates one vector a tree ([`GbmModel::predict_rows_columnar`];
    /// `lethe-bench gbm` compares the two).
    fn log_odds(&self, rows: &[&[f64]]) -> Vec<f64> {
        let booster = &self.booster;
        let trees =
            &booster.trees[..booster.prediction_iteration.unwrap_or(booster.trees.len()).min(booster.trees.len())];
        let mut row = vec![0.0; self.bundling.output_width(self.schema.width())];
        rows.iter()
            .map(|x| {
                self.bundling.row_into(x, &mut row);
                trees
                    .iter()
                    .fold(booster.base_score, |sum, tree| sum + tree.predict_row_from_row_slice(&row, &booster.missing))
            })
            .collect()
    }

    /// Probabilities of `rows` as forust's own `predict` gives them, over the column-major copy of
    /// the rows and one vector a tree: the baseline that [`EngagementModel::predict_rows`], which
    /// walks the trees row by row, is measured against (`lethe-bench gbm`) and checked against.
    ///
    /// # Errors
    /// A row that does not fit the schema.
    pub fn predict_rows_columnar(&self, rows: &[&[f64]]) -> Result<Vec<f64>> {
        for x in rows {
            self.schema.check(x)?;
        }
        let width = self.schema.width();
        let columns = self.bundling.columns(rows, width);
        let matrix = Matrix::new(&columns, rows.len(), self.bundling.output_width(width));
        Ok(self.booster.predict(&matrix, false).into_iter().map(sigmoid).collect())
    }
}

impl EngagementModel for GbmModel {
    fn kind(&self) -> ModelKind {
        ModelKind::Gbm
    }

    fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    fn predict_proba(&self, x: &[f64]) -> Result<f64> {
        self.schema.check(x)?;
        let z = self.log_odds(&[x]).first().copied().ok_or(MlError::Numerical { what: "gbm prediction" })?;
        Ok(sigmoid(z))
    }

    fn predict_rows(&self, rows: &[&[f64]]) -> Result<Vec<f64>> {
        for x in rows {
            self.schema.check(x)?;
        }
        Ok(self.log_odds(rows).into_iter().map(sigmoid).collect())
    }

    fn predict_dataset(&self, dataset: &EngagementDataset) -> Result<Vec<f64>> {
        super::ensure_same_schema(&self.schema, dataset.schema())?;
        let rows: Vec<&[f64]> = dataset.values().chunks_exact(dataset.width()).collect();
        Ok(self.log_odds(&rows).into_iter().map(sigmoid).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row-major values of `rows`.
    fn flat(rows: &[[f64; 7]]) -> Vec<f64> {
        rows.iter().flatten().copied().collect()
    }

    /// Columns: 0 dense, 1–3 exclusive 0/1 (one categorical), 4 a 0/1 column that co-occurs with 1 (but
    /// not with 5), 5 a 0/1 column exclusive with 4, 6 holding a 2 (not binary).
    const MATRIX: [[f64; 7]; 6] = [
        [0.5, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        [1.5, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0],
        [2.5, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        [3.5, 1.0, 0.0, 0.0, 1.0, 0.0, 2.0],
        [4.5, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        [5.5, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0],
    ];

    fn rows(values: &[f64], width: usize) -> Vec<&[f64]> {
        values.chunks_exact(width).collect()
    }

    #[test]
    fn plan_on_a_hand_made_matrix() {
        let values = flat(&MATRIX);
        let plan = BundlePlan::fit(&values, 7, 255);
        // Most 1s first: 5 (3), then 1, 2, 4 (2 each, by position), then 3 (1). 5 opens group A; 1 joins A
        // (rows 0, 3 free); 2 conflicts with A (rows 1, 5) and opens B; 4 conflicts with A (1 and 4 share
        // rows 0, 3) but fits B; 3 conflicts with A (row 2) and fits B.
        assert_eq!(plan.bundles, vec![vec![1, 5], vec![2, 3, 4]]);
        assert_eq!(plan.passthrough, vec![0, 6]);
        assert_eq!(plan.output_width(7), 4);
        let columns = plan.columns(&rows(&values, 7), 7);
        let booster_column = |c: usize| &columns[c * 6..(c + 1) * 6];
        assert_eq!(booster_column(0), &[0.5, 1.5, 2.5, 3.5, 4.5, 5.5]);
        assert_eq!(booster_column(1), &[0.0, 1.0, 0.0, 2.0, 1.0, 0.0]);
        // Bundle [1, 5]: code 1 for column 1, 2 for column 5.
        assert_eq!(booster_column(2), &[1.0, 2.0, 2.0, 1.0, 0.0, 2.0]);
        // Bundle [2, 3, 4]: 1 for column 2, 2 for 3, 3 for 4.
        assert_eq!(booster_column(3), &[3.0, 1.0, 2.0, 3.0, 0.0, 1.0]);
    }

    #[test]
    fn co_occurring_columns_never_share_a_bundle() {
        // Pseudo-random sparse 0/1 matrix: 400 rows, 40 columns, about 1 in 12 values set.
        let (n, w) = (400, 40);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let values: Vec<f64> = (0..n * w)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                if (state >> 33).is_multiple_of(12) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let plan = BundlePlan::fit(&values, w, 255);
        assert!(!plan.bundles.is_empty(), "some sparse columns should bundle");
        for bundle in &plan.bundles {
            for row in values.chunks_exact(w) {
                let active = bundle.iter().filter(|&&j| row[j] == 1.0).count();
                assert!(active <= 1, "bundle {bundle:?} has {active} active columns in one row");
            }
        }
        // Every column is used exactly once.
        let mut seen: Vec<usize> = plan.passthrough.iter().chain(plan.bundles.iter().flatten()).copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..w).collect::<Vec<_>>());
    }

    #[test]
    fn bundles_respect_the_size_cap_and_leave_dense_data_alone() {
        // 300 one-hot columns of one categorical, 600 rows.
        let (n, w) = (600, 300);
        let mut values = vec![0.0; n * w];
        for r in 0..n {
            values[r * w + r % w] = 1.0;
        }
        let plan = BundlePlan::fit(&values, w, 255);
        let sizes: Vec<usize> = plan.bundles.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![254, 46]);
        assert!(plan.passthrough.is_empty());
        assert_eq!(BundlePlan::fit(&values, w, 16).bundles.iter().map(Vec::len).max(), Some(16));
        assert!(BundlePlan::fit(&values, w, 1).is_identity());
        // Nothing binary: the identity, and the columns are the plain column-major copy.
        let dense = [0.5, 1.0, 2.0, 0.0];
        let identity = BundlePlan::fit(&dense, 2, 255);
        assert!(identity.is_identity());
        assert_eq!(identity.columns(&rows(&dense, 2), 2), vec![0.5, 2.0, 1.0, 0.0]);
    }

    #[test]
    fn prediction_rows_with_conflicts_take_the_first_active_column() {
        let plan = BundlePlan { passthrough: vec![0], bundles: vec![vec![1, 2, 3]] };
        let x: [&[f64]; 4] =
            [&[7.0, 0.0, 1.0, 1.0], &[7.0, 0.0, 0.0, 0.0], &[7.0, 0.5, 0.0, 3.0], &[7.0, 1.0, 1.0, 1.0]];
        // Below 1 is inactive (an unbundled tree splits a 0/1 column at 1); the first active column wins.
        assert_eq!(plan.columns(&x, 4), vec![7.0, 7.0, 7.0, 7.0, 2.0, 0.0, 3.0, 1.0]);
    }

    /// The row-by-row walk gives the booster's own predictions (`predict_rows_columnar`), bit for
    /// bit, with bundles and without.
    #[test]
    fn row_by_row_log_odds_are_the_boosters_own() {
        let (n, w) = (600, 7);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        let mut values = Vec::with_capacity(n * w);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            // A dense column, a one-hot categorical of three (bundled), two sparse flags and a count.
            let dense = (next() % 1000) as f64 / 100.0;
            let category = next() % 4;
            let row = [
                dense,
                f64::from(u8::from(category == 1)),
                f64::from(u8::from(category == 2)),
                f64::from(u8::from(category == 3)),
                f64::from(u8::from(next() % 9 == 0)),
                f64::from(u8::from(next() % 11 == 0)),
                (next() % 5) as f64,
            ];
            labels.push(dense + 3.0 * row[2] - 2.0 * row[3] + (next() % 300) as f64 / 100.0 > 6.0);
            values.extend_from_slice(&row);
        }
        let schema = FeatureSchema::new((0..w).map(|j| format!("f{j}"))).unwrap();
        let dataset = EngagementDataset::from_row_major(schema, values.clone(), labels).unwrap();
        for bundling in [true, false] {
            let params = GbmParams { iterations: 30, feature_bundling: bundling, ..GbmParams::default() };
            let model = GbmModel::train(&dataset, &params, 7).unwrap();
            assert_eq!(model.bundling.is_identity(), !bundling, "the data has a bundle to find");
            let rows = rows(&values, w);
            let theirs = model.predict_rows_columnar(&rows).unwrap();
            let ours = model.predict_rows(&rows).unwrap();
            assert_eq!(ours.len(), n);
            for (a, b) in ours.iter().zip(&theirs) {
                assert_eq!(a.to_bits(), b.to_bits(), "bundling {bundling}: {a} != {b}");
            }
            assert!(ours.iter().any(|v| (v - ours[0]).abs() > 1e-6), "the trees split the rows");
            // A model read back from its serialized form predicts alike.
            let stored: GbmModel = serde_json::from_slice(&serde_json::to_vec(&model).unwrap()).unwrap();
            let again = stored.predict_rows(&rows).unwrap();
            assert!(again.iter().zip(&theirs).all(|(a, b)| a.to_bits() == b.to_bits()), "bundling {bundling}");
        }
    }

    #[test]
    fn params_without_the_switch_deserialize_with_bundling_on() {
        let mut json = serde_json::to_value(GbmParams::default()).unwrap();
        json.as_object_mut().unwrap().remove("feature_bundling");
        let params: GbmParams = serde_json::from_value(json).unwrap();
        assert_eq!(params, GbmParams::default());
        assert!(params.feature_bundling);
    }
}
