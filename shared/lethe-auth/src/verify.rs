//! Token verification: an EdDSA-only allow-list, `kid` lookup, signature, `iss`/`aud`/`exp`/`nbf`,
//! and the role rules, each failure with its own error code.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use lethe_domain::SubjectId;

use crate::{AuthConfig, AuthError, Claims, Principal, Result, SigningKeys};

/// The only `alg` header value accepted, compared byte for byte.
const ALLOWED_ALG: &str = "EdDSA";
/// Longest token looked at; anything longer is refused unparsed.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Checks tokens. Stateless: the keys and settings are passed in on every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verifier;

impl Verifier {
    /// Verifies `token` and returns its claims.
    ///
    /// The header is inspected before any cryptography: its `alg` must be exactly `EdDSA` (so `none`,
    /// `HS256` signed with the public key as HMAC secret, `RS256` and every other value are refused
    /// without touching a key) and its `kid` must name a key in `keys`. Then the signature, `iss`,
    /// `aud`, `exp` and `nbf` (all required, times with `config.leeway_secs` of skew) and the role
    /// rules are checked.
    ///
    /// # Errors
    /// [`AuthError::MalformedToken`], [`AuthError::AlgorithmNotAllowed`], [`AuthError::MissingKeyId`],
    /// [`AuthError::UnknownKeyId`], [`AuthError::InvalidSignature`], [`AuthError::Expired`],
    /// [`AuthError::NotYetValid`], [`AuthError::WrongAudience`], [`AuthError::WrongIssuer`] and
    /// [`AuthError::InvalidClaims`] (for example a subject token without a valid subject id).
    pub fn verify(keys: &SigningKeys, config: &AuthConfig, token: &str) -> Result<Claims> {
        let kid = inspect_header(token)?;
        let key = keys.decoding(&kid).ok_or(AuthError::UnknownKeyId)?;

        crate::ensure_crypto_provider();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.leeway = config.leeway_secs.min(AuthConfig::MAX_LEEWAY_SECS);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;

        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| map_jwt_error(&e))?.claims;
        if let Some(rule) = claims.role_violation() {
            return Err(AuthError::InvalidClaims(rule));
        }
        if let Some(raw) = &claims.subject_id {
            SubjectId::parse(raw).map_err(|_| AuthError::InvalidClaims("subject id is not valid"))?;
        }
        Ok(claims)
    }

    /// [`Verifier::verify`], then the claims as a [`Principal`] for handlers.
    ///
    /// # Errors
    /// As [`Verifier::verify`].
    pub fn authenticate(keys: &SigningKeys, config: &AuthConfig, token: &str) -> Result<Principal> {
        Principal::try_from(Self::verify(keys, config, token)?)
    }
}

/// Reads the header without trusting it: checks the shape, the algorithm allow-list and the `kid`.
fn inspect_header(token: &str) -> Result<String> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::MalformedToken);
    }
    let mut segments = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return Err(AuthError::MalformedToken);
    };

    // Untyped first: jsonwebtoken's `Algorithm` cannot even represent `none`, and a typed parse would
    // turn an unknown algorithm into a generic parse error.
    let raw = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::MalformedToken)?;
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&raw).map_err(|_| AuthError::MalformedToken)?;
    match fields.get("alg") {
        Some(serde_json::Value::String(alg)) if alg == ALLOWED_ALG => {}
        Some(serde_json::Value::String(_)) => return Err(AuthError::AlgorithmNotAllowed),
        _ => return Err(AuthError::MalformedToken),
    }

    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::MalformedToken)?;
    if header.alg != Algorithm::EdDSA {
        return Err(AuthError::AlgorithmNotAllowed);
    }
    match header.kid {
        Some(kid) if !kid.is_empty() => Ok(kid),
        _ => Err(AuthError::MissingKeyId),
    }
}

fn map_jwt_error(error: &jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature => AuthError::InvalidSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
            AuthError::AlgorithmNotAllowed
        }
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) | ErrorKind::InvalidSubject => {
            AuthError::InvalidClaims("registered claim missing or malformed")
        }
        _ => AuthError::MalformedToken,
    }
}
