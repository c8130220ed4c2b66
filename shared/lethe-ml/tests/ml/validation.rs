//! k-fold coverage, grouped folds, grid search and early stopping.

use std::collections::HashSet;

use lethe_ml::engagement::{cross_validate_auc, EngagementParams, GbmParams, ModelKind};
use lethe_ml::synthetic::{engagement, EngagementConfig};
use lethe_ml::validation::{grid_search, group_k_fold, k_fold, EarlyStopping, Fold, Goal, ParamGrid, StopDecision};

fn assert_partition(folds: &[Fold], rows: usize) {
    let mut seen = vec![0usize; rows];
    for fold in folds {
        for &i in &fold.test {
            seen[i] += 1;
        }
        let test: HashSet<usize> = fold.test.iter().copied().collect();
        assert!(fold.train.iter().all(|i| !test.contains(i)), "train and test overlap");
        assert_eq!(fold.train.len() + fold.test.len(), rows);
    }
    assert!(seen.iter().all(|&c| c == 1), "every row is tested exactly once");
}

#[test]
fn k_fold_covers_every_row_once() {
    for (rows, k) in [(10, 2), (101, 5), (7, 7)] {
        let folds = k_fold(rows, k, 42).unwrap();
        assert_eq!(folds.len(), k);
        assert_partition(&folds, rows);
        assert_eq!(folds, k_fold(rows, k, 42).unwrap(), "same seed, same folds");
    }
}

#[test]
fn grouped_folds_never_straddle() {
    // 200 rows over 23 uneven groups.
    let groups: Vec<u64> = (0..200u64).map(|i| (i * i) % 23).collect();
    let folds = group_k_fold(&groups, 4, 7).unwrap();
    assert_partition(&folds, groups.len());
    for fold in &folds {
        let test_groups: HashSet<u64> = fold.test.iter().map(|&i| groups[i]).collect();
        assert!(fold.train.iter().all(|&i| !test_groups.contains(&groups[i])), "a group straddles folds");
    }
    let sizes: Vec<usize> = folds.iter().map(|f| f.test.len()).collect();
    assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 20, "{sizes:?}");
    assert_eq!(group_k_fold(&[1, 1, 2], 3, 0).unwrap_err().code(), "not_enough_data");
    assert_eq!(group_k_fold::<u64>(&[], 2, 0).unwrap_err().code(), "not_enough_data");
}

#[test]
fn grid_search_reports_mean_sd_and_best() {
    let folds = k_fold(9, 3, 1).unwrap();
    let grid = ParamGrid::new().axis("a", &[1.0, 3.0, 2.0]).unwrap().combinations();
    // Score = a + fold index: fold scores a, a+1, a+2 → mean a + 1, sd 1.
    let mut fold_index = 0usize;
    let result = grid_search(&grid, &folds, Goal::Maximize, |p, _fold| {
        let score = p.get("a").unwrap() + (fold_index % 3) as f64;
        fold_index += 1;
        Ok(score)
    })
    .unwrap();
    assert_eq!(result.best, 1);
    assert_eq!(result.best_entry().params.get("a"), Some(3.0));
    assert_eq!(result.entries[0].mean, 2.0);
    assert_eq!(result.entries[0].sd, 1.0);
    let min = grid_search(&grid, &folds, Goal::Minimize, |p, _| Ok(p.get("a").unwrap())).unwrap();
    assert_eq!(min.best, 0);
    assert_eq!(grid_search(&grid, &folds, Goal::Minimize, |_, _| Ok(f64::NAN)).unwrap_err().code(), "non_finite");
    assert_eq!(grid_search::<f64, _>(&[], &folds, Goal::Minimize, |_, _| Ok(0.0)).unwrap_err().code(), "empty_input");
}

#[test]
fn grid_search_over_gbm_depth_with_grouped_folds() {
    let data = engagement(&EngagementConfig { rows: 1200, ..EngagementConfig::default() }, 3).unwrap().dataset;
    let folds = group_k_fold(data.groups().unwrap(), 3, 11).unwrap();
    let candidates: Vec<EngagementParams> = [1usize, 4]
        .iter()
        .map(|&max_depth| EngagementParams {
            gbm: GbmParams { iterations: 50, learning_rate: 0.2, max_depth, ..GbmParams::default() },
            ..EngagementParams::default()
        })
        .collect();
    let result = grid_search(&candidates, &folds, Goal::Maximize, |params, fold| {
        let aucs = cross_validate_auc(ModelKind::Gbm, &data, params, std::slice::from_ref(fold), 5)?;
        Ok(aucs[0])
    })
    .unwrap();
    for entry in &result.entries {
        assert!(entry.mean > 0.6 && entry.sd >= 0.0, "{entry:?}");
    }
    // Depth 1 cannot model the x2·x3 interaction.
    assert_eq!(result.best_entry().params.gbm.max_depth, 4, "{:?}", result.entries);
}

#[test]
fn early_stopping_stops_after_patience() {
    let mut stop = EarlyStopping::new(Goal::Maximize, 3, 0.01).unwrap();
    let values = [0.5, 0.6, 0.605, 0.61, 0.6, 0.7];
    let decisions: Vec<StopDecision> = values[..5].iter().map(|&v| stop.observe(v).unwrap()).collect();
    use StopDecision::*;
    // 0.605 and 0.61 are within min_delta of 0.6, so they do not count as improvements.
    assert_eq!(decisions, [Improved, Improved, Continue, Continue, Stop]);
    assert_eq!(stop.best_iteration(), Some(1));
    // A caller that goes on anyway sees the next improvement.
    assert_eq!(stop.observe(values[5]).unwrap(), Improved);
    assert_eq!(stop.best_iteration(), Some(5));
}
