//! The outbox itself: messages in a sled tree, a due index, per-state counters, and the state machine
//! that records attempts.
//!
//! Layout of the tree (layout version 1, marked by `v/layout`):
//!
//! | key | value |
//! |---|---|
//! | `v/layout` | one byte, the layout version (1) |
//! | `m/` + 16-byte message id | the message ([`crate::codec`]: version byte + JSON) |
//! | `d/` + 8-byte order-preserving `next_attempt_at` + 16-byte id | empty: one entry per pending message |
//! | `c/pending`, `c/delivered`, `c/dead_letter` | 8-byte big-endian counts |
//!
//! Contracts: every change of a message, its index entry and the counters is one sled transaction, so a
//! crash leaves all or none of it. `enqueue`, `enqueue_all`, `record_attempt` and `prune_finished` return
//! after an fsync (acknowledged means durable); a claim is not flushed, since losing one only makes a
//! message due earlier. Reopening the tree resumes every pending message.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lethe_domain::UtcMicros;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use tokio::sync::Notify;

use crate::codec;
use crate::{
    Attempt, Disposition, Message, MessageId, MessageState, OutboxError, Outcome, Recipient, Result, RetryPolicy,
    StateKind, Topic, MAX_ACK_BYTES, MAX_BODY_BYTES,
};

const LAYOUT_KEY: &[u8] = b"v/layout";
const LAYOUT_VERSION: u8 = 1;
const MESSAGE_PREFIX: &[u8] = b"m/";
const DUE_PREFIX: &[u8] = b"d/";
const DUE_KEY_LEN: usize = 2 + 8 + 16;

/// Counts of stored messages per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages waiting for an attempt (including those in flight).
    pub pending: u64,
    /// Messages a recipient acknowledged with 2xx.
    pub delivered: u64,
    /// Messages given up on.
    pub dead_letter: u64,
}

/// A durable outbox of notifications to a fixed set of recipients. Cheap to clone (shared handle).
///
/// All methods block on sled (and on fsync where stated): from async code, call them in
/// `tokio::task::spawn_blocking`, as [`crate::Deliverer`] does.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    tree: sled::Tree,
    recipients: BTreeMap<String, Recipient>,
    policy: RetryPolicy,
    wake: Notify,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("recipients", &self.inner.recipients.len())
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<OutboxError>>;

fn abort<T>(e: OutboxError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn message_key(id: MessageId) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[..2].copy_from_slice(MESSAGE_PREFIX);
    k[2..].copy_from_slice(id.as_bytes());
    k
}

/// Microseconds with the sign bit flipped, big-endian: byte order equals numeric order.
fn ordered_time(t: UtcMicros) -> [u8; 8] {
    ((t.0 as u64) ^ (1 << 63)).to_be_bytes()
}

fn due_key(t: UtcMicros, id: MessageId) -> [u8; DUE_KEY_LEN] {
    let mut k = [0u8; DUE_KEY_LEN];
    k[..2].copy_from_slice(DUE_PREFIX);
    k[2..10].copy_from_slice(&ordered_time(t));
    k[10..].copy_from_slice(id.as_bytes());
    k
}

fn parse_due_key(k: &[u8]) -> Result<(UtcMicros, MessageId)> {
    if k.len() != DUE_KEY_LEN || !k.starts_with(DUE_PREFIX) {
        return Err(OutboxError::Corrupt("bad due index key"));
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&k[2..10]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&k[10..]);
    Ok((UtcMicros((u64::from_be_bytes(t) ^ (1 << 63)) as i64), MessageId::from_bytes(id)))
}

/// The last due-index key at or before `now`.
fn due_upper(now: UtcMicros) -> [u8; DUE_KEY_LEN] {
    let mut k = due_key(now, MessageId::from_bytes([0xff; 16]));
    k[10..].fill(0xff);
    k
}

fn counter_key(kind: StateKind) -> &'static [u8] {
    match kind {
        StateKind::Pending => b"c/pending",
        StateKind::Delivered => b"c/delivered",
        StateKind::DeadLetter => b"c/dead_letter",
    }
}

fn read_count(raw: Option<sled::IVec>) -> Result<u64> {
    match raw {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| OutboxError::Corrupt("bad counter"))?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

fn bump(tx: &TransactionalTree, kind: StateKind, delta: i64) -> TxResult<()> {
    let key = counter_key(kind);
    let current = match read_count(tx.get(key)?) {
        Ok(c) => c,
        Err(e) => return abort(e),
    };
    let next = current.saturating_add_signed(delta);
    tx.insert(key, &next.to_be_bytes())?;
    Ok(())
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Outbox {
    /// Opens the outbox on `tree` (created empty if new), for these recipients and this retry policy.
    /// Messages already in the tree are kept: pending ones are delivered again from where they stopped.
    ///
    /// # Errors
    /// [`OutboxError::DuplicateRecipient`] if two recipients share an id; [`OutboxError::InvalidRetryPolicy`]
    /// if the policy is invalid; [`OutboxError::UnsupportedVersion`] if the tree was written by a newer
    /// layout; [`OutboxError::Storage`] if sled fails.
    pub fn open(tree: sled::Tree, recipients: Vec<Recipient>, policy: RetryPolicy) -> Result<Self> {
        policy.validate()?;
        let mut by_id = BTreeMap::new();
        for r in recipients {
            if r.secret().is_none() {
                tracing::warn!(recipient = r.id(), "outbox recipient has no secret: notifications go unsigned");
            }
            if r.is_insecure() {
                tracing::warn!(recipient = r.id(), "outbox recipient endpoint is plain http to a remote host");
            }
            if by_id.insert(r.id().to_owned(), r).is_some() {
                return Err(OutboxError::DuplicateRecipient);
            }
        }
        match tree.get(LAYOUT_KEY)? {
            None => {
                tree.insert(LAYOUT_KEY, &[LAYOUT_VERSION])?;
                tree.flush()?;
            }
            Some(v) if v.as_ref() == [LAYOUT_VERSION] => {}
            Some(v) => match v.as_ref() {
                [other] => return Err(OutboxError::UnsupportedVersion(*other)),
                _ => return Err(OutboxError::Corrupt("bad layout marker")),
            },
        }
        let outbox = Self { inner: Arc::new(Inner { tree, recipients: by_id, policy, wake: Notify::new() }) };
        let stats = outbox.stats()?;
        tracing::info!(
            recipients = outbox.inner.recipients.len(),
            pending = stats.pending,
            delivered = stats.delivered,
            dead_letter = stats.dead_letter,
            "outbox opened"
        );
        Ok(outbox)
    }

    /// The configured recipients, ordered by id.
    pub fn recipients(&self) -> impl Iterator<Item = &Recipient> {
        self.inner.recipients.values()
    }

    /// The recipient with this id, if configured.
    #[must_use]
    pub fn recipient(&self, id: &str) -> Option<&Recipient> {
        self.inner.recipients.get(id)
    }

    /// The retry policy.
    #[must_use]
    pub fn policy(&self) -> &RetryPolicy {
        &self.inner.policy
    }

    /// Waits until a message is enqueued (or was, since the last wait). Used by the delivery loop.
    pub(crate) async fn enqueued(&self) {
        self.inner.wake.notified().await;
    }

    /// Durably enqueues a message for one recipient, due at once; returns its id.
    ///
    /// The body must carry no external identifier or personal data (see [`Message`]).
    ///
    /// # Errors
    /// [`OutboxError::UnknownRecipient`] if no recipient has this id; [`OutboxError::BodyTooLarge`] over
    /// [`MAX_BODY_BYTES`]; [`OutboxError::Storage`] if sled fails (then nothing was enqueued).
    pub fn enqueue(
        &self,
        recipient_id: &str,
        topic: &Topic,
        body: serde_json::Value,
        now: UtcMicros,
    ) -> Result<MessageId> {
        if !self.inner.recipients.contains_key(recipient_id) {
            return Err(OutboxError::UnknownRecipient);
        }
        let message = new_message(recipient_id, topic, body, now)?;
        let id = message.id;
        self.insert_new(vec![message])?;
        Ok(id)
    }

    /// Durably enqueues one message per recipient accepted by `filter`, with the body `body_for` makes for
    /// it, all in one transaction (all or none); returns the ids in recipient-id order.
    ///
    /// # Errors
    /// As [`Outbox::enqueue`]; if any body is too large, nothing is enqueued.
    pub fn enqueue_all(
        &self,
        topic: &Topic,
        filter: impl Fn(&Recipient) -> bool,
        mut body_for: impl FnMut(&Recipient) -> serde_json::Value,
        now: UtcMicros,
    ) -> Result<Vec<MessageId>> {
        let messages = self
            .recipients()
            .filter(|r| filter(r))
            .map(|r| new_message(r.id(), topic, body_for(r), now))
            .collect::<Result<Vec<_>>>()?;
        let ids = messages.iter().map(|m| m.id).collect();
        if !messages.is_empty() {
            self.insert_new(messages)?;
        }
        Ok(ids)
    }

    fn insert_new(&self, messages: Vec<Message>) -> Result<()> {
        let encoded = messages
            .iter()
            .map(|m| {
                let next = match m.state {
                    MessageState::Pending { next_attempt_at } => next_attempt_at,
                    _ => m.created_at,
                };
                Ok((message_key(m.id), due_key(next, m.id), codec::encode(m)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let count = i64::try_from(encoded.len()).unwrap_or(i64::MAX);
        self.inner.tree.transaction(|tx| {
            for (mkey, dkey, value) in &encoded {
                tx.insert(&mkey[..], value.as_slice())?;
                tx.insert(&dkey[..], &[][..])?;
            }
            bump(tx, StateKind::Pending, count)
        })?;
        self.inner.tree.flush()?;
        for m in &messages {
            tracing::info!(message_id = %m.id, recipient = %m.recipient_id, topic = %m.topic, "outbox message enqueued");
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// The message with this id, if any.
    ///
    /// # Errors
    /// [`OutboxError::Corrupt`] or [`OutboxError::UnsupportedVersion`] if its record cannot be read;
    /// [`OutboxError::Storage`] if sled fails.
    pub fn get(&self, id: MessageId) -> Result<Option<Message>> {
        self.inner.tree.get(message_key(id))?.map(|raw| codec::decode(&raw)).transpose()
    }

    /// Pending messages due at `now` (their next attempt at or before it), soonest first. Read only: see
    /// [`Outbox::claim_due`] to take them for delivery.
    ///
    /// # Errors
    /// As [`Outbox::get`].
    pub fn due(&self, now: UtcMicros) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        for key in self.inner.tree.range(DUE_PREFIX..=&due_upper(now)[..]).keys() {
            let (_, id) = parse_due_key(&key?)?;
            match self.get(id)? {
                Some(m) => out.push(m),
                None => tracing::warn!(message_id = %id, "outbox due index names a missing message"),
            }
        }
        Ok(out)
    }

    /// When the soonest pending message is due, if any is pending.
    ///
    /// # Errors
    /// [`OutboxError::Storage`] if sled fails; [`OutboxError::Corrupt`] for a bad index key.
    pub fn next_due_at(&self) -> Result<Option<UtcMicros>> {
        match self.inner.tree.scan_prefix(DUE_PREFIX).keys().next() {
            None => Ok(None),
            Some(key) => Ok(Some(parse_due_key(&key?)?.0)),
        }
    }

    /// Takes up to `limit` messages due at `now` for delivery: each moves, in one transaction, to
    /// `next_attempt_at = now + lease`, so a concurrent claim cannot take it, and a delivery that crashes
    /// before [`Outbox::record_attempt`] is retried once the lease runs out. Soonest first.
    ///
    /// # Errors
    /// As [`Outbox::get`]; then nothing was claimed.
    pub fn claim_due(&self, now: UtcMicros, limit: usize, lease: Duration) -> Result<Vec<Message>> {
        let keys = self
            .inner
            .tree
            .range(DUE_PREFIX..=&due_upper(now)[..])
            .keys()
            .take(limit)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let until = UtcMicros(now.0.saturating_add(micros(lease)));
        let claimed = self.inner.tree.transaction(|tx| {
            let mut claimed = Vec::with_capacity(keys.len());
            for key in &keys {
                // Gone since the scan: claimed or recorded by someone else.
                if tx.get(key)?.is_none() {
                    continue;
                }
                let (at, id) = match parse_due_key(key) {
                    Ok(parsed) => parsed,
                    Err(e) => return abort(e),
                };
                tx.remove(key)?;
                let Some(raw) = tx.get(message_key(id))? else {
                    // A dangling index entry: drop it.
                    continue;
                };
                let mut m = match codec::decode(&raw) {
                    Ok(m) => m,
                    Err(e) => return abort(e),
                };
                if m.state != (MessageState::Pending { next_attempt_at: at }) {
                    // The index disagrees with the message; the message wins.
                    if let MessageState::Pending { next_attempt_at } = m.state {
                        tx.insert(&due_key(next_attempt_at, id)[..], &[][..])?;
                    }
                    continue;
                }
                m.state = MessageState::Pending { next_attempt_at: until };
                let encoded = match codec::encode(&m) {
                    Ok(e) => e,
                    Err(e) => return abort(e),
                };
                tx.insert(&message_key(id)[..], encoded)?;
                tx.insert(&due_key(until, id)[..], &[][..])?;
                claimed.push(m);
            }
            Ok(claimed)
        })?;
        Ok(claimed)
    }

    /// Records a delivery attempt and moves the message on, durably; returns the updated message.
    ///
    /// A pending message becomes [`MessageState::Delivered`] on 2xx (keeping `ack` if it is at most
    /// [`MAX_ACK_BYTES`] of JSON), [`MessageState::DeadLetter`] on a permanent refusal or once
    /// `max_attempts` attempts have failed, and otherwise stays pending until
    /// `attempt.at + policy.delay(..)`. The schedule is driven by `attempt.at`, never by the system clock.
    /// A message no longer pending (delivered by another, late attempt) only gains the attempt in its history.
    ///
    /// # Errors
    /// [`OutboxError::NotFound`] if there is no such message; as [`Outbox::get`] otherwise.
    pub fn record_attempt(&self, id: MessageId, attempt: Attempt, ack: Option<serde_json::Value>) -> Result<Message> {
        let ack = ack.filter(|a| serde_json::to_vec(a).is_ok_and(|b| b.len() <= MAX_ACK_BYTES));
        let policy = &self.inner.policy;
        let message = self.inner.tree.transaction(|tx| {
            let Some(raw) = tx.get(message_key(id))? else { return abort(OutboxError::NotFound) };
            let mut m = match codec::decode(&raw) {
                Ok(m) => m,
                Err(e) => return abort(e),
            };
            m.attempts.push(attempt.clone());
            if let MessageState::Pending { next_attempt_at } = m.state {
                tx.remove(&due_key(next_attempt_at, id)[..])?;
                m.state = next_state(policy, &m, &attempt, ack.clone());
                match m.state {
                    MessageState::Pending { next_attempt_at } => {
                        tx.insert(&due_key(next_attempt_at, id)[..], &[][..])?;
                    }
                    ref finished => {
                        bump(tx, StateKind::Pending, -1)?;
                        bump(tx, finished.kind(), 1)?;
                    }
                }
            }
            let encoded = match codec::encode(&m) {
                Ok(e) => e,
                Err(e) => return abort(e),
            };
            tx.insert(&message_key(id)[..], encoded)?;
            Ok(m)
        })?;
        self.inner.tree.flush()?;
        log_attempt(&message, &attempt);
        Ok(message)
    }

    /// Every stored message, or those in one state, in id (creation) order. Reads and decodes the whole
    /// tree: for administration, not for the delivery path.
    ///
    /// # Errors
    /// As [`Outbox::get`].
    pub fn list(&self, state: Option<StateKind>) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        for entry in self.inner.tree.scan_prefix(MESSAGE_PREFIX).values() {
            let m = codec::decode(&entry?)?;
            if state.is_none_or(|k| m.state.kind() == k) {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// How many messages are in each state (kept as counters: no scan).
    ///
    /// # Errors
    /// [`OutboxError::Storage`] if sled fails; [`OutboxError::Corrupt`] for a bad counter.
    pub fn stats(&self) -> Result<Stats> {
        let counts = self.inner.tree.transaction(|tx| {
            let mut counts = [0u64; 3];
            for (slot, kind) in counts.iter_mut().zip([StateKind::Pending, StateKind::Delivered, StateKind::DeadLetter])
            {
                *slot = match read_count(tx.get(counter_key(kind))?) {
                    Ok(c) => c,
                    Err(e) => return abort(e),
                };
            }
            Ok(counts)
        })?;
        Ok(Stats { pending: counts[0], delivered: counts[1], dead_letter: counts[2] })
    }

    /// Removes delivered and dead-lettered messages that finished before `before` (retention), durably;
    /// returns how many. Pending messages are never removed. sled keeps removed bytes in its files until
    /// they are reused: this limits what Lethe shows, not what forensics can find.
    ///
    /// # Errors
    /// As [`Outbox::get`].
    pub fn prune_finished(&self, before: UtcMicros) -> Result<usize> {
        let mut doomed = Vec::new();
        for entry in self.inner.tree.scan_prefix(MESSAGE_PREFIX).values() {
            let m = codec::decode(&entry?)?;
            match m.state {
                MessageState::Delivered { at, .. } | MessageState::DeadLetter { at, .. } if at < before => {
                    doomed.push(m.id);
                }
                _ => {}
            }
        }
        let mut removed = 0;
        for chunk in doomed.chunks(512) {
            removed += self.inner.tree.transaction(|tx| {
                let mut removed = 0;
                for &id in chunk {
                    let Some(raw) = tx.remove(&message_key(id)[..])? else { continue };
                    let kind = match codec::decode(&raw) {
                        Ok(m) => m.state.kind(),
                        Err(e) => return abort(e),
                    };
                    bump(tx, kind, -1)?;
                    removed += 1;
                }
                Ok(removed)
            })?;
        }
        if removed > 0 {
            self.inner.tree.flush()?;
            tracing::info!(removed, "outbox finished messages pruned");
        }
        Ok(removed)
    }
}

fn new_message(recipient_id: &str, topic: &Topic, body: serde_json::Value, now: UtcMicros) -> Result<Message> {
    let size = serde_json::to_vec(&body).map_err(|_| OutboxError::Encode)?.len();
    if size > MAX_BODY_BYTES {
        return Err(OutboxError::BodyTooLarge { max: MAX_BODY_BYTES });
    }
    Ok(Message {
        id: MessageId::new_v7(),
        recipient_id: recipient_id.to_owned(),
        topic: topic.clone(),
        body,
        created_at: now,
        attempts: Vec::new(),
        state: MessageState::Pending { next_attempt_at: now },
    })
}

/// The state after `attempt`, which `m.attempts` already holds, for a message that was pending.
fn next_state(policy: &RetryPolicy, m: &Message, attempt: &Attempt, ack: Option<serde_json::Value>) -> MessageState {
    match (&attempt.outcome, attempt.outcome.disposition()) {
        (Outcome::Status { code, .. }, Disposition::Delivered) => {
            MessageState::Delivered { at: attempt.at, status: *code, ack }
        }
        (_, Disposition::Permanent) => {
            MessageState::DeadLetter { at: attempt.at, last_error: attempt.outcome.summary() }
        }
        _ if m.attempt_count() >= policy.max_attempts => MessageState::DeadLetter {
            at: attempt.at,
            last_error: format!("{} after {} attempts", attempt.outcome.summary(), m.attempt_count()),
        },
        _ => MessageState::Pending { next_attempt_at: policy.next_attempt_at(m.id, m.attempt_count(), attempt.at) },
    }
}

fn log_attempt(m: &Message, attempt: &Attempt) {
    let status = match &attempt.outcome {
        Outcome::Status { code, .. } => Some(*code),
        Outcome::Error(_) => None,
    };
    let attempts = m.attempts.len();
    match &m.state {
        MessageState::Delivered { .. } => tracing::info!(
            message_id = %m.id, recipient = %m.recipient_id, topic = %m.topic, status, attempts,
            duration_ms = attempt.duration_ms, "outbox message delivered"
        ),
        MessageState::Pending { next_attempt_at } => tracing::info!(
            message_id = %m.id, recipient = %m.recipient_id, topic = %m.topic, status, attempts,
            outcome = %attempt.outcome.summary(), next_attempt_at = next_attempt_at.0, "outbox delivery failed, will retry"
        ),
        MessageState::DeadLetter { last_error, .. } => tracing::warn!(
            message_id = %m.id, recipient = %m.recipient_id, topic = %m.topic, status, attempts,
            last_error = %last_error, "outbox message dead-lettered"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_sort_by_time_including_negative() {
        let id = MessageId::from_bytes([7; 16]);
        let times = [i64::MIN, -1_000_000, -1, 0, 1, 1_700_000_000_000_000, i64::MAX];
        let keys: Vec<_> = times.iter().map(|&t| due_key(UtcMicros(t), id)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for (&t, k) in times.iter().zip(&keys) {
            assert_eq!(parse_due_key(k).unwrap(), (UtcMicros(t), id));
            assert!(k[..] <= due_upper(UtcMicros(t))[..]);
        }
        assert!(parse_due_key(b"d/short").is_err());
    }
}
