//! Erasures a store could not finish (R-ERASE-3, with Art. 19 notices and the certificate of
//! R-ERASE-8), on a real sled log, key store and privacy database: the pending erasure is kept in the
//! privacy database without the subject's pseudonym, survives a restart, is retried with a bounded
//! backoff, and completes under the certificate id its recipient notice already carries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lethe_auth::{AuthConfig, SigningKeys};
use lethe_collect::auth::Auth;
use lethe_collect::{append_consent, CollectState};
use lethe_crypto::{Keyring, MasterSource};
use lethe_domain::{Pseudonym, SubjectId, UtcMicros};
use lethe_dsr::{Channel, Law, Status, SubjectDigest};
use lethe_eventlog::{EventStore, LogConfig, SledEventLog};
use lethe_policy::Policies;
use lethe_privacy::controller::ControllerFile;
use lethe_privacy::erasure::{self, Asker};
use lethe_privacy::{ErasureHook, Privacy, PrivacyOptions, PRIVACY_DIR};
use lethe_testkit::{contains, file_contents_under};

const SECOND: i64 = 1_000_000;

fn master() -> MasterSource {
    MasterSource::Hex("5e".repeat(32))
}

/// A store that fails to forget for its first `failures` calls, then forgets.
#[derive(Debug)]
struct Flaky {
    failures: AtomicUsize,
    calls: AtomicUsize,
}

impl Flaky {
    fn failing(failures: usize) -> Arc<Self> {
        Arc::new(Self { failures: AtomicUsize::new(failures), calls: AtomicUsize::new(0) })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ErasureHook for Flaky {
    fn name(&self) -> &str {
        "flaky_store"
    }

    fn forget(&self, _subject: &Pseudonym) -> Result<bool, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
            Ok(_) => Err("disk full".into()),
            Err(_) => Ok(true),
        }
    }
}

/// A store with a defect: it panics on its first `panics` calls to forget, then forgets.
#[derive(Debug)]
struct Panicking {
    panics: AtomicUsize,
}

impl ErasureHook for Panicking {
    fn name(&self) -> &str {
        "panicking_store"
    }

    fn forget(&self, _subject: &Pseudonym) -> Result<bool, String> {
        if self.panics.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            panic!("a defect in the store");
        }
        Ok(true)
    }
}

/// A data directory with its log, key store and privacy service, as `lethe serve` opens them, with
/// the advertising partners' webhook configured.
struct World {
    dir: tempfile::TempDir,
    privacy: Arc<Privacy>,
}

impl World {
    fn new(options: impl Fn(&mut PrivacyOptions) + Copy) -> Self {
        Self::open(tempfile::tempdir().unwrap(), options)
    }

    fn open(dir: tempfile::TempDir, options: impl Fn(&mut PrivacyOptions)) -> Self {
        let store: Arc<dyn EventStore> = Arc::new(SledEventLog::open(LogConfig::new(dir.path(), master())).unwrap());
        let auth = Arc::new(Auth::new(SigningKeys::generate().unwrap(), AuthConfig::default()));
        let collect = CollectState::build(store, Arc::new(Policies::builtin().unwrap()), auth).unwrap();
        let keyring = Keyring::open(dir.path(), &master()).unwrap();
        let mut controller = ControllerFile::builtin().unwrap();
        let ads = controller.recipients.iter_mut().find(|r| r.id == "ad-partners").unwrap();
        ads.webhook = Some("http://127.0.0.1:9/erased".into());
        let mut opts = PrivacyOptions::from_controller(&controller);
        options(&mut opts);
        // sled lets go of a dropped database's lock a moment after the drop.
        let deadline = Instant::now() + Duration::from_secs(5);
        let privacy = loop {
            match Privacy::open(dir.path(), &keyring, collect.clone(), controller.clone(), opts.clone()) {
                Ok(p) => break p,
                Err(lethe_privacy::OpenError::Storage(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("open the privacy database: {e}"),
            }
        };
        Self { dir, privacy }
    }

    /// Closes everything (log, privacy database) and opens the data directory again: a restart.
    fn restart(self) -> Self {
        let Self { dir, privacy } = self;
        drop(privacy);
        Self::open(dir, |_| {})
    }

    fn subject(&self, id: &str) -> Pseudonym {
        self.privacy.collect.store.pseudonymize(&SubjectId::parse(id).unwrap())
    }

    /// Grants every purpose, sale and sharing with the advertising partners included.
    fn consent(&self, id: &str) {
        let record = lethe_testkit::banner_record(
            &[("analytics", true), ("personalization", true), ("sale_share", true)],
            UtcMicros::now(),
        );
        append_consent(&self.privacy.collect, self.subject(id), record).unwrap();
    }

    fn erase(&self, subject: &Pseudonym) -> Result<lethe_privacy::ErasureCertificate, lethe_collect::ApiError> {
        erasure::erase(&self.privacy, subject, Asker { role: "subject", law: Law::Gdpr, channel: Channel::Api })
    }

    /// The certificate ids of the queued recipient notices.
    fn noticed_certificates(&self) -> Vec<String> {
        self.privacy
            .outbox
            .list(None)
            .unwrap()
            .iter()
            .map(|m| m.body["certificate_id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn erasure_requests(&self, subject: &Pseudonym) -> Vec<lethe_dsr::Request> {
        let digest = SubjectDigest::of_pseudonym(subject.as_bytes());
        self.privacy.requests.by_subject(&digest).unwrap()
    }
}

/// R-ERASE-3, R-ERASE-8, Art. 19: an erasure whose store failed is kept in the privacy database,
/// holds neither the subject's pseudonym nor its id there, survives a restart, and is completed by
/// the background retry under the certificate id the already-queued notice carries, listing every
/// store and the recipient notified; the notice is not queued twice.
#[test]
fn r_erase_3_a_pending_erasure_survives_a_restart_and_completes_under_its_first_certificate_id() {
    let w = World::new(|_| {});
    let broken = Flaky::failing(usize::MAX);
    w.privacy.register(broken.clone());
    w.consent("restart-subject-5521");
    let subject = w.subject("restart-subject-5521");

    let err = w.erase(&subject).unwrap_err();
    assert_eq!((err.status, err.code), (503, "erasure_incomplete"), "{}", err.message);
    assert!(err.message.contains("flaky_store"), "{}", err.message);
    let noticed = w.noticed_certificates();
    assert_eq!(noticed.len(), 1, "the recipient's notice is queued at the first attempt");
    let pending = erasure::pending_erasures(&w.privacy).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].certificate.certificate_id, noticed[0]);
    assert_eq!(pending[0].stores_failed, ["flaky_store"]);
    assert_eq!(pending[0].certificate.recipients_notified, ["ad-partners"]);
    assert!(pending[0].recipients_owed.is_empty());

    // The privacy database names the subject by digest only, pending erasure included.
    w.privacy.db.flush().unwrap();
    let hex_pseudonym = subject.to_hex();
    let needles: [&[u8]; 3] = [subject.as_bytes(), hex_pseudonym.as_bytes(), b"restart-subject-5521"];
    for (path, bytes) in file_contents_under(&w.dir.path().join(PRIVACY_DIR)) {
        for n in &needles {
            assert!(!contains(&bytes, n), "{} holds {:?}", path.display(), String::from_utf8_lossy(n));
        }
    }

    // A restart keeps it; the store now forgets.
    let w = w.restart();
    let healed = Flaky::failing(0);
    w.privacy.register(healed.clone());
    let kept = erasure::pending_erasures(&w.privacy).unwrap();
    assert_eq!(kept, pending, "the pending erasure survives the restart as it was");
    // Not due yet: the first retry waits its backoff.
    let report = erasure::retry_pending(&w.privacy, UtcMicros::now()).unwrap();
    assert_eq!((report.retried, report.pending, healed.calls()), (0, 1, 0), "{report:?}");

    let later = UtcMicros(UtcMicros::now().0 + 3600 * SECOND);
    let report = erasure::retry_pending(&w.privacy, later).unwrap();
    assert_eq!((report.retried, report.pending, report.completed.len()), (1, 0, 1), "{report:?}");
    assert_eq!(healed.calls(), 1);
    let certificate = &report.completed[0];
    assert_eq!(certificate.certificate_id, noticed[0], "the certificate carries the id the notice named");
    assert_eq!(certificate.request_id, pending[0].certificate.request_id);
    assert_eq!(certificate.recipients_notified, ["ad-partners"]);
    assert!(certificate.newly_erased);
    for store in ["event_log:", "key_store:", "consent_book:", "flaky_store: removed", "outbox: 1 recipient notice"] {
        assert!(
            certificate.stores_touched.iter().any(|s| s.starts_with(store)),
            "{store} missing from {:?}",
            certificate.stores_touched
        );
    }
    assert!(erasure::verify_certificate(&w.privacy, certificate));
    let stored = w.privacy.certificates.get(certificate.certificate_id.as_bytes()).unwrap().expect("stored");
    assert_eq!(&serde_json::from_slice::<lethe_privacy::ErasureCertificate>(&stored).unwrap(), certificate);
    assert_eq!(w.noticed_certificates(), noticed, "no notice is queued twice");
    let requests = w.erasure_requests(&subject);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].status(), Status::Completed);
    assert!(w.privacy.audit.entries(1).filter_map(Result::ok).any(|e| e.kind == lethe_audit::AuditKind::Erasure
        && e.detail["certificate_id"] == certificate.certificate_id.as_str()));

    // Settled for good: nothing is pending after another restart.
    let w = w.restart();
    assert!(erasure::pending_erasures(&w.privacy).unwrap().is_empty());
    assert!(lethe_privacy::schedule::metrics(&w.privacy).contains("lethe_erasures_pending 0\n"));
}

/// R-ERASE-3: a store that panics while it forgets (a defect) has not forgotten: the erasure is
/// answered, the stores registered after it are told all the same, the erasure stays pending with
/// that store to retry, and the retry completes it.
#[test]
fn r_erase_3_a_store_that_panics_counts_as_failed_and_the_others_still_forget() {
    let w = World::new(|_| {});
    let panicking = Arc::new(Panicking { panics: AtomicUsize::new(1) });
    let after = Flaky::failing(0);
    w.privacy.register(panicking);
    w.privacy.register(after.clone());
    w.consent("panic-subject-8832");
    let subject = w.subject("panic-subject-8832");

    let err = w.erase(&subject).unwrap_err();
    assert_eq!((err.status, err.code), (503, "erasure_incomplete"), "{}", err.message);
    assert!(err.message.contains("panicking_store"), "{}", err.message);
    assert_eq!(after.calls(), 1, "the store registered after the panicking one was told to forget");
    let pending = erasure::pending_erasures(&w.privacy).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].stores_failed, ["panicking_store"]);
    assert!(pending[0].certificate.stores_touched.iter().any(|s| s == "flaky_store: removed"));

    let later = UtcMicros(UtcMicros::now().0 + 3600 * SECOND);
    let report = erasure::retry_pending(&w.privacy, later).unwrap();
    assert_eq!((report.retried, report.pending, report.completed.len()), (1, 0, 1), "{report:?}");
    let touched = &report.completed[0].stores_touched;
    assert!(touched.iter().any(|s| s == "panicking_store: removed"), "{touched:?}");
    assert!(erasure::pending_erasures(&w.privacy).unwrap().is_empty());
}

/// R-ERASE-3: a store that keeps failing is called again after a wait that doubles with each
/// failure and stops growing at the configured bound; a retry before it is due calls nothing.
#[test]
fn r_erase_3_a_store_that_keeps_failing_is_retried_with_a_bounded_backoff() {
    let w = World::new(|o| {
        o.erasure_retry_first = Duration::from_secs(10);
        o.erasure_retry_max = Duration::from_secs(40);
    });
    let flaky = Flaky::failing(5);
    w.privacy.register(flaky.clone());
    w.consent("backoff-subject");
    let subject = w.subject("backoff-subject");
    assert_eq!(w.erase(&subject).unwrap_err().code, "erasure_incomplete");
    assert!(lethe_privacy::schedule::metrics(&w.privacy).contains("lethe_erasures_pending 1\n"));

    let mut waits = Vec::new();
    let mut completed = None;
    for _ in 0..10 {
        let pending = erasure::pending_erasures(&w.privacy).unwrap();
        let Some(p) = pending.first() else { break };
        // Just before it is due, nothing is called.
        let calls = flaky.calls();
        let early = erasure::retry_pending(&w.privacy, UtcMicros(p.next_attempt_at.0 - 1)).unwrap();
        assert_eq!((early.retried, flaky.calls()), (0, calls));
        let report = erasure::retry_pending(&w.privacy, p.next_attempt_at).unwrap();
        assert_eq!(report.retried, 1);
        if let Some(c) = report.completed.into_iter().next() {
            completed = Some(c);
            break;
        }
        let next = erasure::pending_erasures(&w.privacy).unwrap()[0].clone();
        waits.push((next.next_attempt_at.0 - p.next_attempt_at.0) / SECOND);
        assert_eq!(next.attempts, p.attempts + 1);
    }
    assert_eq!(waits, [20, 40, 40, 40], "doubling from 10 s, bounded at 40 s");
    assert_eq!(flaky.calls(), 6, "the first attempt, four failed retries and the one that forgot");
    let certificate = completed.expect("the erasure completes once the store forgets");
    assert_eq!(w.noticed_certificates(), std::slice::from_ref(&certificate.certificate_id));
    assert_eq!(w.erasure_requests(&subject)[0].status(), Status::Completed);
}

/// R-ERASE-3, R-DSR-1: a pending erasure whose failed store Lethe no longer runs (renamed or removed
/// by an upgrade) cannot be retried by anything; the DPO closes it by hand, and the certificate says
/// which store was closed so. While the store still runs, the hand-made close is refused.
#[test]
fn r_erase_3_the_dpo_closes_by_hand_an_erasure_whose_store_no_longer_runs() {
    let w = World::new(|_| {});
    let broken = Flaky::failing(usize::MAX);
    w.privacy.register(broken.clone());
    w.consent("retired-store-subject");
    let subject = w.subject("retired-store-subject");
    assert_eq!(w.erase(&subject).unwrap_err().code, "erasure_incomplete");
    let pending = erasure::pending_erasures(&w.privacy).unwrap().remove(0);
    let request = pending.request_id().unwrap();
    let refused = erasure::close_by_hand(&w.privacy, request, "dpo").unwrap_err();
    assert_eq!((refused.status, refused.code), (409, "erasure_pending"), "{}", refused.message);
    assert!(refused.message.contains("flaky_store"), "{}", refused.message);

    // After a restart without that store, nothing retries it: the background work passes over it.
    let w = w.restart();
    let later = UtcMicros(UtcMicros::now().0 + 3600 * SECOND);
    let report = erasure::retry_pending(&w.privacy, later).unwrap();
    assert_eq!((report.retried, report.pending), (0, 1), "{report:?}");
    // A standing legal hold stops the close, its notices and its certificate too.
    let dpo = lethe_dsr::ActorRole::parse("dpo").unwrap();
    let step = || lethe_dsr::Step::new(lethe_dsr::jiff::Timestamp::now(), dpo.clone());
    w.privacy.requests.update(request, |r| r.place_hold(step(), lethe_dsr::HoldReason::AuthorityOrder)).unwrap();
    let held = erasure::close_by_hand(&w.privacy, request, "dpo").unwrap_err();
    assert_eq!((held.status, held.code), (409, "legal_hold"), "{}", held.message);
    assert!(erasure::pending_erasures(&w.privacy).unwrap().len() == 1 && w.privacy.certificates.is_empty());
    w.privacy.requests.update(request, |r| r.release_hold(step())).unwrap();
    let certificate = erasure::close_by_hand(&w.privacy, request, "dpo").unwrap().expect("it was pending");
    assert_eq!(certificate.certificate_id, pending.certificate.certificate_id);
    assert!(
        certificate.stores_touched.iter().any(|s| s == "flaky_store: no longer run by Lethe; closed by the dpo"),
        "{:?}",
        certificate.stores_touched
    );
    assert!(erasure::verify_certificate(&w.privacy, &certificate));
    assert_eq!(w.erasure_requests(&subject)[0].status(), Status::Completed);
    assert!(erasure::pending_erasures(&w.privacy).unwrap().is_empty());
    assert_eq!(erasure::close_by_hand(&w.privacy, request, "dpo").unwrap(), None, "nothing is pending any more");
    assert_eq!(
        w.noticed_certificates(),
        std::slice::from_ref(&certificate.certificate_id),
        "the notice was queued once"
    );
}
