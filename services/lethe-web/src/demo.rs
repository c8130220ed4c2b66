//! The demo shop (`lethe serve --demo`): a homepage with a personalized hero banner, a
//! recommendations strip, a call-to-action slot and product tiles marked for click tracking, and a
//! "your privacy" page that exports, opts out and erases through the subject rights API. Each page
//! embeds the SDK with a short-lived write key minted for the origin it is served on; the privacy
//! page gets a subject token for the visitor's anonymous id from `POST /demo/subject-token`.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use lethe_auth::{Issuer, Role};
use lethe_collect::ApiError;
use lethe_domain::SubjectId;
use serde::Deserialize;
use serde_json::json;

use crate::WebState;

const HOME: &str = include_str!("../assets/demo.html");
const PRIVACY: &str = include_str!("../assets/privacy.html");
/// The images the demo's slot variants name (policies/slots.toml).
const IMAGES: [(&str, &str); 2] = [
    ("hero-default.svg", include_str!("../assets/hero-default.svg")),
    ("hero-outdoor.svg", include_str!("../assets/hero-outdoor.svg")),
];

/// How long the write key embedded in a demo page is valid.
const SITE_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// How long a subject token handed out by the demo is valid.
const SUBJECT_TOKEN_TTL: Duration = Duration::from_secs(600);

/// `scheme://host[:port]` of the request, as the browser that sent it sees it.
fn origin_of(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A write key of the site `demo`, valid from `origin` only.
fn site_token(state: &WebState, origin: String) -> Result<String, ApiError> {
    let auth = &state.collect.auth;
    let keys = auth.keys.read().map_err(|_| ApiError::new(500, "internal", "key lock"))?;
    Issuer::issue(&keys, &auth.config, Role::Site, SITE_TOKEN_TTL, None, Some("demo"), &[origin])
        .map_err(ApiError::from)
}

/// A token that acts for `subject` only.
fn subject_token(state: &WebState, subject: &SubjectId) -> Result<String, ApiError> {
    let auth = &state.collect.auth;
    let keys = auth.keys.read().map_err(|_| ApiError::new(500, "internal", "key lock"))?;
    Issuer::issue(&keys, &auth.config, Role::Subject, SUBJECT_TOKEN_TTL, Some(subject), None, &[])
        .map_err(ApiError::from)
}

/// The collector's limit per client address guards the demo's endpoints too.
fn limit(state: &WebState, req: &HttpRequest) -> Result<(), ApiError> {
    if let Some(addr) = req.peer_addr() {
        state.collect.limits.address(addr.ip()).map_err(|r| ApiError::rate_limited(r.0))?;
    }
    Ok(())
}

fn page(state: &WebState, req: &HttpRequest, template: &str) -> Result<HttpResponse, ApiError> {
    limit(state, req)?;
    let write_key = site_token(state, origin_of(req))?;
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let html = template
        .replace("{{NONCE}}", &nonce)
        .replace("{{SDK_PATH}}", &state.asset.path())
        .replace("{{INTEGRITY}}", &state.asset.integrity)
        .replace("{{WRITE_KEY}}", &html_escape(&write_key));
    let csp = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: https:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // The page holds a write key minted for this request.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::REFERRER_POLICY, "strict-origin-when-cross-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(html))
}

/// `GET /demo`.
pub(crate) async fn home(state: web::Data<WebState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    page(&state, &req, HOME)
}

/// `GET /demo/privacy`.
pub(crate) async fn privacy(state: web::Data<WebState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    page(&state, &req, PRIVACY)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubjectTokenBody {
    anonymous_id: String,
}

/// `POST /demo/subject-token {anonymousId}`: a subject token for that id, for the privacy page.
/// Anyone may ask for any id: this is why the demo is off unless `--demo` is given.
pub(crate) async fn issue_subject_token(
    state: web::Data<WebState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    limit(&state, &req)?;
    if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        if origin != origin_of(&req) {
            return Err(ApiError::new(403, "origin_not_allowed", "the demo hands out tokens to its own pages only"));
        }
    }
    if body.len() > 1024 {
        return Err(ApiError::new(413, "payload_too_large", "the body holds at most 1 KB"));
    }
    let parsed: SubjectTokenBody = lethe_collect::json::object(&body)?;
    let id = lethe_collect::subject_id(&parsed.anonymous_id)?;
    let token = subject_token(&state, &id)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"token": token, "expiresIn": SUBJECT_TOKEN_TTL.as_secs()})))
}

/// `GET /demo/assets/{name}`: the demo's images.
pub(crate) async fn image(name: web::Path<String>) -> HttpResponse {
    match IMAGES.iter().find(|(n, _)| *n == name.as_str()) {
        Some((_, svg)) => HttpResponse::Ok()
            .content_type("image/svg+xml")
            .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
            .body(*svg),
        None => HttpResponse::NotFound().json(json!({"code": "not_found", "message": "no such demo asset"})),
    }
}
