//! The [`AuditChain`]: appends records to a caller's sled tree as a hash chain, signs checkpoints, reads
//! entries back and verifies.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::codec::{self, Body, Head, StoredCheckpoint, StoredEntry, CHECKPOINT_PREFIX, ENTRY_PREFIX};
use crate::verify::{self, VerifyReport};
use crate::{AuditEntry, AuditError, AuditRecord, AuditSigner, AuditVerifier, Checkpoint, Result};

/// How an [`AuditChain`] behaves.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// Sign a checkpoint automatically after every this many entries (at each multiple of it); 0 turns
    /// automatic checkpoints off. Default 1024.
    pub checkpoint_every: u64,
    /// Keys trusted besides the signer's own: keep every retired signer's key here, so that its
    /// checkpoints keep verifying after a rotation.
    pub trusted: AuditVerifier,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self { checkpoint_every: 1024, trusted: AuditVerifier::new() }
    }
}

/// The tamper-evident audit chain (R-AUDIT-1), stored in a [`sled::Tree`] the caller owns.
///
/// Appends are serialized by a mutex and are not flushed one by one: call [`AuditChain::flush`] where
/// durability is needed (sled also flushes in the background). The head lives in memory and is the last
/// stored entry on reopening; an automatic checkpoint is written in one atomic batch with its entry.
#[derive(Debug)]
pub struct AuditChain {
    tree: sled::Tree,
    signer: AuditSigner,
    verifier: AuditVerifier,
    checkpoint_every: u64,
    head: Mutex<Head>,
}

impl AuditChain {
    /// Opens the chain in `tree` (empty or written by an earlier `AuditChain`); it continues from the last
    /// stored entry. The chain itself is checked by [`AuditChain::verify`], not here.
    ///
    /// # Errors
    /// [`AuditError::Tampered`] when the last entry cannot be read (use [`verify_tree`](crate::verify_tree)
    /// to locate the damage); [`AuditError::InvalidKey`] when the signer's key id is trusted with another
    /// key; [`AuditError::Storage`] when sled fails.
    pub fn open(tree: sled::Tree, signer: AuditSigner, config: ChainConfig) -> Result<Self> {
        let mut verifier = config.trusted;
        verifier.trust(signer.key_id(), signer.verifying_key())?;
        let head = verify::last_entry_head(&tree)?;
        Ok(Self { tree, signer, verifier, checkpoint_every: config.checkpoint_every, head: Mutex::new(head) })
    }

    /// The keys this chain's checkpoints verify with: the signer's and [`ChainConfig::trusted`].
    #[must_use]
    pub fn verifier(&self) -> &AuditVerifier {
        &self.verifier
    }

    /// The signer's key id.
    #[must_use]
    pub fn key_id(&self) -> &str {
        self.signer.key_id()
    }

    /// Appends a record as the next entry, and signs a checkpoint when its sequence number is a multiple of
    /// [`ChainConfig::checkpoint_every`]. Not flushed: see [`AuditChain::flush`].
    ///
    /// # Errors
    /// [`AuditError::InvalidRecord`] when the record breaks a rule of [`AuditRecord`];
    /// [`AuditError::SequenceExhausted`] after `u64::MAX` entries; [`AuditError::Storage`] when sled fails
    /// (nothing is then written).
    pub fn append(&self, record: AuditRecord) -> Result<AuditEntry> {
        let detail = record.validate()?;
        let mut head = self.lock();
        let seq = head.seq.checked_add(1).ok_or(AuditError::SequenceExhausted)?;
        let body = Body {
            seq,
            time_micros: record.time_micros,
            kind: record.kind.as_str(),
            actor: &record.actor,
            subject: record.subject.as_deref(),
            detail: &detail,
            content_digest: record.content_digest.as_deref(),
        }
        .to_bytes();
        let hash = codec::entry_hash(&head.hash, &body);
        let next = Head { seq, hash };
        let key = codec::prefixed_key(ENTRY_PREFIX, seq);
        let value = StoredEntry::encode(&head.hash, &hash, &body);
        if self.checkpoint_every > 0 && seq % self.checkpoint_every == 0 {
            // The entry and its checkpoint land together. Plain appends use a single insert: in sled 0.34
            // a batch costs about a third of the append rate and makes the next flush far slower.
            let cp = self.signer.sign(seq, &hash, record.time_micros);
            let mut batch = sled::Batch::default();
            batch.insert(&key[..], value);
            batch.insert(&codec::prefixed_key(CHECKPOINT_PREFIX, seq)[..], cp.encode());
            self.tree.apply_batch(batch)?;
        } else {
            self.tree.insert(key, value)?;
        }
        let prev = std::mem::replace(&mut *head, next);
        drop(head);
        Ok(AuditEntry {
            seq,
            time_micros: record.time_micros,
            kind: record.kind,
            actor: record.actor,
            subject: record.subject,
            detail: record.detail,
            content_digest: record.content_digest,
            prev_hash: hex::encode(prev.hash),
            hash: hex::encode(hash),
        })
    }

    /// Signs a checkpoint over the current head, made at `time_micros` (it replaces an earlier checkpoint
    /// at the same sequence number). Call it before an export, at shutdown, or on a timer.
    ///
    /// # Errors
    /// [`AuditError::EmptyChain`] when there is nothing to sign; [`AuditError::Storage`] when sled fails.
    pub fn checkpoint(&self, time_micros: i64) -> Result<Checkpoint> {
        let head = self.lock();
        self.checkpoint_locked(&head, time_micros)
    }

    fn checkpoint_locked(&self, head: &Head, time_micros: i64) -> Result<Checkpoint> {
        if head.seq == 0 {
            return Err(AuditError::EmptyChain);
        }
        let cp = self.signer.sign(head.seq, &head.hash, time_micros);
        self.tree.insert(codec::prefixed_key(CHECKPOINT_PREFIX, head.seq), cp.encode())?;
        Ok(Checkpoint::from_stored(&cp))
    }

    /// Makes every append so far durable (fsync through sled).
    ///
    /// # Errors
    /// [`AuditError::Storage`] when sled fails.
    pub fn flush(&self) -> Result<()> {
        self.tree.flush()?;
        Ok(())
    }

    /// The last sequence number (0 for an empty chain) and its hex hash (64 zeros for an empty chain).
    #[must_use]
    pub fn head(&self) -> (u64, String) {
        let head = *self.lock();
        (head.seq, hex::encode(head.hash))
    }

    /// The entries from `from_seq` (1-based; 0 reads from 1) to the current head, decoded but not verified.
    #[must_use]
    pub fn entries(&self, from_seq: u64) -> Entries {
        self.entries_in(from_seq.max(1), None)
    }

    /// The entries with `from_micros <= time_micros < to_micros`, in sequence order, decoded but not
    /// verified. Times come from callers' clocks and need not be monotonic, so this scans the whole chain.
    #[must_use]
    pub fn entries_between(&self, from_micros: i64, to_micros: i64) -> Entries {
        self.entries_in(1, Some((from_micros, to_micros)))
    }

    fn entries_in(&self, from_seq: u64, times: Option<(i64, i64)>) -> Entries {
        let to_seq = self.lock().seq;
        let inner = (from_seq <= to_seq).then(|| {
            self.tree.range(codec::prefixed_key(ENTRY_PREFIX, from_seq)..=codec::prefixed_key(ENTRY_PREFIX, to_seq))
        });
        Entries { inner, times }
    }

    /// Every stored checkpoint, in sequence order, decoded but not verified.
    ///
    /// # Errors
    /// [`AuditError::Tampered`] for an undecodable checkpoint; [`AuditError::Storage`] when sled fails.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.checkpoints_between(1, u64::MAX)
    }

    pub(crate) fn checkpoints_between(&self, from_seq: u64, to_seq: u64) -> Result<Vec<Checkpoint>> {
        if from_seq > to_seq {
            return Ok(Vec::new());
        }
        let range = codec::prefixed_key(CHECKPOINT_PREFIX, from_seq)..=codec::prefixed_key(CHECKPOINT_PREFIX, to_seq);
        let mut out = Vec::new();
        for item in self.tree.range(range) {
            let (key, value) = item?;
            let seq = codec::key_seq(CHECKPOINT_PREFIX, &key).unwrap_or(0);
            let cp = StoredCheckpoint::decode(&value)
                .map_err(|r| AuditError::tampered(seq, format!("undecodable checkpoint: {r}")))?;
            out.push(Checkpoint::from_stored(&cp));
        }
        Ok(out)
    }

    /// Verifies the chain up to the current head: every entry's hash and link to the previous entry, the
    /// sequence without gaps up to the head this chain appended, and every checkpoint's hash and signature against
    /// [`AuditChain::verifier`]. Needs no plaintext and no data keys, so it keeps passing after erasures.
    /// Appends may continue meanwhile; they are not covered.
    ///
    /// # Errors
    /// [`AuditError::Tampered`] at the first position that fails; [`AuditError::Storage`] when sled fails.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_with(&self.verifier)
    }

    /// [`AuditChain::verify`] with other trusted keys.
    ///
    /// # Errors
    /// As [`AuditChain::verify`].
    pub fn verify_with(&self, verifier: &AuditVerifier) -> Result<VerifyReport> {
        let head = *self.lock();
        verify::verify_to(&self.tree, verifier, head)
    }

    /// The current head, after signing a checkpoint over it at `sign_at` if given. Exports read up to this
    /// head only, so appends may go on meanwhile.
    pub(crate) fn snapshot(&self, sign_at: Option<i64>) -> Result<Head> {
        let head = self.lock();
        if let Some(time) = sign_at {
            self.checkpoint_locked(&head, time)?;
        }
        Ok(*head)
    }

    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// The head lock. A panic while holding it cannot leave the head half-written (it is replaced only
    /// after the batch is applied), so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, Head> {
        self.head.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Entries read back from the chain, in sequence order: see [`AuditChain::entries`].
///
/// An item is [`AuditError::Tampered`] when a stored value does not decode; reading goes on after it.
pub struct Entries {
    inner: Option<sled::Iter>,
    times: Option<(i64, i64)>,
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries").field("times", &self.times).finish_non_exhaustive()
    }
}

impl Iterator for Entries {
    type Item = Result<AuditEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let item = self.inner.as_mut()?.next()?;
            let entry = item.map_err(AuditError::from).and_then(|(key, value)| {
                let seq =
                    codec::key_seq(ENTRY_PREFIX, &key).ok_or_else(|| AuditError::tampered(0, "malformed entry key"))?;
                AuditEntry::from_stored(seq, &value)
            });
            match (&entry, self.times) {
                (Ok(e), Some((from, to))) if !(from..to).contains(&e.time_micros) => {}
                _ => return Some(entry),
            }
        }
    }
}
