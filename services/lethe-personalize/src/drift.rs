//! Drift of the serving features: how far the population the feature views hold now has moved from
//! the one the live model was trained on, as a population stability index (PSI) per feature.
//!
//! **Features**, binned over subjects (one subject, one unit of mass), counting only the subjects
//! the views hold with at least one event:
//! - `device`: the subject's most frequent device class (`mobile`, `tablet`, `desktop`, `server`),
//!   or `none`;
//! - `daypart`: the subject's shares of events per daypart (`morning`, `afternoon`, `evening`,
//!   `night`);
//! - `referrer`: the subject's shares of events per referrer class (`direct`, `search`, `social`,
//!   `internal`, `other`), or `none` when no event carried one;
//! - `activity`: views + clicks, in log₂ bins `0`, `1`, `2-3`, `4-7`, `8-15`, `16-31`, `32+`;
//! - `sessions`: sessions ended, in bins `0`, `1`, `2-3`, `4-7`, `8+`.
//!
//! **Training distribution.** [`crate::Personalizer::train_on`] computes these shares over the
//! training subjects (from the attached views, or views replayed from the log) and keeps them in
//! memory beside the live model, never in its manifest: manifests are plaintext and outlive a
//! model's retirement, and the difference between the distributions of a model and of its
//! retrained successor would describe the one subject an erasure removed. After a restart there is
//! no reference until the next training run (`lethe serve --train-every`). A population smaller than
//! [`MIN_SUBJECTS`] gives no reference: its shares would be noise.
//!
//! **PSI.** With `e` the training shares and `a` the serving shares of a feature's bins,
//! `PSI = Σᵢ (aᵢ − eᵢ) · ln(aᵢ / eᵢ)`, where every share is first raised to at least
//! [`PSI_EPSILON`] so that an empty bin gives a large but finite term. Each term is ≥ 0 (both factors
//! have the same sign), and PSI is 0 exactly when the distributions agree. The common reading:
//! below 0.1 stable, 0.1 to 0.2 a moderate shift, above [`PSI_ALERT`] (0.2) a significant one, which
//! [`drift_metrics`] flags with `lethe_feature_psi_alert{feature=…} 1`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use lethe_domain::Pseudonym;
use lethe_features::{Daypart, FeatureView, Projector, ProjectorConfig, ReferrerClass};

use crate::{Personalizer, Views};

/// Smallest share a bin counts with in [`psi`].
pub const PSI_EPSILON: f64 = 1e-4;
/// PSI above this is a significant shift: the alert fires.
pub const PSI_ALERT: f64 = 0.2;
/// Fewest training subjects whose distribution is recorded.
pub const MIN_SUBJECTS: u64 = 10;
/// Prefix of the names of a distribution's shares as metrics ([`Distribution::to_metrics`]).
pub const METRIC_PREFIX: &str = "train_dist";

const DEVICE: &[&str] = &["mobile", "tablet", "desktop", "server", "none"];
const DAYPART: &[&str] = &["morning", "afternoon", "evening", "night"];
const REFERRER: &[&str] = &["direct", "search", "social", "internal", "other", "none"];
const ACTIVITY: &[&str] = &["0", "1", "2-3", "4-7", "8-15", "16-31", "32+"];
const SESSIONS: &[&str] = &["0", "1", "2-3", "4-7", "8+"];

/// The features and their bins, in the order they are reported.
pub const FEATURES: [(&str, &[&str]); 5] =
    [("device", DEVICE), ("daypart", DAYPART), ("referrer", REFERRER), ("activity", ACTIVITY), ("sessions", SESSIONS)];

/// Shares per bin of every feature, over a population of subjects.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// Subjects counted.
    pub subjects: u64,
    /// Per feature (of [`FEATURES`]), its bins' shares, summing to 1.
    pub shares: BTreeMap<&'static str, Vec<f64>>,
}

/// The log₂ bin of a count: 0 → 0, 1 → 1, 2–3 → 2, 4–7 → 3, …, capped at `last`.
fn log_bin(n: u64, last: usize) -> usize {
    if n == 0 {
        0
    } else {
        (1 + (63 - n.leading_zeros()) as usize).min(last)
    }
}

/// Adds a histogram's shares to `into` (its last bin, `none`, when the histogram is empty).
#[allow(clippy::cast_precision_loss)]
fn add_shares(into: &mut [f64], histogram: &[u16]) {
    let total: u64 = histogram.iter().map(|c| u64::from(*c)).sum();
    if total == 0 {
        if let Some(none) = into.get_mut(histogram.len()) {
            *none += 1.0;
        }
        return;
    }
    for (slot, c) in into.iter_mut().zip(histogram) {
        *slot += f64::from(*c) / total as f64;
    }
}

impl Distribution {
    /// The distribution over `views` (subjects without any event are left out); `None` when none
    /// is left.
    #[allow(clippy::cast_precision_loss)]
    pub fn of<'a>(views: impl IntoIterator<Item = &'a FeatureView>) -> Option<Self> {
        let mut sums: BTreeMap<&'static str, Vec<f64>> =
            FEATURES.iter().map(|(name, bins)| (*name, vec![0.0; bins.len()])).collect();
        let mut subjects = 0u64;
        for v in views.into_iter().filter(|v| v.last_event().is_some()) {
            subjects += 1;
            let none = DEVICE.len() - 1;
            let device =
                v.frequent_device().map_or(none, |d| DEVICE.iter().position(|b| *b == d.as_str()).unwrap_or(none));
            if let Some(s) = sums.get_mut("device").and_then(|s| s.get_mut(device)) {
                *s += 1.0;
            }
            if let Some(s) = sums.get_mut("daypart") {
                // Every event counts a daypart, so a subject with events always has one.
                add_shares(s, &v.dayparts()[..Daypart::ALL.len().min(DAYPART.len())]);
            }
            if let Some(s) = sums.get_mut("referrer") {
                add_shares(s, &v.referrers()[..ReferrerClass::ALL.len().min(REFERRER.len() - 1)]);
            }
            let activity = log_bin(u64::from(v.views()) + u64::from(v.clicks()), ACTIVITY.len() - 1);
            if let Some(s) = sums.get_mut("activity").and_then(|s| s.get_mut(activity)) {
                *s += 1.0;
            }
            let sessions = log_bin(u64::from(v.sessions().count), SESSIONS.len() - 1);
            if let Some(s) = sums.get_mut("sessions").and_then(|s| s.get_mut(sessions)) {
                *s += 1.0;
            }
        }
        if subjects == 0 {
            return None;
        }
        for shares in sums.values_mut() {
            shares.iter_mut().for_each(|s| *s /= subjects as f64);
        }
        Some(Self { subjects, shares: sums })
    }

    /// The distribution over every subject the projector holds.
    pub fn of_projector(p: &Projector) -> Option<Self> {
        Self::of(p.feature_views())
    }

    /// The distribution over some subjects (those the projector does not hold are left out).
    pub fn of_subjects(p: &Projector, subjects: &[Pseudonym]) -> Option<Self> {
        Self::of(subjects.iter().filter_map(|s| p.view(s)))
    }

    /// As manifest metrics: `train_dist.<feature>.<bin>` → share, and `train_dist.subjects`.
    #[allow(clippy::cast_precision_loss)]
    pub fn to_metrics(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::from([(format!("{METRIC_PREFIX}.subjects"), self.subjects as f64)]);
        for (feature, bins) in FEATURES {
            if let Some(shares) = self.shares.get(feature) {
                for (bin, share) in bins.iter().zip(shares) {
                    out.insert(format!("{METRIC_PREFIX}.{feature}.{bin}"), *share);
                }
            }
        }
        out
    }

    /// Reads a distribution back from manifest metrics; a feature with a missing or negative bin is
    /// left out, and `None` when no feature is complete (a model trained before drift was recorded).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn from_metrics(metrics: &BTreeMap<String, f64>) -> Option<Self> {
        let mut shares = BTreeMap::new();
        for (feature, bins) in FEATURES {
            let values: Option<Vec<f64>> = bins
                .iter()
                .map(|bin| metrics.get(&format!("{METRIC_PREFIX}.{feature}.{bin}")).copied())
                .map(|v| v.filter(|v| v.is_finite() && *v >= 0.0))
                .collect();
            if let Some(v) = values {
                shares.insert(feature, v);
            }
        }
        let subjects = metrics.get(&format!("{METRIC_PREFIX}.subjects")).map_or(0, |n| n.max(0.0) as u64);
        (!shares.is_empty()).then_some(Self { subjects, shares })
    }
}

/// The population stability index of `actual` against `expected`, bin by bin (both slices list the
/// same bins): `Σ (a − e) · ln(a / e)` with every share raised to at least [`PSI_EPSILON`].
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(e, a)| {
            let (e, a) = (e.max(PSI_EPSILON), a.max(PSI_EPSILON));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// PSI per feature, for the features both distributions have, in [`FEATURES`] order.
pub fn feature_psi(expected: &Distribution, actual: &Distribution) -> Vec<(&'static str, f64)> {
    FEATURES
        .iter()
        .filter_map(|(feature, _)| Some((*feature, psi(expected.shares.get(feature)?, actual.shares.get(feature)?))))
        .collect()
}

/// The training distribution of a run: over the training subjects in the attached views (brought
/// up to date first), or else in views replayed from the log. `None` when neither can be had, or
/// for fewer than [`MIN_SUBJECTS`] subjects; training does not fail for it.
pub(crate) fn training_distribution(personalizer: &Personalizer, subjects: &[Pseudonym]) -> Option<Distribution> {
    let dist = if let Some(views) = personalizer.views.get() {
        if let Err(e) = views.catch_up() {
            tracing::warn!(code = e.code(), "the feature views could not follow the log before training");
        }
        views.with(|p| Distribution::of_subjects(p, subjects))
    } else {
        let collect = &personalizer.privacy.collect;
        let replayed = ProjectorConfig::from_policies(&collect.policies)
            .and_then(|config| Projector::replay(collect.store.as_ref(), config));
        match replayed {
            Ok(p) => Distribution::of_subjects(&p, subjects),
            Err(e) => {
                tracing::warn!(code = e.code(), "no training distribution: the feature views cannot be built");
                None
            }
        }
    };
    dist.filter(|d| d.subjects >= MIN_SUBJECTS)
}

/// Prometheus lines: `lethe_feature_psi{feature=…}`, each serving feature's PSI against the live
/// recommender's training distribution, and `lethe_feature_psi_alert{feature=…}`, 1 above
/// [`PSI_ALERT`]. Empty when no live model recorded a training distribution or the views hold no
/// subject with events. Reads every view once (under the views' read lock).
pub fn drift_metrics(personalizer: &Personalizer, views: &Views) -> String {
    let Some(expected) = personalizer.live_training_distribution() else { return String::new() };
    let Some(actual) = views.with(Distribution::of_projector) else { return String::new() };
    let values = feature_psi(&expected, &actual);
    let mut out = String::from(
        "# HELP lethe_feature_psi Population stability index of a serving feature against the live model's training \
         distribution\n# TYPE lethe_feature_psi gauge\n",
    );
    for (feature, value) in &values {
        let _ = writeln!(out, "lethe_feature_psi{{feature=\"{feature}\"}} {value:.6}");
    }
    let _ = writeln!(out, "# HELP lethe_feature_psi_alert 1 when the feature's PSI is above {PSI_ALERT}");
    out.push_str("# TYPE lethe_feature_psi_alert gauge\n");
    for (feature, value) in &values {
        let _ = writeln!(out, "lethe_feature_psi_alert{{feature=\"{feature}\"}} {}", u8::from(*value > PSI_ALERT));
    }
    out
}

#[cfg(test)]
mod tests {
    use lethe_features::DeviceClass;

    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn psi_by_hand() {
        // e = [0.5, 0.5], a = [0.9, 0.1]:
        //   (0.9 − 0.5) · ln(0.9 / 0.5) = 0.4 · ln 1.8 = 0.4 · 0.5877867 = 0.2351147
        //   (0.1 − 0.5) · ln(0.1 / 0.5) = −0.4 · ln 0.2 = −0.4 · −1.6094379 = 0.6437752
        //   PSI = 0.8788898: significant.
        assert!(close(psi(&[0.5, 0.5], &[0.9, 0.1]), 0.878_889_9), "{}", psi(&[0.5, 0.5], &[0.9, 0.1]));
        // e = [0.25, 0.25, 0.5], a = [0.3, 0.2, 0.5]:
        //   0.05 · ln(1.2) + (−0.05) · ln(0.8) + 0 = 0.05 · 0.1823216 + 0.05 · 0.2231436 = 0.0202733: stable.
        assert!(close(psi(&[0.25, 0.25, 0.5], &[0.3, 0.2, 0.5]), 0.020_273_3));
        // An empty expected bin: e = [1, 0], a = [0.5, 0.5], with ε = 1e-4 for the empty share:
        //   (0.5 − 1) · ln(0.5) + (0.5 − 0.0001) · ln(0.5 / 0.0001)
        //   = 0.3465736 + 0.4999 · 8.5171932 = 0.3465736 + 4.2577449 = 4.6043185.
        assert!(close(psi(&[1.0, 0.0], &[0.5, 0.5]), 4.604_318_5), "{}", psi(&[1.0, 0.0], &[0.5, 0.5]));
        // PSI is symmetric: each term is the same with e and a swapped.
        assert!(close(psi(&[0.9, 0.1], &[0.5, 0.5]), psi(&[0.5, 0.5], &[0.9, 0.1])));
    }

    #[test]
    fn psi_is_zero_for_identical_distributions() {
        assert_eq!(psi(&[0.2, 0.3, 0.5], &[0.2, 0.3, 0.5]), 0.0);
        assert_eq!(psi(&[1.0, 0.0, 0.0], &[1.0, 0.0, 0.0]), 0.0);
        assert!(psi(&[0.2, 0.3, 0.5], &[0.21, 0.3, 0.49]) > 0.0);
    }

    #[test]
    fn log_bins() {
        let bins: Vec<usize> =
            [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 1_000_000].iter().map(|n| log_bin(*n, 6)).collect();
        assert_eq!(bins, [0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]);
        assert_eq!(log_bin(9, 4), 4);
    }

    #[test]
    fn distributions_round_trip_through_manifest_metrics() {
        let mut shares = BTreeMap::new();
        for (feature, bins) in FEATURES {
            shares.insert(feature, vec![1.0 / bins.len() as f64; bins.len()]);
        }
        let d = Distribution { subjects: 12, shares };
        let metrics = d.to_metrics();
        assert_eq!(metrics["train_dist.device.mobile"], 0.2);
        assert_eq!(metrics["train_dist.activity.32+"], 1.0 / 7.0);
        assert_eq!(Distribution::from_metrics(&metrics), Some(d.clone()));
        // A feature with a missing bin is left out; no complete feature, no distribution.
        let mut partial = metrics.clone();
        partial.remove("train_dist.device.none");
        let read = Distribution::from_metrics(&partial).unwrap();
        assert!(!read.shares.contains_key("device") && read.shares.contains_key("daypart"));
        assert_eq!(feature_psi(&read, &d).len(), FEATURES.len() - 1);
        let other: BTreeMap<String, f64> = [("ndcg_at_10".to_owned(), 0.3)].into();
        assert_eq!(Distribution::from_metrics(&other), None);
    }

    /// The bins are the classes the views count, in their histogram order, plus `none`.
    #[test]
    fn class_bins_follow_the_feature_views() {
        let names = |all: &[&'static str]| all.to_vec();
        assert_eq!(names(&DEVICE[..4]), DeviceClass::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>());
        assert_eq!(names(DAYPART), Daypart::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>());
        assert_eq!(names(&REFERRER[..5]), ReferrerClass::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_population_has_no_distribution() {
        assert_eq!(Distribution::of(std::iter::empty()), None);
        assert_eq!(Distribution::of([&FeatureView::default()]), None, "a view without events is left out");
    }
}
