//! Verification of a chain stored in a sled tree: walks the entries and checkpoints in sequence order and
//! stops at the first position that fails, naming it.

use serde::{Deserialize, Serialize};

use crate::codec::{self, Body, Hash, Head, StoredCheckpoint, StoredEntry, CHECKPOINT_PREFIX, ENTRY_PREFIX};
use crate::{AuditError, AuditVerifier, Result};

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The first sequence number checked (1 for a whole chain; `k` for an export starting at `k`).
    pub first_seq: u64,
    /// The last sequence number checked (`first_seq - 1` when there were no entries).
    pub last_seq: u64,
    /// Entries whose hash and link were checked.
    pub entries_checked: u64,
    /// Checkpoints whose hash and signature were checked.
    pub checkpoints_checked: u64,
    /// The highest sequence number covered by a valid checkpoint, if any.
    pub last_signed_seq: Option<u64>,
    /// Entries after the last checkpoint (or after `first_seq - 1` without one): a hash chain only, not yet
    /// anchored by a signature.
    pub unsigned_tail: u64,
    /// Hex hash of entry `last_seq` (the `prev_hash` given for `first_seq` when there were no entries).
    pub head_hash: String,
}

impl VerifyReport {
    /// True when every checked entry is covered by a valid checkpoint.
    #[must_use]
    pub fn fully_signed(&self) -> bool {
        self.unsigned_tail == 0
    }
}

/// The running state of a verification, shared by the sled and JSONL walks.
#[derive(Debug)]
pub(crate) struct Walk {
    first_seq: u64,
    last_seq: u64,
    /// The hash the next entry must name as `prev_hash`; `None` before the first entry of a sub-range.
    prev: Option<Hash>,
    entries: u64,
    checkpoints: u64,
    last_signed: Option<u64>,
}

impl Walk {
    pub(crate) fn new(first_seq: u64, prev: Option<Hash>) -> Self {
        Self { first_seq, last_seq: first_seq.saturating_sub(1), prev, entries: 0, checkpoints: 0, last_signed: None }
    }

    /// The sequence number the next entry must have.
    pub(crate) fn next_seq(&self) -> u64 {
        self.last_seq.saturating_add(1)
    }

    /// The last entry accepted, if any.
    pub(crate) fn last_entry(&self) -> Option<u64> {
        (self.entries > 0).then_some(self.last_seq)
    }

    /// Accepts entry `seq` (= `next_seq()`, whose hash over its body the caller checked) if it links to the
    /// previous one.
    pub(crate) fn entry(&mut self, seq: u64, prev: &Hash, hash: &Hash) -> Result<()> {
        debug_assert_eq!(seq, self.next_seq(), "callers check the position first");
        if self.prev.is_some_and(|p| p != *prev) {
            return Err(AuditError::tampered(seq, "prev_hash does not match the previous entry's hash"));
        }
        self.prev = Some(*hash);
        self.last_seq = seq;
        self.entries += 1;
        Ok(())
    }

    /// Checks a checkpoint that must cover the last accepted entry.
    pub(crate) fn checkpoint(&mut self, cp: &StoredCheckpoint, verifier: &AuditVerifier) -> Result<()> {
        let Some(at) = self.last_entry() else {
            return Err(AuditError::tampered(self.first_seq, "checkpoint before the first entry"));
        };
        if cp.seq != at {
            return Err(AuditError::tampered(at, format!("checkpoint for seq {} stored at seq {at}", cp.seq)));
        }
        if self.prev != Some(cp.hash) {
            return Err(AuditError::tampered(at, "checkpoint hash does not match the chain"));
        }
        verifier.check(cp).map_err(|reason| AuditError::tampered(at, reason))?;
        self.checkpoints += 1;
        self.last_signed = Some(at);
        Ok(())
    }

    /// The report, once the caller has checked that the walk reached the expected end.
    pub(crate) fn report(&self) -> VerifyReport {
        let signed_to = self.last_signed.unwrap_or(self.first_seq.saturating_sub(1));
        VerifyReport {
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            entries_checked: self.entries,
            checkpoints_checked: self.checkpoints,
            last_signed_seq: self.last_signed,
            unsigned_tail: self.last_seq.saturating_sub(signed_to),
            head_hash: hex::encode(self.prev.unwrap_or(codec::GENESIS)),
        }
    }
}

/// Checks one stored entry value found under key `seq`, and links it into the walk.
pub(crate) fn check_stored_entry(walk: &mut Walk, seq: u64, value: &[u8]) -> Result<()> {
    let undecodable = |reason: &str| AuditError::tampered(seq, format!("undecodable entry: {reason}"));
    let stored = StoredEntry::split(value).map_err(undecodable)?;
    if codec::entry_hash(&stored.prev, stored.body) != stored.hash {
        return Err(AuditError::tampered(seq, "hash mismatch"));
    }
    let body = Body::decode(stored.body).map_err(undecodable)?;
    if body.seq != seq {
        return Err(AuditError::tampered(seq, "entry stored under the wrong sequence number"));
    }
    walk.entry(seq, &stored.prev, &stored.hash)
}

/// Verifies entries `1 ..= head.seq` of `tree` and the checkpoints among them, and that entry `head.seq`
/// has `head.hash`. Entries and checkpoints after `head.seq` are not looked at (a live chain may be
/// appending them).
pub(crate) fn verify_to(tree: &sled::Tree, verifier: &AuditVerifier, head: Head) -> Result<VerifyReport> {
    let mut walk = Walk::new(1, Some(codec::GENESIS));
    if head.seq == 0 {
        return Ok(walk.report());
    }
    let entry_range = codec::prefixed_key(ENTRY_PREFIX, 1)..=codec::prefixed_key(ENTRY_PREFIX, head.seq);
    let cp_range = codec::prefixed_key(CHECKPOINT_PREFIX, 1)..=codec::prefixed_key(CHECKPOINT_PREFIX, head.seq);
    let mut checkpoints = tree.range(cp_range);
    let mut next_cp = next_checkpoint(&mut checkpoints)?;
    for item in tree.range(entry_range) {
        let (key, value) = item?;
        let expected = walk.next_seq();
        let seq =
            codec::key_seq(ENTRY_PREFIX, &key).ok_or_else(|| AuditError::tampered(expected, "malformed entry key"))?;
        if seq != expected {
            return Err(AuditError::tampered(expected, "entry missing"));
        }
        check_stored_entry(&mut walk, seq, &value)?;
        while let Some((cp_seq, value)) = next_cp.take_if(|(cp_seq, _)| *cp_seq <= seq) {
            let cp = StoredCheckpoint::decode(&value)
                .map_err(|r| AuditError::tampered(cp_seq, format!("undecodable checkpoint: {r}")))?;
            if cp_seq != seq || cp.seq != cp_seq {
                return Err(AuditError::tampered(cp_seq, "checkpoint stored under the wrong sequence number"));
            }
            walk.checkpoint(&cp, verifier)?;
            next_cp = next_checkpoint(&mut checkpoints)?;
        }
    }
    if walk.last_seq != head.seq {
        return Err(AuditError::tampered(walk.next_seq(), "entry missing"));
    }
    if let Some((cp_seq, _)) = next_cp {
        return Err(AuditError::tampered(cp_seq, "checkpoint for a missing entry"));
    }
    if walk.prev != Some(head.hash) {
        return Err(AuditError::tampered(head.seq, "chain head does not match the last entry"));
    }
    Ok(walk.report())
}

/// The next checkpoint (sequence number from its key, value); a malformed key is reported at the sequence
/// number its first eight bytes spell.
fn next_checkpoint(iter: &mut sled::Iter) -> Result<Option<(u64, sled::IVec)>> {
    let Some(item) = iter.next() else { return Ok(None) };
    let (key, value) = item?;
    match codec::key_seq(CHECKPOINT_PREFIX, &key) {
        Some(seq) => Ok(Some((seq, value))),
        None => Err(AuditError::tampered(loose_seq(&key), "malformed checkpoint key")),
    }
}

fn loose_seq(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(key.iter().skip(2)) {
        *d = *s;
    }
    u64::from_be_bytes(b)
}

/// The last sequence number with a key under `prefix`, 0 when there is none.
pub(crate) fn last_key_seq(tree: &sled::Tree, prefix: &[u8; 2]) -> Result<u64> {
    match tree.scan_prefix(prefix).next_back() {
        None => Ok(0),
        Some(item) => {
            let (key, _) = item?;
            Ok(codec::key_seq(prefix, &key).unwrap_or_else(|| loose_seq(&key)))
        }
    }
}

/// The head of the chain stored in `tree`: its last entry's sequence number and stored hash ([`Head::EMPTY`]
/// for an empty tree).
pub(crate) fn last_entry_head(tree: &sled::Tree) -> Result<Head> {
    let Some(item) = tree.scan_prefix(ENTRY_PREFIX).next_back() else { return Ok(Head::EMPTY) };
    let (key, value) = item?;
    let seq = codec::key_seq(ENTRY_PREFIX, &key)
        .ok_or_else(|| AuditError::tampered(loose_seq(&key), "malformed entry key"))?;
    let stored =
        StoredEntry::split(&value).map_err(|r| AuditError::tampered(seq, format!("undecodable entry: {r}")))?;
    Ok(Head { seq, hash: stored.hash })
}

/// Verifies a chain stored in `tree` that no [`AuditChain`](crate::AuditChain) is appending to: for
/// forensics, or when [`AuditChain::open`](crate::AuditChain::open) refuses a damaged tree.
///
/// Checks every entry from 1 to the last stored one (hash, link, no gap) and every checkpoint (hash and
/// signature against `verifier`, and that its entry exists). Entries removed from the end are caught only
/// where a checkpoint covered them; a live [`AuditChain::verify`](crate::AuditChain::verify) also knows
/// the head it appended.
///
/// # Errors
/// [`AuditError::Tampered`] at the first position that fails; [`AuditError::Storage`] when sled fails.
pub fn verify_tree(tree: &sled::Tree, verifier: &AuditVerifier) -> Result<VerifyReport> {
    let head = last_entry_head(tree)?;
    let report = verify_to(tree, verifier, head)?;
    let last_cp = last_key_seq(tree, CHECKPOINT_PREFIX)?;
    if last_cp > head.seq {
        return Err(AuditError::tampered(head.seq.saturating_add(1), "entry missing (a checkpoint covers it)"));
    }
    Ok(report)
}
