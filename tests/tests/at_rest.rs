//! Invariant 1 (no personal data at rest in plaintext) and invariant 4 / R-PSEUDO-1 (external
//! identifiers never pass the collection boundary): 1,000 distinct canary strings, used as subject
//! ids and inside payloads, appear in no byte of any file of the data directory, whatever sled keeps.

mod common;

use lethe_domain::{Pseudonym, SubjectId};
use lethe_eventlog::{AppendRequest, EventStore};

const SUBJECTS: usize = 250;
/// Each subject carries one canary in its id and three in its payloads: 1,000 canaries.
const PAYLOAD_CANARIES: usize = 3;

#[test]
fn the_scanner_finds_needles_of_several_lengths_at_every_offset() {
    let mut hits = common::find_in(b"xxabcabcdyyab", &[b"abc", b"abcd", b"ab", b"zz"]);
    hits.sort_unstable();
    assert_eq!(hits, vec![(0, 2), (0, 5), (1, 5), (2, 2), (2, 5), (2, 11)]);
}

#[test]
fn no_canary_from_subject_ids_or_payloads_is_stored_in_plaintext() {
    let dir = common::temp_dir();
    let canary = || format!("canary-{}", common::random_hex(24));
    let mut canaries: Vec<String> = Vec::new();
    let mut pseudonyms: Vec<Pseudonym> = Vec::new();
    {
        let log = common::open(dir.path());
        for i in 0..SUBJECTS {
            let id = canary();
            let subject = log.pseudonymize(&SubjectId::parse(&id).expect("valid id"));
            let events: Vec<_> = (0..PAYLOAD_CANARIES)
                .map(|_| {
                    let value = canary();
                    let payload = format!(r#"{{"email":"{value}@example.com","n":{i}}}"#);
                    canaries.push(value);
                    common::event(payload)
                })
                .collect();
            canaries.push(id);
            log.append(AppendRequest { subject, expected: lethe_domain::ExpectedVersion::NoStream, events })
                .expect("append");
            pseudonyms.push(subject);
        }
        // Exercise every writer of the data directory: an erasure (fence, key removal) and a rotation
        // (key re-wrapping, epoch files).
        log.erase(&pseudonyms[0]).expect("erase");
        log.rotate_keys().expect("rotate");
        let report = log.verify().expect("verify");
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.decrypted as usize, (SUBJECTS - 1) * PAYLOAD_CANARIES);
    }
    assert_eq!(canaries.len(), 1_000);
    assert_eq!(canaries.iter().collect::<std::collections::BTreeSet<_>>().len(), 1_000, "canaries are distinct");

    // Positive control: a plain file with a canary of its own shows that the scan reads every file.
    let control = canary();
    let control_file = dir.path().join("log").join("positive-control.txt");
    std::fs::write(&control_file, format!("plain text: {control}\n")).expect("write control file");

    let mut needles: Vec<&[u8]> = canaries.iter().map(String::as_bytes).collect();
    needles.push(control.as_bytes());
    needles.push(b"canary-"); // any fragment of any canary
    let hits = common::scan_dir(dir.path(), &needles);
    let control_needle = canaries.len();
    let prefix_needle = canaries.len() + 1;
    let leaks: Vec<_> = hits.iter().filter(|h| h.file != control_file).collect();
    assert!(leaks.is_empty(), "canaries found in the data directory: {leaks:?}");
    let mut found: Vec<usize> = hits.iter().map(|h| h.needle).collect();
    found.sort_unstable();
    assert_eq!(found, vec![control_needle, prefix_needle], "the scanner must find the control canary");

    // Sanity: what may be stored in plaintext, the pseudonyms, is found by the same scan.
    let pseudonym_needles: Vec<&[u8]> = pseudonyms.iter().map(|p| &p.as_bytes()[..]).collect();
    let hits = common::scan_dir(dir.path(), &pseudonym_needles);
    let seen: std::collections::BTreeSet<usize> = hits.iter().map(|h| h.needle).collect();
    assert_eq!(seen.len(), SUBJECTS, "every subject's pseudonym is in the log's files");
    let files = common::files_under(dir.path());
    assert!(files.iter().any(|f| f.starts_with(dir.path().join("log"))), "the log has files: {files:?}");
    assert!(files.iter().any(|f| f.starts_with(dir.path().join("keys"))), "the key store has files: {files:?}");
}
