//! Collection: where consent and behavior enter Lethe over HTTP. The consent ledger
//! (`/v1/consent`), Segment-compatible ingestion (`/v1/track`, `/v1/page`, `/v1/identify`,
//! `/v1/batch`), the edge's data minimization and quality checks, consent gating, and the counters
//! behind `/metrics`. Runs inside `lethe serve`; [`configure`] mounts it on any actix `App`.
#![forbid(unsafe_code)]

pub mod auth;
mod book;
mod consent_api;
mod error;
mod ingest;
pub mod json;
pub mod metrics;
pub mod minimize;
pub mod ratelimit;
pub mod segment;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use actix_web::web;
use lethe_eventlog::EventStore;
use lethe_policy::Policies;

pub use book::ConsentBook;
pub use error::{ApiError, MAX_MESSAGE};
pub use ingest::{append_consent, gpc_header, subject_id, LETHE_RECORDED, SALE_SHARE, SUBJECT_IS_USER};
pub use metrics::Metrics;

/// Shared state of the collection handlers.
#[derive(Debug, Clone)]
pub struct CollectState {
    pub store: Arc<dyn EventStore>,
    pub policies: Arc<Policies>,
    pub book: Arc<ConsentBook>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<auth::Auth>,
    pub limits: Arc<ratelimit::RateLimiter>,
    /// Request headers a CDN or load balancer in front of Lethe sets to the visitor's coarse
    /// location, trusted only when configured (see [`minimize::EdgeLocation`]).
    pub edge: Arc<minimize::EdgeLocation>,
}

impl CollectState {
    /// Builds the state, replaying the log into the consent book and the duplicate index.
    ///
    /// # Errors
    /// The log cannot be read.
    pub fn build(
        store: Arc<dyn EventStore>,
        policies: Arc<Policies>,
        auth: Arc<auth::Auth>,
    ) -> lethe_eventlog::Result<Self> {
        let book = Arc::new(ConsentBook::replay(store.as_ref())?);
        let limits = Arc::new(ratelimit::RateLimiter::new(ratelimit::Limits::default()));
        Ok(Self {
            store,
            policies,
            book,
            metrics: Arc::new(Metrics::default()),
            auth,
            limits,
            edge: Arc::new(minimize::EdgeLocation::default()),
        })
    }
}

/// Largest accepted single event, as Segment's HTTP API (32 KB).
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Largest accepted batch body, as Segment's HTTP API (500 KB).
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// Most events in one batch, as Segment's HTTP API.
pub const MAX_BATCH_EVENTS: usize = 2_500;

/// Mounts the collection routes. The caller adds authentication in front (see `lethe` service).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/consent", web::post().to(consent_api::record))
        .route("/v1/consent/{id}", web::get().to(consent_api::state))
        .route("/v1/track", web::post().to(ingest::track))
        .route("/v1/page", web::post().to(ingest::page))
        .route("/v1/identify", web::post().to(ingest::identify))
        .route("/v1/batch", web::post().to(ingest::batch))
        .route("/v1/import", web::post().to(ingest::import));
}

/// The OpenAPI description of the collection endpoints, generated from the handlers' annotations.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(
        consent_api::record,
        consent_api::state,
        ingest::track,
        ingest::page,
        ingest::identify,
        ingest::batch,
        ingest::import
    ),
    components(schemas(ApiError)),
    modifiers(&SecuritySchemes),
    tags((name = "consent", description = "The consent ledger"), (name = "collection", description = "Segment-compatible ingestion"))
)]
pub struct ApiDoc;

/// Declares the two ways to authenticate: a bearer token, or a write key as the Basic user name.
#[derive(Debug)]
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme("write_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}
