//! The HTTP API: routes, authentication and the one place where errors become status codes.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Secret;
use crate::engine::{Applied, ApplyError, Engine};
use crate::metrics::{Gauges, Metrics};
use crate::reconcile::{Presence, StoredMatch};
use fogis_pubsub::SubscriberHandle;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    pub subscriber: SubscriberHandle,
    pub sinks: crate::sinks::Sinks,
    pub user_referee_number: Option<String>,
    pub api_token: Option<Secret>,
    pub feed_token: Option<Secret>,
    pub max_body_bytes: usize,
    pub started: Instant,
}

/// Errors a request can end in. The only place they become HTTP answers is `into_response`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("request body exceeds MAX_BODY_BYTES ({0} bytes)")]
    TooLarge(usize),
    #[error("missing or wrong token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(detail) => {
                // Internals are logged, never sent.
                tracing::error!(error = %detail, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut resp = (
            status,
            Json(json!({"success": false, "error": self.to_string()})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/", get(crate::status_page::page))
        .route("/health", get(health))
        .route("/sync", post(sync))
        .route("/manual-sync", post(sync))
        .route("/matches", get(matches))
        .route("/calendar.ics", get(calendar))
        .route("/contacts.vcf", get(contacts))
        .route("/sinks", get(sinks))
        .route("/quarantine", get(quarantine))
        .route("/metrics", get(metrics))
        .route("/held", get(held_list))
        .route("/held/{id}/apply", post(held_apply))
        .route("/held/{id}/discard", post(held_discard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// POST routes: the API token, when one is configured.
fn require_api_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match &state.api_token {
        None => Ok(()),
        Some(t)
            if bearer(headers)
                .is_some_and(|b| constant_time_eq(b.as_bytes(), t.expose().as_bytes())) =>
        {
            Ok(())
        }
        Some(_) => Err(ApiError::Unauthorized),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    pub(crate) token: Option<String>,
}

/// Whether a read request may see personal data: no token configured, or it carries one.
pub(crate) fn may_see_personal_data(
    state: &AppState,
    headers: &HeaderMap,
    query: &TokenQuery,
) -> bool {
    let tokens: Vec<&Secret> = [&state.api_token, &state.feed_token]
        .into_iter()
        .flatten()
        .collect();
    if tokens.is_empty() {
        return true;
    }
    let offered = [bearer(headers), query.token.as_deref()];
    tokens.iter().any(|t| {
        offered
            .iter()
            .flatten()
            .any(|o| constant_time_eq(o.as_bytes(), t.expose().as_bytes()))
    })
}

/// Liveness and a summary. Always 200 while the service runs: Redis being away degrades the
/// service to HTTP only, it does not make it unhealthy.
async fn health(State(state): State<AppState>) -> Json<Value> {
    // The view: no lock, no SQL, so this answers while another process holds the write lock.
    let view = state.engine.view();
    let matches = &view.matches;
    let in_feed = matches.iter().filter(|m| m.presence.in_feed()).count();
    let held = view.pending_holds;
    let mut attention = Vec::new();
    if held > 0 {
        attention.push(format!(
            "{held} list(s) held instead of applied (they would empty the calendar): see GET /held, confirm with POST /held/ID/apply"
        ));
    }
    let redis = state.subscriber.status();
    let mode = match (redis.enabled, redis.connected) {
        (false, _) => "http-only (Redis disabled)",
        (true, true) => "real-time (Redis connected)",
        (true, false) => "degraded: Redis unavailable, HTTP only until it returns",
    };
    Json(json!({
        "status": "ok",
        "service": "fogis-calendar-sync",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "mode": mode,
        "matches": matches.len(),
        "events_in_feed": in_feed,
        "held_snapshots": held,
        "attention": attention,
        "sinks": sink_summary(&state),
        "redis": {
            "enabled": redis.enabled,
            "connected": redis.connected,
            "subscribed": redis.subscribed,
            "connected_since": redis.connected_since,
            "disconnected_since": redis.disconnected_since,
            "reconnect_count": redis.reconnect_count,
            "last_error": redis.last_error,
            "last_sync_time": redis.last_sync_time,
        },
    }))
}

fn sink_summary(state: &AppState) -> Value {
    state
        .sinks
        .snapshot()
        .iter()
        .map(|s| {
            let health = if let Some(what) = &s.reauthorize {
                what.as_str()
            } else if s.auth_failed && s.name.starts_with("google") {
                "access refused by Google (calendar id or permissions): see last_error"
            } else if s.auth_failed {
                "credentials refused: fix the sink's username/password"
            } else if s.paused_until.is_some() {
                "unavailable: retrying"
            } else {
                "ok"
            };
            json!({
                "name": s.name,
                "state": health,
                "pending": s.pending,
                "last_success": s.last_success,
                "last_error": s.last_error,
            })
        })
        .collect()
}

async fn sinks(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"success": true, "sinks": state.sinks.snapshot()}))
}

/// The phonebook as vCards: the same cards the CardDAV sink writes.
async fn contacts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    if !may_see_personal_data(&state, &headers, &query) {
        return Err(ApiError::Unauthorized);
    }
    let book = crate::sinks::phonebook::phonebook(
        &state.engine.matches(),
        state.user_referee_number.as_deref(),
        chrono::Utc::now(),
    );
    Ok((
        [(header::CONTENT_TYPE, "text/vcard; charset=utf-8")],
        crate::sinks::phonebook::render_all(&book),
    )
        .into_response())
}

async fn metrics(State(state): State<AppState>) -> Response {
    let redis = state.subscriber.status();
    let matches = state.engine.matches();
    let count = |p: Presence| matches.iter().filter(|m| m.presence == p).count();
    let gauges = Gauges {
        redis_enabled: redis.enabled,
        redis_connected: redis.connected,
        reconnects: redis.reconnect_count,
        coalesced: redis.messages_coalesced,
        matches: [Presence::Listed, Presence::Withdrawn, Presence::Archived]
            .into_iter()
            .map(|p| (p.as_str(), count(p)))
            .collect(),
        held: state.engine.pending_holds(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&gauges),
    )
        .into_response()
}

async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_api_token(&state, &headers)?;
    let engine = state.engine.clone();
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let size = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("unknown")
                .to_string();
            let reason = format!(
                "body of {size} bytes exceeds MAX_BODY_BYTES ({})",
                state.max_body_bytes
            );
            tracing::warn!(%reason, "rejected /sync body");
            tokio::task::spawn_blocking(move || engine.quarantine("http", &reason, &[]))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            return Err(ApiError::TooLarge(state.max_body_bytes));
        }
        Err(rejection) => return Err(ApiError::BadRequest(rejection.body_text())),
    };
    let outcome = tokio::task::spawn_blocking(move || crate::apply_bytes(&engine, &body, "http"))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let label = match &outcome {
        Ok(a) if a.held.is_some() => "held",
        Ok(a) if a.duplicate => "duplicate",
        Ok(_) => "applied",
        Err(crate::IngestError::NotAMatchUpdate(_)) => "ignored",
        Err(_) => "rejected",
    };
    state.metrics.count_message("http", label);
    match outcome {
        Ok(applied) if applied.held.is_some() => {
            Ok((StatusCode::ACCEPTED, Json(sync_response(&applied))).into_response())
        }
        Ok(applied) => Ok(Json(sync_response(&applied)).into_response()),
        Err(crate::IngestError::Rejected(reason)) => Err(ApiError::BadRequest(reason)),
        Err(crate::IngestError::NotAMatchUpdate(kind)) => Err(ApiError::BadRequest(format!(
            "a {kind} message carries no matches; post a match update"
        ))),
        Err(crate::IngestError::Fatal(e)) => Err(ApiError::Internal(e)),
    }
}

/// The `/sync` answer: a superset of the deployed service's `{"success": true}`.
pub fn sync_response(applied: &Applied) -> Value {
    let c = applied.counts;
    json!({
        "success": true,
        "applied": !applied.duplicate && applied.held.is_none(),
        "held": applied.held,
        "duplicate": applied.duplicate,
        "message_id": applied.message_id,
        "created": c.created,
        "updated": c.updated,
        "cancelled": c.cancelled,
        "withdrawn": c.withdrawn,
        "archived": c.archived,
        "unchanged": c.unchanged,
        "rejected": c.rejected,
        "rejections": applied.rejections,
    })
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::AllRejected(_) | ApplyError::TooManyMatches { .. } => {
                ApiError::BadRequest(e.to_string())
            }
            ApplyError::NoSuchHold(_) => ApiError::NotFound(e.to_string()),
            ApplyError::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

async fn held_list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let engine = state.engine.clone();
    let list = tokio::task::spawn_blocking(move || engine.holds())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let pending = list.iter().filter(|h| h.state == "pending").count();
    Ok(Json(
        json!({"success": true, "pending": pending, "held": list}),
    ))
}

async fn held_apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    require_api_token(&state, &headers)?;
    let engine = state.engine.clone();
    let applied = tokio::task::spawn_blocking(move || engine.apply_held(id, "operator"))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    tracing::warn!(held_id = id, "held list applied by an operator");
    Ok(Json(sync_response(&applied)))
}

async fn held_discard(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    require_api_token(&state, &headers)?;
    let engine = state.engine.clone();
    let done = tokio::task::spawn_blocking(move || engine.discard_held(id))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !done {
        return Err(ApiError::NotFound(format!("no pending held list #{id}")));
    }
    Ok(Json(json!({"success": true, "discarded": id})))
}

/// One stored match as `/matches` shows it; contact data only to those who may see it.
fn match_json(m: &StoredMatch, personal: bool) -> Value {
    let mut record = serde_json::to_value(&m.record).unwrap_or(Value::Null);
    if !personal {
        strip_personal(&mut record);
    }
    json!({
        "match_id": m.record.match_id,
        "title": m.record.title(),
        "start": m.record.start,
        "presence": m.presence,
        "in_feed": m.presence.in_feed(),
        "cancelled": m.record.cancelled,
        "sequence": m.sequence,
        "last_action": m.last_action.as_str(),
        "created_at": m.created_at,
        "changed_at": m.changed_at,
        "hash": m.hash,
        "record": record,
    })
}

fn strip_personal(record: &mut Value) {
    for list in ["referees", "team_contacts"] {
        if let Some(Value::Array(people)) = record.get_mut(list) {
            for p in people {
                if let Value::Object(o) = p {
                    for key in ["mobile", "phone", "email", "address"] {
                        o.remove(key);
                    }
                }
            }
        }
    }
}

async fn matches(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Json<Value> {
    let personal = may_see_personal_data(&state, &headers, &query);
    let list: Vec<Value> = state
        .engine
        .matches()
        .iter()
        .map(|m| match_json(m, personal))
        .collect();
    Json(json!({"success": true, "count": list.len(), "matches": list}))
}

async fn calendar(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    if let Some(t) = &state.feed_token {
        let ok = query
            .token
            .as_deref()
            .is_some_and(|q| constant_time_eq(q.as_bytes(), t.expose().as_bytes()));
        if !ok {
            return Err(ApiError::Unauthorized);
        }
    }
    let etag = format!("\"g{}\"", state.engine.generation());
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let engine = state.engine.clone();
    let text = tokio::task::spawn_blocking(move || engine.feed())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_string(),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        text.as_str().to_owned(),
    )
        .into_response())
}

async fn quarantine(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_api_token(&state, &headers)?;
    let engine = state.engine.clone();
    let list = tokio::task::spawn_blocking(move || engine.quarantined(100))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(
        json!({"success": true, "count": list.len(), "entries": list}),
    ))
}
