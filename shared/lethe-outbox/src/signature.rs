//! Webhook signatures, Stripe's scheme under Lethe's header name: `Lethe-Signature: t=<unix secs>,v1=<hex>`
//! where the hex is HMAC-SHA256 under the recipient's secret of `"<t>.<raw body>"`.
//!
//! A recipient recomputes the MAC over the exact bytes it received, compares in constant time, and refuses a
//! timestamp too far from its clock (replay window). Several `v1=` entries may appear (secret rotation); one
//! match is enough. Unknown schemes (`v0=`…) are ignored.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use lethe_domain::UtcMicros;
use sha2::Sha256;

use crate::{OutboxError, Result, WebhookSecret};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Lethe-Signature";
/// The header carrying the message id; the same on every retry, so recipients deduplicate on it.
pub const DELIVERY_HEADER: &str = "Lethe-Delivery";
/// The header carrying the topic (also inside the signed envelope).
pub const TOPIC_HEADER: &str = "Lethe-Topic";
/// The replay window recipients should use unless they have a reason not to (Stripe's default).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Longest signature header accepted by [`verify_signature`], in bytes.
const MAX_HEADER_LEN: usize = 4096;
/// Hex digits in one HMAC-SHA256 signature.
const SIG_HEX_LEN: usize = 64;

fn keyed(secret: &WebhookSecret, t: i64, body: &[u8]) -> Result<Hmac<Sha256>> {
    // HMAC accepts keys of any length; the error cannot happen, but it is not unwrapped.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose()).map_err(|_| OutboxError::Encode)?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// The `Lethe-Signature` value for `body` sent at `t` (Unix seconds).
///
/// # Errors
/// [`OutboxError::Encode`] if the MAC cannot be keyed (never, for HMAC).
pub fn signature_header(secret: &WebhookSecret, t: i64, body: &[u8]) -> Result<String> {
    let mac = keyed(secret, t, body)?;
    Ok(format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes())))
}

/// Verifies a `Lethe-Signature` header against the raw request body, as a recipient does.
///
/// `now` is the recipient's clock; the header's timestamp must lie within `tolerance` of it either way.
///
/// # Errors
/// [`OutboxError::MalformedSignature`] if the header is not `t=<secs>,v1=<64 hex>[,…]` (or is over 4 KiB);
/// [`OutboxError::SignatureMismatch`] if no `v1` matches (wrong secret, or a body changed in transit);
/// [`OutboxError::SignatureExpired`] if the signature matches but its timestamp is outside the window.
pub fn verify_signature(
    secret: &WebhookSecret,
    header: &str,
    body: &[u8],
    now: UtcMicros,
    tolerance: Duration,
) -> Result<()> {
    if header.len() > MAX_HEADER_LEN {
        return Err(OutboxError::MalformedSignature);
    }
    let mut t: Option<i64> = None;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(OutboxError::MalformedSignature)?;
        match key {
            "t" => {
                let parsed = value.parse::<i64>().map_err(|_| OutboxError::MalformedSignature)?;
                if t.replace(parsed).is_some() {
                    return Err(OutboxError::MalformedSignature);
                }
            }
            "v1" => {
                if value.len() != SIG_HEX_LEN {
                    return Err(OutboxError::MalformedSignature);
                }
                candidates.push(hex::decode(value).map_err(|_| OutboxError::MalformedSignature)?);
            }
            _ => {}
        }
    }
    let t = t.ok_or(OutboxError::MalformedSignature)?;
    if candidates.is_empty() {
        return Err(OutboxError::MalformedSignature);
    }
    let mac = keyed(secret, t, body).map_err(|_| OutboxError::SignatureMismatch)?;
    // `verify_slice` compares in constant time.
    if !candidates.iter().any(|c| mac.clone().verify_slice(c).is_ok()) {
        return Err(OutboxError::SignatureMismatch);
    }
    let now_secs = now.0.div_euclid(1_000_000);
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now_secs.abs_diff(t) > tolerance.unsigned_abs() {
        return Err(OutboxError::SignatureExpired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000;

    fn secret() -> WebhookSecret {
        WebhookSecret::new("whsec_test_secret_0123456789").unwrap()
    }

    fn at(secs: i64) -> UtcMicros {
        UtcMicros(secs * 1_000_000)
    }

    #[test]
    fn round_trip() {
        let h = signature_header(&secret(), T, b"{\"a\":1}").unwrap();
        assert!(h.starts_with("t=1700000000,v1="));
        verify_signature(&secret(), &h, b"{\"a\":1}", at(T + 10), DEFAULT_TOLERANCE).unwrap();
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256(key = "whsec_test_secret_0123456789", "1700000000.hello"), computed independently.
        let h = signature_header(&secret(), T, b"hello").unwrap();
        let expected = {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"whsec_test_secret_0123456789").unwrap();
            mac.update(b"1700000000.hello");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(h, format!("t={T},v1={expected}"));
    }

    #[test]
    fn rejects_tampering_wrong_secret_and_staleness() {
        let h = signature_header(&secret(), T, b"body").unwrap();
        let other = WebhookSecret::new("whsec_another_secret_000000").unwrap();
        assert!(matches!(
            verify_signature(&secret(), &h, b"bodY", at(T), DEFAULT_TOLERANCE),
            Err(OutboxError::SignatureMismatch)
        ));
        assert!(matches!(
            verify_signature(&other, &h, b"body", at(T), DEFAULT_TOLERANCE),
            Err(OutboxError::SignatureMismatch)
        ));
        assert!(matches!(
            verify_signature(&secret(), &h, b"body", at(T + 301), DEFAULT_TOLERANCE),
            Err(OutboxError::SignatureExpired)
        ));
        assert!(matches!(
            verify_signature(&secret(), &h, b"body", at(T - 301), DEFAULT_TOLERANCE),
            Err(OutboxError::SignatureExpired)
        ));
        // A changed timestamp breaks the MAC.
        let shifted = h.replace("t=1700000000", "t=1700000100");
        assert!(matches!(
            verify_signature(&secret(), &shifted, b"body", at(T + 100), DEFAULT_TOLERANCE),
            Err(OutboxError::SignatureMismatch)
        ));
    }

    #[test]
    fn accepts_any_matching_v1_and_ignores_other_schemes() {
        let h = signature_header(&secret(), T, b"x").unwrap();
        let v1 = h.split_once(",v1=").unwrap().1;
        let rotated = format!("t={T},v0=abc,v1={},v1={v1}", "0".repeat(64));
        verify_signature(&secret(), &rotated, b"x", at(T), DEFAULT_TOLERANCE).unwrap();
    }

    #[test]
    fn rejects_malformed_headers() {
        let sig = "a".repeat(64);
        for bad in [
            String::new(),
            "t=1".to_owned(),
            format!("v1={sig}"),
            format!("t=abc,v1={sig}"),
            format!("t=1,t=2,v1={sig}"),
            "t=1,v1=zz".to_owned(),
            format!("t=1,v1={}", "g".repeat(64)),
            format!("t=1,junk,v1={sig}"),
            format!("t=1,v1={sig},{}", "x=y,".repeat(2000)),
        ] {
            assert!(
                matches!(
                    verify_signature(&secret(), &bad, b"x", at(1), DEFAULT_TOLERANCE),
                    Err(OutboxError::MalformedSignature)
                ),
                "{bad:.80}"
            );
        }
    }
}
