//! The engagement features of one (subject, context, candidate): what the decision policy's linear
//! model scores. Computed from the subject's feature view (pseudonymized, consented only), the
//! request's coarse context and the candidate's category; nothing else about the subject.

use lethe_domain::UtcMicros;
use lethe_features::{CategoryId, CategoryStat, Daypart, DeviceClass, FeatureView};

/// Dimension of the feature vector.
pub const D: usize = 10;

/// Names of the features, in vector order (manifests and receipts list them).
pub const NAMES: [&str; D] = [
    "bias",
    "category_affinity",
    "category_click_affinity",
    "category_engaged",
    "activity",
    "device_mobile",
    "device_desktop",
    "daypart_daytime",
    "daypart_evening",
    "is_default",
];

/// The prior of the linear model before any outcome: a visitor's engagement with a candidate's
/// category predicts a click; the default variant keeps a small edge for everyone else. This is
/// what makes "likes outdoor gear → the outdoor-gear banner" hold from the first decision.
pub const PRIOR: [f64; D] = [0.02, 0.30, 0.20, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03];

/// The request's coarse context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub device: Option<DeviceClass>,
    pub daypart: Daypart,
}

impl Context {
    /// The context of a request made at `now` from `device` (`desktop`, `mobile`, `tablet`).
    pub fn new(device: Option<&str>, now: UtcMicros) -> Self {
        Self { device: device.and_then(DeviceClass::parse), daypart: Daypart::of(now) }
    }
}

/// What the features need of a subject's view, computed once per decision.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    categories: Vec<CategoryStat>,
    total: f64,
    clicks: f64,
    known: bool,
}

impl Profile {
    /// The profile of a view (`None`: nothing known).
    pub fn of(view: Option<&FeatureView>) -> Self {
        view.map_or_else(Self::default, |v| Self {
            categories: v.top_categories(),
            total: f64::from(v.views()) + f64::from(v.clicks()),
            clicks: f64::from(v.clicks()),
            known: true,
        })
    }

    /// A profile of a subject's top categories and engagement totals, as a view would give them.
    #[cfg(test)]
    pub(crate) fn from_stats(categories: Vec<CategoryStat>, total: f64, clicks: f64) -> Self {
        Self { categories, total, clicks, known: true }
    }

    /// Whether the subject has engaged with anything yet.
    pub fn is_cold(&self) -> bool {
        self.total == 0.0
    }
}

/// The features of one candidate. `category` is the candidate's category id in the views'
/// vocabulary (`None` when it has none or no subject ever touched it).
pub fn vector(view: Option<&FeatureView>, ctx: &Context, category: Option<CategoryId>, is_default: bool) -> [f64; D] {
    vector_of(&Profile::of(view), ctx, category, is_default)
}

/// [`vector`] from a profile computed once for all candidates.
pub fn vector_of(p: &Profile, ctx: &Context, category: Option<CategoryId>, is_default: bool) -> [f64; D] {
    let mut x = [0.0; D];
    x[0] = 1.0;
    if p.known {
        if let Some(c) = category {
            if let Some(s) = p.categories.iter().find(|s| s.category == c) {
                let engaged = f64::from(s.views) + f64::from(s.clicks);
                x[1] = engaged / (p.total + 1.0);
                x[2] = f64::from(s.clicks) / (p.clicks + 1.0);
                x[3] = 1.0;
            }
        }
        x[4] = (p.total.ln_1p() / 10.0).min(1.0);
    }
    x[5] = f64::from(u8::from(ctx.device == Some(DeviceClass::Mobile)));
    x[6] = f64::from(u8::from(ctx.device == Some(DeviceClass::Desktop)));
    x[7] = f64::from(u8::from(matches!(ctx.daypart, Daypart::Morning | Daypart::Afternoon)));
    x[8] = f64::from(u8::from(ctx.daypart == Daypart::Evening));
    x[9] = f64::from(u8::from(is_default));
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_view_only_context_and_the_default_flag_are_set() {
        let ctx = Context::new(Some("mobile"), UtcMicros(20 * 3_600_000_000));
        let x = vector(None, &ctx, None, true);
        assert_eq!(x, [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        let ctx = Context::new(Some("fridge"), UtcMicros(9 * 3_600_000_000));
        assert_eq!(vector(None, &ctx, None, false), [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn the_prior_prefers_engaged_categories_over_the_default() {
        // A subject whose every view was in the candidate's category: affinity → ~1.
        let mut engaged = [0.0; D];
        engaged[0] = 1.0;
        engaged[1] = 0.9;
        engaged[3] = 1.0;
        let mut default = [0.0; D];
        default[0] = 1.0;
        default[9] = 1.0;
        let dot = |x: &[f64; D]| x.iter().zip(PRIOR).map(|(a, b)| a * b).sum::<f64>();
        assert!(dot(&engaged) > dot(&default));
        // Without engagement the default wins.
        let mut other = [0.0; D];
        other[0] = 1.0;
        assert!(dot(&default) > dot(&other));
    }
}
