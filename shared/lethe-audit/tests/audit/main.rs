//! Black-box tests of `lethe-audit` (R-AUDIT-1, invariant 7: a tamper-evident audit chain of pseudonyms
//! and ciphertext digests; one flipped byte anywhere fails verification with the position). One test
//! binary, one module per concern.

mod chain;
mod erasure;
mod golden;
mod jsonl;
mod keys;
mod props;
mod tamper;

use lethe_audit::{content_digest, sha256, AuditChain, AuditKind, AuditRecord, AuditSigner, ChainConfig};
use serde_json::json;

/// 2024-05-01T00:00:00Z in microseconds.
pub const T0: i64 = 1_714_521_600_000_000;

/// A sled tree in a temporary database (kept alive by the returned `Db`).
pub fn tree() -> (sled::Db, sled::Tree) {
    let db = sled::Config::new().temporary(true).open().expect("temporary sled");
    let tree = db.open_tree("audit").expect("tree");
    (db, tree)
}

pub fn signer() -> AuditSigner {
    AuditSigner::generate().expect("generate signer")
}

pub fn config(every: u64) -> ChainConfig {
    ChainConfig { checkpoint_every: every, ..ChainConfig::default() }
}

/// A chain with the tree behind it and its signer.
#[derive(Debug)]
pub struct Fixture {
    pub _db: sled::Db,
    pub tree: sled::Tree,
    pub chain: AuditChain,
    pub signer: AuditSigner,
}

/// A chain of `n` entries ([`record`] 1..=n), checkpointed every `every`.
pub fn chain(n: u64, every: u64) -> Fixture {
    let (db, tree) = tree();
    let signer = signer();
    let chain = AuditChain::open(tree.clone(), signer.clone(), config(every)).expect("open");
    for i in 1..=n {
        chain.append(record(i)).expect("append");
    }
    Fixture { _db: db, tree, chain, signer }
}

/// A hex pseudonym, as the service derives them (a keyed hash; never the identifier itself).
pub fn pseudonym(i: u64) -> String {
    hex::encode(sha256(&i.to_le_bytes()))
}

/// A varied, realistic record: every kind and actor, with and without subject and digest.
pub fn record(i: u64) -> AuditRecord {
    let kind = AuditKind::ALL[usize::try_from(i).expect("small") % AuditKind::ALL.len()];
    let actor = ["dpo", "subject", "system", "cli"][usize::try_from(i % 4).expect("small")];
    let time = T0 + i64::try_from(i).expect("small") * 1_000_000;
    let mut r = AuditRecord::new(time, kind, actor).detail(json!({
        "request": format!("req-{i}"),
        "n": i,
        "ratio": i as f64 / 7.0,
        "tags": ["a", "b\"c"],
        "nested": {"z": null, "a": true},
    }));
    // Subjects on two records of three, digests on every other one.
    if !i.is_multiple_of(3) {
        r = r.subject(pseudonym(i));
    }
    if i.is_multiple_of(2) {
        r = r.content_digest(content_digest(format!("ciphertext {i}").as_bytes()));
    }
    r
}

pub fn entry_key(seq: u64) -> Vec<u8> {
    [&b"a/"[..], &seq.to_be_bytes()].concat()
}

pub fn checkpoint_key(seq: u64) -> Vec<u8> {
    [&b"c/"[..], &seq.to_be_bytes()].concat()
}

/// The position a verification failed at; panics (test failure) on success or another error.
pub fn tampered_at(result: lethe_audit::Result<lethe_audit::VerifyReport>) -> u64 {
    match result {
        Err(e @ lethe_audit::AuditError::Tampered { .. }) => {
            assert_eq!(e.code(), "audit_tampered");
            e.tampered_seq().expect("tampered has a seq")
        }
        other => panic!("expected a tampered error, got {other:?}"),
    }
}
