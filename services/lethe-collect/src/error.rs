//! The error every collection endpoint answers with: JSON with a stable code, an HTTP status and a
//! human message. 5xx bodies are opaque; the log keeps the cause.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use lethe_eventlog::LogError;
use serde::Serialize;

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    #[serde(skip)]
    pub status: u16,
}

impl ApiError {
    /// A 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), status: 400 }
    }

    /// Any status with a code.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), status }
    }
}

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
        HttpResponse::build(self.status_code()).json(self)
    }
}
