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
