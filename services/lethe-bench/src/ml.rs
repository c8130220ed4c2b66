//! `lethe-bench ml`: Lethe's models (`lethe-ml`) on files that an external comparison reads too.
//!
//! 1. Synthetic data from `lethe_ml::synthetic`, with fixed seeds, written as CSV to `--export-dir`:
//!    - `engagement.csv`: `fold,label,x0..x5` from the non-linear truth (an interaction and a threshold),
//!      rows split into stratified folds by seed;
//!    - `rec_train.csv` (`user,item,strength`) and `rec_test.csv` (`user,item`): clustered implicit
//!      interactions with `--holdout` random items per user held out.
//! 2. With `--obd DIR`, the Open Bandit Dataset sample (ZOZOTOWN; Saito, Aihara, Matsutani & Narita 2020,
//!    "Open Bandit Dataset and Pipeline", CC BY 4.0) for the `random` and `bts` logging policies, read
//!    from `DIR/<policy>/all/all.csv` and `item_context.csv`, turned into click-prediction features and
//!    written as `DIR/<policy>/features.csv` (same layout as `engagement.csv`). OBD has no user ids, so it
//!    serves the engagement (click) model only, not the recommenders.
//!
//!    Features per impression: one-hot `position` (1–3), one-hot `item_id` (80), one-hot of each of the
//!    four hashed categorical user features, the user–item affinity of the shown item, and the item's
//!    numeric `item_feature_0` from `item_context.csv` (109–111 columns). A second run (`ordinal`, on
//!    by default; see `--obd-encoding`) makes each categorical column one numeric code instead (8
//!    columns, written to `features-ordinal.csv`), which suits trees. Lethe's GBM bundles mutually
//!    exclusive 0/1 columns itself (as LightGBM does), so the one-hot run trains as fast as the
//!    ordinal one. The logging propensity and timestamp are not
//!    features. Folds are stratified: with ~40 clicks in 10,000 impressions each test fold holds ~8
//!    clicks, so the AUC is noisy (see the per-fold sd).
//! 3. Trains Lethe's GBM and logistic regression on every engagement fold (AUC, log loss) and Lethe's
//!    ALS and item-kNN on the recommendation split (NDCG@10, precision@10), timing training only (the
//!    fastest of `--repeats` runs for the compared models), prints the figures and writes them with the
//!    parameters used to `lethe-results.json` for `tests/ml/compare.py`, which trains LightGBM and
//!    `implicit` on the same files.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use lethe_ml::engagement::{EngagementModel, GbmModel, GbmParams, LogisticModel, LogisticParams};
use lethe_ml::metrics::{auc_roc, log_loss};
use lethe_ml::recommend::{evaluate_at_k, AlsModel, AlsParams, Interactions, ItemKnn, ItemKnnParams, UserRecommender};
use lethe_ml::synthetic::{clustered, engagement, ClusteredConfig, EngagementConfig, Truth};
use lethe_ml::{EngagementDataset, FeatureSchema};
use rand::seq::SliceRandom;
use serde_json::{json, Value};

use crate::cores;

/// Cut-off of the ranking metrics.
const K: usize = 10;

/// The OBD logging policies read from `--obd` (campaign "all").
const OBD_POLICIES: [&str; 2] = ["random", "bts"];

#[derive(Debug, clap::Args)]
pub struct MlArgs {
    /// Directory for the synthetic CSV files (created if missing) and, by default, `lethe-results.json`.
    #[arg(long, default_value = "target/ml-data/synthetic")]
    export_dir: PathBuf,
    /// Directory holding the Open Bandit Dataset sample as `random/all/all.csv`, `bts/all/all.csv` and
    /// their `item_context.csv`; the converted `features.csv` (`features-ordinal.csv`) is written beside
    /// each.
    #[arg(long)]
    obd: Option<PathBuf>,
    /// How OBD's categorical columns become features, one run per encoding listed: `one-hot` (position,
    /// item id and the four user features one-hot) and/or `ordinal` (each as one numeric code: position,
    /// item id, index of the user feature's value in sorted order; fine for trees, meaningless for the
    /// linear model).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "one-hot,ordinal")]
    obd_encoding: Vec<ObdEncoding>,
    /// Where to write the figures as JSON [default: EXPORT_DIR/lethe-results.json].
    #[arg(long)]
    results: Option<PathBuf>,
    /// Seed of every generator, split and model.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Stratified folds of the engagement data (each fold is the test set once).
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Training runs per timing of the compared models (GBM per fold, ALS, item-kNN); the fastest
    /// counts, to damp noise from other load. Logistic regression, compared with nothing, runs once.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Rows of synthetic engagement data.
    #[arg(long, default_value_t = 20_000)]
    engagement_rows: usize,
    /// Users of the synthetic interactions.
    #[arg(long, default_value_t = 2000)]
    users: u32,
    /// Items of the synthetic interactions.
    #[arg(long, default_value_t = 500)]
    items: u32,
    /// Taste clusters (= item categories) of the synthetic interactions.
    #[arg(long, default_value_t = 10)]
    clusters: u32,
    /// Distinct items per synthetic user.
    #[arg(long, default_value_t = 25)]
    per_user: u32,
    /// Items held out per user for the ranking metrics.
    #[arg(long, default_value_t = 5)]
    holdout: usize,
    /// GBM trees [default: lethe-ml's GbmParams].
    #[arg(long)]
    gbm_trees: Option<usize>,
    /// GBM maximum depth [default: lethe-ml's GbmParams].
    #[arg(long)]
    gbm_depth: Option<usize>,
    /// GBM learning rate [default: lethe-ml's GbmParams].
    #[arg(long)]
    gbm_learning_rate: Option<f64>,
    /// ALS latent factors [default: lethe-ml's AlsParams].
    #[arg(long)]
    als_factors: Option<usize>,
    /// ALS regularization λ [default: lethe-ml's AlsParams].
    #[arg(long)]
    als_regularization: Option<f64>,
    /// ALS confidence scale α [default: lethe-ml's AlsParams].
    #[arg(long)]
    als_alpha: Option<f64>,
    /// ALS iterations [default: lethe-ml's AlsParams].
    #[arg(long)]
    als_iterations: Option<usize>,
    /// ALS conjugate-gradient steps per row and sweep, 0 for the exact Cholesky solve [default: lethe-ml's
    /// AlsParams].
    // u32, not usize: `MlArgs` is the largest variant of `Suite`, within clippy's large_enum_variant limit.
    #[arg(long)]
    als_cg_steps: Option<u32>,
    /// Only the recommenders: skips the engagement models (synthetic and `--obd`), so `lethe-results.json`
    /// lists no engagement data and `tests/ml/compare.py` compares the recommenders alone.
    #[arg(long)]
    recommend_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObdEncoding {
    OneHot,
    Ordinal,
}

struct Params {
    gbm: GbmParams,
    logistic: LogisticParams,
    als: AlsParams,
    knn: ItemKnnParams,
}

impl Params {
    fn from_args(args: &MlArgs) -> Self {
        let mut gbm = GbmParams::default();
        gbm.iterations = args.gbm_trees.unwrap_or(gbm.iterations);
        gbm.max_depth = args.gbm_depth.unwrap_or(gbm.max_depth);
        gbm.learning_rate = args.gbm_learning_rate.unwrap_or(gbm.learning_rate);
        let mut als = AlsParams::default();
        als.factors = args.als_factors.unwrap_or(als.factors);
        als.regularization = args.als_regularization.unwrap_or(als.regularization);
        als.alpha = args.als_alpha.unwrap_or(als.alpha);
        als.iterations = args.als_iterations.unwrap_or(als.iterations);
        als.cg_steps = args.als_cg_steps.map_or(als.cg_steps, |steps| steps as usize);
        Self { gbm, logistic: LogisticParams::default(), als, knn: ItemKnnParams::default() }
    }
}

pub fn run(args: &MlArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.folds >= 2, "--folds must be at least 2");
    let params = Params::from_args(args);
    println!(
        "lethe-bench ml: seed {}, {} folds, single-threaded training, fastest of {} runs timed, {} cores",
        args.seed,
        args.folds,
        args.repeats.max(1),
        cores()
    );
    println!("GBM      {}", serde_json::to_string(&params.gbm)?);
    println!("logistic {}", serde_json::to_string(&params.logistic)?);
    println!("ALS      {}", serde_json::to_string(&params.als)?);
    println!("item-kNN {}", serde_json::to_string(&params.knn)?);
    std::fs::create_dir_all(&args.export_dir).with_context(|| format!("create {}", args.export_dir.display()))?;

    let mut engagement_results = Vec::new();
    if args.recommend_only {
        println!("\n(--recommend-only: skipping the engagement models)");
    } else {
        let synthetic = synthetic_engagement(args)?;
        let csv = args.export_dir.join("engagement.csv");
        engagement_results.push(evaluate_engagement(&synthetic, &csv, &params, args)?);
        if let Some(dir) = &args.obd {
            for &encoding in &args.obd_encoding {
                for policy in OBD_POLICIES {
                    let set = load_obd(dir, policy, encoding, args)?;
                    let file = if encoding == ObdEncoding::OneHot { "features.csv" } else { "features-ordinal.csv" };
                    let out = dir.join(policy).join(file);
                    engagement_results.push(evaluate_engagement(&set, &out, &params, args)?);
                }
            }
        } else {
            println!("\n(no --obd: skipping the Open Bandit Dataset)");
        }
    }
    let recommend_results = vec![evaluate_recommenders(args, &params)?];

    let results = json!({
        "seed": args.seed,
        "k": K,
        "repeats": args.repeats,
        "params": {
            "gbm": serde_json::to_value(&params.gbm)?,
            "logistic": serde_json::to_value(&params.logistic)?,
            "als": serde_json::to_value(&params.als)?,
            "knn": serde_json::to_value(&params.knn)?,
        },
        "engagement": engagement_results,
        "recommend": recommend_results,
    });
    let path = args.results.clone().unwrap_or_else(|| args.export_dir.join("lethe-results.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("write {}", path.display()))?;
    println!("\nfigures written to {}", path.display());
    Ok(())
}

/// Trains `repeats` times (at least once) and returns the last model with the fastest time in seconds.
/// Training is deterministic, so every run gives the same model.
fn fastest<M>(repeats: usize, mut train: impl FnMut() -> lethe_ml::Result<M>) -> anyhow::Result<(M, f64)> {
    let mut best = f64::INFINITY;
    let mut model = None;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        model = Some(train()?);
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok((model.context("no training run")?, best))
}

/// A dense engagement dataset with a fold per row, before it is split.
struct EngagementSet {
    key: String,
    title: String,
    names: Vec<String>,
    /// Row-major, `labels.len() × names.len()`.
    values: Vec<f64>,
    labels: Vec<bool>,
    fold: Vec<usize>,
    /// The true click probability per row, when known (synthetic data).
    oracle: Option<Vec<f64>>,
}

impl EngagementSet {
    fn subset(&self, keep: impl Fn(usize) -> bool) -> anyhow::Result<EngagementDataset> {
        let w = self.names.len();
        let rows: Vec<usize> = (0..self.labels.len()).filter(|&i| keep(self.fold[i])).collect();
        let mut values = Vec::with_capacity(rows.len() * w);
        for &i in &rows {
            values.extend_from_slice(&self.values[i * w..(i + 1) * w]);
        }
        let labels = rows.iter().map(|&i| self.labels[i]).collect();
        Ok(EngagementDataset::from_row_major(FeatureSchema::new(self.names.clone())?, values, labels)?)
    }

    fn write_csv(&self, path: &Path) -> anyhow::Result<()> {
        let mut out = BufWriter::new(File::create(path).with_context(|| format!("create {}", path.display()))?);
        writeln!(out, "fold,label,{}", self.names.join(","))?;
        let w = self.names.len();
        for (i, &label) in self.labels.iter().enumerate() {
            write!(out, "{},{}", self.fold[i], u8::from(label))?;
            for v in &self.values[i * w..(i + 1) * w] {
                // `{}` prints the shortest decimal that parses back to the same f64.
                write!(out, ",{v}")?;
            }
            writeln!(out)?;
        }
        out.flush()?;
        Ok(())
    }
}

/// Fold per row: each class shuffled by seed and dealt round-robin, so every fold holds both classes.
fn stratified_folds(labels: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = lethe_ml::seeded_rng(seed);
    let mut fold = vec![0; labels.len()];
    for class in [true, false] {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rows.shuffle(&mut rng);
        for (position, &row) in rows.iter().enumerate() {
            fold[row] = position % k;
        }
    }
    fold
}

fn synthetic_engagement(args: &MlArgs) -> anyhow::Result<EngagementSet> {
    let config = EngagementConfig { rows: args.engagement_rows, subjects: 1000, truth: Truth::NonLinear };
    let data = engagement(&config, args.seed)?;
    let ds = data.dataset;
    let labels = ds.labels().to_vec();
    Ok(EngagementSet {
        key: "synthetic".into(),
        title: format!("synthetic engagement, non-linear truth, {} rows", ds.len()),
        names: ds.schema().names().to_vec(),
        values: ds.values().to_vec(),
        fold: stratified_folds(&labels, args.folds, args.seed ^ 0xf01d),
        labels,
        oracle: Some(data.true_probability),
    })
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn sd(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len().saturating_sub(1).max(1)) as f64).sqrt()
}

/// Per-fold figures of one model.
#[derive(Default)]
struct FoldFigures {
    auc: Vec<f64>,
    log_loss: Vec<f64>,
    train_s: Vec<f64>,
}

impl FoldFigures {
    fn json(&self, model: &str) -> Value {
        json!({ "model": model, "auc": self.auc, "log_loss": self.log_loss, "train_s": self.train_s })
    }

    fn print(&self, model: &str) {
        println!(
            "{:<28} {:>7.4} ± {:<6.4} {:>9.4} {:>10.3} {:>10.3}",
            model,
            mean(&self.auc),
            sd(&self.auc),
            mean(&self.log_loss),
            mean(&self.train_s),
            self.train_s.iter().sum::<f64>()
        );
    }
}

fn evaluate_engagement(set: &EngagementSet, csv: &Path, params: &Params, args: &MlArgs) -> anyhow::Result<Value> {
    set.write_csv(csv)?;
    let positives = set.labels.iter().filter(|&&l| l).count();
    println!(
        "\n## Engagement: {} ({} rows, {} features, {} positives, {} stratified folds)\nfile: {}",
        set.title,
        set.labels.len(),
        set.names.len(),
        positives,
        args.folds,
        csv.display()
    );
    let (mut gbm, mut logistic) = (FoldFigures::default(), FoldFigures::default());
    let mut oracle = Vec::new();
    for f in 0..args.folds {
        let train = set.subset(|fold| fold != f)?;
        let test = set.subset(|fold| fold == f)?;

        let (model, seconds) = fastest(args.repeats, || GbmModel::train(&train, &params.gbm, args.seed))?;
        let p = model.predict_dataset(&test)?;
        gbm.auc.push(auc_roc(test.labels(), &p)?);
        gbm.log_loss.push(log_loss(test.labels(), &p)?);
        gbm.train_s.push(seconds);

        let start = Instant::now();
        let model = LogisticModel::train(&train, &params.logistic)?;
        let seconds = start.elapsed().as_secs_f64();
        let p = model.predict_dataset(&test)?;
        logistic.auc.push(auc_roc(test.labels(), &p)?);
        logistic.log_loss.push(log_loss(test.labels(), &p)?);
        logistic.train_s.push(seconds);

        if let Some(truth) = &set.oracle {
            let p: Vec<f64> = (0..set.labels.len()).filter(|&i| set.fold[i] == f).map(|i| truth[i]).collect();
            oracle.push(auc_roc(test.labels(), &p)?);
        }
    }
    println!("{:<28} {:>16} {:>9} {:>10} {:>10}", "model", "AUC (mean ± sd)", "log loss", "train s/fold", "train s");
    gbm.print("Lethe GBM (forust-ml)");
    logistic.print("Lethe logistic (linfa)");
    if !oracle.is_empty() {
        println!("{:<28} {:>7.4} ± {:<6.4}", "oracle (true probability)", mean(&oracle), sd(&oracle));
    }
    Ok(json!({
        "key": set.key,
        "title": set.title,
        "path": csv.canonicalize().unwrap_or_else(|_| csv.to_path_buf()),
        "rows": set.labels.len(),
        "features": set.names.len(),
        "positives": positives,
        "folds": args.folds,
        "models": [gbm.json("Lethe GBM"), logistic.json("Lethe logistic")],
        "oracle_auc": if oracle.is_empty() { Value::Null } else { json!(oracle) },
    }))
}

/// Reads a CSV with a header into (header, records).
fn read_csv(path: &Path) -> anyhow::Result<(Vec<String>, Vec<csv::StringRecord>)> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("open {}", path.display()))?;
    let header = reader.headers()?.iter().map(str::to_owned).collect();
    let records =
        reader.records().collect::<Result<Vec<_>, _>>().with_context(|| format!("read {}", path.display()))?;
    Ok((header, records))
}

fn column(header: &[String], name: &str, path: &Path) -> anyhow::Result<usize> {
    header.iter().position(|h| h == name).with_context(|| format!("{}: no column {name}", path.display()))
}

fn parse_f64(record: &csv::StringRecord, i: usize) -> anyhow::Result<f64> {
    let s = record.get(i).context("short row")?;
    s.parse::<f64>().with_context(|| format!("not a number: {s:?}"))
}

/// The OBD sample of one policy as click-prediction features (see the module documentation).
fn load_obd(dir: &Path, policy: &str, encoding: ObdEncoding, args: &MlArgs) -> anyhow::Result<EngagementSet> {
    let base = dir.join(policy).join("all");
    let path = base.join("all.csv");
    let (header, records) = read_csv(&path)?;
    if records.is_empty() {
        bail!("{}: no rows", path.display());
    }
    let item_col = column(&header, "item_id", &path)?;
    let position_col = column(&header, "position", &path)?;
    let click_col = column(&header, "click", &path)?;
    let user_cols: Vec<usize> =
        (0..4).map(|j| column(&header, &format!("user_feature_{j}"), &path)).collect::<anyhow::Result<_>>()?;

    let context_path = base.join("item_context.csv");
    let (context_header, context) = read_csv(&context_path)?;
    let context_item = column(&context_header, "item_id", &context_path)?;
    let context_feature = column(&context_header, "item_feature_0", &context_path)?;
    let mut item_feature: HashMap<u32, f64> = HashMap::new();
    for r in &context {
        item_feature.insert(parse_f64(r, context_item)? as u32, parse_f64(r, context_feature)?);
    }

    // Vocabularies over the whole file (no labels involved), sorted so columns are stable.
    let mut items = BTreeSet::new();
    let mut positions = BTreeSet::new();
    let mut user_values: Vec<BTreeSet<String>> = vec![BTreeSet::new(); 4];
    for r in &records {
        items.insert(parse_f64(r, item_col)? as u32);
        positions.insert(parse_f64(r, position_col)? as u32);
        for (j, &c) in user_cols.iter().enumerate() {
            user_values[j].insert(r.get(c).context("short row")?.to_owned());
        }
    }
    // Each categorical column becomes one-hot columns or one ordinal code (its index in sorted order).
    let one_hot = encoding == ObdEncoding::OneHot;
    let positions: Vec<u32> = positions.into_iter().collect();
    let items: Vec<u32> = items.into_iter().collect();
    let user_values: Vec<Vec<String>> = user_values.into_iter().map(|v| v.into_iter().collect()).collect();
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: &str, labels: Vec<String>| -> usize {
        let at = names.len();
        if one_hot {
            names.extend(labels.into_iter().map(|l| format!("{name}_{l}")));
        } else {
            names.push(name.to_owned());
        }
        at
    };
    let position_at = add("position", positions.iter().map(u32::to_string).collect());
    let item_at = add("item", items.iter().map(u32::to_string).collect());
    // The first 8 hex digits of each hash keep the names short (uniqueness is checked below).
    let user_at: Vec<usize> = (0..4)
        .map(|j| {
            add(&format!("user_feature_{j}"), user_values[j].iter().map(|v| v[..v.len().min(8)].to_owned()).collect())
        })
        .collect();
    let affinity_col = names.len();
    names.push("affinity_shown_item".into());
    let item_feature_col = names.len();
    names.push("item_feature_0".into());
    FeatureSchema::new(names.clone()).context("OBD feature names")?;

    let w = names.len();
    let mut values = vec![0.0; records.len() * w];
    let mut labels = Vec::with_capacity(records.len());
    let code = |sorted: &[u32], v: u32| sorted.binary_search(&v).unwrap_or_default();
    for (row, r) in records.iter().enumerate() {
        let x = &mut values[row * w..(row + 1) * w];
        let mut set = |at: usize, index: usize| {
            if one_hot {
                x[at + index] = 1.0;
            } else {
                x[at] = index as f64;
            }
        };
        let item = parse_f64(r, item_col)? as u32;
        let position = parse_f64(r, position_col)? as u32;
        set(position_at, code(&positions, position));
        set(item_at, code(&items, item));
        for (j, &c) in user_cols.iter().enumerate() {
            let v = r.get(c).context("short row")?;
            set(user_at[j], user_values[j].binary_search_by(|u| u.as_str().cmp(v)).unwrap_or_default());
        }
        let affinity = column(&header, &format!("user-item_affinity_{item}"), &path)?;
        x[affinity_col] = parse_f64(r, affinity)?;
        x[item_feature_col] = item_feature.get(&item).copied().unwrap_or(0.0);
        labels.push(parse_f64(r, click_col)? != 0.0);
    }
    Ok(EngagementSet {
        key: format!("obd_{policy}{}", if one_hot { "" } else { "_ordinal" }),
        title: format!(
            "Open Bandit Dataset sample, {policy} policy, campaign all (clicks), {} categoricals",
            if one_hot { "one-hot" } else { "ordinal" }
        ),
        names,
        values,
        fold: stratified_folds(&labels, args.folds, args.seed ^ 0x0bd),
        labels,
        oracle: None,
    })
}

fn evaluate_recommenders(args: &MlArgs, params: &Params) -> anyhow::Result<Value> {
    let config = ClusteredConfig {
        users: args.users,
        items: args.items,
        clusters: args.clusters,
        per_user: args.per_user,
        ..ClusteredConfig::default()
    };
    let data = clustered(&config, args.seed)?;
    let (train, test) = data.interactions.split_holdout(args.holdout, args.seed ^ 0x5917)?;
    let train_path = args.export_dir.join("rec_train.csv");
    let test_path = args.export_dir.join("rec_test.csv");
    write_interactions(&train, &train_path, true)?;
    write_interactions(&test, &test_path, false)?;
    let test_users = test.users().count();
    println!(
        "\n## Recommendation: synthetic clustered implicit feedback ({} users, {} items, {} clusters, \
         {} interactions in train, {} held out for {} users)\nfiles: {}, {}",
        config.users,
        config.items,
        config.clusters,
        train.len(),
        test.len(),
        test_users,
        train_path.display(),
        test_path.display()
    );
    println!("{:<28} {:>9} {:>13} {:>10}", "model", "NDCG@10", "precision@10", "train s");
    let mut models = Vec::new();
    let mut report = |name: &str, model: &dyn UserRecommender, seconds: f64| -> anyhow::Result<()> {
        let r = evaluate_at_k(model, &train, &test, K)?;
        println!("{name:<28} {:>9.4} {:>13.4} {seconds:>10.3}", r.ndcg, r.precision);
        models.push(json!({
            "model": name, "ndcg": r.ndcg, "precision": r.precision, "recall": r.recall,
            "users": r.users, "train_s": seconds,
        }));
        Ok(())
    };
    let (als, seconds) = fastest(args.repeats, || AlsModel::train(&train, &params.als, args.seed))?;
    report("Lethe ALS", &als, seconds)?;
    let (knn, seconds) = fastest(args.repeats, || ItemKnn::train(&train, &params.knn))?;
    report("Lethe item-kNN", &knn, seconds)?;
    Ok(json!({
        "key": "synthetic_clustered",
        "title": format!(
            "synthetic clustered interactions ({} users, {} items, {} clusters, {} per user, {} held out)",
            config.users, config.items, config.clusters, config.per_user, args.holdout
        ),
        "train_path": train_path.canonicalize().unwrap_or(train_path),
        "test_path": test_path.canonicalize().unwrap_or(test_path),
        "train_interactions": train.len(),
        "test_users": test_users,
        "models": models,
    }))
}

/// `user,item,strength` (train) or `user,item` (test), by ascending user then item.
fn write_interactions(m: &Interactions, path: &Path, with_strength: bool) -> anyhow::Result<()> {
    let mut out = BufWriter::new(File::create(path).with_context(|| format!("create {}", path.display()))?);
    writeln!(out, "{}", if with_strength { "user,item,strength" } else { "user,item" })?;
    for (user, history) in m.iter() {
        for (item, strength) in history {
            if with_strength {
                writeln!(out, "{},{},{strength}", user.0, item.0)?;
            } else {
                writeln!(out, "{},{}", user.0, item.0)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// `lethe-bench gbm`: a GBM trained with lethe-ml's defaults on 20,000 rows of synthetic engagement
/// data, predicting `rows` rows a call. Lethe's [`EngagementModel::predict_rows`] (the trees walked
/// row by row) beside [`GbmModel::predict_rows_columnar`] (forust's own predict over a column-major
/// copy), in alternating batches of `calls` calls; both give the same probabilities, bit for bit.
pub fn gbm_predict(rows: usize, calls: usize, batches: usize) -> anyhow::Result<()> {
    anyhow::ensure!(rows > 0 && calls > 0 && batches > 0, "rows, calls and batches must be at least 1");
    let config = EngagementConfig { rows: 20_000, subjects: 1000, truth: Truth::NonLinear };
    let data = engagement(&config, 42)?.dataset;
    let params = GbmParams::default();
    let model = GbmModel::train(&data, &params, 42)?;
    let width = data.width();
    let batch: Vec<&[f64]> = data.values().chunks_exact(width).take(rows).collect();
    let ours = model.predict_rows(&batch)?;
    let theirs = model.predict_rows_columnar(&batch)?;
    anyhow::ensure!(ours.iter().zip(&theirs).all(|(a, b)| a.to_bits() == b.to_bits()), "the two predictions differ");
    println!(
        "lethe-bench gbm: {} trees of depth {}, {} features, {} rows a call, {calls} calls a batch, {batches} batches each",
        model.trees(),
        params.max_depth,
        width,
        batch.len()
    );
    let time = |f: &dyn Fn() -> lethe_ml::Result<Vec<f64>>| -> anyhow::Result<f64> {
        let started = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(f()?);
        }
        Ok(started.elapsed().as_secs_f64() * 1e6 / calls as f64)
    };
    let (mut walked, mut columnar) = (Vec::new(), Vec::new());
    for _ in 0..batches {
        columnar.push(time(&|| model.predict_rows_columnar(std::hint::black_box(&batch)))?);
        walked.push(time(&|| model.predict_rows(std::hint::black_box(&batch)))?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (c, w) = (median(&mut columnar), median(&mut walked));
    println!("  forust predict, column-major (baseline) {c:8.2} µs/call");
    println!("  lethe, trees walked row by row          {w:8.2} µs/call  ({:.2}× the baseline)", w / c);
    Ok(())
}
