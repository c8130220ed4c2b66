//! `lethe-bench audit`: the audit chain's append and verify rates, side by side with plain SHA-256 over
//! the same stored bytes (no sled, no decode).

use std::time::Instant;

use anyhow::Context;
use lethe_audit::{content_digest, sha256, verify_jsonl, AuditChain, AuditKind, AuditRecord, AuditSigner, ChainConfig};
use serde_json::json;

use crate::{cores, rate};

/// Entries in the JSONL export measurement (an export line is ~600 bytes; the file is kept in memory).
const JSONL_MAX: u64 = 100_000;

pub fn run(entries: u64) -> anyhow::Result<()> {
    let config = ChainConfig::default();
    println!(
        "lethe-bench audit: {entries} entries, ~150-byte details, a checkpoint every {}, {} cores",
        config.checkpoint_every,
        cores()
    );
    let dir = tempfile::tempdir()?;
    let db = sled::open(dir.path().join("audit")).context("open sled")?;
    let tree = db.open_tree("audit")?;
    let chain = AuditChain::open(tree.clone(), AuditSigner::generate()?, config).context("open chain")?;

    println!("\n## Append (one thread; building the record included; no fsync per append)");
    let detail_len = lethe_audit_detail_len();
    let start = Instant::now();
    for i in 0..entries {
        chain.append(record(i))?;
    }
    let appended = start.elapsed();
    let start = Instant::now();
    chain.flush()?;
    let flushed = start.elapsed();
    println!("{:<52} {:>14.0} entries/s", format!("append ({detail_len}-byte detail)"), rate(entries, appended));
    println!("{:<52} {:>14.3} s", "flush afterwards (one fsync)", flushed.as_secs_f64());

    // The baseline hashes exactly the values verify() reads, from memory.
    let values: Vec<sled::IVec> = tree.scan_prefix(b"a/").map(|kv| kv.map(|(_, v)| v)).collect::<Result<_, _>>()?;
    anyhow::ensure!(values.len() as u64 == entries, "stored {} of {entries} entries", values.len());
    let bytes: usize = values.iter().map(|v| v.len()).sum();
    println!("\n## Verify ({entries} entries, {:.1} MB stored, cache warm)", bytes as f64 / 1e6);
    let start = Instant::now();
    for v in &values {
        std::hint::black_box(sha256(v));
    }
    let baseline = start.elapsed();
    drop(values);
    let start = Instant::now();
    let report = chain.verify()?;
    let verified = start.elapsed();
    anyhow::ensure!(report.entries_checked == entries, "verified {} of {entries}", report.entries_checked);
    let (b, v) = (rate(entries, baseline), rate(entries, verified));
    println!("{:<52} {:>14.0} entries/s", "plain SHA-256 over the stored values (in memory)", b);
    println!(
        "{:<52} {:>14.0} entries/s",
        format!("lethe verify (sled scan, chain, {} signatures)", report.checkpoints_checked),
        v
    );
    println!("{:<52} {:>13.0}%", "ratio (verify / plain SHA-256)", 100.0 * v / b);

    let n = entries.min(JSONL_MAX);
    if n > 0 {
        println!("\n## JSONL export of the last {n} entries, verified without sled");
        let mut out = Vec::new();
        let start = Instant::now();
        let summary = chain.export_jsonl_signed(&mut out, entries - n + 1, 0)?;
        let exported = start.elapsed();
        let start = Instant::now();
        let report = verify_jsonl(&out[..], chain.verifier())?;
        let checked = start.elapsed();
        anyhow::ensure!(report.entries_checked == summary.entries && report.fully_signed(), "jsonl report {report:?}");
        println!(
            "{:<52} {:>14.0} entries/s",
            format!("export_jsonl ({:.1} MB)", out.len() as f64 / 1e6),
            rate(n, exported)
        );
        println!("{:<52} {:>14.0} entries/s", "verify_jsonl", rate(n, checked));
    }
    Ok(())
}

/// The canonical length of the detail objects appended (they all have the same shape).
fn lethe_audit_detail_len() -> usize {
    serde_json::to_string(&record(123_456).detail).map_or(0, |s| s.len())
}

/// A realistic record: a pseudonymous subject, a ciphertext digest, a ~150-byte detail object.
fn record(i: u64) -> AuditRecord {
    let kind = AuditKind::ALL[(i % AuditKind::ALL.len() as u64) as usize];
    let actor = ["dpo", "subject", "system", "cli"][(i % 4) as usize];
    let subject = hex::encode(sha256(&i.to_le_bytes()));
    AuditRecord::new(1_714_521_600_000_000 + i as i64, kind, actor)
        .subject(subject)
        .content_digest(content_digest(&i.to_be_bytes()))
        .detail(json!({
            "request_id": format!("{:032x}", u128::from(i) * 0x9e37_79b9_7f4a_7c15),
            "purpose": "analytics",
            "basis": "consent",
            "events": i % 1000,
            "bytes": (i * 7919) % 100_000,
            "policy_version": 7,
            "format": "jsonl",
        }))
}
