//! Recommendations: user→items from the live recommender over the subject's interactions (with
//! consent), item→items ("related", no subject needed: the live recommender, else content similarity
//! over the catalog, [`crate::content`]), and popularity for everyone else.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use lethe_domain::Pseudonym;
use lethe_ml::recommend::ItemId;
use lethe_personalize::{Personalizer, StoredRecommender, Views};
use lethe_registry::ModelId;
use serde::Serialize;

use crate::content::{ContentIndex, CONTENT_VERSION};
use crate::engine::Reason;

/// One recommended item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub id: String,
    pub score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// What to leave out of a subject's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exclude {
    pub seen: bool,
    pub bought: bool,
}

/// The live recommender, opened once per version, and the content model of the catalog.
#[derive(Debug, Default)]
pub struct Recommenders {
    cached: RwLock<Option<(ModelId, Arc<StoredRecommender>)>>,
    /// Popularity per segment, rebuilt from the views at most every [`SEGMENTS_TTL`].
    segments: RwLock<Option<(std::time::Instant, Arc<SegmentPopularity>)>>,
    pub content: ContentIndex,
}

/// Segment name → items, most engaged first.
type SegmentPopularity = std::collections::HashMap<String, Vec<(String, f64)>>;

/// How long popularity by segment is reused before it is rebuilt from the views.
pub const SEGMENTS_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// A recommendation answer.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub items: Vec<Item>,
    pub personalized: bool,
    pub reason: Option<Reason>,
    pub model_version: Option<String>,
    /// The segment whose popularity answered a cold start.
    pub segment: Option<String>,
}

impl Recommenders {
    /// The live recommender, reloaded when another version went live.
    pub fn live(&self, personalizer: &Personalizer) -> Option<(ModelId, Arc<StoredRecommender>)> {
        let name = lethe_registry::ModelName::parse(lethe_personalize::RECOMMENDER).ok()?;
        let live = personalizer.registry().live(&name).ok().flatten()?;
        if let Some((id, m)) = self.cached.read().expect("recs lock").as_ref() {
            if *id == live.id {
                return Some((*id, Arc::clone(m)));
            }
        }
        let (v, model) = personalizer.live_recommender().ok().flatten()?;
        let model = Arc::new(model);
        *self.cached.write().expect("recs lock") = Some((v.id, Arc::clone(&model)));
        Some((v.id, model))
    }

    /// Items for a subject (`None`: not personalized, for `reason`).
    #[allow(clippy::too_many_arguments)]
    pub fn for_subject(
        &self,
        personalizer: &Personalizer,
        views: &Views,
        subject: Option<&Pseudonym>,
        reason: Option<Reason>,
        count: usize,
        exclude: Exclude,
        segment: Option<&str>,
    ) -> Answer {
        let history: Vec<(String, u16, u16, u16)> = subject
            .map(|s| views.with(|p| p.interactions(s).map(|(i, v, c, b)| (i.to_owned(), v, c, b)).collect()))
            .unwrap_or_default();
        let mut skip: HashSet<String> = HashSet::new();
        for (item, _, _, bought) in &history {
            if exclude.seen || (exclude.bought && *bought > 0) {
                skip.insert(item.clone());
            }
        }
        if subject.is_some() && !history.is_empty() {
            if let Some((id, model)) = self.live(personalizer) {
                let index: std::collections::HashMap<&str, ItemId> = model
                    .items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| Some((s.as_str(), ItemId(u32::try_from(i).ok()?))))
                    .collect();
                let ids: Vec<ItemId> = history.iter().filter_map(|(i, ..)| index.get(i.as_str()).copied()).collect();
                let excluded: Vec<ItemId> = skip.iter().filter_map(|i| index.get(i.as_str()).copied()).collect();
                let scored = match (&model.knn, &model.als) {
                    (Some(knn), _) => knn.recommend(&ids, count, &excluded).unwrap_or_default(),
                    (None, Some(als)) => {
                        let weighted: Vec<(ItemId, f64)> = ids.iter().map(|i| (*i, 1.0)).collect();
                        als.recommend_for_history(&weighted, count, &excluded).unwrap_or_default()
                    }
                    (None, None) => Vec::new(),
                };
                if !scored.is_empty() {
                    let items = describe_scored(views, &model, &scored);
                    return Answer {
                        items,
                        personalized: true,
                        reason: None,
                        model_version: Some(format!("{id}#{}", model.algorithm)),
                        segment: None,
                    };
                }
            }
        }
        let reason = reason.or(Some(Reason::ColdStart));
        // A cold start: popularity in the segment the caller names, else in the subject's own
        // segment (a subject is only passed here with consent), else overall.
        let own = subject.map(|s| views.with(|p| p.segments_of(s))).unwrap_or_default();
        let wanted: Vec<&str> = segment.into_iter().chain(own.iter().map(String::as_str)).collect();
        if !wanted.is_empty() {
            let table = self.segment_table(views);
            for name in wanted {
                let Some(ranked) = table.get(name) else { continue };
                let items: Vec<Item> = views.with(|p| {
                    ranked
                        .iter()
                        .filter(|(id, _)| !skip.contains(id))
                        .take(count)
                        .map(|(id, w)| describe(p.catalog(), id, *w))
                        .collect()
                });
                if !items.is_empty() {
                    return Answer {
                        items,
                        personalized: false,
                        reason,
                        model_version: Some("popularity-by-segment".into()),
                        segment: Some(name.to_owned()),
                    };
                }
            }
        }
        Answer { items: popular(views, count, &skip), personalized: false, reason, model_version: None, segment: None }
    }

    /// Popularity per segment, from the views (aggregates over consenting subjects only).
    fn segment_table(&self, views: &Views) -> Arc<SegmentPopularity> {
        if let Some((at, t)) = self.segments.read().expect("segments lock").as_ref() {
            if at.elapsed() < SEGMENTS_TTL {
                return Arc::clone(t);
            }
        }
        let table: SegmentPopularity = views
            .with(lethe_features::Projector::segment_engagement)
            .into_iter()
            .map(|(segment, items)| {
                let mut ranked: Vec<(String, f64)> = items.into_iter().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                (segment, ranked)
            })
            .collect();
        let table = Arc::new(table);
        *self.segments.write().expect("segments lock") = Some((std::time::Instant::now(), Arc::clone(&table)));
        table
    }

    /// Items related to `item` (no subject involved).
    pub fn related(&self, personalizer: &Personalizer, views: &Views, item: &str, count: usize) -> Answer {
        if let Some((id, model)) = self.live(personalizer) {
            if let (Some(knn), Some(i)) = (&model.knn, model.items.iter().position(|s| s == item)) {
                if let Ok(i) = u32::try_from(i) {
                    let scored = knn.similar_items(ItemId(i), count, &[]).unwrap_or_default();
                    if !scored.is_empty() {
                        let items = describe_scored(views, &model, &scored);
                        return Answer {
                            items,
                            personalized: false,
                            reason: None,
                            model_version: Some(format!("{id}#{}", model.algorithm)),
                            segment: None,
                        };
                    }
                }
            }
        }
        // An item the recommender does not know (no interactions yet): related by its text.
        if let Some(items) = self.content.related(views, item, count) {
            return Answer {
                items,
                personalized: false,
                reason: None,
                model_version: Some(CONTENT_VERSION.to_owned()),
                segment: None,
            };
        }
        let skip = HashSet::from([item.to_owned()]);
        Answer {
            items: popular(views, count, &skip),
            personalized: false,
            reason: Some(Reason::ColdStart),
            model_version: None,
            segment: None,
        }
    }
}

/// The recommender's scored items, described from the catalog.
fn describe_scored(views: &Views, model: &StoredRecommender, scored: &[(ItemId, f64)]) -> Vec<Item> {
    views.with(|p| {
        scored
            .iter()
            .filter_map(|(i, s)| {
                let key = model.items.get(usize::try_from(i.0).ok()?)?;
                Some(describe(p.catalog(), key, *s))
            })
            .collect()
    })
}

pub(crate) fn describe(catalog: &lethe_features::ItemCatalog, id: &str, score: f64) -> Item {
    let found = catalog.get(id);
    Item {
        id: id.to_owned(),
        score,
        category: found.and_then(|r| r.category().map(str::to_owned)),
        title: found.map(|r| r.text().lines().next().unwrap_or_default().to_owned()).filter(|t| !t.is_empty()),
    }
}

/// The most engaged items of consenting subjects (aggregates only), then the rest of the catalog.
fn popular(views: &Views, count: usize, skip: &HashSet<String>) -> Vec<Item> {
    views.with(|p| {
        let catalog = p.catalog();
        let mut scored: Vec<(String, f64)> = catalog
            .all_stats()
            .filter(|(id, _)| !skip.contains(*id))
            .map(|(id, s)| {
                (id.to_owned(), f64::from(s.views) + 2.0 * f64::from(s.clicks) + 5.0 * f64::from(s.purchases))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut seen: HashSet<String> = scored.iter().map(|(i, _)| i.clone()).collect();
        let mut out: Vec<Item> = scored.into_iter().take(count).map(|(id, s)| describe(catalog, &id, s)).collect();
        if out.len() < count {
            let mut rest: Vec<&str> = catalog.iter().map(|r| r.id()).filter(|i| !skip.contains(*i)).collect();
            rest.sort_unstable();
            for id in rest {
                if out.len() >= count {
                    break;
                }
                if seen.insert(id.to_owned()) {
                    out.push(describe(catalog, id, 0.0));
                }
            }
        }
        out
    })
}
