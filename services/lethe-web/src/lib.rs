//! What browsers load from Lethe: the consent SDK a site embeds (`/sdk.js`, also at a
//! content-addressed path for Subresource Integrity), its configuration (`/sdk/config.json`, built
//! from `policies/` so that the banner shows exactly what the consent ledger checks), and, only
//! when `lethe serve --demo` asks for it, a demo shop that uses them (`/demo`, `/demo/privacy`).
//! [`configure`] mounts the SDK routes and [`configure_demo`] the demo on any actix `App` that has
//! a `web::Data<WebState>`.
#![forbid(unsafe_code)]

pub mod config;
mod demo;
pub mod sdk;

use actix_web::web;
use lethe_collect::CollectState;
use serde_json::json;

pub use config::{ConfigError, SdkPolicy, SlotTiming};
pub use sdk::SdkAsset;

/// What `lethe serve` says about the web part.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// `policies/sdk.toml`.
    pub sdk: SdkPolicy,
    /// Whether the demo shop is served. It hands out subject tokens for any anonymous id, so it
    /// is for trying Lethe out only.
    pub demo: bool,
}

impl Default for WebOptions {
    /// The built-in `sdk.toml`, no demo.
    fn default() -> Self {
        Self { sdk: SdkPolicy::builtin().expect("the built-in sdk.toml is valid (tested)"), demo: false }
    }
}

/// Shared state of the web handlers.
#[derive(Debug, Clone)]
pub struct WebState {
    pub asset: SdkAsset,
    /// `/sdk/config.json`, serialized once.
    pub config: web::Bytes,
    pub config_etag: String,
    pub demo: bool,
    /// The collection state: its keys sign the demo's tokens, its limiter guards the demo.
    collect: CollectState,
}

impl WebState {
    /// Builds the state: digests the SDK and builds its configuration from the policies and the
    /// decision service's `slots`.
    ///
    /// # Errors
    /// `sdk.toml` does not agree with the policies.
    pub fn new(collect: &CollectState, options: &WebOptions, slots: &[SlotTiming]) -> config::Result<Self> {
        let asset = SdkAsset::new();
        let sdk = json!({"version": sdk::VERSION, "integrity": asset.integrity, "path": asset.path()});
        let document = options.sdk.document(&collect.policies, slots, sdk)?;
        let config = web::Bytes::from(serde_json::to_vec(&document).expect("values serialize"));
        let config_etag = {
            use sha2::Digest;
            format!("\"{}\"", &hex::encode(sha2::Sha256::digest(&config))[..32])
        };
        Ok(Self { asset, config, config_etag, demo: options.demo, collect: collect.clone() })
    }
}

/// Mounts `/sdk.js`, `/sdk/lethe.<hash>.js` and `/sdk/config.json`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sdk.js", web::get().to(sdk::sdk_js))
        .route("/sdk/config.json", web::get().to(sdk::config_json))
        .route("/sdk/lethe.{hash}.js", web::get().to(sdk::sdk_hashed));
}

/// Mounts the demo shop: `/demo`, `/demo/privacy`, its images and `POST /demo/subject-token`. Only for
/// `lethe serve --demo`: the last hands out subject tokens for any anonymous id.
pub fn configure_demo(cfg: &mut web::ServiceConfig) {
    cfg.route("/demo", web::get().to(demo::home))
        .route("/demo/", web::get().to(demo::home))
        .route("/demo/privacy", web::get().to(demo::privacy))
        .route("/demo/assets/{name}", web::get().to(demo::image))
        .route("/demo/subject-token", web::post().to(demo::issue_subject_token));
}

/// The OpenAPI description of the SDK endpoints (the demo is not part of the API).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(sdk::sdk_js, sdk::config_json),
    tags((name = "sdk", description = "The consent SDK and its configuration"))
)]
pub struct ApiDoc;
