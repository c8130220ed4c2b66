//! The `Authorization` header: Bearer, and Basic with the token as user name and an empty password.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use lethe_auth::{token_from_authorization, AuthError, Role, Verifier};
use proptest::prelude::*;

use crate::{config, issue, keys};

#[test]
fn bearer_yields_the_token() {
    assert_eq!(token_from_authorization("Bearer a.b.c").unwrap(), "a.b.c");
    assert_eq!(token_from_authorization("bearer a.b.c").unwrap(), "a.b.c");
    assert_eq!(token_from_authorization("  BEARER   a.b.c  ").unwrap(), "a.b.c");
}

#[test]
fn basic_yields_the_user_name_as_segment_sends_it() {
    let padded = format!("Basic {}", STANDARD.encode("a.b.c:"));
    assert_eq!(token_from_authorization(&padded).unwrap(), "a.b.c");
    let unpadded = format!("basic {}", STANDARD_NO_PAD.encode("abcd.ef:"));
    assert_eq!(token_from_authorization(&unpadded).unwrap(), "abcd.ef");
}

#[test]
fn a_real_token_survives_both_schemes_and_verifies() {
    let keys = keys();
    let token = issue(&keys, Role::Site);
    for header in [format!("Bearer {token}"), format!("Basic {}", STANDARD.encode(format!("{token}:")))] {
        let extracted = token_from_authorization(&header).unwrap();
        assert_eq!(extracted, token);
        let principal = Verifier::authenticate(&keys, &config(), &extracted).unwrap();
        assert_eq!(principal.site(), Some("shop-1"));
    }
}

#[test]
fn malformed_values_are_refused() {
    let cases = [
        String::new(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer a b".to_owned(),
        "Basic".to_owned(),
        "Basic !!!notbase64".to_owned(),
        format!("Basic {}", STANDARD.encode("no-colon")),
        format!("Basic {}", STANDARD.encode("user:password")),
        format!("Basic {}", STANDARD.encode(":")),
        format!("Basic {}", STANDARD.encode(b"\xff\xfe:")),
        format!("Bearer {}", "a".repeat(20_000)),
    ];
    for value in cases {
        let err = token_from_authorization(&value).unwrap_err();
        assert_eq!(err, AuthError::MalformedAuthorization, "{value:.40}");
        assert_eq!(err.code(), "malformed_authorization");
    }
}

#[test]
fn other_schemes_are_unsupported() {
    for value in ["Digest username=x", "Token abc", "Negotiate abc", "Bearer: abc"] {
        let err = token_from_authorization(value).unwrap_err();
        assert_eq!(err, AuthError::UnsupportedScheme, "{value}");
        assert_eq!(err.code(), "unsupported_auth_scheme");
    }
}

proptest! {
    #[test]
    fn arbitrary_header_values_never_panic(value in any::<String>()) {
        if let Ok(token) = token_from_authorization(&value) {
            prop_assert!(!token.is_empty() && !token.contains(char::is_whitespace));
        }
    }

    #[test]
    fn bearer_round_trips_any_token68(token in "[A-Za-z0-9._~+/-]{1,200}") {
        let bearer = format!("Bearer {token}");
        prop_assert_eq!(token_from_authorization(&bearer).unwrap(), token.clone());
        let basic = format!("Basic {}", STANDARD.encode(format!("{token}:")));
        prop_assert_eq!(token_from_authorization(&basic).unwrap(), token);
    }
}
