//! Persistence of requests in a caller-supplied `sled::Tree`, which this store owns entirely.
//!
//! # Layout
//!
//! * `b'r' ‖ id (16 bytes, UUID v7 big-endian)` → the encoded request;
//! * `b's' ‖ subject digest (32 bytes) ‖ id` → empty, an index for [`RequestStore::by_subject`].
//!
//! A record's value is one format byte ([`FORMAT_V1`]) followed by the request as JSON (timestamps as
//! RFC 3339, enums as their snake_case codes). Decoding checks the format byte, the JSON, the request's
//! lifecycle invariants and that the id matches the key; any damage is a [`DsrError::Corrupt`] or
//! [`DsrError::UnsupportedFormatVersion`], never a panic. The subject of a request never changes, so the
//! index is written once, atomically with the record.

use std::collections::BTreeSet;

use jiff::Timestamp;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::{DsrError, Law, Request, RequestId, RequestKind, Result, Status, SubjectDigest};

/// The format byte written before every record.
pub const FORMAT_V1: u8 = 1;

const RECORD_PREFIX: u8 = b'r';
const SUBJECT_PREFIX: u8 = b's';
/// How often [`RequestStore::update`] retries when concurrent writers keep winning.
const MAX_CAS_ATTEMPTS: usize = 64;

/// Encodes a request as [`FORMAT_V1`] ‖ JSON.
///
/// # Errors
/// [`DsrError::Encode`] if serialization fails (it does not for well-formed requests).
pub fn encode(request: &Request) -> Result<Vec<u8>> {
    let mut out = vec![FORMAT_V1];
    serde_json::to_writer(&mut out, request).map_err(|_| DsrError::Encode)?;
    Ok(out)
}

/// Decodes bytes written by [`encode`].
///
/// # Errors
/// [`DsrError::Corrupt`] when empty, not JSON, or not a valid request;
/// [`DsrError::UnsupportedFormatVersion`] for an unknown format byte.
pub fn decode(bytes: &[u8]) -> Result<Request> {
    match bytes.split_first() {
        None => Err(DsrError::Corrupt("empty value")),
        Some((&FORMAT_V1, body)) => serde_json::from_slice(body).map_err(|_| DsrError::Corrupt("undecodable request")),
        Some((&version, _)) => Err(DsrError::UnsupportedFormatVersion(version)),
    }
}

fn record_key(id: RequestId) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = RECORD_PREFIX;
    key[1..].copy_from_slice(id.as_bytes());
    key
}

fn subject_prefix(subject: &SubjectDigest) -> [u8; 33] {
    let mut key = [0u8; 33];
    key[0] = SUBJECT_PREFIX;
    key[1..].copy_from_slice(subject.as_bytes());
    key
}

fn subject_key(subject: &SubjectDigest, id: RequestId) -> [u8; 49] {
    let mut key = [0u8; 49];
    key[..33].copy_from_slice(&subject_prefix(subject));
    key[33..].copy_from_slice(id.as_bytes());
    key
}

fn decode_at(key: &[u8], bytes: &[u8]) -> Result<Request> {
    let request = decode(bytes)?;
    if key.get(1..) != Some(request.id().as_bytes().as_slice()) {
        return Err(DsrError::Corrupt("record id does not match its key"));
    }
    Ok(request)
}

/// Which requests [`RequestStore::list`] returns; every condition set must hold. Built with
/// [`ListFilter::all`] and narrowed with the builder methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    statuses: Option<BTreeSet<Status>>,
    law: Option<Law>,
    kind: Option<RequestKind>,
    subject: Option<SubjectDigest>,
    overdue_at: Option<Timestamp>,
}

impl ListFilter {
    /// Every request.
    #[must_use]
    pub fn all() -> Self {
        Self::default()
    }

    /// Only requests in one of these statuses.
    #[must_use]
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = Status>) -> Self {
        self.statuses = Some(statuses.into_iter().collect());
        self
    }

    /// Only open requests (not completed or denied).
    #[must_use]
    pub fn open(self) -> Self {
        self.statuses(Status::ALL.iter().copied().filter(|s| s.is_open()))
    }

    /// Only requests under this law.
    #[must_use]
    pub const fn law(mut self, law: Law) -> Self {
        self.law = Some(law);
        self
    }

    /// Only requests of this kind.
    #[must_use]
    pub const fn kind(mut self, kind: RequestKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Only this subject's requests.
    #[must_use]
    pub const fn subject(mut self, subject: SubjectDigest) -> Self {
        self.subject = Some(subject);
        self
    }

    /// Only requests overdue at `now` ([`Request::is_overdue`]: open and past the deadline in force).
    #[must_use]
    pub const fn overdue_at(mut self, now: Timestamp) -> Self {
        self.overdue_at = Some(now);
        self
    }

    /// Whether `request` passes.
    #[must_use]
    pub fn matches(&self, request: &Request) -> bool {
        self.statuses.as_ref().is_none_or(|s| s.contains(&request.status()))
            && self.law.is_none_or(|l| l == request.law())
            && self.kind.is_none_or(|k| k == request.kind())
            && self.subject.as_ref().is_none_or(|s| s == request.subject_digest())
            && self.overdue_at.is_none_or(|now| request.is_overdue(now))
    }
}

/// Requests kept in a `sled::Tree` (see the module docs for the layout). Cheap to clone.
#[derive(Debug, Clone)]
pub struct RequestStore {
    tree: sled::Tree,
}

impl RequestStore {
    /// A store over `tree`, which it owns: other writers to the tree corrupt it.
    #[must_use]
    pub const fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    /// Stores a new request and its subject index entry, atomically.
    ///
    /// # Errors
    /// [`DsrError::AlreadyExists`] when the id is taken; [`DsrError::Storage`].
    pub fn insert(&self, request: &Request) -> Result<()> {
        let value = encode(request)?;
        let key = record_key(request.id());
        let index = subject_key(request.subject_digest(), request.id());
        self.tree
            .transaction(|tx| {
                if tx.get(key)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(DsrError::AlreadyExists));
                }
                tx.insert(&key[..], value.as_slice())?;
                tx.insert(&index[..], &[][..])?;
                Ok(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => DsrError::Storage(e),
            })
    }

    /// The request with this id, if stored.
    ///
    /// # Errors
    /// [`DsrError::Corrupt`] / [`DsrError::UnsupportedFormatVersion`] for damaged bytes;
    /// [`DsrError::Storage`].
    pub fn get(&self, id: RequestId) -> Result<Option<Request>> {
        let key = record_key(id);
        self.tree.get(key)?.map(|bytes| decode_at(&key, &bytes)).transpose()
    }

    /// Atomically reads the request, applies `change` and writes the result back if it returned `Ok`,
    /// with compare-and-swap: when another writer got in between, `change` runs again on the fresh
    /// record (so it must not have side effects beyond the request). Returns the stored request.
    ///
    /// # Errors
    /// [`DsrError::NotFound`]; whatever `change` returns (nothing is written then);
    /// [`DsrError::RecordMismatch`] if `change` swapped in another request; [`DsrError::Conflict`] after
    /// too many lost races; decoding and storage errors as for [`Self::get`].
    pub fn update<F>(&self, id: RequestId, mut change: F) -> Result<Request>
    where
        F: FnMut(&mut Request) -> Result<()>,
    {
        let key = record_key(id);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.tree.get(key)?.ok_or(DsrError::NotFound)?;
            let mut request = decode_at(&key, &current)?;
            let subject = *request.subject_digest();
            change(&mut request)?;
            if request.id() != id || *request.subject_digest() != subject {
                return Err(DsrError::RecordMismatch);
            }
            let next = encode(&request)?;
            if self.tree.compare_and_swap(key, Some(current), Some(next))?.is_ok() {
                return Ok(request);
            }
        }
        Err(DsrError::Conflict)
    }

    /// The requests that pass `filter`, sorted by the deadline in force (then by id, i.e. receipt order).
    ///
    /// # Errors
    /// The first damaged record met, or [`DsrError::Storage`].
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Request>> {
        let mut out = match &filter.subject {
            Some(subject) => self.by_subject(subject)?,
            None => self.all()?,
        };
        out.retain(|r| filter.matches(r));
        out.sort_by_key(|r| (r.due(), r.id()));
        Ok(out)
    }

    /// A subject's requests, oldest first, through the subject index.
    ///
    /// # Errors
    /// [`DsrError::Corrupt`] for a damaged index entry or record; [`DsrError::Storage`].
    pub fn by_subject(&self, subject: &SubjectDigest) -> Result<Vec<Request>> {
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(subject_prefix(subject)) {
            let (key, _) = entry?;
            let id_bytes: [u8; 16] =
                key.get(33..).and_then(|b| b.try_into().ok()).ok_or(DsrError::Corrupt("malformed index key"))?;
            let id = RequestId::try_from(uuid::Uuid::from_bytes(id_bytes))
                .map_err(|_| DsrError::Corrupt("malformed index key"))?;
            let request = self.get(id)?.ok_or(DsrError::Corrupt("index names a missing record"))?;
            out.push(request);
        }
        Ok(out)
    }

    /// Every stored request, oldest first.
    fn all(&self) -> Result<Vec<Request>> {
        self.tree
            .scan_prefix([RECORD_PREFIX])
            .map(|entry| entry.map_err(DsrError::from).and_then(|(k, v)| decode_at(&k, &v)))
            .collect()
    }

    /// Flushes the tree's database to disk.
    ///
    /// # Errors
    /// [`DsrError::Storage`].
    pub fn flush(&self) -> Result<()> {
        self.tree.flush()?;
        Ok(())
    }
}
