//! Erasure (GDPR Art. 17, CCPA §1798.105; R-ERASE-*): a request logged and started, the log's
//! crypto-shredding, every registered store told to forget, recipients notified through the outbox
//! (Art. 19), the key-epoch rotation scheduled, and a signed certificate that holds no personal data.

use std::collections::BTreeSet;

use ed25519_dalek::Signer;
use lethe_audit::AuditKind;
use lethe_collect::ApiError;
use lethe_domain::{Pseudonym, UtcMicros};
use lethe_dsr::{ActorRole, Channel, DenialReason, Law, Outcome, Request, RequestKind, Status, Step, SubjectDigest};
use lethe_outbox::Topic;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::state::{dsr_error, Privacy};
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
/// # Errors
/// A legal hold (409), storage failures (503). When the log's erasure succeeded, every other store
/// is still told and the recipients' notices are queued; a store that failed is named in the error
/// (`erasure_incomplete`) and retried by nothing: the request stays `in_progress`.
pub fn erase(privacy: &Privacy, subject: &Pseudonym, asker: Asker<'_>) -> Result<ErasureCertificate, ApiError> {
    let now = UtcMicros::now();
    let digest = SubjectDigest::of_pseudonym(subject.as_bytes());
    let actor = ActorRole::parse(asker.role).map_err(dsr_error)?;
    // A hold stops an erasure while it stands, or when a request was denied because of it; a request
    // denied for another reason while held keeps its hold on record only as history.
    let held = privacy.requests.by_subject(&digest).map_err(dsr_error)?.into_iter().any(|r| {
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
    let mut request =
        Request::receive(RequestKind::Erasure, asker.law, asker.channel, digest, jiff_ts(now), &privacy.deadlines)
            .map_err(dsr_error)?;
    request.verify(Step::new(jiff_ts(now), actor.clone())).map_err(dsr_error)?;
    request.start(Step::new(jiff_ts(now), actor.clone())).map_err(dsr_error)?;
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
        match hook.forget(subject) {
            Ok(_) => stores.push(format!("{}: removed", hook.name())),
            Err(e) => {
                tracing::error!(store = hook.name(), error = %e, "a store failed to forget an erased subject");
                failed.push(hook.name().to_owned());
            }
        }
    }
    privacy.rotation_needed(receipt.erased_at);
    let final_by = privacy.finality_due().unwrap_or(receipt.erased_at);

    let certificate_id = uuid::Uuid::now_v7().to_string();
    let mut notified = Vec::new();
    for id in &recipient_ids {
        let body = json!({
            "event": "subject.erased",
            "certificate_id": certificate_id,
            "subject_ref": privacy.recipient_reference(id, subject),
            "erased_at": rfc3339(receipt.erased_at),
            "instruction": "erase every personal data of this subject that you received (GDPR Art. 17(2), 19)",
        });
        privacy.outbox.enqueue(id, &Topic::subject_erased(), body, now).map_err(|e| {
            tracing::error!(error = %e, "cannot queue a recipient notice");
            ApiError::new(
                503,
                "outbox_unavailable",
                "the erasure is done but a recipient notice could not be queued; retry",
            )
        })?;
        notified.push(id.clone());
    }
    if !notified.is_empty() {
        stores.push(format!("outbox: {} recipient notice(s) queued", notified.len()));
    }
    if !failed.is_empty() {
        return Err(ApiError::new(
            503,
            "erasure_incomplete",
            format!("{} could not forget the subject; retry", failed.join(", ")),
        ));
    }

    let mut certificate = ErasureCertificate {
        certificate_id,
        request_id: request_id.clone(),
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
        recipients_notified: notified,
        signed_by: privacy.signer().key_id().to_owned(),
        signature: String::new(),
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&privacy.signer().to_bytes());
    certificate.signature = hex::encode(key.sign(&certificate.signed_bytes()).to_bytes());
    let stored = serde_json::to_vec(&certificate).expect("certificates serialize");
    privacy.certificates.insert(certificate.certificate_id.as_bytes(), stored).map_err(|e| {
        tracing::error!(error = %e, "cannot store an erasure certificate");
        ApiError::new(503, "store_unavailable", "the erasure is done but its certificate could not be stored; retry")
    })?;
    privacy.audit_later(
        AuditKind::Erasure,
        asker.role,
        Some(&digest),
        serde_json::to_value(&certificate).expect("certificates serialize"),
    )?;
    privacy
        .requests
        .update(request.id(), |r| r.complete(Step::new(jiff_ts(UtcMicros::now()), actor.clone())))
        .map_err(dsr_error)?;
    privacy.audit_later(
        AuditKind::RequestUpdated,
        asker.role,
        Some(&digest),
        json!({"request_id": request_id, "status": "completed"}),
    )?;
    // One fsync makes the certificate, the completed request and both audit entries durable.
    privacy.sync()?;
    privacy.collect.metrics.inc("lethe_privacy_erasures_total", if receipt.newly_erased { "new" } else { "repeat" });
    Ok(certificate)
}

/// Checks a certificate's signature against the service's audit key.
pub fn verify_certificate(privacy: &Privacy, certificate: &ErasureCertificate) -> bool {
    let Ok(bytes) = hex::decode(&certificate.signature) else { return false };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else { return false };
    privacy.signer().verifying_key().verify_strict(&certificate.signed_bytes(), &sig).is_ok()
}
