//! The error type, and the one place that turns an HTTP answer into it.
//!
//! The variants are told apart by what a caller does next ([`DavError::class`]): fix the
//! configuration (401: credentials or an authentication scheme), skip one item and go on (a
//! 403/409 with a `DAV:error` precondition), re-read (412), or try later (5xx, 429, timeouts).
//! Server text is personal data as often as not, so at most a 200-character excerpt is kept,
//! with control characters flattened so it cannot forge log lines. The password never appears.

use reqwest::header::LOCATION;
use reqwest::{Response, StatusCode};

use crate::xml;

/// Most characters of a server's text kept in an error.
const EXCERPT_CHARS: usize = 200;
/// Most bytes of an error answer read.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// Why a DAV request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DavError {
    /// 401 although credentials were sent with a scheme the server offered: the user name or
    /// password is wrong.
    #[error("the server refused the user name or password (HTTP 401, {scheme} authentication)")]
    CredentialsRefused { scheme: &'static str },
    /// 401 offering only schemes this client cannot answer (not the password's fault).
    #[error("the server asks for {offered} authentication, which this client does not support (it speaks Basic and Digest); the password was not tried")]
    AuthSchemeUnsupported { offered: String },
    /// 401 without any `WWW-Authenticate` challenge to answer.
    #[error("the server answered HTTP 401 without saying which authentication it wants (no WWW-Authenticate)")]
    ChallengeMissing,
    /// 401 and no user name configured.
    #[error("the server requires authentication (HTTP 401), but no user name is configured")]
    CredentialsMissing,
    /// A 4xx with a `DAV:error` body naming a precondition (RFC 4918 16, RFC 4791 5.3.2.1,
    /// RFC 6352 6.3.2.1): the server refused this one request (an item it will not store,
    /// say); other items may well succeed.
    #[error("HTTP {status}: the server refused it ({name}){}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Precondition {
        status: u16,
        /// The precondition element's namespace (`urn:ietf:params:xml:ns:caldav`).
        namespace: String,
        /// Its local name (`supported-calendar-component`, `valid-calendar-data`, ...).
        name: String,
        /// What the server said about it, at most 200 characters.
        reason: Option<String>,
    },
    /// 403 without a precondition: the account may not do this here.
    #[error("HTTP 403: access denied{}", excerpt_suffix(.body_excerpt))]
    Forbidden { body_excerpt: String },
    /// 404 or 410 where something had to exist.
    #[error("not found (HTTP {status})")]
    NotFound { status: u16 },
    /// 412: the item changed since its ETag was read, or (create) it already exists.
    #[error("precondition failed (HTTP 412): the item changed or already exists")]
    PreconditionFailed,
    /// A 3xx that was not followed (credentials must not travel by themselves).
    #[error("HTTP {status}: redirected to {location}")]
    Redirect { status: u16, location: String },
    /// Any other status; 5xx and 429 are transient.
    #[error("HTTP {status}{}", excerpt_suffix(.body_excerpt))]
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

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The configuration must change (credentials, scheme, a plain 403 on the collection).
    Config,
    /// This one item was refused; report it and go on with the others.
    Item,
    /// Someone else changed the item (412): re-read before writing again.
    Conflict,
    /// 404/410.
    NotFound,
    /// Worth another try later: timeouts, transport errors, 5xx, 429.
    Transient,
    /// Anything else (an unexpected 4xx, a redirect, bad XML).
    Other,
}

fn excerpt_suffix(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!(": {excerpt}")
    }
}

impl DavError {
    pub fn class(&self) -> ErrorClass {
        match self {
            DavError::CredentialsRefused { .. }
            | DavError::AuthSchemeUnsupported { .. }
            | DavError::CredentialsMissing
            | DavError::ChallengeMissing
            | DavError::Forbidden { .. } => ErrorClass::Config,
            DavError::Precondition { .. } => ErrorClass::Item,
            DavError::PreconditionFailed => ErrorClass::Conflict,
            DavError::NotFound { .. } => ErrorClass::NotFound,
            DavError::Timeout | DavError::Transport(_) => ErrorClass::Transient,
            DavError::Status { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Transient
            }
            DavError::Status { .. } | DavError::Redirect { .. } | DavError::Protocol(_) => {
                ErrorClass::Other
            }
        }
    }

    /// 401 of any kind: retrying will not help until the configuration changes.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            DavError::CredentialsRefused { .. }
                | DavError::AuthSchemeUnsupported { .. }
                | DavError::CredentialsMissing
                | DavError::ChallengeMissing
        )
    }

    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> DavError {
        if e.is_timeout() {
            return DavError::Timeout;
        }
        if e.is_builder() {
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

/// The error for an unexpected answer (never a 401: [`crate::auth`] decides those). Reads at
/// most 64 KiB of the body.
pub(crate) async fn status_error(mut resp: Response) -> DavError {
    let status = resp.status();
    if status.is_redirection() {
        let location = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok());
        return DavError::Redirect {
            status: status.as_u16(),
            location: excerpt(location.unwrap_or("?")),
        };
    }
    match status {
        StatusCode::PRECONDITION_FAILED => return DavError::PreconditionFailed,
        StatusCode::NOT_FOUND | StatusCode::GONE => {
            return DavError::NotFound {
                status: status.as_u16(),
            }
        }
        _ => {}
    }
    let mut bytes = Vec::new();
    // A transport error while reading an error body leaves it short, no worse.
    while let Ok(Some(chunk)) = resp.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= ERROR_BODY_BYTES {
            break;
        }
    }
    if status.is_client_error() {
        if let Some((namespace, name, reason)) = xml::parse_error(&bytes) {
            return DavError::Precondition {
                status: status.as_u16(),
                namespace,
                name: excerpt(&name),
                reason: reason.map(|r| excerpt(&r)),
            };
        }
    }
    let body_excerpt = excerpt(&String::from_utf8_lossy(&bytes));
    if status == StatusCode::FORBIDDEN {
        return DavError::Forbidden { body_excerpt };
    }
    DavError::Status {
        status: status.as_u16(),
        body_excerpt,
    }
}

/// At most 200 characters, whitespace and control characters collapsed to single spaces.
pub(crate) fn excerpt(text: &str) -> String {
    let cleaned = text.replace(char::is_control, " ");
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    words.join(" ").chars().take(EXCERPT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_say_what_to_do() {
        let item = DavError::Precondition {
            status: 403,
            namespace: xml::CALDAV.into(),
            name: "supported-calendar-component".into(),
            reason: Some("no events here".into()),
        };
        assert_eq!(item.class(), ErrorClass::Item);
        assert!(item.to_string().contains("no events here"));
        assert!(!item.is_auth());
        let scheme = DavError::AuthSchemeUnsupported {
            offered: "Bearer".into(),
        };
        assert!(scheme.is_auth());
        assert!(!scheme.to_string().contains("refused"));
        assert!(!scheme.to_string().to_lowercase().contains("wrong"));
        let five = DavError::Status {
            status: 503,
            body_excerpt: String::new(),
        };
        assert!(five.is_transient());
        assert_eq!(five.to_string(), "HTTP 503");
        assert_eq!(DavError::PreconditionFailed.class(), ErrorClass::Conflict);
        assert_eq!(excerpt("a\r\nFAKE: log\tline"), "a FAKE: log line");
        assert_eq!(excerpt(&"x".repeat(500)).len(), 200);
    }
}
