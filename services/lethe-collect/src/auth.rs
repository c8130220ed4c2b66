//! Who is calling: the bearer token (or Segment's write key, sent as the Basic user name) is verified
//! and turned into a [`Principal`]; each endpoint then states the roles it admits. A site token is
//! also bound to its origins: a browser request from any other origin is refused.

use std::sync::RwLock;

use actix_web::HttpRequest;
use lethe_auth::{token_from_authorization, AuthConfig, AuthError, Principal, Role, SigningKeys, Verifier};

use crate::ratelimit::RetryAfter;
use crate::{ApiError, CollectState};

/// The keys and settings tokens are checked against.
#[derive(Debug)]
pub struct Auth {
    pub keys: RwLock<SigningKeys>,
    pub config: AuthConfig,
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
    let limited = |r: RetryAfter| ApiError::new(429, "rate_limited", format!("too many requests; retry in {} s", r.0));
    if let Some(addr) = req.peer_addr() {
        state.limits.address(addr.ip()).map_err(limited)?;
    }
    let auth = &state.auth;
    let token = match (req.headers().get("authorization"), body_key) {
        (Some(header), _) => {
            let header =
                header.to_str().map_err(|_| ApiError::new(401, "malformed_credentials", "bad authorization header"))?;
            token_from_authorization(header)?
        }
        (None, Some(key)) => key.to_owned(),
        (None, None) => return Err(ApiError::new(401, "missing_credentials", "send a bearer token or a write key")),
    };
    let keys = auth.keys.read().map_err(|_| ApiError::new(500, "internal", "key lock"))?;
    let principal = Verifier::authenticate(&keys, &auth.config, &token)?;
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
