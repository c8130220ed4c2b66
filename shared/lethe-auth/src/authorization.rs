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

/// Whether `s` holds any whitespace; an ASCII string (every token) is checked byte by byte, a faster
/// scan than by `char` on the path of every request.
fn has_whitespace(s: &str) -> bool {
    if s.is_ascii() {
        s.bytes().any(|b| b.is_ascii_whitespace() || b == 0x0b)
    } else {
        s.contains(char::is_whitespace)
    }
}

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
    if credentials.is_empty() || has_whitespace(credentials) {
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
        Some((user, "")) if !user.is_empty() && !has_whitespace(user) => Ok(user.to_owned()),
        _ => Err(AuthError::MalformedAuthorization),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte scan finds whitespace exactly where the `char` scan does.
    #[test]
    fn whitespace_is_found_as_by_char() {
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let s = format!("ab{c}cd");
            assert_eq!(has_whitespace(&s), s.contains(char::is_whitespace), "U+{:04X}", c as u32);
        }
        assert!(matches!(token_from_authorization("Bearer ab\u{b}cd"), Err(AuthError::MalformedAuthorization)));
        assert_eq!(token_from_authorization("bearer abc").unwrap(), "abc");
    }
}
