//! Content-based item→items similarity: TF-IDF over item text plus optional numeric item features,
//! cosine similarity, the top-N neighbours of each item kept.
//!
//! Text is split on every character that is not alphanumeric and lowercased. Term weights are raw
//! counts times the smoothed inverse document frequency `ln((1 + n) / (1 + df)) + 1` (scikit-learn's
//! default), L2-normalized. Numeric features are standardized per column (constant columns become 0),
//! L2-normalized and scaled by `numeric_weight` before being appended to the text vector.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{check_k, top_k, ItemId, NeighbourTable, Scored};
use crate::engagement::MODEL_FORMAT_VERSION;
use crate::error::{ensure_finite, ensure_len, ensure_non_negative, invalid, MlError, Result};

/// One item's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemContent {
    /// The item.
    pub item: ItemId,
    /// Title, description, tags: anything textual.
    pub text: String,
    /// Numeric features (price, duration, ...); every item must have the same number, possibly none.
    pub numeric: Vec<f64>,
}

/// Hyperparameters of [`ContentModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentParams {
    /// Neighbours kept per item. Default 50.
    pub neighbours: usize,
    /// Weight of the numeric part relative to the text part (both unit length). Default 0.5.
    pub numeric_weight: f64,
}

impl Default for ContentParams {
    fn default() -> Self {
        Self { neighbours: 50, numeric_weight: 0.5 }
    }
}

/// A trained content model: each item's most similar items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentModel {
    format_version: u32,
    params: ContentParams,
    table: NeighbourTable,
}

fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase)
}

fn normalize(v: &mut [(usize, f64)]) {
    let norm = v.iter().map(|(_, x)| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|(_, x)| *x /= norm);
    }
}

impl ContentModel {
    /// Builds item vectors and keeps each item's `params.neighbours` most similar items.
    ///
    /// Cost: text similarities through an inverted index; with numeric features every pair is compared
    /// (O(n²·d)), which suits catalogues of up to some ten thousand items.
    ///
    /// # Errors
    /// [`MlError::EmptyInput`] without items, [`MlError::DuplicateItem`], [`MlError::LengthMismatch`]
    /// for numeric features of different lengths, [`MlError::NonFinite`], [`MlError::InvalidParameter`].
    pub fn train(items: &[ItemContent], params: &ContentParams) -> Result<Self> {
        if params.neighbours == 0 {
            return Err(invalid("content.neighbours", "must be at least 1"));
        }
        ensure_non_negative(params.numeric_weight, "content.numeric_weight")?;
        let first = items.first().ok_or(MlError::EmptyInput { what: "items" })?;
        let width = first.numeric.len();
        let mut seen = HashSet::with_capacity(items.len());
        for item in items {
            if !seen.insert(item.item) {
                return Err(MlError::DuplicateItem(item.item));
            }
            ensure_len("numeric item features", width, item.numeric.len())?;
            ensure_finite(&item.numeric, "numeric item features")?;
        }
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| items[i].item);
        let items: Vec<&ItemContent> = order.into_iter().map(|i| &items[i]).collect();
        let n = items.len();

        // Term counts per item over a sorted vocabulary.
        let mut vocabulary: BTreeMap<String, usize> = BTreeMap::new();
        let counts: Vec<BTreeMap<String, f64>> = items
            .iter()
            .map(|it| {
                let mut c = BTreeMap::new();
                for t in tokens(&it.text) {
                    *c.entry(t).or_insert(0.0) += 1.0;
                }
                c
            })
            .collect();
        for c in &counts {
            for term in c.keys() {
                let next = vocabulary.len();
                vocabulary.entry(term.clone()).or_insert(next);
            }
        }
        let mut df = vec![0usize; vocabulary.len()];
        for c in &counts {
            for term in c.keys() {
                df[vocabulary[term]] += 1;
            }
        }
        let idf: Vec<f64> = df.iter().map(|&d| ((1.0 + n as f64) / (1.0 + d as f64)).ln() + 1.0).collect();
        let text_vectors: Vec<Vec<(usize, f64)>> = counts
            .iter()
            .map(|c| {
                let mut v: Vec<(usize, f64)> =
                    c.iter().map(|(t, tf)| (vocabulary[t], tf * idf[vocabulary[t]])).collect();
                v.sort_unstable_by_key(|(t, _)| *t);
                normalize(&mut v);
                v
            })
            .collect();
        let mut postings: Vec<Vec<(usize, f64)>> = vec![Vec::new(); vocabulary.len()];
        for (i, v) in text_vectors.iter().enumerate() {
            for &(t, w) in v {
                postings[t].push((i, w));
            }
        }

        // Numeric part: standardized, unit length, scaled.
        let use_numeric = width > 0 && params.numeric_weight > 0.0;
        let numeric: Vec<Vec<f64>> = if use_numeric {
            let mut mean = vec![0.0; width];
            let mut sd = vec![0.0; width];
            for it in &items {
                it.numeric.iter().enumerate().for_each(|(j, v)| mean[j] += v / n as f64);
            }
            for it in &items {
                it.numeric.iter().enumerate().for_each(|(j, v)| sd[j] += (v - mean[j]).powi(2) / n as f64);
            }
            items
                .iter()
                .map(|it| {
                    let mut z: Vec<(usize, f64)> = it
                        .numeric
                        .iter()
                        .enumerate()
                        .map(|(j, v)| (j, if sd[j] > 1e-24 { (v - mean[j]) / sd[j].sqrt() } else { 0.0 }))
                        .collect();
                    normalize(&mut z);
                    z.into_iter().map(|(_, v)| v * params.numeric_weight).collect()
                })
                .collect()
        } else {
            vec![Vec::new(); n]
        };
        let norms: Vec<f64> = (0..n)
            .map(|i| {
                let text: f64 = text_vectors[i].iter().map(|(_, w)| w * w).sum();
                let num: f64 = numeric[i].iter().map(|v| v * v).sum();
                (text + num).sqrt()
            })
            .collect();

        let ids: Vec<ItemId> = items.iter().map(|it| it.item).collect();
        let mut dots = vec![0.0; n];
        let mut candidates = Vec::with_capacity(n);
        for i in 0..n {
            dots.iter_mut().for_each(|d| *d = 0.0);
            for &(t, w) in &text_vectors[i] {
                for &(j, wj) in &postings[t] {
                    dots[j] += w * wj;
                }
            }
            if use_numeric {
                for (j, d) in dots.iter_mut().enumerate() {
                    *d += numeric[i].iter().zip(&numeric[j]).map(|(a, b)| a * b).sum::<f64>();
                }
            }
            // Only the best neighbours are kept, item by item: memory stays O(n · neighbours), not O(n²).
            let similar = (0..n)
                .filter(|&j| j != i && norms[i] > 0.0 && norms[j] > 0.0 && dots[j] > 0.0)
                .map(|j| (ids[j], dots[j] / (norms[i] * norms[j])));
            candidates.push(top_k(similar, params.neighbours, &[]));
        }
        Ok(Self {
            format_version: MODEL_FORMAT_VERSION,
            params: params.clone(),
            table: NeighbourTable::new(ids, candidates, params.neighbours),
        })
    }

    /// The items most similar to `item`, best first (at most `params.neighbours`).
    ///
    /// # Errors
    /// [`MlError::InvalidParameter`] for `k = 0`, [`MlError::UnknownItem`].
    pub fn recommend(&self, item: ItemId, k: usize, exclude: &[ItemId]) -> Result<Vec<Scored>> {
        check_k(k)?;
        let neighbours = self.table.get(item).ok_or(MlError::UnknownItem(item))?;
        Ok(top_k(neighbours.iter().copied(), k, exclude))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: u32, text: &str, numeric: Vec<f64>) -> ItemContent {
        ItemContent { item: ItemId(id), text: text.to_string(), numeric }
    }

    #[test]
    fn tokenizer_lowercases_and_splits() {
        assert_eq!(tokens("Rust, rust-lang & SQL!").collect::<Vec<_>>(), vec!["rust", "rust", "lang", "sql"]);
    }

    #[test]
    fn hand_case_tf_idf() {
        // Three items: "a b", "a c", "d". n = 3; df(a) = 2, df(b) = df(c) = df(d) = 1.
        // idf(a) = ln(4/3) + 1 = 1.2876821, idf(b) = idf(c) = ln(4/2) + 1 = 1.6931472.
        // item0 = (a: 1.2877, b: 1.6931), item1 = (a: 1.2877, c: 1.6931), both of norm² = 4.5249.
        // cos(0, 1) = 1.2877² / 4.5249 = 1.6581 / 4.5249 = 0.3664; item 2 shares nothing → dropped.
        let m = ContentModel::train(
            &[item(0, "a b", vec![]), item(1, "a c", vec![]), item(2, "d", vec![])],
            &ContentParams::default(),
        )
        .unwrap();
        let recs = m.recommend(ItemId(0), 5, &[]).unwrap();
        assert_eq!(recs.len(), 1);
        let a = (4f64 / 3.0).ln() + 1.0;
        let b = 2f64.ln() + 1.0;
        assert!((recs[0].1 - a * a / (a * a + b * b)).abs() < 1e-12);
        assert!((recs[0].1 - 0.3664).abs() < 1e-4);
    }

    #[test]
    fn bad_inputs() {
        let p = ContentParams::default();
        assert_eq!(ContentModel::train(&[], &p).unwrap_err().code(), "empty_input");
        let dup = [item(0, "a", vec![]), item(0, "b", vec![])];
        assert_eq!(ContentModel::train(&dup, &p).unwrap_err(), MlError::DuplicateItem(ItemId(0)));
        let ragged = [item(0, "a", vec![1.0]), item(1, "b", vec![])];
        assert_eq!(ContentModel::train(&ragged, &p).unwrap_err().code(), "length_mismatch");
        let nan = [item(0, "a", vec![f64::NAN])];
        assert_eq!(ContentModel::train(&nan, &p).unwrap_err().code(), "non_finite");
    }
}
