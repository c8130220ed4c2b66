//! Training on consented data only (R-TRAIN-1) and unlearning (R-ERASE-7), on a real sled log, the
//! privacy service and the model registry.

use std::sync::Arc;

use lethe_auth::{AuthConfig, SigningKeys};
use lethe_collect::auth::Auth;
use lethe_collect::{append_consent, CollectState};
use lethe_consent::ConsentRecord;
use lethe_crypto::{Keyring, MasterSource};
use lethe_domain::{
    EventType, ExpectedVersion, NewEvent, Pseudonym, Purpose, Retention, SchemaVersion, SubjectId, UtcMicros,
};
use lethe_eventlog::{AppendRequest, EventStore, LogConfig, SledEventLog};
use lethe_personalize::drift::drift_metrics;
use lethe_personalize::{Personalizer, TrainConfig, TrainError, Views};
use lethe_policy::Policies;
use lethe_privacy::controller::ControllerFile;
use lethe_privacy::erasure::{self, Asker};
use lethe_privacy::{ErasureHook, Privacy, PrivacyOptions};
use lethe_registry::{RetireReason, Status};

struct World {
    _dir: tempfile::TempDir,
    privacy: Arc<Privacy>,
    personalizer: Arc<Personalizer>,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterSource::Hex("ab".repeat(32));
    let store: Arc<dyn EventStore> = Arc::new(SledEventLog::open(LogConfig::new(dir.path(), master.clone())).unwrap());
    let auth = Arc::new(Auth::new(SigningKeys::generate().unwrap(), AuthConfig::default()));
    let collect = CollectState::build(store, Arc::new(Policies::builtin().unwrap()), auth).unwrap();
    let keyring = Keyring::open(dir.path(), &master).unwrap();
    let controller = ControllerFile::builtin().unwrap();
    let options = PrivacyOptions::from_controller(&controller);
    let privacy = Privacy::open(dir.path(), &keyring, collect, controller, options).unwrap();
    let personalizer = Personalizer::open(dir.path(), &master, Arc::clone(&privacy), TrainConfig::default()).unwrap();
    privacy.register(personalizer.clone());
    World { _dir: dir, privacy, personalizer }
}

fn subject(w: &World, id: &str) -> Pseudonym {
    w.privacy.collect.store.pseudonymize(&SubjectId::parse(id).unwrap())
}

fn consent(w: &World, id: &str, choices: &[(&str, bool)]) {
    let record = ConsentRecord {
        record_id: uuid_like(id, choices.len()),
        ..lethe_testkit::banner_record(choices, UtcMicros::now())
    };
    append_consent(&w.privacy.collect, subject(w, id), record).unwrap();
}

fn uuid_like(id: &str, n: usize) -> uuid::Uuid {
    let mut b = [0u8; 16];
    for (i, c) in id.bytes().enumerate() {
        b[i % 16] ^= c;
    }
    b[15] ^= n as u8;
    uuid::Uuid::from_bytes(b)
}

/// Likes and purchases of the given items.
fn interact(w: &World, id: &str, items: &[&str]) {
    let events = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let (t, purpose) =
                if i % 2 == 0 { ("item.liked", "personalization") } else { ("element.clicked", "analytics") };
            NewEvent {
                event_type: EventType::parse(t).unwrap(),
                schema_version: SchemaVersion::new(1).unwrap(),
                purpose: Purpose::parse(purpose).unwrap(),
                time: UtcMicros::now(),
                retention: Retention::Days(395),
                payload: serde_json::to_vec(&serde_json::json!({"properties": {"product_id": item}})).unwrap(),
            }
        })
        .collect();
    w.privacy
        .collect
        .store
        .append(AppendRequest { subject: subject(w, id), expected: ExpectedVersion::Any, events })
        .unwrap();
}

const TENTS: [&str; 4] = ["tent-1", "tent-2", "stove-3", "lamp-4"];
const DRESSES: [&str; 4] = ["dress-1", "dress-2", "scarf-3", "shoes-4"];

fn seed_consenting(w: &World) {
    for n in 0..6 {
        let id = format!("member-{n}");
        consent(w, &id, &[("analytics", true), ("personalization", true)]);
        let items = if n % 2 == 0 { &TENTS } else { &DRESSES };
        interact(w, &id, &items[..3 + n % 2]);
    }
}

/// R-TRAIN-1: the training set is chosen by consent at training time: an analytics-only subject, a
/// subject who withdrew after its data was written and an erased subject are all out, and the
/// manifest can say so without holding any identifier.
#[test]
fn r_train_1_only_subjects_consenting_at_training_time_are_trained_on() {
    let w = world();
    seed_consenting(&w);
    consent(&w, "analytics-only", &[("analytics", true), ("personalization", false)]);
    interact(&w, "analytics-only", &TENTS);
    consent(&w, "withdrew", &[("personalization", true)]);
    interact(&w, "withdrew", &TENTS);
    consent(&w, "withdrew", &[("personalization", false)]);
    consent(&w, "erased", &[("personalization", true)]);
    interact(&w, "erased", &DRESSES);
    erasure::erase(
        &w.privacy,
        &subject(&w, "erased"),
        Asker { role: "admin", law: lethe_dsr::Law::Gdpr, channel: lethe_dsr::Channel::Api },
    )
    .unwrap();

    let report = w.personalizer.train("admin").unwrap();
    assert_eq!(report.subjects, 6, "{report:?}");
    assert_eq!((report.excluded.withdrawn, report.excluded.erased), (1, 1), "{:?}", report.excluded);
    assert!(report.excluded.no_consent >= 1);
    let (version, model) = w.personalizer.live_recommender().unwrap().expect("a live model");
    for n in 0..6 {
        assert!(version.manifest.membership.contains(&subject(&w, &format!("member-{n}"))));
    }
    for out in ["analytics-only", "withdrew", "erased"] {
        assert!(!version.manifest.membership.contains(&subject(&w, out)), "{out} is in the model");
    }
    assert!(model.items.contains(&"tent-1".to_owned()));
    assert!(report.metrics.contains_key("itemknn_ndcg_at_10"));
    // The run is audited.
    assert!(w.privacy.audit.entries(1).filter_map(Result::ok).any(|e| e.kind == lethe_audit::AuditKind::TrainingRun));
}

/// Training records the serving features' distribution over its own subjects, in memory (here
/// from views replayed from the log: none are attached), once they are enough, and drift is measured
/// against it.
#[test]
fn training_records_the_feature_distribution_of_its_subjects_and_drift_is_measured_against_it() {
    let w = world();
    seed_consenting(&w);
    let report = w.personalizer.train("admin").unwrap();
    assert_eq!(report.subjects, 6);
    assert!(w.personalizer.live_training_distribution().is_none(), "six subjects are too few to describe");

    for n in 6..10 {
        let id = format!("member-{n}");
        consent(&w, &id, &[("analytics", true), ("personalization", true)]);
        interact(&w, &id, &TENTS[..3 + n % 2]);
    }
    // A consenting visitor who only ended a session: held by the views, but no item to train on.
    consent(&w, "browser", &[("analytics", true), ("personalization", true)]);
    let session = NewEvent {
        event_type: EventType::parse("session.ended").unwrap(),
        schema_version: SchemaVersion::new(1).unwrap(),
        purpose: Purpose::parse("analytics").unwrap(),
        time: UtcMicros::now(),
        retention: Retention::Days(395),
        payload: serde_json::to_vec(&serde_json::json!({"properties": {"seconds": 60, "pages": 3}})).unwrap(),
    };
    let store = &w.privacy.collect.store;
    store
        .append(AppendRequest {
            subject: subject(&w, "browser"),
            expected: ExpectedVersion::Any,
            events: vec![session],
        })
        .unwrap();

    let report = w.personalizer.train("admin").unwrap();
    assert_eq!(report.subjects, 10);
    let (version, _) = w.personalizer.live_recommender().unwrap().expect("a live model");
    // The distribution is held in memory, never in the plaintext manifest (it would outlive the
    // model, and the difference to a retrained successor's would describe an erased subject).
    assert!(!version.manifest.metrics.keys().any(|k| k.starts_with("train_dist")), "{:?}", version.manifest.metrics);
    assert!(!report.metrics.keys().any(|k| k.starts_with("train_dist")));
    let m = &w.personalizer.live_training_distribution().expect("ten subjects are recorded").to_metrics();
    assert_eq!(m["train_dist.subjects"], 10.0, "the ten members, not the browser");
    // No event carried a device class or a referrer.
    assert_eq!((m["train_dist.device.none"], m["train_dist.referrer.none"]), (1.0, 1.0));
    // Even members liked, clicked, liked (one click); odd ones liked, clicked, liked, clicked (two).
    assert_eq!((m["train_dist.activity.1"], m["train_dist.activity.2-3"]), (0.5, 0.5));
    assert_eq!(m["train_dist.sessions.0"], 1.0);

    // Serving: the views also hold the browser, one subject in eleven with a session and no activity.
    let views = Views::replay(Arc::clone(store), &w.privacy.collect.policies).unwrap();
    let text = drift_metrics(&w.personalizer, &views);
    let value = |series: &str| {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok()).expect(series)
    };
    // sessions: e = [1, 0, 0, 0, 0], a = [10/11, 1/11, 0, 0, 0] (ε = 1e-4 for empty shares):
    //   (10/11 − 1)·ln(10/11) + (1/11 − 1e-4)·ln((1/11) / 1e-4) = 0.0086646 + 0.0908091 · 6.8124451
    //   = 0.0086646 + 0.6186319 = 0.6272965.
    assert!((value("lethe_feature_psi{feature=\"sessions\"}") - 0.627_297).abs() < 1e-5, "{text}");
    assert_eq!(value("lethe_feature_psi_alert{feature=\"sessions\"}"), 1.0, "{text}");
    // device: every subject `none` on both sides.
    assert_eq!(value("lethe_feature_psi{feature=\"device\"}"), 0.0, "{text}");
    assert_eq!(value("lethe_feature_psi_alert{feature=\"device\"}"), 0.0, "{text}");
}

/// R-TRAIN-1, fail closed: a member who withdraws between selection and registration voids the run.
#[test]
fn r_train_1_a_withdrawal_during_training_fails_the_run_closed() {
    let w = world();
    seed_consenting(&w);
    let set = lethe_personalize::select(w.privacy.collect.store.as_ref(), &w.privacy.collect.policies).unwrap();
    assert_eq!(set.interactions.len(), 6);
    consent(&w, "member-3", &[("personalization", false)]);
    let err = w.personalizer.train_on(set, "admin", &[]).unwrap_err();
    assert!(matches!(err, TrainError::ConsentChanged(1)), "{err}");
    assert_eq!(err.code(), "consent_changed");
    assert!(w.personalizer.live_recommender().unwrap().is_none(), "nothing was registered");
}

/// R-ERASE-7: erasing a member marks every model trained on it; unlearning retrains without it,
/// retires the old version for unlearning (its bytes no longer load) and the new live version does
/// not contain the subject. A withdrawal of personalization does the same.
#[test]
fn r_erase_7_erasure_and_withdrawal_retrain_without_the_subject() {
    let w = world();
    seed_consenting(&w);
    let first = w.personalizer.train("admin").unwrap();
    let member = subject(&w, "member-0");
    let (v1, _) = w.personalizer.live_recommender().unwrap().unwrap();
    assert!(v1.manifest.membership.contains(&member));
    // The export tells a member which models were trained on it.
    let exported =
        ErasureHook::export(w.personalizer.as_ref(), &subject(&w, "member-1")).expect("member-1 is in a model");
    assert_eq!(exported["models_trained_on_you"][0]["version"], 1);

    let cert = erasure::erase(
        &w.privacy,
        &member,
        Asker { role: "subject", law: lethe_dsr::Law::Gdpr, channel: lethe_dsr::Channel::Api },
    )
    .unwrap();
    assert!(cert.stores_touched.iter().any(|s| s.starts_with("model_registry")), "{:?}", cert.stores_touched);
    let queued = w.personalizer.pending().unwrap();
    assert_eq!(queued.len(), 1);
    // A second erasure while the model waits does not push back the first one's deadline.
    std::thread::sleep(std::time::Duration::from_millis(5));
    erasure::erase(
        &w.privacy,
        &subject(&w, "member-3"),
        Asker { role: "subject", law: lethe_dsr::Law::Gdpr, channel: lethe_dsr::Channel::Api },
    )
    .unwrap();
    assert_eq!(w.personalizer.pending().unwrap(), queued, "the model keeps the stamp of the first erasure");
    let second = w.personalizer.unlearn_pending().unwrap().expect("a retrained model");
    assert_eq!(second.subjects, first.subjects - 2);
    assert!(second.retired.contains(&v1.id.to_string()));
    let old = w.personalizer.registry().get(v1.id).unwrap().unwrap();
    assert!(
        matches!(old.status, Status::Retired { reason: RetireReason::Superseded | RetireReason::Unlearning, .. }),
        "{:?}",
        old.status
    );
    let (v2, _) = w.personalizer.live_recommender().unwrap().unwrap();
    assert!(!v2.manifest.membership.contains(&member));
    assert!(w.personalizer.pending().unwrap().is_empty());
    // The old bytes are gone, under the rotated key too.
    assert!(w.personalizer.registry().load_blob(v1.id, &lethe_crypto::SecretBytes::random()).is_err());

    // A withdrawal of personalization is unlearned the same way.
    let leaver = subject(&w, "member-1");
    consent(&w, "member-1", &[("personalization", false)]);
    ErasureHook::withdrawn(w.personalizer.as_ref(), &leaver, &[Purpose::parse("personalization").unwrap()]).unwrap();
    let third = w.personalizer.unlearn_pending().unwrap().expect("retrained");
    assert_eq!(third.subjects, first.subjects - 3);
    let (v3, _) = w.personalizer.live_recommender().unwrap().unwrap();
    assert!(!v3.manifest.membership.contains(&leaver));
    // An analytics-only withdrawal does not touch the models.
    ErasureHook::withdrawn(w.personalizer.as_ref(), &subject(&w, "member-2"), &[Purpose::parse("analytics").unwrap()])
        .unwrap();
    assert!(w.personalizer.pending().unwrap().is_empty());
}

/// R-ERASE-3 for feature views: the views follow the log, an analytics-only subject builds no
/// personalization features, the export carries a member's features, and an erasure removes the
/// subject from every view at once.
#[test]
fn r_erase_3_feature_views_follow_the_log_and_forget_at_once() {
    let w = world();
    seed_consenting(&w);
    consent(&w, "analytics-only", &[("analytics", true), ("personalization", false)]);
    interact(&w, "analytics-only", &TENTS);
    let views = Arc::new(
        lethe_personalize::Views::replay(Arc::clone(&w.privacy.collect.store), &w.privacy.collect.policies).unwrap(),
    );
    w.privacy.register(views.clone());
    let member = subject(&w, "member-0");
    assert!(views.holds(&member));
    assert!(!views.holds(&subject(&w, "analytics-only")), "no personalization features without that consent");
    interact(&w, "member-2", &["lamp-9"]);
    views.catch_up().unwrap();
    assert!(ErasureHook::export(views.as_ref(), &member).is_some());
    let cert = erasure::erase(
        &w.privacy,
        &member,
        Asker { role: "subject", law: lethe_dsr::Law::Gdpr, channel: lethe_dsr::Channel::Api },
    )
    .unwrap();
    assert!(cert.stores_touched.iter().any(|s| s.starts_with("feature_views")), "{:?}", cert.stores_touched);
    assert!(!views.holds(&member));
    views.catch_up().unwrap();
    assert!(!views.holds(&member), "the fence does not bring it back");
    assert_eq!(views.subjects(), 5);
}
