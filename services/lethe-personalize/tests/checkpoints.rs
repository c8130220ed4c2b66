//! Sealed checkpoints of the feature views (`Views::open`), on a real sled log, key store and
//! privacy service: a restart restores the checkpoint and replays only what follows it, with views
//! byte-identical to a full replay (invariant 6); an erasure moves the checkpoint to a new key and
//! destroys the old one, so that no checkpoint taken before it opens again and no byte of the data
//! directory holds the subject (R-ERASE-3, invariant 5); a retention sweep rebuilds the views
//! without the expired events and moves the checkpoint to a new key in the same way (R-RETAIN-1);
//! a bad checkpoint falls back to a replay.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lethe_auth::{AuthConfig, SigningKeys};
use lethe_collect::auth::Auth;
use lethe_collect::{append_consent, CollectState};
use lethe_consent::{ConsentRecord, CONSENT_CHANGED, CONSENT_SCHEMA_VERSION};
use lethe_crypto::{Keyring, MasterSource, KEYS_DIR};
use lethe_domain::schema::types::RECOMMENDATIONS_SERVED;
use lethe_domain::{
    EventType, ExpectedVersion, NewEvent, Pseudonym, Purpose, Retention, SchemaVersion, SubjectId, UtcMicros,
};
use lethe_eventlog::{AppendRequest, EventStore, LogConfig, SledEventLog};
use lethe_features::Projector;
use lethe_personalize::views::{discard_checkpoint, Origin, CHECKPOINT_FILE, VIEWS_DIR};
use lethe_personalize::Views;
use lethe_policy::Policies;
use lethe_privacy::controller::ControllerFile;
use lethe_privacy::erasure::{self, Asker};
use lethe_privacy::{ErasureHook, Privacy, PrivacyOptions};

const DAY: i64 = 86_400_000_000;

fn master() -> MasterSource {
    MasterSource::Hex("cd".repeat(32))
}

/// A data directory with its log, key store and privacy service, as `lethe serve` opens them.
struct World {
    dir: tempfile::TempDir,
    privacy: Arc<Privacy>,
}

impl World {
    fn new() -> Self {
        Self::open(tempfile::tempdir().unwrap())
    }

    fn open(dir: tempfile::TempDir) -> Self {
        let store: Arc<dyn EventStore> = Arc::new(SledEventLog::open(LogConfig::new(dir.path(), master())).unwrap());
        let auth = Arc::new(Auth::new(SigningKeys::generate().unwrap(), AuthConfig::default()));
        let collect = CollectState::build(store, Arc::new(Policies::builtin().unwrap()), auth).unwrap();
        let keyring = Keyring::open(dir.path(), &master()).unwrap();
        let controller = ControllerFile::builtin().unwrap();
        let options = PrivacyOptions::from_controller(&controller);
        let privacy = Privacy::open(dir.path(), &keyring, collect, controller, options).unwrap();
        Self { dir, privacy }
    }

    /// Closes everything (log, privacy database) and opens the data directory again: a restart.
    fn restart(self) -> Self {
        let Self { dir, privacy } = self;
        drop(privacy);
        Self::open(dir)
    }

    fn store(&self) -> Arc<dyn EventStore> {
        Arc::clone(&self.privacy.collect.store)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The views as `lethe serve` opens them, registered for erasure.
    fn views(&self) -> Arc<Views> {
        let views =
            Arc::new(Views::open(self.store(), &self.privacy.collect.policies, self.path(), &master()).unwrap());
        self.privacy.register(views.clone());
        views
    }

    /// The digest of a full replay of the log.
    fn replay_digest(&self) -> [u8; 32] {
        Views::replay(self.store(), &self.privacy.collect.policies).unwrap().with(Projector::snapshot_digest)
    }

    fn subject(&self, id: &str) -> Pseudonym {
        self.privacy.collect.store.pseudonymize(&SubjectId::parse(id).unwrap())
    }

    fn consent(&self, id: &str, personalization: bool) {
        append_consent(&self.privacy.collect, self.subject(id), Self::record(personalization, UtcMicros::now()))
            .unwrap();
    }

    /// A grant of personalization collected at `at`, kept until erasure (as the collector keeps
    /// every consent proof).
    fn grant_at(&self, id: &str, at: UtcMicros) {
        append_consent(&self.privacy.collect, self.subject(id), Self::record(true, at)).unwrap();
    }

    /// A grant of personalization collected at `at`, sealed under a period key of `days` days, so
    /// that it expires with the subject's other events and nothing of the subject stays readable.
    fn expiring_grant_at(&self, id: &str, at: UtcMicros, days: u16) {
        let event = NewEvent {
            event_type: EventType::parse(CONSENT_CHANGED).unwrap(),
            schema_version: SchemaVersion::new(CONSENT_SCHEMA_VERSION).unwrap(),
            purpose: Purpose::necessary(),
            time: at,
            retention: Retention::Days(days),
            payload: serde_json::to_vec(&Self::record(true, at)).unwrap(),
        };
        let request = AppendRequest { subject: self.subject(id), expected: ExpectedVersion::Any, events: vec![event] };
        self.privacy.collect.store.append(request).unwrap();
    }

    fn record(personalization: bool, collected_at: UtcMicros) -> ConsentRecord {
        lethe_testkit::banner_record(&[("analytics", true), ("personalization", personalization)], collected_at)
    }

    /// One like per item, now, kept 395 days.
    fn like(&self, id: &str, items: &[&str]) {
        self.like_at(id, items, UtcMicros::now(), Retention::Days(395));
    }

    /// One like per item at `time`, kept for `retention`.
    fn like_at(&self, id: &str, items: &[&str], time: UtcMicros, retention: Retention) {
        let events = items
            .iter()
            .map(|item| NewEvent {
                event_type: EventType::parse("item.liked").unwrap(),
                schema_version: SchemaVersion::new(1).unwrap(),
                purpose: Purpose::parse("personalization").unwrap(),
                time,
                retention,
                payload: serde_json::to_vec(&serde_json::json!({"properties": {"product_id": item}})).unwrap(),
            })
            .collect();
        let request = AppendRequest { subject: self.subject(id), expected: ExpectedVersion::Any, events };
        self.privacy.collect.store.append(request).unwrap();
    }

    fn seed(&self, from: usize, to: usize) {
        for n in from..to {
            let id = format!("member-{n}");
            self.consent(&id, true);
            let items = if n % 2 == 0 { ["tent-1", "stove-2", "lamp-3"] } else { ["dress-1", "scarf-2", "shoes-3"] };
            self.like(&id, &items[..2 + n % 2]);
        }
    }

    fn checkpoint_file(&self) -> PathBuf {
        self.path().join(VIEWS_DIR).join(CHECKPOINT_FILE)
    }

    /// The generations of the checkpoint keys in the key store.
    fn generations(&self) -> Vec<u64> {
        let mut out: Vec<u64> = std::fs::read_dir(self.path().join(KEYS_DIR))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_prefix("views-key-")?.strip_suffix(".sealed")?.parse().ok()
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// A checkpoint key as the key store holds it; `None` once destroyed.
    fn key(&self, generation: u64) -> Option<[u8; 32]> {
        let keyring = Keyring::open(self.path(), &master()).unwrap();
        keyring.blob(&format!("views-key-{generation}")).unwrap().map(|k| k[..].try_into().unwrap())
    }
}

/// Every file under `dir` holding `needle` in its raw bytes, with the offset.
/// A random string no data directory holds by chance.
fn canary() -> String {
    lethe_crypto::random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect()
}

/// The items a subject of the views liked (its access export's `recently_liked`).
fn liked(views: &Views, subject: &Pseudonym) -> Vec<String> {
    let export = views.with(|p| p.export(subject)).unwrap_or_default();
    serde_json::from_value(export["recently_liked"].clone()).unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn erase(w: &World, subject: &Pseudonym) -> Vec<String> {
    let asker = Asker { role: "subject", law: lethe_dsr::Law::Gdpr, channel: lethe_dsr::Channel::Api };
    erasure::erase(&w.privacy, subject, asker).unwrap().stores_touched
}

/// Invariant 6 across a restart: the views are restored from the checkpoint, only the events after
/// its position are applied (a withdrawal among them), and the result is byte-identical to a full
/// replay of the log. A periodic checkpoint is written only when the views moved.
#[test]
fn a_restart_restores_the_checkpoint_and_replays_only_what_follows() {
    let w = World::new();
    w.seed(0, 6);
    let views = w.views();
    assert_eq!(views.origin(), Origin::Replayed { events: w.store().head().0, fallback: Some("no_checkpoint") });
    assert!(w.checkpoint_file().exists(), "the start writes a first checkpoint");
    assert_eq!(w.generations(), vec![1]);

    // Periodic checkpoints: nothing new, nothing written; new events beyond the threshold, written.
    assert_eq!(views.checkpoint_if_due(Duration::ZERO, 1).unwrap(), None);
    w.seed(6, 9);
    views.catch_up().unwrap();
    assert_eq!(views.checkpoint_if_due(Duration::from_secs(3600), 1_000_000).unwrap(), None, "not due yet");
    let written = views.checkpoint_if_due(Duration::from_secs(3600), 5).unwrap().expect("due by events");
    assert_eq!((written.position, written.generation), (w.store().head(), 1));
    assert!(written.bytes > 0);

    // After the checkpoint: new members, more likes and a withdrawal.
    w.seed(9, 11);
    w.like("member-0", &["tent-9"]);
    w.consent("member-1", false);
    let head = w.store().head();
    drop(views);

    let w = w.restart();
    let views = w.views();
    let caught_up = head.0 - written.position.0;
    assert_eq!(views.origin(), Origin::Restored { position: written.position, caught_up });
    assert!(caught_up > 0 && caught_up < head.0);
    assert_eq!(views.with(Projector::snapshot_digest), w.replay_digest(), "restored views equal a full replay");
    assert!(views.holds(&w.subject("member-10")));
    assert!(!views.holds(&w.subject("member-1")), "the withdrawal after the checkpoint applies");
    // Every start moves to a new key and destroys the old one.
    assert_eq!(w.generations(), vec![2]);
    assert_eq!(w.key(1), None);

    // At shutdown; the next start has nothing to catch up.
    let last = views.checkpoint().unwrap().expect("checkpointed views");
    assert_eq!((last.position, last.generation), (head, 2));
    drop(views);
    let w = w.restart();
    let views = w.views();
    assert_eq!(views.origin(), Origin::Restored { position: head, caught_up: 0 });
    assert_eq!(views.with(Projector::snapshot_digest), w.replay_digest());
}

/// The views follow the log in batches, read without their lock: more events than one batch holds,
/// receipts of recommendations among them (which the views read but leave sealed), give views equal
/// to a full replay.
#[test]
fn catching_up_over_several_batches_equals_a_full_replay() {
    let w = World::new();
    w.seed(0, 4);
    let views = w.views();
    let requests: Vec<AppendRequest> = (0..40)
        .map(|r| {
            let events = (0..500)
                .map(|i| NewEvent {
                    event_type: EventType::parse(if i % 2 == 0 { "item.liked" } else { RECOMMENDATIONS_SERVED })
                        .unwrap(),
                    schema_version: SchemaVersion::new(1).unwrap(),
                    purpose: Purpose::parse("personalization").unwrap(),
                    time: UtcMicros::now(),
                    retention: Retention::Days(395),
                    payload: serde_json::to_vec(
                        &serde_json::json!({"properties": {"product_id": format!("bulk-{}", i % 37)}}),
                    )
                    .unwrap(),
                })
                .collect();
            AppendRequest { subject: w.subject(&format!("member-{}", r % 4)), expected: ExpectedVersion::Any, events }
        })
        .collect();
    for r in w.store().append_batch(requests) {
        r.unwrap();
    }
    let before = views.with(|p| p.stats());
    views.catch_up().unwrap();
    let after = views.with(|p| p.stats());
    assert_eq!(after.events - before.events, 20_000, "more than one batch");
    assert_eq!(after.ignored - before.ignored, 10_000, "the receipts");
    assert_eq!(views.with(Projector::position), w.store().head());
    assert_eq!(views.with(Projector::snapshot_digest), w.replay_digest());
    assert!(liked(&views, &w.subject("member-1")).iter().any(|i| i == "bulk-17"));
}

/// R-ERASE-3 and invariant 5 for checkpoints: an erasure writes a fresh checkpoint under a new key
/// and destroys the old key, so the checkpoint taken before the erasure (which held the subject,
/// sealed) opens under no key the key store still has; the views restored after a restart do not
/// hold the subject, and no byte of the data directory holds the subject's canary.
#[test]
fn r_erase_3_an_erasure_destroys_the_key_of_every_checkpoint_that_held_the_subject() {
    let w = World::new();
    w.seed(0, 4);
    let canary = canary();
    let canary_item = format!("canary-item-{canary}");
    let erased_id = format!("canary-subject-{canary}");
    w.consent(&erased_id, true);
    w.like(&erased_id, &[&canary_item, "tent-1"]);
    let erased = w.subject(&erased_id);

    let views = w.views();
    assert!(views.holds(&erased));
    let before = views.checkpoint().unwrap().expect("checkpointed views");
    let old_bytes = std::fs::read(w.checkpoint_file()).unwrap();
    let old_key = w.key(before.generation).expect("the checkpoint key is in the key store");
    // The checkpoint holds the subject, sealed: readable under its key, never in plaintext on disk.
    let (old, _) = Projector::restore(&old_bytes, &old_key).unwrap();
    assert!(old.holds(&erased));
    assert!(old.snapshot_bytes().windows(canary_item.len()).any(|x| x == canary_item.as_bytes()));
    assert_eq!(lethe_testkit::find_in_files(w.path(), canary_item.as_bytes()), vec![], "views at rest are sealed");

    let touched = erase(&w, &erased);
    assert!(touched.iter().any(|s| s.starts_with("feature_views")), "{touched:?}");
    assert!(!views.holds(&erased));

    // The old key is gone from the key store (its file overwritten and unlinked); one new key is left.
    assert_eq!(w.key(before.generation), None);
    let generations = w.generations();
    assert_eq!(generations.len(), 1, "{generations:?}");
    let current = generations[0];
    assert!(current > before.generation);
    let current_key = w.key(current).unwrap();
    // The checkpoint taken before the erasure does not open under the current key...
    let err = Projector::restore(&old_bytes, &current_key).unwrap_err();
    assert_eq!(err.code(), "checkpoint_tampered");
    // ...and the one on disk now is a new one, without the subject or anything it brought.
    let new_bytes = std::fs::read(w.checkpoint_file()).unwrap();
    assert_ne!(new_bytes, old_bytes);
    let (new, position) = Projector::restore(&new_bytes, &current_key).unwrap();
    assert_eq!(position, w.store().head(), "the checkpoint covers the fence");
    assert!(!new.holds(&erased));
    assert!(!new.snapshot_bytes().windows(canary_item.len()).any(|x| x == canary_item.as_bytes()));

    drop(views);
    let w = w.restart();
    let views = w.views();
    assert!(matches!(views.origin(), Origin::Restored { .. }), "{:?}", views.origin());
    assert!(!views.holds(&erased), "restored views do not hold the erased subject");
    assert_eq!(views.subjects(), 4);
    assert_eq!(views.with(Projector::snapshot_digest), w.replay_digest());
    for needle in [canary_item.as_bytes(), erased_id.as_bytes(), canary.as_bytes()] {
        assert_eq!(
            lethe_testkit::find_in_files(w.path(), needle),
            vec![],
            "a raw byte of the data directory holds the canary"
        );
    }
}

/// An erasure made while the views are not running (`lethe erase`) discards the checkpoint and its
/// keys; the next start replays the log without the subject.
#[test]
fn r_erase_3_an_erasure_without_the_views_discards_the_checkpoint() {
    let w = World::new();
    w.seed(0, 4);
    let views = w.views();
    views.checkpoint().unwrap().expect("checkpointed views");
    drop(views);
    let member = w.subject("member-2");
    let w = w.restart();
    erase(&w, &member); // no views registered: as `lethe erase` does
    assert_eq!(discard_checkpoint(w.path(), &master()).unwrap(), 1);
    assert!(w.generations().is_empty());
    assert!(!w.checkpoint_file().exists());
    let w = w.restart();
    let views = w.views();
    assert!(matches!(views.origin(), Origin::Replayed { fallback: Some("no_checkpoint"), .. }));
    assert!(!views.holds(&member));
    assert_eq!(views.with(Projector::snapshot_digest), w.replay_digest());
}

/// A checkpoint that cannot be used never fails the start: truncated, altered, of an unknown
/// version, not a checkpoint at all, or without its key, the views are replayed from the log with
/// the same digest, and a good checkpoint is written again for the next start.
#[test]
fn a_bad_checkpoint_falls_back_to_a_replay_with_the_same_digest() {
    let w = World::new();
    w.seed(0, 6);
    drop(w.views());
    let expected = w.replay_digest();
    let head = w.store().head();

    type Damage = fn(&World, &mut Vec<u8>);
    let cases: [(&str, Damage); 6] = [
        ("checkpoint_truncated", |_, b| b.truncate(20)),
        ("checkpoint_tampered", |_, b| b.truncate(b.len() - 7)),
        ("checkpoint_tampered", |_, b| {
            let last = b.len() - 1;
            b[last] ^= 0x40;
        }),
        ("checkpoint_version", |_, b| b[8] = 0x7f),
        ("checkpoint_format", |_, b| *b = b"definitely not a checkpoint, nor anything else".to_vec()),
        ("key_missing", |w, _| {
            for g in w.generations() {
                lethe_crypto::destroy_file(&w.path().join(KEYS_DIR).join(format!("views-key-{g}.sealed"))).unwrap();
            }
        }),
    ];
    for (code, damage) in cases {
        let mut bytes = std::fs::read(w.checkpoint_file()).unwrap();
        damage(&w, &mut bytes);
        std::fs::write(w.checkpoint_file(), &bytes).unwrap();
        let views = w.views();
        assert_eq!(views.origin(), Origin::Replayed { events: head.0, fallback: Some(code) });
        assert_eq!(views.with(Projector::snapshot_digest), expected, "{code}");
    }
    // Each fallback wrote a good checkpoint again.
    let views = w.views();
    assert_eq!(views.origin(), Origin::Restored { position: head, caught_up: 0 });
    assert_eq!(views.with(Projector::snapshot_digest), expected);
    assert_eq!(w.generations().len(), 1, "old keys are destroyed at every start");
}

/// R-RETAIN-1 and invariant 5 for the views: a retention sweep destroys the keys of expired events;
/// the views are rebuilt from what the log can still read (the expired features are gone, and a
/// subject whose every event expired is not held at all), a fresh checkpoint is written under a new
/// key and the key of the checkpoint that held the expired data is destroyed, so it opens no more.
/// After a restart the views restored from the new checkpoint equal a full replay, and no byte of
/// the data directory holds a canary of the expired events.
#[test]
fn r_retain_1_a_retention_sweep_rebuilds_the_views_and_destroys_the_key_of_the_checkpoint_that_held_them() {
    let w = World::new();
    w.seed(0, 4);
    let canary = canary();
    let expiring_item = format!("expiring-item-{canary}");
    let ephemeral_item = format!("ephemeral-item-{canary}");
    let now = UtcMicros::now().0;
    let granted = UtcMicros(now - 3 * DAY);
    let liked_at = UtcMicros(now - 2 * DAY);
    // A 10-day retention has 1-day periods: these keys die about 12 days after the events.
    let short = Retention::Days(10);

    // A subject whose consent is kept, with one expiring like and one kept a year.
    let keeper_id = format!("keeper-{canary}");
    w.grant_at(&keeper_id, granted);
    w.like_at(&keeper_id, &[&expiring_item], liked_at, short);
    w.like(&keeper_id, &["tent-1"]);
    let keeper = w.subject(&keeper_id);
    // A subject of which every event expires, its consent record included.
    let ephemeral_id = format!("ephemeral-{canary}");
    w.expiring_grant_at(&ephemeral_id, granted, 10);
    w.like_at(&ephemeral_id, &[&ephemeral_item, "stove-2"], liked_at, short);
    let ephemeral = w.subject(&ephemeral_id);

    let views = w.views();
    assert!(views.holds(&ephemeral));
    assert_eq!(liked(&views, &keeper), ["tent-1", expiring_item.as_str()]);
    let subjects = views.subjects();
    let before = views.checkpoint().unwrap().expect("checkpointed views");
    let old_bytes = std::fs::read(w.checkpoint_file()).unwrap();
    let old_key = w.key(before.generation).expect("the checkpoint key is in the key store");
    let (old, _) = Projector::restore(&old_bytes, &old_key).unwrap();
    assert!(old.holds(&ephemeral), "the checkpoint holds what will expire");
    assert!(contains(&old.snapshot_bytes(), &expiring_item) && contains(&old.snapshot_bytes(), &ephemeral_item));

    // Nothing is due today: nothing is rebuilt, the checkpoint key stays.
    assert_eq!(lethe_privacy::schedule::sweep(&w.privacy, UtcMicros(now)).unwrap().keys_destroyed, 0);
    assert_eq!(w.generations(), vec![before.generation]);

    let report = lethe_privacy::schedule::sweep(&w.privacy, UtcMicros(now + 14 * DAY)).unwrap();
    assert_eq!((report.keys_destroyed, report.subjects), (3, 2), "{report:?}");

    // In memory: the expired features are gone, and so is the subject they alone held.
    assert!(!views.holds(&ephemeral), "a subject whose every event expired is not held");
    assert!(views.holds(&keeper), "its consent is kept");
    assert_eq!(liked(&views, &keeper), ["tent-1"]);
    assert_eq!(views.subjects(), subjects - 1);
    assert_eq!(views.with(Projector::snapshot_digest), w.replay_digest(), "the rebuild equals a full replay");

    // The key of the checkpoint that held the expired data is destroyed; one new key is left.
    assert_eq!(w.key(before.generation), None);
    let generations = w.generations();
    assert_eq!(generations.len(), 1, "{generations:?}");
    let current = generations[0];
    assert!(current > before.generation);
    let current_key = w.key(current).unwrap();
    assert_eq!(Projector::restore(&old_bytes, &current_key).unwrap_err().code(), "checkpoint_tampered");
    let (new, position) = Projector::restore(&std::fs::read(w.checkpoint_file()).unwrap(), &current_key).unwrap();
    assert_eq!(position, w.store().head());
    assert!(!new.holds(&ephemeral));
    for item in [&expiring_item, &ephemeral_item] {
        assert!(!contains(&new.snapshot_bytes(), item), "the new checkpoint holds {item}");
    }

    drop(views);
    let w = w.restart();
    let views = w.views();
    assert!(matches!(views.origin(), Origin::Restored { .. }), "{:?}", views.origin());
    assert!(!views.holds(&ephemeral));
    assert_eq!(liked(&views, &keeper), ["tent-1"]);
    assert_eq!(views.with(Projector::snapshot_digest), w.replay_digest(), "restored views equal a full replay");
    drop(views);
    for needle in [expiring_item.as_bytes(), ephemeral_item.as_bytes(), canary.as_bytes()] {
        assert_eq!(
            lethe_testkit::find_in_files(w.path(), needle),
            vec![],
            "a raw byte of the data directory holds the canary"
        );
    }
}

/// A derived store that cannot rebuild after a retention sweep, or (`crashes`) whose rebuild takes
/// the process down with it.
#[derive(Debug, Default)]
struct Stuck {
    calls: AtomicU32,
    healed: std::sync::atomic::AtomicBool,
    crashes: bool,
}

impl ErasureHook for Stuck {
    fn name(&self) -> &str {
        "stuck_store"
    }

    fn forget(&self, _subject: &Pseudonym) -> Result<bool, String> {
        Ok(false)
    }

    fn retention_shredded(&self) -> Result<(), String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert!(!self.crashes, "the process dies between the keys' destruction and the rebuilds");
        if self.healed.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("cannot replay the log".into())
        }
    }
}

/// Two seeded subjects and one whose consent and events expire ten days after they were given,
/// two and three days ago; with the current time (µs).
fn short_lived_world() -> (World, Pseudonym, i64) {
    let w = World::new();
    w.seed(0, 2);
    let now = UtcMicros::now().0;
    w.expiring_grant_at("short-lived", UtcMicros(now - 3 * DAY), 10);
    w.like_at("short-lived", &["lamp-3"], UtcMicros(now - 2 * DAY), Retention::Days(10));
    let short_lived = w.subject("short-lived");
    (w, short_lived, now)
}

/// R-RETAIN-1: a derived store that fails to rebuild does not fail the sweep (its keys are
/// destroyed) nor keep the other stores from rebuilding; the failure is counted on `/metrics`,
/// named in the sweep's audit entry, and the store is called again at the next sweep, even one that
/// destroys nothing, until it succeeds.
#[test]
fn r_retain_1_a_store_that_fails_to_rebuild_is_reported_and_retried_without_failing_the_sweep() {
    let (w, short_lived, now) = short_lived_world();
    let stuck = Arc::new(Stuck::default());
    w.privacy.register(stuck.clone()); // before the views: its failure must not stop them
    let views = w.views();
    assert!(views.holds(&short_lived));
    let generation = views.checkpoint().unwrap().unwrap().generation;

    let later = UtcMicros(now + 14 * DAY);
    assert_eq!(lethe_privacy::schedule::sweep(&w.privacy, later).unwrap().keys_destroyed, 2);
    assert_eq!(stuck.calls.load(Ordering::SeqCst), 1);
    assert!(!views.holds(&short_lived), "the views rebuilt all the same");
    assert_eq!(w.key(generation), None);
    let metrics = lethe_privacy::schedule::metrics(&w.privacy);
    assert!(metrics.contains("lethe_retention_rebuild_failures_total 1\n"), "{metrics}");
    let entry = w
        .privacy
        .audit
        .entries(1)
        .filter_map(Result::ok)
        .filter(|e| e.kind == lethe_audit::AuditKind::RetentionShred)
        .last()
        .expect("the sweep is audited");
    assert_eq!(entry.detail["derived_stores_failed"], serde_json::json!(["stuck_store"]));

    // The next sweep destroys nothing but calls the failed store again (and only it).
    let current = w.generations();
    assert_eq!(lethe_privacy::schedule::sweep(&w.privacy, later).unwrap().keys_destroyed, 0);
    assert_eq!(stuck.calls.load(Ordering::SeqCst), 2);
    assert_eq!(w.generations(), current, "the views were not rebuilt again");
    assert!(lethe_privacy::schedule::metrics(&w.privacy).contains("lethe_retention_rebuild_failures_total 2\n"));
    stuck.healed.store(true, Ordering::SeqCst);
    lethe_privacy::schedule::sweep(&w.privacy, later).unwrap();
    assert_eq!(stuck.calls.load(Ordering::SeqCst), 3);
    lethe_privacy::schedule::sweep(&w.privacy, later).unwrap();
    assert_eq!(stuck.calls.load(Ordering::SeqCst), 3, "healed: not called again until keys are destroyed");
    assert!(lethe_privacy::schedule::metrics(&w.privacy).contains("lethe_retention_rebuild_failures_total 2\n"));
}

/// R-RETAIN-1: a crash after a sweep destroyed its keys and before the derived stores rebuilt
/// would leave their data of the expired events behind: the restarted views come back from a
/// checkpoint sealed before the sweep, and the next sweep finds no key to destroy. The sweep
/// records what it owes before it destroys anything, so the first sweep after the restart
/// rebuilds every store, once.
#[test]
fn r_retain_1_a_crash_between_the_keys_destruction_and_the_rebuilds_is_made_good_after_a_restart() {
    let (w, short_lived, now) = short_lived_world();
    // Registered before the views: the crash comes before they rebuild.
    w.privacy.register(Arc::new(Stuck { crashes: true, ..Stuck::default() }));
    let views = w.views();
    assert!(views.holds(&short_lived));
    views.checkpoint().unwrap().unwrap();

    let later = UtcMicros(now + 14 * DAY);
    let crashed =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lethe_privacy::schedule::sweep(&w.privacy, later)));
    assert!(crashed.is_err(), "the sweep died in the crashing store");
    drop(views);

    let w = w.restart();
    let views = w.views();
    assert!(views.holds(&short_lived), "restored from the checkpoint sealed before the sweep");
    let generations = w.generations();
    // Its keys are gone already: this sweep destroys nothing, and rebuilds all the same.
    assert_eq!(lethe_privacy::schedule::sweep(&w.privacy, later).unwrap().keys_destroyed, 0);
    assert!(!views.holds(&short_lived), "the views rebuilt from what the log still reads");
    assert_ne!(w.generations(), generations, "and re-keyed their checkpoint");
    assert_eq!(views.with(Projector::snapshot_digest), w.replay_digest());
    // Paid: the next sweep rebuilds nothing, and neither does the one after another restart.
    let generations = w.generations();
    lethe_privacy::schedule::sweep(&w.privacy, later).unwrap();
    assert_eq!(w.generations(), generations);
    drop(views);
    let w = w.restart();
    let _views = w.views();
    let generations = w.generations();
    lethe_privacy::schedule::sweep(&w.privacy, later).unwrap();
    assert_eq!(w.generations(), generations);
}

/// R-RETAIN-1: a sweep run where no derived store is open (`lethe retention sweep` with the
/// server stopped) leaves the rebuilds it owes to the next start that opens them.
#[test]
fn r_retain_1_a_sweep_without_the_derived_stores_leaves_their_rebuild_to_the_next_start() {
    let (w, short_lived, now) = short_lived_world();
    let views = w.views();
    views.checkpoint().unwrap().unwrap();
    drop(views);
    let w = w.restart(); // no store registered, as in the command-line sweep
    let later = UtcMicros(now + 14 * DAY);
    assert_eq!(lethe_privacy::schedule::sweep(&w.privacy, later).unwrap().keys_destroyed, 2);
    let w = w.restart();
    let views = w.views();
    assert!(views.holds(&short_lived), "restored from the checkpoint sealed before the sweep");
    assert_eq!(lethe_privacy::schedule::sweep(&w.privacy, later).unwrap().keys_destroyed, 0);
    assert!(!views.holds(&short_lived), "the first sweep with the views open rebuilt them");
    assert_eq!(views.with(Projector::snapshot_digest), w.replay_digest());
}

/// R-RETAIN-1 reaches the models too: a retention sweep queues every model trained on subjects,
/// and retraining reads only what still decrypts, so a subject whose every event expired is in no
/// serving model afterwards.
#[test]
fn r_retain_1_a_retention_sweep_retrains_the_models_on_what_the_log_still_holds() {
    let w = World::new();
    w.seed(0, 6);
    let now = UtcMicros::now().0;
    let ephemeral_id = "ephemeral-model-subject";
    w.expiring_grant_at(ephemeral_id, UtcMicros(now - 3 * DAY), 10);
    w.like_at(ephemeral_id, &["tent-1", "stove-2", "lamp-3"], UtcMicros(now - 2 * DAY), Retention::Days(10));
    let ephemeral = w.subject(ephemeral_id);
    // The consent book learns of the consent written straight to the log when it is rebuilt.
    let w = w.restart();
    let personalizer = lethe_personalize::Personalizer::open(
        w.path(),
        &master(),
        Arc::clone(&w.privacy),
        lethe_personalize::TrainConfig::default(),
    )
    .unwrap();
    w.privacy.register(personalizer.clone());
    let first = personalizer.train("test").unwrap();
    let registry = personalizer.registry();
    assert!(registry.containing(&ephemeral).unwrap().iter().any(|id| id.to_string() == first.model_id));

    let report = lethe_privacy::schedule::sweep(&w.privacy, UtcMicros(now + 14 * DAY)).unwrap();
    assert!(report.keys_destroyed > 0, "{report:?}");
    let queued = personalizer.pending().unwrap();
    assert_eq!(queued.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), [first.model_id.as_str()]);

    let second = personalizer.unlearn_pending().unwrap().expect("retrained on what is left");
    assert_eq!(second.subjects, first.subjects - 1, "the same subjects but the expired one");
    assert!(registry.containing(&ephemeral).unwrap().is_empty(), "no model holds the expired subject");
    let old = registry.get(first.model_id.parse().unwrap()).unwrap().unwrap();
    assert!(matches!(old.status, lethe_registry::Status::Retired { .. }), "{:?}", old.status);
    assert!(personalizer.pending().unwrap().is_empty());
}
