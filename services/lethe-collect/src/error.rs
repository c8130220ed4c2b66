//! The error every collection endpoint answers with: JSON with a stable code, an HTTP status and a
//! human message. 5xx bodies are opaque; the log keeps the cause.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use lethe_eventlog::LogError;
use serde::Serialize;

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: &'static str,
    /// Serialized cut to [`MAX_MESSAGE`] bytes ([`ApiError::bounded_message`]).
    #[serde(serialize_with = "serialize_bounded")]
    pub message: String,
    #[serde(skip)]
    pub status: u16,
    /// Seconds after which a retry may succeed: the `Retry-After` header of a 429.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), status: 400, retry_after: None }
    }

    /// Any status with a code.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), status, retry_after: None }
    }

    /// 429 `rate_limited`, with the seconds to wait in the message and in `Retry-After`.
    pub fn rate_limited(seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds),
            ..Self::new(429, "rate_limited", format!("too many requests; retry in {seconds} s"))
        }
    }

    /// The message as answered: at most [`MAX_MESSAGE`] bytes, cut with `…`. A message may quote
    /// the input it refuses, and a refusal must not echo a megabyte back.
    pub fn bounded_message(&self) -> Cow<'_, str> {
        bounded(&self.message)
    }

    /// An answer with this error's status and, when it says when to retry, `Retry-After`: what an
    /// error answers with, whatever the shape of its body.
    pub fn response(&self) -> HttpResponseBuilder {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after {
            res.insert_header((actix_web::http::header::RETRY_AFTER, seconds));
        }
        res
    }
}

fn bounded(message: &str) -> Cow<'_, str> {
    if message.len() <= MAX_MESSAGE {
        return message.into();
    }
    let mut cut = MAX_MESSAGE;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &message[..cut]).into()
}

fn serialize_bounded<S: serde::Serializer>(message: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&bounded(message))
}

/// The longest message an error answers with, in bytes (before the `…` of a cut one).
pub const MAX_MESSAGE: usize = 512;

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        Self::from(&e)
    }
}

impl From<&LogError> for ApiError {
    fn from(e: &LogError) -> Self {
        match e {
            LogError::Erased(_) => Self::new(410, "subject_erased", "the subject was erased; nothing more is stored"),
            LogError::Conflict { .. } => Self::new(409, "version_conflict", e.to_string()),
            LogError::PastRetention { .. } => Self::new(422, "past_retention", e.to_string()),
            other => {
                tracing::error!(error = %other, code = other.code(), "event log failure");
                Self::new(503, "store_unavailable", "the event store cannot take this request now")
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        self.response().json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let short = ApiError::bad_request("x", "é".repeat(10));
        assert_eq!(short.bounded_message(), "é".repeat(10));
        let long = ApiError::bad_request("x", format!("a{}", "é".repeat(1_000_000)));
        let cut = long.bounded_message();
        assert!(cut.len() <= MAX_MESSAGE + '…'.len_utf8(), "{}", cut.len());
        assert!(cut.starts_with("aé") && cut.ends_with("é…"), "{cut}");
    }
}
