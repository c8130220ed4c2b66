//! Decisions for the CMS: which banner, call-to-action or recommendations a slot shows a visitor.
//!
//! The answer is personalized only when the subject's consent for the slot's purpose holds at that
//! moment (invariant 3); otherwise, or when the model is late or fails, it is the slot's default,
//! with the reason (invariant 8). Every personalized decision leaves a receipt in the subject's own
//! stream of the log (pseudonym, the consent record that allowed it, model version, candidates,
//! propensity), outcomes feed CTR counters and the slot's online model, and a new model version can
//! serve a canary share and be promoted or rolled back by rule or by hand, audited. Mounted by
//! `lethe serve` through [`configure`]; Azure Personalizer's Rank and Reward API is served over the
//! same engine ([`personalizer_api`]). The CMS puts its item catalog through [`catalog_api`]
//! (`PUT /v1/items`), and items without interactions get related items by their text ([`content`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod catalog_api;
pub mod content;
pub mod engine;
pub mod features;
pub mod latency;
pub mod ope;
pub mod personalizer_api;
pub mod rank_events;
pub mod recommend;
pub mod slots;
pub mod train;

use actix_web::web;
use personalizer_api::SubscriptionKey;

pub use api::DecideState;
pub use engine::{Decision, Engine, Limits, Mode, Reason, Scorer, DEFAULT_RECEIPT_BACKLOG, MAX_PENDING_DECISIONS};
pub use rank_events::EventIds;
pub use slots::{Slot, Slots};

/// Mounts the decision routes. The app must hold `web::Data<DecideState>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/decide", web::post().to(api::decide))
        .route("/v1/outcomes", web::post().to(api::outcomes))
        .route("/v1/recommendations", web::get().to(api::recommendations))
        .route("/v1/items", web::put().to(catalog_api::put_items))
        .route("/v1/items/{id}", web::delete().to(catalog_api::delete_item))
        .route("/v1/decide/stats", web::get().to(api::stats))
        .route("/v1/decide/slots/{slot}/versions", web::get().to(api::versions))
        .route("/v1/decide/slots/{slot}/canary", web::post().to(api::canary))
        .route("/v1/decide/slots/{slot}/evaluate", web::post().to(api::evaluate))
        .route("/v1/decide/slots/{slot}/{action}", web::post().to(api::act))
        // Each Personalizer route reads its own body limit, so that a body past it is refused in
        // Azure's error shape.
        .service(
            web::resource("/personalizer/v1.0/rank")
                .app_data(web::PayloadConfig::new(personalizer_api::MAX_RANK_BODY))
                .route(web::post().to(personalizer_api::rank)),
        )
        .service(
            web::resource("/personalizer/v1.0/events/{event_id}/{action}")
                .app_data(web::PayloadConfig::new(personalizer_api::MAX_EVENT_BODY))
                .route(web::post().to(personalizer_api::event)),
        );
}

/// The OpenAPI description of the decision endpoints.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(
        api::decide,
        api::outcomes,
        api::recommendations,
        catalog_api::put_items,
        catalog_api::delete_item,
        api::stats,
        api::versions,
        api::canary,
        api::act,
        api::evaluate,
        personalizer_api::rank,
        personalizer_api::event
    ),
    modifiers(&SubscriptionKey),
    tags(
        (name = "decisions", description = "Slots, decisions, outcomes, recommendations and policy versions"),
        (name = "catalog", description = "The item catalog the CMS puts: ids, categories, texts, numeric features"),
        (name = "personalizer", description = "Azure Personalizer's Rank and Reward API over Lethe's engine")
    )
)]
pub struct ApiDoc;
