//! Status and control routes for any axum application (option 2 of the integration README).
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /redis-status` | connection state and the main counters (shape of the deployed service) |
//! | `GET /redis-stats` | every counter, the last status and alert, the recent messages, the stream consumer |
//! | `GET /redis-config` | URL (password redacted), channels, timings, catch-up key, stream settings |
//! | `POST /redis-restart` | drop the connection and reconnect now |
//! | `POST /redis-test` | a real round trip on the private probe channel; 503 when it fails |
//!
//! The router carries its own state, so it merges into any app:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fogis_pubsub::{http, subscribe_to_match_updates, HandlerOutcome, SubscriberConfig};
//!
//! let handle = subscribe_to_match_updates(SubscriberConfig::default(), |_update| async {
//!     HandlerOutcome::Duplicate
//! });
//! let app = axum::Router::new()
//!     .route("/health", axum::routing::get(|| async { "ok" }))
//!     .merge(http::router(handle.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9083").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

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

/// The routes above, with the handle as their state.
pub fn router(handle: SubscriberHandle) -> Router {
    Router::new()
        .route("/redis-status", get(status))
        .route("/redis-stats", get(stats))
        .route("/redis-config", get(config))
        .route("/redis-restart", post(restart))
        .route("/redis-test", post(test))
        .with_state(handle)
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

async fn restart(State(handle): State<SubscriberHandle>) -> Result<Json<Value>, ApiError> {
    if !handle.config().enabled {
        return Err(ApiError::Disabled);
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, enabled, error) = match self {
            ApiError::Disabled => (
                StatusCode::CONFLICT,
                false,
                ProbeError::Disabled.to_string(),
            ),
            ApiError::Probe(e) => {
                let enabled = e != ProbeError::Disabled;
                (StatusCode::SERVICE_UNAVAILABLE, enabled, e.to_string())
            }
        };
        let body = json!({
            "success": false,
            "timestamp": now(),
            "redis_enabled": enabled,
            "redis_available": false,
            "error": error,
        });
        (code, Json(body)).into_response()
    }
}
