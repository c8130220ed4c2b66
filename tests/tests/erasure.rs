//! R-ERASE-1 (every ciphertext of an erased subject fails to decrypt: its events read as tombstones),
//! R-ERASE-4 / invariant 5 (after the rotation that follows an erasure, no byte of the data directory
//! yields the subject's key: not the raw key, not the old epoch's KEK, not a wrapped key that any
//! surviving epoch unwraps) and R-ERASE-2 (the erasure fence wins over a key store restored from a
//! copy taken before the erasure). Also shows what such a copy can and cannot reveal.

mod common;

use std::path::Path;

use lethe_crypto::{Epoch, Keyring, SecretBytes, WrappedKey, KEYS_DIR, WRAPPED_KEY_LEN, WRAPPED_KEY_MAGIC};
use lethe_domain::{EventBody, ExpectedVersion, KeyId, Pseudonym};
use lethe_eventlog::{AppendRequest, EventStore, LogConfig, LogError, SledEventLog, SubjectState};

const A_PAYLOADS: [&[u8]; 3] = [b"a: viewed tents", b"a: bought a tent", b"a: lives in Lyon"];
const B_PAYLOADS: [&[u8]; 2] = [b"b: viewed boots", b"b: bought boots"];
const B_AFTER_COPY: &[u8] = b"b: came back after the copy";

/// A data directory with subject A (to be erased) and subject B (to keep), and the secrets an
/// attacker would look for, captured before the erasure through the forensic hooks.
struct Seeded {
    a: Pseudonym,
    b: Pseudonym,
    a_key: SecretBytes,
    b_key: SecretBytes,
    old_epoch: u32,
    old_kek: SecretBytes,
}

fn seed(dir: &Path) -> Seeded {
    let log = common::open(dir);
    let a = common::pseudonym(&log, "subject-a@example.com");
    let b = common::pseudonym(&log, "subject-b@example.com");
    common::append(&log, a, &A_PAYLOADS);
    common::append(&log, b, &B_PAYLOADS);
    let old_epoch = log.current_epoch();
    Seeded {
        a,
        b,
        a_key: log.forensic_data_key(&a, KeyId(0)).expect("A has a data key"),
        b_key: log.forensic_data_key(&b, KeyId(0)).expect("B has a data key"),
        old_epoch,
        old_kek: log.forensic_epoch_secret(old_epoch).expect("the current epoch has a KEK"),
    }
}

/// Whether the erasure is followed by a key rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Rotate,
    KeepEpoch,
}

/// Erases A, rotates or not, and appends one more event for B; checks what the calls report.
fn erase_and_continue(dir: &Path, s: &Seeded, then: Then) {
    let log = common::open(dir);
    let receipt = log.erase(&s.a).expect("erase");
    assert!(receipt.newly_erased);
    assert_eq!((receipt.key_ids.as_slice(), receipt.wrapped_under_epoch), (&[KeyId(0)][..], s.old_epoch));
    assert_eq!(receipt.events_shredded, A_PAYLOADS.len() as u64);
    assert!(log.forensic_data_key(&s.a, KeyId(0)).is_none(), "the live key store no longer holds A's key");
    assert!(matches!(log.subject_state(&s.a).expect("state"), SubjectState::Erased { rotation_pending: true, .. }));

    if then == Then::Rotate {
        let rotation = log.rotate_keys().expect("rotate");
        assert_eq!((rotation.from_epoch, rotation.to_epoch), (s.old_epoch, s.old_epoch + 1));
        assert_eq!((rotation.keys_rewrapped, rotation.erasures_finalized), (1, 1), "only B's key survives");
        assert!(log.forensic_epoch_secret(s.old_epoch).is_none(), "the old epoch is gone from the key store");
        let state = log.subject_state(&s.a).expect("state");
        assert!(matches!(state, SubjectState::Erased { rotation_pending: false, .. }), "{state:?}");
    }

    common::append(&log, s.b, &[B_AFTER_COPY]);
    let refused = log.append(one_more_event(s.a)).expect_err("appends for an erased subject are refused");
    assert!(matches!(refused, LogError::Erased(p) if p == s.a), "{refused}");
}

/// One event for `subject`, whatever its stream's version.
fn one_more_event(subject: Pseudonym) -> AppendRequest {
    AppendRequest { subject, expected: ExpectedVersion::Any, events: vec![common::event("one more")] }
}

fn bodies(log: &SledEventLog, subject: &Pseudonym) -> Vec<EventBody> {
    log.read_stream(subject).expect("read_stream").into_iter().map(|e| e.body).collect()
}

fn plain(payloads: &[&[u8]]) -> Vec<EventBody> {
    payloads.iter().map(|p| EventBody::Plain(p.to_vec())).collect()
}

/// Every `LWK1` window of wrapped-key length in every file under `dir`, as raw bytes.
fn wrapped_key_candidates(dir: &Path) -> Vec<[u8; WRAPPED_KEY_LEN]> {
    let mut out = Vec::new();
    for file in common::files_under(dir) {
        let bytes = std::fs::read(&file).expect("read file");
        for (_, offset) in common::find_in(&bytes, &[&WRAPPED_KEY_MAGIC[..]]) {
            if let Some(window) = bytes.get(offset..offset + WRAPPED_KEY_LEN) {
                out.push(window.try_into().expect("window length"));
            }
        }
    }
    out
}

/// The data keys of `subject` that any candidate yields under any epoch `keyring` holds. Each
/// candidate is tried as it is and relabelled with every epoch, in case its label lies.
fn unwrap_all(keyring: &Keyring, candidates: &[[u8; WRAPPED_KEY_LEN]], subject: &Pseudonym) -> Vec<SecretBytes> {
    let mut found = Vec::new();
    for c in candidates {
        for epoch in keyring.epochs() {
            let mut relabelled = *c;
            relabelled[4..8].copy_from_slice(&epoch.0.to_be_bytes());
            for bytes in [*c, relabelled] {
                let Ok(wrapped) = WrappedKey::parse(&bytes) else { continue };
                if let Ok(key) = keyring.unwrap(subject, KeyId(0), &wrapped) {
                    found.push(key);
                }
            }
        }
    }
    found
}

/// The candidates that unwrap as `subject`'s current key under the live key store: where the data
/// directory keeps the subject's wrapped key now, wherever that is.
fn current_wrapped_keys(
    keyring: &Keyring,
    candidates: &[[u8; WRAPPED_KEY_LEN]],
    subject: &Pseudonym,
) -> Vec<WrappedKey> {
    let parsed = candidates.iter().filter_map(|c| WrappedKey::parse(c).ok());
    parsed.filter(|w| keyring.unwrap(subject, KeyId(0), w).is_ok()).collect()
}

#[test]
fn after_erasure_and_rotation_no_byte_of_the_data_directory_yields_the_subject() {
    let dir = common::temp_dir();
    let backup = common::temp_dir();
    let s = seed(dir.path());
    common::copy_dir(dir.path(), backup.path());
    erase_and_continue(dir.path(), &s, Then::Rotate);

    // R-ERASE-1: A's events are tombstones (its fence is the last event), B's are readable.
    let new_epoch = {
        let log = common::open(dir.path());
        let mut a_bodies = vec![EventBody::Shredded; A_PAYLOADS.len()];
        a_bodies.push(EventBody::Empty);
        assert_eq!(bodies(&log, &s.a), a_bodies);
        assert_eq!(bodies(&log, &s.b), plain(&[B_PAYLOADS[0], B_PAYLOADS[1], B_AFTER_COPY]));
        assert!(log.forensic_data_key(&s.a, KeyId(0)).is_none());
        assert_eq!(log.forensic_data_key(&s.b, KeyId(0)).as_ref(), Some(&s.b_key), "B keeps its data key");
        let report = log.verify().expect("verify");
        assert!(report.ok() && report.tombstones == 3 && !report.rotation_pending, "{report:?}");
        log.current_epoch()
    };
    assert_eq!(new_epoch, s.old_epoch + 1);

    // R-ERASE-4: neither A's key nor the KEK that wrapped it is anywhere in the data directory, and the
    // old epoch's file is gone.
    let hits = common::scan_dir(dir.path(), &[s.a_key.expose(), s.old_kek.expose(), s.b_key.expose()]);
    assert!(hits.is_empty(), "raw key material on disk: {hits:?}");
    let old_epoch_file = dir.path().join(KEYS_DIR).join(format!("epoch-{:010}.kek", s.old_epoch));
    assert!(!old_epoch_file.exists(), "{} survived the rotation", old_epoch_file.display());
    assert!(dir.path().join(KEYS_DIR).join(format!("epoch-{new_epoch:010}.kek")).exists());

    // No wrapped key in any file unwraps to A's key under any epoch the key store has; B's current
    // wrapped key is found and unwraps (the scan works).
    let candidates = wrapped_key_candidates(dir.path());
    let keyring = Keyring::open(dir.path(), &common::master()).expect("open the live key store");
    assert_eq!(keyring.epochs(), vec![Epoch(new_epoch)]);
    assert!(unwrap_all(&keyring, &candidates, &s.a).is_empty(), "a wrapped copy of A's key still unwraps");
    let b_found = unwrap_all(&keyring, &candidates, &s.b);
    assert!(!b_found.is_empty() && b_found.iter().all(|k| *k == s.b_key), "B's wrapped key must be found");

    // Why the rotation matters: sled kept the bytes of A's removed wrapped key. They are useless to
    // the live key store, but the pre-erasure copy still holds the epoch that opens them.
    let stale = candidates.iter().filter(|c| c[4..8] == s.old_epoch.to_be_bytes()).count();
    assert!(stale > 0, "expected stale wrapped keys of epoch {} in sled's files", s.old_epoch);
    let backup_keyring = Keyring::open(backup.path(), &common::master()).expect("open the copy's key store");
    assert_eq!(backup_keyring.epochs(), vec![Epoch(s.old_epoch)]);
    assert!(
        unwrap_all(&backup_keyring, &candidates, &s.a).contains(&s.a_key),
        "the live files still hold A's key wrapped under the destroyed epoch"
    );

    // What the copy cannot do: unwrap anything wrapped after the rotation (B's key as stored now),
    // nor show what was appended after it was taken.
    let b_now = current_wrapped_keys(&keyring, &candidates, &s.b);
    assert!(!b_now.is_empty() && b_now.iter().all(|w| w.epoch == Epoch(new_epoch)));
    for w in &b_now {
        assert!(matches!(
            backup_keyring.unwrap(&s.b, KeyId(0), w),
            Err(lethe_crypto::CryptoError::MissingEpoch(e)) if e == new_epoch
        ));
    }
    drop(backup_keyring);

    // What the copy can do: with the master secret, opened on its own, it still reads A's events.
    // A full copy taken before an erasure is as sensitive as the original data directory; this is
    // what a `lethe backup` command must address (encrypt copies under their own epoch, expire them).
    let scratch = common::temp_dir();
    common::copy_dir(backup.path(), scratch.path());
    let old = common::open(scratch.path());
    assert_eq!(bodies(&old, &s.a), plain(&A_PAYLOADS), "the copy still reveals A");
    assert_eq!(bodies(&old, &s.b), plain(&B_PAYLOADS), "the copy does not hold what came after it");
}

/// R-ERASE-2: replaces the live key store (`keys/`: manifest, epoch files, pseudonym key and whatever
/// else the key store keeps) with the copy taken before the erasure, reopens, and checks that the
/// fence wins: A stays erased in every way Lethe can show, B reads in full (including what it
/// appended after the copy), and the rotation that is due leaves no byte that unwraps to A's key.
fn restore_key_store_and_check(dir: &Path, backup: &Path, s: &Seeded) {
    std::fs::remove_dir_all(dir.join(KEYS_DIR)).expect("remove the live key store");
    common::copy_dir(&backup.join(KEYS_DIR), &dir.join(KEYS_DIR));

    let log = common::open(dir);
    assert_eq!(log.current_epoch(), s.old_epoch, "the restored key store is back at the old epoch");
    assert!(matches!(log.subject_state(&s.a).expect("state"), SubjectState::Erased { .. }));
    assert!(log.forensic_data_key(&s.a, KeyId(0)).is_none(), "A's key must not come back with the copy");
    let mut a_bodies = vec![EventBody::Shredded; A_PAYLOADS.len()];
    a_bodies.push(EventBody::Empty);
    assert_eq!(bodies(&log, &s.a), a_bodies);
    let refused = log.append(one_more_event(s.a)).expect_err("appends stay refused");
    assert!(matches!(refused, LogError::Erased(_)), "{refused}");
    assert_eq!(bodies(&log, &s.b), plain(&[B_PAYLOADS[0], B_PAYLOADS[1], B_AFTER_COPY]));
    let report = log.verify().expect("verify");
    assert!(report.ok(), "{report:?}");
    assert!(report.rotation_pending, "the restored key store still holds the epoch that wrapped A's key");

    let rotation = log.rotate_keys().expect("rotate");
    assert_eq!((rotation.from_epoch, rotation.keys_rewrapped), (s.old_epoch, 1));
    drop(log);
    let keyring = Keyring::open(dir, &common::master()).expect("open the key store");
    let candidates = wrapped_key_candidates(dir);
    assert!(unwrap_all(&keyring, &candidates, &s.a).is_empty(), "A's key is recoverable after the rotation");
    assert!(unwrap_all(&keyring, &candidates, &s.b).contains(&s.b_key));
    assert!(common::scan_dir(dir, &[s.a_key.expose(), s.old_kek.expose()]).is_empty());
    let log = common::open(dir);
    assert_eq!(bodies(&log, &s.b), plain(&[B_PAYLOADS[0], B_PAYLOADS[1], B_AFTER_COPY]));
}

#[test]
fn a_key_store_restored_from_before_the_erasure_does_not_bring_the_subject_back() {
    let dir = common::temp_dir();
    let backup = common::temp_dir();
    let s = seed(dir.path());
    common::copy_dir(&dir.path().join(KEYS_DIR), &backup.path().join(KEYS_DIR));
    erase_and_continue(dir.path(), &s, Then::KeepEpoch);
    restore_key_store_and_check(dir.path(), backup.path(), &s);
}

/// The same restore, when a rotation ran between the copy and the restore: the copy brings back the
/// destroyed epoch and lacks the one the live keys are wrapped under now. Lethe refuses to open with
/// it (an older key store would also reuse epoch numbers), so nothing, A least of all, comes back;
/// putting the key store that belongs to the log back in place opens it with A still erased.
#[test]
fn a_key_store_restored_from_before_the_erasure_and_rotation_does_not_bring_the_subject_back() {
    let dir = common::temp_dir();
    let backup = common::temp_dir();
    let live = common::temp_dir();
    let s = seed(dir.path());
    common::copy_dir(&dir.path().join(KEYS_DIR), &backup.path().join(KEYS_DIR));
    erase_and_continue(dir.path(), &s, Then::Rotate);
    common::copy_dir(&dir.path().join(KEYS_DIR), &live.path().join(KEYS_DIR));

    std::fs::remove_dir_all(dir.path().join(KEYS_DIR)).expect("remove the live key store");
    common::copy_dir(&backup.path().join(KEYS_DIR), &dir.path().join(KEYS_DIR));
    let err = SledEventLog::open(LogConfig::new(dir.path(), common::master())).expect_err("an older key store");
    assert!(
        matches!(err, LogError::KeyStoreBehind { key_store, log } if key_store == s.old_epoch && log == s.old_epoch + 1),
        "{err}"
    );
    assert!(err.to_string().contains("restored from an older copy"), "{err}");

    std::fs::remove_dir_all(dir.path().join(KEYS_DIR)).expect("remove the old key store");
    common::copy_dir(&live.path().join(KEYS_DIR), &dir.path().join(KEYS_DIR));
    let log = common::open(dir.path());
    assert!(matches!(log.subject_state(&s.a).expect("state"), SubjectState::Erased { .. }));
    let mut a_bodies = vec![EventBody::Shredded; A_PAYLOADS.len()];
    a_bodies.push(EventBody::Empty);
    assert_eq!(bodies(&log, &s.a), a_bodies);
    assert_eq!(bodies(&log, &s.b), plain(&[B_PAYLOADS[0], B_PAYLOADS[1], B_AFTER_COPY]));
}

/// A key store that does not belong to the log at all (a fresh one, or another installation's) is
/// refused: its keys would not open anything, and Lethe must not start writing under it.
#[test]
fn a_foreign_key_store_is_refused() {
    let dir = common::temp_dir();
    let other = common::temp_dir();
    seed(dir.path());
    drop(common::open(other.path()));
    std::fs::remove_dir_all(dir.path().join(KEYS_DIR)).expect("remove the key store");
    common::copy_dir(&other.path().join(KEYS_DIR), &dir.path().join(KEYS_DIR));
    let err = SledEventLog::open(LogConfig::new(dir.path(), common::master())).expect_err("a foreign key store");
    assert!(matches!(err, LogError::KeyStoreMismatch), "{err}");
}

/// R-ERASE-1 for the notes of deferred appends (what an appender knows of a payload, kept in memory
/// for the feature views to take in place of decrypting it): an erasure drops the subject's notes
/// with her keys, and her events come shredded, with no note, even to a reader that takes notes. A
/// kept subject's note waits for a reader that takes it, and is handed out once.
#[test]
fn r_erase_1_an_erasure_drops_the_subjects_notes_with_her_keys() {
    use lethe_domain::{Position, RecordedEvent};
    use lethe_eventlog::{Note, TakesNote};
    let dir = common::temp_dir();
    let log = common::open(dir.path());
    let a = common::pseudonym(&log, "subject-a@example.com");
    let b = common::pseudonym(&log, "subject-b@example.com");
    let requests = [a, b].map(|subject| AppendRequest {
        subject,
        expected: ExpectedVersion::Any,
        events: vec![common::event(&b"x"[..])],
    });
    let notes: Vec<Option<Note>> = vec![Some(std::sync::Arc::new("a's note")), Some(std::sync::Arc::new("b's note"))];
    let (tx, rx) = std::sync::mpsc::channel();
    log.append_batch_deferred_noted(requests.into(), notes, Box::new(move |r| tx.send(r).expect("answered")));
    assert!(rx.recv().expect("durable").iter().all(Result::is_ok));
    let takes: TakesNote = |_, note| note.is::<&str>();
    let refuses: TakesNote = |_, _| false;
    let read = |takes: TakesNote| -> Vec<(RecordedEvent, Option<&'static str>)> {
        log.read_all_opening_noted(Position(0), |_| true, takes)
            .map(|r| r.expect("readable"))
            .map(|(e, n)| (e, n.map(|n| *n.downcast_ref::<&str>().expect("a text note"))))
            .collect()
    };
    let note_of = |events: &[(RecordedEvent, Option<&'static str>)], s: Pseudonym| {
        events.iter().find(|(e, _)| e.envelope.subject == s).map(|(e, n)| (e.body.clone(), *n)).expect("an event")
    };
    // A reader that takes no notes opens the payloads, and leaves the notes.
    let opened = read(refuses);
    assert_eq!(note_of(&opened, a), (EventBody::Plain(b"x".to_vec()), None));
    log.erase(&a).expect("erase");
    let after = read(takes);
    assert_eq!(note_of(&after, a), (EventBody::Shredded, None), "the erased subject's note is gone");
    assert_eq!(note_of(&after, b), (EventBody::Unopened, Some("b's note")));
    // Handed out once: the next reader opens b's payload.
    assert_eq!(note_of(&read(takes), b), (EventBody::Plain(b"x".to_vec()), None));
}
