//! Who may call what: one [`AccessPolicy`] (the library's, so its status routes and ours follow
//! the same rules) over the whole merged app, and the start-up checks that keep an exposed
//! service from running without tokens.
//!
//! - Every `POST` needs `Authorization: Bearer API_TOKEN`, except the trigger (`POST /sync` or
//!   `/manual-sync` with an empty body or `{}`), which carries no data.
//! - [`PUBLIC`] and the library's [`fogis_pubsub::http::PUBLIC_ROUTES`] show no personal data
//!   and need no token. Every other response (the feed, the phonebook, `/matches`, `/`,
//!   `/sinks`, `/redis-stats`, `/quarantine`, `/held`, and any path not known) needs
//!   `FEED_TOKEN` (`?token=` or the header) or `API_TOKEN` (header only) once a token is
//!   configured, and is sent with `Cache-Control: private, no-store`.
//! - `serve` refuses to listen beyond loopback unless both tokens are set or
//!   `ALLOW_UNAUTHENTICATED=true`; an empty, short (< 16 characters) or whitespace token, or
//!   `FEED_TOKEN` equal to `API_TOKEN`, is a configuration error.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use axum::Router;
use serde::Deserialize;

use crate::config::Secret;
use crate::http::AppState;
use fogis_pubsub::http::auth::{AccessPolicy, TokenError, TokenKind};

use crate::config::ServeOpts;

/// Our routes anyone may `GET`: counters and a summary, no personal data.
pub const PUBLIC: [&str; 2] = ["/health", "/metrics"];

/// The `POST` routes that, body-less (or `{}`), only ask for a sync.
pub const TRIGGERS: [&str; 2] = ["/sync", "/manual-sync"];

/// A configuration that must not run.
#[derive(Debug, thiserror::Error)]
pub enum AccessConfigError {
    /// A token that cannot be used.
    #[error("{var} {error}")]
    Token {
        var: &'static str,
        error: TokenError,
    },
    /// Listening beyond loopback without both tokens.
    #[error(
        "BIND={addr} is reachable from other machines, but {missing} not set: set it (at least 16 characters), \
         or bind to 127.0.0.1, or set ALLOW_UNAUTHENTICATED=true to let anyone who reaches the port read the \
         referees' personal data{writes}"
    )]
    Exposed {
        addr: SocketAddr,
        missing: String,
        writes: &'static str,
    },
}

fn var(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Write => "API_TOKEN",
        TokenKind::Read => "FEED_TOKEN",
    }
}

/// The policy of `opts`, checked against the address actually bound.
///
/// # Errors
/// See [`AccessConfigError`].
pub fn policy(opts: &ServeOpts, addr: SocketAddr) -> Result<AccessPolicy, AccessConfigError> {
    let token = |t: &Option<crate::config::Secret>| t.as_ref().map(|s| s.expose().to_string());
    let policy =
        AccessPolicy::new(token(&opts.api_token), token(&opts.feed_token)).map_err(|error| {
            AccessConfigError::Token {
                var: var(error.kind()),
                error,
            }
        })?;
    let missing: Vec<&str> = [
        (!policy.has_write_token()).then_some("API_TOKEN"),
        (!policy.has_read_token()).then_some("FEED_TOKEN"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !addr.ip().is_loopback() && !missing.is_empty() {
        if !opts.allow_unauthenticated {
            return Err(AccessConfigError::Exposed {
                addr,
                missing: if missing.len() == 1 {
                    format!("{} is", missing[0])
                } else {
                    format!("{} are", missing.join(" and "))
                },
                writes: if policy.has_write_token() {
                    ""
                } else {
                    " and change the calendar"
                },
            });
        }
        tracing::warn!(%addr, missing = %missing.join(", "), "ALLOW_UNAUTHENTICATED=true: serving beyond loopback without every token");
    }
    Ok(policy
        .public(PUBLIC)
        .public(fogis_pubsub::http::PUBLIC_ROUTES)
        .trigger(TRIGGERS))
}

/// `app` (ours and the library's routes, merged) behind `policy`: the one access layer.
pub fn protect(app: Router, policy: AccessPolicy) -> Router {
    policy.protect(app)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Secret;

    fn opts(api: Option<&str>, feed: Option<&str>, allow: bool) -> ServeOpts {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeOpts,
        }
        let mut o = Cli::parse_from(["x"]).serve;
        o.api_token = api.map(Secret::new);
        o.feed_token = feed.map(Secret::new);
        o.allow_unauthenticated = allow;
        o
    }

    const API: &str = "api-token-0123456789";
    const FEED: &str = "feed-token-0123456789";

    #[test]
    fn beyond_loopback_both_tokens_or_the_explicit_switch() {
        let any: SocketAddr = "0.0.0.0:9083".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:9083".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9083".parse().unwrap();
        let local6: SocketAddr = "[::1]:9083".parse().unwrap();
        for addr in [local, local6] {
            assert!(policy(&opts(None, None, false), addr).is_ok());
        }
        for addr in [any, lan] {
            let e = policy(&opts(None, None, false), addr)
                .unwrap_err()
                .to_string();
            assert!(e.contains("API_TOKEN and FEED_TOKEN are not set"), "{e}");
            assert!(e.contains("ALLOW_UNAUTHENTICATED=true"), "{e}");
            let e = policy(&opts(Some(API), None, false), addr)
                .unwrap_err()
                .to_string();
            assert!(e.contains(", but FEED_TOKEN is not set"), "{e}");
            let e = policy(&opts(None, Some(FEED), false), addr)
                .unwrap_err()
                .to_string();
            assert!(e.contains(", but API_TOKEN is not set"), "{e}");
            assert!(policy(&opts(Some(API), Some(FEED), false), addr).is_ok());
            assert!(policy(&opts(None, None, true), addr).is_ok());
        }
    }

    #[test]
    fn unusable_tokens_are_configuration_errors_naming_the_variable() {
        let local: SocketAddr = "127.0.0.1:9083".parse().unwrap();
        for (api, feed, want) in [
            (Some(""), None, "API_TOKEN is empty"),
            (Some("  "), None, "API_TOKEN is empty"),
            (None, Some(""), "FEED_TOKEN is empty"),
            (Some("short"), None, "API_TOKEN is 5 characters long"),
            (Some(API), Some("feed"), "FEED_TOKEN is 4 characters long"),
            (
                Some("with space 0123456789"),
                None,
                "API_TOKEN contains whitespace",
            ),
            (
                Some(API),
                Some(API),
                "FEED_TOKEN is the same as the write token",
            ),
        ] {
            // Even ALLOW_UNAUTHENTICATED does not make a bad token usable.
            let e = policy(&opts(api, feed, true), local)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{api:?} {feed:?}: {e}");
        }
    }
}

use fogis_pubsub::http::auth::bearer;
pub use fogis_pubsub::http::auth::constant_time_eq;

#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    pub(crate) token: Option<String>,
}

/// Whether a read request may see personal data: no token configured, or it carries the feed
/// token (query or header) or the API token (header only). The access layer already refused
/// every other request to the routes that call this; it stays as a second line.
pub(crate) fn may_see_personal_data(
    state: &AppState,
    headers: &HeaderMap,
    query: &TokenQuery,
) -> bool {
    if state.api_token.is_none() && state.feed_token.is_none() {
        return true;
    }
    let matches = |t: &Secret, o: Option<&str>| {
        o.is_some_and(|o| constant_time_eq(o.as_bytes(), t.expose().as_bytes()))
    };
    let feed = state
        .feed_token
        .as_ref()
        .is_some_and(|t| matches(t, bearer(headers)) || matches(t, query.token.as_deref()));
    let api = state
        .api_token
        .as_ref()
        .is_some_and(|t| matches(t, bearer(headers)));
    feed || api
}
