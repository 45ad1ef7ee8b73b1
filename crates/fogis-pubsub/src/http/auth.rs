//! One access policy for every route of an app: the library's status routes and whatever the
//! app merges beside them. It is a single middleware over the whole router, so a route cannot
//! forget its check.
//!
//! | request | passes when |
//! | --- | --- |
//! | `POST` (any path) | `Authorization: Bearer <write token>` (scheme in any case), or no write token is configured |
//! | `POST` to a *trigger* path with an empty body or exactly `{}` | always: it carries no data |
//! | `GET`/`HEAD` of a *public* path | always (the app keeps personal data out of those) |
//! | any other request | no token is configured, or the read token as `?token=` or in the header, or the write token in the header |
//!
//! The write token is never accepted in the query: URLs end up in logs, browser histories and
//! calendar apps' settings. Responses of the non-public routes carry
//! `Cache-Control: private, no-store`, whatever the route set.
//!
//! ```
//! use fogis_pubsub::http::auth::AccessPolicy;
//!
//! let policy = AccessPolicy::new(
//!     Some("a-write-token-of-32-characters!!".into()),
//!     Some("a-feed-token-for-calendar-apps".into()),
//! )
//! .expect("tokens are long enough and differ")
//! .public(["/health"])
//! .trigger(["/sync"]);
//! let app: axum::Router = policy.protect(
//!     axum::Router::new().route("/health", axum::routing::get(|| async { "ok" })),
//! );
//! # let _ = app;
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

/// Shortest token accepted: 16 characters.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Largest body a trigger request may carry without a token (`{}`, or the old body's fields).
pub const TRIGGER_MAX_BYTES: usize = 4096;

/// The keys of the deployed calendar service's old `/sync` body; a body of only these asks for
/// a sync and carries no match list.
const OLD_SYNC_KEYS: [&str; 3] = ["delete", "username", "password"];

/// Which token a [`TokenError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The write token (the calendar service's `API_TOKEN`).
    Write,
    /// The read token (the calendar service's `FEED_TOKEN`).
    Read,
}

/// A token that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Empty or only whitespace (what an uncommented `API_TOKEN: ""` gives).
    #[error("is empty: set at least {MIN_TOKEN_CHARS} characters, or unset it")]
    Empty(TokenKind),
    /// Contains whitespace (a copy-paste accident, and unusable in a URL).
    #[error("contains whitespace")]
    Whitespace(TokenKind),
    /// Fewer than [`MIN_TOKEN_CHARS`] characters.
    #[error("is {1} characters long: use at least {MIN_TOKEN_CHARS}")]
    Short(TokenKind, usize),
    /// Both tokens are the same: the read token travels in URLs, so the write token would too.
    #[error("is the same as the write token: the read token travels in URLs, use another")]
    Same,
}

impl TokenError {
    /// The token the error is about.
    pub fn kind(&self) -> TokenKind {
        match self {
            TokenError::Empty(k) | TokenError::Whitespace(k) | TokenError::Short(k, _) => *k,
            TokenError::Same => TokenKind::Read,
        }
    }
}

/// A checked token; never shows itself in `Debug`.
#[derive(Clone, PartialEq, Eq)]
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    fn check(kind: TokenKind, value: String) -> Result<Token, TokenError> {
        if value.trim().is_empty() {
            return Err(TokenError::Empty(kind));
        }
        if value.chars().any(char::is_whitespace) {
            return Err(TokenError::Whitespace(kind));
        }
        let n = value.chars().count();
        if n < MIN_TOKEN_CHARS {
            return Err(TokenError::Short(kind, n));
        }
        Ok(Token(value))
    }

    fn matches(&self, offered: &str) -> bool {
        constant_time_eq(offered.as_bytes(), self.0.as_bytes())
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer ...` header (scheme in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Who may do what; see the module documentation. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    write: Option<Token>,
    read: Option<Token>,
    public: BTreeSet<String>,
    triggers: BTreeSet<String>,
}

impl AccessPolicy {
    /// A policy with these tokens (`None`: not configured), no public and no trigger path.
    ///
    /// # Errors
    /// A token that is empty, has whitespace, is shorter than [`MIN_TOKEN_CHARS`], or a read
    /// token equal to the write token.
    pub fn new(write: Option<String>, read: Option<String>) -> Result<Self, TokenError> {
        let write = write
            .map(|t| Token::check(TokenKind::Write, t))
            .transpose()?;
        let read = read.map(|t| Token::check(TokenKind::Read, t)).transpose()?;
        if let (Some(w), Some(r)) = (&write, &read) {
            if w == r {
                return Err(TokenError::Same);
            }
        }
        Ok(AccessPolicy {
            write,
            read,
            ..AccessPolicy::default()
        })
    }

    /// An open policy: no token, every request passes (for a service on loopback only).
    pub fn open() -> Self {
        AccessPolicy::default()
    }

    /// Paths anyone may `GET`: they must never show personal data.
    pub fn public<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.public.extend(paths.into_iter().map(Into::into));
        self
    }

    /// `POST` paths that pass without a token when the body is empty or `{}`.
    pub fn trigger<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.triggers.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Whether a write token is configured.
    pub fn has_write_token(&self) -> bool {
        self.write.is_some()
    }

    /// Whether a read token is configured.
    pub fn has_read_token(&self) -> bool {
        self.read.is_some()
    }

    /// Whether a request with these headers and this query token may write.
    pub fn may_write(&self, headers: &HeaderMap) -> bool {
        match &self.write {
            None => true,
            Some(w) => bearer(headers).is_some_and(|b| w.matches(b)),
        }
    }

    /// Whether a request may read what is not public: no token configured, or the read token
    /// (query or header), or the write token (header only).
    pub fn may_read(&self, headers: &HeaderMap, query_tokens: &[&str]) -> bool {
        if self.write.is_none() && self.read.is_none() {
            return true;
        }
        let header = bearer(headers);
        if let Some(r) = &self.read {
            if header.is_some_and(|b| r.matches(b)) || query_tokens.iter().any(|q| r.matches(q)) {
                return true;
            }
        }
        if let Some(w) = &self.write {
            if header.is_some_and(|b| w.matches(b)) {
                return true;
            }
            if query_tokens.iter().any(|q| w.matches(q)) {
                tracing::warn!(
                    "the write token was sent in a URL and refused there: it may now be in logs, rotate it"
                );
            }
        }
        false
    }

    /// `router` behind this policy: one middleware for all its routes.
    pub fn protect<S: Clone + Send + Sync + 'static>(self, router: Router<S>) -> Router<S> {
        router.layer(axum::middleware::from_fn_with_state(Arc::new(self), check))
    }
}

/// The `token` values of a query string (none when it does not parse).
pub fn query_tokens(uri: &axum::http::Uri) -> Vec<String> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| {
            pairs
                .into_iter()
                .filter(|(k, _)| k == "token")
                .map(|(_, v)| v)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `body` only asks for a sync (the older processors' trigger, PROTOCOL.md section 7):
/// empty, white space, `{}`, or an object of the old `/sync` body's keys (`delete`, `username`,
/// `password`) only, at most [`TRIGGER_MAX_BYTES`]. The one rule for the access layer and the
/// handler.
pub fn is_trigger_body(body: &[u8]) -> bool {
    let text = body.trim_ascii();
    if text.is_empty() {
        return true;
    }
    if text.len() > TRIGGER_MAX_BYTES || text[0] != b'{' {
        return false;
    }
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(text) {
        Ok(map) => map.keys().all(|k| OLD_SYNC_KEYS.contains(&k.as_str())),
        Err(_) => false,
    }
}

async fn check(State(policy): State<Arc<AccessPolicy>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if req.method() == Method::POST {
        if policy.may_write(req.headers()) {
            return next.run(req).await;
        }
        if policy.triggers.contains(&path) {
            let (parts, body) = req.into_parts();
            return match axum::body::to_bytes(body, TRIGGER_MAX_BYTES).await {
                Ok(bytes) if is_trigger_body(&bytes) => {
                    next.run(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                _ => unauthorized(),
            };
        }
        return unauthorized();
    }
    let read_only = req.method() == Method::GET || req.method() == Method::HEAD;
    if read_only && policy.public.contains(&path) {
        return next.run(req).await;
    }
    let offered = query_tokens(req.uri());
    let offered: Vec<&str> = offered.iter().map(String::as_str).collect();
    if !policy.may_read(req.headers(), &offered) {
        return unauthorized();
    }
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    resp
}

/// The one refusal: no hint of which token was wrong.
fn unauthorized() -> Response {
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"success": false, "error": "missing or wrong token"})),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const W: &str = "write-token-0123456789";
    const R: &str = "read-token-0123456789";

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let new = |w: &str, r: Option<&str>| AccessPolicy::new(Some(w.into()), r.map(Into::into));
        assert_eq!(
            new("", None).unwrap_err(),
            TokenError::Empty(TokenKind::Write)
        );
        assert_eq!(
            new("   ", None).unwrap_err(),
            TokenError::Empty(TokenKind::Write)
        );
        assert_eq!(
            new("0123456789abcdef ", None).unwrap_err(),
            TokenError::Whitespace(TokenKind::Write)
        );
        assert_eq!(
            new("short", None).unwrap_err(),
            TokenError::Short(TokenKind::Write, 5)
        );
        assert_eq!(
            new(W, Some("x")).unwrap_err(),
            TokenError::Short(TokenKind::Read, 1)
        );
        assert_eq!(new(W, Some(W)).unwrap_err(), TokenError::Same);
        assert!(new("0123456789abcdef", Some(R)).is_ok());
    }

    #[test]
    fn the_write_token_is_read_from_the_header_only_in_any_scheme_case() {
        let p = AccessPolicy::new(Some(W.into()), Some(R.into())).unwrap();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            assert!(p.may_write(&headers(&format!("{scheme} {W}"))), "{scheme}");
        }
        assert!(!p.may_write(&headers(&format!("Basic {W}"))));
        assert!(!p.may_write(&headers(&format!("Bearer {R}"))));
        assert!(!p.may_write(&headers("Bearer")));
        assert!(!p.may_write(&HeaderMap::new()));
        assert!(p.may_read(&headers(&format!("Bearer {W}")), &[]));
        assert!(!p.may_read(&HeaderMap::new(), &[W]), "write token in a URL");
        assert!(p.may_read(&HeaderMap::new(), &[R]));
        assert!(p.may_read(&headers(&format!("Bearer {R}")), &[]));
        assert!(!p.may_read(&HeaderMap::new(), &["", "nope"]));
    }

    #[test]
    fn without_tokens_everything_passes() {
        let p = AccessPolicy::open();
        assert!(p.may_write(&HeaderMap::new()));
        assert!(p.may_read(&HeaderMap::new(), &[]));
    }

    #[test]
    fn only_a_body_without_a_match_list_is_a_trigger() {
        for ok in [
            &b""[..],
            b"  ",
            b"{}",
            b" { \n } ",
            b"\r\n{}\r\n",
            br#"{"delete": true}"#,
            br#"{"username": "u", "password": "p", "delete": false}"#,
        ] {
            assert!(is_trigger_body(ok), "{ok:?}");
        }
        for no in [
            &b"{\"matches\":[]}"[..],
            b"[]",
            b"{",
            b"null",
            b"{}{}",
            b"x",
            br#"{"delete": true, "matches": []}"#,
            br#"{"metadata": {}}"#,
        ] {
            assert!(!is_trigger_body(no), "{no:?}");
        }
    }
}
