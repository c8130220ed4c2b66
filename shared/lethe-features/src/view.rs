//! One subject's serving features: a fixed-size [`FeatureView`] (no heap), built only from events
//! its subject consented to for personalization.
//!
//! Choices, so that a decision service knows what it reads:
//! - **Counts are plain, not decayed**, and saturate at their type's maximum. A decayed count would
//!   need a clock, and views must be pure functions of the log (invariant 6); recency is served
//!   apart ([`FeatureView::last_event`]) and a caller can weigh it.
//! - **Top categories**: the [`TOP_K`] categories with the most views plus clicks. A category outside
//!   the top K replaces the least engaged one (ties: the least recently touched) and starts from
//!   zero, so each count is exact since the category last entered the top K.
//! - **Context histograms** (device, daypart, referrer) are `u16` counts; when one bucket would
//!   overflow, every bucket is halved, which keeps the proportions.
//! - **Recent items** (purchased, liked, disliked) and **segments** keep the last [`RECENT_LEN`]
//!   distinct ids, most recent first; liking an item removes it from the disliked list and the
//!   reverse.
//! - **Ratings** are normalized to hundredths of the rating scale (`rating / scale`, 0 to 100), so
//!   five-star and ten-point scales mix.

use lethe_domain::UtcMicros;
use serde::{Deserialize, Serialize};

use crate::vocab::{CategoryId, ItemId, LocationId, SegmentId};

/// How many categories a view keeps.
pub const TOP_K: usize = 8;
/// How many recent ids each list keeps.
pub const RECENT_LEN: usize = 4;
/// `last_event` before any event.
const NO_TIME: i64 = i64::MIN;

macro_rules! class_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(
                #[doc = concat!("`", $text, "`")]
                $variant,
            )+
        }

        impl $name {
            /// Every class, in histogram order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The class as the collector writes it.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// Parses the collector's text.
            #[must_use]
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }

            pub(crate) fn index(self) -> usize {
                self as usize
            }

            #[allow(dead_code)]
            pub(crate) fn from_index(i: usize) -> Option<Self> {
                Self::ALL.get(i).copied()
            }
        }
    };
}

class_enum!(
    /// The collector's coarse device class.
    DeviceClass { Mobile = "mobile", Tablet = "tablet", Desktop = "desktop", Server = "server" }
);
class_enum!(
    /// Part of the day of an event.
    Daypart { Morning = "morning", Afternoon = "afternoon", Evening = "evening", Night = "night" }
);
class_enum!(
    /// Where a visit came from.
    ReferrerClass { Direct = "direct", Search = "search", Social = "social", Internal = "internal", Other = "other" }
);

impl Daypart {
    /// The daypart of an instant, in UTC (the collector's rule, for events whose payload has none).
    #[must_use]
    pub fn of(time: UtcMicros) -> Self {
        match time.0.div_euclid(3_600_000_000).rem_euclid(24) {
            5..=11 => Self::Morning,
            12..=17 => Self::Afternoon,
            18..=22 => Self::Evening,
            _ => Self::Night,
        }
    }
}

/// One category's engagement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CategorySlot {
    category: u16,
    views: u32,
    clicks: u32,
}

impl CategorySlot {
    fn weight(self) -> u64 {
        u64::from(self.views) + u64::from(self.clicks)
    }
}

/// One category's engagement, as served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CategoryStat {
    pub category: CategoryId,
    pub views: u32,
    pub clicks: u32,
}

/// The top categories, most recently touched first, as three arrays (80 bytes, no padding).
/// Category id 0 marks an empty slot; live slots come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct TopCategories {
    ids: [u16; TOP_K],
    views: [u32; TOP_K],
    clicks: [u32; TOP_K],
}

impl TopCategories {
    fn len(&self) -> usize {
        self.ids.iter().position(|c| *c == 0).unwrap_or(TOP_K)
    }

    fn slot(&self, i: usize) -> CategorySlot {
        CategorySlot { category: self.ids[i], views: self.views[i], clicks: self.clicks[i] }
    }

    fn live(&self) -> impl Iterator<Item = CategorySlot> + '_ {
        (0..self.len()).map(|i| self.slot(i))
    }

    /// Counts a view or a click of a category (id 0 is ignored).
    pub(crate) fn record(&mut self, category: u16, view: bool) {
        if category == 0 {
            return;
        }
        let n = self.len();
        let at = match self.ids[..n].iter().position(|c| *c == category) {
            Some(i) => i,
            None => {
                let at = if n < TOP_K {
                    n
                } else {
                    // Least engaged; among equals the rearmost, i.e. the least recently touched.
                    let mut evict = 0;
                    for i in 0..n {
                        if self.slot(i).weight() <= self.slot(evict).weight() {
                            evict = i;
                        }
                    }
                    evict
                };
                self.ids[at] = category;
                self.views[at] = 0;
                self.clicks[at] = 0;
                at
            }
        };
        if view {
            self.views[at] = self.views[at].saturating_add(1);
        } else {
            self.clicks[at] = self.clicks[at].saturating_add(1);
        }
        self.ids[..=at].rotate_right(1);
        self.views[..=at].rotate_right(1);
        self.clicks[..=at].rotate_right(1);
    }

    pub(crate) fn ids(&self) -> &[u16] {
        &self.ids[..self.len()]
    }

    pub(crate) fn remap(&mut self, f: &mut dyn FnMut(u16) -> Option<u16>) -> Option<()> {
        let n = self.len();
        for c in &mut self.ids[..n] {
            *c = f(*c)?;
        }
        Some(())
    }
}

/// The last [`RECENT_LEN`] distinct ids, most recent first. Id 0 marks an empty place (interned
/// ids start at 1); live ids come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Recent<T> {
    items: [T; RECENT_LEN],
}

impl<T: Copy + PartialEq + Default> Recent<T> {
    fn len(&self) -> usize {
        self.items.iter().position(|x| *x == T::default()).unwrap_or(RECENT_LEN)
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        &self.items[..self.len()]
    }

    pub(crate) fn push(&mut self, id: T) {
        if id == T::default() {
            return;
        }
        self.remove(id);
        self.items.copy_within(..RECENT_LEN - 1, 1);
        self.items[0] = id;
    }

    pub(crate) fn remove(&mut self, id: T) {
        let n = self.len();
        if let Some(i) = self.items[..n].iter().position(|x| *x == id) {
            self.items.copy_within(i + 1..n, i);
            self.items[n - 1] = T::default();
        }
    }

    pub(crate) fn remap(&mut self, f: &mut dyn FnMut(T) -> Option<T>) -> Option<()> {
        let n = self.len();
        for x in &mut self.items[..n] {
            *x = f(*x)?;
        }
        Some(())
    }
}

fn bump(histogram: &mut [u16], i: usize) {
    let Some(&current) = histogram.get(i) else { return };
    if current == u16::MAX {
        for h in histogram.iter_mut() {
            *h /= 2;
        }
    }
    histogram[i] += 1;
}

fn most_frequent(histogram: &[u16]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, c) in histogram.iter().enumerate() {
        if *c > 0 && best.is_none_or(|b| *c > histogram[b]) {
            best = Some(i);
        }
    }
    best
}

/// Time on page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dwell {
    pub events: u32,
    pub total_seconds: u32,
    /// Mean seconds per `time.spent` event; 0 without events.
    pub mean_seconds: f64,
}

/// Scroll depth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScrollDepth {
    pub events: u32,
    /// Mean percent; 0 without events.
    pub mean_percent: f64,
    pub max_percent: u8,
}

/// Sessions, from `session.ended`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sessions {
    pub count: u32,
    /// Mean length in seconds; 0 without sessions.
    pub mean_seconds: f64,
    /// Mean pages per session; 0 without sessions.
    pub mean_pages: f64,
}

/// Purchases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purchases {
    /// Orders.
    pub count: u32,
    /// Sum of order values in hundredths of the site's currency unit, as sent (no conversion).
    pub value_cents: u64,
}

/// Explicit ratings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratings {
    pub count: u32,
    /// Mean rating as a fraction of its scale, 0.0 to 1.0; 0 without ratings.
    pub mean: f64,
    /// Reviews written (with or without a rating).
    pub reviews: u32,
}

/// A subject's serving features: fixed-size, no heap. Ids resolve through the projector's
/// [`crate::ItemCatalog`] ([`crate::ItemCatalog::category_name`], [`crate::ItemCatalog::item_key`])
/// and [`crate::Projector::location_name`], [`crate::Projector::segment_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureView {
    pub(crate) categories: TopCategories,
    pub(crate) views: u32,
    pub(crate) clicks: u32,
    /// Microseconds; [`NO_TIME`] before the first event.
    pub(crate) last_event: i64,
    pub(crate) dwell_events: u32,
    pub(crate) dwell_seconds: u32,
    pub(crate) scroll_events: u32,
    pub(crate) scroll_sum: u32,
    pub(crate) scroll_max: u8,
    pub(crate) sessions: u32,
    pub(crate) session_seconds: u32,
    pub(crate) session_pages: u32,
    pub(crate) devices: [u16; 4],
    /// Index + 1 into [`DeviceClass::ALL`]; 0: none.
    pub(crate) last_device: u8,
    pub(crate) dayparts: [u16; 4],
    pub(crate) referrers: [u16; 5],
    pub(crate) last_referrer: u8,
    /// Interned location; 0: none.
    pub(crate) location: u16,
    pub(crate) purchases: u32,
    pub(crate) purchase_cents: u64,
    pub(crate) purchased: Recent<u32>,
    pub(crate) liked: Recent<u32>,
    pub(crate) disliked: Recent<u32>,
    pub(crate) likes: u32,
    pub(crate) dislikes: u32,
    pub(crate) ratings: u32,
    /// Sum of ratings in hundredths of their scale.
    pub(crate) rating_sum: u32,
    pub(crate) reviews: u32,
    pub(crate) surveys: u32,
    pub(crate) decisions: u32,
    pub(crate) outcomes: u32,
    pub(crate) segments: Recent<u16>,
}

impl Default for FeatureView {
    fn default() -> Self {
        Self {
            categories: TopCategories::default(),
            views: 0,
            clicks: 0,
            last_event: NO_TIME,
            dwell_events: 0,
            dwell_seconds: 0,
            scroll_events: 0,
            scroll_sum: 0,
            scroll_max: 0,
            sessions: 0,
            session_seconds: 0,
            session_pages: 0,
            devices: [0; 4],
            last_device: 0,
            dayparts: [0; 4],
            referrers: [0; 5],
            last_referrer: 0,
            location: 0,
            purchases: 0,
            purchase_cents: 0,
            purchased: Recent::default(),
            liked: Recent::default(),
            disliked: Recent::default(),
            likes: 0,
            dislikes: 0,
            ratings: 0,
            rating_sum: 0,
            reviews: 0,
            surveys: 0,
            decisions: 0,
            outcomes: 0,
            segments: Recent::default(),
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn mean(sum: u64, n: u32) -> f64 {
    if n == 0 {
        0.0
    } else {
        sum as f64 / f64::from(n)
    }
}

impl FeatureView {
    /// The top categories by views plus clicks, most engaged first (ties: most recently touched).
    #[must_use]
    pub fn top_categories(&self) -> Vec<CategoryStat> {
        let mut v: Vec<(usize, CategorySlot)> = self.categories.live().enumerate().collect();
        v.sort_by(|(ra, a), (rb, b)| b.weight().cmp(&a.weight()).then(ra.cmp(rb)));
        v.into_iter()
            .map(|(_, s)| CategoryStat { category: CategoryId(s.category), views: s.views, clicks: s.clicks })
            .collect()
    }

    /// Page and product views, all categories included.
    #[must_use]
    pub const fn views(&self) -> u32 {
        self.views
    }

    /// Clicks, all categories included.
    #[must_use]
    pub const fn clicks(&self) -> u32 {
        self.clicks
    }

    /// The time of the latest event that fed the view.
    #[must_use]
    pub fn last_event(&self) -> Option<UtcMicros> {
        (self.last_event != NO_TIME).then_some(UtcMicros(self.last_event))
    }

    /// Time on page.
    #[must_use]
    pub fn dwell(&self) -> Dwell {
        Dwell {
            events: self.dwell_events,
            total_seconds: self.dwell_seconds,
            mean_seconds: mean(u64::from(self.dwell_seconds), self.dwell_events),
        }
    }

    /// Scroll depth.
    #[must_use]
    pub fn scroll(&self) -> ScrollDepth {
        ScrollDepth {
            events: self.scroll_events,
            mean_percent: mean(u64::from(self.scroll_sum), self.scroll_events),
            max_percent: self.scroll_max,
        }
    }

    /// Sessions.
    #[must_use]
    pub fn sessions(&self) -> Sessions {
        Sessions {
            count: self.sessions,
            mean_seconds: mean(u64::from(self.session_seconds), self.sessions),
            mean_pages: mean(u64::from(self.session_pages), self.sessions),
        }
    }

    /// The device class of the latest event that carried one.
    #[must_use]
    pub fn last_device(&self) -> Option<DeviceClass> {
        DeviceClass::from_index(usize::from(self.last_device).checked_sub(1)?)
    }

    /// The most frequent device class (ties: the first in [`DeviceClass::ALL`]).
    #[must_use]
    pub fn frequent_device(&self) -> Option<DeviceClass> {
        DeviceClass::from_index(most_frequent(&self.devices)?)
    }

    /// Events per daypart, in [`Daypart::ALL`] order.
    #[must_use]
    pub const fn dayparts(&self) -> [u16; 4] {
        self.dayparts
    }

    /// The referrer class of the latest event that carried one.
    #[must_use]
    pub fn last_referrer(&self) -> Option<ReferrerClass> {
        ReferrerClass::from_index(usize::from(self.last_referrer).checked_sub(1)?)
    }

    /// Events per referrer class, in [`ReferrerClass::ALL`] order.
    #[must_use]
    pub const fn referrers(&self) -> [u16; 5] {
        self.referrers
    }

    /// The latest coarse location.
    #[must_use]
    pub fn location(&self) -> Option<LocationId> {
        (self.location != 0).then_some(LocationId(self.location))
    }

    /// Purchases.
    #[must_use]
    pub const fn purchases(&self) -> Purchases {
        Purchases { count: self.purchases, value_cents: self.purchase_cents }
    }

    /// The last distinct items purchased, most recent first.
    pub fn recent_purchases(&self) -> impl Iterator<Item = ItemId> + '_ {
        self.purchased.as_slice().iter().map(|i| ItemId(*i))
    }

    /// The last distinct items liked, most recent first.
    pub fn recently_liked(&self) -> impl Iterator<Item = ItemId> + '_ {
        self.liked.as_slice().iter().map(|i| ItemId(*i))
    }

    /// The last distinct items disliked, most recent first.
    pub fn recently_disliked(&self) -> impl Iterator<Item = ItemId> + '_ {
        self.disliked.as_slice().iter().map(|i| ItemId(*i))
    }

    /// Likes and dislikes given.
    #[must_use]
    pub const fn likes(&self) -> (u32, u32) {
        (self.likes, self.dislikes)
    }

    /// Explicit ratings and reviews.
    #[must_use]
    pub fn ratings(&self) -> Ratings {
        Ratings {
            count: self.ratings,
            mean: mean(u64::from(self.rating_sum), self.ratings) / 100.0,
            reviews: self.reviews,
        }
    }

    /// Survey answers given.
    #[must_use]
    pub const fn surveys(&self) -> u32 {
        self.surveys
    }

    /// Decisions served to the subject and outcomes recorded.
    #[must_use]
    pub const fn decisions(&self) -> (u32, u32) {
        (self.decisions, self.outcomes)
    }

    /// The last distinct segments the subject was placed in, most recent first.
    pub fn segments(&self) -> impl Iterator<Item = SegmentId> + '_ {
        self.segments.as_slice().iter().map(|s| SegmentId(*s))
    }

    pub(crate) fn touch_context(
        &mut self,
        time: i64,
        device: Option<DeviceClass>,
        daypart: Daypart,
        referrer: Option<ReferrerClass>,
    ) {
        self.last_event = self.last_event.max(time);
        if let Some(d) = device {
            bump(&mut self.devices, d.index());
            self.last_device = u8::try_from(d.index() + 1).unwrap_or(0);
        }
        bump(&mut self.dayparts, daypart.index());
        if let Some(r) = referrer {
            bump(&mut self.referrers, r.index());
            self.last_referrer = u8::try_from(r.index() + 1).unwrap_or(0);
        }
    }

    /// Every interned id the view refers to, by table.
    pub(crate) fn mark(
        &self,
        categories: &mut [bool],
        items: &mut [bool],
        locations: &mut [bool],
        segments: &mut [bool],
    ) {
        let set = |marks: &mut [bool], id: usize| {
            if let Some(m) = marks.get_mut(id) {
                *m = true;
            }
        };
        for c in self.categories.ids() {
            set(categories, usize::from(*c));
        }
        for list in [&self.purchased, &self.liked, &self.disliked] {
            for i in list.as_slice() {
                set(items, *i as usize);
            }
        }
        if self.location != 0 {
            set(locations, usize::from(self.location));
        }
        for s in self.segments.as_slice() {
            set(segments, usize::from(*s));
        }
    }

    /// Rewrites every interned id; `None` if a map refuses one (an id out of range).
    pub(crate) fn remap(&mut self, maps: &mut IdMaps<'_>) -> Option<()> {
        self.categories.remap(&mut |c| maps.category(c))?;
        for list in [&mut self.purchased, &mut self.liked, &mut self.disliked] {
            list.remap(&mut |i| maps.item(i))?;
        }
        if self.location != 0 {
            self.location = maps.location(self.location)?;
        }
        self.segments.remap(&mut |s| maps.segment(s))
    }
}

/// Id maps for [`FeatureView::remap`]: entry `id` gives the new id; 0 or out of range refuses.
#[derive(Debug)]
pub(crate) struct IdMaps<'a> {
    pub(crate) categories: &'a [u32],
    pub(crate) items: &'a [u32],
    pub(crate) locations: &'a [u32],
    pub(crate) segments: &'a [u32],
}

fn map_id(map: &[u32], id: usize) -> Option<u32> {
    map.get(id).copied().filter(|n| *n != 0)
}

impl IdMaps<'_> {
    pub(crate) fn category(&self, id: u16) -> Option<u16> {
        u16::try_from(map_id(self.categories, usize::from(id))?).ok()
    }
    pub(crate) fn item(&self, id: u32) -> Option<u32> {
        map_id(self.items, usize::try_from(id).ok()?)
    }
    pub(crate) fn location(&self, id: u16) -> Option<u16> {
        u16::try_from(map_id(self.locations, usize::from(id))?).ok()
    }
    pub(crate) fn segment(&self, id: u16) -> Option<u16> {
        u16::try_from(map_id(self.segments, usize::from(id))?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_categories_keep_the_most_engaged_and_evict_the_least() {
        let mut t = TopCategories::default();
        for c in 1..=8u16 {
            for _ in 0..c {
                t.record(c, true);
            }
        }
        t.record(9, false); // evicts category 1 (one view)
        let ids = t.ids().to_vec();
        assert!(!ids.contains(&1) && ids.contains(&9));
        assert_eq!(ids[0], 9, "most recently touched first");
        t.record(10, true); // 9 was the least engaged
        let ids = t.ids().to_vec();
        assert!(!ids.contains(&9) && ids.contains(&10));
        t.record(0, true); // not a category
        assert_eq!(t.ids(), ids);
        let mut v = FeatureView { categories: t, ..FeatureView::default() };
        v.views = 1;
        let top = v.top_categories();
        assert_eq!(top[0].category, CategoryId(8));
        assert_eq!(top[0].views, 8);
        assert_eq!(top.len(), TOP_K);
    }

    #[test]
    fn recent_lists_are_distinct_and_bounded() {
        let mut r = Recent::<u32>::default();
        for i in [1, 2, 3, 2, 4, 5] {
            r.push(i);
        }
        assert_eq!(r.as_slice(), [5, 4, 2, 3]);
        r.remove(2);
        assert_eq!(r.as_slice(), [5, 4, 3]);
        r.remove(9);
        r.push(0);
        assert_eq!(r.as_slice(), [5, 4, 3]);
    }

    #[test]
    fn histograms_halve_instead_of_overflowing() {
        let mut h = [u16::MAX, 10, 0, 1];
        bump(&mut h, 0);
        assert_eq!(h, [u16::MAX / 2 + 1, 5, 0, 0]);
        bump(&mut h, 7); // out of range: ignored
        assert_eq!(most_frequent(&h), Some(0));
        assert_eq!(most_frequent(&[0, 0]), None);
    }

    #[test]
    fn dayparts_follow_the_collector() {
        let at = |h: i64| Daypart::of(UtcMicros(h * 3_600_000_000));
        assert_eq!(
            (at(3), at(9), at(14), at(20), at(-1)),
            (Daypart::Night, Daypart::Morning, Daypart::Afternoon, Daypart::Evening, Daypart::Night)
        );
    }
}
