//! R-AUDIT-1 property tests: any sequence of records verifies; any single-byte corruption of a stored
//! entry fails at that entry.

use lethe_audit::{verify_jsonl, AuditChain, AuditKind, AuditRecord};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::{config, entry_key, signer, tampered_at, tree, T0};

fn detail_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn records() -> impl Strategy<Value = Vec<AuditRecord>> {
    let one = (
        0..AuditKind::ALL.len(),
        prop::sample::select(vec!["dpo", "subject", "system", "cli"]),
        prop::option::of(prop::collection::vec(any::<u8>(), 8..=64)),
        prop::collection::btree_map("\\PC{0,8}", detail_value(), 0..6),
        prop::option::of(any::<[u8; 32]>()),
        0i64..10_000_000_000,
    )
        .prop_map(|(k, actor, subject, detail, digest, dt)| AuditRecord {
            time_micros: T0 + dt,
            kind: AuditKind::ALL[k],
            actor: actor.to_owned(),
            subject: subject.map(hex::encode),
            detail: json!(detail),
            content_digest: digest.map(hex::encode),
        });
    prop::collection::vec(one, 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// R-AUDIT-1: random sequences of records append, read back unchanged, and verify (in the store and as
    /// JSONL).
    #[test]
    fn r_audit_1_random_records_verify(records in records(), every in 0u64..6) {
        let (_db, t) = tree();
        let chain = AuditChain::open(t, signer(), config(every)).expect("open");
        for r in &records {
            chain.append(r.clone()).expect("append");
        }
        let report = chain.verify().expect("verify");
        prop_assert_eq!(report.entries_checked, records.len() as u64);
        for (e, r) in chain.entries(1).zip(&records) {
            let e = e.expect("entry");
            prop_assert_eq!(&e.detail, &r.detail);
            prop_assert_eq!(&e.subject, &r.subject);
        }
        let mut out = Vec::new();
        chain.export_jsonl(&mut out, 1).expect("export");
        prop_assert_eq!(verify_jsonl(&out[..], chain.verifier()).expect("verify_jsonl"), report);
    }

    /// R-AUDIT-1: a random single-byte corruption of a random stored entry fails verification at that entry.
    #[test]
    fn r_audit_1_random_corruption_fails(
        records in records(),
        pick in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let (_db, t) = tree();
        let chain = AuditChain::open(t.clone(), signer(), config(3)).expect("open");
        for r in &records {
            chain.append(r.clone()).expect("append");
        }
        let seq = pick.index(records.len()) as u64 + 1;
        let mut value = t.get(entry_key(seq)).expect("get").expect("stored").to_vec();
        let i = byte.index(value.len());
        value[i] ^= mask;
        t.insert(entry_key(seq), value).expect("insert");
        prop_assert_eq!(tampered_at(chain.verify()), seq);
    }
}
