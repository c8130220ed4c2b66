//! R-DSR-1 stored format: a request written by format version 1 keeps decoding, unchanged, in every
//! later build. Never edit `fixtures/request_v1.json`; add a fixture per new version instead.

use lethe_dsr::{
    decode, encode, DenialReason, ExtensionReason, HoldReason, Law, RequestKind, Status, SubjectDigest, FORMAT_V1,
};

use crate::helpers::{gdpr_access_in, step, ts, utc};

const REQUEST_V1: &str = include_str!("fixtures/request_v1.json");

#[test]
fn r_dsr_1_format_v1_fixture_decodes_and_reencodes_identically() {
    let mut bytes = vec![FORMAT_V1];
    bytes.extend_from_slice(REQUEST_V1.as_bytes());
    let mut r = decode(&bytes).unwrap();

    assert_eq!(r.id().to_string(), "01a225bd-c9ab-735b-9493-b68f09d026fb");
    assert_eq!((r.kind(), r.law(), r.status()), (RequestKind::Know, Law::Ccpa, Status::OnHold));
    assert_eq!(*r.subject_digest(), SubjectDigest::of_pseudonym(&[7u8; 32]));
    assert_eq!(utc(r.deadlines().acknowledge_by().unwrap()), "2026-12-08T07:59:59.999999Z");
    assert_eq!(utc(r.due()), "2027-02-19T07:59:59.999999Z");
    assert_eq!(r.extension().unwrap().reason, ExtensionReason::Complexity);
    assert_eq!(r.legal_hold().unwrap().reason, HoldReason::LegalClaims);
    assert_eq!(r.history().len(), 4);
    assert_eq!(r.history()[0].note.as_ref().unwrap().as_str(), "verified by account login");

    let reencoded: serde_json::Value = serde_json::from_slice(&encode(&r).unwrap()[1..]).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(REQUEST_V1).unwrap();
    assert_eq!(reencoded, fixture);

    // The decoded request carries on where it stopped.
    r.release_hold(step(ts("2027-01-20T18:00:00Z"))).unwrap();
    assert_eq!(r.status(), Status::Extended);
    r.complete(step(ts("2027-01-21T18:00:00Z"))).unwrap();
}

#[test]
fn r_dsr_1_outcome_shape() {
    let r = gdpr_access_in(Status::Denied);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["outcome"],
        serde_json::json!({"outcome": "denied", "at": "2026-01-31T11:00:00Z", "reason": DenialReason::Duplicate.as_str()})
    );
    let r = gdpr_access_in(Status::Completed);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["outcome"], serde_json::json!({"outcome": "completed", "at": "2026-01-31T13:00:00Z"}));
}
