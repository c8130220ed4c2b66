//! The privacy service's state: its own sled database (`<data>/privacy`: the request log, the audit
//! chain, erasure certificates, pending erasures and the recipient outbox — none of which holds an
//! identifier or a pseudonym, only digests and per-recipient references), the clock that makes
//! erasures final, and the hooks other parts register to forget a subject.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use lethe_audit::{AuditChain, AuditEntry, AuditKind, AuditRecord, AuditSigner, ChainConfig};
use lethe_collect::{ApiError, CollectState};
use lethe_crypto::Keyring;
use lethe_domain::{Pseudonym, UtcMicros};
use lethe_dsr::{DeadlinePolicy, RequestStore, SubjectDigest};
use lethe_outbox::{Outbox, Recipient, RetryPolicy, WebhookSecret};
use sha2::Sha256;

use crate::controller::ControllerFile;
use crate::pending::PendingErasures;

/// Folder of the privacy database inside the data directory.
pub const PRIVACY_DIR: &str = "privacy";
/// Sealed blob holding the audit chain's signing key.
const AUDIT_KEY_BLOB: &str = "audit-signing-key";
/// Sealed blob holding the key of per-recipient subject references.
const RECIPIENT_REF_BLOB: &str = "recipient-reference-key";

/// Something outside the log that holds data of subjects and must forget one on erasure: a view, a
/// cache, a model registry. Registered with [`Privacy::register`]; named in erasure certificates.
pub trait ErasureHook: Send + Sync + std::fmt::Debug {
    /// The store's name, as certificates list it.
    fn name(&self) -> &str;
    /// Removes everything of the subject. Returns whether the store held anything of it.
    ///
    /// # Errors
    /// The store cannot be changed; the erasure then reports the failure, stays pending, and the
    /// call is repeated (with a backoff, and whenever the subject asks again) until it succeeds.
    fn forget(&self, subject: &Pseudonym) -> Result<bool, String>;
    /// The subject withdrew consent for `purposes`: stop using its data for them (a model trained
    /// on it is retrained without it, R-ERASE-7).
    ///
    /// # Errors
    /// The store cannot record it; the withdrawal then reports the failure.
    fn withdrawn(&self, subject: &Pseudonym, purposes: &[lethe_domain::Purpose]) -> Result<(), String> {
        let _ = (subject, purposes);
        Ok(())
    }
    /// The subject's derived data, for the access export (GDPR Art. 15): `None` when none.
    fn export(&self, subject: &Pseudonym) -> Option<serde_json::Value> {
        let _ = subject;
        None
    }
    /// Called after a retention sweep destroyed keys (R-RETAIN-1): the events under them no longer
    /// decrypt, so what the store derived from them must go too. A store derived from the log
    /// rebuilds from what the log can still read (and replaces any copy it keeps at rest).
    ///
    /// # Errors
    /// The store cannot be rebuilt. The sweep stands (its keys are destroyed): the failure is
    /// logged, counted on `/metrics` (`lethe_retention_rebuild_failures_total`), named in the
    /// sweep's audit entry, and the call is repeated at the next sweep.
    fn retention_shredded(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Makes one call of a store's hook. A store that panics (a defect) has failed, as one that returns
/// an error has: the caller goes on with the other stores, and what the store owes is retried (an
/// erasure stays pending, a withdrawal is refused with 503). A retention sweep calls its hooks
/// directly: it records what it owes before it destroys a key, so even a process that dies in a
/// rebuild is made good at the next start.
pub(crate) fn call_hook<T>(
    hook: &dyn ErasureHook,
    call: impl FnOnce(&dyn ErasureHook) -> Result<T, String>,
) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(hook)))
        .unwrap_or_else(|_| Err(format!("{} panicked (a defect)", hook.name())))
}

/// Settings of the privacy service.
#[derive(Debug, Clone)]
pub struct PrivacyOptions {
    /// An erasure is made final (key epoch rotated) at most this long after it.
    pub finality: Duration,
    /// How often retention sweeps run.
    pub sweep_every: Duration,
    /// Retries of recipient notices.
    pub retry: RetryPolicy,
    /// How long after a store failed to forget an erased subject it is asked again; the wait
    /// doubles with every failure, up to [`Self::erasure_retry_max`].
    pub erasure_retry_first: Duration,
    /// The longest wait between two calls to a store that has not forgotten an erased subject.
    pub erasure_retry_max: Duration,
}

impl PrivacyOptions {
    /// Defaults from the controller file.
    pub fn from_controller(controller: &ControllerFile) -> Self {
        Self {
            finality: Duration::from_secs(u64::from(controller.requests.erasure_finality_minutes) * 60),
            sweep_every: Duration::from_secs(3600),
            retry: RetryPolicy::default(),
            erasure_retry_first: Duration::from_secs(30),
            erasure_retry_max: Duration::from_secs(3600),
        }
    }
}

/// Everything the privacy endpoints and background tasks share.
pub struct Privacy {
    pub collect: CollectState,
    pub controller: Arc<ControllerFile>,
    pub options: PrivacyOptions,
    pub deadlines: DeadlinePolicy,
    pub db: sled::Db,
    pub requests: RequestStore,
    pub audit: AuditChain,
    pub outbox: Outbox,
    pub certificates: sled::Tree,
    /// Erasures that the log has done but a store has not yet: see [`crate::erasure::erase`].
    pub(crate) pending_erasures: PendingErasures,
    /// Held while a pending erasure is retried, so that a subject's repeated request and the
    /// background work never settle the same erasure twice.
    pub(crate) pending_erasures_lock: Mutex<()>,
    signer: AuditSigner,
    reference_key: [u8; 32],
    hooks: RwLock<Vec<Arc<dyn ErasureHook>>>,
    /// The earliest erasure or retention sweep that no rotation has made final yet.
    pub(crate) pending_since: Mutex<Option<UtcMicros>>,
    /// The hooks whose [`ErasureHook::retention_shredded`] failed, called again at the next sweep
    /// ([`ALL_STORES`]: every hook). Kept in `meta` too, so that a restart does not forget them.
    pub(crate) retention_retry: Mutex<BTreeSet<String>>,
    pub(crate) meta: sled::Tree,
    /// How many [`ErasureHook::retention_shredded`] calls failed since the start.
    pub(crate) retention_failures: AtomicU64,
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Privacy").field("audit_key", &self.signer.key_id()).finish_non_exhaustive()
    }
}

/// A failure opening the privacy service.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("privacy database: {0}")]
    Storage(#[from] sled::Error),
    #[error("key store: {0}")]
    Keys(#[from] lethe_crypto::CryptoError),
    #[error("audit chain: {0}")]
    Audit(#[from] lethe_audit::AuditError),
    #[error("requests: {0}")]
    Requests(#[from] lethe_dsr::DsrError),
    #[error("recipients: {0}")]
    Outbox(#[from] lethe_outbox::OutboxError),
    #[error("{0}")]
    Config(String),
}

impl Privacy {
    /// Opens the privacy database in `data_dir`, with the signing and reference keys sealed in
    /// `keyring` (created on first use).
    ///
    /// # Errors
    /// Storage, key store, or configuration errors.
    pub fn open(
        data_dir: &Path,
        keyring: &Keyring,
        collect: CollectState,
        controller: ControllerFile,
        options: PrivacyOptions,
    ) -> Result<Arc<Self>, OpenError> {
        let signer = match keyring.blob(AUDIT_KEY_BLOB)? {
            Some(bytes) => {
                let secret: [u8; 32] =
                    bytes[..].try_into().map_err(|_| OpenError::Config("audit signing key is damaged".into()))?;
                let public = ed25519_dalek::SigningKey::from_bytes(&secret).verifying_key();
                AuditSigner::from_bytes(&secret, lethe_audit::key_id_for(&public))?
            }
            None => {
                let signer = AuditSigner::generate()?;
                keyring.put_blob(AUDIT_KEY_BLOB, &signer.to_bytes()[..])?;
                signer
            }
        };
        let reference_key = match keyring.blob(RECIPIENT_REF_BLOB)? {
            Some(bytes) => {
                bytes[..].try_into().map_err(|_| OpenError::Config("recipient reference key is damaged".into()))?
            }
            None => {
                let key: [u8; 32] = rand_bytes();
                keyring.put_blob(RECIPIENT_REF_BLOB, &key)?;
                key
            }
        };
        let holidays = controller
            .requests
            .holidays
            .iter()
            .map(|d| d.parse::<lethe_dsr::jiff::civil::Date>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| OpenError::Config(format!("controller.toml: bad holiday: {e}")))?;
        let deadlines = DeadlinePolicy::new(&controller.requests.time_zone, holidays)?;
        let db = sled::Config::new().path(data_dir.join(PRIVACY_DIR)).open()?;
        let requests = RequestStore::new(db.open_tree("requests")?);
        let audit = AuditChain::open(db.open_tree("audit")?, signer.clone(), ChainConfig::default())?;
        let certificates = db.open_tree("certificates")?;
        let pending_erasures = PendingErasures::new(db.open_tree("erasures")?);
        let recipients = controller
            .recipients
            .iter()
            .filter_map(|r| {
                let url = r.webhook.as_deref()?;
                let secret = std::env::var(format!("LETHE_RECIPIENT_{}_SECRET", r.id.to_uppercase().replace('-', "_")))
                    .ok()
                    .and_then(|s| WebhookSecret::new(s).ok());
                Some(Recipient::new(r.id.clone(), r.name.clone(), url, secret))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outbox = Outbox::open(db.open_tree("outbox")?, recipients, options.retry.clone())?;
        let pending = collect.store.rotation_pending().then(UtcMicros::now);
        let policy_digest = policy_digest(&collect, &controller);
        let meta = db.open_tree("meta")?;
        let previous = meta.get(POLICY_DIGEST)?.map(|v| String::from_utf8_lossy(&v).into_owned());
        if previous.as_deref() != Some(policy_digest.as_str()) {
            // Invariant 7: a change of the policies is audited, with both digests.
            let record = AuditRecord::new(UtcMicros::now().0, AuditKind::PolicyChange, "system")
                .detail(serde_json::json!({"from": previous, "to": policy_digest}));
            audit.append(record)?;
            audit.flush()?;
            meta.insert(POLICY_DIGEST, policy_digest.as_bytes())?;
            meta.flush()?;
        }
        // What a sweep before this start still owed the derived stores (a crash between its keys'
        // destruction and their rebuilds leaves `ALL_STORES`).
        let owed: BTreeSet<String> = match meta.get(RETENTION_OWED)? {
            None => BTreeSet::new(),
            Some(v) => serde_json::from_slice(&v).unwrap_or_else(|e| {
                // Unreadable: owe everything rather than nothing.
                tracing::warn!(error = %e, "the record of owed retention rebuilds is damaged; every store rebuilds");
                BTreeSet::from([ALL_STORES.to_owned()])
            }),
        };
        Ok(Arc::new(Self {
            collect,
            controller: Arc::new(controller),
            options,
            deadlines,
            db,
            requests,
            audit,
            outbox,
            certificates,
            pending_erasures,
            pending_erasures_lock: Mutex::new(()),
            signer,
            reference_key,
            hooks: RwLock::new(Vec::new()),
            pending_since: Mutex::new(pending),
            retention_retry: Mutex::new(owed),
            meta,
            retention_failures: AtomicU64::new(0),
        }))
    }

    /// Registers a store that must forget erased subjects.
    pub fn register(&self, hook: Arc<dyn ErasureHook>) {
        self.hooks.write().expect("hooks lock").push(hook);
    }

    pub(crate) fn hooks(&self) -> Vec<Arc<dyn ErasureHook>> {
        self.hooks.read().expect("hooks lock").clone()
    }

    /// The signer of checkpoints and certificates.
    pub fn signer(&self) -> &AuditSigner {
        &self.signer
    }

    /// The reference under which `recipient` knows a subject: HMAC-SHA256 of the pseudonym under a
    /// key of Lethe's own, per recipient, so that no two recipients can join their data on it and
    /// the notice of an erasure carries no Lethe pseudonym.
    pub fn recipient_reference(&self, recipient: &str, subject: &Pseudonym) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.reference_key).expect("any key length");
        mac.update(recipient.as_bytes());
        mac.update(&[0]);
        mac.update(subject.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Appends an audit entry and makes it durable.
    ///
    /// # Errors
    /// The audit chain cannot be written: the action must not be reported as done.
    pub fn audit(
        &self,
        kind: AuditKind,
        actor: &str,
        subject: Option<&SubjectDigest>,
        detail: serde_json::Value,
    ) -> Result<AuditEntry, ApiError> {
        let entry = self.audit_later(kind, actor, subject, detail)?;
        self.audit.flush().map_err(audit_error)?;
        Ok(entry)
    }

    /// Appends an audit entry that the next [`Self::sync`] makes durable.
    ///
    /// # Errors
    /// The audit chain cannot be written.
    pub fn audit_later(
        &self,
        kind: AuditKind,
        actor: &str,
        subject: Option<&SubjectDigest>,
        detail: serde_json::Value,
    ) -> Result<AuditEntry, ApiError> {
        let mut record = AuditRecord::new(UtcMicros::now().0, kind, actor).detail(detail);
        if let Some(s) = subject {
            record = record.subject(s.to_string());
        }
        self.audit.append(record).map_err(audit_error)
    }

    /// Makes everything written to the privacy database durable (one fsync for every tree).
    ///
    /// # Errors
    /// The database cannot be flushed.
    pub fn sync(&self) -> Result<(), ApiError> {
        self.db.flush().map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "cannot flush the privacy database");
            ApiError::new(503, "store_unavailable", "the privacy database cannot be made durable now")
        })
    }

    /// Notes that an erasure or sweep waits for a rotation to become final.
    pub(crate) fn rotation_needed(&self, since: UtcMicros) {
        let mut pending = self.pending_since.lock().expect("pending lock");
        if pending.is_none() {
            *pending = Some(since);
        }
    }

    /// When the pending erasures must be final by, if any are pending.
    pub fn finality_due(&self) -> Option<UtcMicros> {
        let since = (*self.pending_since.lock().expect("pending lock"))?;
        Some(UtcMicros(since.0.saturating_add(self.options.finality.as_micros().try_into().unwrap_or(i64::MAX))))
    }
}

pub(crate) fn audit_error(e: lethe_audit::AuditError) -> ApiError {
    tracing::error!(error = %e, code = e.code(), "audit chain failure");
    ApiError::new(503, "audit_unavailable", "the audit chain cannot record this action now; nothing was done")
}

pub(crate) fn dsr_error(e: lethe_dsr::DsrError) -> ApiError {
    let status = e.http_status();
    if status >= 500 {
        tracing::error!(error = %e, code = e.code(), "request log failure");
        return ApiError::new(503, "requests_unavailable", "the request log cannot take this request now");
    }
    ApiError::new(status, e.code(), e.to_string())
}

const POLICY_DIGEST: &[u8] = b"policy-digest";

/// `meta` key: the derived stores a retention sweep still owes a rebuild, as a JSON list of hook
/// names ([`ALL_STORES`]: every one). Absent when nothing is owed.
const RETENTION_OWED: &[u8] = b"retention-owed";

/// In the owed list: every registered derived store.
pub(crate) const ALL_STORES: &str = "*";

impl Privacy {
    /// Records durably which derived stores a retention sweep owes a rebuild (none: the record is
    /// removed).
    pub(crate) fn owe_rebuild(&self, stores: &BTreeSet<String>) -> Result<(), sled::Error> {
        if stores.is_empty() {
            self.meta.remove(RETENTION_OWED)?;
        } else {
            self.meta.insert(RETENTION_OWED, serde_json::to_vec(stores).expect("names serialize"))?;
        }
        self.meta.flush()?;
        Ok(())
    }
}

/// SHA-256 over the records of processing generated from the policies and the controller file:
/// any change of purposes, categories, retention, events, notices or recipients changes it.
fn policy_digest(collect: &CollectState, controller: &ControllerFile) -> String {
    let ropa = crate::ropa::generate(&collect.policies, controller);
    let bytes = serde_json::to_vec(&ropa).expect("records serialize");
    hex::encode(<Sha256 as sha2::Digest>::digest(&bytes))
}

fn rand_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut out);
    out
}
