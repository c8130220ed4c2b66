//! Conversions between the log's microsecond timestamps and the request log's `jiff` timestamps,
//! and RFC 3339 text for documents.

use lethe_domain::UtcMicros;
use lethe_dsr::jiff::Timestamp;

/// A log timestamp as a `jiff` timestamp (clamped into jiff's range).
pub fn jiff_ts(t: UtcMicros) -> Timestamp {
    Timestamp::from_microsecond(t.0).unwrap_or(if t.0 < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// A `jiff` timestamp in log microseconds.
pub fn micros(t: Timestamp) -> UtcMicros {
    UtcMicros(t.as_microsecond())
}

/// RFC 3339 in UTC with microseconds.
pub fn rfc3339(t: UtcMicros) -> String {
    jiff_ts(t).to_string()
}

/// Parses an RFC 3339 instant.
///
/// # Errors
/// Text that is not an RFC 3339 instant.
pub fn parse_rfc3339(text: &str) -> Result<UtcMicros, String> {
    text.parse::<Timestamp>().map(micros).map_err(|e| format!("`{text}` is not an RFC 3339 instant: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = UtcMicros(1_795_000_000_123_456);
        assert_eq!(parse_rfc3339(&rfc3339(t)).unwrap(), t);
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
