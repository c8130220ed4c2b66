//! Metrics on small hand-computed cases, through the public API.

use std::collections::{HashMap, HashSet};

use lethe_ml::metrics::{auc_roc, log_loss, ndcg_at_k, ndcg_binary_at_k, precision_at_k, recall_at_k, rmse};
use lethe_ml::recommend::ItemId;
use lethe_ml::MlError;

fn ids(v: &[u32]) -> Vec<ItemId> {
    v.iter().copied().map(ItemId).collect()
}

#[test]
fn auc_with_ties_is_mann_whitney() {
    // labels  T    F    T    F    T
    // scores  0.9  0.9  0.5  0.5  0.1
    // Pairs (pos, neg), 3 × 2 = 6: (0.9, 0.9) ½, (0.9, 0.5) 1, (0.5, 0.9) 0, (0.5, 0.5) ½,
    // (0.1, 0.9) 0, (0.1, 0.5) 0 → 2 / 6 = 0.3333.
    // Ranks ascending: 0.1 → 1; 0.5, 0.5 → 2.5; 0.9, 0.9 → 4.5. R⁺ = 4.5 + 2.5 + 1 = 8;
    // U = 8 − 3·4/2 = 2; AUC = 2 / 6.
    let auc = auc_roc(&[true, false, true, false, true], &[0.9, 0.9, 0.5, 0.5, 0.1]).unwrap();
    assert!((auc - 1.0 / 3.0).abs() < 1e-12, "{auc}");
    // Invariant under a monotone transform of the scores.
    let auc2 = auc_roc(&[true, false, true, false, true], &[9.0, 9.0, 5.0, 5.0, -1.0]).unwrap();
    assert_eq!(auc, auc2);
}

#[test]
fn log_loss_and_rmse() {
    // −(ln 0.9 + ln 0.9 + ln 0.5) / 3 = (0.1053605 · 2 + 0.6931472) / 3 = 0.3012894
    let v = log_loss(&[true, false, true], &[0.9, 0.1, 0.5]).unwrap();
    assert!((v - 0.301_289_4).abs() < 1e-6, "{v}");
    // errors 0.5, 0.5 → mean square 0.25 → 0.5
    assert_eq!(rmse(&[1.0, 0.0], &[0.5, 0.5]).unwrap(), 0.5);
}

#[test]
fn ranking_metrics() {
    // ranked 7, 8, 9; relevant {8}: DCG = 1/log2(3) = 0.6309298, IDCG = 1 → 0.6309298
    let relevant: HashSet<ItemId> = ids(&[8]).into_iter().collect();
    let ndcg = ndcg_binary_at_k(&ids(&[7, 8, 9]), &relevant, 3).unwrap();
    assert!((ndcg - 1.0 / 3f64.log2()).abs() < 1e-12);
    // Beyond k the hit does not count: k = 1 → 0
    assert_eq!(ndcg_binary_at_k(&ids(&[7, 8, 9]), &relevant, 1).unwrap(), 0.0);
    assert_eq!(precision_at_k(&ids(&[7, 8, 9]), &relevant, 2).unwrap(), 0.5);
    assert_eq!(recall_at_k(&ids(&[7, 8, 9]), &relevant, 2).unwrap(), 1.0);
    // Graded: ideal DCG counts relevant items never ranked.
    // ranked 1; gains 1: 1, 2: 2 → DCG = 1; IDCG = 2 + 1/log2(3) = 2.6309298 → 0.3800938
    let gains: HashMap<ItemId, f64> = [(ItemId(1), 1.0), (ItemId(2), 2.0)].into_iter().collect();
    let v = ndcg_at_k(&ids(&[1]), &gains, 2).unwrap();
    assert!((v - 1.0 / (2.0 + 1.0 / 3f64.log2())).abs() < 1e-12, "{v}");
}

#[test]
fn metric_errors_are_typed() {
    assert_eq!(auc_roc(&[true], &[0.5]).unwrap_err(), MlError::SingleClass);
    assert_eq!(log_loss(&[true], &[f64::NAN]).unwrap_err().code(), "non_finite");
    assert_eq!(log_loss(&[true], &[-0.1]).unwrap_err().code(), "out_of_range");
    assert_eq!(rmse(&[], &[]).unwrap_err().code(), "empty_input");
    assert_eq!(rmse(&[1.0], &[1.0, 2.0]).unwrap_err().code(), "length_mismatch");
    assert_eq!(recall_at_k(&ids(&[1]), &HashSet::new(), 1).unwrap_err(), MlError::NoRelevantItems);
}
