//! R-AUDIT-1: the documented byte layouts, recomputed by hand, so that an external verifier can be written
//! from the docs and a change of format cannot slip in unnoticed.

use ed25519_dalek::Signature;
use lethe_audit::{content_digest, sha256, AuditChain, AuditKind, AuditRecord, AuditSigner};
use serde_json::json;

use crate::{config, tree, T0};

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).expect("short").to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// R-AUDIT-1: `hash = SHA-256("lethe-audit-v1\0" || prev || body)` with the documented body layout and
/// canonical detail; the checkpoint signature covers the documented message; the JSONL line is pinned.
#[test]
fn r_audit_1_hash_signature_and_jsonl_follow_the_documented_layout() {
    let (_db, t) = tree();
    let signer = AuditSigner::from_bytes(&[7; 32], "golden-1").expect("signer");
    let chain = AuditChain::open(t, signer.clone(), config(0)).expect("open");
    let subject = "ab".repeat(16);
    let digest = content_digest(b"ciphertext");
    let record = AuditRecord::new(T0, AuditKind::Export, "dpo")
        .subject(subject.clone())
        .content_digest(digest.clone())
        .detail(json!({"z": 1, "a": [true, null, 1.5], "m": {"y": "\u{e9}\"", "b": -2}}));
    let entry = chain.append(record).expect("append");

    let detail = r#"{"a":[true,null,1.5],"m":{"b":-2,"y":"é\""},"z":1}"#;
    let mut pre = b"lethe-audit-v1\0".to_vec();
    pre.extend_from_slice(&[0; 32]);
    pre.extend_from_slice(&1u64.to_be_bytes());
    pre.extend_from_slice(&T0.to_be_bytes());
    string(&mut pre, "export");
    string(&mut pre, "dpo");
    pre.push(1);
    string(&mut pre, &subject);
    string(&mut pre, detail);
    pre.push(1);
    string(&mut pre, &digest);
    assert_eq!(entry.hash, hex::encode(sha256(&pre)));
    assert_eq!(entry.hash, "da11eb0e9f64bf39b944bb6aca07530432e7f1462886d9eaacf278c416fa85ab", "format changed");

    let cp = chain.checkpoint(T0 + 5).expect("checkpoint");
    let mut message = b"lethe-audit-checkpoint-v1\0".to_vec();
    message.extend_from_slice(&1u64.to_be_bytes());
    message.extend_from_slice(&hex::decode(&entry.hash).expect("hex"));
    message.extend_from_slice(&(T0 + 5).to_be_bytes());
    let sig: [u8; 64] = hex::decode(&cp.signature).expect("hex").try_into().expect("64 bytes");
    signer.verifying_key().verify_strict(&message, &Signature::from_bytes(&sig)).expect("documented message");

    let mut out = Vec::new();
    chain.export_jsonl(&mut out, 1).expect("export");
    let text = String::from_utf8(out).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            r#"{{"type":"header","format":"lethe-audit-jsonl-v1","first_seq":1,"last_seq":1,"keys":[{{"key_id":"golden-1","public_key":"{}"}}]}}"#,
            hex::encode(signer.verifying_key().as_bytes())
        )
    );
    assert_eq!(
        lines[1],
        format!(
            r#"{{"type":"entry","seq":1,"time_micros":{T0},"kind":"export","actor":"dpo","subject":"{subject}","detail":{},"content_digest":"{digest}","prev_hash":"{}","hash":"{}"}}"#,
            serde_json::to_string(detail).expect("json"),
            "0".repeat(64),
            entry.hash
        )
    );
    assert_eq!(
        lines[2],
        format!(
            r#"{{"type":"checkpoint","seq":1,"hash":"{}","time_micros":{},"key_id":"golden-1","signature":"{}"}}"#,
            entry.hash,
            T0 + 5,
            cp.signature
        )
    );
}
