//! Engagement models: quality on synthetic data, determinism, serde round trips, typed errors.

use lethe_ml::engagement::{
    train, EngagementModel, EngagementParams, FtrlModel, FtrlParams, GbmParams, HoldoutStopping, LogisticParams,
    ModelKind, TrainedModel, MODEL_FORMAT_VERSION,
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
