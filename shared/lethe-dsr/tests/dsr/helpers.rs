//! Shared builders: instants, policies, steps and requests driven to a given status.

use lethe_dsr::jiff::civil::Date;
use lethe_dsr::jiff::Timestamp;
use lethe_dsr::{
    subject_digest, ActorRole, Channel, DeadlinePolicy, ExtensionReason, HoldReason, Law, Request, RequestKind, Status,
    Step, SubjectDigest,
};

/// An RFC 3339 instant.
pub fn ts(rfc3339: &str) -> Timestamp {
    rfc3339.parse().expect("test instant")
}

/// The RFC 3339 (UTC) text of an instant.
pub fn utc(t: Timestamp) -> String {
    t.to_string()
}

/// A civil date.
pub fn day(y: i16, m: i8, d: i8) -> Date {
    Date::new(y, m, d).expect("test date")
}

/// A controller in Berlin without holidays.
pub fn berlin() -> DeadlinePolicy {
    DeadlinePolicy::new("Europe/Berlin", []).unwrap()
}

/// A controller in California with the given holidays.
pub fn california(holidays: &[Date]) -> DeadlinePolicy {
    DeadlinePolicy::new("America/Los_Angeles", holidays.iter().copied()).unwrap()
}

/// A subject's digest from a small seed.
pub fn subject(seed: u8) -> SubjectDigest {
    SubjectDigest::parse(&subject_digest(&[seed; 32])).unwrap()
}

/// A step by the privacy officer.
pub fn step(at: Timestamp) -> Step {
    Step::new(at, ActorRole::parse("privacy_officer").unwrap())
}

/// A fresh request.
pub fn received(kind: RequestKind, law: Law, at: &str, policy: &DeadlinePolicy) -> Request {
    Request::receive(kind, law, Channel::Api, subject(1), ts(at), policy).unwrap()
}

/// A GDPR access request received 2026-01-31 in Berlin, driven to `status` one hour apart per step
/// (`on_hold` is placed from `in_progress`).
pub fn gdpr_access_in(status: Status) -> Request {
    drive(RequestKind::Access, status)
}

/// A GDPR request of `kind`, driven to `status` as in [`gdpr_access_in`].
pub fn drive(kind: RequestKind, status: Status) -> Request {
    let mut r = received(kind, Law::Gdpr, "2026-01-31T09:00:00Z", &berlin());
    let mut hour = 10;
    let mut next = || {
        hour += 1;
        step(ts(&format!("2026-01-31T{hour:02}:00:00Z")))
    };
    let path: &[Status] = match status {
        Status::Received => &[],
        Status::Verified => &[Status::Verified],
        Status::InProgress => &[Status::Verified, Status::InProgress],
        Status::Extended => &[Status::Verified, Status::InProgress, Status::Extended],
        Status::OnHold => &[Status::Verified, Status::InProgress, Status::OnHold],
        Status::Completed => &[Status::Verified, Status::InProgress, Status::Completed],
        Status::Denied => &[Status::Denied],
    };
    for to in path {
        match to {
            Status::Verified => r.verify(next()).unwrap(),
            Status::InProgress => r.start(next()).unwrap(),
            Status::Extended => r.extend(next(), ExtensionReason::Complexity).unwrap(),
            Status::OnHold => r.place_hold(next(), HoldReason::LegalClaims).unwrap(),
            Status::Completed => r.complete(next()).unwrap(),
            Status::Denied => r.deny(next(), lethe_dsr::DenialReason::Duplicate).unwrap(),
            Status::Received => {}
        }
    }
    assert_eq!(r.status(), status);
    r
}
