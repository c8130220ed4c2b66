//! Who is calling: the bearer token (or Segment's write key, sent as the Basic user name) is verified
//! and turned into a [`Principal`]; each endpoint then states the roles it admits. A site token is
//! also bound to its origins: a browser request from any other origin is refused.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Which `Auth` a worker thread's remembered credentials were verified by ([`Remembered`]).
    id: u64,
    /// Bumped whenever cached verifications are dropped: a thread's remembered credentials of an
    /// older generation are verified again.
    generation: AtomicU64,
}

/// Most tokens kept verified at once.
const MAX_VERIFIED: usize = 10_000;

/// Longest `Authorization` header a worker thread remembers.
const MAX_REMEMBERED: usize = 4096;

/// The last credentials a worker thread verified, as the `Authorization` header's bytes, and what
/// they verified to. A CMS sends the same header with every request: comparing it costs less than
/// parsing it, hashing the token and looking the digest up. Only principals bound to no subject are
/// remembered (an erasure's [`Auth::forget_subject`] reaches the shared cache; a thread's copy
/// would wait for the thread's next request), and the expiry is checked on every use.
struct Remembered {
    auth: u64,
    generation: u64,
    header: Vec<u8>,
    principal: Principal,
    exp: u64,
}

thread_local! {
    static REMEMBERED: RefCell<Option<Remembered>> = const { RefCell::new(None) };
}

/// Whether `a` and `b` hold the same bytes, in a time that depends on their length only: every
/// byte is compared, with no exit at the first difference, so that the time taken tells nothing of
/// how much of a remembered header a guess got right.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y))) == 0
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Auth {
    /// Checks tokens against `keys` and `config`.
    pub fn new(keys: SigningKeys, config: AuthConfig) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        Self {
            keys: RwLock::new(keys),
            config,
            verified: RwLock::new(HashMap::new()),
            id: IDS.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
        }
    }

    /// Verifies a token, from the cache when it was verified before and has not expired.
    ///
    /// # Errors
    /// The token does not verify.
    pub fn principal(&self, token: &str) -> Result<Principal, ApiError> {
        self.verify(token).map(|(p, _)| p)
    }

    /// [`Auth::principal`], with the token's expiry (Unix seconds).
    fn verify(&self, token: &str) -> Result<(Principal, u64), ApiError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((p, exp)) = self.verified.read().ok().and_then(|c| c.get(&digest).cloned()) {
            if unix_now() < exp {
                return Ok((p, exp));
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
        Ok((principal, exp))
    }

    /// The principal of an `Authorization` header: the one this thread verified last when the
    /// header is byte for byte the same (compared in a time independent of where it differs) and
    /// has not expired, or else parsed and verified as [`Auth::principal`] does.
    ///
    /// # Errors
    /// A malformed header, or a token that does not verify.
    pub fn principal_of_header(&self, header: &[u8]) -> Result<Principal, ApiError> {
        let generation = self.generation.load(Ordering::Acquire);
        let remembered = REMEMBERED.with_borrow(|r| {
            r.as_ref()
                .filter(|r| {
                    r.auth == self.id
                        && r.generation == generation
                        && same_bytes(&r.header, header)
                        && unix_now() < r.exp
                })
                .map(|r| r.principal.clone())
        });
        if let Some(p) = remembered {
            return Ok(p);
        }
        let malformed = || ApiError::new(401, "malformed_credentials", "bad authorization header");
        let value = std::str::from_utf8(header).map_err(|_| malformed())?;
        // As `HeaderValue::to_str`: visible ASCII and tabs only.
        if !value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            return Err(malformed());
        }
        let (principal, exp) = self.verify(&token_from_authorization(value)?)?;
        if principal.subject().is_none() && header.len() <= MAX_REMEMBERED {
            REMEMBERED.with_borrow_mut(|r| {
                // The header's buffer is reused from one verification to the next.
                let mut kept = r.take().map(|r| r.header).unwrap_or_default();
                kept.clear();
                kept.extend_from_slice(header);
                *r = Some(Remembered { auth: self.id, generation, header: kept, principal: principal.clone(), exp });
            });
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
        self.generation.fetch_add(1, Ordering::AcqRel);
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
    let principal = match (req.headers().get("authorization"), body_key) {
        (Some(header), _) => state.auth.principal_of_header(header.as_bytes())?,
        (None, Some(key)) => state.auth.principal(key)?,
        (None, None) => return Err(ApiError::new(401, "missing_credentials", "send a bearer token or a write key")),
    };
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lethe_auth::Issuer;
    use lethe_domain::SubjectId;

    use super::*;

    fn auth() -> (Auth, AuthConfig) {
        let config = AuthConfig { leeway_secs: 0, ..AuthConfig::default() };
        (Auth::new(SigningKeys::generate().unwrap(), config.clone()), config)
    }

    fn token(auth: &Auth, config: &AuthConfig, role: Role, ttl: u64, subject: Option<&SubjectId>) -> String {
        let keys = auth.keys.read().unwrap();
        Issuer::issue(&keys, config, role, Duration::from_secs(ttl), subject, None, &[]).unwrap()
    }

    /// A worker thread's remembered credentials answer only the same header, of the same `Auth`,
    /// until they expire; anything else is parsed and verified as before.
    #[test]
    fn remembered_credentials_answer_only_the_same_header_of_the_same_auth() {
        let (a, config) = auth();
        let cms = token(&a, &config, Role::Cms, 3600, None);
        let header = format!("Bearer {cms}");
        assert_eq!(a.principal_of_header(header.as_bytes()).unwrap().role(), Role::Cms);
        // Remembered now: the same header again, and the scheme's other spelling, parsed afresh.
        assert_eq!(a.principal_of_header(header.as_bytes()).unwrap().role(), Role::Cms);
        assert_eq!(a.principal_of_header(format!("bearer  {cms} ").as_bytes()).unwrap().role(), Role::Cms);
        // Another `Auth` (other keys) on this thread does not take what the first verified.
        let (b, _) = auth();
        let refused = b.principal_of_header(header.as_bytes()).unwrap_err();
        assert_eq!(refused.status, 401, "{refused:?}");
        assert_eq!(a.principal_of_header(header.as_bytes()).unwrap().role(), Role::Cms);
        // A header that differs in its last byte is verified, and refused.
        let mut tampered = header.clone().into_bytes();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(a.principal_of_header(&tampered).unwrap_err().status, 401);
        // Bytes `HeaderValue::to_str` refuses are refused as malformed, remembered or not.
        let mut control = header.clone().into_bytes();
        control.push(0x7f);
        assert_eq!(a.principal_of_header(&control).unwrap_err().code, "malformed_credentials");
        assert_eq!(a.principal_of_header(b"Bearer \xff").unwrap_err().code, "malformed_credentials");
    }

    /// An expired token is refused even right after this thread remembered it.
    #[test]
    fn remembered_credentials_expire() {
        let (a, config) = auth();
        let short = format!("Bearer {}", token(&a, &config, Role::Cms, 1, None));
        assert!(a.principal_of_header(short.as_bytes()).is_ok());
        std::thread::sleep(Duration::from_millis(2100));
        let refused = a.principal_of_header(short.as_bytes()).unwrap_err();
        assert_eq!(refused.status, 401, "{refused:?}");
    }

    /// A token bound to a subject is not remembered by the thread, so forgetting the subject after
    /// its erasure leaves no copy of its principal (R-ERASE-3); other tokens are verified again after
    /// a forget.
    #[test]
    fn r_erase_3_a_subjects_token_is_not_remembered_by_the_thread() {
        let (a, config) = auth();
        let subject = SubjectId::parse("user-7").unwrap();
        let own = format!("Bearer {}", token(&a, &config, Role::Subject, 3600, Some(&subject)));
        let p = a.principal_of_header(own.as_bytes()).unwrap();
        assert_eq!(p.subject(), Some(&subject));
        assert_eq!(a.cached_for(&subject), 1);
        assert!(REMEMBERED.with_borrow(|r| r.as_ref().is_none_or(|r| r.principal.subject().is_none())));
        a.forget_subject(&subject);
        assert_eq!(a.cached_for(&subject), 0);
        let cms = format!("Bearer {}", token(&a, &config, Role::Cms, 3600, None));
        a.principal_of_header(cms.as_bytes()).unwrap();
        let generation = a.generation.load(Ordering::Acquire);
        assert!(REMEMBERED.with_borrow(|r| r.as_ref().is_some_and(|r| r.generation == generation)));
        a.forget_subject(&subject);
        assert_ne!(a.generation.load(Ordering::Acquire), generation, "a forget outdates what threads remember");
        assert_eq!(a.principal_of_header(cms.as_bytes()).unwrap().role(), Role::Cms);
    }
}
