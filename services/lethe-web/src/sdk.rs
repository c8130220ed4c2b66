//! The consent SDK as served: its source (built into the binary from `sdk/src/lethe.js`), its
//! Subresource Integrity value and content-addressed path, and the handlers of `/sdk.js`,
//! `/sdk/lethe.<hash>.js` and `/sdk/config.json`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use sha2::{Digest, Sha384};

use crate::WebState;

/// The SDK's source, served as is.
pub const SOURCE: &str = include_str!("../../../sdk/src/lethe.js");

/// The SDK version, as `VERSION` in the source says (a test keeps the two equal).
pub const VERSION: &str = "1.0.0";

/// The header that carries the SDK's integrity value.
pub const INTEGRITY_HEADER: &str = "lethe-integrity";

/// The embedded SDK with its digests.
#[derive(Debug, Clone)]
pub struct SdkAsset {
    /// `sha384-<base64>`, for the `integrity` attribute of a `<script>` tag.
    pub integrity: String,
    /// The first 16 hex digits of the SHA-384: the content-addressed file name.
    pub hash: String,
    /// The strong `ETag`.
    pub etag: String,
}

impl SdkAsset {
    /// Digests [`SOURCE`].
    pub fn new() -> Self {
        let digest = Sha384::digest(SOURCE.as_bytes());
        let hex = hex::encode(digest);
        Self {
            integrity: format!("sha384-{}", base64::engine::general_purpose::STANDARD.encode(digest)),
            hash: hex[..16].to_owned(),
            etag: format!("\"{}\"", &hex[..32]),
        }
    }

    /// The long-cached path of this version: `/sdk/lethe.<hash>.js`.
    pub fn path(&self) -> String {
        format!("/sdk/lethe.{}.js", self.hash)
    }
}

impl Default for SdkAsset {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether the request's `If-None-Match` names `etag`.
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn script(state: &WebState, req: &HttpRequest, cache: &'static str) -> HttpResponse {
    let asset = &state.asset;
    let unchanged = not_modified(req, &asset.etag);
    let mut res = if unchanged { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::ETAG, asset.etag.clone()))
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((INTEGRITY_HEADER, asset.integrity.clone()))
        // Sites load it from another origin, with `crossorigin="anonymous"` for the integrity check.
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")))
        .insert_header(("cross-origin-resource-policy", "cross-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if unchanged {
        return res.finish();
    }
    res.content_type("text/javascript; charset=utf-8").body(SOURCE)
}

/// `GET /sdk.js`: the current SDK, revalidated every five minutes.
#[utoipa::path(get, path = "/sdk.js", tag = "sdk", summary = "The consent SDK a site embeds",
    description = "Also served, cached for a year, at `/sdk/lethe.<hash>.js` (the `sdk.path` of `/sdk/config.json`). The `Lethe-Integrity` header (and `sdk.integrity` in the configuration) is the value for the `integrity` attribute.",
    responses((status = 200, description = "the SDK", body = String, content_type = "text/javascript"), (status = 304, description = "not modified (strong ETag)")))]
pub async fn sdk_js(state: web::Data<WebState>, req: HttpRequest) -> HttpResponse {
    script(&state, &req, "public, max-age=300")
}

/// `GET /sdk/lethe.{hash}.js`: this version of the SDK, immutable.
pub async fn sdk_hashed(state: web::Data<WebState>, req: HttpRequest, hash: web::Path<String>) -> HttpResponse {
    if *hash != state.asset.hash {
        return HttpResponse::NotFound()
            .json(serde_json::json!({"code": "not_found", "message": "no such SDK version; see /sdk/config.json"}));
    }
    script(&state, &req, "public, max-age=31536000, immutable")
}

/// `GET /sdk/config.json`.
#[utoipa::path(get, path = "/sdk/config.json", tag = "sdk", summary = "What the SDK shows and how it maps consent",
    description = "The purposes, the current notice (id, version, content hash, texts per locale), the Google Consent Mode v2 mapping, the banner strings, slot deadlines, tracking settings and the classified properties of the events the SDK sends; built from `policies/` when `lethe serve` starts.",
    responses((status = 200, description = "the configuration", body = Object), (status = 304, description = "not modified (strong ETag)")))]
pub async fn config_json(state: web::Data<WebState>, req: HttpRequest) -> HttpResponse {
    let unchanged = not_modified(&req, &state.config_etag);
    let mut res = if unchanged { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::ETAG, state.config_etag.clone()))
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if unchanged {
        return res.finish();
    }
    res.content_type("application/json").body(state.config.clone())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The SDK stays small: under 15 KB gzipped.
    #[test]
    fn the_sdk_is_under_15_kb_gzipped() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(SOURCE.as_bytes()).unwrap();
        let size = gz.finish().unwrap().len();
        assert!(size < 15 * 1024, "sdk/src/lethe.js is {size} bytes gzipped; the budget is 15 KB");
    }

    #[test]
    fn the_version_is_the_sources() {
        assert!(SOURCE.contains(&format!("var VERSION = '{VERSION}';")), "sdk/src/lethe.js declares another VERSION");
    }

    #[test]
    fn the_integrity_value_is_sha384_of_the_source() {
        let a = SdkAsset::new();
        assert!(a.integrity.starts_with("sha384-"));
        let raw = base64::engine::general_purpose::STANDARD.decode(&a.integrity[7..]).unwrap();
        assert_eq!(raw, Sha384::digest(SOURCE.as_bytes()).to_vec());
        assert_eq!(a.path(), format!("/sdk/lethe.{}.js", &hex::encode(raw)[..16]));
    }
}
