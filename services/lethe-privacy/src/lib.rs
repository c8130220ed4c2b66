//! Privacy operations: the data subject's rights (erasure, opt-out, withdrawal, access export), the
//! request log with its legal deadlines, erasure certificates and recipient notices, the retries of
//! erasures a store could not finish, retention sweeps and the key rotations that make erasures
//! final, and the DPO's audit export. Runs inside `lethe serve`; [`configure`] mounts it on any
//! actix `App` that has a `web::Data<Privacy>`.
#![forbid(unsafe_code)]

pub mod audit_api;
pub mod controller;
pub mod erasure;
pub mod pending;
pub mod requests_api;
pub mod rights;
pub mod ropa;
pub mod schedule;
mod state;
pub mod time;

use actix_web::web;

pub use erasure::ErasureCertificate;
pub use pending::PendingErasure;
pub use state::{ErasureHook, OpenError, Privacy, PrivacyOptions, PRIVACY_DIR};

/// Mounts the privacy routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/me/erasure", web::post().to(rights::erase))
        .route("/v1/me/opt-out", web::post().to(rights::opt_out))
        .route("/v1/me/withdraw", web::post().to(rights::withdraw))
        .route("/v1/me/export", web::get().to(rights::export))
        .route("/v1/schemas/export.json", web::get().to(rights::export_schema))
        .route("/v1/requests", web::get().to(requests_api::list))
        .route("/v1/requests", web::post().to(requests_api::create))
        .route("/v1/requests/{id}/actions", web::post().to(requests_api::act))
        .route("/v1/audit/export", web::get().to(audit_api::export))
        .route("/v1/audit/chain", web::get().to(audit_api::chain))
        .route("/v1/ropa", web::get().to(audit_api::ropa));
}

/// The OpenAPI description of the privacy endpoints, generated from the handlers' annotations.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(
        rights::erase,
        rights::opt_out,
        rights::withdraw,
        rights::export,
        rights::export_schema,
        requests_api::list,
        requests_api::create,
        requests_api::act,
        audit_api::export,
        audit_api::chain,
        audit_api::ropa
    ),
    components(schemas(ErasureCertificate)),
    tags(
        (name = "subject rights", description = "Erasure, opt-out, withdrawal and access export"),
        (name = "requests", description = "The request log and its deadlines"),
        (name = "audit", description = "The DPO's audit trail")
    )
)]
pub struct ApiDoc;
