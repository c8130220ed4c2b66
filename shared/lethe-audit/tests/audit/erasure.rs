//! R-AUDIT-1 / invariant 7: the chain holds pseudonyms and ciphertext digests only, so it verifies without
//! any data key and keeps verifying after the subject is erased.

use lethe_audit::{content_digest, sha256, verify_jsonl, AuditKind, AuditRecord};
use serde_json::json;

use crate::{chain, T0};

/// R-AUDIT-1: entries about a subject whose ciphertext and data key are gone (crypto-shredded) still
/// verify, in the store and as a JSONL export: the chain only ever held the ciphertext's digest and the
/// pseudonym, and no plaintext or identifier is stored.
#[test]
fn r_audit_1_verifies_after_the_subject_is_erased() {
    let f = chain(0, 0);
    let email = "alice@example.com";
    // The service derives the pseudonym with a keyed hash and encrypts events with the subject's data key;
    // the test stands in for both with a hash and an XOR "cipher".
    let pseudonym = hex::encode(sha256(format!("pseudonym-key|{email}").as_bytes()));
    let mut data_key = [0x5au8; 32];
    let plaintexts = [format!("{{\"email\":\"{email}\",\"page\":\"/shoes\"}}"), format!("{email} bought shoes")];
    let mut ciphertexts: Vec<Vec<u8>> =
        plaintexts.iter().map(|p| p.bytes().zip(data_key.iter().cycle()).map(|(b, k)| b ^ k).collect()).collect();
    for c in &ciphertexts {
        let r = AuditRecord::new(T0, AuditKind::Export, "dpo")
            .subject(pseudonym.clone())
            .content_digest(content_digest(c))
            .detail(json!({"format": "json", "events": 1}));
        f.chain.append(r).expect("append export");
    }
    f.chain
        .append(
            AuditRecord::new(T0 + 1, AuditKind::Erasure, "subject")
                .subject(pseudonym.clone())
                .detail(json!({"events_shredded": 2})),
        )
        .expect("append erasure");
    // Erasure: the ciphertexts and the data key are destroyed.
    ciphertexts.clear();
    data_key.fill(0);

    let report = f.chain.verify().expect("verifies after erasure");
    assert_eq!(report.entries_checked, 3);
    let mut export = Vec::new();
    f.chain.export_jsonl_signed(&mut export, 1, T0 + 2).expect("export");
    assert!(verify_jsonl(&export[..], f.chain.verifier()).expect("jsonl verifies").fully_signed());

    for item in f.tree.iter() {
        let (_, value) = item.expect("read");
        assert!(!contains(&value, email.as_bytes()), "an identifier reached the store");
        assert!(!contains(&value, b"shoes"), "plaintext reached the store");
    }
    assert!(!contains(&export, email.as_bytes()));
    for e in f.chain.entries(1) {
        assert_eq!(e.expect("entry").subject.as_deref(), Some(pseudonym.as_str()));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
