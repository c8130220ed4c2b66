//! Promote or roll back a canary model version on its measured click-through rate against the live one.
//!
//! Both versions serve traffic side by side; each is an [`Arm`] with its impressions and clicks.
//! [`judge`] compares them with a one-sided two-proportion z-test and returns a [`Verdict`]; see [`judge`]
//! for the exact rule.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, BanditError, Result};

/// The thresholds of the canary decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CanaryRule {
    /// Impressions each version needs before any verdict other than [`Verdict::Wait`]; at least 1.
    pub min_impressions: u64,
    /// The relative CTR drop tolerated without significance, in `[0, 1)`: `0.05` means a canary whose
    /// CTR is below 95 % of live's is not promoted until the data say more.
    pub max_relative_drop: f64,
    /// The one-sided critical value of the z-test, finite and positive: `1.96` rolls back at 2.5 %
    /// significance, `1.645` at 5 %.
    pub z: f64,
}

impl Default for CanaryRule {
    /// 10 000 impressions each, a 5 % tolerated relative drop, `z = 1.96`.
    fn default() -> Self {
        Self { min_impressions: 10_000, max_relative_drop: 0.05, z: 1.96 }
    }
}

/// One version's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Arm {
    /// Times the version's choice was shown.
    pub impressions: u64,
    /// Clicks on it; at most `impressions`.
    pub clicks: u64,
}

impl Arm {
    /// The click-through rate `clicks / impressions`, or `None` without impressions.
    #[must_use]
    pub fn ctr(&self) -> Option<f64> {
        (self.impressions > 0).then(|| self.clicks as f64 / self.impressions as f64)
    }
}

/// The measurements behind a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CanaryStats {
    /// The live version's CTR.
    pub live_ctr: f64,
    /// The canary's CTR.
    pub canary_ctr: f64,
    /// `(canary_ctr − live_ctr) / live_ctr`, or `None` when live has no clicks.
    pub relative_change: Option<f64>,
    /// The pooled two-proportion z statistic of `canary_ctr − live_ctr` (negative: canary worse); 0 when
    /// the pooled CTR is 0 or 1, where the two CTRs are equal.
    pub z: f64,
}

/// Why [`judge`] asks to keep collecting data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// At least one version has fewer than [`CanaryRule::min_impressions`].
    NotEnoughImpressions,
    /// The canary's CTR is more than [`CanaryRule::max_relative_drop`] below live's, but not yet
    /// significantly.
    InconclusiveDrop,
}

/// The decision on a canary, serialized with a snake_case `verdict` tag:
/// `{"verdict":"rollback","stats":{"live_ctr":0.05,"canary_ctr":0.04,"relative_change":-0.2,"z":-3.41}}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Keep both versions serving.
    Wait {
        /// Why.
        reason: WaitReason,
        /// The measurements so far; `None` while a version has no impressions.
        stats: Option<CanaryStats>,
    },
    /// The canary is not worse: make it the live version.
    Promote {
        /// The measurements.
        stats: CanaryStats,
    },
    /// The canary is significantly worse: stop serving it.
    Rollback {
        /// The measurements.
        stats: CanaryStats,
    },
}

/// Judges a canary against the live version.
///
/// With `p_L`, `p_C` the live and canary CTRs over `n_L`, `n_C` impressions, the pooled CTR
/// `p = (clicks_L + clicks_C) / (n_L + n_C)` and
/// `z_stat = (p_C − p_L) / √(p (1 − p) (1/n_L + 1/n_C))` (0 when `p` is 0 or 1), the rule is, in order:
///
/// 1. **Wait** ([`WaitReason::NotEnoughImpressions`]) while `n_L` or `n_C` is below `min_impressions`.
/// 2. **Rollback** when `z_stat ≤ −z`: the canary's CTR is significantly below live's (one-sided test).
///    This covers every drop, including one below `live × (1 − max_relative_drop)`, that is significant.
/// 3. **Wait** ([`WaitReason::InconclusiveDrop`]) when `p_C < (1 − max_relative_drop)·p_L`: the measured
///    drop is larger than tolerated but not significant, so neither promoting nor rolling back is
///    justified. More traffic either makes the drop significant (rollback) or moves `p_C` back up.
/// 4. **Promote** otherwise.
///
/// ```
/// use lethe_bandit::{judge, Arm, CanaryRule, Verdict};
///
/// let rule = CanaryRule { min_impressions: 10_000, max_relative_drop: 0.05, z: 1.96 };
/// let live = Arm { impressions: 10_000, clicks: 500 };
/// let verdict = judge(&rule, live, Arm { impressions: 10_000, clicks: 400 })?;
/// assert!(matches!(verdict, Verdict::Rollback { .. }));
/// # Ok::<(), lethe_bandit::BanditError>(())
/// ```
///
/// # Errors
/// [`BanditError::ClicksExceedImpressions`], [`BanditError::InvalidParameter`] for a rule with
/// `min_impressions = 0`, `max_relative_drop` outside `[0, 1)` or `z` not finite and positive.
pub fn judge(rule: &CanaryRule, live: Arm, canary: Arm) -> Result<Verdict> {
    check(rule)?;
    for (arm, name) in [(live, "live"), (canary, "canary")] {
        if arm.clicks > arm.impressions {
            return Err(BanditError::ClicksExceedImpressions { arm: name });
        }
    }
    let stats = stats(live, canary);
    if live.impressions < rule.min_impressions || canary.impressions < rule.min_impressions {
        return Ok(Verdict::Wait { reason: WaitReason::NotEnoughImpressions, stats });
    }
    // min_impressions ≥ 1, so both arms have impressions and the stats exist.
    let Some(stats) = stats else {
        return Ok(Verdict::Wait { reason: WaitReason::NotEnoughImpressions, stats });
    };
    if stats.z <= -rule.z {
        Ok(Verdict::Rollback { stats })
    } else if stats.canary_ctr < (1.0 - rule.max_relative_drop) * stats.live_ctr {
        Ok(Verdict::Wait { reason: WaitReason::InconclusiveDrop, stats: Some(stats) })
    } else {
        Ok(Verdict::Promote { stats })
    }
}

fn check(rule: &CanaryRule) -> Result<()> {
    if rule.min_impressions == 0 {
        return Err(invalid("min_impressions", "must be at least 1"));
    }
    if !(0.0..1.0).contains(&rule.max_relative_drop) {
        return Err(invalid("max_relative_drop", "must be in [0, 1)"));
    }
    if !(rule.z.is_finite() && rule.z > 0.0) {
        return Err(invalid("z", "must be a finite number greater than zero"));
    }
    Ok(())
}

/// The CTRs and pooled z statistic, when both arms have impressions.
fn stats(live: Arm, canary: Arm) -> Option<CanaryStats> {
    let (live_ctr, canary_ctr) = (live.ctr()?, canary.ctr()?);
    let (n_live, n_canary) = (live.impressions as f64, canary.impressions as f64);
    let pooled = (live.clicks as f64 + canary.clicks as f64) / (n_live + n_canary);
    let variance = pooled * (1.0 - pooled) * (1.0 / n_live + 1.0 / n_canary);
    let z = if variance > 0.0 { (canary_ctr - live_ctr) / variance.sqrt() } else { 0.0 };
    let relative_change = (live_ctr > 0.0).then(|| (canary_ctr - live_ctr) / live_ctr);
    Some(CanaryStats { live_ctr, canary_ctr, relative_change, z })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: CanaryRule = CanaryRule { min_impressions: 10_000, max_relative_drop: 0.05, z: 1.96 };
    const LIVE: Arm = Arm { impressions: 10_000, clicks: 500 };

    fn canary(clicks: u64) -> Arm {
        Arm { impressions: 10_000, clicks }
    }

    fn stats_of(verdict: &Verdict) -> CanaryStats {
        match verdict {
            Verdict::Promote { stats } | Verdict::Rollback { stats } | Verdict::Wait { stats: Some(stats), .. } => {
                *stats
            }
            Verdict::Wait { stats: None, .. } => panic!("no stats in {verdict:?}"),
        }
    }

    #[test]
    fn waits_for_enough_impressions() {
        let verdict = judge(&RULE, LIVE, Arm { impressions: 9_999, clicks: 100 }).unwrap();
        assert!(matches!(verdict, Verdict::Wait { reason: WaitReason::NotEnoughImpressions, stats: Some(_) }));
        // Even a catastrophic canary waits: the minimum guards against early noise.
        let verdict = judge(&RULE, Arm { impressions: 500, clicks: 50 }, Arm { impressions: 500, clicks: 0 }).unwrap();
        assert!(matches!(verdict, Verdict::Wait { reason: WaitReason::NotEnoughImpressions, .. }));
        let verdict = judge(&RULE, LIVE, Arm::default()).unwrap();
        assert_eq!(verdict, Verdict::Wait { reason: WaitReason::NotEnoughImpressions, stats: None });
    }

    #[test]
    fn rolls_back_a_significant_drop() {
        // Live 500/10 000 = 5 %, canary 400/10 000 = 4 %. Pooled p = 900/20 000 = 0.045,
        // SE = √(0.045 · 0.955 · (2/10 000)) = √8.595e-6 = 0.0029317230, z = −0.01 / 0.0029317230 = −3.41096
        // ≤ −1.96 → rollback.
        let verdict = judge(&RULE, LIVE, canary(400)).unwrap();
        assert!(matches!(verdict, Verdict::Rollback { .. }), "{verdict:?}");
        let stats = stats_of(&verdict);
        assert!((stats.z - (-3.410_963_400_644_34)).abs() < 1e-9, "{stats:?}");
        assert!((stats.live_ctr - 0.05).abs() < 1e-15 && (stats.canary_ctr - 0.04).abs() < 1e-15);
        assert!((stats.relative_change.unwrap_or(0.0) - (-0.2)).abs() < 1e-12);
    }

    #[test]
    fn promotes_an_equal_or_better_canary() {
        // Canary 510/10 000 = 5.1 %. Pooled p = 1 010/20 000 = 0.0505,
        // SE = √(0.0505 · 0.9495 · 0.0002) = 0.0030967644, z = 0.001 / 0.0030967644 = 0.322918 → promote.
        let verdict = judge(&RULE, LIVE, canary(510)).unwrap();
        assert!(matches!(verdict, Verdict::Promote { .. }), "{verdict:?}");
        assert!((stats_of(&verdict).z - 0.322_917_683_669_76).abs() < 1e-9);
        // Canary 480 = 4.8 %: a 4 % drop is tolerated (z = −0.002 / 0.0030528347 = −0.655129) → promote.
        let verdict = judge(&RULE, LIVE, canary(480)).unwrap();
        assert!(matches!(verdict, Verdict::Promote { .. }), "{verdict:?}");
        assert!((stats_of(&verdict).z - (-0.655_128_811_397_22)).abs() < 1e-9);
    }

    #[test]
    fn waits_on_a_large_but_insignificant_drop() {
        // Canary 470 = 4.7 %, a 6 % drop (> 5 %). Pooled p = 970/20 000 = 0.0485,
        // SE = √(0.0485 · 0.9515 · 0.0002) = 0.0030380174, z = −0.003 / 0.0030380174 = −0.987486 > −1.96.
        let verdict = judge(&RULE, LIVE, canary(470)).unwrap();
        assert!(matches!(verdict, Verdict::Wait { reason: WaitReason::InconclusiveDrop, .. }), "{verdict:?}");
        assert!((stats_of(&verdict).z - (-0.987_486_100_288_05)).abs() < 1e-9);
        // Four times the traffic at the same rates: z doubles to −1.97 → rollback.
        let big = |clicks| Arm { impressions: 40_000, clicks };
        assert!(matches!(judge(&RULE, big(2_000), big(1_880)).unwrap(), Verdict::Rollback { .. }));
    }

    #[test]
    fn degenerate_rates_do_not_divide_by_zero() {
        let none = Arm { impressions: 10_000, clicks: 0 };
        let verdict = judge(&RULE, none, none).unwrap();
        assert!(matches!(verdict, Verdict::Promote { stats } if stats.z == 0.0 && stats.relative_change.is_none()));
        let all = Arm { impressions: 10_000, clicks: 10_000 };
        assert!(matches!(judge(&RULE, all, all).unwrap(), Verdict::Promote { .. }));
    }

    #[test]
    fn verdicts_serialize_with_a_snake_case_tag() {
        let json = serde_json::to_value(judge(&RULE, LIVE, canary(400)).unwrap()).unwrap();
        assert_eq!(json["verdict"], "rollback");
        assert_eq!(json["stats"]["live_ctr"], 0.05);
        let json = serde_json::to_value(judge(&RULE, LIVE, canary(470)).unwrap()).unwrap();
        assert_eq!(json["verdict"], "wait");
        assert_eq!(json["reason"], "inconclusive_drop");
        let verdict = judge(&RULE, LIVE, canary(510)).unwrap();
        let text = serde_json::to_string(&verdict).unwrap();
        assert!(text.starts_with(r#"{"verdict":"promote","#), "{text}");
        assert_eq!(serde_json::from_str::<Verdict>(&text).unwrap(), verdict);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let err = judge(&RULE, Arm { impressions: 10, clicks: 11 }, LIVE).unwrap_err();
        assert_eq!(
            (err.code(), err.to_string().as_str()),
            ("clicks_exceed_impressions", "live arm has more clicks than impressions")
        );
        assert_eq!(
            judge(&RULE, LIVE, Arm { impressions: 0, clicks: 1 }).unwrap_err().code(),
            "clicks_exceed_impressions"
        );
        for rule in [
            CanaryRule { min_impressions: 0, ..RULE },
            CanaryRule { max_relative_drop: 1.0, ..RULE },
            CanaryRule { max_relative_drop: -0.1, ..RULE },
            CanaryRule { z: 0.0, ..RULE },
            CanaryRule { z: f64::NAN, ..RULE },
        ] {
            assert_eq!(judge(&rule, LIVE, LIVE).unwrap_err().code(), "invalid_parameter");
        }
        assert_eq!(CanaryRule::default(), RULE);
    }
}
