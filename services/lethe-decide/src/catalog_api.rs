//! The catalog API of the CMS: `PUT /v1/items` upserts items (id, category, text or title, numeric
//! features) and `DELETE /v1/items/{id}` removes one, so that the feature views' item catalog (what
//! decisions, recommendations and the content model read) knows every item, not only those
//! visitors touched.
//!
//! **Where items are kept.** Items go into the event log like everything else, so the catalog is
//! rebuilt from the log at every start: each item is one `catalog.item_upserted` event (a removal,
//! `catalog.item_removed`), both declared in `policies/events.toml` with every field in the `catalog`
//! data category (R-ROPA-1). A catalog describes items, not people, so it is filed under no one:
//! the events go to Lethe's own catalog stream, [`catalog_stream`], whose id is a fixed SHA-256
//! value and not the keyed pseudonym of an identifier. No visitor id pseudonymizes to it, so no track
//! call, consent record, access request or erasure ever names that stream, and erasing a visitor
//! cannot take the catalog along. The events are sealed like any other, under the stream's permanent
//! key (retention until erased: nothing sweeps the catalog). A site cannot forge catalog events:
//! the collector never produces a type with `_`, and refuses `necessary` types to track calls.
//!
//! **Limits.** A body holds one item or an array of 1 to [`lethe_features::MAX_BATCH`] items and at
//! most [`MAX_ITEMS_BODY`] bytes; the item rules are those of [`lethe_features::ItemUpsert`]
//! (id ≤ 256 bytes, category ≤ 128, text ≤ 8192, ≤ 64 finite numeric features). Unknown fields
//! are refused rather than dropped, so a misspelt field is an error and not a silent loss. A body
//! is applied whole or not at all: its items are one append request, atomic in the log.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use lethe_auth::Role;
use lethe_collect::auth::authorize;
use lethe_collect::ApiError;
use lethe_domain::{EventType, ExpectedVersion, NewEvent, Pseudonym, Purpose, Retention, SchemaVersion, UtcMicros};
use lethe_eventlog::AppendRequest;
use lethe_features::{ItemUpsert, ITEM_REMOVED, ITEM_UPSERTED, MAX_BATCH, MAX_ITEM_ID};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::api::DecideState;
use crate::engine::Engine;

/// Largest `PUT /v1/items` body, in bytes (under the transport limit of `lethe serve`).
pub const MAX_ITEMS_BODY: usize = 2_000_000;

/// What the catalog stream's id is derived from. Changing it would orphan every stored item.
const CATALOG_STREAM_LABEL: &[u8] = b"lethe/catalog-stream/v1";

/// The stream that holds the catalog: SHA-256 of a fixed label. Keyed pseudonyms are HMACs under the
/// installation's secret, so no subject id maps to this value.
#[must_use]
pub fn catalog_stream() -> Pseudonym {
    Pseudonym::from_bytes(Sha256::digest(CATALOG_STREAM_LABEL).into())
}

/// One item of a `PUT /v1/items` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemBody {
    #[serde(alias = "item_id")]
    id: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default, alias = "title")]
    text: Option<String>,
    #[serde(default)]
    features: BTreeMap<String, f64>,
}

/// The payload of a `catalog.item_upserted` event: the shape `ItemUpsert::parse` reads back.
#[derive(Debug, Serialize)]
struct StoredItem<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    text: &'a str,
    features: &'a BTreeMap<String, f64>,
}

/// Parses and checks a body; the error names the first item that breaks a rule, by its index.
fn parse_items(body: &[u8]) -> Result<Vec<ItemBody>, ApiError> {
    if body.len() > MAX_ITEMS_BODY {
        return Err(ApiError::new(413, "payload_too_large", format!("a body is at most {MAX_ITEMS_BODY} bytes")));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    let raws = match value {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => return Err(ApiError::bad_request("invalid_json", "send an item object or an array of items")),
    };
    if raws.is_empty() {
        return Err(ApiError::bad_request("empty_batch", "send at least one item"));
    }
    if raws.len() > MAX_BATCH {
        return Err(ApiError::bad_request("too_many_items", format!("a body holds at most {MAX_BATCH} items")));
    }
    let mut items = Vec::with_capacity(raws.len());
    // An id sent twice would leave the catalog with whichever came last: refused, by both places.
    let mut first_of = std::collections::HashMap::new();
    for (i, raw) in raws.into_iter().enumerate() {
        let item: ItemBody =
            serde_json::from_value(raw).map_err(|e| ApiError::bad_request("invalid_json", format!("item {i}: {e}")))?;
        ItemUpsert::new(
            &item.id,
            item.category.as_deref(),
            item.text.as_deref().unwrap_or_default(),
            item.features.iter().map(|(k, v)| (k.clone(), *v)),
        )
        .map_err(|e| ApiError::bad_request(e.code(), format!("item {i}: {e}")))?;
        if let Some(first) = first_of.insert(item.id.clone(), i) {
            return Err(ApiError::bad_request("duplicate_item", format!("item {i}: its id is item {first}'s too")));
        }
        items.push(item);
    }
    Ok(items)
}

fn event(engine: &Engine, event_type: &str, payload: Vec<u8>, time: UtcMicros) -> Result<NewEvent, ApiError> {
    let internal = |what: &str| ApiError::new(500, "internal", format!("catalog event: {what}"));
    let event_type = EventType::parse(event_type).map_err(|_| internal("type"))?;
    let version = engine.collect().policies.event(&event_type).map_or(1, |r| r.schema_version().get());
    Ok(NewEvent {
        schema_version: SchemaVersion::new(version).map_err(|_| internal("schema version"))?,
        event_type,
        purpose: Purpose::necessary(),
        time,
        // The catalog is not personal data and has no retention period; an item leaves it by removal.
        retention: Retention::UntilErased,
        payload,
    })
}

/// Appends the events to the catalog stream, durably, then brings the views (and the content model)
/// up to date so that the next request reads the change. Blocking.
fn append(state: &DecideState, events: Vec<NewEvent>) -> Result<u64, ApiError> {
    let engine = &state.engine;
    let appended = engine.collect().store.append(AppendRequest {
        subject: catalog_stream(),
        expected: ExpectedVersion::Any,
        events,
    })?;
    if let Err(e) = engine.views().catch_up() {
        // The items are durable; the views' background catch-up applies them later.
        tracing::warn!(code = e.code(), "the feature views could not follow the catalog at once");
    }
    state.recommenders.content.refresh(engine.views());
    Ok(appended.last_position.0)
}

/// `PUT /v1/items`.
#[utoipa::path(put, path = "/v1/items", tag = "catalog", summary = "Upserts catalog items (whole items, all or none)",
    request_body(content = Object, description = "an item {id, category?, text? (or title), features?: {name: number}} or an array of 1 to 10000 items", content_type = "application/json"),
    responses((status = 200, description = "{upserted, position}: how many items, and the log position of the last", body = Object),
        (status = 400, description = "invalid_json, invalid_item, duplicate_item, empty_batch, too_many_items", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 413, body = ApiError)),
    security(("bearer" = [])))]
pub async fn put_items(
    state: web::Data<DecideState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, state.engine.collect(), &[Role::Cms, Role::Admin])?;
    let items = parse_items(&body)?;
    let now = UtcMicros::now();
    let events = items
        .iter()
        .map(|i| {
            let stored = StoredItem {
                id: &i.id,
                category: i.category.as_deref(),
                text: i.text.as_deref().unwrap_or_default(),
                features: &i.features,
            };
            let payload = serde_json::to_vec(&stored).map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
            event(&state.engine, ITEM_UPSERTED, payload, now)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let upserted = events.len();
    let position = web::block(move || append(&state, events))
        .await
        .map_err(|_| ApiError::new(500, "internal", "catalog task failed"))??;
    Ok(HttpResponse::Ok().json(json!({ "upserted": upserted, "position": position })))
}

/// `DELETE /v1/items/{id}`.
#[utoipa::path(delete, path = "/v1/items/{id}", tag = "catalog", summary = "Removes an item from the catalog",
    params(("id" = String, Path, description = "the item id")),
    responses((status = 200, description = "{removed, position}", body = Object), (status = 400, description = "invalid_item", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, description = "unknown_item", body = ApiError)),
    security(("bearer" = [])))]
pub async fn delete_item(
    state: web::Data<DecideState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, state.engine.collect(), &[Role::Cms, Role::Admin])?;
    let id = path.into_inner();
    if id.is_empty() || id.len() > MAX_ITEM_ID || id.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_item", "an item id is 1 to 256 bytes without control characters"));
    }
    let payload =
        serde_json::to_vec(&json!({ "id": id })).map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
    let event = event(&state.engine, ITEM_REMOVED, payload, UtcMicros::now())?;
    let removed = id.clone();
    let position = web::block(move || {
        // What the log holds so far decides whether the item exists.
        let views = state.engine.views();
        if let Err(e) = views.catch_up() {
            tracing::warn!(code = e.code(), "the feature views could not follow the log");
        }
        if views.with(|p| p.catalog().get(&id).is_none()) {
            return Err(ApiError::new(404, "unknown_item", "no catalog item has this id"));
        }
        append(&state, vec![event])
    })
    .await
    .map_err(|_| ApiError::new(500, "internal", "catalog task failed"))??;
    Ok(HttpResponse::Ok().json(json!({ "removed": removed, "position": position })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_item_by_item_with_typed_codes() {
        let ok =
            parse_items(br#"[{"id":"a","title":"Tent","category":"tents","features":{"price":189}},{"item_id":"b"}]"#)
                .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!((ok[0].text.as_deref(), ok[1].id.as_str()), (Some("Tent"), "b"));
        let cases: [(&[u8], &str); 9] = [
            (b"{", "invalid_json"),
            (b"7", "invalid_json"),
            (b"[]", "empty_batch"),
            (br#"{"category":"x"}"#, "invalid_json"),
            (br#"{"id":"a","colour":"red"}"#, "invalid_json"),
            (br#"{"id":"a","text":"t","title":"t"}"#, "invalid_json"),
            (br#"[{"id":"ok"},{"id":""}]"#, "invalid_item"),
            (br#"{"id":"a","category":"a\u0007b"}"#, "invalid_item"),
            (br#"{"id":"a","features":{"p":"cheap"}}"#, "invalid_json"),
        ];
        for (body, code) in cases {
            let e = parse_items(body).unwrap_err();
            assert_eq!((e.status, e.code), (400, code), "{}: {e}", String::from_utf8_lossy(body));
        }
        let e = parse_items(br#"[{"id":"ok"},{"id":""}]"#).unwrap_err();
        assert!(e.message.starts_with("item 1:"), "the failing item is named: {e}");
        let many = format!("[{}]", vec![r#"{"id":"x"}"#; MAX_BATCH + 1].join(","));
        assert_eq!(parse_items(many.as_bytes()).unwrap_err().code, "too_many_items");
        let big = vec![b' '; MAX_ITEMS_BODY + 1];
        assert_eq!(parse_items(&big).unwrap_err().status, 413);
    }

    #[test]
    fn stored_items_read_back_as_the_same_item() {
        let items = parse_items(br#"{"id":"sku-1","title":"Two-person tent","features":{"price":189.5}}"#).unwrap();
        let i = &items[0];
        let stored = StoredItem {
            id: &i.id,
            category: None,
            text: i.text.as_deref().unwrap_or_default(),
            features: &i.features,
        };
        let mut catalog = lethe_features::ItemCatalog::new();
        catalog.upsert(&serde_json::to_vec(&stored).unwrap()).unwrap();
        let item = catalog.get("sku-1").unwrap();
        assert_eq!((item.text(), item.category(), item.feature("price")), ("Two-person tent", None, Some(189.5)));
    }

    /// The stream id is part of the stored format: another value would orphan every stored item.
    #[test]
    fn the_catalog_stream_id_does_not_change() {
        assert_eq!(catalog_stream().to_string(), "3666fdac50aa2d2706a9c0a94b93693e7e3e3beb226936ed302246f4be9beeed");
    }
}
