//! The error type of [`super::DavClient`]: fogis-dav's errors, folded into what a sink does next.
//!
//! The variants say what the caller must do, not what the server said: fix the configuration
//! (`Unauthorized`, `Authentication`), skip this one item and go on (`Refused`), re-read
//! (`PreconditionFailed`), try later ([`DavError::is_retryable`]).
//!
//! Server text is personal data as often as not (a server quoting the DESCRIPTION it refused):
//! an unexpected answer's excerpt (at most 200 characters, as fogis-dav keeps it) is kept in
//! the error for the caller but never displayed (the message, so the sink status and the log,
//! says the status, or where a redirect pointed) and logged only at debug level, masked. The
//! reason a server gives with a `DAV:error` precondition (the one item it refuses) is shown,
//! masked, on `/sinks` (behind the token), since it says what to fix.

/// Why a DAV request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DavError {
    /// 401 (the credentials were refused) or a plain 403 (no right to the collection).
    /// Retrying will not help until the configuration changes, so this must never be retried
    /// in a hot loop.
    #[error("the server refused the credentials or the access (HTTP {status})")]
    Unauthorized { status: u16 },
    /// 401 that is not the password's fault (an authentication scheme this client does not
    /// speak, no challenge, no user name configured): fogis-dav's explanation.
    #[error("{0}")]
    Authentication(String),
    /// A 4xx naming a `DAV:error` precondition: the server will not store this one item
    /// (`supported-calendar-component` from a tasks-only calendar, say). Other items go on.
    #[error("HTTP {status}: the server refused this item ({precondition}){}", reason.as_deref().map(|r| format!(": {}", crate::mask::mask_pii(r))).unwrap_or_default())]
    Refused {
        status: u16,
        precondition: String,
        reason: Option<String>,
    },
    /// 412: the item changed since its ETag was read, or (create) it already exists.
    #[error("precondition failed (HTTP 412): the item changed or already exists")]
    PreconditionFailed,
    /// 404 where something had to exist (a collection that could not be created, say).
    #[error("not found (HTTP 404)")]
    NotFound,
    /// Any other unexpected status; `body_excerpt` is at most 200 characters of the answer,
    /// never displayed (a redirect's location is: it is configuration, not content).
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

/// What the message shows of an excerpt: a redirect's location, otherwise a fixed text.
fn shown_excerpt(status: u16, excerpt: &str) -> String {
    if (300..400).contains(&status) {
        format!(": {excerpt}: not followed")
    } else {
        ": the server's text is logged at debug level".to_string()
    }
}

impl DavError {
    /// 401/403: the configuration must change before another try can succeed.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            DavError::Unauthorized { .. } | DavError::Authentication(_)
        )
    }

    /// Worth trying again later: timeouts, transport errors, 5xx and 429.
    pub fn is_retryable(&self) -> bool {
        match self {
            DavError::Timeout | DavError::Transport(_) => true,
            DavError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

impl From<fogis_dav::DavError> for DavError {
    fn from(e: fogis_dav::DavError) -> DavError {
        use fogis_dav::DavError as E;
        match e {
            E::CredentialsRefused { .. } => DavError::Unauthorized { status: 401 },
            E::Forbidden { .. } => DavError::Unauthorized { status: 403 },
            E::AuthSchemeUnsupported { .. } | E::CredentialsMissing | E::ChallengeMissing => {
                DavError::Authentication(e.to_string())
            }
            E::Precondition {
                status,
                name,
                reason,
                ..
            } => DavError::Refused {
                status,
                precondition: name,
                reason,
            },
            E::PreconditionFailed => DavError::PreconditionFailed,
            E::NotFound { .. } => DavError::NotFound,
            E::Redirect { status, location } => DavError::Status {
                status,
                body_excerpt: format!("redirected to {location}"),
            },
            E::Status {
                status,
                body_excerpt,
            } => {
                tracing::debug!(
                    status,
                    excerpt = %crate::mask::mask_pii(&body_excerpt),
                    "DAV server's error answer"
                );
                DavError::Status {
                    status,
                    body_excerpt,
                }
            }
            E::Timeout => DavError::Timeout,
            E::Transport(t) => DavError::Transport(t),
            E::Protocol(t) => DavError::Protocol(t),
        }
    }
}
