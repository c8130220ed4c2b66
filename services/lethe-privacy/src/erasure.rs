//! Erasure (GDPR Art. 17, CCPA §1798.105; R-ERASE-*): a request logged and started, the log's
//! crypto-shredding, every registered store told to forget, recipients notified through the outbox
//! (Art. 19), the key-epoch rotation scheduled, and a signed certificate that holds no personal data.
//! An erasure that a store could not finish stays pending (see [`crate::pending`]) and is retried
//! until every store has forgotten.

use std::collections::BTreeSet;
use std::sync::Arc;

use ed25519_dalek::Signer;
use lethe_audit::AuditKind;
use lethe_collect::ApiError;
use lethe_domain::schema::types;
use lethe_domain::{Position, Pseudonym, UtcMicros};
use lethe_dsr::{
    ActorRole, Channel, DenialReason, Law, Outcome, Request, RequestId, RequestKind, Status, Step, SubjectDigest,
};
use lethe_outbox::Topic;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::pending::PendingErasure;
use crate::state::{call_hook, dsr_error, ErasureHook, Privacy};
use crate::time::{jiff_ts, rfc3339};

/// The proof of an erasure handed to the subject and kept for the DPO. It names the subject only by
/// the SHA-256 of its pseudonym, and is signed with the audit chain's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErasureCertificate {
    pub certificate_id: String,
    pub request_id: String,
    /// SHA-256 (hex) of the subject's pseudonym.
    pub subject_digest: String,
    /// The data keys destroyed (key ids: 0 is the permanent key, others are retention periods).
    pub key_ids: Vec<u32>,
    /// The key epoch that wrapped them; the erasure is final once it is rotated away.
    pub wrapped_under_epoch: u32,
    pub erased_at: String,
    /// The erasure is final for the data directory and every backup by this time (key rotation).
    pub final_by: String,
    pub fence_position: u64,
    pub log_head_before: u64,
    pub log_head_after: u64,
    pub events_shredded: u64,
    /// False when the subject was already erased; the certificate then repeats the first erasure.
    pub newly_erased: bool,
    /// Every store the erasure reached.
    pub stores_touched: Vec<String>,
    /// Recipients notified through the outbox (GDPR Art. 19).
    pub recipients_notified: Vec<String>,
    /// Key id and Ed25519 signature (hex) over the certificate's canonical JSON without this field.
    pub signed_by: String,
    pub signature: String,
}

impl ErasureCertificate {
    /// The bytes the signature covers: the certificate's JSON with an empty signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = String::new();
        serde_json::to_vec(&unsigned).expect("certificates serialize")
    }
}

/// Who asked, for the request log.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub role: &'a str,
    pub law: Law,
    pub channel: Channel,
}

/// Erases a subject; blocking (fsyncs): call from a blocking thread.
///
/// The request is logged and started, the log crypto-shreds the subject, the consent book and every
/// registered store forget it, the recipients of its data are notified through the outbox (Art. 19),
/// and a signed certificate completes the request. A store that fails stops neither the other stores
/// nor the notices: the erasure is then kept pending in the privacy database, with the certificate id
/// the notices carry, the stores that forgot and those that did not, and the recipients notified.
/// The background work ([`retry_pending`]) calls the failed stores again with a bounded backoff, and
/// a repeated request for the subject resumes the pending erasure at once instead of opening another;
/// once every store has forgotten, the certificate is issued under the first attempt's id, listing
/// every store and the recipients notified then (no notice is queued twice), and the request
/// completes. While an erasure is pending, the DPO cannot deny its request, and completes it only
/// when none of the stores it waits for is run any more ([`close_by_hand`]).
///
/// # Errors
/// A legal hold (409); `erasure_incomplete` (503) naming the stores that still hold the subject while
/// the erasure is pending; `outbox_unavailable` (503) when a notice could not be queued (it is queued
/// by the next retry); other storage failures (503).
pub fn erase(privacy: &Privacy, subject: &Pseudonym, asker: Asker<'_>) -> Result<ErasureCertificate, ApiError> {
    let now = UtcMicros::now();
    let digest = SubjectDigest::of_pseudonym(subject.as_bytes());
    let actor = ActorRole::parse(asker.role).map_err(dsr_error)?;
    let requests = privacy.requests.by_subject(&digest).map_err(dsr_error)?;
    // A hold stops an erasure while it stands, or when a request was denied because of it; a request
    // denied for another reason while held keeps its hold on record only as history.
    let held = requests.iter().any(|r| {
        r.legal_hold().is_some()
            && (r.status() == Status::OnHold
                || matches!(r.outcome(), Some(Outcome::Denied { reason: DenialReason::LegalHold, .. })))
    });
    if held {
        return Err(ApiError::new(
            409,
            "legal_hold",
            "a legal hold stops erasure of this subject; the DPO can tell why",
        ));
    }
    // An erasure of the subject that is still pending is resumed, not started again: its failed
    // stores are called now, and it keeps its request and its certificate id.
    {
        let _settling = lock_pending(privacy);
        for r in requests.iter().filter(|r| r.kind() == RequestKind::Erasure && r.status().is_open()) {
            if let Some(pending) = privacy.pending_erasures.get(r.id())? {
                return resume(privacy, subject, pending, asker.role, now);
            }
        }
    }
    let mut request =
        Request::receive(RequestKind::Erasure, asker.law, asker.channel, digest, jiff_ts(now), &privacy.deadlines)
            .map_err(dsr_error)?;
    request.verify(Step::new(jiff_ts(now), actor.clone())).map_err(dsr_error)?;
    request.start(Step::new(jiff_ts(now), actor)).map_err(dsr_error)?;
    privacy.requests.insert(&request).map_err(dsr_error)?;
    let request_id = request.id().to_string();
    // Write-ahead: the request and its audit entry are durable before anything is destroyed.
    privacy.audit_later(
        AuditKind::RequestReceived,
        asker.role,
        Some(&digest),
        json!({"request_id": request_id, "kind": "erasure", "law": asker.law.as_str(), "channel": asker.channel.as_str()}),
    )?;
    privacy.sync()?;

    // Recipients are those of every purpose the subject ever granted, read before the book forgets.
    let history = privacy.collect.book.history(subject);
    let mut purposes = BTreeSet::new();
    for record in history.records() {
        for choice in record.choices.iter().filter(|c| c.granted) {
            purposes.insert(choice.purpose.clone());
        }
    }
    let mut recipient_ids = BTreeSet::new();
    for p in &purposes {
        for name in privacy.collect.policies.purpose(p).map(|d| d.recipients().to_vec()).unwrap_or_default() {
            if let Some(r) = privacy.controller.recipient_named(&name) {
                if privacy.outbox.recipient(&r.id).is_some() {
                    recipient_ids.insert(r.id.clone());
                }
            }
        }
    }

    let receipt = privacy.collect.store.erase(subject).map_err(ApiError::from)?;
    let mut stores = vec![
        "event_log: erasure fence appended".to_owned(),
        format!("key_store: {} data key(s) destroyed", receipt.key_ids.len()),
    ];
    privacy.collect.book.forget(subject);
    stores.push("consent_book: consent history and message ids removed".to_owned());
    // Every store is told, whichever fails: one failure must not leave the others holding the
    // subject. The failures are reported together once the recipients' notices are queued.
    let mut failed = Vec::new();
    for hook in privacy.hooks() {
        match call_hook(hook.as_ref(), |h| h.forget(subject)) {
            Ok(_) => stores.push(format!("{}: removed", hook.name())),
            Err(e) => {
                tracing::error!(store = hook.name(), error = %e, "a store failed to forget an erased subject");
                failed.push(hook.name().to_owned());
            }
        }
    }
    privacy.rotation_needed(receipt.erased_at);
    let final_by = privacy.finality_due().unwrap_or(receipt.erased_at);

    let certificate = ErasureCertificate {
        certificate_id: uuid::Uuid::now_v7().to_string(),
        request_id,
        subject_digest: receipt.subject_digest.clone(),
        key_ids: receipt.key_ids.iter().map(|k| k.0).collect(),
        wrapped_under_epoch: receipt.wrapped_under_epoch,
        erased_at: rfc3339(receipt.erased_at),
        final_by: rfc3339(final_by),
        fence_position: receipt.fence_position.0,
        log_head_before: receipt.log_head_before.0,
        log_head_after: receipt.log_head_after.0,
        events_shredded: receipt.events_shredded,
        newly_erased: receipt.newly_erased,
        stores_touched: stores,
        recipients_notified: Vec::new(),
        signed_by: privacy.signer().key_id().to_owned(),
        signature: String::new(),
    };
    let pending = PendingErasure {
        certificate,
        stores_failed: failed,
        recipients_owed: recipient_ids.into_iter().collect(),
        attempts: 1,
        pending_since: now,
        next_attempt_at: next_attempt(privacy, now, 1),
    };
    // Once kept, the erasure is the background work's too: it is settled under the lock.
    let _settling = lock_pending(privacy);
    if !pending.stores_failed.is_empty() {
        // Durable before any notice names the certificate id, so that the certificate issued once
        // the stores have forgotten carries the id the recipients were given.
        keep(privacy, &pending)?;
    }
    settle(privacy, subject, pending, asker.role, now)
}

/// What [`retry_pending`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryReport {
    /// Pending erasures whose failed stores were called again.
    pub retried: usize,
    /// The certificates issued: those erasures are complete.
    pub completed: Vec<ErasureCertificate>,
    /// Erasures still pending.
    pub pending: usize,
}

/// Retries every pending erasure that is due at `now` (R-ERASE-3): calls the stores that have not
/// forgotten the subject, queues the notices still owed, and once nothing is left issues the
/// certificate under the id chosen at the first attempt and completes the request, as a successful
/// erasure does. An erasure that still fails waits longer before the next retry (doubling from
/// `erasure_retry_first` up to `erasure_retry_max`). The background work of `lethe serve` calls this
/// on every tick. An erasure whose request is on hold waits for the hold's release, and one whose
/// failed stores are not open in this process (the command line) waits for a process that opens
/// them. Blocking.
///
/// # Errors
/// The pending erasures cannot be read. A retry that fails leaves its erasure pending, logged.
pub fn retry_pending(privacy: &Privacy, now: UtcMicros) -> Result<RetryReport, ApiError> {
    let _settling = lock_pending(privacy);
    let hooks = privacy.hooks();
    let mut report = RetryReport::default();
    for pending in privacy.pending_erasures.all()? {
        let open_here = runs_a_failed_store(&hooks, &pending);
        if pending.next_attempt_at > now || (!pending.stores_failed.is_empty() && !open_here) {
            report.pending += 1;
            continue;
        }
        let Ok(id) = pending.request_id() else {
            report.pending += 1;
            continue;
        };
        match privacy.requests.get(id) {
            Ok(Some(r)) if r.status() == Status::OnHold => {
                report.pending += 1;
                continue;
            }
            // A request closed already (settled by an attempt that stopped before it removed this
            // record, or closed by hand before the first attempt kept it) still has its stores called:
            // the subject is forgotten whatever became of the request.
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                tracing::error!(request = %id, "a pending erasure names no readable request; retried later");
                postpone(privacy, pending, now);
                report.pending += 1;
                continue;
            }
        }
        report.retried += 1;
        let subject = match fenced_subject(privacy, &pending) {
            Ok(subject) => subject,
            Err(e) => {
                tracing::error!(request = %id, code = e.code, "a pending erasure's subject cannot be found; retried later");
                postpone(privacy, pending, now);
                report.pending += 1;
                continue;
            }
        };
        match resume(privacy, &subject, pending, "system", now) {
            Ok(certificate) => {
                tracing::info!(request = %id, certificate = %certificate.certificate_id, "a pending erasure is complete");
                report.completed.push(certificate);
            }
            Err(e) => {
                tracing::warn!(request = %id, code = e.code, message = %e.message, "an erasure is still pending");
                report.pending += 1;
            }
        }
    }
    Ok(report)
}

/// Closes by hand a pending erasure whose failed stores are none of them registered in this
/// process (`lethe serve` registers every store it runs: a store no longer among them, renamed or
/// removed by an upgrade, holds nothing any more). The certificate names each such store as closed
/// by `role`, and the notices still owed are queued. A store that is still registered keeps the
/// erasure pending (409 `erasure_pending`): its own retries close it. `None`: nothing is pending.
///
/// # Errors
/// `legal_hold` (409) while a hold stands; `erasure_pending` (409) while a failed store is
/// registered; `erasure_incomplete` (503) when a notice still owed cannot be queued (the erasure
/// stays pending); storage failures (503).
pub fn close_by_hand(
    privacy: &Privacy,
    request: RequestId,
    role: &str,
) -> Result<Option<ErasureCertificate>, ApiError> {
    let _settling = lock_pending(privacy);
    let Some(mut pending) = privacy.pending_erasures.get(request)? else { return Ok(None) };
    // A standing hold stops the erasure's notices and certificate, as it stops its retries.
    if privacy.requests.get(request).map_err(dsr_error)?.is_some_and(|r| r.status() == Status::OnHold) {
        return Err(ApiError::new(
            409,
            "legal_hold",
            "a legal hold stands on this request: release it before the erasure is closed",
        ));
    }
    let hooks = privacy.hooks();
    if runs_a_failed_store(&hooks, &pending) {
        return Err(still_pending(&pending));
    }
    let subject = fenced_subject(privacy, &pending)?;
    for name in std::mem::take(&mut pending.stores_failed) {
        tracing::warn!(store = %name, request = %request, "a pending erasure's store no longer exists; closed by hand");
        pending.certificate.stores_touched.push(format!("{name}: no longer run by Lethe; closed by the {role}"));
    }
    settle(privacy, &subject, pending, role, UtcMicros::now()).map(Some)
}

/// The refusal of a hand-made close of an erasure that is still pending.
pub fn still_pending(pending: &PendingErasure) -> ApiError {
    ApiError::new(
        409,
        "erasure_pending",
        format!("this erasure is pending: {}; it completes by itself once nothing is left", pending.what_remains()),
    )
}

/// The pending erasure of a request, if its erasure has not reached every store yet.
///
/// # Errors
/// The record cannot be read.
pub fn pending_erasure(privacy: &Privacy, request: RequestId) -> Result<Option<PendingErasure>, ApiError> {
    privacy.pending_erasures.get(request)
}

/// Every pending erasure.
///
/// # Errors
/// The records cannot be read.
pub fn pending_erasures(privacy: &Privacy) -> Result<Vec<PendingErasure>, ApiError> {
    privacy.pending_erasures.all()
}

fn lock_pending(privacy: &Privacy) -> std::sync::MutexGuard<'_, ()> {
    // A store that panicked under the lock leaves the records as they were: they stay usable.
    privacy.pending_erasures_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// When a pending erasure is retried after its `attempts`-th attempt: the first wait, doubled for
/// every attempt after the first, at most the longest wait.
fn next_attempt(privacy: &Privacy, now: UtcMicros, attempts: u32) -> UtcMicros {
    let doublings = attempts.saturating_sub(1).min(30);
    let wait =
        privacy.options.erasure_retry_first.saturating_mul(1 << doublings).min(privacy.options.erasure_retry_max);
    UtcMicros(now.0.saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX)))
}

/// Moves a pending erasure that could not be retried to its next attempt, so that the background
/// work does not try it again on every tick.
fn postpone(privacy: &Privacy, mut pending: PendingErasure, now: UtcMicros) {
    pending.attempts = pending.attempts.saturating_add(1);
    pending.next_attempt_at = next_attempt(privacy, now, pending.attempts);
    if let Err(e) = keep(privacy, &pending) {
        tracing::error!(code = e.code, "a pending erasure cannot be postponed");
    }
}

/// Whether one of the stores a pending erasure waits for is among `hooks` (open in this process).
fn runs_a_failed_store(hooks: &[Arc<dyn ErasureHook>], pending: &PendingErasure) -> bool {
    pending.stores_failed.iter().any(|n| hooks.iter().any(|h| h.name() == n))
}

/// Calls again the stores a pending erasure waits for, then settles it. The caller holds the
/// pending lock.
fn resume(
    privacy: &Privacy,
    subject: &Pseudonym,
    mut pending: PendingErasure,
    role: &str,
    now: UtcMicros,
) -> Result<ErasureCertificate, ApiError> {
    let hooks = privacy.hooks();
    let mut still = Vec::new();
    for name in std::mem::take(&mut pending.stores_failed) {
        let Some(hook) = hooks.iter().find(|h| h.name() == name) else {
            tracing::warn!(store = %name, "a store that has not forgotten an erased subject is not open in this process");
            still.push(name);
            continue;
        };
        match call_hook(hook.as_ref(), |h| h.forget(subject)) {
            Ok(_) => pending.certificate.stores_touched.push(format!("{name}: removed")),
            Err(e) => {
                tracing::error!(store = %name, error = %e, attempts = pending.attempts + 1, "a store still fails to forget an erased subject");
                still.push(name);
            }
        }
    }
    pending.stores_failed = still;
    pending.attempts = pending.attempts.saturating_add(1);
    pending.next_attempt_at = next_attempt(privacy, now, pending.attempts);
    settle(privacy, subject, pending, role, now)
}

/// Queues the notices an erasure still owes; then, when no store is left to forget, issues the
/// certificate and completes the request; otherwise keeps the erasure pending and says what is left.
fn settle(
    privacy: &Privacy,
    subject: &Pseudonym,
    mut pending: PendingErasure,
    role: &str,
    now: UtcMicros,
) -> Result<ErasureCertificate, ApiError> {
    let queued = notify(privacy, subject, &mut pending, now);
    if queued.is_err() || !pending.stores_failed.is_empty() {
        keep(privacy, &pending)?;
        if pending.stores_failed.is_empty() {
            queued?;
        }
        let request = &pending.certificate.request_id;
        return Err(ApiError::new(
            503,
            "erasure_incomplete",
            format!(
                "{}; Lethe retries by itself, and asking again retries now (request {request})",
                pending.what_remains()
            ),
        ));
    }
    finish(privacy, subject, &pending, role).inspect_err(|_| {
        // Kept, so that the next retry issues the certificate.
        if let Err(e) = keep(privacy, &pending) {
            tracing::error!(code = e.code, "an erasure whose certificate could not be issued cannot be kept pending");
        }
    })
}

/// Queues the `subject.erased` notice of every recipient still owed one, under the erasure's
/// certificate id; each recipient notified moves to the certificate.
fn notify(
    privacy: &Privacy,
    subject: &Pseudonym,
    pending: &mut PendingErasure,
    now: UtcMicros,
) -> Result<(), ApiError> {
    while let Some(id) = pending.recipients_owed.first().cloned() {
        if privacy.outbox.recipient(&id).is_none() {
            // Its webhook was removed from the controller file since: nothing can reach it.
            tracing::warn!(recipient = %id, "a recipient owed an erasure notice is no longer configured");
            pending.recipients_owed.remove(0);
            continue;
        }
        let body = json!({
            "event": "subject.erased",
            "certificate_id": pending.certificate.certificate_id,
            "subject_ref": privacy.recipient_reference(&id, subject),
            "erased_at": pending.certificate.erased_at,
            "instruction": "erase every personal data of this subject that you received (GDPR Art. 17(2), 19)",
        });
        privacy.outbox.enqueue(&id, &Topic::subject_erased(), body, now).map_err(|e| {
            tracing::error!(error = %e, "cannot queue a recipient notice");
            ApiError::new(
                503,
                "outbox_unavailable",
                "the erasure is done but a recipient notice could not be queued; Lethe queues it again later",
            )
        })?;
        pending.recipients_owed.remove(0);
        pending.certificate.recipients_notified.push(id);
        // Kept at once (one fsync with the notice's own): after a crash, the retry queues only the
        // notices still owed, never one twice.
        keep(privacy, pending)?;
    }
    Ok(())
}

/// Stores a pending erasure durably.
fn keep(privacy: &Privacy, pending: &PendingErasure) -> Result<(), ApiError> {
    privacy.pending_erasures.put(pending)?;
    privacy.sync()
}

/// Issues the certificate of an erasure that reached every store, audits it, completes the request
/// and drops the pending record, all made durable by one fsync.
fn finish(
    privacy: &Privacy,
    subject: &Pseudonym,
    pending: &PendingErasure,
    role: &str,
) -> Result<ErasureCertificate, ApiError> {
    let digest = SubjectDigest::of_pseudonym(subject.as_bytes());
    let actor = ActorRole::parse(role).map_err(dsr_error)?;
    let request_id = pending.request_id()?;
    let mut certificate = pending.certificate.clone();
    if !certificate.recipients_notified.is_empty() {
        certificate
            .stores_touched
            .push(format!("outbox: {} recipient notice(s) queued", certificate.recipients_notified.len()));
    }
    certificate.signed_by = privacy.signer().key_id().to_owned();
    certificate.signature = String::new();
    let key = ed25519_dalek::SigningKey::from_bytes(&privacy.signer().to_bytes());
    certificate.signature = hex::encode(key.sign(&certificate.signed_bytes()).to_bytes());
    // A settlement that stopped after issuing the certificate (before the request or the pending
    // record were updated) is not audited twice: the audit entry goes first, the certificate second,
    // and a certificate already stored means both were written.
    let issued = privacy.certificates.contains_key(certificate.certificate_id.as_bytes()).map_err(|e| {
        tracing::error!(error = %e, "cannot read the erasure certificates");
        ApiError::new(503, "store_unavailable", "the erasure certificates cannot be read now; retry")
    })?;
    if !issued {
        privacy.audit_later(
            AuditKind::Erasure,
            role,
            Some(&digest),
            serde_json::to_value(&certificate).expect("certificates serialize"),
        )?;
        let stored = serde_json::to_vec(&certificate).expect("certificates serialize");
        privacy.certificates.insert(certificate.certificate_id.as_bytes(), stored).map_err(|e| {
            tracing::error!(error = %e, "cannot store an erasure certificate");
            ApiError::new(
                503,
                "store_unavailable",
                "the erasure is done but its certificate could not be stored; retry",
            )
        })?;
    }
    privacy
        .requests
        .update(request_id, |r| {
            // Closed already: by a settlement that stopped before it dropped the pending record, or
            // by hand before the first attempt kept it.
            if !r.status().is_open() {
                return Ok(());
            }
            r.complete(Step::new(jiff_ts(UtcMicros::now()), actor.clone()))
        })
        .map_err(dsr_error)?;
    privacy.audit_later(
        AuditKind::RequestUpdated,
        role,
        Some(&digest),
        json!({"request_id": certificate.request_id, "status": "completed"}),
    )?;
    privacy.pending_erasures.remove(request_id)?;
    // One fsync makes the certificate, the completed request, both audit entries and the dropped
    // pending record durable.
    privacy.sync()?;
    privacy
        .collect
        .metrics
        .inc("lethe_privacy_erasures_total", if certificate.newly_erased { "new" } else { "repeat" });
    Ok(certificate)
}

/// The subject of a pending erasure, read back from the log's erasure fence: the privacy database
/// keeps only the digest of its pseudonym.
fn fenced_subject(privacy: &Privacy, pending: &PendingErasure) -> Result<Pseudonym, ApiError> {
    let position = Position(pending.certificate.fence_position);
    match privacy.collect.store.read_all(position).next() {
        Some(Ok(event))
            if event.envelope.position == position
                && event.envelope.event_type.as_str() == types::ERASURE_FENCE
                && SubjectDigest::of_pseudonym(event.envelope.subject.as_bytes()).to_string()
                    == pending.certificate.subject_digest =>
        {
            Ok(event.envelope.subject)
        }
        Some(Err(e)) => Err(ApiError::from(e)),
        _ => Err(ApiError::new(
            503,
            "fence_not_found",
            "the log holds no erasure fence for this pending erasure; the subject's next request resumes it",
        )),
    }
}

/// Checks a certificate's signature against the service's audit key.
pub fn verify_certificate(privacy: &Privacy, certificate: &ErasureCertificate) -> bool {
    let Ok(bytes) = hex::decode(&certificate.signature) else { return false };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else { return false };
    privacy.signer().verifying_key().verify_strict(&certificate.signed_bytes(), &sig).is_ok()
}
