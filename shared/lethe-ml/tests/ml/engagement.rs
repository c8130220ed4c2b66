//! Engagement models: quality on synthetic data, determinism, serde round trips, typed errors.

use lethe_ml::engagement::{
    train, EngagementModel, EngagementParams, FtrlModel, FtrlParams, GbmModel, GbmParams, HoldoutStopping,
    LogisticParams, ModelKind, TrainedModel, MODEL_FORMAT_VERSION,
};
use lethe_ml::metrics::auc_roc;
use lethe_ml::synthetic::{engagement, EngagementConfig, Truth};
use lethe_ml::{EngagementDataset, FeatureSchema, MlError};

const KINDS: [ModelKind; 3] = [ModelKind::Logistic, ModelKind::Ftrl, ModelKind::Gbm];

fn data(truth: Truth, rows: usize, seed: u64) -> EngagementDataset {
    engagement(&EngagementConfig { rows, subjects: 50, truth }, seed).unwrap().dataset
}

/// (train, test) from one synthetic draw: the first `train_rows` rows and the rest.
fn split(truth: Truth, rows: usize, train_rows: usize, seed: u64) -> (EngagementDataset, EngagementDataset) {
    let data = data(truth, rows, seed);
    let train_idx: Vec<usize> = (0..train_rows).collect();
    let test_idx: Vec<usize> = (train_rows..rows).collect();
    (data.subset(&train_idx).unwrap(), data.subset(&test_idx).unwrap())
}

fn test_auc(model: &TrainedModel, test: &EngagementDataset) -> f64 {
    auc_roc(test.labels(), &model.predict_dataset(test).unwrap()).unwrap()
}

fn params() -> EngagementParams {
    EngagementParams { gbm: GbmParams { iterations: 80, ..GbmParams::default() }, ..EngagementParams::default() }
}

#[test]
fn non_linear_truth_gbm_at_least_as_good_as_logistic() {
    let (train_set, test_set) = split(Truth::NonLinear, 3000, 2000, 1);
    let lr = train(ModelKind::Logistic, &train_set, &params(), 1).unwrap();
    let gbm = train(ModelKind::Gbm, &train_set, &params(), 1).unwrap();
    let ftrl = train(ModelKind::Ftrl, &train_set, &params(), 1).unwrap();
    let (lr_auc, gbm_auc, ftrl_auc) = (test_auc(&lr, &test_set), test_auc(&gbm, &test_set), test_auc(&ftrl, &test_set));
    eprintln!("non-linear truth: LR AUC {lr_auc:.4}, GBM AUC {gbm_auc:.4}, FTRL AUC {ftrl_auc:.4}");
    assert!(lr_auc > 0.75, "LR AUC {lr_auc}");
    assert!(gbm_auc > 0.75, "GBM AUC {gbm_auc}");
    assert!(gbm_auc >= lr_auc - 0.02, "GBM {gbm_auc} vs LR {lr_auc}");
    assert!(ftrl_auc > 0.7, "FTRL AUC {ftrl_auc}");
}

#[test]
fn linear_truth_recovered_by_logistic_regression() {
    let (train_set, test_set) = split(Truth::Linear, 3000, 2000, 2);
    let mut p = params();
    p.logistic = LogisticParams { l2: 0.1, ..LogisticParams::default() };
    let TrainedModel::Logistic(lr) = train(ModelKind::Logistic, &train_set, &p, 0).unwrap() else {
        panic!("asked for a logistic model");
    };
    // True weights 1.5, 1.0, −0.8, 0.5, 0, 0 and intercept −0.3.
    let truth = [1.5, 1.0, -0.8, 0.5, 0.0, 0.0];
    for (w, t) in lr.weights().iter().zip(truth) {
        assert!((w - t).abs() < 0.25, "weights {:?}", lr.weights());
    }
    assert!((lr.intercept() + 0.3).abs() < 0.25, "intercept {}", lr.intercept());
    let auc = auc_roc(test_set.labels(), &lr.predict_dataset(&test_set).unwrap()).unwrap();
    assert!(auc > 0.8, "{auc}");
}

#[test]
fn same_seed_gives_identical_bytes() {
    let train_set = data(Truth::NonLinear, 800, 3);
    let mut p = params();
    p.gbm.subsample = 0.7; // exercise the seeded sampling
    p.gbm.iterations = 30;
    for kind in KINDS {
        let a = serde_json::to_vec(&train(kind, &train_set, &p, 9).unwrap()).unwrap();
        let b = serde_json::to_vec(&train(kind, &train_set, &p, 9).unwrap()).unwrap();
        assert_eq!(a, b, "{kind:?} is not deterministic");
        if kind != ModelKind::Logistic {
            let c = serde_json::to_vec(&train(kind, &train_set, &p, 10).unwrap()).unwrap();
            assert_ne!(a, c, "{kind:?} ignores its seed");
        }
    }
}

#[test]
fn serde_round_trip_predicts_identically() {
    let (train_set, test_set) = split(Truth::NonLinear, 900, 600, 4);
    let mut p = params();
    p.gbm.iterations = 30;
    for kind in KINDS {
        let model = train(kind, &train_set, &p, 5).unwrap();
        let json = serde_json::to_string(&model).unwrap();
        let back: TrainedModel = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kind(), kind);
        assert_eq!(back.format_version(), MODEL_FORMAT_VERSION);
        assert_eq!(back.schema(), train_set.schema());
        let before: Vec<u64> = model.predict_dataset(&test_set).unwrap().iter().map(|p| p.to_bits()).collect();
        let after: Vec<u64> = back.predict_dataset(&test_set).unwrap().iter().map(|p| p.to_bits()).collect();
        assert_eq!(before, after, "{kind:?} predicts differently after a round trip");
        assert_eq!(serde_json::to_string(&back).unwrap(), json, "{kind:?} re-serializes differently");
        // Single-row and batch prediction agree.
        let one = back.predict_proba(test_set.row(0).unwrap()).unwrap();
        assert_eq!(one.to_bits(), after[0]);
        // So do the rows of one decision, predicted together.
        let rows: Vec<&[f64]> = (3..53).map(|i| test_set.row(i).unwrap()).collect();
        let together: Vec<u64> = back.predict_rows(&rows).unwrap().iter().map(|p| p.to_bits()).collect();
        assert_eq!(together, after[3..53], "{kind:?}: predict_rows differs from row-by-row prediction");
        let short = [0.5_f64];
        assert!(matches!(back.predict_rows(&[rows[0], &short]), Err(MlError::WidthMismatch { .. })));
    }
}

#[test]
fn ftrl_learns_online_and_stops_early() {
    let (train_set, test_set) = split(Truth::Linear, 3000, 2000, 6);
    let params = FtrlParams {
        epochs: 20,
        early_stopping: Some(HoldoutStopping { holdout_fraction: 0.2, patience: 2 }),
        ..FtrlParams::default()
    };
    let model = FtrlModel::train(&train_set, &params, 1).unwrap();
    let auc = auc_roc(test_set.labels(), &model.predict_dataset(&test_set).unwrap()).unwrap();
    assert!(auc > 0.8, "{auc}");
    assert_eq!(model.weights().len(), 7, "six features and the intercept");

    // Online: repeated clicks on one vector raise its probability; a bad vector leaves the model unchanged.
    let mut online = model.clone();
    let x = test_set.row(0).unwrap().to_vec();
    let before = online.predict_proba(&x).unwrap();
    for _ in 0..20 {
        online.update(&x, true).unwrap();
    }
    let after = online.predict_proba(&x).unwrap();
    assert!(after > before, "{before} → {after}");
    let weights = online.weights();
    assert_eq!(online.update(&[1.0], true).unwrap_err(), MlError::WidthMismatch { expected: 6, found: 1 });
    assert_eq!(online.update(&[f64::NAN; 6], true).unwrap_err().code(), "non_finite");
    assert_eq!(online.weights(), weights);
    online.update_batch(&test_set).unwrap();
}

#[test]
fn bad_inputs_give_typed_errors() {
    let train_set = data(Truth::NonLinear, 300, 7);
    let p = params();
    let model = train(ModelKind::Logistic, &train_set, &p, 0).unwrap();
    assert_eq!(model.predict_proba(&[0.0; 5]).unwrap_err(), MlError::WidthMismatch { expected: 6, found: 5 });
    assert_eq!(model.predict_proba(&[0.0, 0.0, f64::INFINITY, 0.0, 0.0, 0.0]).unwrap_err().code(), "non_finite");

    // A dataset with another schema of the same width is refused.
    let other = FeatureSchema::new(["a", "b", "c", "d", "e", "f"]).unwrap();
    let renamed =
        EngagementDataset::from_row_major(other, train_set.values().to_vec(), train_set.labels().to_vec()).unwrap();
    assert_eq!(model.predict_dataset(&renamed).unwrap_err().code(), "invalid_schema");

    // One class only.
    let schema = FeatureSchema::new(["x"]).unwrap();
    let single = EngagementDataset::new(schema, &[vec![1.0], vec![2.0]], vec![true, true]).unwrap();
    for kind in KINDS {
        assert_eq!(train(kind, &single, &p, 0).unwrap_err(), MlError::SingleClass);
    }

    // Hyperparameters out of range.
    let mut bad = params();
    bad.logistic.l2 = -1.0;
    bad.ftrl.alpha = 0.0;
    bad.gbm.learning_rate = f64::NAN;
    for kind in KINDS {
        assert_eq!(train(kind, &train_set, &bad, 0).unwrap_err().code(), "invalid_parameter", "{kind:?}");
    }
    let mut bad = params();
    bad.gbm.subsample = 1.5;
    bad.ftrl.early_stopping = Some(HoldoutStopping { holdout_fraction: 0.9, patience: 1 });
    assert_eq!(train(ModelKind::Gbm, &train_set, &bad, 0).unwrap_err().code(), "invalid_parameter");
    assert_eq!(train(ModelKind::Ftrl, &train_set, &bad, 0).unwrap_err().code(), "invalid_parameter");

    // Corrupt JSON of a model is a serde error, not a panic.
    assert!(serde_json::from_str::<TrainedModel>(
        r#"{"logistic":{"format_version":1,"schema":[],"weights":[],"intercept":0}}"#
    )
    .is_err());
}

/// One-hot clicks: a dense feature `x`, then one-hot `pos` (3 levels), `item` (40) and `seg` (6), each level
/// with its own effect on the log-odds. Columns 0, 1–3, 4–43, 44–49.
fn one_hot(rows: usize, seed: u64) -> EngagementDataset {
    use rand::Rng;
    let mut rng = lethe_ml::seeded_rng(seed);
    let levels = [3_usize, 40, 6];
    let effects: Vec<Vec<f64>> = levels.iter().map(|&k| (0..k).map(|_| rng.gen_range(-1.5..1.5)).collect()).collect();
    let mut names = vec!["x".to_string()];
    for (name, &k) in ["pos", "item", "seg"].iter().zip(&levels) {
        names.extend((0..k).map(|l| format!("{name}_{l}")));
    }
    let width = names.len();
    let (mut values, mut labels) = (Vec::with_capacity(rows * width), Vec::with_capacity(rows));
    for _ in 0..rows {
        let x: f64 = rng.gen_range(-1.0..1.0);
        let mut row = vec![0.0; width];
        row[0] = x;
        let (mut logit, mut offset) = (x - 1.0, 1);
        for (k, effect) in levels.iter().zip(&effects) {
            let level = rng.gen_range(0..*k);
            row[offset + level] = 1.0;
            logit += effect[level];
            offset += k;
        }
        values.extend(row);
        labels.push(rng.gen::<f64>() < 1.0 / (1.0 + (-logit).exp()));
    }
    EngagementDataset::from_row_major(FeatureSchema::new(names).unwrap(), values, labels).unwrap()
}

fn bits(p: &[f64]) -> Vec<u64> {
    p.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn gbm_bundles_one_hot_columns_without_losing_auc() {
    let data = one_hot(5000, 11);
    let train_set = data.subset(&(0..3000).collect::<Vec<_>>()).unwrap();
    let test_set = data.subset(&(3000..5000).collect::<Vec<_>>()).unwrap();
    let on = GbmParams::default();
    let off = GbmParams { feature_bundling: false, ..GbmParams::default() };
    let bundled = GbmModel::train(&train_set, &on, 3).unwrap();
    let plain = GbmModel::train(&train_set, &off, 3).unwrap();
    // Each categorical becomes one bundle; the dense column passes through.
    let expected: Vec<Vec<usize>> = vec![(1..4).collect(), (4..44).collect(), (44..50).collect()];
    assert_eq!(bundled.bundles(), &expected[..]);
    assert!(plain.bundles().is_empty());
    let auc = |m: &GbmModel| auc_roc(test_set.labels(), &m.predict_dataset(&test_set).unwrap()).unwrap();
    let (auc_on, auc_off) = (auc(&bundled), auc(&plain));
    eprintln!("one-hot data: GBM AUC {auc_on:.4} with bundling, {auc_off:.4} without");
    assert!(auc_off > 0.7, "{auc_off}");
    assert!(auc_on >= auc_off - 0.01, "bundling costs AUC: {auc_on} vs {auc_off}");
}

#[test]
fn bundled_gbm_round_trips_and_predicts_identically() {
    let data = one_hot(1500, 12);
    let train_set = data.subset(&(0..1000).collect::<Vec<_>>()).unwrap();
    let test_set = data.subset(&(1000..1500).collect::<Vec<_>>()).unwrap();
    let p = EngagementParams { gbm: GbmParams { iterations: 30, ..GbmParams::default() }, ..params() };
    let model = train(ModelKind::Gbm, &train_set, &p, 5).unwrap();
    let json = serde_json::to_string(&model).unwrap();
    assert_eq!(json, serde_json::to_string(&train(ModelKind::Gbm, &train_set, &p, 5).unwrap()).unwrap());
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        value["gbm"]["bundling"]["bundles"].as_array().is_some_and(|b| b.len() == 3),
        "{}",
        value["gbm"]["bundling"]
    );

    let back: TrainedModel = serde_json::from_str(&json).unwrap();
    let before = bits(&model.predict_dataset(&test_set).unwrap());
    assert_eq!(bits(&back.predict_dataset(&test_set).unwrap()), before);
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    let rows: Vec<&[f64]> = (0..test_set.len()).map(|i| test_set.row(i).unwrap()).collect();
    assert_eq!(bits(&back.predict_rows(&rows).unwrap()), before);
    for (i, row) in rows.iter().enumerate().take(20) {
        assert_eq!(back.predict_proba(row).unwrap().to_bits(), before[i]);
    }

    // Two active columns of one bundle (never seen in training): the first one (position 1) wins.
    let mut both = rows[0].to_vec();
    both[1..4].copy_from_slice(&[0.0, 1.0, 1.0]);
    let mut first = both.clone();
    first[3] = 0.0;
    assert_eq!(back.predict_proba(&both).unwrap().to_bits(), back.predict_proba(&first).unwrap().to_bits());
}

#[test]
fn gbm_serialized_without_bundling_loads_and_predicts_as_before() {
    let data = one_hot(1500, 13);
    let train_set = data.subset(&(0..1000).collect::<Vec<_>>()).unwrap();
    let test_set = data.subset(&(1000..1500).collect::<Vec<_>>()).unwrap();
    let mut p = params();
    p.gbm.iterations = 30;
    p.gbm.feature_bundling = false; // as every model trained before bundling existed
    let model = train(ModelKind::Gbm, &train_set, &p, 5).unwrap();
    let before = bits(&model.predict_dataset(&test_set).unwrap());
    // Without bundles the field is left out, as in the format before bundling existed.
    let json = serde_json::to_string(&model).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(value["gbm"].get("bundling").is_none(), "{}", &json[..200]);
    let back: TrainedModel = serde_json::from_str(&json).unwrap();
    assert_eq!(bits(&back.predict_dataset(&test_set).unwrap()), before);
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    // An explicit empty plan reads the same.
    value["gbm"]["bundling"] = serde_json::json!({ "passthrough": [], "bundles": [] });
    let explicit: TrainedModel = serde_json::from_value(value).unwrap();
    assert_eq!(bits(&explicit.predict_dataset(&test_set).unwrap()), before);
    assert_eq!(serde_json::to_string(&explicit).unwrap(), json);
}
