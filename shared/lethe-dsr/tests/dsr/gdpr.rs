//! R-DSR-1, GDPR: one month of receipt (Art. 12(3)), counted on the controller's local calendar and
//! clamped to the end of a shorter month, due at the end of the local day; +2 months once.

use lethe_dsr::{DeadlinePolicy, Deadlines, DsrError, ExtensionReason, Law, RequestKind, Verification};

use crate::helpers::{berlin, day, received, step, ts, utc};

fn complete_by(received_at: &str, policy: &DeadlinePolicy) -> String {
    utc(Deadlines::compute(RequestKind::Access, Law::Gdpr, ts(received_at), policy).unwrap().complete_by())
}

#[test]
fn r_dsr_1_one_month_from_jan_31_clamps_to_feb_28() {
    // 31 Jan 2026, 10:00 Berlin → 28 Feb 2026 (a Saturday: no roll-over to Monday), 23:59:59.999999 CET.
    assert_eq!(complete_by("2026-01-31T09:00:00Z", &berlin()), "2026-02-28T22:59:59.999999Z");
}

#[test]
fn r_dsr_1_one_month_in_a_leap_year_ends_feb_29() {
    assert_eq!(complete_by("2028-01-31T09:00:00Z", &berlin()), "2028-02-29T22:59:59.999999Z");
    assert_eq!(complete_by("2028-01-29T09:00:00Z", &berlin()), "2028-02-29T22:59:59.999999Z");
    assert_eq!(complete_by("2027-01-29T09:00:00Z", &berlin()), "2027-02-28T22:59:59.999999Z");
}

#[test]
fn r_dsr_1_receipt_date_is_the_controllers_local_date() {
    // 22:30 UTC on 31 March is 00:30 on 1 April in Berlin: due 1 May, end of day Berlin (CEST).
    assert_eq!(complete_by("2026-03-31T22:30:00Z", &berlin()), "2026-05-01T21:59:59.999999Z");
    // The same instant for a controller on UTC is 31 March: due 30 April (clamped), end of day UTC.
    let utc_policy = DeadlinePolicy::new("UTC", []).unwrap();
    assert_eq!(complete_by("2026-03-31T22:30:00Z", &utc_policy), "2026-04-30T23:59:59.999999Z");
    // 23:30 local on 15 June is still 15 June in Berlin.
    assert_eq!(complete_by("2026-06-15T21:30:00Z", &berlin()), "2026-07-15T21:59:59.999999Z");
}

#[test]
fn r_dsr_1_due_on_the_day_clocks_change_in_berlin() {
    // 25 Oct 2026 Berlin falls back from CEST to CET: the day ends at 23:59:59.999999+01:00.
    assert_eq!(complete_by("2026-09-25T08:00:00Z", &berlin()), "2026-10-25T22:59:59.999999Z");
    // 28 Mar 2027 Berlin springs forward to CEST: the day ends at 23:59:59.999999+02:00.
    assert_eq!(complete_by("2027-02-28T08:00:00Z", &berlin()), "2027-03-28T21:59:59.999999Z");
}

#[test]
fn r_dsr_1_holidays_do_not_move_gdpr_deadlines() {
    let with_holidays = DeadlinePolicy::new("Europe/Berlin", [day(2026, 5, 1)]).unwrap();
    assert_eq!(complete_by("2026-03-31T22:30:00Z", &with_holidays), "2026-05-01T21:59:59.999999Z");
}

#[test]
fn r_dsr_1_gdpr_has_no_acknowledgement_deadline_and_takes_verification() {
    let r = received(RequestKind::Erasure, Law::Gdpr, "2026-01-31T09:00:00Z", &berlin());
    assert_eq!(r.deadlines().acknowledge_by(), None);
    assert_eq!(r.deadlines().extended_complete_by(), None);
    assert_eq!(r.verification(), Verification::Required);
    assert_eq!(r.deadlines().time_zone().name(), "Europe/Berlin");
}

#[test]
fn r_dsr_1_extension_adds_two_months_to_the_original_due_date() {
    // Due 28 Feb → extended to 28 Apr (not receipt + 3 months = 30 Apr), end of day CEST.
    let mut r = received(RequestKind::Access, Law::Gdpr, "2026-01-31T09:00:00Z", &berlin());
    r.verify(step(ts("2026-02-01T09:00:00Z"))).unwrap();
    r.start(step(ts("2026-02-02T09:00:00Z"))).unwrap();
    r.extend(step(ts("2026-02-20T09:00:00Z")), ExtensionReason::NumberOfRequests).unwrap();
    assert_eq!(utc(r.deadlines().complete_by()), "2026-02-28T22:59:59.999999Z");
    assert_eq!(utc(r.deadlines().extended_complete_by().unwrap()), "2026-04-28T21:59:59.999999Z");
    assert_eq!(r.due(), r.deadlines().extended_complete_by().unwrap());
    // Extended once only.
    assert_eq!(r.extend(step(ts("2026-02-21T09:00:00Z")), ExtensionReason::Complexity), Err(DsrError::AlreadyExtended));

    // Due 30 Apr (from 31 Mar receipt on UTC) → 30 Jun.
    let utc_policy = DeadlinePolicy::new("UTC", []).unwrap();
    let mut r = received(RequestKind::Portability, Law::Gdpr, "2026-03-31T12:00:00Z", &utc_policy);
    r.verify(step(ts("2026-04-01T09:00:00Z"))).unwrap();
    r.start(step(ts("2026-04-01T10:00:00Z"))).unwrap();
    r.extend(step(ts("2026-04-30T23:59:59Z")), ExtensionReason::Complexity).unwrap();
    assert_eq!(utc(r.due()), "2026-06-30T23:59:59.999999Z");
}

#[test]
fn r_dsr_1_extension_notice_is_recorded_once() {
    let mut r = received(RequestKind::Access, Law::Gdpr, "2026-01-31T09:00:00Z", &berlin());
    assert_eq!(r.record_extension_notice(ts("2026-02-01T09:00:00Z")), Err(DsrError::NoExtension));
    r.verify(step(ts("2026-02-01T09:00:00Z"))).unwrap();
    r.start(step(ts("2026-02-02T09:00:00Z"))).unwrap();
    r.extend(step(ts("2026-02-20T09:00:00Z")), ExtensionReason::Complexity).unwrap();
    assert_eq!(r.record_extension_notice(ts("2026-02-19T09:00:00Z")), Err(DsrError::TimeWentBackwards));
    r.record_extension_notice(ts("2026-02-20T10:00:00Z")).unwrap();
    assert_eq!(r.extension().unwrap().notice_sent_at, Some(ts("2026-02-20T10:00:00Z")));
    assert_eq!(r.record_extension_notice(ts("2026-02-21T10:00:00Z")), Err(DsrError::ExtensionNoticeAlreadyRecorded));
}

#[test]
fn r_dsr_1_extension_after_the_original_deadline_is_refused() {
    let mut r = received(RequestKind::Access, Law::Gdpr, "2026-01-31T09:00:00Z", &berlin());
    r.verify(step(ts("2026-02-01T09:00:00Z"))).unwrap();
    r.start(step(ts("2026-02-02T09:00:00Z"))).unwrap();
    // 23:00 UTC on 28 Feb is already 1 March in Berlin.
    assert_eq!(
        r.extend(step(ts("2026-02-28T23:00:00Z")), ExtensionReason::Complexity),
        Err(DsrError::ExtensionTooLate)
    );
    r.extend(step(ts("2026-02-28T22:59:59Z")), ExtensionReason::Complexity).unwrap();
}

#[test]
fn r_dsr_1_gdpr_withdrawal_takes_no_verification_and_no_extension() {
    let mut r = received(RequestKind::WithdrawConsent, Law::Gdpr, "2026-01-31T09:00:00Z", &berlin());
    assert_eq!(r.verification(), Verification::NotRequired);
    r.start(step(ts("2026-01-31T10:00:00Z"))).unwrap();
    assert_eq!(
        r.extend(step(ts("2026-01-31T11:00:00Z")), ExtensionReason::Complexity),
        Err(DsrError::NotExtendable { kind: RequestKind::WithdrawConsent, law: Law::Gdpr })
    );
}

#[test]
fn r_dsr_1_ccpa_only_kinds_are_refused_under_gdpr() {
    for kind in [RequestKind::Know, RequestKind::OptOutSaleShare] {
        assert_eq!(
            Deadlines::compute(kind, Law::Gdpr, ts("2026-01-31T09:00:00Z"), &berlin()),
            Err(DsrError::UnsupportedKind { kind, law: Law::Gdpr })
        );
    }
}

#[test]
fn r_dsr_1_days_left_counts_local_calendar_days() {
    let mut r = received(RequestKind::Access, Law::Gdpr, "2026-01-31T09:00:00Z", &berlin());
    // Due 28 Feb, end of day Berlin.
    assert_eq!(r.days_left(ts("2026-01-31T09:00:00Z")), 28);
    assert_eq!(r.days_left(ts("2026-02-27T12:00:00Z")), 1);
    // 23:00 on the due day, Berlin: 0 days left, not yet overdue.
    assert_eq!(r.days_left(ts("2026-02-28T22:00:00Z")), 0);
    assert!(!r.is_overdue(ts("2026-02-28T22:59:59.999999Z")));
    // Midnight in Berlin: overdue by a day.
    assert_eq!(r.days_left(ts("2026-02-28T23:00:00Z")), -1);
    assert!(r.is_overdue(ts("2026-02-28T23:00:00Z")));
    assert_eq!(r.days_left(ts("2026-03-10T12:00:00Z")), -10);
    // A closed request is never overdue.
    r.deny(step(ts("2026-03-10T12:00:00Z")), lethe_dsr::DenialReason::IdentityNotVerified).unwrap();
    assert!(!r.is_overdue(ts("2026-03-10T12:00:00Z")));
}
