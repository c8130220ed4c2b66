//! The token vocabulary: roles, the JWT claim set Lethe signs, and the issuer/audience settings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who a token speaks for. Serialized lowercase (`"site"`, `"cms"`, `"subject"`, `"dpo"`, `"admin"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A website's collection key (Segment-style write key): sends events for its own site.
    Site,
    /// A content-management system asking for recommendations.
    Cms,
    /// One data subject acting on their own data (access, export, erasure).
    Subject,
    /// The data-protection officer: audit and records of processing.
    Dpo,
    /// An operator: may act for any subject.
    Admin,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Self; 5] = [Self::Site, Self::Cms, Self::Subject, Self::Dpo, Self::Admin];

    /// The lowercase name used on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Site => "site",
            Self::Cms => "cms",
            Self::Subject => "subject",
            Self::Dpo => "dpo",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claim set of a Lethe token (payload version 1). `Serialize` here is a wire promise: tokens
/// already handed out must keep verifying, so fields are only ever added as optional.
///
/// Role rules (checked both when issuing and when verifying):
/// - `subject_id` is present exactly for [`Role::Subject`];
/// - `site` is present exactly for [`Role::Site`], and `origins` is empty for every other role.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer, compared with [`AuthConfig::issuer`].
    pub iss: String,
    /// Audience, compared with [`AuthConfig::audience`].
    pub aud: String,
    /// The principal's name: `site:<site>` for site tokens, the role name otherwise. It never holds a
    /// subject id; that lives in `subject_id` only.
    pub sub: String,
    /// The role the token grants.
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch.
    pub nbf: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Unique token id (UUID v4), for revocation lists and audit.
    pub jti: String,
    /// For [`Role::Subject`] only: the external subject id the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<String>,
    /// For [`Role::Site`] only: the site the key belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// For [`Role::Site`] only: origins allowed by CORS for this site.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
}

impl Claims {
    /// Checks the role rules; returns the broken rule's description.
    pub(crate) fn role_violation(&self) -> Option<&'static str> {
        let is_subject = self.role == Role::Subject;
        let is_site = self.role == Role::Site;
        if is_subject != self.subject_id.is_some() {
            return Some(if is_subject {
                "subject token without subject id"
            } else {
                "subject id on a non-subject token"
            });
        }
        if is_site != self.site.is_some() {
            return Some(if is_site { "site token without site" } else { "site on a non-site token" });
        }
        if !is_site && !self.origins.is_empty() {
            return Some("origins on a non-site token");
        }
        None
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("iss", &self.iss)
            .field("aud", &self.aud)
            .field("sub", &self.sub)
            .field("role", &self.role)
            .field("exp", &self.exp)
            .field("nbf", &self.nbf)
            .field("iat", &self.iat)
            .field("jti", &self.jti)
            .field("subject_id", &self.subject_id.as_ref().map(|_| "<redacted>"))
            .field("site", &self.site)
            .field("origins", &self.origins)
            .finish()
    }
}

/// What a token must say about where it comes from and whom it is for, and the clock skew tolerated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    /// Expected `iss`; default `"lethe"`.
    pub issuer: String,
    /// Expected `aud`; default `"lethe-api"`.
    pub audience: String,
    /// Seconds of clock skew tolerated on `exp` and `nbf`; default 30, capped at
    /// [`AuthConfig::MAX_LEEWAY_SECS`] when verifying.
    pub leeway_secs: u64,
}

impl AuthConfig {
    /// The largest leeway honoured; larger settings are clamped to it.
    pub const MAX_LEEWAY_SECS: u64 = 300;
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { issuer: "lethe".to_owned(), audience: "lethe-api".to_owned(), leeway_secs: 30 }
    }
}
