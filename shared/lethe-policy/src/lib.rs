//! Lethe's policies as typed, validated data: processing purposes, data categories and their
//! retention, the purpose and data categories of every event type, and consent notices with their
//! content hashes. Read from `policies/` at the repository root (or the copy built into the binary)
//! by [`Policies::load`] and [`Policies::builtin`]; every problem in those files is reported with its
//! file and line. This crate reads files but holds no secrets and writes nothing.
#![forbid(unsafe_code)]

mod error;
mod ids;
mod load;
mod model;
pub mod notice;

use std::collections::BTreeMap;
use std::path::Path;

use lethe_domain::{EventType, Purpose};

pub use error::{Location, PolicyError, Result};
pub use ids::{CategoryId, Locale, NameError, NoticeId};
pub use load::FORMAT;
pub use model::{CategoryDef, CcpaCategory, CustomEvents, EventRule, LegalBasis, PurposeDef, Retention};
pub use notice::{Notice, NoticeText};

use load::{Source, Sources};

/// File names inside a policy directory.
pub mod files {
    /// Processing purposes.
    pub const PURPOSES: &str = "purposes.toml";
    /// Data categories and their retention.
    pub const DATA_CATEGORIES: &str = "data_categories.toml";
    /// Event types, their purposes and field classification.
    pub const EVENTS: &str = "events.toml";
    /// Directory of consent notices, one `*.toml` file each.
    pub const NOTICES: &str = "notices";
}

/// The repository's `policies/`, embedded at build time.
const BUILTIN: [(&str, &str); 3] = [
    (files::PURPOSES, include_str!("../../../policies/purposes.toml")),
    (files::DATA_CATEGORIES, include_str!("../../../policies/data_categories.toml")),
    (files::EVENTS, include_str!("../../../policies/events.toml")),
];
const BUILTIN_NOTICES: [(&str, &str); 1] = [("banner.toml", include_str!("../../../policies/notices/banner.toml"))];

/// The validated policies. Immutable once loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    purposes: BTreeMap<Purpose, PurposeDef>,
    categories: BTreeMap<CategoryId, CategoryDef>,
    events: BTreeMap<EventType, EventRule>,
    custom: Option<CustomEvents>,
    context: BTreeMap<String, CategoryId>,
    notices: BTreeMap<NoticeId, Notice>,
}

impl Policies {
    /// Reads and validates the policy files in `dir`: [`files::PURPOSES`],
    /// [`files::DATA_CATEGORIES`], [`files::EVENTS`] and every `*.toml` in [`files::NOTICES`].
    ///
    /// # Errors
    /// A file cannot be read, or the files are invalid. The error holds every problem found
    /// ([`PolicyError::errors`]), each naming its file and line.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut read_errors = Vec::new();
        let mut read = |path: &Path| match std::fs::read_to_string(path) {
            Ok(text) => Source { file: path.display().to_string(), text },
            Err(source) => {
                read_errors.push(PolicyError::Read { file: path.display().to_string(), source });
                Source { file: path.display().to_string(), text: String::new() }
            }
        };
        let purposes = read(&dir.join(files::PURPOSES));
        let categories = read(&dir.join(files::DATA_CATEGORIES));
        let events = read(&dir.join(files::EVENTS));
        let notices_dir = dir.join(files::NOTICES);
        let notices = match notice_files(&notices_dir) {
            Ok(paths) => paths.iter().map(|p| read(p)).collect(),
            Err(source) => {
                read_errors.push(PolicyError::Read { file: notices_dir.display().to_string(), source });
                Vec::new()
            }
        };
        if !read_errors.is_empty() {
            return Err(PolicyError::from_all(read_errors));
        }
        Self::from_sources(&Sources { purposes, categories, events, notices })
    }

    /// The copy of the repository's `policies/` built into this crate, so that a binary without
    /// the folder still has defaults. Errors cite files as `policies/…`.
    ///
    /// # Errors
    /// Only if the embedded files are invalid, which this crate's tests rule out.
    pub fn builtin() -> Result<Self> {
        let source =
            |dir: &str, (name, text): (&str, &str)| Source { file: format!("{dir}{name}"), text: text.to_owned() };
        let [purposes, categories, events] = BUILTIN.map(|f| source("policies/", f));
        let notices = BUILTIN_NOTICES.iter().map(|f| source("policies/notices/", *f)).collect();
        Self::from_sources(&Sources { purposes, categories, events, notices })
    }

    fn from_sources(sources: &Sources) -> Result<Self> {
        let loaded = load::load(sources)?;
        Ok(Self {
            purposes: loaded.purposes,
            categories: loaded.categories,
            events: loaded.events,
            custom: loaded.custom,
            context: loaded.context,
            notices: loaded.notices,
        })
    }

    /// Every declared purpose, in id order.
    pub fn purposes(&self) -> impl Iterator<Item = &PurposeDef> {
        self.purposes.values()
    }

    /// A declared purpose.
    pub fn purpose(&self, id: &Purpose) -> Option<&PurposeDef> {
        self.purposes.get(id)
    }

    /// Every data category, in id order.
    pub fn categories(&self) -> impl Iterator<Item = &CategoryDef> {
        self.categories.values()
    }

    /// A data category.
    pub fn category(&self, id: &CategoryId) -> Option<&CategoryDef> {
        self.categories.get(id)
    }

    /// How long data of a category is kept; `None` for an undeclared category.
    pub fn retention_for(&self, category: &CategoryId) -> Option<Retention> {
        self.categories.get(category).map(CategoryDef::retention)
    }

    /// Every declared event type's rule, in type order.
    pub fn events(&self) -> impl Iterator<Item = &EventRule> {
        self.events.values()
    }

    /// The rule of a declared event type (custom events have none; see [`Self::custom`]).
    pub fn event(&self, event_type: &EventType) -> Option<&EventRule> {
        self.events.get(event_type)
    }

    /// The `[custom]` rule for undeclared event types, if the file has one.
    pub fn custom(&self) -> Option<&CustomEvents> {
        self.custom.as_ref()
    }

    /// The fields the collector writes into every event whatever its type (the `[context]` table
    /// of `events.toml`: message id, event name, coarse device, location and visit context) and
    /// their data categories, in field-name order. Empty when the file has no `[context]`.
    pub fn context_fields(&self) -> impl Iterator<Item = (&str, &CategoryId)> {
        self.context.iter().map(|(name, category)| (name.as_str(), category))
    }

    /// The data category of a context field, if `[context]` classifies it.
    pub fn category_of_context(&self, field: &str) -> Option<&CategoryId> {
        self.context.get(field)
    }

    fn custom_for(&self, event_type: &EventType) -> Option<&CustomEvents> {
        self.custom.as_ref().filter(|c| !self.events.contains_key(event_type) && c.covers(event_type))
    }

    /// The purpose an event needs: its declared rule's, or for an undeclared type the `[custom]`
    /// purpose when custom events are allowed. `None` means the event must be rejected.
    pub fn purpose_for(&self, event_type: &EventType) -> Option<&Purpose> {
        match self.events.get(event_type) {
            Some(rule) => Some(rule.purpose()),
            None => self.custom_for(event_type).map(CustomEvents::purpose),
        }
    }

    /// The data category of one payload field of an event, by the same rules as
    /// [`Self::purpose_for`].
    pub fn category_of(&self, event_type: &EventType, field: &str) -> Option<&CategoryId> {
        match self.events.get(event_type) {
            Some(rule) => rule.category_of(field),
            None => self.custom_for(event_type).map(CustomEvents::category),
        }
    }

    /// How long an event is kept: the shortest retention among the categories of its declared
    /// fields (or of the `[custom]` category), so that no field outlives its own category
    /// (R-RETAIN-1). `None` when the event is not accepted.
    ///
    /// The `[context]` fields the collector stores with every event count too: an event is kept
    /// no longer than its shortest-lived field, wherever that field sits.
    pub fn retention_of_event(&self, event_type: &EventType) -> Option<Retention> {
        let own = match self.events.get(event_type) {
            Some(rule) => rule.fields().filter_map(|(_, c)| self.retention_for(c)).min(),
            None => self.custom_for(event_type).and_then(|c| self.retention_for(c.category())),
        }?;
        let context = self.context.values().filter_map(|c| self.retention_for(c)).min();
        Some(context.map_or(own, |c| own.min(c)))
    }

    /// The payload fields of an event that have no data category (R-ROPA-1), in the order given.
    /// Every field of an event that is neither declared nor covered by `[custom]` is unclassified.
    pub fn fields_unclassified<I, S>(&self, event_type: &EventType, field_names: I) -> Vec<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        field_names
            .into_iter()
            .filter(|f| self.category_of(event_type, f.as_ref()).is_none())
            .map(|f| f.as_ref().to_owned())
            .collect()
    }

    /// Every notice, in id order.
    pub fn notices(&self) -> impl Iterator<Item = &Notice> {
        self.notices.values()
    }

    /// A notice by id.
    pub fn notice(&self, id: &NoticeId) -> Option<&Notice> {
        self.notices.get(id)
    }
}

/// The `*.toml` files of the notices directory, sorted by name.
fn notice_files(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}
