//! The item catalog: items (id, category, text, numeric features) upserted from `PUT /v1/items`-style
//! JSON or from catalog events, and interaction statistics per item for recommenders.
//!
//! An item body:
//!
//! ```json
//! {"id": "sku-42", "category": "tents", "text": "Two-person tent", "features": {"price": 189.0, "weight_kg": 2.1}}
//! ```
//!
//! `id` (alias `item_id`) is required; the rest is optional and an upsert replaces the whole item.
//! Unknown fields are ignored. A body may also be an array of items, applied all or none.
//!
//! **Statistics are sums of per-subject ledgers.** Each consenting subject keeps a bounded ledger of
//! the items it touched ([`LEDGER_CAP`] entries, the least engaged evicted first); an item's views,
//! clicks, purchases and distinct users are the sums over those ledgers. So an erasure or a
//! withdrawal subtracts exactly what the subject added, and the statistics after it equal those of a
//! log that never held the subject.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::vocab::{CategoryId, Interner, ItemId};
use crate::{FeatureError, Result};

/// Longest item id, in bytes.
pub const MAX_ITEM_ID: usize = 256;
/// Longest category name, in bytes.
pub const MAX_CATEGORY: usize = 128;
/// Longest item text, in bytes.
pub const MAX_TEXT: usize = 8192;
/// Most numeric features per item.
pub const MAX_FEATURES: usize = 64;
/// Longest feature name, in bytes.
pub const MAX_FEATURE_NAME: usize = 64;
/// Most items in one upsert body.
pub const MAX_BATCH: usize = 10_000;
/// Most distinct items a subject's ledger keeps.
pub const LEDGER_CAP: usize = 32;

pub(crate) const MAX_CATEGORIES: u32 = u16::MAX as u32;
pub(crate) const MAX_ITEMS: u32 = u32::MAX - 1;

/// Whether a string can be an item id or a category: non-empty, at most `max` bytes, no control
/// characters.
pub(crate) fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

#[derive(Debug, Deserialize)]
struct ItemJson {
    #[serde(alias = "item_id")]
    id: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    features: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Body {
    One(ItemJson),
    Many(Vec<ItemJson>),
}

/// A validated item, ready to upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemUpsert {
    id: String,
    category: Option<String>,
    text: String,
    /// Sorted by name.
    features: Vec<(String, f64)>,
}

impl ItemUpsert {
    /// Builds and validates an item.
    ///
    /// # Errors
    /// [`FeatureError::InvalidItem`]: an id or category that is empty, too long or holds control
    /// characters; text over [`MAX_TEXT`] bytes; more than [`MAX_FEATURES`] features; a feature
    /// name that is empty or too long; a value that is not finite.
    pub fn new(
        id: &str,
        category: Option<&str>,
        text: &str,
        features: impl IntoIterator<Item = (String, f64)>,
    ) -> Result<Self> {
        if !valid_name(id, MAX_ITEM_ID) {
            return Err(FeatureError::InvalidItem("an item id must be 1 to 256 bytes without control characters"));
        }
        if category.is_some_and(|c| !valid_name(c, MAX_CATEGORY)) {
            return Err(FeatureError::InvalidItem("a category must be 1 to 128 bytes without control characters"));
        }
        if text.len() > MAX_TEXT {
            return Err(FeatureError::InvalidItem("item text holds at most 8192 bytes"));
        }
        let features: BTreeMap<String, f64> = features.into_iter().collect();
        if features.len() > MAX_FEATURES {
            return Err(FeatureError::InvalidItem("an item has at most 64 features"));
        }
        for (name, value) in &features {
            if !valid_name(name, MAX_FEATURE_NAME) {
                return Err(FeatureError::InvalidItem("a feature name must be 1 to 64 bytes"));
            }
            if !value.is_finite() {
                return Err(FeatureError::InvalidItem("feature values must be finite numbers"));
            }
        }
        Ok(Self {
            id: id.to_owned(),
            category: category.map(str::to_owned),
            text: text.to_owned(),
            features: features.into_iter().collect(),
        })
    }

    /// Parses a body: one item or an array of items.
    ///
    /// # Errors
    /// [`FeatureError::InvalidJson`] for a body that is not JSON of that shape (or holds more than
    /// [`MAX_BATCH`] items), [`FeatureError::InvalidItem`] for the first item that breaks a rule.
    pub fn parse(json: &[u8]) -> Result<Vec<Self>> {
        let body: Body = serde_json::from_slice(json).map_err(|e| FeatureError::InvalidJson(e.to_string()))?;
        let items = match body {
            Body::One(i) => vec![i],
            Body::Many(v) => v,
        };
        if items.len() > MAX_BATCH {
            return Err(FeatureError::InvalidJson(format!("a body holds at most {MAX_BATCH} items")));
        }
        items
            .into_iter()
            .map(|i| Self::new(&i.id, i.category.as_deref(), i.text.as_deref().unwrap_or_default(), i.features))
            .collect()
    }

    /// The item id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A catalog item as held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Item {
    /// Interned category; 0: none.
    pub(crate) category: u16,
    pub(crate) text: Box<str>,
    pub(crate) features: Vec<(Box<str>, f64)>,
}

/// A catalog item, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ItemRef<'a> {
    id: &'a str,
    category: Option<&'a str>,
    item: &'a Item,
}

impl<'a> ItemRef<'a> {
    /// The item id.
    #[must_use]
    pub const fn id(&self) -> &'a str {
        self.id
    }

    /// The category.
    #[must_use]
    pub const fn category(&self) -> Option<&'a str> {
        self.category
    }

    /// The text (title, description).
    #[must_use]
    pub fn text(&self) -> &'a str {
        &self.item.text
    }

    /// The numeric features, by name.
    pub fn features(&self) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.item.features.iter().map(|(n, v)| (&**n, *v))
    }

    /// One numeric feature.
    #[must_use]
    pub fn feature(&self, name: &str) -> Option<f64> {
        self.item.features.binary_search_by(|(n, _)| (**n).cmp(name)).ok().map(|i| self.item.features[i].1)
    }
}

/// Interactions with one item, summed over consenting subjects' ledgers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItemStats {
    pub views: u32,
    pub clicks: u32,
    pub purchases: u32,
    /// Distinct subjects whose ledger holds the item.
    pub users: u32,
}

/// One item in a subject's ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Touch {
    pub(crate) item: u32,
    pub(crate) views: u16,
    pub(crate) clicks: u16,
    pub(crate) purchases: u16,
}

impl Touch {
    fn weight(self) -> u32 {
        u32::from(self.views) + u32::from(self.clicks) + u32::from(self.purchases)
    }
}

/// What a ledger entry counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interaction {
    View,
    Click,
    Purchase,
}

/// Items, their statistics, and the category and item vocabularies.
#[derive(Debug, Clone)]
pub struct ItemCatalog {
    pub(crate) categories: Interner,
    pub(crate) items: Interner,
    pub(crate) entries: HashMap<u32, Item>,
    pub(crate) stats: HashMap<u32, ItemStats>,
    /// Bumped by every change of the items (not of their statistics); not in snapshots.
    pub(crate) generation: u64,
}

impl Default for ItemCatalog {
    fn default() -> Self {
        Self::new()
    }
}

impl ItemCatalog {
    /// An empty catalog.
    #[must_use]
    pub fn new() -> Self {
        Self {
            categories: Interner::new("category", MAX_CATEGORIES),
            items: Interner::new("item", MAX_ITEMS),
            entries: HashMap::new(),
            stats: HashMap::new(),
            generation: 0,
        }
    }

    /// A counter this process bumps at every upsert or removal of an item (statistics do not count),
    /// so that a cache built from the items (a content model) knows when to rebuild. It starts at 0
    /// in every process and is not part of snapshots: compare it only within one catalog.
    #[must_use]
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// Upserts the items of a `PUT /v1/items`-style body (one item or an array); returns how many.
    /// Either every item is applied or none.
    ///
    /// # Errors
    /// See [`ItemUpsert::parse`]; [`FeatureError::VocabularyFull`] when no id is left (the items
    /// before the failing one stay applied).
    pub fn upsert(&mut self, json: &[u8]) -> Result<usize> {
        let items = ItemUpsert::parse(json)?;
        let n = items.len();
        for item in items {
            self.upsert_item(item)?;
        }
        Ok(n)
    }

    /// Upserts one validated item, replacing any item with the same id.
    ///
    /// # Errors
    /// [`FeatureError::VocabularyFull`] when no category or item id is left.
    pub fn upsert_item(&mut self, item: ItemUpsert) -> Result<ItemId> {
        let category = match &item.category {
            Some(c) => {
                u16::try_from(self.categories.intern(c)?).map_err(|_| FeatureError::VocabularyFull("category"))?
            }
            None => 0,
        };
        let id = self.items.intern(&item.id)?;
        let features = item.features.into_iter().map(|(n, v)| (n.into_boxed_str(), v)).collect();
        self.entries.insert(id, Item { category, text: item.text.into_boxed_str(), features });
        self.generation = self.generation.wrapping_add(1);
        Ok(ItemId(id))
    }

    /// Removes an item from the catalog (its statistics stay while ledgers hold it). Returns
    /// whether it was there.
    pub fn remove(&mut self, id: &str) -> bool {
        let removed = self.items.get(id).is_some_and(|i| self.entries.remove(&i).is_some());
        if removed {
            self.generation = self.generation.wrapping_add(1);
        }
        removed
    }

    /// An item.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<ItemRef<'_>> {
        let i = self.items.get(id)?;
        let item = self.entries.get(&i)?;
        Some(ItemRef { id: self.items.resolve(i)?, category: self.categories.resolve(u32::from(item.category)), item })
    }

    /// Every catalog item, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = ItemRef<'_>> {
        self.entries.iter().filter_map(|(i, item)| {
            Some(ItemRef {
                id: self.items.resolve(*i)?,
                category: self.categories.resolve(u32::from(item.category)),
                item,
            })
        })
    }

    /// Catalog items.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the catalog has no item.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Interactions with an item (catalog or not); `None` when no consenting subject touched it.
    #[must_use]
    pub fn stats(&self, id: &str) -> Option<ItemStats> {
        self.stats.get(&self.items.get(id)?).copied()
    }

    /// Interactions with every touched item, in no particular order.
    pub fn all_stats(&self) -> impl Iterator<Item = (&str, ItemStats)> {
        self.stats.iter().filter_map(|(i, s)| Some((self.items.resolve(*i)?, *s)))
    }

    /// The name of a category id.
    #[must_use]
    pub fn category_name(&self, id: CategoryId) -> Option<&str> {
        self.categories.resolve(u32::from(id.0))
    }

    /// The id of a category name, if known.
    #[must_use]
    pub fn category_id(&self, name: &str) -> Option<CategoryId> {
        u16::try_from(self.categories.get(name)?).ok().map(CategoryId)
    }

    /// The string of an item id.
    #[must_use]
    pub fn item_key(&self, id: ItemId) -> Option<&str> {
        self.items.resolve(id.0)
    }

    /// The id of an item string, if known.
    #[must_use]
    pub fn item_id(&self, key: &str) -> Option<ItemId> {
        self.items.get(key).map(ItemId)
    }

    /// The interned category of a catalog item; 0 when none.
    pub(crate) fn category_of(&self, item: u32) -> u16 {
        self.entries.get(&item).map_or(0, |i| i.category)
    }

    /// Records an interaction in a subject's ledger and the item's statistics.
    pub(crate) fn touch(&mut self, ledger: &mut Vec<Touch>, item: u32, what: Interaction) {
        let at = if let Some(i) = ledger.iter().position(|t| t.item == item) {
            i
        } else {
            if ledger.len() >= LEDGER_CAP {
                // Least engaged; among equals the rearmost (least recently touched).
                let mut evict = 0;
                for (i, t) in ledger.iter().enumerate() {
                    if t.weight() <= ledger[evict].weight() {
                        evict = i;
                    }
                }
                let gone = ledger.remove(evict);
                self.subtract(gone);
            }
            ledger.push(Touch { item, ..Touch::default() });
            self.stats.entry(item).or_default().users += 1;
            ledger.len() - 1
        };
        let t = &mut ledger[at];
        let counter = match what {
            Interaction::View => &mut t.views,
            Interaction::Click => &mut t.clicks,
            Interaction::Purchase => &mut t.purchases,
        };
        // A saturated ledger counter adds nothing to the statistics either, so that erasure
        // subtracts exactly what was added.
        if let Some(n) = counter.checked_add(1) {
            *counter = n;
            let s = self.stats.entry(item).or_default();
            match what {
                Interaction::View => s.views = s.views.saturating_add(1),
                Interaction::Click => s.clicks = s.clicks.saturating_add(1),
                Interaction::Purchase => s.purchases = s.purchases.saturating_add(1),
            }
        }
        ledger[..=at].rotate_right(1);
    }

    /// Takes a ledger entry's contribution out of the statistics.
    pub(crate) fn subtract(&mut self, t: Touch) {
        if let Some(s) = self.stats.get_mut(&t.item) {
            s.views = s.views.saturating_sub(u32::from(t.views));
            s.clicks = s.clicks.saturating_sub(u32::from(t.clicks));
            s.purchases = s.purchases.saturating_sub(u32::from(t.purchases));
            s.users = s.users.saturating_sub(1);
            if s.users == 0 {
                self.stats.remove(&t.item);
            }
        }
    }

    /// Adds a ledger entry's contribution (restoring from a snapshot).
    pub(crate) fn add(&mut self, t: Touch) {
        let s = self.stats.entry(t.item).or_default();
        s.views = s.views.saturating_add(u32::from(t.views));
        s.clicks = s.clicks.saturating_add(u32::from(t.clicks));
        s.purchases = s.purchases.saturating_add(u32::from(t.purchases));
        s.users = s.users.saturating_add(1);
    }

    /// Marks the ids the catalog itself refers to.
    pub(crate) fn mark(&self, categories: &mut [bool], items: &mut [bool]) {
        for (id, item) in &self.entries {
            if let Some(m) = items.get_mut(*id as usize) {
                *m = true;
            }
            if let Some(m) = categories.get_mut(usize::from(item.category)).filter(|_| item.category != 0) {
                *m = true;
            }
        }
        for id in self.stats.keys() {
            if let Some(m) = items.get_mut(*id as usize) {
                *m = true;
            }
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        let items: usize = self
            .entries
            .values()
            .map(|i| {
                i.text.len()
                    + i.features.capacity() * std::mem::size_of::<(Box<str>, f64)>()
                    + i.features.iter().map(|(n, _)| n.len()).sum::<usize>()
            })
            .sum();
        crate::memory::hash_map_bytes::<u32, Item>(self.entries.capacity())
            + crate::memory::hash_map_bytes::<u32, ItemStats>(self.stats.capacity())
            + items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_one_or_many_and_replace() {
        let mut c = ItemCatalog::new();
        let n = c
            .upsert(br#"{"id":"sku-1","category":"tents","text":"Tent","features":{"price":189.5,"weight":2}}"#)
            .unwrap();
        assert_eq!((n, c.generation()), (1, 1));
        let item = c.get("sku-1").unwrap();
        assert_eq!((item.category(), item.text(), item.feature("price")), (Some("tents"), "Tent", Some(189.5)));
        assert_eq!(item.features().count(), 2);
        c.upsert(br#"[{"item_id":"sku-1","category":"shelter"},{"id":"sku-2","extra":true}]"#).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("sku-1").unwrap().category(), Some("shelter"));
        assert_eq!(c.get("sku-1").unwrap().feature("price"), None, "an upsert replaces the whole item");
        let generation = c.generation();
        assert!(c.remove("sku-2"));
        assert_eq!(c.generation(), generation + 1, "a removal is a change");
        assert!(!c.remove("sku-2"));
        assert_eq!(c.generation(), generation + 1, "removing nothing changes nothing");
        assert!(c.get("sku-2").is_none());
    }

    #[test]
    fn invalid_items_are_refused_with_codes() {
        let mut c = ItemCatalog::new();
        let cases: [(&[u8], &str); 7] = [
            (b"{", "invalid_json"),
            (b"{\"category\":\"x\"}", "invalid_json"),
            (b"{\"id\":\"\"}", "invalid_item"),
            (b"{\"id\":\"a\\nb\"}", "invalid_item"),
            (b"{\"id\":\"a\",\"features\":{\"p\":1e999}}", "invalid_json"),
            (b"{\"id\":\"a\",\"features\":{\"\":1}}", "invalid_item"),
            (b"[{\"id\":\"ok\"},{\"id\":7}]", "invalid_json"),
        ];
        for (body, code) in cases {
            assert_eq!(c.upsert(body).unwrap_err().code(), code, "{}", String::from_utf8_lossy(body));
        }
        assert!(c.is_empty(), "a refused body applies nothing");
    }

    #[test]
    fn ledgers_add_and_subtract_exactly() {
        let mut c = ItemCatalog::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.touch(&mut a, 1, Interaction::View);
        c.touch(&mut a, 1, Interaction::Click);
        c.touch(&mut b, 1, Interaction::Purchase);
        assert_eq!(c.stats[&1], ItemStats { views: 1, clicks: 1, purchases: 1, users: 2 });
        for t in a.drain(..) {
            c.subtract(t);
        }
        assert_eq!(c.stats[&1], ItemStats { views: 0, clicks: 0, purchases: 1, users: 1 });
        for t in b.drain(..) {
            c.subtract(t);
        }
        assert!(c.stats.is_empty());
    }

    #[test]
    fn a_full_ledger_evicts_the_least_engaged_and_subtracts_it() {
        let mut c = ItemCatalog::new();
        let mut l = Vec::new();
        for item in 1..=u32::try_from(LEDGER_CAP).unwrap() {
            c.touch(&mut l, item, Interaction::View);
            c.touch(&mut l, item, Interaction::View);
        }
        c.touch(&mut l, 1, Interaction::Click);
        c.touch(&mut l, 999, Interaction::View);
        assert_eq!(l.len(), LEDGER_CAP);
        // Item 2 was the least recently touched of the least engaged.
        assert!(!c.stats.contains_key(&2));
        assert!(l.iter().all(|t| t.item != 2));
        assert_eq!(c.stats[&999].users, 1);
    }
}
