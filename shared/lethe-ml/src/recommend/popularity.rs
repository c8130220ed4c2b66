//! Popularity by segment, for cold start: how many distinct users of a segment interacted with each
//! item, shrunk towards the global popularity so small segments borrow strength.
//!
//! `score(s, i) = (n_si + m·p_i) / (N_s + m)` where `n_si` counts the segment's users who interacted
//! with `i`, `N_s` the segment's users, `p_i = n_i / N` the global share and `m` the smoothing. An unknown
//! segment (or none) scores by `p_i`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_k, top_k, Interactions, ItemId, Scored, UserId, UserRecommender};
use crate::engagement::MODEL_FORMAT_VERSION;
use crate::error::{ensure_non_negative, MlError, Result};

/// Hyperparameters of [`Popularity`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopularityParams {
    /// Pseudo-users of global popularity added to every segment (`m`). Default 10.0.
    pub smoothing: f64,
}

impl Default for PopularityParams {
    fn default() -> Self {
        Self { smoothing: 10.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SegmentCounts {
    users: usize,
    /// Distinct users per item, by the model's item index.
    counts: Vec<(usize, f64)>,
}

/// Trained popularity counts, global and per segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Popularity {
    format_version: u32,
    params: PopularityParams,
    items: Vec<ItemId>,
    /// Global share of users per item, `p_i`.
    global: Vec<f64>,
    segments: BTreeMap<String, SegmentCounts>,
}

impl Popularity {
    /// Counts distinct users per item, globally and per segment. Users absent from `segments` count
    /// only globally.
    ///
    /// # Errors
    /// [`MlError::EmptyInput`] without interactions, [`MlError::InvalidParameter`] for a negative or
    /// non-finite smoothing.
    pub fn train(
        interactions: &Interactions,
        segments: &BTreeMap<UserId, String>,
        params: &PopularityParams,
    ) -> Result<Self> {
        ensure_non_negative(params.smoothing, "popularity.smoothing")?;
        if interactions.is_empty() {
            return Err(MlError::EmptyInput { what: "interactions" });
        }
        let items = interactions.items();
        let mut global = vec![0.0; items.len()];
        let mut per_segment: BTreeMap<String, (usize, Vec<f64>)> = BTreeMap::new();
        let mut total_users = 0usize;
        for (user, history) in interactions.iter() {
            total_users += 1;
            let mut segment = segments.get(&user).map(|s| {
                let entry = per_segment.entry(s.clone()).or_insert_with(|| (0, vec![0.0; items.len()]));
                entry.0 += 1;
                entry
            });
            for (item, _) in history {
                let i = items.binary_search(item).unwrap_or_default();
                global[i] += 1.0;
                if let Some((_, counts)) = segment.as_mut() {
                    counts[i] += 1.0;
                }
            }
        }
        global.iter_mut().for_each(|g| *g /= total_users as f64);
        let segments = per_segment
            .into_iter()
            .map(|(name, (users, counts))| {
                let sparse = counts.into_iter().enumerate().filter(|(_, c)| *c > 0.0).collect();
                (name, SegmentCounts { users, counts: sparse })
            })
            .collect();
        Ok(Self { format_version: MODEL_FORMAT_VERSION, params: params.clone(), items, global, segments })
    }

    /// The best `k` items for a segment (or globally for `None` or an unknown segment).
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`] for `k = 0`.
    pub fn recommend(&self, segment: Option<&str>, k: usize, exclude: &[ItemId]) -> Result<Vec<Scored>> {
        check_k(k)?;
        let scores: Vec<f64> = match segment.and_then(|s| self.segments.get(s)) {
            None => self.global.clone(),
            Some(seg) => {
                let m = self.params.smoothing;
                let mut counts = vec![0.0; self.items.len()];
                for &(i, c) in &seg.counts {
                    counts[i] = c;
                }
                let denominator = seg.users as f64 + m;
                counts.iter().zip(&self.global).map(|(c, p)| (c + m * p) / denominator).collect()
            }
        };
        Ok(top_k(self.items.iter().copied().zip(scores), k, exclude))
    }

    /// The segments seen in training.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.keys().map(String::as_str)
    }
}

impl UserRecommender for Popularity {
    /// Global popularity (the user's segment is not known here).
    fn recommend_for_user(
        &self,
        _user: UserId,
        _history: &[(ItemId, f64)],
        k: usize,
        exclude: &[ItemId],
    ) -> Result<Vec<Scored>> {
        self.recommend(None, k, exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_case_segment_smoothing() {
        // Users 1, 2 in "a" saw item 10; user 3 in "b" saw item 20; user 4 (no segment) saw 20 and 30.
        // Global shares over N = 4 users: p10 = 2/4, p20 = 2/4, p30 = 1/4.
        // Segment "a" with m = 2: N_a = 2; item 10: (2 + 2·0.5) / 4 = 0.75, item 20: (0 + 1) / 4 = 0.25,
        // item 30: (0 + 0.5) / 4 = 0.125.
        let t = |u, i| (UserId(u), ItemId(i), 1.0);
        let m = Interactions::from_triples(&[t(1, 10), t(2, 10), t(3, 20), t(4, 20), t(4, 30)]).unwrap();
        let segments: BTreeMap<UserId, String> =
            [(UserId(1), "a".to_string()), (UserId(2), "a".to_string()), (UserId(3), "b".to_string())].into();
        let pop = Popularity::train(&m, &segments, &PopularityParams { smoothing: 2.0 }).unwrap();
        assert_eq!(
            pop.recommend(Some("a"), 3, &[]).unwrap(),
            vec![(ItemId(10), 0.75), (ItemId(20), 0.25), (ItemId(30), 0.125)]
        );
        // Global: 10 and 20 tie at 0.5 → id order.
        assert_eq!(pop.recommend(None, 2, &[]).unwrap(), vec![(ItemId(10), 0.5), (ItemId(20), 0.5)]);
        assert_eq!(pop.recommend(Some("unknown"), 1, &[ItemId(10)]).unwrap(), vec![(ItemId(20), 0.5)]);
        assert_eq!(pop.segments().collect::<Vec<_>>(), vec!["a", "b"]);
    }
}
