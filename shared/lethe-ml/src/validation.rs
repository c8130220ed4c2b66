//! Model selection: seeded k-fold and grouped k-fold splits, grid search over a small parameter grid
//! (mean ± standard deviation of a metric across folds), and early stopping for iterative trainers.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{ensure_non_negative, invalid, MlError, Result};
use crate::seeded_rng;

/// One cross-validation fold: row indices to train on and to test on, each ascending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    /// Rows to train on.
    pub train: Vec<usize>,
    /// Rows held out for evaluation.
    pub test: Vec<usize>,
}

/// Whether larger or smaller metric values are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Goal {
    /// Larger is better (AUC, NDCG).
    Maximize,
    /// Smaller is better (log loss, RMSE).
    Minimize,
}

impl Goal {
    /// Whether `candidate` beats `incumbent` by more than `min_delta`.
    #[must_use]
    pub fn improves(self, candidate: f64, incumbent: f64, min_delta: f64) -> bool {
        match self {
            Self::Maximize => candidate > incumbent + min_delta,
            Self::Minimize => candidate < incumbent - min_delta,
        }
    }
}

fn check_k(k: usize) -> Result<()> {
    if k < 2 {
        return Err(invalid("k", "a k-fold split needs at least 2 folds"));
    }
    Ok(())
}

/// Builds folds from a fold number per row.
fn folds_from_assignment(assignment: &[usize], k: usize) -> Vec<Fold> {
    (0..k)
        .map(|f| {
            let (test, train): (Vec<usize>, Vec<usize>) = (0..assignment.len()).partition(|&i| assignment[i] == f);
            Fold { train, test }
        })
        .collect()
}

/// Splits `rows` row indices into `k` folds after a seeded shuffle. Every row is in exactly one test
/// set; test sets differ in size by at most one. The same seed gives the same folds.
///
/// # Errors
/// [`MlError::InvalidParameter`] for `k < 2`, [`MlError::NotEnoughData`] for fewer rows than folds.
pub fn k_fold(rows: usize, k: usize, seed: u64) -> Result<Vec<Fold>> {
    check_k(k)?;
    if rows < k {
        return Err(MlError::NotEnoughData { what: "rows", needed: k, found: rows });
    }
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(&mut seeded_rng(seed));
    let mut assignment = vec![0; rows];
    for (position, &row) in order.iter().enumerate() {
        // Positions [f·n/k, (f+1)·n/k) go to fold f.
        assignment[row] = position * k / rows;
    }
    Ok(folds_from_assignment(&assignment, k))
}

/// Splits rows into `k` folds so that all rows of one group (for example one subject) fall in the same
/// fold, and no group straddles a train and a test set.
///
/// Groups are ordered by a seeded shuffle, then placed largest first into the fold with the fewest rows
/// so far (ties to the lower fold), which keeps fold sizes close.
///
/// # Errors
/// [`MlError::InvalidParameter`] for `k < 2`, [`MlError::NotEnoughData`] for fewer distinct groups
/// than folds (including no rows at all).
pub fn group_k_fold<G: Ord>(groups: &[G], k: usize, seed: u64) -> Result<Vec<Fold>> {
    check_k(k)?;
    let mut by_group: BTreeMap<&G, Vec<usize>> = BTreeMap::new();
    for (row, group) in groups.iter().enumerate() {
        by_group.entry(group).or_default().push(row);
    }
    if by_group.len() < k {
        return Err(MlError::NotEnoughData { what: "distinct groups", needed: k, found: by_group.len() });
    }
    let mut members: Vec<Vec<usize>> = by_group.into_values().collect();
    members.shuffle(&mut seeded_rng(seed));
    // Stable: equal sizes keep their shuffled order.
    members.sort_by_key(|rows| std::cmp::Reverse(rows.len()));
    let mut fold_sizes = vec![0usize; k];
    let mut assignment = vec![0; groups.len()];
    for rows in &members {
        let (fold, _) = fold_sizes.iter().enumerate().min_by_key(|&(f, size)| (*size, f)).unwrap_or((0, &0));
        fold_sizes[fold] += rows.len();
        for &row in rows {
            assignment[row] = fold;
        }
    }
    Ok(folds_from_assignment(&assignment, k))
}

/// Mean and sample standard deviation (n − 1 in the denominator; 0 for a single value).
///
/// # Errors
/// [`MlError::EmptyInput`] for no values, [`MlError::NonFinite`] for NaN or infinite ones.
pub fn mean_sd(values: &[f64]) -> Result<(f64, f64)> {
    if values.is_empty() {
        return Err(MlError::EmptyInput { what: "values" });
    }
    crate::error::ensure_finite(values, "values")?;
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() == 1 {
        return Ok((mean, 0.0));
    }
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    Ok((mean, var.sqrt()))
}

/// A named, ordered set of parameter values, one combination of a [`ParamGrid`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSet(Vec<(String, f64)>);

impl ParamSet {
    /// The value of a named parameter.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// The (name, value) pairs in axis order.
    #[must_use]
    pub fn entries(&self) -> &[(String, f64)] {
        &self.0
    }
}

/// A Cartesian grid of named numeric parameters, for [`grid_search`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamGrid {
    axes: Vec<(String, Vec<f64>)>,
}

impl ParamGrid {
    /// An empty grid (one combination with no parameters).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an axis.
    ///
    /// # Errors
    /// [`MlError::EmptyInput`] for no values, [`MlError::NonFinite`] for a NaN or infinite value,
    /// [`MlError::InvalidParameter`] for a repeated axis name.
    pub fn axis(mut self, name: impl Into<String>, values: &[f64]) -> Result<Self> {
        let name = name.into();
        if values.is_empty() {
            return Err(MlError::EmptyInput { what: "grid axis values" });
        }
        crate::error::ensure_finite(values, "grid axis values")?;
        if self.axes.iter().any(|(n, _)| *n == name) {
            return Err(invalid("grid axis", "axis names must be unique"));
        }
        self.axes.push((name, values.to_vec()));
        Ok(self)
    }

    /// Every combination; the first axis varies slowest.
    #[must_use]
    pub fn combinations(&self) -> Vec<ParamSet> {
        let mut out = vec![Vec::new()];
        for (name, values) in &self.axes {
            out = out
                .into_iter()
                .flat_map(|prefix: Vec<(String, f64)>| {
                    values.iter().map(move |&v| {
                        let mut set = prefix.clone();
                        set.push((name.clone(), v));
                        set
                    })
                })
                .collect();
        }
        out.into_iter().map(ParamSet).collect()
    }
}

/// One candidate's result in a [`GridSearch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridEntry<P> {
    /// The candidate parameters.
    pub params: P,
    /// The metric on each fold, in fold order.
    pub fold_scores: Vec<f64>,
    /// Mean over folds.
    pub mean: f64,
    /// Sample standard deviation over folds.
    pub sd: f64,
}

/// The outcome of [`grid_search`]: every candidate's scores and the index of the best.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridSearch<P> {
    /// One entry per candidate, in candidate order.
    pub entries: Vec<GridEntry<P>>,
    /// Index of the best entry (best mean; the earliest candidate wins a tie).
    pub best: usize,
    /// The direction the metric was optimized in.
    pub goal: Goal,
}

impl<P> GridSearch<P> {
    /// The best entry.
    #[must_use]
    pub fn best_entry(&self) -> &GridEntry<P> {
        &self.entries[self.best]
    }
}

/// Evaluates every candidate on every fold with `evaluate(candidate, fold)` and reports mean ± sd per
/// candidate and the best by mean.
///
/// # Errors
/// [`MlError::EmptyInput`] without candidates or folds, [`MlError::NonFinite`] if `evaluate` returns
/// NaN or infinity, and any error `evaluate` returns.
pub fn grid_search<P, F>(candidates: &[P], folds: &[Fold], goal: Goal, mut evaluate: F) -> Result<GridSearch<P>>
where
    P: Clone,
    F: FnMut(&P, &Fold) -> Result<f64>,
{
    if candidates.is_empty() {
        return Err(MlError::EmptyInput { what: "grid candidates" });
    }
    if folds.is_empty() {
        return Err(MlError::EmptyInput { what: "folds" });
    }
    let mut entries = Vec::with_capacity(candidates.len());
    let mut best = 0;
    for (index, params) in candidates.iter().enumerate() {
        let fold_scores = folds.iter().map(|fold| evaluate(params, fold)).collect::<Result<Vec<f64>>>()?;
        crate::error::ensure_finite(&fold_scores, "grid search scores")?;
        let (mean, sd) = mean_sd(&fold_scores)?;
        entries.push(GridEntry { params: params.clone(), fold_scores, mean, sd });
        if goal.improves(mean, entries[best].mean, 0.0) {
            best = index;
        }
    }
    Ok(GridSearch { entries, best, goal })
}

/// What an iterative trainer should do after reporting a validation metric to [`EarlyStopping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopDecision {
    /// The value is the best so far: keep (a copy of) this model and go on.
    Improved,
    /// No improvement, but patience is not exhausted: go on.
    Continue,
    /// `patience` rounds passed without improvement: stop and use the best model.
    Stop,
}

/// Patience-based early stopping on a validation metric.
///
/// Call [`EarlyStopping::observe`] once per iteration (epoch, tree, ALS sweep) with the validation
/// metric; stop when it says [`StopDecision::Stop`].
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStopping {
    goal: Goal,
    patience: usize,
    min_delta: f64,
    best: Option<(usize, f64)>,
    observed: usize,
    since_best: usize,
}

impl EarlyStopping {
    /// Stops after `patience` consecutive iterations that do not beat the best value by more than
    /// `min_delta`.
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`] for `patience = 0` or a negative or non-finite `min_delta`.
    pub fn new(goal: Goal, patience: usize, min_delta: f64) -> Result<Self> {
        if patience == 0 {
            return Err(invalid("patience", "must be at least 1"));
        }
        ensure_non_negative(min_delta, "min_delta")?;
        Ok(Self { goal, patience, min_delta, best: None, observed: 0, since_best: 0 })
    }

    /// Records the metric of the next iteration (iterations count from 0).
    ///
    /// # Errors
    /// [`MlError::NonFinite`] for NaN or infinity (the state is left unchanged).
    pub fn observe(&mut self, value: f64) -> Result<StopDecision> {
        if !value.is_finite() {
            return Err(MlError::NonFinite { what: "validation metric" });
        }
        let iteration = self.observed;
        self.observed += 1;
        let improved = match self.best {
            None => true,
            Some((_, best)) => self.goal.improves(value, best, self.min_delta),
        };
        if improved {
            self.best = Some((iteration, value));
            self.since_best = 0;
            return Ok(StopDecision::Improved);
        }
        self.since_best += 1;
        Ok(if self.since_best >= self.patience { StopDecision::Stop } else { StopDecision::Continue })
    }

    /// The iteration with the best value so far.
    #[must_use]
    pub fn best_iteration(&self) -> Option<usize> {
        self.best.map(|(i, _)| i)
    }

    /// The best value so far.
    #[must_use]
    pub fn best_value(&self) -> Option<f64> {
        self.best.map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_fold_sizes_and_errors() {
        let folds = k_fold(10, 3, 1).unwrap();
        let sizes: Vec<usize> = folds.iter().map(|f| f.test.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 10);
        assert!(sizes.iter().all(|&s| s == 3 || s == 4));
        assert_eq!(k_fold(10, 1, 1).unwrap_err().code(), "invalid_parameter");
        assert_eq!(k_fold(2, 3, 1).unwrap_err().code(), "not_enough_data");
        assert_eq!(k_fold(10, 3, 1).unwrap(), folds);
        assert_ne!(k_fold(10, 3, 2).unwrap(), folds);
    }

    #[test]
    fn mean_sd_hand_case() {
        // mean (1 + 2 + 3) / 3 = 2; squared deviations 1 + 0 + 1 = 2; / (3 − 1) = 1 → sd 1
        assert_eq!(mean_sd(&[1.0, 2.0, 3.0]).unwrap(), (2.0, 1.0));
        assert_eq!(mean_sd(&[4.0]).unwrap(), (4.0, 0.0));
        assert_eq!(mean_sd(&[]).unwrap_err().code(), "empty_input");
    }

    #[test]
    fn param_grid_combinations() {
        let grid = ParamGrid::new().axis("a", &[1.0, 2.0]).unwrap().axis("b", &[10.0, 20.0, 30.0]).unwrap();
        let combos = grid.combinations();
        assert_eq!(combos.len(), 6);
        assert_eq!(combos[0].get("a"), Some(1.0));
        assert_eq!(combos[1].get("b"), Some(20.0));
        assert_eq!(combos[5].entries(), &[("a".to_string(), 2.0), ("b".to_string(), 30.0)]);
        assert!(ParamGrid::new().axis("a", &[]).is_err());
        assert!(grid.clone().axis("a", &[1.0]).is_err());
    }

    #[test]
    fn early_stopping_patience() {
        let mut es = EarlyStopping::new(Goal::Minimize, 2, 0.0).unwrap();
        assert_eq!(es.observe(1.0).unwrap(), StopDecision::Improved);
        assert_eq!(es.observe(0.5).unwrap(), StopDecision::Improved);
        assert_eq!(es.observe(0.6).unwrap(), StopDecision::Continue);
        assert!(es.observe(f64::NAN).is_err());
        assert_eq!(es.observe(0.5).unwrap(), StopDecision::Stop);
        assert_eq!(es.best_iteration(), Some(1));
        assert_eq!(es.best_value(), Some(0.5));
        assert!(EarlyStopping::new(Goal::Maximize, 0, 0.0).is_err());
    }
}
