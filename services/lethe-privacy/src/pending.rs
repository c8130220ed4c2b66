//! Pending erasures: the log has crypto-shredded the subject, but a registered store has not yet
//! forgotten it (or a recipient notice could not be queued). Each is kept in the privacy
//! database (tree `erasures`) until it is settled, so that the background work and a repeated
//! request finish the same erasure, under the same request and certificate id, after a restart too.
//!
//! # Layout
//!
//! `request id (16 bytes, UUID v7 big-endian)` → one format byte ([`FORMAT_V1`]) ‖ the
//! [`PendingErasure`] as JSON. A record names its subject only by the SHA-256 of its pseudonym (in the
//! drafted certificate), like every other record of the privacy database; the pseudonym itself is read
//! back from the log's erasure fence when a retry needs it.

use lethe_collect::ApiError;
use lethe_domain::UtcMicros;
use lethe_dsr::RequestId;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::erasure::ErasureCertificate;
use crate::time::rfc3339;

/// The format byte written before every record.
pub const FORMAT_V1: u8 = 1;

/// An erasure the log has done and a store (or the outbox) has not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingErasure {
    /// The certificate as the first attempt drew it up, unsigned: its id (which the recipients'
    /// notices already carry), the request, the log's erasure receipt, the finality time, the stores
    /// that forgot and the recipients notified so far.
    pub certificate: ErasureCertificate,
    /// The registered stores ([`ErasureHook`](crate::ErasureHook) names) that have not forgotten the
    /// subject yet.
    pub stores_failed: Vec<String>,
    /// The recipients whose notice could not be queued yet.
    pub recipients_owed: Vec<String>,
    /// How many times the failed stores were called.
    pub attempts: u32,
    /// When the first attempt left the erasure incomplete.
    pub pending_since: UtcMicros,
    /// When the background work calls the failed stores again.
    pub next_attempt_at: UtcMicros,
}

impl PendingErasure {
    /// The request this erasure fulfils.
    ///
    /// # Errors
    /// The record holds no valid request id (damage).
    pub fn request_id(&self) -> Result<RequestId, ApiError> {
        RequestId::parse(&self.certificate.request_id).map_err(|_| damaged())
    }

    /// What is still to be done, for messages: the stores that still hold the subject, and the
    /// notices still to queue.
    pub fn what_remains(&self) -> String {
        let mut parts = Vec::new();
        if !self.stores_failed.is_empty() {
            parts.push(format!("{} could not forget the subject yet", self.stores_failed.join(", ")));
        }
        if !self.recipients_owed.is_empty() {
            parts.push(format!("the notice to {} could not be queued yet", self.recipients_owed.join(", ")));
        }
        if parts.is_empty() {
            parts.push("the certificate could not be issued yet".to_owned());
        }
        parts.join("; ")
    }

    /// How the DPO sees it, beside the request.
    pub fn view(&self) -> Value {
        json!({
            "certificate_id": self.certificate.certificate_id,
            "stores_to_forget": self.stores_failed,
            "recipients_notified": self.certificate.recipients_notified,
            "recipients_owed": self.recipients_owed,
            "attempts": self.attempts,
            "pending_since": rfc3339(self.pending_since),
            "next_attempt_at": rfc3339(self.next_attempt_at),
        })
    }
}

/// The pending erasures, in a `sled::Tree` of the privacy database that this store owns.
#[derive(Debug, Clone)]
pub(crate) struct PendingErasures {
    tree: sled::Tree,
}

impl PendingErasures {
    pub(crate) const fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    /// The pending erasure of a request, if any.
    ///
    /// # Errors
    /// Storage failures, or a damaged record (503: whoever asks must not take it for settled).
    pub(crate) fn get(&self, id: RequestId) -> Result<Option<PendingErasure>, ApiError> {
        self.tree.get(id.as_bytes()).map_err(storage)?.map(|v| decode(&v)).transpose()
    }

    /// Every pending erasure, oldest request first; a damaged record is logged and left out.
    ///
    /// # Errors
    /// Storage failures.
    pub(crate) fn all(&self) -> Result<Vec<PendingErasure>, ApiError> {
        let mut out = Vec::new();
        for item in &self.tree {
            let (key, value) = item.map_err(storage)?;
            match decode(&value) {
                Ok(p) => out.push(p),
                Err(_) => {
                    tracing::error!(key = %hex::encode(&key), "a pending erasure does not decode; it is left as it is")
                }
            }
        }
        Ok(out)
    }

    /// How many erasures are pending.
    pub(crate) fn len(&self) -> usize {
        self.tree.len()
    }

    /// Stores (or replaces) a pending erasure; the caller makes it durable ([`crate::Privacy::sync`]).
    ///
    /// # Errors
    /// Storage failures, or a record without a valid request id.
    pub(crate) fn put(&self, pending: &PendingErasure) -> Result<(), ApiError> {
        let id = pending.request_id()?;
        let mut value = vec![FORMAT_V1];
        serde_json::to_writer(&mut value, pending).expect("pending erasures serialize");
        self.tree.insert(id.as_bytes(), value).map_err(storage)?;
        Ok(())
    }

    /// Forgets a settled erasure; the caller makes it durable.
    ///
    /// # Errors
    /// Storage failures.
    pub(crate) fn remove(&self, id: RequestId) -> Result<(), ApiError> {
        self.tree.remove(id.as_bytes()).map_err(storage)?;
        Ok(())
    }
}

fn decode(bytes: &[u8]) -> Result<PendingErasure, ApiError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => serde_json::from_slice(body).map_err(|_| damaged()),
        _ => Err(damaged()),
    }
}

fn damaged() -> ApiError {
    tracing::error!("a pending erasure record is damaged");
    ApiError::new(503, "store_unavailable", "a pending erasure cannot be read")
}

fn storage(e: sled::Error) -> ApiError {
    tracing::error!(error = %e, "the pending erasures cannot be read or written");
    ApiError::new(503, "store_unavailable", "the privacy database cannot take this request now")
}
