//! Reading a stored payload into an [`Observation`]: what the event says, validated, before anything
//! is changed. A payload that lacks what its event type needs, or holds an absurd number, gives a
//! [`Malformed`] reason and the projector skips the event whole.
//!
//! The payload shapes are the collector's (`lethe-collect`, `ingest::payload`): a track event is
//! `{"message_id", "event", "properties": {…}, "context": {"device_class", "location": {"country",
//! "region"}, "daypart", "referrer_class"}}`; a page view also has `host`, `path` and `title`.
//! Fields are read from `properties` first and then from the top level, so that payloads written by
//! other services (a decision service writing `decision.served`) are read the same way.

use serde_json::{Map, Value};

use crate::catalog::{valid_name, MAX_CATEGORY, MAX_ITEM_ID};
use crate::view::{Daypart, DeviceClass, ReferrerClass};

/// Why an event was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

type Parsed<T> = Result<T, Malformed>;

/// Longest country or region name kept as a coarse location.
const MAX_LOCATION_PART: usize = 64;
/// Most order lines read from one purchase.
const MAX_ORDER_LINES: usize = 100;
/// Largest order value accepted, in currency units.
const MAX_ORDER_VALUE: f64 = 1e10;

/// The event types that feed personalization features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    PageView,
    ProductView,
    Click,
    Scroll,
    TimeSpent,
    Session,
    Survey,
    Purchase,
    Like,
    Dislike,
    Rating,
    Review,
    DecisionServed,
    Outcome,
    SegmentAssigned,
}

impl Kind {
    /// The kind of a stored event type (`lethe-collect`'s `event_type_for` names; "Product Viewed"
    /// is stored as the custom type `product.viewed`).
    pub(crate) fn of(event_type: &str) -> Option<Self> {
        Some(match event_type {
            "page.viewed" => Self::PageView,
            "product.viewed" => Self::ProductView,
            "element.clicked" => Self::Click,
            "scroll.depth" => Self::Scroll,
            "time.spent" => Self::TimeSpent,
            "session.ended" => Self::Session,
            "survey.answered" => Self::Survey,
            "purchase.completed" => Self::Purchase,
            "item.liked" => Self::Like,
            "item.disliked" => Self::Dislike,
            "item.rated" => Self::Rating,
            "review.submitted" => Self::Review,
            "decision.served" => Self::DecisionServed,
            "outcome.recorded" => Self::Outcome,
            "segment.assigned" => Self::SegmentAssigned,
            _ => return None,
        })
    }
}

/// What an event did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    View {
        item: Option<String>,
        category: Option<String>,
    },
    Click {
        item: Option<String>,
        category: Option<String>,
    },
    Scroll {
        percent: u8,
    },
    Dwell {
        seconds: u32,
    },
    Session {
        seconds: u32,
        pages: u32,
    },
    Survey,
    Purchase {
        cents: u64,
        items: Vec<String>,
    },
    Like(String),
    Dislike(String),
    /// A rating (`score` in hundredths of its scale) or a review (`review`), or both.
    Rating {
        item: Option<String>,
        score: Option<u8>,
        review: bool,
    },
    Decision {
        segment: Option<String>,
    },
    Outcome,
    Segment(String),
}

/// The context an event carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Context {
    pub(crate) device: Option<DeviceClass>,
    pub(crate) daypart: Option<Daypart>,
    pub(crate) referrer: Option<ReferrerClass>,
    /// `country` or `country/region`.
    pub(crate) location: Option<String>,
}

/// An event, read and validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observation {
    pub(crate) action: Action,
    pub(crate) context: Context,
}

fn field<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let props = v.get("properties").and_then(Value::as_object);
    keys.iter()
        .find_map(|k| props.and_then(|p| p.get(*k)).filter(|x| !x.is_null()))
        .or_else(|| keys.iter().find_map(|k| v.get(*k).filter(|x| !x.is_null())))
}

fn number(v: &Value, keys: &[&str]) -> Parsed<Option<f64>> {
    match field(v, keys) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or(Malformed("not a finite number"))
        }
        Some(_) => Err(Malformed("a number field holds something else")),
    }
}

/// An item id: a string or an integer (Segment allows numeric ids).
fn item_of(v: &Value) -> Parsed<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if valid_name(s, MAX_ITEM_ID) => Ok(Some(s.clone())),
        Value::Number(n) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        _ => Err(Malformed("an item id must be a string of 1 to 256 bytes or an integer")),
    }
}

fn item(v: &Value) -> Parsed<Option<String>> {
    field(v, &["product_id", "item_id", "item", "sku", "id"]).map_or(Ok(None), item_of)
}

/// Why a name field was refused.
const NOT_A_NAME: Malformed = Malformed("a name must be a string of bounded length");

fn name(v: &Value, keys: &[&str], max: usize) -> Parsed<Option<String>> {
    match field(v, keys) {
        None => Ok(None),
        Some(Value::String(s)) if valid_name(s, max) => Ok(Some(s.clone())),
        Some(_) => Err(NOT_A_NAME),
    }
}

fn in_range(x: f64, lo: f64, hi: f64, why: &'static str) -> Parsed<f64> {
    if (lo..=hi).contains(&x) {
        Ok(x)
    } else {
        Err(Malformed(why))
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn to_u32(x: f64) -> u32 {
    // `as` saturates and maps NaN to 0; callers have checked the range.
    x.round() as u32
}

/// A coarse location from its parts, each a text of bounded length without `/`: `country` or
/// `country/region`.
fn coarse_location(country: Option<&str>, region: Option<&str>) -> Option<String> {
    let part = |s: &&str| valid_name(s, MAX_LOCATION_PART) && !s.contains('/');
    match (country.filter(part), region.filter(part)) {
        (Some(c), Some(r)) => Some(format!("{c}/{r}")),
        (Some(c), None) => Some(c.to_owned()),
        _ => None,
    }
}

fn context(v: &Value) -> Context {
    let empty = Map::new();
    let ctx = v.get("context").and_then(Value::as_object).unwrap_or(&empty);
    let text = |k: &str| ctx.get(k).and_then(Value::as_str);
    let loc = ctx.get("location").and_then(Value::as_object);
    let part = |k: &str| {
        loc.and_then(|l| l.get(k)).or_else(|| v.get("properties").and_then(|p| p.get(k))).and_then(Value::as_str)
    };
    let location = coarse_location(part("country"), part("region"));
    Context {
        device: text("device_class").and_then(DeviceClass::parse),
        daypart: text("daypart").and_then(Daypart::parse),
        referrer: text("referrer_class").and_then(ReferrerClass::parse),
        location,
    }
}

fn purchase(v: &Value) -> Parsed<Action> {
    let lines = match field(v, &["products", "items"]) {
        None => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(Malformed("`products` must be an array")),
    };
    let mut items = Vec::new();
    let mut sum = 0.0;
    for line in lines.iter().take(MAX_ORDER_LINES) {
        let id = match line {
            Value::Object(_) => item(line)?,
            other => item_of(other)?,
        };
        if let Some(id) = id {
            if !items.contains(&id) {
                items.push(id);
            }
        }
        if line.is_object() {
            let price = number(line, &["price"])?.unwrap_or(0.0);
            let quantity = number(line, &["quantity"])?.unwrap_or(1.0);
            in_range(price, 0.0, MAX_ORDER_VALUE, "a price must be between 0 and 1e10")?;
            in_range(quantity, 0.0, 1e6, "a quantity must be between 0 and 1e6")?;
            sum += price * quantity;
        }
    }
    let value = match number(v, &["revenue", "total", "value", "amount"])? {
        Some(x) => x,
        None => sum,
    };
    let value = in_range(value, 0.0, MAX_ORDER_VALUE, "an order value must be between 0 and 1e10")?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let cents = (value * 100.0).round() as u64;
    Ok(Action::Purchase { cents, items })
}

fn rating(v: &Value) -> Parsed<Option<u8>> {
    let Some(r) = number(v, &["rating", "stars"])? else { return Ok(None) };
    let scale = match number(v, &["scale"])? {
        Some(s) => in_range(s, 1.0, 100.0, "a rating scale must be between 1 and 100")?,
        // Without a scale: five stars, or ten points for ratings above five.
        None if r <= 5.0 => 5.0,
        None => 10.0,
    };
    let r = in_range(r, 0.0, scale, "a rating must be between 0 and its scale")?;
    Ok(Some(u8::try_from(to_u32(r / scale * 100.0)).unwrap_or(100)))
}

/// Reads an event of a known kind.
pub(crate) fn observe(kind: Kind, v: &Value) -> Parsed<Observation> {
    if !v.is_object() {
        return Err(Malformed("a payload must be a JSON object"));
    }
    let category = || name(v, &["category"], MAX_CATEGORY);
    let action = match kind {
        Kind::PageView | Kind::ProductView => Action::View { item: item(v)?, category: category()? },
        Kind::Click => Action::Click { item: item(v)?, category: category()? },
        Kind::Scroll => {
            let p = number(v, &["depth", "percent", "scroll_depth"])?.ok_or(Malformed("scroll depth missing"))?;
            let p = in_range(p, 0.0, 100.0, "scroll depth must be between 0 and 100")?;
            Action::Scroll { percent: u8::try_from(to_u32(p)).unwrap_or(100) }
        }
        Kind::TimeSpent => {
            let s = number(v, &["seconds", "duration", "duration_seconds"])?.ok_or(Malformed("duration missing"))?;
            Action::Dwell { seconds: to_u32(in_range(s, 0.0, 86_400.0, "a duration must be 0 to 86400 seconds")?) }
        }
        Kind::Session => {
            let s = number(v, &["seconds", "duration", "duration_seconds"])?.ok_or(Malformed("duration missing"))?;
            let s = in_range(s, 0.0, 86_400.0, "a duration must be 0 to 86400 seconds")?;
            let pages = in_range(number(v, &["pages"])?.unwrap_or(0.0), 0.0, 1e6, "pages must be 0 to 1e6")?;
            Action::Session { seconds: to_u32(s), pages: to_u32(pages) }
        }
        Kind::Survey => Action::Survey,
        Kind::Purchase => purchase(v)?,
        Kind::Like => Action::Like(item(v)?.ok_or(Malformed("a like names no item"))?),
        Kind::Dislike => Action::Dislike(item(v)?.ok_or(Malformed("a dislike names no item"))?),
        Kind::Rating => {
            let score = rating(v)?.ok_or(Malformed("a rating has no `rating`"))?;
            Action::Rating { item: item(v)?, score: Some(score), review: false }
        }
        Kind::Review => Action::Rating { item: item(v)?, score: rating(v)?, review: true },
        Kind::DecisionServed => Action::Decision { segment: name(v, &["segment"], MAX_CATEGORY)? },
        Kind::Outcome => Action::Outcome,
        Kind::SegmentAssigned => {
            Action::Segment(name(v, &["segment"], MAX_CATEGORY)?.ok_or(Malformed("a segment event names no segment"))?)
        }
    };
    Ok(Observation { action, context: context(v) })
}

/// The fields [`observe`] reads of a decision's receipt or an outcome, as they are written: a
/// receipt also lists every candidate of its decision, which this leaves unread (checked as JSON,
/// not built into a tree), and its texts are borrowed from the payload.
#[derive(serde::Deserialize)]
struct ReceiptFields<'a> {
    #[serde(default, borrow, deserialize_with = "object_only")]
    properties: Option<ReceiptProperties<'a>>,
    #[serde(default, borrow, deserialize_with = "object_only")]
    context: Option<ReceiptContext<'a>>,
    #[serde(default, borrow)]
    segment: Field<'a>,
}

#[derive(Default, serde::Deserialize)]
struct ReceiptProperties<'a> {
    #[serde(default, borrow)]
    segment: Field<'a>,
    #[serde(default, borrow)]
    country: Field<'a>,
    #[serde(default, borrow)]
    region: Field<'a>,
}

#[derive(Default, serde::Deserialize)]
struct ReceiptContext<'a> {
    #[serde(default, borrow)]
    device_class: Field<'a>,
    #[serde(default, borrow)]
    daypart: Field<'a>,
    #[serde(default, borrow)]
    referrer_class: Field<'a>,
    #[serde(default, borrow, deserialize_with = "object_only")]
    location: Option<ReceiptLocation<'a>>,
}

#[derive(Default, serde::Deserialize)]
struct ReceiptLocation<'a> {
    #[serde(default, borrow)]
    country: Field<'a>,
    #[serde(default, borrow)]
    region: Field<'a>,
}

/// A value as [`observe`] tells them apart: absent, null, a text, or anything else (read past
/// without being built).
#[derive(Debug, Default)]
enum Field<'a> {
    #[default]
    Absent,
    Null,
    Text(std::borrow::Cow<'a, str>),
    Other,
}

impl Field<'_> {
    fn text(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Present with a value other than null (`field` skips nulls).
    fn given(&self) -> bool {
        !matches!(self, Self::Absent | Self::Null)
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Field<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess};
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Field<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Text(s.into()))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Field::Text(s.to_owned().into()))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Field::Text(s.into()))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
        }
        d.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

/// An object as `T`, or nothing for null; anything else is refused, so that the shortcut stands
/// aside (a derived struct would also take an array, field by field).
fn object_only<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct Visitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object or null")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(Visitor(std::marker::PhantomData))
}

/// A part of a location as `context` reads it: the location's value when it has the key (even
/// null), else the properties'.
fn location_part<'f>(in_location: Option<&'f Field<'_>>, in_properties: &'f Field<'_>) -> Option<&'f str> {
    match in_location {
        Some(x) if !matches!(x, Field::Absent) => x.text(),
        _ => in_properties.text(),
    }
}

/// [`observe`] for a decision's receipt or an outcome, from the payload at its latest version,
/// reading only what `observe` uses of them. `None` when this shortcut does not apply (another
/// kind, not an object, a duplicate key, a `properties`, `context` or `location` that is neither an
/// object nor null, anything [`ReceiptFields`] cannot take): read the whole payload instead. Where
/// it applies, it observes what `observe` would, with one difference: the values it leaves unread
/// are checked as JSON syntax only, so a nesting deeper than 128, a number out of range or a bad
/// escape there goes unnoticed (reading the whole payload would call it malformed). Receipts and
/// outcomes are written by Lethe only, with `serde_json`, which writes none of these.
pub(crate) fn observe_receipt(kind: Kind, payload: &[u8]) -> Option<Parsed<Observation>> {
    if !matches!(kind, Kind::DecisionServed | Kind::Outcome) || payload.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let f: ReceiptFields = serde_json::from_slice(payload).ok()?;
    let props = f.properties.unwrap_or_default();
    let action = if kind == Kind::DecisionServed {
        // `name(v, &["segment"], …)`: the properties' first, then the top level's; nulls skipped.
        match [&props.segment, &f.segment].into_iter().find(|x| x.given()) {
            None => Action::Decision { segment: None },
            Some(Field::Text(s)) if valid_name(s, MAX_CATEGORY) => Action::Decision { segment: Some(s.to_string()) },
            Some(_) => return Some(Err(NOT_A_NAME)),
        }
    } else {
        Action::Outcome
    };
    let ctx = f.context.unwrap_or_default();
    let loc = ctx.location.as_ref();
    let location = coarse_location(
        location_part(loc.map(|l| &l.country), &props.country),
        location_part(loc.map(|l| &l.region), &props.region),
    );
    let context = Context {
        device: ctx.device_class.text().and_then(DeviceClass::parse),
        daypart: ctx.daypart.text().and_then(Daypart::parse),
        referrer: ctx.referrer_class.text().and_then(ReferrerClass::parse),
        location,
    };
    Some(Ok(Observation { action, context }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The receipt shortcut observes what reading the whole payload observes, or stands aside.
    #[test]
    fn receipts_read_in_part_observe_what_the_whole_payload_does() {
        let candidates: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
        // Each payload, and whether the shortcut reads it (otherwise the whole payload is read).
        let payloads = [
            (json!({"properties": {"decision": "d", "slot": "home", "variant": "c3", "segment": "outdoor",
                "policy": {"mode": "personalized", "propensity": 0.9, "candidates": candidates, "consent_record": null}},
                "context": {"device_class": "mobile", "daypart": "evening"}})
            .to_string(), true),
            (json!({"properties": {"segment": null, "country": "DE", "region": "BY"}, "context": null}).to_string(), true),
            (json!({"properties": {"country": "DE"}, "context": {"location": {"country": "FR", "region": "Nord"}, "referrer_class": "search"}}).to_string(), true),
            (json!({"segment": "top-level", "country": "AT", "context": {"device_class": "tablet"}}).to_string(), true),
            (json!({"properties": null, "segment": "s"}).to_string(), true),
            (json!({"properties": {"segment": 7}}).to_string(), true),
            (json!({"properties": {"segment": "x".repeat(500)}}).to_string(), true),
            (json!({}).to_string(), true),
            (r#"  {"context": {"device_class": "desktop"}, "extra": [1, {"deep": [null]}]}"#.to_owned(), true),
            // Locations: the context's first, even a null or non-text value of it; the properties' otherwise.
            (json!({"properties": {"country": "DE", "region": "BY"}, "context": {"location": {"country": null, "region": 7}}}).to_string(), true),
            (json!({"properties": {"country": "DE", "region": "BY"}, "context": {"location": {"region": "Nord"}}}).to_string(), true),
            (json!({"properties": {"country": "DE"}, "context": {"location": null, "device_class": 3, "daypart": "night"}}).to_string(), true),
            (json!({"properties": {"country": "a/b"}, "context": {"referrer_class": "social", "daypart": "morning"}}).to_string(), true),
            (json!({"properties": {"country": "x".repeat(65)}}).to_string(), true),
            (json!({"context": {"location": {"country": "FR", "region": ["x"]}, "device_class": {"a": 1}}}).to_string(), true),
            // Escaped texts are read as the whole payload reads them.
            (r#"{"properties": {"segment": "out\u0064oor", "country": "D\u0045"}, "context": {"device_class": "mobil\u0065"}}"#.to_owned(), true),
            (json!({"properties": {"segment": null}, "segment": "top"}).to_string(), true),
            (json!({"properties": {"segment": ""}}).to_string(), true),
            (json!({"properties": {"segment": true}, "segment": "top"}).to_string(), true),
            (json!({"segment": {"nested": "x"}}).to_string(), true),
            (json!({"context": "mobile"}).to_string(), false),
            (json!({"context": {"location": "DE"}}).to_string(), false),
            (r#"{"context": {"device_class": "mobile", "device_class": "desktop"}}"#.to_owned(), false),
            (json!({"properties": "not an object", "segment": "s"}).to_string(), false),
            (json!({"properties": ["outdoor", "DE"]}).to_string(), false),
            (r#"{"properties": {"segment": "a"}, "properties": {"segment": "b"}}"#.to_owned(), false),
            ("[null, null, null]".to_owned(), false),
            ("{\"properties\": ".to_owned(), false),
            ("not json".to_owned(), false),
        ];
        for kind in [Kind::DecisionServed, Kind::Outcome] {
            for (p, read) in &payloads {
                let whole = serde_json::from_slice::<Value>(p.as_bytes()).ok().map(|v| observe(kind, &v).ok());
                match observe_receipt(kind, p.as_bytes()) {
                    Some(part) => {
                        assert!(read, "{kind:?} {p}: read in part");
                        assert_eq!(Some(part.ok()), whole, "{kind:?} {p}");
                    }
                    None => assert!(!read, "{kind:?} {p}: the shortcut stood aside"),
                }
            }
        }
        assert!(observe_receipt(Kind::PageView, payloads[0].0.as_bytes()).is_none());
    }

    fn obs(kind: Kind, v: Value) -> Parsed<Action> {
        observe(kind, &v).map(|o| o.action)
    }

    #[test]
    fn collector_payloads_read_as_actions() {
        let v = json!({"message_id": "m", "event": "Product Viewed",
            "properties": {"product_id": "sku-1", "category": "tents"},
            "context": {"device_class": "mobile", "location": {"country": "DE", "region": "BY"},
                        "daypart": "evening", "referrer_class": "search"}});
        let o = observe(Kind::ProductView, &v).unwrap();
        assert_eq!(o.action, Action::View { item: Some("sku-1".into()), category: Some("tents".into()) });
        assert_eq!(o.context.device, Some(DeviceClass::Mobile));
        assert_eq!(o.context.daypart, Some(Daypart::Evening));
        assert_eq!(o.context.referrer, Some(ReferrerClass::Search));
        assert_eq!(o.context.location.as_deref(), Some("DE/BY"));
        let order = json!({"properties": {"order_id": "o1", "currency": "EUR",
            "products": [{"product_id": "a", "price": 10.0, "quantity": 2}, {"sku": 7, "price": 5}]}});
        assert_eq!(
            obs(Kind::Purchase, order).unwrap(),
            Action::Purchase { cents: 2500, items: vec!["a".into(), "7".into()] }
        );
        let order = json!({"properties": {"revenue": 12.345, "products": []}});
        assert_eq!(obs(Kind::Purchase, order).unwrap(), Action::Purchase { cents: 1235, items: vec![] });
        assert_eq!(
            obs(Kind::Rating, json!({"properties": {"item": "a", "rating": 4}})).unwrap(),
            Action::Rating { item: Some("a".into()), score: Some(80), review: false }
        );
        assert_eq!(
            obs(Kind::Rating, json!({"properties": {"item": "a", "rating": 7, "scale": 10}})).unwrap(),
            Action::Rating { item: Some("a".into()), score: Some(70), review: false }
        );
        assert_eq!(
            obs(Kind::Review, json!({"properties": {"item": "a", "text": "nice"}})).unwrap(),
            Action::Rating { item: Some("a".into()), score: None, review: true }
        );
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let bad = [
            (Kind::Scroll, json!({"properties": {}})),
            (Kind::Scroll, json!({"properties": {"depth": 101}})),
            (Kind::Scroll, json!({"properties": {"depth": "deep"}})),
            (Kind::TimeSpent, json!({"properties": {"seconds": 1e300}})),
            (Kind::Session, json!({"properties": {"seconds": -1}})),
            (Kind::Like, json!({"properties": {}})),
            (Kind::Like, json!({"properties": {"item": {"a": 1}}})),
            (Kind::Like, json!({"properties": {"item": ""}})),
            (Kind::Rating, json!({"properties": {"item": "a", "rating": 11}})),
            (Kind::Rating, json!({"properties": {"item": "a", "rating": 4, "scale": 0}})),
            (Kind::Purchase, json!({"properties": {"revenue": -5}})),
            (Kind::Purchase, json!({"properties": {"revenue": 1e300}})),
            (Kind::Purchase, json!({"properties": {"products": "a,b"}})),
            (Kind::Purchase, json!({"properties": {"products": [{"price": 1e300, "quantity": 1e6}]}})),
            (Kind::PageView, json!([1, 2])),
            (Kind::SegmentAssigned, json!({"properties": {}})),
        ];
        for (kind, v) in bad {
            assert!(observe(kind, &v).is_err(), "{kind:?} {v}");
        }
    }

    #[test]
    fn odd_context_is_ignored_not_fatal() {
        let v = json!({"properties": {}, "context": {"device_class": 7, "location": "DE", "daypart": "teatime"}});
        let o = observe(Kind::PageView, &v).unwrap();
        assert_eq!(o.context, Context::default());
    }
}
