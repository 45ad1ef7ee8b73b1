//! The one place where a request's errors become status codes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::engine::ApplyError;

/// Errors a request can end in. The only place they become HTTP answers is `into_response`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("request body exceeds MAX_BODY_BYTES ({0} bytes)")]
    TooLarge(usize),
    #[error("{0}")]
    NotFound(String),
    #[error("too many requests: try again in {} s", .0.as_secs().max(1))]
    TooManyRequests(std::time::Duration),
    #[error("internal error")]
    Internal(String),
    /// The state cannot be written now (or applying panicked): nothing was changed; try again.
    #[error("the state cannot be written now; nothing was applied, try again later")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(detail) => {
                // Internals are logged, never sent.
                tracing::error!(error = %detail, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::Unavailable(detail) => {
                tracing::error!(error = %detail, "request not applied: the state cannot be written");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let mut resp = (
            status,
            Json(json!({"success": false, "error": self.to_string()})),
        )
            .into_response();
        if let ApiError::TooManyRequests(wait) = &self {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::ingest::state_health::RETRY_AFTER_SECONDS),
            );
        }
        resp
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::AllRejected(_) | ApplyError::TooManyMatches { .. } => {
                ApiError::BadRequest(e.to_string())
            }
            ApplyError::NoSuchHold(_) => ApiError::NotFound(e.to_string()),
            ApplyError::Store(e) => ApiError::Unavailable(e.to_string()),
        }
    }
}
