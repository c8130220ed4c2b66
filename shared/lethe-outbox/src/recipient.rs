//! Recipients: who receives notifications, where, and the secret their notifications are signed with.

use std::fmt;

use reqwest::Url;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::{OutboxError, Result};

/// A shared webhook signing secret. It never prints (`Debug` is redacted, there is no `Display`) and its
/// bytes are wiped when dropped.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<String>);

impl WebhookSecret {
    /// Shortest accepted secret, in bytes.
    pub const MIN_LEN: usize = 16;

    /// Wraps a secret (used as raw bytes, as Stripe uses its `whsec_…` strings).
    ///
    /// # Errors
    /// [`OutboxError::WeakSecret`] if shorter than [`Self::MIN_LEN`] bytes.
    pub fn new(secret: impl Into<String>) -> Result<Self> {
        let secret = Zeroizing::new(secret.into());
        if secret.len() < Self::MIN_LEN {
            return Err(OutboxError::WeakSecret { min: Self::MIN_LEN });
        }
        Ok(Self(secret))
    }

    /// The secret's bytes, for computing a MAC only.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl TryFrom<String> for WebhookSecret {
    type Error = OutboxError;

    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for WebhookSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = Zeroizing::new(String::deserialize(d)?);
        Self::new(raw.as_str()).map_err(serde::de::Error::custom)
    }
}

/// A party that received a subject's data and must be told of its erasure (GDPR Art. 19): a stable id,
/// a display name, the `http`/`https` endpoint notifications are posted to, and the signing secret.
///
/// Built with [`Recipient::new`], or deserialized from configuration (`id`, `name`, `endpoint`, optional
/// `secret`) with the same checks. Without a secret, notifications go unsigned: acceptable in development
/// only.
#[derive(Clone, Deserialize)]
#[serde(try_from = "RecipientConfig")]
pub struct Recipient {
    id: String,
    name: String,
    endpoint: Url,
    secret: Option<WebhookSecret>,
}

/// The configuration form of a [`Recipient`], checked by `TryFrom`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientConfig {
    id: String,
    name: String,
    endpoint: String,
    #[serde(default)]
    secret: Option<WebhookSecret>,
}

impl TryFrom<RecipientConfig> for Recipient {
    type Error = OutboxError;

    fn try_from(c: RecipientConfig) -> Result<Self> {
        Self::new(c.id, c.name, &c.endpoint, c.secret)
    }
}

impl Recipient {
    /// Longest accepted recipient id, in bytes.
    pub const MAX_ID_LEN: usize = 64;
    /// Longest accepted display name, in bytes.
    pub const MAX_NAME_LEN: usize = 200;

    /// Checks and builds a recipient.
    ///
    /// # Errors
    /// [`OutboxError::InvalidRecipientId`] unless `id` is 1 to 64 characters of `[A-Za-z0-9._-]`;
    /// [`OutboxError::InvalidRecipientName`] unless `name` is 1 to 200 bytes without control characters;
    /// [`OutboxError::InvalidEndpoint`] unless `endpoint` is an absolute `http` or `https` URL with a host
    /// and without credentials or fragment.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        endpoint: &str,
        secret: Option<WebhookSecret>,
    ) -> Result<Self> {
        let id = id.into();
        let name = name.into();
        if !valid_id(&id) {
            return Err(OutboxError::InvalidRecipientId);
        }
        if name.is_empty() || name.len() > Self::MAX_NAME_LEN || name.chars().any(char::is_control) {
            return Err(OutboxError::InvalidRecipientName);
        }
        let endpoint = parse_endpoint(endpoint)?;
        Ok(Self { id, name, endpoint, secret })
    }

    /// The recipient's stable id (stored in every message addressed to it).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The display name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL notifications are posted to. It may carry a token in its query: do not log it.
    #[must_use]
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The signing secret, if notifications to this recipient are signed.
    #[must_use]
    pub fn secret(&self) -> Option<&WebhookSecret> {
        self.secret.as_ref()
    }

    /// Whether the endpoint is plain `http` to a host other than loopback (worth a warning).
    pub(crate) fn is_insecure(&self) -> bool {
        if self.endpoint.scheme() != "http" {
            return false;
        }
        let host = self.endpoint.host_str().unwrap_or("");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        !loopback
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The endpoint may carry a token in its query; show only scheme and host.
        f.debug_struct("Recipient")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scheme", &self.endpoint.scheme())
            .field("host", &self.endpoint.host_str().unwrap_or(""))
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

/// Whether `id` is 1 to [`Recipient::MAX_ID_LEN`] characters of `[A-Za-z0-9._-]`.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= Recipient::MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn parse_endpoint(raw: &str) -> Result<Url> {
    let url = Url::parse(raw).map_err(|_| OutboxError::InvalidEndpoint("not an absolute url"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OutboxError::InvalidEndpoint("scheme must be http or https"));
    }
    if url.host().is_none() {
        return Err(OutboxError::InvalidEndpoint("missing host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboxError::InvalidEndpoint("credentials in the url are not allowed"));
    }
    if url.fragment().is_some() {
        return Err(OutboxError::InvalidEndpoint("fragment is not allowed"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> WebhookSecret {
        WebhookSecret::new("whsec_0123456789abcdef").unwrap()
    }

    #[test]
    fn accepts_http_and_https() {
        let r = Recipient::new("crm-1", "CRM", "https://crm.example/hooks/lethe?x=1", Some(secret())).unwrap();
        assert_eq!(r.id(), "crm-1");
        assert!(!r.is_insecure());
        let r = Recipient::new("local", "Local", "http://127.0.0.1:8080/hook", None).unwrap();
        assert!(!r.is_insecure());
        let r = Recipient::new("remote", "Remote", "http://crm.example/hook", None).unwrap();
        assert!(r.is_insecure());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(Recipient::new("", "n", "https://a.example", None), Err(OutboxError::InvalidRecipientId)));
        assert!(matches!(Recipient::new("a b", "n", "https://a.example", None), Err(OutboxError::InvalidRecipientId)));
        assert!(matches!(Recipient::new("a", "", "https://a.example", None), Err(OutboxError::InvalidRecipientName)));
        for bad in ["ftp://a.example/", "not a url", "https://u:p@a.example/", "https://a.example/#f", "mailto:x@y"] {
            assert!(matches!(Recipient::new("a", "n", bad, None), Err(OutboxError::InvalidEndpoint(_))), "{bad}");
        }
        assert!(matches!(WebhookSecret::new("short"), Err(OutboxError::WeakSecret { .. })));
    }

    #[test]
    fn secrets_and_endpoints_never_print() {
        let r = Recipient::new("a", "n", "https://a.example/hook?token=topsecret", Some(secret())).unwrap();
        let shown = format!("{r:?} {:?}", r.secret());
        assert!(!shown.contains("whsec_"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
    }

    #[test]
    fn deserializes_with_checks() {
        let ok: Recipient = serde_json::from_str(
            r#"{"id":"crm","name":"CRM","endpoint":"https://crm.example/h","secret":"whsec_0123456789abcdef"}"#,
        )
        .unwrap();
        assert!(ok.secret().is_some());
        let weak = serde_json::from_str::<Recipient>(
            r#"{"id":"crm","name":"CRM","endpoint":"https://crm.example/h","secret":"short"}"#,
        );
        assert!(weak.is_err());
        let bad = serde_json::from_str::<Recipient>(r#"{"id":"crm","name":"CRM","endpoint":"ftp://x"}"#);
        assert!(bad.is_err());
    }
}
