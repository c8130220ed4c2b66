//! Who is calling: the bearer token (or Segment's write key, sent as the Basic user name) is verified
//! and turned into a [`Principal`]; each endpoint then states the roles it admits. A site token is
//! also bound to its origins: a browser request from any other origin is refused.

use std::collections::HashMap;
use std::sync::RwLock;

use actix_web::HttpRequest;
use lethe_auth::{token_from_authorization, AuthConfig, AuthError, Principal, Role, SigningKeys, Verifier};
use sha2::{Digest, Sha256};

use crate::ratelimit::RetryAfter;
use crate::{ApiError, CollectState};

/// The keys and settings tokens are checked against, and a cache of tokens already verified.
#[derive(Debug)]
pub struct Auth {
    pub keys: RwLock<SigningKeys>,
    pub config: AuthConfig,
    /// SHA-256 of a verified token → its principal and expiry (Unix seconds). A hit skips the
    /// signature check, never the expiry check; the cache is emptied when full.
    verified: RwLock<HashMap<[u8; 32], (Principal, u64)>>,
}

/// Most tokens kept verified at once.
const MAX_VERIFIED: usize = 10_000;

impl Auth {
    /// Checks tokens against `keys` and `config`.
    pub fn new(keys: SigningKeys, config: AuthConfig) -> Self {
        Self { keys: RwLock::new(keys), config, verified: RwLock::new(HashMap::new()) }
    }

    /// Verifies a token, from the cache when it was verified before and has not expired.
    ///
    /// # Errors
    /// The token does not verify.
    pub fn principal(&self, token: &str) -> Result<Principal, ApiError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Some((p, exp)) = self.verified.read().ok().and_then(|c| c.get(&digest).cloned()) {
            if now < exp {
                return Ok(p);
            }
        }
        let keys = self.keys.read().map_err(|_| ApiError::new(500, "internal", "key lock"))?;
        let claims = Verifier::verify(&keys, &self.config, token)?;
        let exp = claims.exp;
        let principal = Principal::try_from(claims)?;
        if let Ok(mut cache) = self.verified.write() {
            if cache.len() >= MAX_VERIFIED {
                cache.clear();
            }
            cache.insert(digest, (principal.clone(), exp));
        }
        Ok(principal)
    }
}

impl Auth {
    /// Drops every cached verification of a token bound to `subject` (after its erasure, so that the
    /// cache holds no identifier of an erased subject). The tokens still verify if presented again.
    pub fn forget_subject(&self, subject: &lethe_domain::SubjectId) {
        if let Ok(mut cache) = self.verified.write() {
            cache.retain(|_, (p, _)| p.subject() != Some(subject));
        }
    }

    /// How many verified tokens are cached for `subject`.
    pub fn cached_for(&self, subject: &lethe_domain::SubjectId) -> usize {
        self.verified.read().map_or(0, |c| c.values().filter(|(p, _)| p.subject() == Some(subject)).count())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(e.http_status(), e.code(), e.to_string())
    }
}

/// Verifies the request's credentials and checks the role.
///
/// # Errors
/// 429 over a rate limit, 401 without valid credentials, 403 for a role not in `roles` or a site
/// token used from an origin it does not list.
pub fn authorize(req: &HttpRequest, state: &CollectState, roles: &[Role]) -> Result<Principal, ApiError> {
    authorize_with(req, state, roles, None)
}

/// [`authorize`], with a write key taken from the body when the request has no `Authorization`
/// header: `navigator.sendBeacon` cannot set headers, so Segment's browser library puts the write key
/// in the body (`writeKey`).
///
/// # Errors
/// As [`authorize`].
pub fn authorize_with(
    req: &HttpRequest,
    state: &CollectState,
    roles: &[Role],
    body_key: Option<&str>,
) -> Result<Principal, ApiError> {
    let limited = |r: RetryAfter| ApiError::rate_limited(r.0);
    if let Some(addr) = req.peer_addr() {
        state.limits.address(addr.ip()).map_err(limited)?;
    }
    let token = match (req.headers().get("authorization"), body_key) {
        (Some(header), _) => {
            let header =
                header.to_str().map_err(|_| ApiError::new(401, "malformed_credentials", "bad authorization header"))?;
            token_from_authorization(header)?
        }
        (None, Some(key)) => std::borrow::Cow::Borrowed(key),
        (None, None) => return Err(ApiError::new(401, "missing_credentials", "send a bearer token or a write key")),
    };
    let principal = state.auth.principal(&token)?;
    state.limits.key(principal.site().unwrap_or(principal.jti())).map_err(limited)?;
    principal.require(roles)?;
    if principal.role() == Role::Site {
        if let Some(origin) = req.headers().get("origin").and_then(|o| o.to_str().ok()) {
            if !principal.allows_origin(origin) {
                return Err(ApiError::new(403, "origin_not_allowed", "this write key is not valid on this origin"));
            }
        }
    }
    Ok(principal)
}
