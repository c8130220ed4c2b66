//! Evaluation metrics: AUC-ROC, log loss and RMSE for scores, NDCG, precision and recall at k for
//! ranked lists.
//!
//! Every function validates its inputs (equal lengths, finite values, at least one element) and returns a
//! typed error instead of NaN.

use std::collections::{HashMap, HashSet};

use crate::error::{ensure_finite, ensure_len, invalid, MlError, Result};
use crate::recommend::ItemId;

/// Probabilities are clipped to `[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]` before the logarithm, as scikit-learn
/// does, so a confident mistake costs about 34.5 instead of infinity.
pub const LOG_LOSS_EPS: f64 = 1e-15;

/// Area under the ROC curve: the probability that a random positive scores above a random negative,
/// ties counting one half.
///
/// Computed from ranks (Mann-Whitney U): scores are ranked ascending, tied scores share the average of
/// their ranks, and `AUC = (R⁺ − n⁺(n⁺+1)/2) / (n⁺·n⁻)` where `R⁺` is the rank sum of the positives.
/// O(n log n).
///
/// # Errors
/// [`MlError::EmptyInput`], [`MlError::LengthMismatch`], [`MlError::NonFinite`] for a NaN or infinite
/// score, [`MlError::SingleClass`] when only one label occurs (AUC is undefined).
pub fn auc_roc(labels: &[bool], scores: &[f64]) -> Result<f64> {
    if labels.is_empty() {
        return Err(MlError::EmptyInput { what: "labels" });
    }
    ensure_len("scores", labels.len(), scores.len())?;
    ensure_finite(scores, "scores")?;
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(MlError::SingleClass);
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // Ranks start+1 ..= end (1-based) share their mean.
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        let tied_positives = order[start..end].iter().filter(|&&i| labels[i]).count();
        positive_rank_sum += mean_rank * tied_positives as f64;
        start = end;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Ok((positive_rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Mean binary cross-entropy `−mean(y·ln p + (1−y)·ln(1−p))`, with `p` clipped to
/// `[LOG_LOSS_EPS, 1 − LOG_LOSS_EPS]`.
///
/// # Errors
/// [`MlError::EmptyInput`], [`MlError::LengthMismatch`], [`MlError::NonFinite`], and
/// [`MlError::OutOfRange`] for a probability outside `[0, 1]`.
pub fn log_loss(labels: &[bool], probabilities: &[f64]) -> Result<f64> {
    if labels.is_empty() {
        return Err(MlError::EmptyInput { what: "labels" });
    }
    ensure_len("probabilities", labels.len(), probabilities.len())?;
    ensure_finite(probabilities, "probabilities")?;
    if probabilities.iter().any(|p| !(0.0..=1.0).contains(p)) {
        return Err(MlError::OutOfRange { what: "probabilities" });
    }
    let total: f64 = labels
        .iter()
        .zip(probabilities)
        .map(|(&y, &p)| {
            let p = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            if y {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    Ok(total / labels.len() as f64)
}

/// Root mean squared error `sqrt(mean((truth − prediction)²))`.
///
/// # Errors
/// [`MlError::EmptyInput`], [`MlError::LengthMismatch`], [`MlError::NonFinite`].
pub fn rmse(truth: &[f64], predictions: &[f64]) -> Result<f64> {
    if truth.is_empty() {
        return Err(MlError::EmptyInput { what: "truth" });
    }
    ensure_len("predictions", truth.len(), predictions.len())?;
    ensure_finite(truth, "truth")?;
    ensure_finite(predictions, "predictions")?;
    let sum: f64 = truth.iter().zip(predictions).map(|(t, p)| (t - p) * (t - p)).sum();
    Ok((sum / truth.len() as f64).sqrt())
}

/// The first `k` items of a ranked list, checked: `k > 0` and no item twice.
fn top_k(ranked: &[ItemId], k: usize) -> Result<&[ItemId]> {
    if k == 0 {
        return Err(invalid("k", "must be at least 1"));
    }
    let mut seen = HashSet::with_capacity(ranked.len());
    for &item in ranked {
        if !seen.insert(item) {
            return Err(MlError::DuplicateItem(item));
        }
    }
    Ok(&ranked[..k.min(ranked.len())])
}

/// `1 / log2(position + 1)` for a 1-based position, the usual DCG discount.
fn discount(zero_based_position: usize) -> f64 {
    1.0 / ((zero_based_position + 2) as f64).log2()
}

/// Normalized discounted cumulative gain at `k` with graded relevance and linear gain (as scikit-learn's
/// `ndcg_score`): `DCG = Σ_{i≤k} gain(item_i) / log2(i + 1)`, divided by the DCG of the ideal ranking,
/// which orders *all* relevant items (those with a gain above zero, ranked or not) by decreasing gain.
///
/// Items missing from `relevance` have gain 0.
///
/// # Errors
/// [`MlError::InvalidParameter`] for `k = 0`, [`MlError::DuplicateItem`] for a repeated item,
/// [`MlError::NonFinite`] or [`MlError::OutOfRange`] for a gain that is not a finite number ≥ 0,
/// [`MlError::NoRelevantItems`] when no gain is above zero (NDCG is undefined).
pub fn ndcg_at_k(ranked: &[ItemId], relevance: &HashMap<ItemId, f64>, k: usize) -> Result<f64> {
    let top = top_k(ranked, k)?;
    let mut ideal: Vec<f64> = Vec::with_capacity(relevance.len());
    for &gain in relevance.values() {
        if !gain.is_finite() {
            return Err(MlError::NonFinite { what: "relevance" });
        }
        if gain < 0.0 {
            return Err(MlError::OutOfRange { what: "relevance" });
        }
        if gain > 0.0 {
            ideal.push(gain);
        }
    }
    if ideal.is_empty() {
        return Err(MlError::NoRelevantItems);
    }
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, g)| g * discount(i)).sum();
    let dcg: f64 =
        top.iter().enumerate().map(|(i, item)| relevance.get(item).copied().unwrap_or(0.0) * discount(i)).sum();
    Ok(dcg / idcg)
}

/// NDCG at `k` with binary relevance: every item of `relevant` has gain 1.
///
/// # Errors
/// As [`ndcg_at_k`]; [`MlError::NoRelevantItems`] when `relevant` is empty.
pub fn ndcg_binary_at_k(ranked: &[ItemId], relevant: &HashSet<ItemId>, k: usize) -> Result<f64> {
    let top = top_k(ranked, k)?;
    if relevant.is_empty() {
        return Err(MlError::NoRelevantItems);
    }
    let idcg: f64 = (0..relevant.len().min(k)).map(discount).sum();
    let dcg: f64 = top.iter().enumerate().filter(|(_, item)| relevant.contains(item)).map(|(i, _)| discount(i)).sum();
    Ok(dcg / idcg)
}

/// Share of the first `k` positions holding a relevant item. The denominator is always `k`, so a list
/// shorter than `k` is penalized for its empty positions.
///
/// # Errors
/// [`MlError::InvalidParameter`] for `k = 0`, [`MlError::DuplicateItem`] for a repeated item.
pub fn precision_at_k(ranked: &[ItemId], relevant: &HashSet<ItemId>, k: usize) -> Result<f64> {
    let top = top_k(ranked, k)?;
    let hits = top.iter().filter(|item| relevant.contains(item)).count();
    Ok(hits as f64 / k as f64)
}

/// Share of the relevant items found among the first `k` positions.
///
/// # Errors
/// [`MlError::InvalidParameter`] for `k = 0`, [`MlError::DuplicateItem`] for a repeated item,
/// [`MlError::NoRelevantItems`] when `relevant` is empty (recall is undefined).
pub fn recall_at_k(ranked: &[ItemId], relevant: &HashSet<ItemId>, k: usize) -> Result<f64> {
    let top = top_k(ranked, k)?;
    if relevant.is_empty() {
        return Err(MlError::NoRelevantItems);
    }
    let hits = top.iter().filter(|item| relevant.contains(item)).count();
    Ok(hits as f64 / relevant.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn ids(v: &[u32]) -> Vec<ItemId> {
        v.iter().copied().map(ItemId).collect()
    }

    #[test]
    fn auc_perfect_inverted_and_ties() {
        assert!(close(auc_roc(&[false, true], &[0.1, 0.9]).unwrap(), 1.0));
        assert!(close(auc_roc(&[false, true], &[0.9, 0.1]).unwrap(), 0.0));
        // All scores equal: every pair is a tie → 0.5.
        assert!(close(auc_roc(&[true, false, true], &[0.3, 0.3, 0.3]).unwrap(), 0.5));
        // Pairs (pos, neg): (0.8, 0.8) = ½, (0.8, 0.1) = 1, (0.3, 0.8) = 0, (0.3, 0.1) = 1 → 2.5 / 4.
        // Ranks: 0.1→1, 0.3→2, 0.8,0.8→3.5 each; R⁺ = 2 + 3.5 = 5.5; (5.5 − 2·3/2) / (2·2) = 0.625.
        assert!(close(auc_roc(&[true, false, true, false], &[0.8, 0.8, 0.3, 0.1]).unwrap(), 0.625));
    }

    #[test]
    fn auc_errors() {
        assert_eq!(auc_roc(&[], &[]).unwrap_err().code(), "empty_input");
        assert_eq!(auc_roc(&[true, true], &[0.1, 0.2]).unwrap_err(), MlError::SingleClass);
        assert_eq!(auc_roc(&[true, false], &[0.1]).unwrap_err().code(), "length_mismatch");
        assert_eq!(auc_roc(&[true, false], &[0.1, f64::NAN]).unwrap_err().code(), "non_finite");
    }

    #[test]
    fn log_loss_hand_case() {
        // −(ln 0.8 + ln(1 − 0.4)) / 2 = −(−0.2231436 − 0.5108256) / 2 = 0.3669846
        let v = log_loss(&[true, false], &[0.8, 0.4]).unwrap();
        assert!((v - 0.366_984_6).abs() < 1e-6, "{v}");
        // p = 0 for a positive is clipped to 1e-15: −ln(1e-15) = 34.538776
        let v = log_loss(&[true], &[0.0]).unwrap();
        assert!((v - 34.538_776).abs() < 1e-5, "{v}");
        assert_eq!(log_loss(&[true], &[1.5]).unwrap_err().code(), "out_of_range");
    }

    #[test]
    fn rmse_hand_case() {
        // errors 1, −1, 2 → squares 1, 1, 4 → mean 2 → √2
        assert!(close(rmse(&[1.0, 2.0, 3.0], &[0.0, 3.0, 1.0]).unwrap(), 2f64.sqrt()));
        assert_eq!(rmse(&[1.0], &[f64::INFINITY]).unwrap_err().code(), "non_finite");
    }

    #[test]
    fn ndcg_binary_hand_case() {
        // ranked 1,2,3,4; relevant {1,3,5}; k = 3
        // DCG = 1/log2(2) + 0 + 1/log2(4) = 1 + 0.5 = 1.5
        // IDCG = 1 + 1/log2(3) + 1/log2(4) = 1 + 0.6309298 + 0.5 = 2.1309298
        // NDCG = 1.5 / 2.1309298 = 0.7039180
        let relevant: HashSet<ItemId> = ids(&[1, 3, 5]).into_iter().collect();
        let v = ndcg_binary_at_k(&ids(&[1, 2, 3, 4]), &relevant, 3).unwrap();
        assert!((v - 0.703_918_0).abs() < 1e-6, "{v}");
        // The graded version with all gains 1 agrees.
        let graded: HashMap<ItemId, f64> = relevant.iter().map(|&i| (i, 1.0)).collect();
        assert!(close(ndcg_at_k(&ids(&[1, 2, 3, 4]), &graded, 3).unwrap(), v));
    }

    #[test]
    fn ndcg_graded_hand_case() {
        // ranked a=1, b=2, c=3; gains a:1, b:3, c:0, d(=4, unranked):2; k = 3
        // DCG = 1/1 + 3/log2(3) + 0 = 1 + 1.8927893 = 2.8927893
        // IDCG over gains sorted 3,2,1: 3 + 2/log2(3) + 1/2 = 3 + 1.2618595 + 0.5 = 4.7618595
        // NDCG = 2.8927893 / 4.7618595 = 0.6074915
        let gains: HashMap<ItemId, f64> =
            [(ItemId(1), 1.0), (ItemId(2), 3.0), (ItemId(3), 0.0), (ItemId(4), 2.0)].into_iter().collect();
        let v = ndcg_at_k(&ids(&[1, 2, 3]), &gains, 3).unwrap();
        assert!((v - 0.607_491_5).abs() < 1e-6, "{v}");
    }

    #[test]
    fn precision_recall_hand_case() {
        let relevant: HashSet<ItemId> = ids(&[1, 3, 5]).into_iter().collect();
        // top 3 = 1,2,3: hits 1 and 3 → precision 2/3, recall 2/3
        assert!(close(precision_at_k(&ids(&[1, 2, 3, 4]), &relevant, 3).unwrap(), 2.0 / 3.0));
        assert!(close(recall_at_k(&ids(&[1, 2, 3, 4]), &relevant, 3).unwrap(), 2.0 / 3.0));
        // A list shorter than k: one hit over k = 4 positions → 0.25; recall 1/3
        assert!(close(precision_at_k(&ids(&[5]), &relevant, 4).unwrap(), 0.25));
        assert!(close(recall_at_k(&ids(&[5]), &relevant, 4).unwrap(), 1.0 / 3.0));
    }

    #[test]
    fn ranking_errors() {
        let relevant: HashSet<ItemId> = ids(&[1]).into_iter().collect();
        assert_eq!(precision_at_k(&ids(&[1]), &relevant, 0).unwrap_err().code(), "invalid_parameter");
        assert_eq!(precision_at_k(&ids(&[1, 1]), &relevant, 2).unwrap_err(), MlError::DuplicateItem(ItemId(1)));
        assert_eq!(recall_at_k(&ids(&[1]), &HashSet::new(), 2).unwrap_err(), MlError::NoRelevantItems);
        assert_eq!(ndcg_binary_at_k(&ids(&[1]), &HashSet::new(), 2).unwrap_err(), MlError::NoRelevantItems);
        let bad: HashMap<ItemId, f64> = [(ItemId(1), -1.0)].into_iter().collect();
        assert_eq!(ndcg_at_k(&ids(&[1]), &bad, 2).unwrap_err().code(), "out_of_range");
    }
}
