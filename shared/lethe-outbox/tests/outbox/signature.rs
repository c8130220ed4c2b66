//! The recipient's side of signatures, through the public API.

use std::time::Duration;

use lethe_domain::UtcMicros;
use lethe_outbox::{signature_header, verify_signature, OutboxError, WebhookSecret, DEFAULT_TOLERANCE};

use crate::helpers::{secret, T0};

#[test]
fn a_tampered_body_fails_verification() {
    let body = br#"{"id":"x","topic":"subject.erased","created_at":1,"data":{"erasure_request":"er-1"}}"#;
    let t = T0.0 / 1_000_000;
    let header = signature_header(&secret(), t, body).unwrap();
    verify_signature(&secret(), &header, body, T0, DEFAULT_TOLERANCE).unwrap();

    let tampered = String::from_utf8_lossy(body).replace("er-1", "er-2");
    assert!(matches!(
        verify_signature(&secret(), &header, tampered.as_bytes(), T0, DEFAULT_TOLERANCE),
        Err(OutboxError::SignatureMismatch)
    ));
    let other = WebhookSecret::new("whsec_someone_else_000000").unwrap();
    assert!(matches!(
        verify_signature(&other, &header, body, T0, DEFAULT_TOLERANCE),
        Err(OutboxError::SignatureMismatch)
    ));
    // A replay ten minutes later is refused with the default five-minute window, accepted with a wider one.
    let later = UtcMicros(T0.0 + 600 * 1_000_000);
    assert!(matches!(
        verify_signature(&secret(), &header, body, later, DEFAULT_TOLERANCE),
        Err(OutboxError::SignatureExpired)
    ));
    verify_signature(&secret(), &header, body, later, Duration::from_secs(900)).unwrap();
}
