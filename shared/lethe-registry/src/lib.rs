//! The model registry: where training writes trained models and serving reads them.
//!
//! - [`Registry`] keeps, in one sled tree its caller opens, every [`ModelVersion`]: its name and
//!   per-name version number, algorithm, lifecycle [`Status`] (candidate, canary, live, retired),
//!   [`Manifest`] (data window, log position, features, hyperparameters, code version, shards) and
//!   metrics, and its bytes, sealed.
//! - A [`Membership`] answers "was this subject in the model?" ([`Registry::containing`], what
//!   unlearning needs) from salted 16-byte HMAC tags, without storing identifiers or pseudonyms.
//!   [`Manifest::shard_of`] places a subject in one of the model's shards, so an unlearning retrain
//!   can retrain one shard.
//! - Model bytes are personal data (ALS user factors, anything fitted to a subject's events): each
//!   model's bytes are sealed with AES-256-GCM under their own random data key, and the data key is
//!   wrapped under a registry key-encryption key (KEK) that the caller supplies and the registry
//!   never stores. Retiring a model removes its sealed bytes, data key and tags; because sled keeps
//!   removed bytes in its files, the removal becomes final when the caller rotates the KEK
//!   ([`Registry::rotate_kek`]) and destroys the old one, as the event log does with its epochs.
//!
//! **Architecture Invariants:** nothing here stores an identifier or a pseudonym (R-PSEUDO-1); model
//! bytes are never stored in plaintext (invariant 1); a retired model's bytes and key are removed in
//! the transaction that retires it (invariant 5); every stored value starts with a format byte; a
//! damaged value gives a typed error, never a panic; AES-GCM goes through `lethe-crypto`.
//!
//! Not yet wired: training does not register models, serving does not read them, erasure does not
//! call [`Registry::containing`] and [`Registry::retire`] (no `ErasureHook`), nothing calls
//! [`Registry::rotate_kek`] on a schedule, and registry changes are not written to the audit chain
//! (invariant 7: the caller must audit registrations, promotions and retirements).
//!
//! ```
//! use std::collections::BTreeMap;
//! use lethe_crypto::SecretBytes;
//! use lethe_domain::{Pseudonym, UtcMicros};
//! use lethe_registry::{Manifest, Membership, ModelName, NewModel, Registry, RetireReason, Status};
//!
//! let db = sled::Config::new().temporary(true).open().unwrap();
//! let registry = Registry::open(db.open_tree("models").unwrap())?;
//! let kek = SecretBytes::new([7; 32]);
//! let alice = Pseudonym::from_bytes([1; 32]);
//! let membership = Membership::new(&[alice]);
//! let manifest = Manifest {
//!     data_window: (UtcMicros(0), UtcMicros(10)),
//!     log_position: 42,
//!     subjects: 1,
//!     shards: membership.shard_counts(4),
//!     membership,
//!     features: vec!["item".into()],
//!     hyperparameters: serde_json::json!({"factors": 16}),
//!     metrics: BTreeMap::new(),
//!     code_version: "dev".into(),
//! };
//! let name = ModelName::parse("recs-als")?;
//! let new = NewModel { name: name.clone(), algorithm: "als".into(), manifest, metrics: BTreeMap::new() };
//! let v1 = registry.register(new, b"factors", &kek, UtcMicros(20))?;
//! registry.set_status(v1.id, Status::Live, UtcMicros(21))?;
//! assert_eq!(registry.live(&name)?.map(|m| m.version), Some(1));
//! assert_eq!(registry.containing(&alice)?, vec![v1.id]);
//!
//! registry.retire(v1.id, RetireReason::Unlearning, UtcMicros(30))?;
//! assert_eq!(registry.load_blob(v1.id, &kek).unwrap_err().code(), "model_retired");
//! assert!(registry.containing(&alice)?.is_empty());
//! registry.rotate_kek(&kek, &SecretBytes::new([8; 32]))?; // then destroy the old KEK
//! # Ok::<(), lethe_registry::RegistryError>(())
//! ```
#![forbid(unsafe_code)]

mod codec;
mod error;
mod ids;
mod membership;
mod model;
mod registry;
mod seal;

pub use error::{RegistryError, Result};
pub use ids::{ModelId, ModelName};
pub use lethe_crypto::SecretBytes;
pub use membership::{Membership, MembershipSalt, ShardInfo, TAG_LEN};
pub use model::{
    BlobInfo, Manifest, ModelVersion, NewModel, RetireReason, Status, StatusKind, MAX_FEATURES,
    MAX_HYPERPARAMETERS_LEN, MAX_LABEL_LEN, MAX_METRICS, MAX_SHARDS,
};
pub use registry::{Registry, MAX_ALGORITHM_LEN, MAX_BLOB_LEN};
