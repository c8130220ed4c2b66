//! The background work of `lethe serve`: the key rotation that makes erasures and retention sweeps
//! final within the configured window (R-ERASE-4/5), the retention sweeps themselves (R-RETAIN-1,
//! with the rebuild of the derived stores that held what they expired), the retries of erasures a
//! store could not finish (R-ERASE-3, [`crate::erasure::retry_pending`]), and the delivery of
//! recipient notices (Art. 19).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lethe_audit::AuditKind;
use lethe_collect::ApiError;
use lethe_domain::UtcMicros;
use lethe_eventlog::{RetentionReport, RotationReport};
use lethe_outbox::{Deliverer, DeliveryConfig};
use tokio::sync::watch;

use crate::state::Privacy;

/// Stops the background tasks when dropped.
#[derive(Debug)]
pub struct Background {
    stop: watch::Sender<bool>,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Rotates the key epoch when an erasure or sweep is pending and its window is up (or `force`).
/// Blocking.
///
/// # Errors
/// The rotation or its audit entry failed; the rotation is retried on the next tick.
pub fn finalize_if_due(privacy: &Privacy, now: UtcMicros, force: bool) -> Result<Option<RotationReport>, ApiError> {
    if !privacy.collect.store.rotation_pending() {
        *privacy.pending_since.lock().expect("pending lock") = None;
        return Ok(None);
    }
    let due = privacy.finality_due().unwrap_or(now);
    if !force && due > now {
        return Ok(None);
    }
    let report = privacy.collect.store.rotate_keys().map_err(ApiError::from)?;
    *privacy.pending_since.lock().expect("pending lock") = None;
    privacy.audit(AuditKind::KeyRotation, "system", None, serde_json::to_value(&report).expect("serializes"))?;
    tracing::info!(
        from = report.from_epoch,
        to = report.to_epoch,
        erasures = report.erasures_finalized,
        "key epoch rotated"
    );
    Ok(Some(report))
}

/// Destroys the keys of every retention period that ended by `now`, then has every registered
/// [`ErasureHook`](crate::ErasureHook) drop what it derived from the expired events
/// ([`retention_shredded`](crate::ErasureHook::retention_shredded); the feature views rebuild from
/// the log and re-key their checkpoint). A hook that fails does not fail the sweep: it is logged,
/// counted, named in the audit entry (`derived_stores_failed`) and called again at the next sweep,
/// even one that destroys nothing. Blocking.
///
/// # Errors
/// The sweep or its audit entry failed.
pub fn sweep(privacy: &Privacy, now: UtcMicros) -> Result<RetentionReport, ApiError> {
    // One sweep at a time: the record of what is owed is read, raised and settled by the sweep
    // that holds this lock.
    let mut retry = match privacy.retention_retry.lock() {
        Ok(retry) => retry,
        Err(poisoned) => {
            // A store panicked in an earlier sweep's rebuild: retention goes on, and every store is
            // owed a rebuild, since that sweep may not have reached them.
            privacy.retention_retry.clear_poison();
            let mut retry = poisoned.into_inner();
            retry.insert(crate::state::ALL_STORES.to_owned());
            retry
        }
    };
    // The debt is written before any key is destroyed: a crash between the destruction and the
    // rebuilds leaves it for the next start, whose first sweep pays it (R-RETAIN-1).
    let mut owed = retry.clone();
    owed.insert(crate::state::ALL_STORES.to_owned());
    privacy.owe_rebuild(&owed).map_err(|e| {
        ApiError::new(500, "storage_error", format!("the retention sweep could not record its rebuilds: {e}"))
    })?;
    let report = privacy.collect.store.expire_keys(now).map_err(ApiError::from)?;
    // The hooks run before the audit entry, so that an audit failure cannot leave derived data of
    // expired events behind (the next sweep would find no key to destroy and call no hook).
    let failed = rebuild_derived(privacy, &mut retry, report.keys_destroyed > 0);
    if let Err(e) = privacy.owe_rebuild(&retry) {
        // Left as it was: every store rebuilds again at the next sweep, which is safe.
        tracing::error!(error = %e, "the retention sweep could not record what it still owes");
    }
    drop(retry);
    if report.keys_destroyed > 0 {
        privacy.rotation_needed(now);
        let mut detail = serde_json::to_value(&report).expect("serializes");
        if !failed.is_empty() {
            detail["derived_stores_failed"] = serde_json::json!(failed);
        }
        privacy.audit(AuditKind::RetentionShred, "system", None, detail)?;
        tracing::info!(keys = report.keys_destroyed, subjects = report.subjects, "retention sweep destroyed keys");
    }
    Ok(report)
}

/// Calls [`retention_shredded`](crate::ErasureHook::retention_shredded) on every hook when keys
/// were destroyed (or a sweep before a restart owed them all), else only on those that failed
/// before. Returns the names of the hooks that failed, which `retry` keeps for the next sweep.
fn rebuild_derived(privacy: &Privacy, retry: &mut BTreeSet<String>, destroyed: bool) -> Vec<String> {
    if !destroyed && retry.is_empty() {
        return Vec::new();
    }
    // A sweep before a restart that died before rebuilding owes every store.
    let every = destroyed || retry.contains(crate::state::ALL_STORES);
    let hooks = privacy.hooks();
    if hooks.is_empty() {
        // No derived store is open in this process (`lethe retention sweep`): what is owed stays
        // owed, for the next start that opens them.
        if every {
            retry.insert(crate::state::ALL_STORES.to_owned());
        }
        return Vec::new();
    }
    let mut failed = Vec::new();
    for hook in hooks {
        let name = hook.name().to_owned();
        if !every && !retry.contains(&name) {
            continue;
        }
        match hook.retention_shredded() {
            Ok(()) => tracing::debug!(store = %name, "a derived store dropped what the retention sweep expired"),
            Err(e) => {
                tracing::error!(
                    store = %name,
                    error = %e,
                    "a derived store could not drop what a retention sweep expired; retried at the next sweep"
                );
                failed.push(name);
            }
        }
    }
    privacy.retention_failures.fetch_add(failed.len() as u64, Ordering::Relaxed);
    *retry = failed.iter().cloned().collect();
    failed
}

/// Starts the background tasks on the current actix/tokio runtime.
///
/// # Errors
/// The delivery client cannot be built.
pub fn start(privacy: Arc<Privacy>, tick: Duration) -> Result<Background, lethe_outbox::OutboxError> {
    let (stop, rx) = watch::channel(false);
    let deliverer = Deliverer::new(privacy.outbox.clone(), DeliveryConfig::default())?;
    actix_web::rt::spawn(deliverer.run(rx.clone(), Duration::from_secs(30)));
    let mut rx = rx;
    actix_web::rt::spawn(async move {
        let mut last_sweep: Option<std::time::Instant> = None;
        loop {
            let p = Arc::clone(&privacy);
            let sweep_due = last_sweep.is_none_or(|t| t.elapsed() >= p.options.sweep_every);
            if sweep_due {
                last_sweep = Some(std::time::Instant::now());
            }
            let result = tokio::task::spawn_blocking(move || {
                // Each pending erasure waits for its own backoff; a failure here stops neither the
                // sweep nor the rotation.
                if let Err(e) = crate::erasure::retry_pending(&p, UtcMicros::now()) {
                    tracing::error!(code = e.code, "pending erasures cannot be retried now");
                }
                if sweep_due {
                    sweep(&p, UtcMicros::now())?;
                }
                finalize_if_due(&p, UtcMicros::now(), false)
            })
            .await;
            match result {
                Ok(Err(e)) => tracing::error!(code = e.code, "background privacy work failed; retrying"),
                Err(e) => tracing::error!(error = %e, "background privacy task panicked"),
                Ok(Ok(_)) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = rx.changed() => return,
            }
            if *rx.borrow() {
                return;
            }
        }
    });
    Ok(Background { stop })
}

/// What the scheduler reports on `/metrics`.
pub fn metrics(privacy: &Privacy) -> String {
    let stats = privacy.outbox.stats().ok();
    let mut out = String::new();
    out.push_str("# TYPE lethe_rotation_pending gauge\n");
    out.push_str(&format!("lethe_rotation_pending {}\n", u8::from(privacy.collect.store.rotation_pending())));
    if let Some(s) = stats {
        out.push_str("# TYPE lethe_recipient_notices gauge\n");
        out.push_str(&format!("lethe_recipient_notices{{state=\"pending\"}} {}\n", s.pending));
        out.push_str(&format!("lethe_recipient_notices{{state=\"delivered\"}} {}\n", s.delivered));
        out.push_str(&format!("lethe_recipient_notices{{state=\"dead_letter\"}} {}\n", s.dead_letter));
    }
    out.push_str("# TYPE lethe_retention_rebuild_failures_total counter\n");
    out.push_str(&format!(
        "lethe_retention_rebuild_failures_total {}\n",
        privacy.retention_failures.load(Ordering::Relaxed)
    ));
    out.push_str("# TYPE lethe_erasures_pending gauge\n");
    out.push_str(&format!("lethe_erasures_pending {}\n", privacy.pending_erasures.len()));
    out.push_str("# TYPE lethe_audit_entries gauge\n");
    out.push_str(&format!("lethe_audit_entries {}\n", privacy.audit.head().0));
    out
}
