//! R-DSR-1, CCPA: acknowledge within 10 business days (§7021(a)), complete within 45 calendar days
//! (+45 once, §7021(b)), opt-out of sale/share within 15 business days without verification (§7026).

use lethe_dsr::{
    Channel, DeadlinePolicy, Deadlines, DsrError, ExtensionReason, Law, Request, RequestKind, Status, Verification,
};

use crate::helpers::{california, day, received, step, subject, ts, utc};

/// Thanksgiving and the day after, Christmas, New Year's Day (California state holidays, 2026/27).
fn ca_holidays() -> DeadlinePolicy {
    california(&[day(2026, 11, 26), day(2026, 11, 27), day(2026, 12, 25), day(2027, 1, 1)])
}

fn deadlines(kind: RequestKind, received_at: &str, policy: &DeadlinePolicy) -> Deadlines {
    Deadlines::compute(kind, Law::Ccpa, ts(received_at), policy).unwrap()
}

#[test]
fn r_dsr_1_acknowledge_in_10_business_days_over_a_weekend_and_holidays() {
    // Friday 20 Nov 2026, 18:00 PST = Saturday 02:00 UTC. Local Friday counts; day 1 is Monday 23 Nov;
    // 26–27 Nov are holidays; the 10th business day is Tuesday 8 Dec, end of day PST.
    let d = deadlines(RequestKind::Know, "2026-11-21T02:00:00Z", &ca_holidays());
    assert_eq!(utc(d.acknowledge_by().unwrap()), "2026-12-09T07:59:59.999999Z");
    // Without holidays and on UTC the same instant is a Saturday: day 1 is Monday, day 10 Friday 4 Dec.
    let utc_policy = DeadlinePolicy::new("UTC", []).unwrap();
    let d = deadlines(RequestKind::Know, "2026-11-21T02:00:00Z", &utc_policy);
    assert_eq!(utc(d.acknowledge_by().unwrap()), "2026-12-04T23:59:59.999999Z");
}

#[test]
fn r_dsr_1_thursday_evening_pacific_counts_from_friday() {
    // Thursday 19 Nov, 18:00 PST = Friday 02:00 UTC: day 1 is Friday 20 Nov (local), day 10 Monday 7 Dec.
    let d = deadlines(RequestKind::Erasure, "2026-11-20T02:00:00Z", &ca_holidays());
    assert_eq!(utc(d.acknowledge_by().unwrap()), "2026-12-08T07:59:59.999999Z");
}

#[test]
fn r_dsr_1_receipt_on_a_holiday_or_weekend_counts_from_the_next_business_day() {
    // Thanksgiving (Thursday 26 Nov): day 1 is Monday 30 Nov, day 10 Friday 11 Dec.
    let on_holiday = deadlines(RequestKind::Access, "2026-11-26T18:00:00Z", &ca_holidays());
    assert_eq!(utc(on_holiday.acknowledge_by().unwrap()), "2026-12-12T07:59:59.999999Z");
    // Sunday 29 Nov gives the same day 1, hence the same deadline.
    let on_sunday = deadlines(RequestKind::Access, "2026-11-29T18:00:00Z", &ca_holidays());
    assert_eq!(on_sunday.acknowledge_by(), on_holiday.acknowledge_by());
}

#[test]
fn r_dsr_1_complete_in_45_days_extend_by_45_once() {
    // Friday 20 Nov 2026 (Pacific) + 45 days = Monday 4 Jan 2027; +45 = Thursday 18 Feb 2027. Calendar
    // days: holidays and weekends do not matter.
    let mut r = received(RequestKind::Know, Law::Ccpa, "2026-11-21T02:00:00Z", &ca_holidays());
    assert_eq!(utc(r.deadlines().complete_by()), "2027-01-05T07:59:59.999999Z");
    assert_eq!(r.verification(), Verification::Required);
    r.acknowledge(ts("2026-11-23T17:00:00Z")).unwrap();
    r.verify(step(ts("2026-11-24T17:00:00Z"))).unwrap();
    r.start(step(ts("2026-11-24T18:00:00Z"))).unwrap();
    r.extend(step(ts("2026-12-30T18:00:00Z")), ExtensionReason::Complexity).unwrap();
    assert_eq!(r.status(), Status::Extended);
    assert_eq!(utc(r.deadlines().extended_complete_by().unwrap()), "2027-02-19T07:59:59.999999Z");
    // The second extension is refused, and the deadline stays.
    assert_eq!(r.extend(step(ts("2027-01-02T18:00:00Z")), ExtensionReason::Complexity), Err(DsrError::AlreadyExtended));
    assert_eq!(utc(r.due()), "2027-02-19T07:59:59.999999Z");
    r.complete(step(ts("2027-02-01T18:00:00Z"))).unwrap();
    assert_eq!(r.status(), Status::Completed);
}

#[test]
fn r_dsr_1_opt_out_within_15_business_days_with_thanksgiving() {
    // Friday 20 Nov 2026 (Pacific); Thanksgiving 26 Nov is the only holiday: day 15 is Monday 14 Dec.
    let policy = california(&[day(2026, 11, 26)]);
    let d = deadlines(RequestKind::OptOutSaleShare, "2026-11-21T02:00:00Z", &policy);
    assert_eq!(utc(d.complete_by()), "2026-12-15T07:59:59.999999Z");
    assert_eq!(d.acknowledge_by(), None);
    // Without the holiday it would be Friday 11 Dec.
    let d = deadlines(RequestKind::OptOutSaleShare, "2026-11-21T02:00:00Z", &california(&[]));
    assert_eq!(utc(d.complete_by()), "2026-12-12T07:59:59.999999Z");
}

#[test]
fn r_dsr_1_opt_out_takes_no_verification_and_no_extension() {
    let policy = california(&[day(2026, 11, 26)]);
    let mut r = Request::receive(
        RequestKind::OptOutSaleShare,
        Law::Ccpa,
        Channel::GpcSignal,
        subject(7),
        ts("2026-11-21T02:00:00Z"),
        &policy,
    )
    .unwrap();
    assert_eq!(r.verification(), Verification::NotRequired);
    assert_eq!(
        r.verify(step(ts("2026-11-21T03:00:00Z"))),
        Err(DsrError::VerificationNotApplicable { kind: RequestKind::OptOutSaleShare, law: Law::Ccpa })
    );
    r.start(step(ts("2026-11-21T03:00:00Z"))).unwrap();
    assert_eq!(
        r.extend(step(ts("2026-11-21T04:00:00Z")), ExtensionReason::NumberOfRequests),
        Err(DsrError::NotExtendable { kind: RequestKind::OptOutSaleShare, law: Law::Ccpa })
    );
    // Identity cannot be a reason to refuse an opt-out.
    assert_eq!(
        r.deny(step(ts("2026-11-21T05:00:00Z")), lethe_dsr::DenialReason::IdentityNotVerified),
        Err(DsrError::DenialReasonNotApplicable { reason: lethe_dsr::DenialReason::IdentityNotVerified })
    );
    r.complete(step(ts("2026-11-21T05:00:00Z"))).unwrap();
}

#[test]
fn r_dsr_1_gpc_signal_is_only_an_opt_out() {
    let err = Request::receive(
        RequestKind::Access,
        Law::Ccpa,
        Channel::GpcSignal,
        subject(7),
        ts("2026-11-21T02:00:00Z"),
        &california(&[]),
    )
    .unwrap_err();
    assert_eq!(err, DsrError::ChannelNotAllowed { channel: Channel::GpcSignal, kind: RequestKind::Access });
    assert_eq!(err.code(), "channel_not_allowed");
}

#[test]
fn r_dsr_1_due_on_the_day_clocks_change_in_los_angeles() {
    // 17 Sep 2026 + 45 days = Sunday 1 Nov 2026, when Los Angeles falls back to PST (-08:00).
    let d = deadlines(RequestKind::Know, "2026-09-17T19:00:00Z", &california(&[]));
    assert_eq!(utc(d.complete_by()), "2026-11-02T07:59:59.999999Z");
    // 22 Jan 2026 + 45 days = Sunday 8 Mar 2026, when Los Angeles springs forward to PDT (-07:00).
    let d = deadlines(RequestKind::Know, "2026-01-22T19:00:00Z", &california(&[]));
    assert_eq!(utc(d.complete_by()), "2026-03-09T06:59:59.999999Z");
}

#[test]
fn r_dsr_1_acknowledgement_overdue_until_acknowledged() {
    let mut r = received(RequestKind::Know, Law::Ccpa, "2026-11-21T02:00:00Z", &ca_holidays());
    let late = ts("2026-12-09T08:00:00Z");
    assert!(!r.is_acknowledgement_overdue(ts("2026-12-09T07:59:59Z")));
    assert!(r.is_acknowledgement_overdue(late));
    r.acknowledge(late).unwrap();
    assert!(!r.is_acknowledgement_overdue(late));
    assert_eq!(r.acknowledge(late), Err(DsrError::AlreadyAcknowledged));
    assert_eq!(r.acknowledged_at(), Some(late));
}
