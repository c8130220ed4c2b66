//! The crate's single error type, with a stable machine code and an HTTP status per variant.

/// `Result` with [`AuthError`].
pub type Result<T, E = AuthError> = std::result::Result<T, E>;

/// Everything that can go wrong while issuing, verifying or authorizing a token.
///
/// Messages never carry token contents, key material or identifiers, so they are safe to log.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// Not three base64url segments, or a header or payload that is not the expected JSON.
    #[error("malformed token")]
    MalformedToken,
    /// The header names an algorithm other than `EdDSA` (including `none`, `HS*`, `RS*`).
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The header has no `kid`.
    #[error("token header has no key id")]
    MissingKeyId,
    /// The header's `kid` names no key in the key set (never issued, or retired).
    #[error("token key id is unknown")]
    UnknownKeyId,
    /// The signature does not verify with the named key.
    #[error("token signature is invalid")]
    InvalidSignature,
    /// `exp` lies in the past, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` lies in the future, beyond the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` is not this service's audience.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// `iss` is not this service's issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// The claims break a role rule (for example a subject token without a subject id).
    #[error("token claims are invalid: {0}")]
    InvalidClaims(&'static str),
    /// The principal is authenticated but its role may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No `Authorization` value, or one that cannot be read.
    #[error("malformed authorization header")]
    MalformedAuthorization,
    /// An `Authorization` scheme other than `Bearer` or `Basic`.
    #[error("unsupported authorization scheme")]
    UnsupportedScheme,
    /// The caller asked to issue a token whose claims would break a role rule.
    #[error("invalid token grant: {0}")]
    InvalidGrant(&'static str),
    /// `retire` was asked to remove the key currently used for signing.
    #[error("the current signing key cannot be retired")]
    CannotRetireCurrentKey,
    /// `retire` was asked to remove a key that is not in the set.
    #[error("no such signing key")]
    NoSuchKey,
    /// A persisted key set could not be read (bad JSON, unknown version, bad key bytes).
    #[error("invalid key store: {0}")]
    InvalidKeyStore(&'static str),
    /// The operating system's random generator failed, or a fresh key could not be encoded.
    #[error("signing key generation failed")]
    KeyGeneration,
    /// Signing failed inside the JWT library.
    #[error("token signing failed")]
    Signing,
}

impl AuthError {
    /// A stable, documented code for API bodies and metrics; never changes once published.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::MalformedToken => "malformed_token",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::MissingKeyId => "missing_kid",
            Self::UnknownKeyId => "unknown_kid",
            Self::InvalidSignature => "invalid_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAudience => "invalid_audience",
            Self::WrongIssuer => "invalid_issuer",
            Self::InvalidClaims(_) => "invalid_claims",
            Self::Forbidden => "forbidden",
            Self::MalformedAuthorization => "malformed_authorization",
            Self::UnsupportedScheme => "unsupported_auth_scheme",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::CannotRetireCurrentKey => "cannot_retire_current_key",
            Self::NoSuchKey => "no_such_key",
            Self::InvalidKeyStore(_) => "invalid_key_store",
            Self::KeyGeneration => "key_generation_failed",
            Self::Signing => "signing_failed",
        }
    }

    /// The HTTP status a handler should answer with.
    #[must_use]
    pub const fn http_status(&self) -> u16 {
        match self {
            Self::MalformedToken
            | Self::AlgorithmNotAllowed
            | Self::MissingKeyId
            | Self::UnknownKeyId
            | Self::InvalidSignature
            | Self::Expired
            | Self::NotYetValid
            | Self::WrongAudience
            | Self::WrongIssuer
            | Self::InvalidClaims(_)
            | Self::MalformedAuthorization
            | Self::UnsupportedScheme => 401,
            Self::Forbidden => 403,
            Self::InvalidGrant(_) => 400,
            Self::CannotRetireCurrentKey => 409,
            Self::NoSuchKey => 404,
            Self::InvalidKeyStore(_) | Self::KeyGeneration | Self::Signing => 500,
        }
    }
}
