//! Seeded synthetic data with known structure, for tests and benchmarks.
//!
//! - [`clustered`]: users in latent taste clusters, items in as many categories, implicit interactions
//!   that mostly stay within the user's cluster, category-flavoured item text and numeric features.
//! - [`engagement`]: rows of features whose label is drawn from `σ(logit(x))` for a known logit, either
//!   linear or with an interaction and a threshold that a linear model cannot represent.

use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::dataset::{EngagementDataset, FeatureSchema};
use crate::engagement::sigmoid;
use crate::error::{invalid, Result};
use crate::recommend::{Interactions, ItemContent, ItemId, UserId};
use crate::{seeded_rng, Rng};

/// Shape of [`clustered`] data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusteredConfig {
    /// Users, numbered from 0. Default 300.
    pub users: u32,
    /// Items, numbered from 0; item `i` is in category `i % clusters`. Default 200.
    pub items: u32,
    /// Taste clusters = item categories. Default 5.
    pub clusters: u32,
    /// Distinct items per user (capped by the catalogue). Default 20.
    pub per_user: u32,
    /// Probability that an interaction falls in the user's own category. Default 0.8.
    pub in_cluster: f64,
    /// Zipf exponent of item popularity within a category. Default 1.0.
    pub popularity_skew: f64,
}

impl Default for ClusteredConfig {
    fn default() -> Self {
        Self { users: 300, items: 200, clusters: 5, per_user: 20, in_cluster: 0.8, popularity_skew: 1.0 }
    }
}

/// Output of [`clustered`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClusteredData {
    /// Interaction counts (1 plus a geometric number of repeats).
    pub interactions: Interactions,
    /// Cluster of user `u` at index `u`.
    pub user_cluster: Vec<u32>,
    /// Category of item `i` at index `i`.
    pub item_category: Vec<u32>,
    /// Text (category words plus shared filler words) and numeric features (a category-dependent price
    /// and a random rating) for every item.
    pub content: Vec<ItemContent>,
}

/// Samples an index from cumulative weights.
fn sample_cumulative(rng: &mut Rng, cumulative: &[f64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let u = rng.gen::<f64>() * total;
    cumulative.partition_point(|&c| c <= u).min(cumulative.len().saturating_sub(1))
}

/// Users with latent taste clusters and items in categories (see [`ClusteredConfig`]).
///
/// # Errors
/// [`crate::MlError::InvalidParameter`] for zero users, items or clusters, more clusters than items, or
/// probabilities and exponents out of range.
pub fn clustered(config: &ClusteredConfig, seed: u64) -> Result<ClusteredData> {
    if config.users == 0 || config.items == 0 || config.clusters == 0 || config.per_user == 0 {
        return Err(invalid("clustered", "users, items, clusters and per_user must be at least 1"));
    }
    if config.clusters > config.items {
        return Err(invalid("clustered.clusters", "must not exceed items"));
    }
    if !(0.0..=1.0).contains(&config.in_cluster) {
        return Err(invalid("clustered.in_cluster", "must lie in [0, 1]"));
    }
    if !(config.popularity_skew.is_finite() && config.popularity_skew >= 0.0) {
        return Err(invalid("clustered.popularity_skew", "must be a finite number of at least zero"));
    }
    let mut rng = seeded_rng(seed);
    let k = config.clusters as usize;
    let item_category: Vec<u32> = (0..config.items).map(|i| i % config.clusters).collect();
    // Per category: its items and the cumulative Zipf weights of their popularity.
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); k];
    for i in 0..config.items {
        members[(i % config.clusters) as usize].push(i);
    }
    let cumulative: Vec<Vec<f64>> = members
        .iter()
        .map(|m| {
            let mut acc = 0.0;
            (0..m.len())
                .map(|rank| {
                    acc += 1.0 / ((rank + 1) as f64).powf(config.popularity_skew);
                    acc
                })
                .collect()
        })
        .collect();

    let user_cluster: Vec<u32> = (0..config.users).map(|_| rng.gen_range(0..config.clusters)).collect();
    let per_user = config.per_user.min(config.items) as usize;
    let mut triples = Vec::with_capacity(config.users as usize * per_user);
    for (u, &cluster) in user_cluster.iter().enumerate() {
        let mut chosen: Vec<u32> = Vec::with_capacity(per_user);
        let mut attempts = 0;
        while chosen.len() < per_user && attempts < per_user * 50 {
            attempts += 1;
            let category = if rng.gen::<f64>() < config.in_cluster { cluster as usize } else { rng.gen_range(0..k) };
            let item = members[category][sample_cumulative(&mut rng, &cumulative[category])];
            if chosen.contains(&item) {
                continue;
            }
            chosen.push(item);
            let mut count = 1.0;
            while count < 10.0 && rng.gen::<f64>() < 0.5 {
                count += 1.0;
            }
            triples.push((UserId(u as u32), ItemId(item), count));
        }
    }

    let content = (0..config.items)
        .map(|i| {
            let category = item_category[i as usize];
            let mut words: Vec<String> =
                (0..6).map(|_| format!("topic{category}word{}", rng.gen_range(0..10))).collect();
            words.extend((0..3).map(|_| format!("filler{}", rng.gen_range(0..30))));
            let price = 10.0 * f64::from(category) + 3.0 * normal(&mut rng);
            let rating = rng.gen_range(1.0..5.0);
            ItemContent { item: ItemId(i), text: words.join(" "), numeric: vec![price, rating] }
        })
        .collect();
    Ok(ClusteredData { interactions: Interactions::from_triples(&triples)?, user_cluster, item_category, content })
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The true logit of [`engagement`] data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Truth {
    /// `−0.3 + 1.5·x₀ + 1.0·x₁ − 0.8·x₂ + 0.5·x₃` (x₄, x₅ are noise).
    Linear,
    /// `−0.3 + 1.5·x₀ + 1.0·x₁ + 1.5·x₂·x₃ + 1.5·[|x₄| > 1] − 0.75` — an interaction and a threshold
    /// a linear model cannot represent (x₅ is noise).
    NonLinear,
}

/// Shape of [`engagement`] data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngagementConfig {
    /// Rows. Default 2000.
    pub rows: usize,
    /// Distinct group ids (subjects) assigned at random to rows. Default 100.
    pub subjects: u64,
    /// The true logit.
    pub truth: Truth,
}

impl Default for EngagementConfig {
    fn default() -> Self {
        Self { rows: 2000, subjects: 100, truth: Truth::NonLinear }
    }
}

/// Output of [`engagement`].
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticEngagement {
    /// Six standard-normal features `x0`..`x5`, a label drawn from the true probability, and a subject
    /// group per row.
    pub dataset: EngagementDataset,
    /// The true engagement probability of each row (an oracle for the achievable AUC).
    pub true_probability: Vec<f64>,
}

/// The names of the six features of [`engagement`] data.
pub const ENGAGEMENT_FEATURES: [&str; 6] = ["x0", "x1", "x2", "x3", "x4", "x5"];

/// The true logit for `x` (six features).
#[must_use]
pub fn true_logit(truth: Truth, x: &[f64; 6]) -> f64 {
    match truth {
        Truth::Linear => -0.3 + 1.5 * x[0] + 1.0 * x[1] - 0.8 * x[2] + 0.5 * x[3],
        Truth::NonLinear => {
            let step = if x[4].abs() > 1.0 { 1.5 } else { 0.0 };
            -0.3 + 1.5 * x[0] + 1.0 * x[1] + 1.5 * x[2] * x[3] + step - 0.75
        }
    }
}

/// Rows of engagement data with a known logit (see [`Truth`]).
///
/// # Errors
/// [`crate::MlError::InvalidParameter`] for zero rows or subjects.
pub fn engagement(config: &EngagementConfig, seed: u64) -> Result<SyntheticEngagement> {
    if config.rows == 0 || config.subjects == 0 {
        return Err(invalid("engagement", "rows and subjects must be at least 1"));
    }
    let mut rng = seeded_rng(seed);
    let mut values = Vec::with_capacity(config.rows * 6);
    let mut labels = Vec::with_capacity(config.rows);
    let mut groups = Vec::with_capacity(config.rows);
    let mut true_probability = Vec::with_capacity(config.rows);
    for _ in 0..config.rows {
        let x: [f64; 6] = std::array::from_fn(|_| normal(&mut rng));
        let p = sigmoid(true_logit(config.truth, &x));
        values.extend_from_slice(&x);
        labels.push(rng.gen::<f64>() < p);
        groups.push(rng.gen_range(0..config.subjects));
        true_probability.push(p);
    }
    let schema = FeatureSchema::new(ENGAGEMENT_FEATURES)?;
    let dataset = EngagementDataset::from_row_major(schema, values, labels)?.with_groups(groups)?;
    Ok(SyntheticEngagement { dataset, true_probability })
}
