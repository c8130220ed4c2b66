//! One data-subject request and its lifecycle: the commands that move it between [`Status`]es (each
//! checked, each recorded as a [`Transition`]), and its deadlines (R-DSR-1).
//!
//! | command          | allowed from                                   | to                      |
//! |------------------|------------------------------------------------|-------------------------|
//! | `verify`         | received (kinds that take verification)        | verified                |
//! | `start`          | verified; received if no verification is taken | in_progress             |
//! | `extend`         | in_progress, once, before the original deadline | extended               |
//! | `complete`       | in_progress, extended                          | completed               |
//! | `deny`           | any open status                                | denied                  |
//! | `place_hold`     | received, verified, in_progress, extended      | on_hold                 |
//! | `release_hold`   | on_hold                                        | the status it left      |
//!
//! `acknowledge` and `record_extension_notice` record facts without changing the status. Completed and
//! denied are terminal. Every command is dated, and a date before the request's last recorded event is
//! refused, so the history reads in order.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::deadline::{Deadlines, Rules};
use crate::{
    ActorRole, Channel, Command, DeadlinePolicy, DenialReason, DsrError, ExtensionReason, HoldReason, Law, Note,
    RequestId, RequestKind, Result, Status, SubjectDigest, Verification,
};

/// Who acts, when, and an optional note: the context every status-changing command is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    at: Timestamp,
    actor: ActorRole,
    note: Option<Note>,
}

impl Step {
    /// An action by `actor` at `at`, without a note.
    #[must_use]
    pub const fn new(at: Timestamp, actor: ActorRole) -> Self {
        Self { at, actor, note: None }
    }

    /// The same action with a note.
    #[must_use]
    pub fn with_note(mut self, note: Note) -> Self {
        self.note = Some(note);
        self
    }
}

/// One status change, as kept in [`Request::history`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The status before.
    pub from: Status,
    /// The status after.
    pub to: Status,
    /// When it happened.
    pub at: Timestamp,
    /// The role that made it.
    pub actor_role: ActorRole,
    /// The denial reason, on a transition to `denied`.
    pub reason: Option<DenialReason>,
    /// The operator's note, if any.
    pub note: Option<Note>,
}

/// The one extension a request may get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// When it was granted.
    pub granted_at: Timestamp,
    /// Why.
    pub reason: ExtensionReason,
    /// When the requester was told, with the reasons (GDPR Art. 12(3) and CCPA §7021(b) both require this
    /// within the original period); `None` until [`Request::record_extension_notice`].
    pub notice_sent_at: Option<Timestamp>,
}

/// A legal hold on the request's data: while it stands the request is `on_hold`, and an erasure cannot
/// be completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalHold {
    /// Why.
    pub reason: HoldReason,
    /// Since when.
    pub placed_at: Timestamp,
    /// The status the request returns to on release.
    pub resumes_to: Status,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Fulfilled.
    Completed {
        /// When.
        at: Timestamp,
    },
    /// Refused.
    Denied {
        /// When.
        at: Timestamp,
        /// Why.
        reason: DenialReason,
    },
}

/// A data-subject request. Built by [`Request::receive`], moved only by its commands, so a request
/// always satisfies its lifecycle's invariants (a stored one is checked again when decoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RequestRepr")]
pub struct Request {
    id: RequestId,
    kind: RequestKind,
    law: Law,
    channel: Channel,
    subject_digest: SubjectDigest,
    received_at: Timestamp,
    verification: Verification,
    status: Status,
    deadlines: Deadlines,
    acknowledged_at: Option<Timestamp>,
    extension: Option<Extension>,
    legal_hold: Option<LegalHold>,
    history: Vec<Transition>,
    outcome: Option<Outcome>,
}

impl Request {
    /// Logs a new request in status `received`, with a fresh id and deadlines counted on `policy`.
    ///
    /// # Errors
    /// [`DsrError::UnsupportedKind`] when the law has no such right; [`DsrError::ChannelNotAllowed`] for a
    /// GPC signal that is not an opt-out or withdrawal; [`DsrError::DateOutOfRange`] near the ends of the
    /// calendar.
    pub fn receive(
        kind: RequestKind,
        law: Law,
        channel: Channel,
        subject_digest: SubjectDigest,
        received_at: Timestamp,
        policy: &DeadlinePolicy,
    ) -> Result<Self> {
        let rules = Rules::of(kind, law)?;
        if channel == Channel::GpcSignal && rules.verification().is_required() {
            return Err(DsrError::ChannelNotAllowed { channel, kind });
        }
        Ok(Self {
            id: RequestId::generate(),
            kind,
            law,
            channel,
            subject_digest,
            received_at,
            verification: rules.verification(),
            status: Status::Received,
            deadlines: Deadlines::compute(kind, law, received_at, policy)?,
            acknowledged_at: None,
            extension: None,
            legal_hold: None,
            history: Vec::new(),
            outcome: None,
        })
    }

    /// The request's id.
    #[must_use]
    pub const fn id(&self) -> RequestId {
        self.id
    }

    /// What is asked for.
    #[must_use]
    pub const fn kind(&self) -> RequestKind {
        self.kind
    }

    /// The law it is handled under.
    #[must_use]
    pub const fn law(&self) -> Law {
        self.law
    }

    /// How it arrived.
    #[must_use]
    pub const fn channel(&self) -> Channel {
        self.channel
    }

    /// The digest of the subject's pseudonym.
    #[must_use]
    pub const fn subject_digest(&self) -> &SubjectDigest {
        &self.subject_digest
    }

    /// When it was received.
    #[must_use]
    pub const fn received_at(&self) -> Timestamp {
        self.received_at
    }

    /// Whether identity verification is taken (from kind and law).
    #[must_use]
    pub const fn verification(&self) -> Verification {
        self.verification
    }

    /// Where it stands.
    #[must_use]
    pub const fn status(&self) -> Status {
        self.status
    }

    /// Its deadlines.
    #[must_use]
    pub const fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    /// When receipt was confirmed to the requester.
    #[must_use]
    pub const fn acknowledged_at(&self) -> Option<Timestamp> {
        self.acknowledged_at
    }

    /// The extension, if granted.
    #[must_use]
    pub const fn extension(&self) -> Option<&Extension> {
        self.extension.as_ref()
    }

    /// The legal hold, while one stands.
    #[must_use]
    pub const fn legal_hold(&self) -> Option<&LegalHold> {
        self.legal_hold.as_ref()
    }

    /// Every status change, oldest first (receipt itself is [`Self::received_at`]).
    #[must_use]
    pub fn history(&self) -> &[Transition] {
        &self.history
    }

    /// How it ended, once terminal.
    #[must_use]
    pub const fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// The completion deadline in force (extended if extended).
    #[must_use]
    pub fn due(&self) -> Timestamp {
        self.deadlines.effective_complete_by()
    }

    /// Calendar days from `now` to the due date, both taken as local dates in the zone the deadlines were
    /// counted in: 0 on the due day, negative when overdue. Computed for closed requests too.
    #[must_use]
    pub fn days_left(&self, now: Timestamp) -> i64 {
        self.deadlines.days_left(now)
    }

    /// Open and past the deadline in force. A held request is still overdue: a hold does not stop the
    /// clock.
    #[must_use]
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        self.status.is_open() && now > self.due()
    }

    /// Open, not yet acknowledged, and past the acknowledgement deadline (CCPA §7021(a)).
    #[must_use]
    pub fn is_acknowledgement_overdue(&self, now: Timestamp) -> bool {
        self.status.is_open()
            && self.acknowledged_at.is_none()
            && self.deadlines.acknowledge_by().is_some_and(|by| now > by)
    }

    /// Whether the requester's identity was ever verified.
    #[must_use]
    pub fn was_verified(&self) -> bool {
        self.history.iter().any(|t| t.to == Status::Verified)
    }

    /// The identity has been verified: `received → verified`.
    ///
    /// # Errors
    /// [`DsrError::IllegalTransition`] from any other status; [`DsrError::VerificationNotApplicable`] for
    /// kinds that take no verification; [`DsrError::TimeWentBackwards`].
    pub fn verify(&mut self, step: Step) -> Result<()> {
        self.check(Command::Verify, &step, &[Status::Received])?;
        if !self.verification.is_required() {
            return Err(DsrError::VerificationNotApplicable { kind: self.kind, law: self.law });
        }
        self.transition(step, Status::Verified, None);
        Ok(())
    }

    /// Work begins: `verified → in_progress`, or `received → in_progress` for kinds without verification.
    ///
    /// # Errors
    /// [`DsrError::VerificationRequired`] from `received` when verification is taken;
    /// [`DsrError::IllegalTransition`] from any other status; [`DsrError::TimeWentBackwards`].
    pub fn start(&mut self, step: Step) -> Result<()> {
        self.check(Command::Start, &step, &[Status::Received, Status::Verified])?;
        if self.status == Status::Received && self.verification.is_required() {
            return Err(DsrError::VerificationRequired);
        }
        self.transition(step, Status::InProgress, None);
        Ok(())
    }

    /// Grants the one extension: `in_progress → extended`, moving the deadline to the original due date
    /// plus two months (GDPR Art. 12(3)) or 45 days (CCPA §7021(b)). Record the notice to the requester
    /// with [`Self::record_extension_notice`].
    ///
    /// # Errors
    /// [`DsrError::AlreadyExtended`] the second time; [`DsrError::NotExtendable`] for CCPA opt-outs and
    /// consent withdrawals; [`DsrError::ExtensionTooLate`] after the original deadline;
    /// [`DsrError::IllegalTransition`] from a status other than `in_progress`;
    /// [`DsrError::TimeWentBackwards`]; [`DsrError::DateOutOfRange`].
    pub fn extend(&mut self, step: Step, reason: ExtensionReason) -> Result<()> {
        if self.status.is_terminal() {
            return Err(self.illegal(Command::Extend));
        }
        if self.extension.is_some() {
            return Err(DsrError::AlreadyExtended);
        }
        let Some(period) = Rules::of(self.kind, self.law)?.extension() else {
            return Err(DsrError::NotExtendable { kind: self.kind, law: self.law });
        };
        self.check(Command::Extend, &step, &[Status::InProgress])?;
        if step.at > self.deadlines.complete_by() {
            return Err(DsrError::ExtensionTooLate);
        }
        let due = self.deadlines.extended_by(period)?;
        self.deadlines.set_extended(due);
        self.extension = Some(Extension { granted_at: step.at, reason, notice_sent_at: None });
        self.transition(step, Status::Extended, None);
        Ok(())
    }

    /// Done: `in_progress | extended → completed`.
    ///
    /// # Errors
    /// [`DsrError::ErasureUnderLegalHold`] for an erasure on hold; [`DsrError::IllegalTransition`] from
    /// any other status (release a hold first); [`DsrError::TimeWentBackwards`].
    pub fn complete(&mut self, step: Step) -> Result<()> {
        if self.status == Status::OnHold && self.kind == RequestKind::Erasure {
            return Err(DsrError::ErasureUnderLegalHold);
        }
        self.check(Command::Complete, &step, &[Status::InProgress, Status::Extended])?;
        self.outcome = Some(Outcome::Completed { at: step.at });
        self.transition(step, Status::Completed, None);
        Ok(())
    }

    /// Refused, from any open status. The reason must fit: `identity_not_verified` only for kinds that
    /// take verification and before verification succeeded; `legal_obligation` and `legal_claims` only for
    /// erasure; `legal_hold` only for an erasure under a hold.
    ///
    /// # Errors
    /// [`DsrError::IllegalTransition`] once terminal; [`DsrError::DenialReasonNotApplicable`];
    /// [`DsrError::TimeWentBackwards`].
    pub fn deny(&mut self, step: Step, reason: DenialReason) -> Result<()> {
        if self.status.is_terminal() {
            return Err(self.illegal(Command::Deny));
        }
        self.check_time(&step)?;
        let erasure = self.kind == RequestKind::Erasure;
        let fits = match reason {
            DenialReason::IdentityNotVerified => self.verification.is_required() && !self.was_verified(),
            DenialReason::LegalObligation | DenialReason::LegalClaims => erasure,
            DenialReason::LegalHold => erasure && self.legal_hold.is_some(),
            DenialReason::ManifestlyUnfounded
            | DenialReason::Excessive
            | DenialReason::Duplicate
            | DenialReason::NotApplicable => true,
        };
        if !fits {
            return Err(DsrError::DenialReasonNotApplicable { reason });
        }
        self.outcome = Some(Outcome::Denied { at: step.at, reason });
        self.transition(step, Status::Denied, Some(reason));
        Ok(())
    }

    /// Places a legal hold: any open, unheld status `→ on_hold`. The deadline keeps running.
    ///
    /// # Errors
    /// [`DsrError::IllegalTransition`] when already held or terminal; [`DsrError::TimeWentBackwards`].
    pub fn place_hold(&mut self, step: Step, reason: HoldReason) -> Result<()> {
        self.check(
            Command::PlaceHold,
            &step,
            &[Status::Received, Status::Verified, Status::InProgress, Status::Extended],
        )?;
        self.legal_hold = Some(LegalHold { reason, placed_at: step.at, resumes_to: self.status });
        self.transition(step, Status::OnHold, None);
        Ok(())
    }

    /// Releases the legal hold: `on_hold →` the status the request was in when the hold was placed.
    ///
    /// # Errors
    /// [`DsrError::IllegalTransition`] when not on hold; [`DsrError::TimeWentBackwards`].
    pub fn release_hold(&mut self, step: Step) -> Result<()> {
        self.check(Command::ReleaseHold, &step, &[Status::OnHold])?;
        let Some(hold) = self.legal_hold.take() else {
            return Err(self.illegal(Command::ReleaseHold));
        };
        self.transition(step, hold.resumes_to, None);
        Ok(())
    }

    /// Records that receipt was confirmed to the requester (due by [`Deadlines::acknowledge_by`] under
    /// the CCPA; harmless elsewhere). Does not change the status.
    ///
    /// # Errors
    /// [`DsrError::AlreadyAcknowledged`]; [`DsrError::IllegalTransition`] once terminal;
    /// [`DsrError::TimeWentBackwards`].
    pub fn acknowledge(&mut self, at: Timestamp) -> Result<()> {
        if self.status.is_terminal() {
            return Err(self.illegal(Command::Acknowledge));
        }
        if self.acknowledged_at.is_some() {
            return Err(DsrError::AlreadyAcknowledged);
        }
        if at < self.last_event_at() {
            return Err(DsrError::TimeWentBackwards);
        }
        self.acknowledged_at = Some(at);
        Ok(())
    }

    /// Records that the requester was told of the extension and its reasons. A notice after the original
    /// deadline is recorded as it happened; compare with [`Deadlines::complete_by`] to judge it.
    ///
    /// # Errors
    /// [`DsrError::NoExtension`]; [`DsrError::ExtensionNoticeAlreadyRecorded`];
    /// [`DsrError::TimeWentBackwards`] when dated before the extension was granted.
    pub fn record_extension_notice(&mut self, at: Timestamp) -> Result<()> {
        let Some(extension) = self.extension.as_mut() else {
            return Err(DsrError::NoExtension);
        };
        if extension.notice_sent_at.is_some() {
            return Err(DsrError::ExtensionNoticeAlreadyRecorded);
        }
        if at < extension.granted_at {
            return Err(DsrError::TimeWentBackwards);
        }
        extension.notice_sent_at = Some(at);
        Ok(())
    }

    /// The latest dated event: receipt, a transition or the acknowledgement.
    fn last_event_at(&self) -> Timestamp {
        let last_transition = self.history.last().map_or(self.received_at, |t| t.at);
        last_transition.max(self.received_at).max(self.acknowledged_at.unwrap_or(self.received_at))
    }

    fn illegal(&self, command: Command) -> DsrError {
        DsrError::IllegalTransition { from: self.status, command }
    }

    fn check_time(&self, step: &Step) -> Result<()> {
        if step.at < self.last_event_at() {
            return Err(DsrError::TimeWentBackwards);
        }
        Ok(())
    }

    fn check(&self, command: Command, step: &Step, allowed_from: &[Status]) -> Result<()> {
        if !allowed_from.contains(&self.status) {
            return Err(self.illegal(command));
        }
        self.check_time(step)
    }

    fn transition(&mut self, step: Step, to: Status, reason: Option<DenialReason>) {
        self.history.push(Transition {
            from: self.status,
            to,
            at: step.at,
            actor_role: step.actor,
            reason,
            note: step.note,
        });
        self.status = to;
    }

    /// The invariants every request keeps; checked when one is deserialized.
    fn check_invariants(&self) -> std::result::Result<(), &'static str> {
        let rules = Rules::of(self.kind, self.law).map_err(|_| "kind not available under law")?;
        if rules.verification() != self.verification {
            return Err("verification does not match kind and law");
        }
        let expected_status = self.history.last().map_or(Status::Received, |t| t.to);
        if expected_status != self.status {
            return Err("status does not match history");
        }
        if self.history.windows(2).any(|w| w[0].to != w[1].from)
            || self.history.first().is_some_and(|t| t.from != Status::Received)
        {
            return Err("history is not a chain");
        }
        let outcome_ok = match (self.status, self.outcome) {
            (Status::Completed, Some(Outcome::Completed { .. })) | (Status::Denied, Some(Outcome::Denied { .. })) => {
                true
            }
            (status, None) => status.is_open(),
            _ => false,
        };
        if !outcome_ok {
            return Err("outcome does not match status");
        }
        let hold_ok = match (&self.legal_hold, self.status) {
            (Some(hold), Status::OnHold) => hold.resumes_to.can_be_held(),
            (None, Status::OnHold) => false,
            (Some(_), status) => status.is_terminal(),
            (None, _) => true,
        };
        if !hold_ok {
            return Err("legal hold does not match status");
        }
        if self.extension.is_some() != self.deadlines.extended_complete_by().is_some()
            || (self.status == Status::Extended && self.extension.is_none())
        {
            return Err("extension does not match deadlines");
        }
        Ok(())
    }
}

/// The serialized shape of [`Request`], checked before it becomes one.
#[derive(Deserialize)]
struct RequestRepr {
    id: RequestId,
    kind: RequestKind,
    law: Law,
    channel: Channel,
    subject_digest: SubjectDigest,
    received_at: Timestamp,
    verification: Verification,
    status: Status,
    deadlines: Deadlines,
    acknowledged_at: Option<Timestamp>,
    extension: Option<Extension>,
    legal_hold: Option<LegalHold>,
    history: Vec<Transition>,
    outcome: Option<Outcome>,
}

impl TryFrom<RequestRepr> for Request {
    type Error = &'static str;

    fn try_from(r: RequestRepr) -> std::result::Result<Self, &'static str> {
        let request = Self {
            id: r.id,
            kind: r.kind,
            law: r.law,
            channel: r.channel,
            subject_digest: r.subject_digest,
            received_at: r.received_at,
            verification: r.verification,
            status: r.status,
            deadlines: r.deadlines,
            acknowledged_at: r.acknowledged_at,
            extension: r.extension,
            legal_hold: r.legal_hold,
            history: r.history,
            outcome: r.outcome,
        };
        request.check_invariants()?;
        Ok(request)
    }
}
