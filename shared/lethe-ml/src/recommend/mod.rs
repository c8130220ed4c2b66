//! Recommenders over implicit feedback: item-to-item collaborative filtering ([`ItemKnn`]), implicit
//! matrix factorization ([`AlsModel`]), content similarity ([`ContentModel`]) and popularity by segment
//! ([`Popularity`]) for cold start, plus ranking evaluation on held-out interactions ([`evaluate_at_k`])
//! and model selection: per-user k-fold cross-validation and a grid search over item-kNN and ALS
//! candidates by mean NDCG@k ([`user_k_fold`], [`search`]).
//!
//! Ids are the caller's dense catalogue numbers, never subject identifiers. Every `recommend` returns at
//! most `k` `(item, score)` pairs, best first, with ties broken by ascending item id, and skips the items
//! in `exclude`.

mod als;
mod content;
mod knn;
mod popularity;
mod select;

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

pub use als::{AlsModel, AlsParams};
pub use content::{ContentModel, ContentParams, ItemContent};
pub use knn::{ItemKnn, ItemKnnParams};
pub use popularity::{Popularity, PopularityParams};
pub use select::{
    cross_validate, default_grid, search, split_fold, user_k_fold, Candidate, CvScore, RecommenderSearch,
    ScoredCandidate, Trained,
};

use crate::error::{invalid, MlError, Result};
use crate::metrics::{ndcg_binary_at_k, precision_at_k, recall_at_k};
use crate::seeded_rng;

/// A catalogue item, by the caller's dense number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ItemId(pub u32);

/// A user, by a dense number the trainer assigns (never a subject id or pseudonym).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub u32);

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An item with its score.
pub type Scored = (ItemId, f64);

/// Implicit feedback: a positive strength (such as an interaction count) per (user, item) pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interactions {
    /// Per user, the (item, strength) pairs sorted by item.
    by_user: BTreeMap<UserId, Vec<(ItemId, f64)>>,
}

impl Interactions {
    /// Builds the matrix from (user, item, strength) triples; repeated pairs add up.
    ///
    /// # Errors
    /// [`MlError::NonFinite`] or [`MlError::OutOfRange`] for a strength that is not a finite number above 0.
    pub fn from_triples(triples: &[(UserId, ItemId, f64)]) -> Result<Self> {
        let mut acc: BTreeMap<UserId, BTreeMap<ItemId, f64>> = BTreeMap::new();
        for &(user, item, value) in triples {
            if !value.is_finite() {
                return Err(MlError::NonFinite { what: "interaction strength" });
            }
            if value <= 0.0 {
                return Err(MlError::OutOfRange { what: "interaction strength" });
            }
            *acc.entry(user).or_default().entry(item).or_insert(0.0) += value;
        }
        Ok(Self { by_user: acc.into_iter().map(|(u, items)| (u, items.into_iter().collect())).collect() })
    }

    /// The number of (user, item) pairs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_user.values().map(Vec::len).sum()
    }

    /// Whether there are no interactions.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }

    /// The users with at least one interaction, ascending.
    pub fn users(&self) -> impl Iterator<Item = UserId> + '_ {
        self.by_user.keys().copied()
    }

    /// The distinct items, ascending.
    #[must_use]
    pub fn items(&self) -> Vec<ItemId> {
        let mut items: Vec<ItemId> = self.by_user.values().flatten().map(|(i, _)| *i).collect();
        items.sort_unstable();
        items.dedup();
        items
    }

    /// A user's (item, strength) pairs sorted by item; empty for an unknown user.
    #[must_use]
    pub fn history(&self, user: UserId) -> &[(ItemId, f64)] {
        self.by_user.get(&user).map_or(&[], Vec::as_slice)
    }

    /// Every user with their history, by ascending user.
    pub fn iter(&self) -> impl Iterator<Item = (UserId, &[(ItemId, f64)])> + '_ {
        self.by_user.iter().map(|(u, h)| (*u, h.as_slice()))
    }

    /// Holds out `per_user` random interactions of every user who has more than `per_user`, for
    /// evaluation; returns (train, test). Users with fewer interactions stay entirely in train.
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`] for `per_user = 0`.
    pub fn split_holdout(&self, per_user: usize, seed: u64) -> Result<(Self, Self)> {
        if per_user == 0 {
            return Err(invalid("per_user", "must be at least 1"));
        }
        let mut rng = seeded_rng(seed);
        let (mut train, mut test) = (BTreeMap::new(), BTreeMap::new());
        for (&user, history) in &self.by_user {
            if history.len() <= per_user {
                train.insert(user, history.clone());
                continue;
            }
            let mut positions: Vec<usize> = (0..history.len()).collect();
            positions.shuffle(&mut rng);
            let held: HashSet<usize> = positions[..per_user].iter().copied().collect();
            let (t, h): (Vec<_>, Vec<_>) = history.iter().enumerate().partition(|(p, _)| !held.contains(p));
            train.insert(user, t.into_iter().map(|(_, x)| *x).collect());
            test.insert(user, h.into_iter().map(|(_, x)| *x).collect());
        }
        Ok((Self { by_user: train }, Self { by_user: test }))
    }
}

fn check_k(k: usize) -> Result<()> {
    if k == 0 {
        Err(invalid("k", "must be at least 1"))
    } else {
        Ok(())
    }
}

/// The `k` best of `scores` not in `exclude`: score descending, then item id ascending. Non-finite
/// scores are dropped.
pub(crate) fn top_k(scores: impl IntoIterator<Item = Scored>, k: usize, exclude: &[ItemId]) -> Vec<Scored> {
    let exclude: HashSet<ItemId> = exclude.iter().copied().collect();
    let mut all: Vec<Scored> =
        scores.into_iter().filter(|(item, score)| score.is_finite() && !exclude.contains(item)).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

/// Per item, its most similar items (best first): the sparse result of [`ItemKnn`] and
/// [`ContentModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NeighbourTable {
    items: Vec<ItemId>,
    neighbours: Vec<Vec<Scored>>,
}

impl NeighbourTable {
    /// Keeps the best `n` of each item's candidate neighbours (similarity above zero).
    pub(crate) fn new(items: Vec<ItemId>, candidates: Vec<Vec<Scored>>, n: usize) -> Self {
        let neighbours =
            candidates.into_iter().map(|c| top_k(c.into_iter().filter(|(_, s)| *s > 0.0), n, &[])).collect();
        Self { items, neighbours }
    }

    pub(crate) fn get(&self, item: ItemId) -> Option<&[Scored]> {
        self.items.binary_search(&item).ok().map(|i| self.neighbours[i].as_slice())
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

/// A recommender that can rank items for a user given the user's history, so different models can be
/// evaluated the same way.
pub trait UserRecommender {
    /// The best `k` items for `user`, whose known interactions are `history`, skipping `exclude`.
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`] for `k = 0`; model-specific errors.
    fn recommend_for_user(
        &self,
        user: UserId,
        history: &[(ItemId, f64)],
        k: usize,
        exclude: &[ItemId],
    ) -> Result<Vec<Scored>>;
}

/// Ranking quality averaged over users, from [`evaluate_at_k`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankingReport {
    /// Users evaluated (those with held-out items).
    pub users: usize,
    /// Mean binary NDCG@k.
    pub ndcg: f64,
    /// Mean precision@k.
    pub precision: f64,
    /// Mean recall@k.
    pub recall: f64,
}

/// Recommends `k` items to every user of `test` from their `train` history (excluding the train items)
/// and averages NDCG, precision and recall against the held-out `test` items.
///
/// # Errors
/// [`MlError::EmptyInput`] if `test` is empty, [`MlError::InvalidParameter`] for `k = 0`, and errors
/// of the model.
pub fn evaluate_at_k(
    model: &dyn UserRecommender,
    train: &Interactions,
    test: &Interactions,
    k: usize,
) -> Result<RankingReport> {
    check_k(k)?;
    if test.is_empty() {
        return Err(MlError::EmptyInput { what: "test interactions" });
    }
    let (mut ndcg, mut precision, mut recall, mut users) = (0.0, 0.0, 0.0, 0usize);
    for (user, held) in test.iter() {
        let history = train.history(user);
        let seen: Vec<ItemId> = history.iter().map(|(i, _)| *i).collect();
        let ranked: Vec<ItemId> =
            model.recommend_for_user(user, history, k, &seen)?.into_iter().map(|(i, _)| i).collect();
        let relevant: HashSet<ItemId> = held.iter().map(|(i, _)| *i).collect();
        ndcg += ndcg_binary_at_k(&ranked, &relevant, k)?;
        precision += precision_at_k(&ranked, &relevant, k)?;
        recall += recall_at_k(&ranked, &relevant, k)?;
        users += 1;
    }
    let n = users as f64;
    Ok(RankingReport { users, ndcg: ndcg / n, precision: precision / n, recall: recall / n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_breaks_ties_by_id_and_excludes() {
        let scores =
            vec![(ItemId(5), 1.0), (ItemId(2), 1.0), (ItemId(9), 3.0), (ItemId(1), f64::NAN), (ItemId(3), 0.5)];
        assert_eq!(top_k(scores.clone(), 3, &[]), vec![(ItemId(9), 3.0), (ItemId(2), 1.0), (ItemId(5), 1.0)]);
        assert_eq!(top_k(scores, 2, &[ItemId(9)]), vec![(ItemId(2), 1.0), (ItemId(5), 1.0)]);
    }

    #[test]
    fn interactions_sum_and_split() {
        let t = |u, i, v| (UserId(u), ItemId(i), v);
        let m = Interactions::from_triples(&[t(1, 1, 1.0), t(1, 1, 2.0), t(1, 2, 1.0), t(1, 3, 1.0), t(2, 1, 1.0)])
            .unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m.history(UserId(1))[0], (ItemId(1), 3.0));
        assert_eq!(m.items(), vec![ItemId(1), ItemId(2), ItemId(3)]);
        let (train, test) = m.split_holdout(1, 3).unwrap();
        assert_eq!(train.history(UserId(1)).len(), 2);
        assert_eq!(test.history(UserId(1)).len(), 1);
        assert_eq!(train.history(UserId(2)).len(), 1);
        assert!(test.history(UserId(2)).is_empty());
        assert_eq!(Interactions::from_triples(&[t(1, 1, 0.0)]).unwrap_err().code(), "out_of_range");
        assert_eq!(Interactions::from_triples(&[t(1, 1, f64::NAN)]).unwrap_err().code(), "non_finite");
    }
}
