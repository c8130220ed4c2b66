//! R-AUDIT-1: the DPO's JSONL export verifies without sled, one changed character fails at its position,
//! and the CSV export is readable.

use lethe_audit::{verify_jsonl, AuditError, AuditKind, AuditRecord, VerifyReport};

use crate::{chain, record, signer, T0};

fn lines(export: &[u8]) -> Vec<&[u8]> {
    export.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect()
}

/// R-AUDIT-1: a signed JSONL export verifies independently of sled, with the same report as the store.
#[test]
fn r_audit_1_jsonl_export_verifies() {
    let f = chain(10, 4);
    let mut out = Vec::new();
    let summary = f.chain.export_jsonl_signed(&mut out, 1, T0 + 999).expect("export");
    assert_eq!((summary.first_seq, summary.last_seq, summary.entries, summary.checkpoints), (1, 10, 10, 3));
    let report = verify_jsonl(&out[..], f.chain.verifier()).expect("verify_jsonl");
    assert_eq!(report, f.chain.verify().expect("verify"));
    assert!(report.fully_signed());
    let text = std::str::from_utf8(&out).expect("utf-8");
    let all = lines(&out);
    assert_eq!(all.len(), 1 + 10 + 3);
    assert!(text.starts_with(r#"{"type":"header","format":"lethe-audit-jsonl-v1","first_seq":1,"last_seq":10,"#));
    let entry: serde_json::Value = serde_json::from_slice(all[1]).expect("entry line is json");
    assert_eq!(entry["type"], "entry");
    assert_eq!(entry["seq"], 1);
    assert_eq!(entry["prev_hash"], "0".repeat(64));
    // Without the final newline the export still verifies.
    verify_jsonl(&out[..out.len() - 1], f.chain.verifier()).expect("no final newline");
}

/// The sequence number each line's failure must name: the header 0 (or any: its numbers move the
/// expectations), an entry its seq, a checkpoint the entry it follows.
fn positions(export: &[u8]) -> Vec<Option<u64>> {
    lines(export)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).expect("json");
            match v["type"].as_str() {
                Some("header") => None,
                _ => v["seq"].as_u64(),
            }
        })
        .collect()
}

/// Flips every byte of `export` with each mask and checks the failure's position and line.
fn every_flip_fails_at_its_line(export: &[u8], verifier: &lethe_audit::AuditVerifier, masks: &[u8]) {
    let expected = positions(export);
    let mut line = 0usize;
    for i in 0..export.len() {
        for &mask in masks {
            if mask == 0x20 && !export[i].is_ascii_alphabetic() {
                continue;
            }
            let mut bad = export.to_vec();
            bad[i] ^= mask;
            match verify_jsonl(&bad[..], verifier) {
                Err(AuditError::Tampered { seq, reason }) => {
                    if let Some(want) = expected[line] {
                        assert_eq!(seq, want, "byte {i} ^ {mask:#x} (line {}): {reason}", line + 1);
                        assert!(reason.starts_with(&format!("line {}:", line + 1)), "byte {i}: {reason}");
                    }
                }
                other => panic!("byte {i} ^ {mask:#x} (line {}) was not caught: {other:?}", line + 1),
            }
        }
        if export[i] == b'\n' {
            line += 1;
        }
    }
}

/// R-AUDIT-1: one flipped character anywhere in a JSONL export (every byte, two ways) fails, at the seq of
/// the line it is in, and the reason names the line.
#[test]
fn r_audit_1_jsonl_any_flipped_character_fails_at_its_position() {
    let f = chain(7, 4);
    let mut out = Vec::new();
    f.chain.export_jsonl_signed(&mut out, 1, T0 + 999).expect("export");
    assert_eq!(lines(&out).len(), 1 + 7 + 2);
    every_flip_fails_at_its_line(&out, f.chain.verifier(), &[0x01, 0x20]);
}

/// R-AUDIT-1: removed, duplicated or truncated lines fail at the position they break.
#[test]
fn r_audit_1_jsonl_removed_lines_fail_at_their_position() {
    let f = chain(8, 4);
    let mut out = Vec::new();
    f.chain.export_jsonl_signed(&mut out, 1, T0 + 999).expect("export");
    let all = lines(&out);
    let join = |ls: Vec<&[u8]>| ls.join(&b'\n');
    // Line 4 is entry 3 (header, entry 1, entry 2, entry 3).
    let without_3: Vec<&[u8]> = all.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, l)| *l).collect();
    assert_eq!(crate::tampered_at(verify_jsonl(&join(without_3)[..], f.chain.verifier())), 3);
    let mut doubled = all.clone();
    doubled.insert(3, all[3]);
    assert_eq!(crate::tampered_at(verify_jsonl(&join(doubled)[..], f.chain.verifier())), 4);
    let truncated = all[..all.len() - 3].to_vec();
    assert_eq!(crate::tampered_at(verify_jsonl(&join(truncated)[..], f.chain.verifier())), 7);
    assert_eq!(crate::tampered_at(verify_jsonl(&b""[..], f.chain.verifier())), 0);
}

/// R-AUDIT-1: an export verified with keys that do not include its signer fails (at the header).
#[test]
fn r_audit_1_jsonl_with_untrusted_key_fails() {
    let f = chain(4, 2);
    let mut out = Vec::new();
    f.chain.export_jsonl(&mut out, 1).expect("export");
    let err = verify_jsonl(&out[..], &signer().verifier()).expect_err("untrusted");
    assert_eq!(err.tampered_seq(), Some(0));
    assert!(err.to_string().contains("not trusted"), "{err}");
}

/// R-AUDIT-1: an export starting at seq k verifies from the `prev_hash` of entry k, reports k as its first
/// seq, and is anchored by the checkpoints inside it.
#[test]
fn r_audit_1_jsonl_sub_range_verifies_from_its_first_seq() {
    let f = chain(10, 4);
    let mut out = Vec::new();
    let summary = f.chain.export_jsonl_signed(&mut out, 6, T0 + 999).expect("export");
    assert_eq!((summary.first_seq, summary.entries, summary.checkpoints), (6, 5, 2));
    let report = verify_jsonl(&out[..], f.chain.verifier()).expect("verify sub-range");
    assert_eq!(
        report,
        VerifyReport {
            first_seq: 6,
            last_seq: 10,
            entries_checked: 5,
            checkpoints_checked: 2,
            last_signed_seq: Some(10),
            unsigned_tail: 0,
            head_hash: f.chain.head().1,
        }
    );
    every_flip_fails_at_its_line(&out, f.chain.verifier(), &[0x01]);
    // Without a checkpoint inside, a sub-range is a hash chain only, and the report says so.
    let mut unsigned = Vec::new();
    f.chain.export_jsonl(&mut unsigned, 9).expect("export");
    let r = verify_jsonl(&unsigned[..], f.chain.verifier()).expect("verify");
    assert_eq!((r.first_seq, r.entries_checked, r.last_signed_seq), (9, 2, Some(10)));
    let mut tail = Vec::new();
    f.chain.append(record(11)).expect("append");
    f.chain.export_jsonl(&mut tail, 11).expect("export");
    let r = verify_jsonl(&tail[..], f.chain.verifier()).expect("verify");
    assert_eq!((r.first_seq, r.last_signed_seq, r.unsigned_tail), (11, None, 1));
    // The empty range just past the head verifies; beyond it is refused.
    let mut empty = Vec::new();
    f.chain.export_jsonl(&mut empty, 12).expect("export empty");
    assert_eq!(verify_jsonl(&empty[..], f.chain.verifier()).expect("verify").entries_checked, 0);
    assert!(matches!(f.chain.export_jsonl(Vec::new(), 13), Err(AuditError::InvalidRange)));
}

/// R-AUDIT-1: a sub-range cannot pass itself off as the start of the chain.
#[test]
fn r_audit_1_jsonl_sub_range_relabelled_as_whole_chain_fails() {
    let f = chain(6, 0);
    let mut out = Vec::new();
    f.chain.export_jsonl(&mut out, 3).expect("export");
    let text = String::from_utf8(out).expect("utf-8").replacen(r#""first_seq":3"#, r#""first_seq":1"#, 1);
    assert_eq!(crate::tampered_at(verify_jsonl(text.as_bytes(), f.chain.verifier())), 1);
}

/// R-AUDIT-1: the CSV export lists the entries of a time window for people, with RFC 3339 times.
#[test]
fn r_audit_1_csv_export_lists_a_time_window() {
    let f = chain(0, 0);
    for (i, t) in [(1u64, 0i64), (2, 1_000_000), (3, 2_500_000)] {
        let r = AuditRecord { time_micros: T0 + t, ..record(i) };
        f.chain.append(r).expect("append");
    }
    f.chain.append(AuditRecord::new(T0 + 9_000_000, AuditKind::Other, "cli")).expect("append");
    let mut out = Vec::new();
    let n = f.chain.export_csv(&mut out, T0 + 1, T0 + 3_000_000).expect("csv");
    assert_eq!(n, 2);
    let mut reader = csv::Reader::from_reader(&out[..]);
    let headers = reader.headers().expect("headers").clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        vec!["seq", "time", "kind", "actor", "subject", "content_digest", "detail", "hash"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("rows");
    assert_eq!(rows.len(), 2);
    let r2 = record(2);
    assert_eq!(&rows[0][0], "2");
    assert_eq!(&rows[0][1], "2024-05-01T00:00:01.000000Z");
    assert_eq!(&rows[0][2], r2.kind.as_str());
    assert_eq!(&rows[0][3], r2.actor);
    assert_eq!(&rows[0][4], r2.subject.as_deref().unwrap_or(""));
    assert_eq!(&rows[0][5], r2.content_digest.as_deref().unwrap_or(""));
    let detail: serde_json::Value = serde_json::from_str(&rows[0][6]).expect("detail is json");
    assert_eq!(detail, r2.detail);
    assert_eq!(&rows[1][1], "2024-05-01T00:00:02.500000Z");
    assert_eq!(&rows[1][4], "", "record 3 has no subject");
}
