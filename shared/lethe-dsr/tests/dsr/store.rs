//! R-DSR-1 storage: requests survive in a sled tree with their state, timestamps and deadlines; updates
//! are atomic; listing filters and sorts by due date; damaged bytes are errors, never panics.

use std::sync::Arc;

use lethe_dsr::{
    decode, encode, Channel, DsrError, HoldReason, Law, ListFilter, Request, RequestId, RequestKind, RequestStore,
    Status, FORMAT_V1,
};

use crate::helpers::{berlin, california, gdpr_access_in, step, subject, ts};

fn temp_store() -> RequestStore {
    let db = sled::Config::new().temporary(true).open().unwrap();
    RequestStore::new(db.open_tree("dsr").unwrap())
}

fn request(kind: RequestKind, law: Law, seed: u8, at: &str) -> Request {
    let policy = if law == Law::Gdpr { berlin() } else { california(&[]) };
    Request::receive(kind, law, Channel::WebForm, subject(seed), ts(at), &policy).unwrap()
}

#[test]
fn r_dsr_1_round_trip_and_duplicate_insert() {
    let store = temp_store();
    let r = gdpr_access_in(Status::Extended);
    store.insert(&r).unwrap();
    assert_eq!(store.get(r.id()).unwrap(), Some(r.clone()));
    assert_eq!(store.insert(&r), Err(DsrError::AlreadyExists));
    assert_eq!(store.get(RequestId::generate()).unwrap(), None);
}

#[test]
fn r_dsr_1_update_is_read_modify_write() {
    let store = temp_store();
    let r = gdpr_access_in(Status::Received);
    store.insert(&r).unwrap();
    let updated = store.update(r.id(), |r| r.verify(step(ts("2026-02-01T09:00:00Z")))).unwrap();
    assert_eq!(updated.status(), Status::Verified);
    assert_eq!(store.get(r.id()).unwrap().unwrap(), updated);
    // A refused command writes nothing.
    let err = store.update(r.id(), |r| r.complete(step(ts("2026-02-02T09:00:00Z")))).unwrap_err();
    assert_eq!(err.code(), "illegal_transition");
    assert_eq!(store.get(r.id()).unwrap().unwrap(), updated);
    // Unknown ids and swapped records are refused.
    assert_eq!(store.update(RequestId::generate(), |_| Ok(())).unwrap_err(), DsrError::NotFound);
    let other = gdpr_access_in(Status::Received);
    let swap = |r: &mut Request| {
        *r = other.clone();
        Ok(())
    };
    assert_eq!(store.update(r.id(), swap).unwrap_err(), DsrError::RecordMismatch);
}

#[test]
fn r_dsr_1_concurrent_updates_apply_once() {
    let store = temp_store();
    let r = gdpr_access_in(Status::Verified);
    store.insert(&r).unwrap();
    let id = r.id();
    let store = Arc::new(store);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.update(id, |r| r.start(step(ts("2026-02-01T09:00:00Z")))).is_ok())
        })
        .collect();
    let wins = handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count();
    assert_eq!(wins, 1);
    assert_eq!(store.get(id).unwrap().unwrap().history().len(), 2);
}

#[test]
fn r_dsr_1_list_filters_and_sorts_by_due_date() {
    let store = temp_store();
    // GDPR access due 28 Feb; CCPA know due 45 days after 2 Jan = 16 Feb; CCPA opt-out due 15 business
    // days after 5 Jan = 26 Jan; GDPR erasure of another subject due 10 Feb.
    let gdpr = request(RequestKind::Access, Law::Gdpr, 1, "2026-01-31T09:00:00Z");
    let know = request(RequestKind::Know, Law::Ccpa, 1, "2026-01-02T20:00:00Z");
    let opt_out = request(RequestKind::OptOutSaleShare, Law::Ccpa, 1, "2026-01-05T20:00:00Z");
    let erasure = request(RequestKind::Erasure, Law::Gdpr, 2, "2026-01-10T09:00:00Z");
    for r in [&gdpr, &know, &opt_out, &erasure] {
        store.insert(r).unwrap();
    }
    store.update(opt_out.id(), |r| r.start(step(ts("2026-01-06T09:00:00Z")))).unwrap();
    store.update(opt_out.id(), |r| r.complete(step(ts("2026-01-06T10:00:00Z")))).unwrap();

    let ids = |filter: ListFilter| store.list(&filter).unwrap().iter().map(Request::id).collect::<Vec<_>>();
    assert_eq!(ids(ListFilter::all()), vec![opt_out.id(), erasure.id(), know.id(), gdpr.id()]);
    assert_eq!(ids(ListFilter::all().open()), vec![erasure.id(), know.id(), gdpr.id()]);
    assert_eq!(ids(ListFilter::all().statuses([Status::Completed])), vec![opt_out.id()]);
    assert_eq!(ids(ListFilter::all().law(Law::Gdpr)), vec![erasure.id(), gdpr.id()]);
    assert_eq!(ids(ListFilter::all().kind(RequestKind::Know)), vec![know.id()]);
    assert_eq!(ids(ListFilter::all().subject(subject(1)).law(Law::Ccpa)), vec![opt_out.id(), know.id()]);
    assert_eq!(ids(ListFilter::all().subject(subject(3))), vec![]);

    // Overdue on 20 Feb: the erasure (10 Feb) and the know request (16 Feb); the completed opt-out never.
    assert_eq!(ids(ListFilter::all().overdue_at(ts("2026-02-20T12:00:00Z"))), vec![erasure.id(), know.id()]);
    // A hold does not hide an overdue request.
    store.update(erasure.id(), |r| r.place_hold(step(ts("2026-02-20T12:00:00Z")), HoldReason::LegalClaims)).unwrap();
    assert_eq!(ids(ListFilter::all().overdue_at(ts("2026-02-20T12:00:00Z")).law(Law::Gdpr)), vec![erasure.id()]);

    let by_subject = store.by_subject(&subject(1)).unwrap();
    let mut expected = vec![gdpr.id(), know.id(), opt_out.id()];
    expected.sort();
    assert_eq!(by_subject.iter().map(Request::id).collect::<Vec<_>>(), expected);
}

#[test]
fn r_dsr_1_reopened_database_keeps_requests() {
    let dir = tempfile::tempdir().unwrap();
    let r = gdpr_access_in(Status::OnHold);
    {
        let db = sled::open(dir.path()).unwrap();
        let store = RequestStore::new(db.open_tree("dsr").unwrap());
        store.insert(&r).unwrap();
        store.flush().unwrap();
    }
    // sled lets go of its file lock a moment after the drop, from a background thread.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let db = loop {
        match sled::open(dir.path()) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    let store = RequestStore::new(db.open_tree("dsr").unwrap());
    assert_eq!(store.get(r.id()).unwrap(), Some(r.clone()));
    assert_eq!(store.by_subject(r.subject_digest()).unwrap(), vec![r]);
}

#[test]
fn r_dsr_1_corrupt_bytes_are_errors_not_panics() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree("dsr").unwrap();
    let store = RequestStore::new(tree.clone());
    let r = gdpr_access_in(Status::InProgress);
    store.insert(&r).unwrap();
    let key = [&[b'r'][..], r.id().as_bytes()].concat();
    let good = encode(&r).unwrap();
    assert_eq!(good[0], FORMAT_V1);
    assert_eq!(decode(&good).unwrap(), r);

    let mut wrong_version = good.clone();
    wrong_version[0] = 9;
    let mut not_a_request = vec![FORMAT_V1];
    not_a_request.extend_from_slice(br#"{"id":"nope"}"#);
    let mut breaks_invariants: serde_json::Value = serde_json::to_value(&r).unwrap();
    breaks_invariants["status"] = "completed".into();
    let mut invariant_bytes = vec![FORMAT_V1];
    invariant_bytes.extend(serde_json::to_vec(&breaks_invariants).unwrap());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "corrupt_record"),
        (wrong_version, "unsupported_format_version"),
        (good[..good.len() / 2].to_vec(), "corrupt_record"),
        (vec![FORMAT_V1, 0xff, 0xfe, 0x00], "corrupt_record"),
        (not_a_request, "corrupt_record"),
        (invariant_bytes, "corrupt_record"),
    ];
    for (bytes, code) in cases {
        tree.insert(key.as_slice(), bytes).unwrap();
        assert_eq!(store.get(r.id()).unwrap_err().code(), code);
        assert_eq!(store.update(r.id(), |_| Ok(())).unwrap_err().code(), code);
        assert_eq!(store.list(&ListFilter::all()).unwrap_err().code(), code);
        assert_eq!(store.by_subject(r.subject_digest()).unwrap_err().code(), code);
    }

    // A valid record under another request's key.
    let other = gdpr_access_in(Status::Received);
    tree.insert(key.as_slice(), encode(&other).unwrap()).unwrap();
    assert_eq!(store.get(r.id()).unwrap_err(), DsrError::Corrupt("record id does not match its key"));

    // A malformed index key.
    tree.insert(key.as_slice(), good).unwrap();
    let mut bad_index = vec![b's'];
    bad_index.extend_from_slice(r.subject_digest().as_bytes());
    bad_index.extend_from_slice(b"short");
    tree.insert(bad_index, &[][..]).unwrap();
    assert_eq!(store.by_subject(r.subject_digest()).unwrap_err().code(), "corrupt_record");
}
