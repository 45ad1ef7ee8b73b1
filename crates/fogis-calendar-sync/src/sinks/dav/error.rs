//! The error type of [`super::DavClient`], and the one place that turns an HTTP answer into it.
//!
//! The variants say what the caller must do, not what the server said: fix the configuration
//! (`Unauthorized`), re-read (`PreconditionFailed`), try later ([`DavError::is_retryable`]).
//! Server text is personal data as often as not (a server quoting the DESCRIPTION it refused),
//! so at most a 200-character excerpt of an error answer is kept, with control characters
//! flattened, for the caller; it is never displayed (the message, and so the sink status and
//! the log, say only the status, or where a redirect pointed), and logged only at debug level,
//! masked.

use reqwest::header::LOCATION;
use reqwest::{Response, StatusCode};

/// Most characters of a server's error text kept in [`DavError::Status`].
const EXCERPT_CHARS: usize = 200;

/// Why a DAV request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DavError {
    /// 401 or 403: the credentials are wrong or lack the right. Retrying will not help until
    /// the configuration changes, so this must never be retried in a hot loop.
    #[error("the server refused the credentials or the access (HTTP {status})")]
    Unauthorized { status: u16 },
    /// 412: the item changed since its ETag was read, or (create) it already exists.
    #[error("precondition failed (HTTP 412): the item changed or already exists")]
    PreconditionFailed,
    /// 404 where something had to exist (a collection that could not be created, say).
    #[error("not found (HTTP 404)")]
    NotFound,
    /// Any other unexpected status; `body_excerpt` is at most 200 characters of the answer
    /// (never displayed, but for a redirect's location).
    #[error("HTTP {status}{}", shown_excerpt(*status, body_excerpt))]
    Status { status: u16, body_excerpt: String },
    /// No answer within the configured timeout.
    #[error("the request timed out")]
    Timeout,
    /// The server could not be reached (DNS, connection refused, TLS, connection reset).
    #[error("transport error: {0}")]
    Transport(String),
    /// The answer made no sense (bad XML, not a calendar) or the request was invalid.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl DavError {
    /// 401/403: the configuration must change before another try can succeed.
    pub fn is_auth(&self) -> bool {
        matches!(self, DavError::Unauthorized { .. })
    }

    /// Worth trying again later: timeouts, transport errors, 5xx and 429.
    pub fn is_retryable(&self) -> bool {
        match self {
            DavError::Timeout | DavError::Transport(_) => true,
            DavError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub(super) fn from_reqwest(e: reqwest::Error) -> DavError {
        if e.is_timeout() {
            return DavError::Timeout;
        }
        if e.is_builder() {
            // A header value that cannot be sent (a content type with a newline, say).
            return DavError::Protocol(format!("invalid request: {e}"));
        }
        // The chain of causes names the real problem ("dns error", "connection refused").
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        DavError::Transport(text)
    }
}

/// What the message shows of an excerpt: a redirect's location (configuration, not content),
/// otherwise a fixed text.
fn shown_excerpt(status: u16, excerpt: &str) -> String {
    if (300..400).contains(&status) {
        format!(": {excerpt}: not followed")
    } else {
        ": the server's text is logged at debug level".to_string()
    }
}

/// The error for an unexpected status; reads only the start of the body.
pub(super) async fn status_error(mut resp: Response) -> DavError {
    let status = resp.status();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return DavError::Unauthorized {
                status: status.as_u16(),
            }
        }
        StatusCode::PRECONDITION_FAILED => return DavError::PreconditionFailed,
        StatusCode::NOT_FOUND => return DavError::NotFound,
        _ => {}
    }
    let mut text = String::new();
    if status.is_redirection() {
        let location = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok());
        text = format!("redirected to {}", location.unwrap_or("?"));
    } else {
        let mut bytes = Vec::new();
        // A transport error while reading an error body leaves the excerpt short, no worse.
        while let Ok(Some(chunk)) = resp.chunk().await {
            bytes.extend_from_slice(&chunk);
            if bytes.len() >= 4 * EXCERPT_CHARS {
                break;
            }
        }
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    let cleaned = text.replace(char::is_control, " ");
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    tracing::debug!(
        status = status.as_u16(),
        excerpt = %crate::mask::mask_pii(&words.join(" ")),
        "DAV server's error answer"
    );
    DavError::Status {
        status: status.as_u16(),
        body_excerpt: words.join(" ").chars().take(EXCERPT_CHARS).collect(),
    }
}
