//! Model selection for recommenders: k-fold cross-validation that holds out a different part of every
//! user's interactions in each fold, and a grid search over item-kNN and ALS candidates by mean NDCG@k.
//!
//! Rows are the (user, item) pairs of an [`Interactions`] in its iteration order (users ascending, then
//! items ascending), numbered from 0, so the folds are plain [`Fold`]s of [`crate::validation`] and the
//! search is [`grid_search`] with NDCG as the score.

use rand::seq::SliceRandom;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::{
    evaluate_at_k, AlsModel, AlsParams, Interactions, ItemId, ItemKnn, ItemKnnParams, RankingReport, Scored, UserId,
    UserRecommender,
};
use crate::error::{invalid, MlError, Result};
use crate::seeded_rng;
use crate::validation::{grid_search, mean_sd, Fold, Goal};

/// A recommender algorithm with its hyperparameters: one candidate of [`search`].
///
/// Serializes as `{"algorithm": "itemknn" | "als", "params": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", content = "params")]
pub enum Candidate {
    /// Item-to-item collaborative filtering.
    #[serde(rename = "itemknn")]
    ItemKnn(ItemKnnParams),
    /// Implicit matrix factorization.
    #[serde(rename = "als")]
    Als(AlsParams),
}

impl Candidate {
    /// The algorithm's name: `itemknn` or `als`.
    #[must_use]
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::ItemKnn(_) => "itemknn",
            Self::Als(_) => "als",
        }
    }

    /// Trains the candidate on `interactions` (`seed` initializes ALS; item-kNN has no randomness).
    ///
    /// # Errors
    /// The errors of [`ItemKnn::train`] and [`AlsModel::train`].
    pub fn train(&self, interactions: &Interactions, seed: u64) -> Result<Trained> {
        Ok(match self {
            Self::ItemKnn(p) => Trained::ItemKnn(ItemKnn::train(interactions, p)?),
            Self::Als(p) => Trained::Als(AlsModel::train(interactions, p, seed)?),
        })
    }
}

/// A model trained from a [`Candidate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Trained {
    /// An item-kNN model.
    ItemKnn(ItemKnn),
    /// An ALS model.
    Als(AlsModel),
}

impl UserRecommender for Trained {
    fn recommend_for_user(
        &self,
        user: UserId,
        history: &[(ItemId, f64)],
        k: usize,
        exclude: &[ItemId],
    ) -> Result<Vec<Scored>> {
        match self {
            Self::ItemKnn(m) => m.recommend_for_user(user, history, k, exclude),
            Self::Als(m) => m.recommend_for_user(user, history, k, exclude),
        }
    }
}

/// A small grid for training inside a running service: three item-kNN variants (the defaults first,
/// so they win a tie) and two ALS variants (the defaults, and fewer factors with more regularization,
/// which suits small data and trains several times faster).
#[must_use]
pub fn default_grid() -> Vec<Candidate> {
    vec![
        Candidate::ItemKnn(ItemKnnParams::default()),
        Candidate::ItemKnn(ItemKnnParams { neighbours: 20, shrinkage: 2.0 }),
        Candidate::ItemKnn(ItemKnnParams { neighbours: 100, shrinkage: 25.0 }),
        Candidate::Als(AlsParams::default()),
        Candidate::Als(AlsParams { factors: 32, regularization: 0.1, iterations: 10, ..AlsParams::default() }),
    ]
}

/// Splits every user's interactions into `k` folds: each user's interactions are shuffled (seeded) and
/// dealt into consecutive folds from a random starting fold, so each fold holds out about `1/k` of
/// every user's interactions and a user with fewer than `k` lands in different folds than others.
///
/// Users with fewer than 2 interactions are never held out (they are in every fold's train set), and
/// no fold holds out all of a user's interactions. Across the `k` test sets every row of a user with 2
/// or more interactions appears exactly once; a fold's train set is every other row. With few users a
/// test set can be empty. The same seed gives the same folds.
///
/// # Errors
/// [`MlError::InvalidParameter`] for `k < 2`.
pub fn user_k_fold(interactions: &Interactions, k: usize, seed: u64) -> Result<Vec<Fold>> {
    if k < 2 {
        return Err(invalid("k", "a k-fold split needs at least 2 folds"));
    }
    let mut rng = seeded_rng(seed);
    // The test fold of each row; None: always in train.
    let mut assignment: Vec<Option<usize>> = Vec::with_capacity(interactions.len());
    for (_, history) in interactions.iter() {
        let n = history.len();
        if n < 2 {
            assignment.extend(std::iter::repeat_n(None, n));
            continue;
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let offset = rng.gen_range(0..k);
        let mut folds = vec![None; n];
        for (position, &row) in order.iter().enumerate() {
            // Positions [f·n/k, (f+1)·n/k) share a fold: at most ⌈n/k⌉ ≤ n − 1 of the user's rows.
            folds[row] = Some((position * k / n + offset) % k);
        }
        assignment.extend(folds);
    }
    Ok((0..k)
        .map(|f| {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..assignment.len()).partition(|&row| assignment[row] == Some(f));
            Fold { train, test }
        })
        .collect())
}

/// The (train, test) interactions of a fold of [`user_k_fold`] (rows numbered as there).
///
/// # Errors
/// [`MlError::InvalidParameter`] for a row beyond the interactions.
pub fn split_fold(interactions: &Interactions, fold: &Fold) -> Result<(Interactions, Interactions)> {
    let rows = interactions.len();
    // 0: neither, 1: train, 2: test.
    let mut side = vec![0u8; rows];
    for (list, mark) in [(&fold.train, 1u8), (&fold.test, 2u8)] {
        for &row in list {
            *side.get_mut(row).ok_or_else(|| invalid("fold", "names a row beyond the interactions"))? = mark;
        }
    }
    let (mut train, mut test) = (Interactions::default(), Interactions::default());
    let mut row = 0;
    for (user, history) in interactions.iter() {
        for &pair in history {
            match side[row] {
                1 => train.by_user.entry(user).or_default().push(pair),
                2 => test.by_user.entry(user).or_default().push(pair),
                _ => {}
            }
            row += 1;
        }
    }
    Ok((train, test))
}

/// A candidate's cross-validated ranking quality at `k`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvScore {
    /// The report of each evaluated fold, in fold order.
    pub folds: Vec<RankingReport>,
    /// Mean NDCG@k over folds.
    pub ndcg_mean: f64,
    /// Sample standard deviation of NDCG@k over folds.
    pub ndcg_sd: f64,
    /// Mean precision@k over folds.
    pub precision_mean: f64,
    /// Sample standard deviation of precision@k over folds.
    pub precision_sd: f64,
}

/// One candidate of a [`RecommenderSearch`] with its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredCandidate {
    /// The candidate.
    pub candidate: Candidate,
    /// Its cross-validated score.
    pub score: CvScore,
}

/// The outcome of [`search`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommenderSearch {
    /// Every candidate, in the order given.
    pub entries: Vec<ScoredCandidate>,
    /// Index of the best entry: highest mean NDCG, the earliest candidate on a tie.
    pub best: usize,
    /// Folds evaluated (those with a non-empty test set).
    pub folds: usize,
    /// Users held out in some fold (those with 2 or more interactions).
    pub users: usize,
}

impl RecommenderSearch {
    /// The best entry.
    #[must_use]
    pub fn best_entry(&self) -> &ScoredCandidate {
        &self.entries[self.best]
    }

    /// The best entry of one algorithm (`itemknn`, `als`), by the same rule.
    #[must_use]
    pub fn best_of(&self, algorithm: &str) -> Option<&ScoredCandidate> {
        let mut best: Option<&ScoredCandidate> = None;
        for entry in self.entries.iter().filter(|e| e.candidate.algorithm() == algorithm) {
            if best.is_none_or(|b| Goal::Maximize.improves(entry.score.ndcg_mean, b.score.ndcg_mean, 0.0)) {
                best = Some(entry);
            }
        }
        best
    }
}

/// Cross-validates every candidate on `folds` (from [`user_k_fold`]): per fold, trains on the fold's
/// train rows (ALS seeded with `seed`) and evaluates NDCG@k and precision@k with [`evaluate_at_k`] on
/// its test rows; folds with an empty test set are skipped. Chooses the best mean NDCG@k, the
/// earliest candidate on a tie.
///
/// Cost: one training per candidate and evaluated fold.
///
/// # Errors
/// [`MlError::EmptyInput`] without candidates, [`MlError::NotEnoughData`] when no fold holds anything
/// out, [`MlError::InvalidParameter`] for `k = 0` or a bad fold, and the candidates' training errors.
pub fn search(
    candidates: &[Candidate],
    interactions: &Interactions,
    folds: &[Fold],
    k: usize,
    seed: u64,
) -> Result<RecommenderSearch> {
    if candidates.is_empty() {
        return Err(MlError::EmptyInput { what: "grid candidates" });
    }
    let folds: Vec<Fold> = folds.iter().filter(|f| !f.test.is_empty()).cloned().collect();
    if folds.is_empty() {
        return Err(MlError::NotEnoughData { what: "held-out interactions", needed: 1, found: 0 });
    }
    let indices: Vec<usize> = (0..candidates.len()).collect();
    let mut reports: Vec<Vec<RankingReport>> = vec![Vec::with_capacity(folds.len()); candidates.len()];
    let found = grid_search(&indices, &folds, Goal::Maximize, |&c, fold| {
        let (train, test) = split_fold(interactions, fold)?;
        let model = candidates[c].train(&train, seed)?;
        let report = evaluate_at_k(&model, &train, &test, k)?;
        reports[c].push(report);
        Ok(report.ndcg)
    })?;
    let mut entries = Vec::with_capacity(candidates.len());
    for (entry, fold_reports) in found.entries.iter().zip(reports) {
        let precision: Vec<f64> = fold_reports.iter().map(|r| r.precision).collect();
        let (precision_mean, precision_sd) = mean_sd(&precision)?;
        entries.push(ScoredCandidate {
            candidate: candidates[entry.params].clone(),
            score: CvScore {
                folds: fold_reports,
                ndcg_mean: entry.mean,
                ndcg_sd: entry.sd,
                precision_mean,
                precision_sd,
            },
        });
    }
    let users = interactions.iter().filter(|(_, h)| h.len() >= 2).count();
    Ok(RecommenderSearch { entries, best: found.best, folds: folds.len(), users })
}

/// Cross-validates one candidate: [`search`] with a grid of one.
///
/// # Errors
/// As [`search`].
pub fn cross_validate(
    candidate: &Candidate,
    interactions: &Interactions,
    folds: &[Fold],
    k: usize,
    seed: u64,
) -> Result<CvScore> {
    let mut found = search(std::slice::from_ref(candidate), interactions, folds, k, seed)?;
    Ok(found.entries.swap_remove(0).score)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn t(u: u32, i: u32) -> (UserId, ItemId, f64) {
        (UserId(u), ItemId(i), 1.0)
    }

    /// Users 0–3 like all of items 0–3, users 4–7 all of items 4–7; user 8 liked item 0 only.
    fn two_clusters() -> Interactions {
        let mut triples = Vec::new();
        for u in 0..8 {
            let base = if u < 4 { 0 } else { 4 };
            triples.extend((base..base + 4).map(|i| t(u, i)));
        }
        triples.push(t(8, 0));
        Interactions::from_triples(&triples).unwrap()
    }

    #[test]
    fn folds_partition_each_users_interactions() {
        // User 1: 5 items, user 2: 2 items, user 3: 1 item. Rows: 0–4 user 1, 5–6 user 2, 7 user 3.
        let m = Interactions::from_triples(&[t(1, 0), t(1, 1), t(1, 2), t(1, 3), t(1, 4), t(2, 0), t(2, 1), t(3, 9)])
            .unwrap();
        for seed in 0..20 {
            let folds = user_k_fold(&m, 3, seed).unwrap();
            assert_eq!(folds.len(), 3);
            let mut held: Vec<usize> = folds.iter().flat_map(|f| f.test.iter().copied()).collect();
            held.sort_unstable();
            // Every row of users 1 and 2 is held out exactly once; user 3's single row never.
            assert_eq!(held, (0..7).collect::<Vec<_>>(), "seed {seed}");
            for fold in &folds {
                let test: BTreeSet<usize> = fold.test.iter().copied().collect();
                let train: BTreeSet<usize> = fold.train.iter().copied().collect();
                assert!(test.is_disjoint(&train), "seed {seed}: a row in train and test");
                assert_eq!(test.len() + train.len(), 8, "seed {seed}: every row is on one side");
                assert!(train.contains(&7), "the one-interaction user always trains");
                // 5 rows in 3 folds: 1 or 2 of user 1's; user 2's 2 rows in different folds.
                let of_user_1 = fold.test.iter().filter(|&&r| r < 5).count();
                assert!((1..=2).contains(&of_user_1), "seed {seed}: {fold:?}");
                assert!(fold.test.iter().filter(|&&r| r >= 5).count() <= 1, "seed {seed}: {fold:?}");
                // Materialized: the same split, and nobody loses their whole history.
                let (tr, te) = split_fold(&m, fold).unwrap();
                assert_eq!((tr.len(), te.len()), (train.len(), test.len()));
                for (user, h) in te.iter() {
                    assert!(!tr.history(user).is_empty(), "seed {seed}: user {user} fully held out");
                    assert!(h.iter().all(|p| !tr.history(user).contains(p)));
                }
            }
        }
    }

    #[test]
    fn same_seed_same_folds() {
        let m = two_clusters();
        assert_eq!(user_k_fold(&m, 3, 5).unwrap(), user_k_fold(&m, 3, 5).unwrap());
        assert_ne!(user_k_fold(&m, 3, 5).unwrap(), user_k_fold(&m, 3, 6).unwrap());
        assert_eq!(user_k_fold(&m, 1, 5).unwrap_err().code(), "invalid_parameter");
        // Nobody with two interactions: all folds empty, and search says so.
        let single = Interactions::from_triples(&[t(1, 1), t(2, 2)]).unwrap();
        let folds = user_k_fold(&single, 2, 1).unwrap();
        assert!(folds.iter().all(|f| f.test.is_empty() && f.train == vec![0, 1]));
        let err = search(&default_grid(), &single, &folds, 10, 1).unwrap_err();
        assert_eq!(err.code(), "not_enough_data");
        let bad = Fold { train: vec![0], test: vec![2] };
        assert_eq!(split_fold(&single, &bad).unwrap_err().code(), "invalid_parameter");
    }

    #[test]
    fn grid_search_picks_the_planted_best_and_breaks_ties_by_order() {
        // Users 0, 1, 2 each liked items 0–3: rows 0–3, 4–7, 8–11.
        let m =
            Interactions::from_triples(&(0..3).flat_map(|u| (0..4).map(move |i| t(u, i))).collect::<Vec<_>>()).unwrap();
        let fold = |held: usize| Fold { train: (0..12).filter(|&r| r != held).collect(), test: vec![held] };
        // Fold A holds out user 0's item 3, fold B user 1's item 0.
        let folds = [fold(3), fold(4)];
        // Fold A, shrinkage 0: item 3 was liked by two users, items 0–2 by three; sim(0, 1) = 3 / 3 = 1
        // beats sim(0, 3) = 2 / √6, so with one neighbour items 0, 1, 2 keep 1, 0, 0 (ties by id), all
        // seen by user 0: nothing recommended, NDCG 0. With three neighbours item 3 is the only unseen
        // neighbour: ranked first, NDCG 1, precision@10 = 1/10. Fold B is the same with item 0.
        let one = |s| Candidate::ItemKnn(ItemKnnParams { neighbours: 1, shrinkage: s });
        let three = |s| Candidate::ItemKnn(ItemKnnParams { neighbours: 3, shrinkage: s });
        let found = search(&[one(0.0), three(0.0), one(5.0)], &m, &folds, 10, 1).unwrap();
        assert_eq!(found.best, 1, "{found:?}");
        assert_eq!((found.folds, found.users), (2, 3));
        let best = found.best_entry().score.clone();
        assert_eq!((best.ndcg_mean, best.ndcg_sd, best.precision_mean, best.precision_sd), (1.0, 0.0, 0.1, 0.0));
        assert_eq!(best.folds.iter().map(|r| r.users).collect::<Vec<_>>(), vec![1, 1]);
        assert_eq!((found.entries[0].score.ndcg_mean, found.entries[2].score.ndcg_mean), (0.0, 0.0));
        assert_eq!(found.best_of("itemknn").unwrap().candidate, three(0.0));
        assert!(found.best_of("als").is_none());
        // Shrinkage 5 scales the similarities but not the ranking: an exact tie, which the earlier
        // candidate wins whichever it is.
        let tie = search(&[three(5.0), three(0.0)], &m, &folds, 10, 1).unwrap();
        assert_eq!((tie.best, tie.entries[1].score.clone()), (0, best.clone()));
        assert_eq!(tie.entries[0].score.ndcg_mean, 1.0);
        assert_eq!(search(&[three(0.0), three(5.0)], &m, &folds, 10, 1).unwrap().best, 0);
        assert_eq!(cross_validate(&three(0.0), &m, &folds, 10, 1).unwrap(), best);
        assert_eq!(search(&[], &m, &folds, 10, 1).unwrap_err().code(), "empty_input");
    }

    #[test]
    fn the_default_grid_runs_and_serializes() {
        let m = two_clusters();
        let folds = user_k_fold(&m, 3, 7).unwrap();
        let found = search(&default_grid(), &m, &folds, 10, 7).unwrap();
        assert_eq!(found.entries.len(), default_grid().len());
        assert_eq!(found.folds, 3);
        assert!(found.best_of("als").is_some() && found.best_of("itemknn").is_some());
        for e in &found.entries {
            assert!(e.score.folds.iter().all(|r| r.users > 0));
            assert!((0.0..=1.0).contains(&e.score.ndcg_mean), "{e:?}");
        }
        assert_eq!(found.clone(), found);
        let json = serde_json::to_value(&default_grid()[0]).unwrap();
        assert_eq!(json["algorithm"], "itemknn");
        assert_eq!(json["params"]["neighbours"], 50);
    }
}
