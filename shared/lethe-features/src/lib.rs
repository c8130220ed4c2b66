//! Pseudonymized feature views projected from the event log: the signals a decision service reads.
//!
//! - [`Projector`] folds [`lethe_domain::RecordedEvent`]s (from [`lethe_eventlog::EventStore::read_all`])
//!   into one fixed-size [`FeatureView`] per consenting subject, the [`ItemCatalog`] with
//!   per-item interaction statistics, and nothing else. It tracks `consent.changed` records itself:
//!   only subjects whose consent allows the `personalization` purpose get features, a withdrawal
//!   clears them, and [`Projector::forget`] erases a subject from every view and index at once.
//! - [`Projector::snapshot_bytes`] is canonical (the same events give the same bytes), and
//!   [`Projector::checkpoint`] seals it with the log position it covers, so a restart replays only
//!   what came after.
//!
//! **Architecture Invariants:** views are keyed by pseudonym only (R-PSEUDO-1); nothing here does
//! IO beyond reading the log through [`lethe_eventlog::EventStore`]; plaintext views live in memory
//! only, and checkpoints are sealed through `lethe-crypto` (the only crate that touches cipher
//! primitives). `apply` is a pure function of the events, never fails and never panics: an event
//! it cannot use is skipped and counted ([`ProjectionStats`]).
//!
//! Not yet wired: `lethe serve` does not run a projector, erasure reaches it only through an
//! `lethe.erasure_fence` in the log or a direct [`Projector::forget`] (no `ErasureHook` yet).
//!
//! Items arrive by catalog events ([`ITEM_UPSERTED`], [`ITEM_REMOVED`]), which `lethe-decide` writes for
//! `PUT /v1/items` and `DELETE /v1/items/{id}`, or in-process through [`Projector::catalog_mut`].
#![forbid(unsafe_code)]

// The unit tests share the black-box tests' log builder, which names this crate.
#[cfg(test)]
extern crate self as lethe_features;

mod catalog;
mod error;
mod memory;
mod observe;
mod projector;
mod snapshot;
mod view;
mod vocab;

pub use catalog::{
    ItemCatalog, ItemRef, ItemStats, ItemUpsert, LEDGER_CAP, MAX_BATCH, MAX_CATEGORY, MAX_FEATURES, MAX_FEATURE_NAME,
    MAX_ITEM_ID, MAX_TEXT,
};
pub use error::{FeatureError, Result};
pub use memory::{hash_map_bytes, MemoryUsage};
pub use projector::{
    Prepared, ProjectionStats, Projector, ProjectorConfig, ServedNote, ITEM_REMOVED, ITEM_UPSERTED, MAX_PAYLOAD,
    PERSONALIZATION,
};
pub use snapshot::{CHECKPOINT_MAGIC, CHECKPOINT_VERSION, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
pub use view::{
    CategoryStat, Daypart, DeviceClass, Dwell, FeatureView, Purchases, Ratings, ReferrerClass, ScrollDepth, Sessions,
    RECENT_LEN, TOP_K,
};
pub use vocab::{CategoryId, ItemId, LocationId, SegmentId};
