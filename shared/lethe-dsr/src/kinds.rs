//! The closed vocabularies of a request: its kind, law, channel, status, and the reasons and commands that
//! move it. Every variant has a stable snake_case code, used in storage, APIs and error messages.

use std::fmt;
use std::str::FromStr;

use crate::DsrError;

/// Declares a fieldless enum whose variants each carry a stable code, with `as_str`, `ALL`, `Display`,
/// `FromStr` and serde (as the code string).
macro_rules! code_enum {
    (
        $label:literal,
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $code)] $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The stable code, as stored and as shown in APIs.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = DsrError;

            fn from_str(s: &str) -> Result<Self, DsrError> {
                match s {
                    $($code => Ok(Self::$variant),)+
                    _ => Err(DsrError::InvalidCode { what: $label }),
                }
            }
        }
    };
}

code_enum! {
    "request kind",
    /// What the data subject asks for.
    pub enum RequestKind {
        /// A copy of the personal data (GDPR Art. 15; under the CCPA, the "specific pieces" part of the
        /// right to know).
        Access => "access",
        /// The data in a structured, machine-readable format (GDPR Art. 20; CCPA §1798.130(a)(2)(B)).
        Portability => "portability",
        /// Erasure (GDPR Art. 17) or deletion (CCPA §1798.105).
        Erasure => "erasure",
        /// Opt-out of the sale or sharing of personal information (CCPA §1798.120, §7026).
        OptOutSaleShare => "opt_out_sale_share",
        /// Withdrawal of consent (GDPR Art. 7(3); CCPA opt-in consent, §7028).
        WithdrawConsent => "withdraw_consent",
        /// Rectification (GDPR Art. 16) or correction (CCPA §1798.106).
        Rectification => "rectification",
        /// The CCPA right to know (§1798.110): categories, sources, purposes, recipients.
        Know => "know",
    }
}

code_enum! {
    "law",
    /// The law a request is handled under; it decides the deadlines and what is allowed.
    pub enum Law {
        /// Regulation (EU) 2016/679.
        Gdpr => "gdpr",
        /// The California Consumer Privacy Act as amended by the CPRA, with its regulations (11 CCR §7000 ff.).
        Ccpa => "ccpa",
    }
}

code_enum! {
    "channel",
    /// How the request reached the controller.
    pub enum Channel {
        /// Lethe's HTTP API.
        Api => "api",
        /// A web form.
        WebForm => "web_form",
        /// An email, keyed in by an operator.
        Email => "email",
        /// A Global Privacy Control signal (`Sec-GPC: 1`), which is an opt-out (CCPA §7025).
        GpcSignal => "gpc_signal",
    }
}

code_enum! {
    "status",
    /// Where a request stands. `Received → Verified → InProgress → (Extended) → Completed | Denied`, with
    /// `OnHold` as a detour from any open status that returns to where it left.
    ///
    /// `InProgress` and `Extended` are both "being worked on"; `Extended` says the deadline has moved to
    /// [`crate::Deadlines::extended_complete_by`]. A request reaches `Extended` only from `InProgress`
    /// and never returns to `InProgress`: once extended, it stays extended until it is closed.
    pub enum Status {
        /// Logged; identity not yet verified (or, for kinds that take no verification, not yet started).
        Received => "received",
        /// The requester's identity has been verified; work has not started.
        Verified => "verified",
        /// Being worked on, within the original deadline.
        InProgress => "in_progress",
        /// Being worked on, under the one extension the law allows.
        Extended => "extended",
        /// Paused by a legal hold; the deadline keeps running.
        OnHold => "on_hold",
        /// Done; terminal.
        Completed => "completed",
        /// Refused with a [`DenialReason`]; terminal.
        Denied => "denied",
    }
}

impl Status {
    /// Whether the request still awaits an outcome.
    #[must_use]
    pub const fn is_open(self) -> bool {
        !self.is_terminal()
    }

    /// `Completed` or `Denied`: nothing moves the request any more.
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Denied)
    }

    /// The open statuses a legal hold may be placed from (and returns to).
    #[must_use]
    pub const fn can_be_held(self) -> bool {
        matches!(self, Self::Received | Self::Verified | Self::InProgress | Self::Extended)
    }
}

code_enum! {
    "denial reason",
    /// Why a request was refused.
    pub enum DenialReason {
        /// The requester's identity could not be verified (GDPR Art. 12(6); CCPA §7060 ff.). Only for kinds
        /// that take verification, and only before the request was verified.
        IdentityNotVerified => "identity_not_verified",
        /// Manifestly unfounded (GDPR Art. 12(5); CCPA §1798.145(h)(3)).
        ManifestlyUnfounded => "manifestly_unfounded",
        /// Excessive, in particular repetitive (GDPR Art. 12(5); CCPA §1798.145(h)(3)).
        Excessive => "excessive",
        /// Erasure refused to comply with a legal obligation (GDPR Art. 17(3)(b); CCPA §1798.105(d)).
        /// Erasure only.
        LegalObligation => "legal_obligation",
        /// Erasure refused for the establishment, exercise or defence of legal claims (GDPR Art. 17(3)(e)).
        /// Erasure only.
        LegalClaims => "legal_claims",
        /// Erasure refused because a legal hold is in place. Erasure only, and only while held.
        LegalHold => "legal_hold",
        /// The same request is already being handled.
        Duplicate => "duplicate",
        /// The law does not apply (not a resident, no data held, not a covered business).
        NotApplicable => "not_applicable",
    }
}

code_enum! {
    "extension reason",
    /// Why the deadline was extended (GDPR Art. 12(3): "the complexity and number of the requests";
    /// CCPA §7021(b): "when reasonably necessary").
    pub enum ExtensionReason {
        /// The request is complex.
        Complexity => "complexity",
        /// The controller is handling many requests.
        NumberOfRequests => "number_of_requests",
    }
}

code_enum! {
    "hold reason",
    /// Why a legal hold was placed.
    pub enum HoldReason {
        /// A legal obligation to retain the data (GDPR Art. 17(3)(b)).
        LegalObligation => "legal_obligation",
        /// The data is needed for legal claims (GDPR Art. 17(3)(e)), such as litigation.
        LegalClaims => "legal_claims",
        /// A court or supervisory authority ordered the data preserved.
        AuthorityOrder => "authority_order",
    }
}

code_enum! {
    "verification",
    /// Whether the requester's identity must be verified before work starts.
    pub enum Verification {
        /// Verify before starting (access, erasure, rectification, ...).
        Required => "required",
        /// No verification; the law forbids requiring it for CCPA opt-outs (§7026(d)) and consent must be
        /// as easy to withdraw as to give (GDPR Art. 7(3)).
        NotRequired => "not_required",
    }
}

impl Verification {
    /// Whether verification is required.
    #[must_use]
    pub const fn is_required(self) -> bool {
        matches!(self, Self::Required)
    }
}

code_enum! {
    "command",
    /// What can be done to a request; named in [`DsrError::IllegalTransition`].
    pub enum Command {
        /// [`crate::Request::verify`].
        Verify => "verify",
        /// [`crate::Request::start`].
        Start => "start",
        /// [`crate::Request::extend`].
        Extend => "extend",
        /// [`crate::Request::complete`].
        Complete => "complete",
        /// [`crate::Request::deny`].
        Deny => "deny",
        /// [`crate::Request::place_hold`].
        PlaceHold => "place_hold",
        /// [`crate::Request::release_hold`].
        ReleaseHold => "release_hold",
        /// [`crate::Request::acknowledge`].
        Acknowledge => "acknowledge",
        /// [`crate::Request::record_extension_notice`].
        RecordExtensionNotice => "record_extension_notice",
    }
}
