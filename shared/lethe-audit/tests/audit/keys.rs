//! R-AUDIT-1: checkpoints verify only with trusted keys; a signer rotation keeps old checkpoints verifiable.

use lethe_audit::{AuditChain, AuditSigner, AuditVerifier, ChainConfig};

use crate::{chain, checkpoint_key, config, record, signer, tampered_at, tree};

/// R-AUDIT-1: a chain reopened with a new signer that does not trust the old key fails at the first
/// checkpoint the old key signed.
#[test]
fn r_audit_1_checkpoint_by_untrusted_key_fails() {
    let f = chain(10, 4);
    let other = AuditChain::open(f.tree.clone(), signer(), config(4)).expect("open with another signer");
    match other.verify() {
        Err(e) => {
            assert_eq!(e.tampered_seq(), Some(4));
            assert!(e.to_string().contains("untrusted key"), "{e}");
        }
        Ok(r) => panic!("verified with an untrusted key: {r:?}"),
    }
    assert_eq!(tampered_at(f.chain.verify_with(&AuditVerifier::new())), 4);
}

/// R-AUDIT-1: a checkpoint with the right hash but signed by an outsider's key fails at its seq.
#[test]
fn r_audit_1_forged_checkpoint_fails() {
    let f = chain(8, 0);
    // The outsider rebuilds the same chain (same records, same hashes) and signs it with their key.
    let (_db, t2) = tree();
    let forger = AuditChain::open(t2.clone(), signer(), config(0)).expect("open");
    for i in 1..=5 {
        forger.append(record(i)).expect("append");
    }
    let forged = forger.checkpoint(0).expect("sign");
    assert_eq!(forged.hash, f.chain.entries(5).next().expect("entry 5").expect("decodes").hash);
    f.tree.insert(checkpoint_key(5), t2.get(checkpoint_key(5)).expect("get").expect("stored")).expect("insert");
    assert_eq!(tampered_at(f.chain.verify()), 5);
}

/// R-AUDIT-1: after a signer rotation the old key stays trusted, so old and new checkpoints verify.
#[test]
fn r_audit_1_signer_rotation_keeps_old_checkpoints_verifiable() {
    let f = chain(8, 4);
    let new = signer();
    assert_ne!(new.key_id(), f.signer.key_id());
    let cfg = ChainConfig { checkpoint_every: 4, trusted: f.signer.verifier() };
    let rotated = AuditChain::open(f.tree.clone(), new.clone(), cfg).expect("open rotated");
    for i in 9..=12 {
        rotated.append(record(i)).expect("append");
    }
    let cps = rotated.checkpoints().expect("checkpoints");
    let ids: Vec<_> = cps.iter().map(|c| c.key_id.as_str()).collect();
    assert_eq!(ids, vec![f.signer.key_id(), f.signer.key_id(), new.key_id()]);
    let report = rotated.verify().expect("verify across the rotation");
    assert_eq!((report.checkpoints_checked, report.last_signed_seq), (3, Some(12)));
    // The DPO's verifier, built from published public keys only.
    let published = AuditVerifier::from_public_keys([
        (f.signer.key_id().to_owned(), f.signer.verifying_key().to_bytes()),
        (new.key_id().to_owned(), new.verifying_key().to_bytes()),
    ])
    .expect("verifier");
    assert_eq!(rotated.verify_with(&published).expect("verify"), report);
    assert_eq!(tampered_at(rotated.verify_with(&new.verifier())), 4);
}

/// R-AUDIT-1: a signer restored from its sealed bytes signs checkpoints the same verifier accepts.
#[test]
fn r_audit_1_signer_restores_from_its_bytes() {
    let s = signer();
    let restored = AuditSigner::from_bytes(&s.to_bytes(), s.key_id()).expect("restore");
    let (_db, t) = tree();
    let chain = AuditChain::open(t, restored, config(2)).expect("open");
    for i in 1..=4 {
        chain.append(record(i)).expect("append");
    }
    assert_eq!(chain.verify_with(&s.verifier()).expect("verify").checkpoints_checked, 2);
    // A key id already trusted with another key is refused.
    let clash = ChainConfig { checkpoint_every: 2, trusted: s.verifier() };
    let impostor = AuditSigner::from_bytes(&[9; 32], s.key_id()).expect("signer");
    let (_db2, t2) = tree();
    let err = AuditChain::open(t2, impostor, clash).expect_err("refused");
    assert_eq!(err.code(), "invalid_audit_key");
}
