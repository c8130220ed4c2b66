//! Related items by content: TF-IDF cosine similarity ([`lethe_ml::recommend::ContentModel`]) over
//! the catalog's item texts and categories, so that an item nobody interacted with yet still has
//! related items. It answers `GET /v1/recommendations?item=…` when the live recommender does not know
//! the item (`modelVersion: "content-tfidf"`); popularity remains the last resort.
//!
//! The model is built from the catalog alone (no subject data, so nothing to forget at erasure),
//! lazily, and kept until the catalog changes: it is keyed by the catalog's generation counter and
//! item count. `PUT /v1/items` and `DELETE /v1/items/{id}` rebuild it off the request thread, so a
//! request rarely waits for a build. An item's document is its text followed by its category
//! (words split on anything not alphanumeric, lowercased); numeric features are left out, as items
//! need not share them and their scales differ. Catalogs above [`MAX_CONTENT_ITEMS`] get no content
//! model (each build compares every pair of items).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lethe_ml::recommend::{ContentModel, ContentParams, ItemContent, ItemId};
use lethe_personalize::Views;

use crate::recommend::{describe, Item};

/// The model version a content answer reports.
pub const CONTENT_VERSION: &str = "content-tfidf";
/// Largest catalog a content model is built for.
pub const MAX_CONTENT_ITEMS: usize = 10_000;

/// A content model and the catalog state it was built from.
#[derive(Debug)]
struct Built {
    /// `(generation, item count)` of the catalog.
    key: (u64, usize),
    /// Item keys by dense id.
    items: Vec<String>,
    index: HashMap<String, ItemId>,
    /// `None`: nothing to compare (no text) or the catalog is too large.
    model: Option<ContentModel>,
}

/// The content model, built on demand and cached until the catalog changes.
#[derive(Debug, Default)]
pub struct ContentIndex {
    cached: Mutex<Option<Arc<Built>>>,
}

fn key(views: &Views) -> (u64, usize) {
    views.with(|p| (p.catalog().generation(), p.catalog().len()))
}

impl ContentIndex {
    /// The model for the catalog as it stands, rebuilt if the catalog changed since. Concurrent
    /// callers share one build.
    fn current(&self, views: &Views) -> Arc<Built> {
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = key(views);
        if let Some(b) = cached.as_ref().filter(|b| b.key == now) {
            return Arc::clone(b);
        }
        let built = Arc::new(build(views));
        *cached = Some(Arc::clone(&built));
        built
    }

    /// Rebuilds the model now if the catalog changed (after a catalog write, off the request thread).
    pub fn refresh(&self, views: &Views) {
        let _ = self.current(views);
    }

    /// Up to `count` items similar to `item` by content, best first; `None` when the catalog does
    /// not hold the item, it shares no word with any other item, or there is no model.
    pub fn related(&self, views: &Views, item: &str, count: usize) -> Option<Vec<Item>> {
        let built = self.current(views);
        let model = built.model.as_ref()?;
        let id = *built.index.get(item)?;
        let scored = model.recommend(id, count.max(1), &[]).ok()?;
        let items: Vec<Item> = views.with(|p| {
            scored
                .iter()
                .filter_map(|(i, s)| {
                    let key = built.items.get(usize::try_from(i.0).ok()?)?;
                    Some(describe(p.catalog(), key, *s))
                })
                .collect()
        });
        (!items.is_empty()).then_some(items)
    }
}

/// Reads the catalog (under the views' read lock, briefly) and trains outside the lock.
fn build(views: &Views) -> Built {
    let (key, mut docs) = views.with(|p| {
        let c = p.catalog();
        let key = (c.generation(), c.len());
        if c.len() > MAX_CONTENT_ITEMS {
            return (key, Vec::new());
        }
        let docs: Vec<(String, String)> = c
            .iter()
            .map(|r| {
                let doc = match r.category() {
                    Some(cat) => format!("{} {cat}", r.text()),
                    None => r.text().to_owned(),
                };
                (r.id().to_owned(), doc)
            })
            .filter(|(_, doc)| doc.chars().any(char::is_alphanumeric))
            .collect();
        (key, docs)
    });
    // Dense ids in item-key order, so that the same catalog gives the same model.
    docs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let contents: Vec<ItemContent> = docs
        .iter()
        .enumerate()
        .filter_map(|(i, (_, text))| {
            Some(ItemContent { item: ItemId(u32::try_from(i).ok()?), text: text.clone(), numeric: Vec::new() })
        })
        .collect();
    let model = if contents.len() < 2 {
        None
    } else {
        match ContentModel::train(&contents, &ContentParams::default()) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(code = e.code(), "the content model could not be built");
                None
            }
        }
    };
    let items: Vec<String> = docs.into_iter().map(|(id, _)| id).collect();
    let index =
        items.iter().enumerate().filter_map(|(i, id)| Some((id.clone(), ItemId(u32::try_from(i).ok()?)))).collect();
    Built { key, items, index, model }
}
