//! Item-to-item collaborative filtering on implicit feedback: shrunk cosine similarity between item
//! columns of the user × item matrix, the top-N neighbours of each item kept sparse.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{check_k, top_k, Interactions, ItemId, NeighbourTable, Scored, UserId, UserRecommender};
use crate::engagement::MODEL_FORMAT_VERSION;
use crate::error::{ensure_non_negative, invalid, MlError, Result};

/// Hyperparameters of [`ItemKnn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemKnnParams {
    /// Neighbours kept per item. Default 50.
    pub neighbours: usize,
    /// Shrinkage `s` in `sim(i, j) = r_i·r_j / (‖r_i‖·‖r_j‖ + s)`; damps similarities resting on few
    /// co-occurrences. Default 10.0.
    pub shrinkage: f64,
}

impl Default for ItemKnnParams {
    fn default() -> Self {
        Self { neighbours: 50, shrinkage: 10.0 }
    }
}

/// A trained item-kNN model: each item's nearest neighbours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemKnn {
    format_version: u32,
    params: ItemKnnParams,
    table: NeighbourTable,
}

impl ItemKnn {
    /// Computes item-item similarities from the interaction strengths (counts).
    ///
    /// Cost: for each item, one pass over the histories of its users (Σ over users of |history|²).
    ///
    /// # Errors
    /// [`MlError::EmptyInput`] without interactions, [`MlError::InvalidParameter`] for `neighbours = 0`
    /// or a negative shrinkage.
    pub fn train(interactions: &Interactions, params: &ItemKnnParams) -> Result<Self> {
        if params.neighbours == 0 {
            return Err(invalid("knn.neighbours", "must be at least 1"));
        }
        ensure_non_negative(params.shrinkage, "knn.shrinkage")?;
        if interactions.is_empty() {
            return Err(MlError::EmptyInput { what: "interactions" });
        }
        let items = interactions.items();
        let index = |item: ItemId| items.binary_search(&item).unwrap_or_default();
        // Users' rows by item index, and each item's (user row, strength) postings.
        let rows: Vec<Vec<(usize, f64)>> =
            interactions.iter().map(|(_, h)| h.iter().map(|&(i, v)| (index(i), v)).collect()).collect();
        let mut postings: Vec<Vec<(usize, f64)>> = vec![Vec::new(); items.len()];
        for (u, row) in rows.iter().enumerate() {
            for &(i, v) in row {
                postings[i].push((u, v));
            }
        }
        let norms: Vec<f64> = postings.iter().map(|p| p.iter().map(|(_, v)| v * v).sum::<f64>().sqrt()).collect();

        let mut dots = vec![0.0; items.len()];
        let mut touched: Vec<usize> = Vec::new();
        let mut candidates = Vec::with_capacity(items.len());
        for i in 0..items.len() {
            for &(u, vi) in &postings[i] {
                for &(j, vj) in &rows[u] {
                    if j != i {
                        if dots[j] == 0.0 {
                            touched.push(j);
                        }
                        dots[j] += vi * vj;
                    }
                }
            }
            touched.sort_unstable();
            let mut similar = Vec::with_capacity(touched.len());
            for &j in &touched {
                similar.push((items[j], dots[j] / (norms[i] * norms[j] + params.shrinkage)));
                dots[j] = 0.0;
            }
            touched.clear();
            candidates.push(similar);
        }
        Ok(Self {
            format_version: MODEL_FORMAT_VERSION,
            params: params.clone(),
            table: NeighbourTable::new(items, candidates, params.neighbours),
        })
    }

    /// The items most similar to `item`, best first.
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`] for `k = 0`, [`MlError::UnknownItem`].
    pub fn similar_items(&self, item: ItemId, k: usize, exclude: &[ItemId]) -> Result<Vec<Scored>> {
        check_k(k)?;
        let neighbours = self.table.get(item).ok_or(MlError::UnknownItem(item))?;
        Ok(top_k(neighbours.iter().copied(), k, exclude))
    }

    /// Scores every neighbour of the user's items by the sum of its similarities to them and returns
    /// the best `k`. Items the model does not know are ignored; an empty result means no signal (fall
    /// back to [`super::Popularity`]). Pass the user's items in `exclude` to skip what they have seen.
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`] for `k = 0`.
    pub fn recommend(&self, history: &[ItemId], k: usize, exclude: &[ItemId]) -> Result<Vec<Scored>> {
        check_k(k)?;
        let mut scores: HashMap<ItemId, f64> = HashMap::new();
        for &item in history {
            for &(neighbour, sim) in self.table.get(item).unwrap_or_default() {
                *scores.entry(neighbour).or_insert(0.0) += sim;
            }
        }
        Ok(top_k(scores, k, exclude))
    }

    /// The number of items with a neighbour list.
    #[must_use]
    pub fn n_items(&self) -> usize {
        self.table.len()
    }
}

impl UserRecommender for ItemKnn {
    fn recommend_for_user(
        &self,
        _user: UserId,
        history: &[(ItemId, f64)],
        k: usize,
        exclude: &[ItemId],
    ) -> Result<Vec<Scored>> {
        let items: Vec<ItemId> = history.iter().map(|(i, _)| *i).collect();
        self.recommend(&items, k, exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_case_similarity() {
        // Users: u1 {a:1, b:1}, u2 {a:1, b:1, c:1}, u3 {c:2}
        // ‖a‖ = √2, ‖b‖ = √2, ‖c‖ = √(1 + 4) = √5
        // a·b = 2 → sim(a, b) = 2 / (2 + 1) = 0.6667 with shrinkage 1
        // a·c = 1 → sim(a, c) = 1 / (√10 + 1) = 0.2402
        let t = |u, i, v| (UserId(u), ItemId(i), v);
        let m = Interactions::from_triples(&[
            t(1, 0, 1.0),
            t(1, 1, 1.0),
            t(2, 0, 1.0),
            t(2, 1, 1.0),
            t(2, 2, 1.0),
            t(3, 2, 2.0),
        ])
        .unwrap();
        let knn = ItemKnn::train(&m, &ItemKnnParams { neighbours: 5, shrinkage: 1.0 }).unwrap();
        let sims = knn.similar_items(ItemId(0), 5, &[]).unwrap();
        assert_eq!(sims[0].0, ItemId(1));
        assert!((sims[0].1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((sims[1].1 - 1.0 / (10f64.sqrt() + 1.0)).abs() < 1e-12);
        // A user who saw only c: b and a are both neighbours of c with a·c = b·c = 1 → tie, id order.
        let recs = knn.recommend(&[ItemId(2)], 5, &[ItemId(2)]).unwrap();
        assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![ItemId(0), ItemId(1)]);
        assert_eq!(knn.similar_items(ItemId(9), 1, &[]).unwrap_err().code(), "unknown_item");
        assert!(knn.recommend(&[ItemId(42)], 3, &[]).unwrap().is_empty());
    }
}
