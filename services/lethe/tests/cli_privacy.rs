//! The privacy commands of `lethe` as an operator runs them: real processes on a temporary data
//! directory under a master key from `LETHE_MASTER_KEY`, seeded through `lethe serve` over HTTP.
//! Covers `erase` (R-ERASE-1), `backup`/`restore` (R-ERASE-5), `retention sweep` (R-RETAIN-1),
//! `audit verify|chain` (R-AUDIT-1), `audit export` (R-ROPA-1) and `requests list` (R-DSR-1).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use lethe_domain::UtcMicros;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The master key of every data directory in this file (64 hex characters).
const MASTER_KEY: &str = "3c9a4f0e21d7b8856a0f4c3e9d1b7a2566e0f9c4d3b2a1908f7e6d5c4b3a2910";

const DAY_MICROS: i64 = 86_400_000_000;

fn lethe(dir: &Path, args: &[&str]) -> Output {
    common::run_lethe(dir, Some(MASTER_KEY), args)
}

fn text(o: &Output) -> String {
    common::output_text(o)
}

/// Runs a command that must succeed and returns its standard output.
fn ok(dir: &Path, args: &[&str]) -> String {
    let o = lethe(dir, args);
    assert!(o.status.success(), "lethe {args:?} failed: {}", text(&o));
    String::from_utf8(o.stdout).expect("UTF-8 output")
}

/// The JSON documents a command printed one after the other (pretty or one per line).
fn documents(out: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(out).into_iter::<Value>().collect::<Result<_, _>>().expect("JSON documents")
}

/// `lethe log verify --subjects --json`, which must exit 0 (the log is sound).
fn verify(dir: &Path) -> Value {
    let docs = documents(&ok(dir, &["log", "verify", "--subjects", "--json"]));
    assert_eq!(docs.len(), 1, "{docs:?}");
    let report = docs.into_iter().next().unwrap();
    assert_eq!(report["failures"], json!([]), "{report}");
    assert_eq!(report["problems"], json!([]), "{report}");
    report
}

/// SHA-256 (hex) of a hex pseudonym's bytes: how certificates, requests and the audit chain name a subject.
fn digest_of(pseudonym: &str) -> String {
    hex::encode(Sha256::digest(hex::decode(pseudonym).expect("a hex pseudonym")))
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// An RFC 3339 instant `days` from now.
fn days_from_now(days: i64) -> String {
    lethe_privacy::time::rfc3339(UtcMicros(UtcMicros::now().0 + days * DAY_MICROS))
}

/// Starts `lethe serve` over `dir`, records for each id a banner consent to analytics and one tracked
/// event (a custom event: behaviour data, 395-day retention) with a site write key from `lethe token
/// issue`, stops the server, and returns the ids' pseudonyms (hex) as `GET /v1/consent/{id}` names them.
fn seed(dir: &Path, ids: &[&str]) -> Vec<String> {
    let server = common::serve(dir, &[("LETHE_MASTER_KEY", MASTER_KEY)]);
    let site = ok(dir, &["token", "issue", "--role", "site", "--site", "shop", "--origin", "https://shop.example"]);
    let dpo = ok(dir, &["token", "issue", "--role", "dpo", "--ttl", "10m"]);
    let (site, dpo) = (site.trim(), dpo.trim());
    let client = reqwest::blocking::Client::new();
    let mut pseudonyms = Vec::new();
    for id in ids {
        let consent = common::banner_consent(id, &["analytics"], &[]);
        let r = client.post(format!("{}/v1/consent", server.base)).bearer_auth(site).json(&consent).send().unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
        let r = client
            .post(format!("{}/v1/track", server.base))
            .basic_auth(site, Some(""))
            .json(&json!({"anonymousId": id, "event": "Clicked", "messageId": format!("{id}-m1"),
                "properties": {"label": "canary"}}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
        let body: Value = r.json().unwrap();
        assert_eq!(body["result"]["status"], "stored", "{body}");
        let r = client.get(format!("{}/v1/consent/{id}", server.base)).bearer_auth(dpo).send().unwrap();
        assert_eq!(r.status(), 200);
        let state: Value = r.json().unwrap();
        assert_eq!(state["purposes"]["analytics"]["state"], "granted", "{state}");
        pseudonyms.push(state["subject"].as_str().expect("the subject's pseudonym").to_owned());
    }
    drop(server);
    let report = verify(dir);
    let n = 2 * ids.len() as u64;
    assert_eq!((report["events"].as_u64(), report["decrypted"].as_u64()), (Some(n), Some(n)), "{report}");
    let seen: BTreeSet<&str> =
        report["per_subject"].as_array().unwrap().iter().map(|s| s["pseudonym"].as_str().unwrap()).collect();
    assert_eq!(seen, pseudonyms.iter().map(String::as_str).collect(), "{report}");
    pseudonyms
}

/// The state `lethe log verify --subjects --json` gives a subject.
fn subject_state<'a>(report: &'a Value, pseudonym: &str) -> &'a str {
    let subject = report["per_subject"].as_array().unwrap().iter().find(|s| s["pseudonym"] == pseudonym);
    subject.and_then(|s| s["state"].as_str()).unwrap_or_else(|| panic!("{pseudonym} not in {report}"))
}

/// R-ERASE-1: `lethe erase ID --now` prints a signed erasure certificate (subject digest, destroyed key
/// ids, the stores it reached), then the rotation that made it final; neither the identifier nor the
/// pseudonym appears in it, and the signature verifies with the data directory's audit key.
#[test]
fn r_erase_1_erase_now_prints_a_signed_certificate_then_the_rotation() {
    let d = tempfile::tempdir().unwrap();
    let pseudonym = seed(d.path(), &["erin-7731"]).remove(0);

    let o = lethe(d.path(), &["erase", "erin-7731", "--now"]);
    assert!(o.status.success(), "{}", text(&o));
    let all = text(&o);
    assert!(!all.contains("erin-7731"), "the identifier is echoed: {all}");
    assert!(!all.to_lowercase().contains(&pseudonym), "the pseudonym is echoed: {all}");
    let docs = documents(&String::from_utf8(o.stdout).unwrap());
    assert_eq!(docs.len(), 2, "a certificate, then a rotation report: {docs:?}");
    let (cert, rotation) = (&docs[0], &docs[1]);

    assert_eq!(cert["subject_digest"], digest_of(&pseudonym), "{cert}");
    let key_ids: Vec<u64> = cert["key_ids"].as_array().unwrap().iter().map(|k| k.as_u64().unwrap()).collect();
    assert_eq!(key_ids.len(), 2, "the permanent key and one retention-period key: {cert}");
    assert!(key_ids.contains(&0), "{cert}");
    assert!(!cert["certificate_id"].as_str().unwrap().is_empty(), "{cert}");
    assert_eq!(cert["signature"].as_str().unwrap().len(), 128, "{cert}");
    assert_eq!((cert["newly_erased"].as_bool(), cert["events_shredded"].as_u64()), (Some(true), Some(2)), "{cert}");
    let stores: Vec<&str> = cert["stores_touched"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for store in ["event_log:", "key_store: 2 data key(s) destroyed", "consent_book:"] {
        assert!(stores.iter().any(|s| s.starts_with(store)), "{store} missing from {stores:?}");
    }

    let from = rotation["from_epoch"].as_u64().expect("a rotation report");
    assert_eq!(rotation["to_epoch"].as_u64(), Some(from + 1), "{rotation}");
    assert_eq!(rotation["erasures_finalized"], 1, "{rotation}");

    // The signature covers the certificate and verifies with the public key the chain export publishes.
    let chain = ok(d.path(), &["audit", "chain"]);
    let header: Value = serde_json::from_str(chain.lines().next().unwrap()).unwrap();
    let key = header["keys"].as_array().unwrap().iter().find(|k| k["key_id"] == cert["signed_by"]).expect("the key");
    let public: [u8; 32] = hex::decode(key["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let public = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let mut certificate: lethe_privacy::erasure::ErasureCertificate = serde_json::from_value(cert.clone()).unwrap();
    let signature: [u8; 64] = hex::decode(&certificate.signature).unwrap().try_into().unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(&signature);
    assert!(public.verify_strict(&certificate.signed_bytes(), &signature).is_ok(), "the signature does not verify");
    certificate.events_shredded += 1;
    assert!(public.verify_strict(&certificate.signed_bytes(), &signature).is_err(), "an altered certificate verifies");

    let report = verify(d.path());
    assert_eq!(subject_state(&report, &pseudonym), "erased", "{report}");
    assert_eq!((report["erased_subjects"].as_u64(), report["rotation_pending"].as_bool()), (Some(1), Some(false)));
    assert_eq!((report["decrypted"].as_u64(), report["tombstones"].as_u64()), (Some(0), Some(2)), "{report}");
}

/// R-ERASE-5: a backup taken before an erasure does not bring the subject back. `lethe backup` reports
/// records, bytes and the file's SHA-256; a damaged copy is refused and leaves the live log alone;
/// `lethe restore` re-applies the erasure the live log knows, and the log verifies with the subject
/// erased.
#[test]
fn r_erase_5_restore_reapplies_an_erasure_made_after_the_backup() {
    let d = tempfile::tempdir().unwrap();
    let pseudonym = seed(d.path(), &["fred-5521"]).remove(0);
    let file = d.path().join("before-erasure.bak");

    let docs = documents(&ok(d.path(), &["backup", file.to_str().unwrap()]));
    assert_eq!(docs.len(), 1, "{docs:?}");
    let backup = &docs[0];
    assert!(backup["records"].as_u64().unwrap() > 0, "{backup}");
    assert_eq!(backup["bytes"].as_u64(), Some(std::fs::metadata(&file).unwrap().len()), "{backup}");
    assert_eq!(backup["digest"], sha256_file(&file), "{backup}");
    assert_eq!(backup["header"]["head"], 2, "{backup}");

    let docs = documents(&ok(d.path(), &["erase", "fred-5521", "--now"]));
    assert_eq!(docs[0]["subject_digest"], digest_of(&pseudonym));

    // One flipped byte: refused before the live log is touched.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let damaged = d.path().join("damaged.bak");
    std::fs::write(&damaged, bytes).unwrap();
    let o = lethe(d.path(), &["restore", damaged.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("checksum mismatch"), "{}", text(&o));
    assert_eq!(subject_state(&verify(d.path()), &pseudonym), "erased");

    let docs = documents(&ok(d.path(), &["restore", file.to_str().unwrap()]));
    assert_eq!(docs.len(), 1, "{docs:?}");
    let restore = &docs[0];
    assert_eq!(restore["erasures_reapplied"], 1, "{restore}");
    assert_eq!(restore["records"], backup["records"], "{restore}");
    assert_eq!(restore["keys_from_backup"], 0, "no key of the erased subject comes back: {restore}");
    let from = restore["rotation"]["from_epoch"].as_u64().unwrap();
    assert_eq!(restore["rotation"]["to_epoch"].as_u64(), Some(from + 1), "{restore}");
    let previous = restore["previous_log"].as_str().expect("the live log was moved aside");
    assert!(Path::new(previous).is_dir(), "{restore}");

    let report = verify(d.path());
    assert_eq!(subject_state(&report, &pseudonym), "erased", "{report}");
    assert_eq!(report["erased_subjects"], 1, "{report}");
    assert_eq!(report["decrypted"], 0, "{report}");
    assert_eq!(report["rotation_pending"], false, "{report}");
}

/// R-ERASE-5 with R-RETAIN-1: after `lethe restore` re-applies an erasure, a later retention sweep
/// finds nothing of the erased subject to destroy, as when no restore happened (the control below):
/// the restore drops the backup's retention-index entries (`r/<expiry><pseudonym><key id>`) of subjects
/// erased since, and a sweep counts only keys that exist.
#[test]
fn r_erase_5_a_sweep_after_restore_finds_nothing_of_an_erased_subject() {
    let sweep_after = |restore: bool| {
        let d = tempfile::tempdir().unwrap();
        seed(d.path(), &["olga-6021"]);
        let file = d.path().join("b.bak");
        ok(d.path(), &["backup", file.to_str().unwrap()]);
        ok(d.path(), &["erase", "olga-6021", "--now"]);
        if restore {
            ok(d.path(), &["restore", file.to_str().unwrap()]);
        }
        documents(&ok(d.path(), &["retention", "sweep", "--at", &days_from_now(730)])).remove(0)
    };
    assert_eq!(sweep_after(false)["keys_destroyed"], 0, "control: the erasure removed the index entry");
    let sweep = sweep_after(true);
    assert_eq!((sweep["keys_destroyed"].as_u64(), sweep["subjects"].as_u64()), (Some(0), Some(0)), "{sweep}");
}

/// R-RETAIN-1: a sweep two years ahead destroys the period key of the behaviour event (395-day
/// retention) but not the consent record's permanent key, and rotates; the log then verifies with the
/// event expired and the consent record readable. A sweep a day ahead destroys nothing, and an `--at`
/// that is not RFC 3339 is a plain error.
#[test]
fn r_retain_1_retention_sweep_expires_behaviour_but_keeps_consent() {
    let d = tempfile::tempdir().unwrap();
    let pseudonym = seed(d.path(), &["gina-8812"]).remove(0);

    let o = lethe(d.path(), &["retention", "sweep", "--at", "garbage"]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error: `garbage` is not an RFC 3339 instant"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let docs = documents(&ok(d.path(), &["retention", "sweep", "--at", &days_from_now(1)]));
    assert_eq!(docs.len(), 2, "{docs:?}");
    assert_eq!(docs[0]["keys_destroyed"], 0, "{docs:?}");
    assert_eq!(docs[1], Value::Null, "nothing to rotate: {docs:?}");
    assert_eq!(verify(d.path())["expired"], 0);

    let docs = documents(&ok(d.path(), &["retention", "sweep", "--at", &days_from_now(730)]));
    assert_eq!(docs.len(), 2, "{docs:?}");
    let (sweep, rotation) = (&docs[0], &docs[1]);
    assert_eq!((sweep["keys_destroyed"].as_u64(), sweep["subjects"].as_u64()), (Some(1), Some(1)), "{sweep}");
    let from = rotation["from_epoch"].as_u64().expect("the sweep is made final by a rotation");
    assert_eq!(rotation["to_epoch"].as_u64(), Some(from + 1), "{rotation}");

    let report = verify(d.path());
    assert_eq!(report["expired"], 1, "the tracked event: {report}");
    assert_eq!(report["decrypted"], 1, "the consent record: {report}");
    assert_eq!(report["rotation_pending"], false, "{report}");
    assert_eq!(subject_state(&report, &pseudonym), "active", "{report}");
}

/// R-AUDIT-1: after an erasure and a retention sweep the data directory's audit chain verifies; the
/// signed chain from `lethe audit chain` verifies offline; one changed character in an entry (a letter
/// of `kind`, a digit of `seq`) fails with FAILED and the position; an untrusted key fails.
#[test]
fn r_audit_1_the_chain_verifies_and_one_flipped_character_is_found() {
    let d = tempfile::tempdir().unwrap();
    seed(d.path(), &["hana-1", "ivan-2"]);
    ok(d.path(), &["erase", "hana-1", "--now"]);
    ok(d.path(), &["retention", "sweep", "--at", &days_from_now(730)]);

    let local = documents(&ok(d.path(), &["audit", "verify"])).remove(0);
    let last_seq = local["last_seq"].as_u64().unwrap();
    assert_eq!(local["entries_checked"].as_u64(), Some(last_seq), "{local}");

    let chain_file = d.path().join("chain.jsonl");
    ok(d.path(), &["audit", "chain", "--out", chain_file.to_str().unwrap()]);
    let chain = std::fs::read_to_string(&chain_file).unwrap();
    let lines: Vec<Value> = chain.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(lines[0]["last_seq"].as_u64(), Some(last_seq));
    let kinds: BTreeSet<&str> =
        lines.iter().filter(|l| l["type"] == "entry").map(|l| l["kind"].as_str().unwrap()).collect();
    for kind in ["request_received", "erasure", "request_updated", "key_rotation", "retention_shred"] {
        assert!(kinds.contains(kind), "no {kind} entry in {kinds:?}");
    }
    assert!(!chain.contains("hana-1") && !chain.contains("ivan-2"), "an identifier in the chain");

    let offline = documents(&ok(d.path(), &["audit", "verify", "--file", chain_file.to_str().unwrap()])).remove(0);
    assert_eq!(offline["entries_checked"].as_u64(), Some(last_seq), "{offline}");
    assert_eq!(offline["unsigned_tail"], 0, "the export ends on a checkpoint: {offline}");
    assert!(offline["checkpoints_checked"].as_u64().unwrap() >= 1, "{offline}");

    // Changes of one character in an entry line: the verifier names the entry and the line.
    let entry_line = |kind: &str| {
        let n = lines.iter().position(|l| l["type"] == "entry" && l["kind"] == kind).unwrap();
        (n, lines[n]["seq"].as_u64().unwrap())
    };
    let (erasure_line, erasure_seq) = entry_line("erasure");
    let (rotation_line, rotation_seq) = entry_line("key_rotation");
    let tamperings = [
        (erasure_line, "\"kind\":\"erasure\"".to_owned(), "\"kind\":\"erasurE\"".to_owned(), erasure_seq),
        (rotation_line, format!("\"seq\":{rotation_seq},"), format!("\"seq\":{},", rotation_seq + 1), rotation_seq),
    ];
    for (n, from, to, seq) in tamperings {
        let mut tampered: Vec<String> = chain.lines().map(str::to_owned).collect();
        assert!(tampered[n].contains(&from), "{}", tampered[n]);
        tampered[n] = tampered[n].replacen(&from, &to, 1);
        let file = d.path().join("tampered.jsonl");
        std::fs::write(&file, tampered.join("\n") + "\n").unwrap();
        let o = lethe(d.path(), &["audit", "verify", "--file", file.to_str().unwrap()]);
        assert!(!o.status.success(), "{from} -> {to} went unnoticed: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with("FAILED"), "{out}");
        assert!(out.contains(&format!("seq {seq}:")) && out.contains(&format!("line {}:", n + 1)), "{out}");
    }

    // A key this data directory does not use is not trusted in place of its own.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let o = lethe(
        d.path(),
        &["audit", "verify", "--file", chain_file.to_str().unwrap(), "--public-key", &hex::encode(stranger.as_bytes())],
    );
    assert!(!o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("FAILED") && out.contains("not trusted"), "{}", text(&o));

    // The data directory's own chain is still intact.
    assert!(lethe(d.path(), &["audit", "verify"]).status.success());
}

/// R-AUDIT-1: an exported chain whose checkpoint is stripped and whose tail is cut off is refused by
/// `lethe audit verify --file`: hashes alone are no proof, since anyone can recompute them, so an
/// exported chain must end on a signed checkpoint.
#[test]
fn r_audit_1_a_chain_stripped_of_its_checkpoint_and_tail_is_refused() {
    let d = tempfile::tempdir().unwrap();
    for id in ["jo-1", "kim-2"] {
        ok(d.path(), &["erase", id]);
    }
    let chain = ok(d.path(), &["audit", "chain"]);
    let lines: Vec<&str> = chain.lines().collect();
    let header: Value = serde_json::from_str(lines[0]).unwrap();
    let last = header["last_seq"].as_u64().unwrap();
    assert!(lines.last().unwrap().contains("\"type\":\"checkpoint\""), "{chain}");
    // Drop the last entry and the checkpoint, and say so in the (unsigned) header.
    let mut cut: Vec<String> = lines[..lines.len() - 2].iter().map(|l| (*l).to_owned()).collect();
    cut[0] = cut[0].replacen(&format!("\"last_seq\":{last}"), &format!("\"last_seq\":{}", last - 1), 1);
    let file = d.path().join("cut.jsonl");
    std::fs::write(&file, cut.join("\n") + "\n").unwrap();
    let o = lethe(d.path(), &["audit", "verify", "--file", file.to_str().unwrap()]);
    assert!(!o.status.success(), "a chain with no signature verified: {}", text(&o));
}

/// R-ROPA-1: `lethe audit export --format csv --out F` writes the header `record,time,id,subject_digest,
/// detail` and one `processing_activity` row per purpose of the policies, beside the consent record
/// (named by digest, with the notice's content hash); `--format jsonl` gives one JSON object per line
/// on standard output; an unknown format is an error that writes nothing.
#[test]
fn r_ropa_1_audit_export_in_csv_and_jsonl() {
    let d = tempfile::tempdir().unwrap();
    let pseudonym = seed(d.path(), &["lena-4410"]).remove(0);
    let policies = lethe_policy::Policies::load(Path::new(common::POLICIES)).unwrap();
    let purposes: BTreeSet<String> = policies.purposes().map(|p| p.id().as_str().to_owned()).collect();
    let notice_hash = policies.notices().next().unwrap().content_hash().to_owned();
    assert_eq!(purposes.len(), 4, "{purposes:?}");

    let csv_file = d.path().join("export.csv");
    ok(d.path(), &["audit", "export", "--format", "csv", "--out", csv_file.to_str().unwrap()]);
    let csv_text = std::fs::read_to_string(&csv_file).unwrap();
    assert!(csv_text.starts_with("record,time,id,subject_digest,detail\n"), "{csv_text}");
    assert!(!csv_text.contains("lena-4410") && !csv_text.contains(&pseudonym), "a subject named in the export");
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("valid CSV");
    assert!(rows.iter().all(|r| r.len() == 5), "{csv_text}");
    let activities: BTreeSet<String> =
        rows.iter().filter(|r| &r[0] == "processing_activity").map(|r| r[2].to_owned()).collect();
    assert_eq!(activities, purposes, "{csv_text}");
    assert_eq!(rows.iter().filter(|r| &r[0] == "processing_activity").count(), purposes.len());
    let consent = rows.iter().find(|r| &r[0] == "consent").expect("the consent record");
    assert_eq!(&consent[3], digest_of(&pseudonym));
    let detail: Value = serde_json::from_str(&consent[4]).unwrap();
    assert_eq!(detail["notice"]["content_hash"], notice_hash, "{detail}");

    let jsonl = ok(d.path(), &["audit", "export", "--format", "jsonl"]);
    let lines: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert!(lines.iter().all(|l| l.is_object() && l["record"].is_string()), "{jsonl}");
    assert_eq!(lines[0]["record"], "header", "{jsonl}");
    let activities: BTreeSet<&str> =
        lines.iter().filter(|l| l["record"] == "processing_activity").map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(activities, purposes.iter().map(String::as_str).collect(), "{jsonl}");
    assert_eq!(lines.iter().filter(|l| l["record"] == "consent").count(), 1, "{jsonl}");

    let xml = d.path().join("export.xml");
    let o = lethe(d.path(), &["audit", "export", "--format", "xml", "--out", xml.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown format `xml`"), "{}", text(&o));
    assert!(!xml.exists(), "a refused export created its file");
}

/// R-DSR-1: `lethe requests list --all` prints one JSON line per request; the erasure made by `lethe
/// erase` is there, completed, naming its subject by digest; without `--all` completed requests are left
/// out.
#[test]
fn requests_list_shows_the_completed_erasure() {
    let d = tempfile::tempdir().unwrap();
    let pseudonym = seed(d.path(), &["mona-3307"]).remove(0);
    let o = lethe(d.path(), &["erase", "mona-3307"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("after the next `lethe keys rotate`"), "{}", text(&o));
    let cert = documents(&String::from_utf8(o.stdout).unwrap()).remove(0);

    let out = ok(d.path(), &["requests", "list", "--all"]);
    let requests: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("one JSON line")).collect();
    assert_eq!(requests.len(), 1, "{out}");
    let r = &requests[0];
    assert_eq!((r["kind"].as_str(), r["status"].as_str()), (Some("erasure"), Some("completed")), "{r}");
    assert_eq!(r["id"], cert["request_id"], "{r}");
    assert_eq!(r["subject_digest"], digest_of(&pseudonym), "{r}");
    assert_eq!(r["outcome"]["outcome"], "completed", "{r}");
    assert!(!out.contains("mona-3307") && !out.contains(&pseudonym), "{out}");

    assert_eq!(ok(d.path(), &["requests", "list"]).trim(), "", "a completed request is not open");
}

/// R-TRAIN-1 and R-ERASE-7 through the binary: `lethe train` trains on the consenting subject,
/// `lethe models trained-on` finds it in the live model, and `lethe erase --now` retrains without it.
#[test]
fn r_erase_7_train_then_erase_retrains_without_the_subject() {
    let d = tempfile::tempdir().unwrap();
    seed_likes(d.path(), &["pat-41", "quinn-42"]);
    let report: Value = serde_json::from_str(&ok(d.path(), &["train"])).unwrap();
    assert_eq!(report["subjects"], 2, "{report}");
    let models: Value = serde_json::from_str(&ok(d.path(), &["models", "trained-on", "pat-41"])).unwrap();
    assert_eq!(models["models"].as_array().unwrap().len(), 1);
    let o = lethe(d.path(), &["erase", "pat-41", "--now"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("models retrained without the subject"), "{}", text(&o));
    let models: Value = serde_json::from_str(&ok(d.path(), &["models", "trained-on", "pat-41"])).unwrap();
    assert_eq!(models["models"], json!([]), "the erased subject is in no model any more");
    let list = ok(d.path(), &["models", "list"]);
    let recommenders: Vec<&str> = list.lines().filter(|l| l.contains(r#""name":"recs""#)).collect();
    assert_eq!(recommenders.len(), 2, "{list}");
    assert!(recommenders.iter().any(|l| l.contains("Unlearning")), "{list}");
}

/// Subjects who grant personalization and like two products each, through `lethe serve`.
fn seed_likes(dir: &Path, ids: &[&str]) {
    let server = common::serve(dir, &[("LETHE_MASTER_KEY", MASTER_KEY)]);
    let site = ok(dir, &["token", "issue", "--role", "site", "--site", "shop", "--origin", "https://shop.example"]);
    let site = site.trim();
    let client = reqwest::blocking::Client::new();
    for id in ids {
        let consent = common::banner_consent(id, &["analytics", "personalization"], &[]);
        let r = client.post(format!("{}/v1/consent", server.base)).bearer_auth(site).json(&consent).send().unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
        for (n, product) in ["tent-1", "stove-2"].iter().enumerate() {
            let r = client
                .post(format!("{}/v1/track", server.base))
                .basic_auth(site, Some(""))
                .json(&json!({"anonymousId": id, "event": "Product Liked", "messageId": format!("{id}-like-{n}"),
                    "properties": {"product_id": product}}))
                .send()
                .unwrap();
            let body: Value = r.json().unwrap();
            assert_eq!(body["result"]["status"], "stored", "{body}");
        }
    }
}
