//! Status and control routes for any axum application (option 2 of the integration README).
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /redis-status` | connection state and the main counters (shape of the deployed service) |
//! | `GET /redis-stats` | every counter, the last status and alert (known values, times and counts: never their text), the recent messages (fixed outcome texts), the stream consumer |
//! | `GET /redis-config` | URL (password redacted), channels, timings, catch-up key, stream settings |
//! | `POST /redis-restart` | drop the connection and reconnect now |
//! | `POST /redis-test` | a real round trip on the private probe channel; 503 when it fails |
//!
//! `/redis-status` and `/redis-config` are public ([`PUBLIC_ROUTES`]: no personal data, no
//! foreign text); `/redis-stats` holds no message text either (see [`crate::status`]) but shows
//! the history of what arrived, so it needs the read token once tokens are configured; the `POST` routes need the write token ([`auth::AccessPolicy`]). A restart
//! is refused with 429 within [`RESTART_INTERVAL`] of the previous one: every restart can lose
//! what was published while the connection was down.
//!
//! [`router`] carries its own state and its policy, so it merges into any app. An app that
//! puts one policy over everything merges [`routes`] instead and protects the whole:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fogis_pubsub::{http, subscribe_to_match_updates, HandlerOutcome, SubscriberConfig};
//! use fogis_pubsub::http::auth::AccessPolicy;
//!
//! let handle = subscribe_to_match_updates(SubscriberConfig::default(), |_update| async {
//!     HandlerOutcome::Duplicate
//! });
//! let policy = AccessPolicy::new(
//!     std::env::var("API_TOKEN").ok(),
//!     std::env::var("FEED_TOKEN").ok(),
//! )
//! .expect("usable tokens")
//! .public(["/health"])
//! .public(http::PUBLIC_ROUTES);
//! let app = policy.protect(
//!     axum::Router::new()
//!         .route("/health", axum::routing::get(|| async { "ok" }))
//!         .merge(http::routes(handle.clone())),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9083").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

pub mod auth;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};

use crate::error::ProbeError;
use crate::publisher::format_timestamp;
use crate::subscriber::SubscriberHandle;

/// The routes that show neither personal data nor foreign text: anyone may read them.
pub const PUBLIC_ROUTES: [&str; 2] = ["/redis-status", "/redis-config"];

/// Shortest time between two restarts asked over HTTP.
pub const RESTART_INTERVAL: Duration = Duration::from_secs(10);

/// The routes above behind `policy` (plus [`PUBLIC_ROUTES`]).
pub fn router(handle: SubscriberHandle, policy: auth::AccessPolicy) -> Router {
    policy.public(PUBLIC_ROUTES).protect(routes(handle))
}

/// The routes above without any access check: for an app that puts one
/// [`auth::AccessPolicy`] over its whole router. Never serve them unprotected.
pub fn routes(handle: SubscriberHandle) -> Router {
    Router::new()
        .route("/redis-status", get(status))
        .route("/redis-stats", get(stats))
        .route("/redis-config", get(config))
        .route("/redis-restart", post(restart))
        .route("/redis-test", post(test))
        .with_state(Routes {
            handle,
            last_restart: Arc::new(Mutex::new(None)),
        })
}

/// The routes' state: the handle, and when the last restart was asked for.
#[derive(Debug, Clone)]
struct Routes {
    handle: SubscriberHandle,
    // A std Mutex: held for one comparison, never across an await.
    last_restart: Arc<Mutex<Option<Instant>>>,
}

impl axum::extract::FromRef<Routes> for SubscriberHandle {
    fn from_ref(r: &Routes) -> SubscriberHandle {
        r.handle.clone()
    }
}

fn now() -> String {
    format_timestamp(Utc::now())
}

async fn status(State(handle): State<SubscriberHandle>) -> Json<Value> {
    let s = handle.status();
    Json(json!({
        "success": true,
        "timestamp": now(),
        "redis_enabled": s.enabled,
        "last_sync_time": s.last_sync_time,
        "sync_count": s.sync_count,
        "redis_status": {
            "enabled": s.enabled,
            "connected": s.connected,
            "subscribed": s.subscribed,
            "redis_available": s.redis_available,
        },
        "stats": {
            "channels": s.channels,
            "messages_received": s.messages_received,
            "messages_applied": s.messages_applied,
            "messages_duplicate": s.messages_duplicate,
            "messages_stale": s.messages_stale,
            "messages_held": s.messages_held,
            "messages_rejected": s.messages_rejected,
            "reconnect_count": s.reconnect_count,
            "catch_ups": s.catch_ups,
            "last_message_at": s.last_message_at,
            "last_error": s.last_error,
            "stream": s.stream.as_ref().map(|st| json!({
                "connected": st.connected,
                "pending": st.pending,
                "last_id": st.last_id,
                "last_error": st.last_error,
            })),
        },
    }))
}

async fn stats(State(handle): State<SubscriberHandle>) -> Json<Value> {
    let mut body = json!({"success": true, "timestamp": now()});
    // SubscriberStatus serialises to an object; should that ever fail, the flag says so.
    match serde_json::to_value(handle.status()) {
        Ok(Value::Object(fields)) => {
            if let Value::Object(b) = &mut body {
                b.extend(fields);
            }
        }
        _ => body["success"] = Value::Bool(false),
    }
    Json(body)
}

async fn config(State(handle): State<SubscriberHandle>) -> Json<Value> {
    let c = handle.config();
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    Json(json!({
        "success": true,
        "timestamp": now(),
        "enabled": c.enabled,
        "redis_url": c.redis_url.redacted(),
        "match_channels": c.match_channels,
        "status_channels": c.status_channels,
        "probe_channel": handle.probe_channel(),
        "backoff_initial_ms": ms(c.backoff_initial),
        "backoff_max_ms": ms(c.backoff_max),
        "ping_interval_ms": ms(c.ping_interval),
        "ping_timeout_ms": ms(c.ping_timeout),
        "connect_timeout_ms": ms(c.connect_timeout),
        "max_message_bytes": c.max_message_bytes,
        "pubsub": c.pubsub,
        "latest_key": c.latest_key,
        "stream": c.stream.as_ref().map(|st| json!({
            "key": st.key,
            "group": st.group,
            "consumer": st.consumer,
            "block_ms": ms(st.block),
            "batch": st.batch,
            "claim_idle_ms": ms(st.claim_idle),
            "claim_every_ms": ms(st.claim_every),
            "coalesce": st.coalesce,
        })),
    }))
}

async fn restart(State(routes): State<Routes>) -> Result<Json<Value>, ApiError> {
    let handle = &routes.handle;
    if !handle.config().enabled {
        return Err(ApiError::Disabled);
    }
    {
        let mut last = routes
            .last_restart
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if let Some(wait) = last.and_then(|t| RESTART_INTERVAL.checked_sub(now - t)) {
            return Err(ApiError::TooSoon(wait));
        }
        *last = Some(now);
    }
    handle.restart();
    Ok(Json(json!({
        "success": true,
        "timestamp": now(),
        "message": "reconnecting to Redis",
    })))
}

async fn test(State(handle): State<SubscriberHandle>) -> Result<Json<Value>, ApiError> {
    let round_trip = handle.probe().await.map_err(ApiError::Probe)?;
    Ok(Json(json!({
        "success": true,
        "timestamp": now(),
        "redis_enabled": true,
        "redis_available": true,
        "round_trip_ms": round_trip.as_secs_f64() * 1000.0,
    })))
}

/// Every error of these routes, mapped to a status code in one place.
#[derive(Debug)]
enum ApiError {
    Disabled,
    Probe(ProbeError),
    /// A restart within [`RESTART_INTERVAL`] of the last one; the time left.
    TooSoon(Duration),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, enabled, error, retry_after) = match self {
            ApiError::Disabled => (
                StatusCode::CONFLICT,
                false,
                ProbeError::Disabled.to_string(),
                None,
            ),
            ApiError::Probe(e) => {
                let enabled = e != ProbeError::Disabled;
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    enabled,
                    e.to_string(),
                    None,
                )
            }
            ApiError::TooSoon(wait) => {
                let secs = wait.as_secs() + 1;
                let error = format!(
                    "restarted less than {}s ago: try again in {secs}s",
                    RESTART_INTERVAL.as_secs()
                );
                (StatusCode::TOO_MANY_REQUESTS, true, error, Some(secs))
            }
        };
        let body = json!({
            "success": false,
            "timestamp": now(),
            "redis_enabled": enabled,
            "redis_available": false,
            "error": error,
        });
        let mut resp = (code, Json(body)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}
