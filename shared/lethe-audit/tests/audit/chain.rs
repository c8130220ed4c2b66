//! R-AUDIT-1: appends form a hash chain that verifies, survives reopening, and signs checkpoints.

use std::sync::Arc;

use lethe_audit::{verify_tree, AuditChain, AuditEntry, AuditError, AuditKind, AuditRecord, VerifyReport};
use lethe_testkit::sled_open_retrying;
use serde_json::json;

use crate::{chain, config, record, signer, T0};

/// R-AUDIT-1: entries link by `prev_hash`, start from the zero genesis hash, read back as appended, and
/// verify; checkpoints are signed at every multiple of `checkpoint_every`.
#[test]
fn r_audit_1_appends_chain_and_verify_passes() {
    let f = chain(10, 4);
    let entries: Vec<_> = f.chain.entries(1).collect::<Result<_, _>>().expect("entries");
    assert_eq!(entries.len(), 10);
    assert_eq!(entries[0].prev_hash, "0".repeat(64));
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    for (i, e) in (1u64..).zip(&entries) {
        let r = record(i);
        let want = AuditEntry {
            seq: i,
            time_micros: r.time_micros,
            kind: r.kind,
            actor: r.actor,
            subject: r.subject,
            detail: r.detail,
            content_digest: r.content_digest,
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        };
        assert_eq!(e, &want);
    }
    assert_eq!(f.chain.head(), (10, entries[9].hash.clone()));
    let report = f.chain.verify().expect("verify");
    assert_eq!(
        report,
        VerifyReport {
            first_seq: 1,
            last_seq: 10,
            entries_checked: 10,
            checkpoints_checked: 2,
            last_signed_seq: Some(8),
            unsigned_tail: 2,
            head_hash: entries[9].hash.clone(),
        }
    );
    assert_eq!(verify_tree(&f.tree, f.chain.verifier()).expect("verify_tree"), report);
    let cps = f.chain.checkpoints().expect("checkpoints");
    assert_eq!(cps.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![4, 8]);
    assert_eq!(cps[1].hash, entries[7].hash);
    cps[1].verify(f.chain.verifier()).expect("checkpoint signature");
}

/// R-AUDIT-1: the entry returned by `append` is the one stored.
#[test]
fn r_audit_1_append_returns_the_stored_entry() {
    let f = chain(0, 4);
    let appended = f.chain.append(record(1)).expect("append");
    let stored = f.chain.entries(1).next().expect("one entry").expect("decodes");
    assert_eq!(appended, stored);
}

/// R-AUDIT-1: an explicit checkpoint covers the tail; an empty chain verifies and has nothing to sign.
#[test]
fn r_audit_1_explicit_checkpoint_signs_the_head() {
    let f = chain(0, 0);
    assert_eq!(f.chain.head(), (0, "0".repeat(64)));
    let empty = f.chain.verify().expect("empty chain verifies");
    assert_eq!((empty.entries_checked, empty.last_seq, empty.last_signed_seq), (0, 0, None));
    assert!(matches!(f.chain.checkpoint(T0), Err(AuditError::EmptyChain)));
    for i in 1..=5 {
        f.chain.append(record(i)).expect("append");
    }
    assert_eq!(f.chain.verify().expect("verify").unsigned_tail, 5);
    let cp = f.chain.checkpoint(T0 + 99).expect("checkpoint");
    assert_eq!((cp.seq, cp.hash.clone(), cp.time_micros), (5, f.chain.head().1, T0 + 99));
    let report = f.chain.verify().expect("verify");
    assert!(report.fully_signed());
    assert_eq!(report.last_signed_seq, Some(5));
    // Signing again at the same head replaces the checkpoint; both would verify.
    f.chain.checkpoint(T0 + 100).expect("again");
    assert_eq!(f.chain.checkpoints().expect("list").len(), 1);
    f.chain.verify().expect("verify");
}

/// R-AUDIT-1: reopening the tree keeps the chain: the sequence continues from the stored head and the
/// whole chain verifies.
#[test]
fn r_audit_1_reopening_keeps_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = signer();
    let head = {
        let db = sled::open(dir.path()).expect("sled");
        let chain = AuditChain::open(db.open_tree("audit").expect("tree"), s.clone(), config(4)).expect("open");
        for i in 1..=10 {
            chain.append(record(i)).expect("append");
        }
        chain.flush().expect("flush");
        chain.head()
    };
    let db = sled_open_retrying(dir.path());
    let chain = AuditChain::open(db.open_tree("audit").expect("tree"), s, config(4)).expect("reopen");
    assert_eq!(chain.head(), head);
    let next = chain.append(record(11)).expect("append after reopen");
    assert_eq!((next.seq, next.prev_hash), (11, head.1));
    let report = chain.verify().expect("verify after reopen");
    assert_eq!((report.last_seq, report.checkpoints_checked), (11, 2));
}

/// R-AUDIT-1: concurrent appends get distinct, gap-free sequence numbers and the chain verifies.
#[test]
fn r_audit_1_concurrent_appends_serialize() {
    let f = chain(0, 64);
    let chain = Arc::new(f.chain);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let chain = Arc::clone(&chain);
            std::thread::spawn(move || {
                (0..100).map(|i| chain.append(record(t * 1000 + i)).expect("append").seq).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    let report = chain.verify().expect("verify");
    assert_eq!((report.entries_checked, report.checkpoints_checked), (400, 6));
}

/// R-AUDIT-1: time windows select entries by the caller's clock, whatever the order.
#[test]
fn r_audit_1_entries_between_filters_by_time() {
    let f = chain(0, 0);
    for t in [50, 10, 30, 20, 40] {
        f.chain.append(AuditRecord::new(T0 + t, AuditKind::Backup, "system")).expect("append");
    }
    let times: Vec<i64> =
        f.chain.entries_between(T0 + 20, T0 + 50).map(|e| e.expect("entry").time_micros - T0).collect();
    assert_eq!(times, vec![30, 20, 40]);
    assert_eq!(f.chain.entries(4).count(), 2);
    assert_eq!(f.chain.entries(6).count(), 0);
}

/// R-AUDIT-1: records that would put identifiers into the chain are refused and nothing is written.
#[test]
fn r_audit_1_identifiers_are_refused() {
    let f = chain(0, 0);
    let bad = [
        AuditRecord::new(T0, AuditKind::Export, "alice@example.com"),
        AuditRecord::new(T0, AuditKind::Export, "dpo").subject("alice@example.com"),
        AuditRecord::new(T0, AuditKind::Export, "dpo").content_digest("not a digest"),
        AuditRecord::new(T0, AuditKind::Export, "dpo").detail(json!("not an object")),
    ];
    for r in bad {
        let err = f.chain.append(r).expect_err("refused");
        assert_eq!(err.code(), "invalid_audit_record");
    }
    assert_eq!(f.chain.head().0, 0);
}

/// R-AUDIT-1: `detail` numbers read back bit for bit, so an entry read back re-encodes to the hashed text.
#[test]
fn r_audit_1_detail_numbers_round_trip() {
    let f = chain(0, 0);
    let detail = json!({"loss": 0.1 + 0.2, "tiny": 5e-324, "big": 1.7976931348623157e308, "neg": -0.0, "u": u64::MAX});
    let appended =
        f.chain.append(AuditRecord::new(T0, AuditKind::TrainingRun, "system").detail(detail)).expect("append");
    let read = f.chain.entries(1).next().expect("entry").expect("decodes");
    assert_eq!(read.detail, appended.detail);
}

/// R-AUDIT-1: `open` continues from the last stored entry, and refuses one it cannot read.
#[test]
fn r_audit_1_open_continues_from_the_last_entry() {
    let f = chain(6, 0);
    let again = AuditChain::open(f.tree.clone(), f.signer.clone(), config(0)).expect("reopen");
    assert_eq!(again.head(), f.chain.head());
    f.tree.insert(crate::entry_key(6), &b"junk"[..]).expect("insert");
    let err = AuditChain::open(f.tree.clone(), f.signer.clone(), config(0)).expect_err("refused");
    assert_eq!(err.tampered_seq(), Some(6));
    assert_eq!(crate::tampered_at(verify_tree(&f.tree, f.chain.verifier())), 6);
}
