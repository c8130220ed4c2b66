//! Reads the HTTP `Authorization` header: `Bearer <jwt>`, or `Basic base64(<jwt>:)` as Segment sends
//! a write key (the key as user name, an empty password).

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::{AuthError, Result};

/// Longest header value looked at.
const MAX_HEADER_LEN: usize = 16 * 1024;

/// Standard base64, padded or not (clients differ).
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Extracts the token from an `Authorization` header value. The scheme is matched case-insensitively.
/// A bearer token is borrowed from the header; a Basic one is decoded into a string of its own.
///
/// # Errors
/// [`AuthError::UnsupportedScheme`] for schemes other than `Bearer` and `Basic`;
/// [`AuthError::MalformedAuthorization`] for an empty or oversized value, a token containing
/// whitespace, undecodable Basic credentials, a Basic value without `:`, or a non-empty Basic password
/// (a password is never expected, so one is refused rather than silently ignored).
pub fn token_from_authorization(value: &str) -> Result<Cow<'_, str>> {
    if value.len() > MAX_HEADER_LEN {
        return Err(AuthError::MalformedAuthorization);
    }
    let value = value.trim();
    let (scheme, credentials) = value.split_once([' ', '\t']).ok_or(AuthError::MalformedAuthorization)?;
    let credentials = credentials.trim();
    if credentials.is_empty() || credentials.contains(char::is_whitespace) {
        return Err(AuthError::MalformedAuthorization);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Cow::Borrowed(credentials))
    } else if scheme.eq_ignore_ascii_case("basic") {
        basic_user(credentials).map(Cow::Owned)
    } else {
        Err(AuthError::UnsupportedScheme)
    }
}

fn basic_user(credentials: &str) -> Result<String> {
    let decoded = Zeroizing::new(BASIC.decode(credentials).map_err(|_| AuthError::MalformedAuthorization)?);
    let decoded = std::str::from_utf8(&decoded).map_err(|_| AuthError::MalformedAuthorization)?;
    match decoded.split_once(':') {
        Some((user, "")) if !user.is_empty() && !user.contains(char::is_whitespace) => Ok(user.to_owned()),
        _ => Err(AuthError::MalformedAuthorization),
    }
}
