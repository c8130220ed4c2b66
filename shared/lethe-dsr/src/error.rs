//! The crate's single error type, with a stable machine code and an HTTP status per variant.

use crate::{Channel, Command, DenialReason, Law, RequestKind, Status};

/// `Result` with [`DsrError`].
pub type Result<T, E = DsrError> = std::result::Result<T, E>;

/// Everything that can go wrong while receiving, moving, timing or storing a data-subject request.
///
/// Messages carry codes and statuses only, never a subject digest, a note or an identifier, so they are
/// safe to log.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DsrError {
    /// The law has no such right (for example a CCPA "right to know" filed under the GDPR).
    #[error("{kind} requests are not available under {law}")]
    UnsupportedKind {
        /// The requested kind.
        kind: RequestKind,
        /// The law the request was filed under.
        law: Law,
    },
    /// The channel cannot carry this kind of request (a GPC signal is only an opt-out or a withdrawal).
    #[error("{kind} requests cannot arrive through {channel}")]
    ChannelNotAllowed {
        /// The channel the request came through.
        channel: Channel,
        /// The requested kind.
        kind: RequestKind,
    },
    /// The command is not allowed in the request's current status.
    #[error("cannot {command} a request that is {from}")]
    IllegalTransition {
        /// The status the request is in.
        from: Status,
        /// What was attempted.
        command: Command,
    },
    /// The request was already extended; the law allows one extension.
    #[error("the request was already extended")]
    AlreadyExtended,
    /// The law allows no extension for this kind (CCPA opt-out, consent withdrawal).
    #[error("{kind} requests under {law} cannot be extended")]
    NotExtendable {
        /// The request's kind.
        kind: RequestKind,
        /// The request's law.
        law: Law,
    },
    /// An extension must be decided (and notified) within the original period.
    #[error("the original deadline has passed; the request can no longer be extended")]
    ExtensionTooLate,
    /// There is no extension to record a notice for.
    #[error("the request has no extension")]
    NoExtension,
    /// The extension notice was already recorded.
    #[error("the extension notice was already recorded")]
    ExtensionNoticeAlreadyRecorded,
    /// Work cannot start before the requester's identity is verified.
    #[error("the request must be verified first")]
    VerificationRequired,
    /// This kind needs no identity verification, and the law forbids requiring it (CCPA opt-out).
    #[error("{kind} requests under {law} take no identity verification")]
    VerificationNotApplicable {
        /// The request's kind.
        kind: RequestKind,
        /// The request's law.
        law: Law,
    },
    /// An erasure cannot be completed while a legal hold is in place.
    #[error("an erasure cannot be completed under a legal hold")]
    ErasureUnderLegalHold,
    /// The denial reason does not fit this request (for example `legal_claims` on an access request).
    #[error("denial reason {reason} does not apply to this request")]
    DenialReasonNotApplicable {
        /// The reason given.
        reason: DenialReason,
    },
    /// Receipt was already acknowledged.
    #[error("the request was already acknowledged")]
    AlreadyAcknowledged,
    /// An action is dated before the request's last recorded event.
    #[error("the action is dated before the request's last recorded event")]
    TimeWentBackwards,
    /// The IANA time zone name is not in the time zone database.
    #[error("unknown time zone")]
    UnknownTimeZone,
    /// A deadline falls outside the supported calendar range (years -9999 to 9999).
    #[error("date out of supported range")]
    DateOutOfRange,
    /// Not a version 7 UUID.
    #[error("invalid request id")]
    InvalidRequestId,
    /// Not 64 lowercase hexadecimal characters.
    #[error("invalid subject digest")]
    InvalidSubjectDigest,
    /// An actor role must be 1 to 32 characters of `a-z`, `0-9` and `_`, starting with a letter.
    #[error("invalid actor role")]
    InvalidActorRole,
    /// A note must be at most `max` bytes without control characters other than newline and tab.
    #[error("invalid note: at most {max} bytes, no control characters")]
    InvalidNote {
        /// Longest accepted note, in bytes.
        max: usize,
    },
    /// A code that names no variant of the enum (`what` says which enum).
    #[error("unknown {what} code")]
    InvalidCode {
        /// Which enum was being parsed.
        what: &'static str,
    },
    /// No request with that id in the store.
    #[error("request not found")]
    NotFound,
    /// A request with that id is already stored.
    #[error("request already exists")]
    AlreadyExists,
    /// An update closure replaced the record with one of another id or subject.
    #[error("an update may not change a request's id or subject")]
    RecordMismatch,
    /// A compare-and-swap update kept losing against concurrent writers.
    #[error("too many concurrent updates of the request")]
    Conflict,
    /// Stored bytes could not be decoded into a valid request.
    #[error("stored request is corrupt: {0}")]
    Corrupt(&'static str),
    /// Stored bytes carry a format version this build cannot read.
    #[error("unsupported stored format version {0}")]
    UnsupportedFormatVersion(u8),
    /// A request could not be encoded.
    #[error("request encoding failed")]
    Encode,
    /// The sled tree failed.
    #[error("storage error")]
    Storage(#[source] sled::Error),
}

impl DsrError {
    /// A stable, documented code for API bodies and metrics; never changes once published.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedKind { .. } => "unsupported_kind",
            Self::ChannelNotAllowed { .. } => "channel_not_allowed",
            Self::IllegalTransition { .. } => "illegal_transition",
            Self::AlreadyExtended => "already_extended",
            Self::NotExtendable { .. } => "not_extendable",
            Self::ExtensionTooLate => "extension_too_late",
            Self::NoExtension => "no_extension",
            Self::ExtensionNoticeAlreadyRecorded => "extension_notice_already_recorded",
            Self::VerificationRequired => "verification_required",
            Self::VerificationNotApplicable { .. } => "verification_not_applicable",
            Self::ErasureUnderLegalHold => "erasure_under_legal_hold",
            Self::DenialReasonNotApplicable { .. } => "denial_reason_not_applicable",
            Self::AlreadyAcknowledged => "already_acknowledged",
            Self::TimeWentBackwards => "time_went_backwards",
            Self::UnknownTimeZone => "unknown_time_zone",
            Self::DateOutOfRange => "date_out_of_range",
            Self::InvalidRequestId => "invalid_request_id",
            Self::InvalidSubjectDigest => "invalid_subject_digest",
            Self::InvalidActorRole => "invalid_actor_role",
            Self::InvalidNote { .. } => "invalid_note",
            Self::InvalidCode { .. } => "invalid_code",
            Self::NotFound => "request_not_found",
            Self::AlreadyExists => "request_already_exists",
            Self::RecordMismatch => "record_mismatch",
            Self::Conflict => "update_conflict",
            Self::Corrupt(_) => "corrupt_record",
            Self::UnsupportedFormatVersion(_) => "unsupported_format_version",
            Self::Encode => "encode_failed",
            Self::Storage(_) => "storage_error",
        }
    }

    /// The HTTP status a handler should answer with.
    #[must_use]
    pub const fn http_status(&self) -> u16 {
        match self {
            Self::InvalidRequestId
            | Self::InvalidSubjectDigest
            | Self::InvalidActorRole
            | Self::InvalidNote { .. }
            | Self::InvalidCode { .. } => 400,
            Self::NotFound => 404,
            Self::IllegalTransition { .. }
            | Self::AlreadyExtended
            | Self::NotExtendable { .. }
            | Self::ExtensionTooLate
            | Self::NoExtension
            | Self::ExtensionNoticeAlreadyRecorded
            | Self::VerificationRequired
            | Self::VerificationNotApplicable { .. }
            | Self::ErasureUnderLegalHold
            | Self::AlreadyAcknowledged
            | Self::AlreadyExists
            | Self::Conflict => 409,
            Self::UnsupportedKind { .. }
            | Self::ChannelNotAllowed { .. }
            | Self::DenialReasonNotApplicable { .. }
            | Self::TimeWentBackwards
            | Self::UnknownTimeZone
            | Self::DateOutOfRange
            | Self::RecordMismatch => 422,
            Self::Corrupt(_) | Self::UnsupportedFormatVersion(_) | Self::Encode | Self::Storage(_) => 500,
        }
    }
}

impl From<sled::Error> for DsrError {
    fn from(e: sled::Error) -> Self {
        Self::Storage(e)
    }
}
