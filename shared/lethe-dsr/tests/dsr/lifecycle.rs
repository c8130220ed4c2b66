//! R-DSR-1 lifecycle: which commands each status allows, and the rules on denial reasons, holds,
//! verification and time order.

use lethe_dsr::{
    ActorRole, DenialReason, DsrError, ExtensionReason, HoldReason, Law, Note, Outcome, Request, RequestKind, Status,
    Step,
};

use crate::helpers::{drive, gdpr_access_in, step, ts};

const COMMANDS: [&str; 7] = ["verify", "start", "extend", "complete", "deny", "place_hold", "release_hold"];

/// R-DSR-1: for a GDPR access request in each status, the status each command leads to or the error
/// code it is refused with (`on_hold` was placed from `in_progress`).
const TABLE: &[(Status, [&str; 7])] = &[
    (
        Status::Received,
        [
            "verified",
            "verification_required",
            "illegal_transition",
            "illegal_transition",
            "denied",
            "on_hold",
            "illegal_transition",
        ],
    ),
    (
        Status::Verified,
        [
            "illegal_transition",
            "in_progress",
            "illegal_transition",
            "illegal_transition",
            "denied",
            "on_hold",
            "illegal_transition",
        ],
    ),
    (
        Status::InProgress,
        [
            "illegal_transition",
            "illegal_transition",
            "extended",
            "completed",
            "denied",
            "on_hold",
            "illegal_transition",
        ],
    ),
    (
        Status::Extended,
        [
            "illegal_transition",
            "illegal_transition",
            "already_extended",
            "completed",
            "denied",
            "on_hold",
            "illegal_transition",
        ],
    ),
    (
        Status::OnHold,
        [
            "illegal_transition",
            "illegal_transition",
            "illegal_transition",
            "illegal_transition",
            "denied",
            "illegal_transition",
            "in_progress",
        ],
    ),
    (Status::Completed, ["illegal_transition"; 7]),
    (Status::Denied, ["illegal_transition"; 7]),
];

fn run(r: &mut Request, command: &str, at: Step) -> Result<(), DsrError> {
    match command {
        "verify" => r.verify(at),
        "start" => r.start(at),
        "extend" => r.extend(at, ExtensionReason::Complexity),
        "complete" => r.complete(at),
        "deny" => r.deny(at, DenialReason::Duplicate),
        "place_hold" => r.place_hold(at, HoldReason::LegalClaims),
        "release_hold" => r.release_hold(at),
        other => panic!("unknown command {other}"),
    }
}

#[test]
fn r_dsr_1_transition_table() {
    for (status, expected) in TABLE {
        for (command, want) in COMMANDS.iter().zip(expected) {
            let mut r = gdpr_access_in(*status);
            let before = r.clone();
            let got = match run(&mut r, command, step(ts("2026-02-01T12:00:00Z"))) {
                Ok(()) => r.status().as_str().to_owned(),
                Err(e) => {
                    assert_eq!(r, before, "a refused {command} from {status} changed the request");
                    e.code().to_owned()
                }
            };
            assert_eq!(got, *want, "{command} from {status}");
        }
    }
}

#[test]
fn r_dsr_1_illegal_transition_names_status_and_command() {
    let mut r = gdpr_access_in(Status::Completed);
    let err = r.start(step(ts("2026-02-01T12:00:00Z"))).unwrap_err();
    assert_eq!(err, DsrError::IllegalTransition { from: Status::Completed, command: lethe_dsr::Command::Start });
    assert_eq!(err.to_string(), "cannot start a request that is completed");
    assert_eq!(err.http_status(), 409);
}

#[test]
fn r_dsr_1_erasure_cannot_complete_under_legal_hold() {
    let mut r = drive(RequestKind::Erasure, Status::OnHold);
    assert_eq!(r.legal_hold().unwrap().reason, HoldReason::LegalClaims);
    assert_eq!(r.complete(step(ts("2026-02-01T12:00:00Z"))), Err(DsrError::ErasureUnderLegalHold));
    r.release_hold(step(ts("2026-02-02T12:00:00Z"))).unwrap();
    assert_eq!(r.status(), Status::InProgress);
    assert!(r.legal_hold().is_none());
    r.complete(step(ts("2026-02-03T12:00:00Z"))).unwrap();
    assert_eq!(r.outcome(), Some(Outcome::Completed { at: ts("2026-02-03T12:00:00Z") }));
}

#[test]
fn r_dsr_1_hold_returns_to_the_status_it_left() {
    let mut r = gdpr_access_in(Status::Extended);
    r.place_hold(step(ts("2026-02-01T12:00:00Z")), HoldReason::AuthorityOrder).unwrap();
    assert_eq!(r.legal_hold().unwrap().resumes_to, Status::Extended);
    r.release_hold(step(ts("2026-02-01T13:00:00Z"))).unwrap();
    assert_eq!(r.status(), Status::Extended);
    // A hold does not stop the clock.
    let mut held = gdpr_access_in(Status::OnHold);
    assert!(held.is_overdue(ts("2026-03-01T00:00:00Z")));
    held.deny(step(ts("2026-03-01T00:00:00Z")), DenialReason::ManifestlyUnfounded).unwrap();
    assert!(!held.is_overdue(ts("2026-03-01T00:00:00Z")));
}

#[test]
fn r_dsr_1_denial_reasons_must_fit_the_request() {
    let at = step(ts("2026-02-01T12:00:00Z"));
    let not_applicable = |reason| Err(DsrError::DenialReasonNotApplicable { reason });
    // Erasure-only reasons on an access request.
    for reason in [DenialReason::LegalObligation, DenialReason::LegalClaims, DenialReason::LegalHold] {
        assert_eq!(gdpr_access_in(Status::InProgress).deny(at.clone(), reason), not_applicable(reason));
    }
    // legal_hold needs a hold; legal_claims does not.
    assert_eq!(
        drive(RequestKind::Erasure, Status::InProgress).deny(at.clone(), DenialReason::LegalHold),
        not_applicable(DenialReason::LegalHold)
    );
    drive(RequestKind::Erasure, Status::InProgress).deny(at.clone(), DenialReason::LegalClaims).unwrap();
    drive(RequestKind::Erasure, Status::InProgress).deny(at.clone(), DenialReason::LegalObligation).unwrap();
    let mut held = drive(RequestKind::Erasure, Status::OnHold);
    held.deny(at.clone(), DenialReason::LegalHold).unwrap();
    assert_eq!(
        held.outcome(),
        Some(Outcome::Denied { at: ts("2026-02-01T12:00:00Z"), reason: DenialReason::LegalHold })
    );
    assert_eq!(held.history().last().unwrap().reason, Some(DenialReason::LegalHold));
    // Identity: only before verification succeeded.
    assert_eq!(
        gdpr_access_in(Status::Verified).deny(at.clone(), DenialReason::IdentityNotVerified),
        not_applicable(DenialReason::IdentityNotVerified)
    );
    gdpr_access_in(Status::Received).deny(at, DenialReason::IdentityNotVerified).unwrap();
}

#[test]
fn r_dsr_1_denial_always_carries_a_reason() {
    // `deny` takes a `DenialReason`, not an `Option`: a denial without reason cannot be expressed. Every
    // denied request's outcome and last transition carry it.
    let r = gdpr_access_in(Status::Denied);
    assert!(matches!(r.outcome(), Some(Outcome::Denied { reason: DenialReason::Duplicate, .. })));
    assert_eq!(r.history().last().unwrap().reason, Some(DenialReason::Duplicate));
}

#[test]
fn r_dsr_1_commands_refuse_times_before_the_last_event() {
    let mut r = gdpr_access_in(Status::Verified); // verified at 2026-01-31T11:00Z
    assert_eq!(r.start(step(ts("2026-01-31T10:59:59Z"))), Err(DsrError::TimeWentBackwards));
    assert_eq!(r.acknowledge(ts("2026-01-31T08:00:00Z")), Err(DsrError::TimeWentBackwards));
    r.start(step(ts("2026-01-31T11:00:00Z"))).unwrap();
}

#[test]
fn r_dsr_1_history_records_who_when_and_notes() {
    let mut r = crate::helpers::received(
        RequestKind::Rectification,
        Law::Gdpr,
        "2026-01-31T09:00:00Z",
        &crate::helpers::berlin(),
    );
    let dpo = ActorRole::parse("dpo").unwrap();
    r.verify(
        Step::new(ts("2026-02-01T09:00:00Z"), dpo.clone()).with_note(Note::parse("id checked via account").unwrap()),
    )
    .unwrap();
    r.start(Step::new(ts("2026-02-02T09:00:00Z"), ActorRole::parse("system").unwrap())).unwrap();
    let h = r.history();
    assert_eq!(h.len(), 2);
    assert_eq!((h[0].from, h[0].to, h[0].at), (Status::Received, Status::Verified, ts("2026-02-01T09:00:00Z")));
    assert_eq!(h[0].actor_role, dpo);
    assert_eq!(h[0].note.as_ref().unwrap().as_str(), "id checked via account");
    assert_eq!((h[1].from, h[1].to, h[1].actor_role.as_str()), (Status::Verified, Status::InProgress, "system"));
    assert!(r.was_verified());
}

#[test]
fn r_dsr_1_json_shape_uses_rfc3339_and_codes() {
    let r = gdpr_access_in(Status::InProgress);
    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["received_at"], "2026-01-31T09:00:00Z");
    assert_eq!(json["deadlines"]["complete_by"], "2026-02-28T22:59:59.999999Z");
    assert_eq!(json["deadlines"]["time_zone"], "Europe/Berlin");
    assert_eq!(json["status"], "in_progress");
    assert_eq!(json["kind"], "access");
    assert_eq!(json["law"], "gdpr");
    assert_eq!(json["verification"], "required");
    assert_eq!(json["history"][0]["actor_role"], "privacy_officer");
    assert_eq!(json["subject_digest"].as_str().unwrap().len(), 64);
    let back: Request = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn r_dsr_1_decoding_checks_lifecycle_invariants() {
    let r = gdpr_access_in(Status::InProgress);
    let mut json: serde_json::Value = serde_json::to_value(&r).unwrap();
    json["status"] = "completed".into(); // no outcome, history disagrees
    assert!(serde_json::from_value::<Request>(json.clone()).is_err());
    json["status"] = "in_progress".into();
    json["verification"] = "not_required".into();
    assert!(serde_json::from_value::<Request>(json.clone()).is_err());
    json["verification"] = "required".into();
    json["kind"] = "know".into(); // not a GDPR right
    assert!(serde_json::from_value::<Request>(json).is_err());
}
