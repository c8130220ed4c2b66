//! Data minimization at the edge: what is derived from raw request data before anything is stored,
//! after which the raw data is dropped. Raw IP addresses, full user agents and query strings never
//! reach the log.

use serde::Serialize;

/// A coarse device class derived from a user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    Mobile,
    Tablet,
    Desktop,
    /// Server-side sources with no user agent.
    Server,
}

/// Known automated clients, matched case-insensitively in the user agent.
const BOT_MARKERS: [&str; 9] =
    ["bot", "crawler", "spider", "slurp", "curl/", "wget/", "python-requests", "httpclient", "facebookexternalhit"];

/// Whether a user agent is an automated client.
pub fn is_bot(user_agent: &str) -> bool {
    let ua = user_agent.to_ascii_lowercase();
    BOT_MARKERS.iter().any(|m| ua.contains(m))
}

/// The device class of a user agent.
pub fn device_class(user_agent: Option<&str>) -> DeviceClass {
    let Some(ua) = user_agent else { return DeviceClass::Server };
    let ua = ua.to_ascii_lowercase();
    if ua.contains("ipad") || ua.contains("tablet") || (ua.contains("android") && !ua.contains("mobile")) {
        DeviceClass::Tablet
    } else if ua.contains("mobi") || ua.contains("iphone") || ua.contains("android") {
        DeviceClass::Mobile
    } else {
        DeviceClass::Desktop
    }
}

/// Where a visit came from, as a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferrerClass {
    Direct,
    Search,
    Social,
    Internal,
    Other,
}

const SEARCH: [&str; 6] = ["google.", "bing.", "duckduckgo.", "yahoo.", "ecosia.", "qwant."];
const SOCIAL: [&str; 8] =
    ["facebook.", "instagram.", "t.co", "twitter.", "x.com", "linkedin.", "pinterest.", "reddit."];

/// The class of a referrer URL relative to the page's host.
pub fn referrer_class(referrer: Option<&str>, page_host: Option<&str>) -> ReferrerClass {
    let Some(host) = referrer.and_then(|r| split_url(r).0).filter(|h| !h.is_empty()) else {
        return ReferrerClass::Direct;
    };
    if page_host.is_some_and(|p| p.eq_ignore_ascii_case(&host)) {
        ReferrerClass::Internal
    } else if SEARCH.iter().any(|s| host.contains(s)) {
        ReferrerClass::Search
    } else if SOCIAL.iter().any(|s| host.contains(s)) {
        ReferrerClass::Social
    } else {
        ReferrerClass::Other
    }
}

/// Host and path of a URL, without scheme, credentials, port, query string or fragment.
pub fn split_url(url: &str) -> (Option<String>, String) {
    let no_fragment = url.split('#').next().unwrap_or_default();
    let no_query = no_fragment.split('?').next().unwrap_or_default();
    match no_query.split_once("://") {
        Some((_, rest)) => {
            let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
            let host = authority.rsplit('@').next().unwrap_or_default();
            let host = host.split(':').next().unwrap_or_default().to_ascii_lowercase();
            (Some(host), path.to_owned())
        }
        None => (None, if no_query.is_empty() { "/".to_owned() } else { no_query.to_owned() }),
    }
}

/// Part of the day of an hour (0–23), in the event's own clock.
pub fn daypart(hour: u8) -> &'static str {
    match hour {
        5..=11 => "morning",
        12..=17 => "afternoon",
        18..=22 => "evening",
        _ => "night",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_query_fragment_credentials_and_port() {
        assert_eq!(
            split_url("https://user:pw@Shop.Example:8443/outdoor/tents?email=a@b.c#top"),
            (Some("shop.example".into()), "/outdoor/tents".into())
        );
        assert_eq!(split_url("/cart?id=9"), (None, "/cart".into()));
        assert_eq!(split_url("https://shop.example"), (Some("shop.example".into()), "/".into()));
    }

    #[test]
    fn device_classes() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";
        assert_eq!(device_class(Some(iphone)), DeviceClass::Mobile);
        assert_eq!(device_class(Some("Mozilla/5.0 (iPad; CPU OS 17_0)")), DeviceClass::Tablet);
        assert_eq!(device_class(Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/156")), DeviceClass::Desktop);
        assert_eq!(device_class(None), DeviceClass::Server);
    }

    #[test]
    fn bots_are_recognised_but_headless_browsers_are_not() {
        assert!(is_bot("Googlebot/2.1 (+http://www.google.com/bot.html)"));
        assert!(is_bot("curl/8.1.2"));
        assert!(!is_bot("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156.0"));
    }

    #[test]
    fn referrers() {
        assert_eq!(referrer_class(None, Some("shop.example")), ReferrerClass::Direct);
        assert_eq!(referrer_class(Some("https://www.google.com/search?q=x"), None), ReferrerClass::Search);
        assert_eq!(referrer_class(Some("https://shop.example/a"), Some("shop.example")), ReferrerClass::Internal);
        assert_eq!(referrer_class(Some("https://t.co/abc"), None), ReferrerClass::Social);
        assert_eq!(referrer_class(Some("https://blog.example/"), None), ReferrerClass::Other);
    }

    #[test]
    fn dayparts() {
        assert_eq!((daypart(3), daypart(9), daypart(14), daypart(20)), ("night", "morning", "afternoon", "evening"));
    }
}

/// Coarse location from the edge: the request headers in which a CDN or load balancer in front of
/// Lethe puts the visitor's country (such as Cloudflare's `CF-IPCountry` or CloudFront's
/// `CloudFront-Viewer-Country`) and region. Lethe never sees a location database and stores no IP
/// address; with these headers configured, an event whose message names no location gets the
/// edge's country (ISO 3166-1 alpha-2) and region (ISO 3166-2 subdivision code) instead. Only
/// configure them when the proxy in front overwrites them on every request: a client could
/// otherwise send its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeLocation {
    /// The header holding the country code.
    pub country_header: Option<String>,
    /// The header holding the region (subdivision) code.
    pub region_header: Option<String>,
}

impl EdgeLocation {
    /// The `(country, region)` a request's headers give, each only when well-formed: a country is
    /// two ASCII letters (upper-cased; `XX` and `T1`, "unknown" and Tor, are dropped), a region 1 to
    /// 3 ASCII letters or digits, optionally after the country and a dash (`CA` or `US-CA`).
    pub fn of(&self, headers: &actix_web::http::header::HeaderMap) -> (Option<String>, Option<String>) {
        let value = |name: &Option<String>| {
            name.as_deref().and_then(|n| headers.get(n)).and_then(|v| v.to_str().ok()).map(str::trim)
        };
        let country = value(&self.country_header)
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(str::to_ascii_uppercase)
            .filter(|c| c != "XX");
        let region = value(&self.region_header)
            .map(|r| r.rsplit('-').next().unwrap_or(r))
            .filter(|r| (1..=3).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric()))
            .map(str::to_ascii_uppercase);
        (country, region)
    }

    /// Puts the edge's location into a message that names none (`context.location`).
    pub fn apply(&self, country: Option<&str>, region: Option<&str>, message: &mut serde_json::Value) {
        if country.is_none() && region.is_none() {
            return;
        }
        let Some(obj) = message.as_object_mut() else { return };
        let context = obj.entry("context").or_insert_with(|| serde_json::json!({}));
        let Some(context) = context.as_object_mut() else { return };
        let location = context.entry("location").or_insert_with(|| serde_json::json!({}));
        let Some(location) = location.as_object_mut() else { return };
        if location.get("country").is_none_or(serde_json::Value::is_null) {
            if let Some(c) = country {
                location.insert("country".into(), serde_json::Value::String(c.to_owned()));
            }
            if let Some(r) = region {
                if location.get("region").is_none_or(serde_json::Value::is_null) {
                    location.insert("region".into(), serde_json::Value::String(r.to_owned()));
                }
            }
        }
    }
}

#[cfg(test)]
mod edge_tests {
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
    use serde_json::json;

    use super::EdgeLocation;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_static(k), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_configured_well_formed_headers_give_a_location() {
        let edge = EdgeLocation { country_header: Some("cf-ipcountry".into()), region_header: Some("x-region".into()) };
        assert_eq!(
            edge.of(&headers(&[("cf-ipcountry", "de"), ("x-region", "DE-BY")])),
            (Some("DE".into()), Some("BY".into()))
        );
        for bad in ["XX", "DEU", "1A", ""] {
            assert_eq!(edge.of(&headers(&[("cf-ipcountry", bad)])).0, None, "{bad}");
        }
        assert_eq!(edge.of(&headers(&[("x-region", "not a region")])).1, None);
        // Not configured: the same headers are ignored.
        assert_eq!(EdgeLocation::default().of(&headers(&[("cf-ipcountry", "DE")])), (None, None));
    }

    #[test]
    fn the_message_keeps_a_location_it_names() {
        let edge = EdgeLocation::default();
        let mut m = json!({"event": "x"});
        edge.apply(Some("FR"), Some("IDF"), &mut m);
        assert_eq!(m["context"]["location"], json!({"country": "FR", "region": "IDF"}));
        let mut m = json!({"context": {"location": {"country": "IT"}}});
        edge.apply(Some("FR"), Some("IDF"), &mut m);
        assert_eq!(m["context"]["location"], json!({"country": "IT"}));
        let mut m = json!("not an object");
        edge.apply(Some("FR"), None, &mut m);
        assert_eq!(m, json!("not an object"));
    }
}
