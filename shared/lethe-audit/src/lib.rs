//! Lethe's tamper-evident audit chain (R-AUDIT-1, invariant 7): exports, requests, erasures, key
//! rotations, policy changes and training runs are appended to a SHA-256 hash chain with Ed25519-signed
//! checkpoints, which a DPO exports and verifies. One flipped byte anywhere fails verification with the
//! position ([`AuditError::Tampered`]).
//!
//! The chain holds pseudonyms and digests, never identifiers or plaintext: an entry names its subject by a
//! hex pseudonym and the data it refers to by the SHA-256 of its *ciphertext* ([`content_digest`]), so the
//! chain verifies without any data key and keeps verifying after the subject is erased.
//!
//! Flow: [`AuditSigner::generate`] once (persist [`AuditSigner::to_bytes`] sealed), then
//! [`AuditChain::open`] over a [`sled::Tree`] of the service's database, [`AuditChain::append`] an
//! [`AuditRecord`] per audited action, [`AuditChain::flush`] where durability matters,
//! [`AuditChain::verify`] on a schedule, and [`AuditChain::export_jsonl_signed`] for the DPO, who runs
//! [`verify_jsonl`] with an [`AuditVerifier`] built from the published public keys.
//!
//! # Hashes and signatures
//!
//! ```text
//! hash_n    = SHA-256("lethe-audit-v1\0" || prev_hash_n (32 bytes; zeros for n = 1) || body_n)
//! body_n    = seq u64 BE || time_micros i64 BE || kind || actor || subject? || detail || content_digest?
//!             (string = u32 BE byte length || UTF-8; optional = 0x00 | 0x01 || string;
//!              kind = its snake_case name; detail = canonical JSON: compact, keys sorted at every depth)
//! signature = Ed25519("lethe-audit-checkpoint-v1\0" || seq u64 BE || hash_seq (32 bytes) || time_micros i64 BE)
//! ```
//!
//! # Storage layout (in the caller's tree)
//!
//! ```text
//! a/ || seq u64 BE  →  0x01 || prev_hash || hash || body                 one per entry
//! c/ || seq u64 BE  →  0x01 || seq || hash || time_micros || key_id || signature
//! ```
//!
//! The head is the last entry (read once at open, then kept in memory). An append is one sled insert
//! (entry and automatic checkpoint in one atomic batch), without fsync; [`AuditChain::flush`] makes it
//! durable. These layouts never change in place: a new layout gets a
//! new version byte and the reader keeps reading the old one.
#![forbid(unsafe_code)]

mod chain;
mod codec;
mod error;
mod export;
mod keys;
mod record;
mod verify;

pub use chain::{AuditChain, ChainConfig, Entries};
pub use codec::{content_digest, sha256};
pub use ed25519_dalek::VerifyingKey;
pub use error::{AuditError, Result};
pub use export::{verify_jsonl, ExportSummary, JSONL_FORMAT, MAX_JSONL_LINE};
pub use keys::{key_id_for, AuditSigner, AuditVerifier, Checkpoint, MAX_KEY_ID_LEN};
pub use record::{
    AuditEntry, AuditKind, AuditRecord, MAX_ACTOR_LEN, MAX_DETAIL_DEPTH, MAX_DETAIL_LEN, MAX_SUBJECT_LEN,
    MAX_TIME_MICROS, MIN_SUBJECT_LEN,
};
pub use verify::{verify_tree, VerifyReport};
