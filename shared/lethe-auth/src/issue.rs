//! Token issuance: builds the claim set for a role and signs it with the current `EdDSA` key.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use lethe_domain::SubjectId;

use crate::{AuthConfig, AuthError, Claims, Result, Role, SigningKeys};

/// Signs tokens. Stateless: the keys and settings are passed in on every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Issuer;

impl Issuer {
    /// Issues a token for `role`, valid from now for `ttl` (whole seconds), signed with the current key
    /// (`alg: EdDSA`, `kid` in the header), with a fresh UUID v4 `jti`.
    ///
    /// `subject_id` is required for [`Role::Subject`] and refused for every other role; `site` is
    /// required for [`Role::Site`] and refused otherwise, as are non-empty `origins`.
    ///
    /// # Errors
    /// [`AuthError::InvalidGrant`] when the role rules above are broken, `ttl` is under one second,
    /// the site or an origin is empty, or the expiry overflows; [`AuthError::Signing`] if the JWT
    /// library fails to sign.
    pub fn issue(
        keys: &SigningKeys,
        config: &AuthConfig,
        role: Role,
        ttl: Duration,
        subject_id: Option<&SubjectId>,
        site: Option<&str>,
        origins: &[String],
    ) -> Result<String> {
        if ttl.as_secs() == 0 {
            return Err(AuthError::InvalidGrant("ttl must be at least one second"));
        }
        if site.is_some_and(str::is_empty) {
            return Err(AuthError::InvalidGrant("site must not be empty"));
        }
        if origins.iter().any(String::is_empty) {
            return Err(AuthError::InvalidGrant("origins must not be empty"));
        }
        let now = crate::now_unix();
        let exp = now.checked_add(ttl.as_secs()).ok_or(AuthError::InvalidGrant("ttl too large"))?;
        let sub = match site {
            Some(site) => format!("site:{site}"),
            None => role.as_str().to_owned(),
        };
        let claims = Claims {
            iss: config.issuer.clone(),
            aud: config.audience.clone(),
            sub,
            role,
            exp,
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            subject_id: subject_id.map(|id| id.expose().to_owned()),
            site: site.map(str::to_owned),
            origins: origins.to_vec(),
        };
        Self::sign(keys, &claims)
    }

    /// Signs a claim set exactly as given, with the current key. For callers that need to control
    /// every claim (tests of expiry, tokens minted for a migration); [`Issuer::issue`] is the usual path.
    ///
    /// # Errors
    /// [`AuthError::InvalidGrant`] when the claims break the role rules documented on [`Claims`];
    /// [`AuthError::Signing`] if the JWT library fails to sign.
    pub fn sign(keys: &SigningKeys, claims: &Claims) -> Result<String> {
        if let Some(rule) = claims.role_violation() {
            return Err(AuthError::InvalidGrant(rule));
        }
        crate::ensure_crypto_provider();
        let (kid, key) = keys.current_encoding();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, key).map_err(|_| AuthError::Signing)
    }
}
