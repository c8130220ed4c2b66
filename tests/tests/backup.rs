//! `lethe backup` / restore and erasure (R-ERASE-4, R-ERASE-5): a backup taken before an erasure and
//! restored afterwards never brings the subject back, with or without the live log, and a damaged
//! or foreign backup is refused before anything is written.

mod common;

use std::path::Path;

use lethe_crypto::{Keyring, WrappedKey};
use lethe_domain::{EventBody, KeyId, Pseudonym};
use lethe_eventlog::{restore, BackupFile, EventStore, LogConfig, LogError, SledEventLog, SubjectState};

struct Seeded {
    erased: Pseudonym,
    kept: Pseudonym,
    erased_key: [u8; 32],
}

const ERASED_CANARY: &[u8] = b"erased-canary-0c41d9";
const KEPT_CANARY: &[u8] = b"kept-canary-77aa20";

/// Two subjects; a backup in `backups/before.bak`; then the first subject is erased and the key
/// epoch rotated, as `lethe serve` does within its erasure window.
fn seed_backup_erase_rotate(dir: &Path, backups: &Path) -> Seeded {
    let log = common::open(dir);
    let erased = common::pseudonym(&log, "erase-me@example.com");
    let kept = common::pseudonym(&log, "keep-me@example.com");
    common::append(&log, erased, &[ERASED_CANARY, b"second"]);
    common::append(&log, kept, &[KEPT_CANARY]);
    let erased_key = *log.forensic_data_key(&erased, KeyId::PERMANENT).expect("key").expose();
    let report = log.backup(&backups.join("before.bak")).expect("backup");
    assert_eq!(report.header.head, 3);
    log.erase(&erased).expect("erase");
    log.rotate_keys().expect("rotate");
    Seeded { erased, kept, erased_key }
}

fn restore_from(dir: &Path, backup: &Path) -> Result<(SledEventLog, lethe_eventlog::RestoreReport), LogError> {
    restore(LogConfig::new(dir, common::master()), backup)
}

fn bodies(log: &SledEventLog, s: &Pseudonym) -> Result<Vec<EventBody>, LogError> {
    log.read_stream(s).map(|evs| evs.into_iter().map(|e| e.body).collect())
}

/// R-ERASE-4/5: after the rotation, no byte of the data directory or of the backup yields the
/// erased subject's key, and restoring the backup into the live data directory re-applies the
/// erasure: the subject reads as tombstones, the other subject is intact.
#[test]
fn r_erase_5_a_backup_from_before_the_erasure_restored_afterwards_does_not_bring_the_subject_back() {
    let dir = common::temp_dir();
    let backups = common::temp_dir();
    let s = seed_backup_erase_rotate(dir.path(), backups.path());
    let backup = backups.path().join("before.bak");

    // The backup holds the subject's key only wrapped under an epoch that no longer exists.
    let file = BackupFile::read(&backup).expect("read backup");
    let keyring = Keyring::open(dir.path(), &common::master()).expect("key store");
    let mut wrapped_in_backup = 0;
    for (k, v) in file.records() {
        if k.starts_with(b"k/") && &k[2..34] == s.erased.as_bytes() {
            wrapped_in_backup += 1;
            let w = WrappedKey::parse(v).expect("wrapped key");
            assert!(!keyring.epochs().contains(&w.epoch), "the backup's epoch must be destroyed");
            for epoch in keyring.epochs() {
                let mut relabelled = v.to_vec();
                relabelled[4..8].copy_from_slice(&epoch.0.to_be_bytes());
                let w = WrappedKey::parse(&relabelled).unwrap();
                assert!(keyring.unwrap(&s.erased, KeyId::PERMANENT, &w).is_err(), "R-ERASE-4: a live epoch unwraps it");
            }
        }
    }
    assert_eq!(wrapped_in_backup, 1);
    drop(keyring);
    for place in [dir.path(), backups.path()] {
        let hits = common::scan_dir(place, &[&s.erased_key[..]]);
        assert!(hits.is_empty(), "R-ERASE-4: the raw key survives in {}: {hits:?}", place.display());
    }

    let (log, report) = restore_from(dir.path(), &backup).expect("restore");
    assert_eq!(report.erasures_reapplied, 1);
    assert_eq!(report.keys_from_live_log, 1, "the kept subject's key comes from the live log");
    assert!(report.previous_log.as_ref().is_some_and(|p| p.exists()));
    assert_eq!(bodies(&log, &s.kept).unwrap(), vec![EventBody::Plain(KEPT_CANARY.to_vec())]);
    let erased = bodies(&log, &s.erased).unwrap();
    assert_eq!(erased, vec![EventBody::Shredded, EventBody::Shredded, EventBody::Empty]);
    assert!(matches!(log.subject_state(&s.erased).unwrap(), SubjectState::Erased { rotation_pending: false, .. }));
    assert!(log.verify().unwrap().ok());
    // The erased subject stays unwritable.
    let err = log.append(lethe_eventlog::AppendRequest {
        subject: s.erased,
        expected: lethe_domain::ExpectedVersion::Any,
        events: vec![common::event("back?")],
    });
    assert_eq!(err.unwrap_err().code(), "subject_erased");
}

/// R-ERASE-5 without the live log (a lost disk): a backup taken after the rotation restores every
/// kept subject and keeps the erased one fenced; the older backup restores nobody's plaintext —
/// its epoch is gone — and fails closed rather than returning anything of the erased subject.
#[test]
fn r_erase_5_restores_without_the_live_log_fail_closed_for_the_erased_subject() {
    let dir = common::temp_dir();
    let backups = common::temp_dir();
    let s = seed_backup_erase_rotate(dir.path(), backups.path());
    let after = backups.path().join("after.bak");
    {
        let log = common::open(dir.path());
        log.backup(&after).expect("backup after the rotation");
    }
    std::fs::remove_dir_all(dir.path().join("log")).expect("lose the log");
    let (log, report) = restore_from(dir.path(), &after).expect("restore the newer backup");
    assert_eq!((report.keys_from_backup, report.keys_unrecoverable), (1, 0));
    assert_eq!(bodies(&log, &s.kept).unwrap(), vec![EventBody::Plain(KEPT_CANARY.to_vec())]);
    assert_eq!(bodies(&log, &s.erased).unwrap(), vec![EventBody::Shredded, EventBody::Shredded, EventBody::Empty]);
    drop(log);

    std::fs::remove_dir_all(dir.path().join("log")).expect("lose the log again");
    let (log, report) = restore_from(dir.path(), &backups.path().join("before.bak")).expect("restore the older one");
    assert_eq!(report.keys_unrecoverable, 2, "{report:?}");
    let err = bodies(&log, &s.erased).unwrap_err();
    assert_eq!(err.code(), "missing_key", "fail closed: {err}");
    assert!(!common::read_all_lossy(&log).iter().any(|b| matches!(b, EventBody::Plain(_))));
}

/// A damaged, truncated or foreign backup is refused with a typed error, and the live log is left
/// untouched.
#[test]
fn damaged_and_foreign_backups_are_refused() {
    let dir = common::temp_dir();
    let backups = common::temp_dir();
    let path = backups.path().join("b.bak");
    {
        let log = common::open(dir.path());
        let s = common::pseudonym(&log, "someone");
        common::append(&log, s, &[b"payload"]);
        log.backup(&path).unwrap();
    }
    let good = std::fs::read(&path).unwrap();
    for (name, bytes) in [
        ("flipped", {
            let mut b = good.clone();
            let i = b.len() / 2;
            b[i] ^= 1;
            b
        }),
        ("truncated", good[..good.len() - 10].to_vec()),
        ("foreign", b"PK\x03\x04 not a backup at all, but long enough to parse the header".to_vec()),
    ] {
        let p = backups.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let err = restore_from(dir.path(), &p).unwrap_err();
        assert_eq!(err.code(), "bad_backup", "{name}: {err}");
    }
    // Another data directory has another key store: the backup is not its own.
    let other = common::temp_dir();
    drop(common::open(other.path()));
    let err = restore_from(other.path(), &path).unwrap_err();
    assert_eq!(err.code(), "key_store_mismatch");
    // The live log still opens and reads.
    let log = common::open(dir.path());
    assert_eq!(common::read_all(&log).len(), 1);
}

/// A backup taken while writers append holds a consistent prefix of the log: restored on a copy
/// of the key store, it verifies and holds exactly the events up to its head.
#[test]
fn a_backup_under_concurrent_appends_is_consistent() {
    let dir = common::temp_dir();
    let backups = common::temp_dir();
    let log = std::sync::Arc::new(common::open(dir.path()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                let s = common::pseudonym(&log, &format!("writer-{w}"));
                for i in 0..200 {
                    common::append(&log, s, &[format!("w{w}-e{i}").as_bytes(), b"pair"]);
                }
            })
        })
        .collect();
    while log.head().0 < 100 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let report = log.backup(&backups.path().join("mid.bak")).unwrap();
    for w in writers {
        w.join().unwrap();
    }
    drop(log);
    let copy = common::temp_dir();
    common::copy_dir(&dir.path().join("keys"), &copy.path().join("keys"));
    let (restored, _) = restore_from(copy.path(), &backups.path().join("mid.bak")).unwrap();
    let events = common::read_all(&restored);
    let data: Vec<_> = events.iter().filter(|e| matches!(e.body, EventBody::Plain(_))).collect();
    assert!(report.header.head >= 100);
    assert_eq!(data.len() as u64, report.header.head);
    assert_eq!(data.len() % 2, 0, "an append of two events is never split by a backup");
    assert!(restored.verify().unwrap().ok());
}
