//! Lethe's data-subject requests (DSR): the [`Request`] record and its lifecycle, the law that applies
//! (GDPR, CCPA), deadline arithmetic on the controller's calendar, and a sled-backed [`RequestStore`]
//! (R-DSR-1: requests carry state, timestamps and deadlines — GDPR one month (+2 with notice); CCPA
//! acknowledge in 10 business days, complete in 45 days (+45); opt-out within 15 business days, without
//! verification).
//!
//! Flow: build a [`DeadlinePolicy`] once (time zone, holidays); on arrival [`Request::receive`] with the
//! subject's [`SubjectDigest`] (never the identifier or pseudonym) and [`RequestStore::insert`]; move it
//! with [`RequestStore::update`] and the request's commands ([`Request::verify`], [`Request::start`],
//! [`Request::extend`], [`Request::complete`], [`Request::deny`], holds); watch
//! [`RequestStore::list`] with [`ListFilter::overdue_at`].
#![forbid(unsafe_code)]

mod deadline;
mod error;
mod ids;
mod kinds;
mod request;
mod store;

pub use deadline::{CalendarPeriod, DeadlinePolicy, Deadlines, Period, Rules, Zone};
pub use error::{DsrError, Result};
pub use ids::{subject_digest, ActorRole, Note, RequestId, SubjectDigest};
pub use kinds::{Channel, Command, DenialReason, ExtensionReason, HoldReason, Law, RequestKind, Status, Verification};
pub use request::{Extension, LegalHold, Outcome, Request, Step, Transition};
pub use store::{decode, encode, ListFilter, RequestStore, FORMAT_V1};

/// Re-exported so callers name the same `Timestamp` and `Date` types as this crate.
pub use jiff;
