//! The HTTP API: routes and the one place where errors become status codes. Who may call which
//! route is decided once, for the whole merged app, in [`crate::http::auth`]; no handler checks a token.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::{Applied, Outcome};
use crate::http::auth::{may_see_personal_data, TokenQuery};
use crate::http::{ApiError, AppState};
use crate::ingest::metrics::Gauges;
use crate::reconcile::StoredMatch;

/// gzip or br for the feeds when the client asks (`Accept-Encoding`), with `Vary`.
pub(super) fn compression() -> tower_http::compression::CompressionLayer {
    tower_http::compression::CompressionLayer::new()
}

/// A feed's answer: `304` when the request's conditions say the client's copy is current, the
/// body otherwise; the validators either way.
fn feed_response(
    headers: &HeaderMap,
    v: crate::http::feeds::Validated,
    content_type: &'static str,
) -> Response {
    let validators = [
        (header::ETAG, v.etag.clone()),
        (header::LAST_MODIFIED, v.last_modified_header()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    if crate::http::feeds::not_modified(headers, &v, chrono::Utc::now()) {
        // The compression layer adds `Vary` to bodies it may compress; a 304 has none, and
        // must still say what a 200 would (RFC 9110 15.4.5).
        let vary = [(header::VARY, "accept-encoding")];
        return (StatusCode::NOT_MODIFIED, validators, vary).into_response();
    }
    // The cached bytes themselves: a reference count, not a copy of the feed.
    (validators, [(header::CONTENT_TYPE, content_type)], v.body).into_response()
}

/// Liveness and a summary. Always 200 while the service runs: Redis being away degrades the
/// service to HTTP only, it does not make it unhealthy.
pub(super) async fn health(State(state): State<AppState>) -> Json<Value> {
    // The view's counts, made at commit: no lock, no SQL, no walk over the matches, so this
    // answers at once, also while another process holds the write lock.
    let view = state.engine.view();
    let (count, in_feed) = (view.counts.matches, view.counts.in_feed);
    let held = view.pending_holds;
    let mut attention = Vec::new();
    if held > 0 {
        attention.push(format!(
            "{held} list(s) held instead of applied (they would empty the calendar): see GET /held, confirm with POST /held/ID/apply"
        ));
    }
    let failing = state.metrics.state.failing();
    if let Some(f) = &failing {
        attention.push(format!(
            "the state cannot be written since {} ({} failed attempts, last: {}): waiting lists are kept and retried; check the disk and other processes holding state.db",
            f.since, f.failed_attempts, f.last_error
        ));
    }
    let pull = state.pull.status();
    attention.extend(pull.attention());
    let lease = state.sinks.lease.status();
    if lease.role == crate::sinks::lease::Role::Standby && lease.last_error.is_some() {
        attention.push(
            "the sink lease cannot reach Redis: this instance writes no sink until it can (see sink_lease)"
                .into(),
        );
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
        "matches": count,
        "events_in_feed": in_feed,
        "held_snapshots": held,
        "attention": attention,
        "state": {
            "writable": failing.is_none(),
            "failing": failing,
        },
        "sinks": sink_summary(&state),
        "sink_lease": lease,
        "pull": pull,
        "redis": {
            "enabled": redis.enabled,
            "connected": redis.connected,
            "subscribed": redis.subscribed,
            "connected_since": redis.connected_since,
            "disconnected_since": redis.disconnected_since,
            "reconnect_count": redis.reconnect_count,
            "last_error": redis.last_error.as_deref().map(crate::mask::mask_pii),
            "last_sync_time": redis.last_sync_time,
            "messages_retried": redis.messages_retried,
            "stream": redis.stream.as_ref().map(|st| json!({
                "pending": st.pending,
                "acked": st.acked,
                "retried": st.retried,
            })),
        },
    }))
}

fn sink_summary(state: &AppState) -> Value {
    state
        .sinks
        .snapshot()
        .iter()
        .map(|s| {
            let health = if s.standby {
                "standby: another instance holds the sink lease"
            } else if let Some(what) = &s.reauthorize {
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
                // /health is public: a remote's error text may quote what it refused (an event
                // with phone numbers). The detail is on /sinks, behind the token.
                "last_error": s.last_error.as_ref().map(|_| "the last attempt failed: see GET /sinks"),
            })
        })
        .collect()
}

pub(super) async fn sinks(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "success": true,
        "lease": state.sinks.lease.status(),
        "sinks": state.sinks.snapshot(),
    }))
}

/// The phonebook as vCards: the same cards the CardDAV sink writes.
pub(super) async fn contacts(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (view, feeds) = (state.engine.view(), state.feeds.clone());
    let user = state.user_referee_number.clone();
    // Building and digesting the phonebook is CPU work over every stored match: off the async
    // threads, and through the same gate as the `/matches` pages, so that parallel requests on
    // a large state take their turn instead of every core at once.
    let _turn = state.pages.enter().await?;
    let validated = tokio::task::spawn_blocking(move || {
        let now = chrono::Utc::now();
        let book = crate::render::phonebook::phonebook(&view.matches, user.as_deref(), now);
        let text = crate::render::phonebook::render_all(&book);
        feeds.contacts.validate(Bytes::from(text), now)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(feed_response(
        &headers,
        validated,
        "text/vcard; charset=utf-8",
    ))
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let redis = state.subscriber.status();
    // The view's counts, made at commit: no lock, no SQL, no walk over the matches.
    let view = state.engine.view();
    let gauges = Gauges {
        redis_enabled: redis.enabled,
        redis_connected: redis.connected,
        reconnects: redis.reconnect_count,
        coalesced: redis.messages_coalesced,
        matches: view
            .counts
            .by_presence()
            .into_iter()
            .map(|(p, n)| (p.as_str(), n))
            .collect(),
        held: view.pending_holds,
    };
    let mut text = state.metrics.render(&gauges);
    state.pull.render_metrics(&mut text);
    state.sinks.lease.render_metrics(&mut text);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub(super) async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if body
        .as_ref()
        .is_ok_and(|b| crate::http::trigger::is_trigger(b))
    {
        return sync_trigger(&state);
    }
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
    let outcome =
        tokio::task::spawn_blocking(move || crate::ingest::apply_bytes(&engine, &body, "http"))
            .await
            // A panic while applying: not the caller's fault, and nothing was committed.
            .unwrap_or_else(|e| {
                Err(crate::ingest::IngestError::Fatal(format!(
                    "applying panicked: {e}"
                )))
            });
    match &outcome {
        Ok(_) => state.metrics.state.recovered(),
        Err(crate::ingest::IngestError::Fatal(e)) => state.metrics.state.failed("http", e),
        Err(_) => {}
    }
    let label = match &outcome {
        Ok(a) => a.outcome.label(),
        Err(crate::ingest::IngestError::NotAMatchUpdate(_)) => "ignored",
        Err(crate::ingest::IngestError::Fatal(_)) => "retry",
        Err(_) => "rejected",
    };
    state.metrics.count_message("http", label);
    match outcome {
        Ok(applied) if applied.held().is_some() => {
            Ok((StatusCode::ACCEPTED, Json(sync_response(&applied))).into_response())
        }
        Ok(applied) => Ok(Json(sync_response(&applied)).into_response()),
        Err(crate::ingest::IngestError::Rejected(reason)) => Err(ApiError::BadRequest(reason)),
        Err(crate::ingest::IngestError::NotAMatchUpdate(kind)) => Err(ApiError::BadRequest(
            format!("a {kind} message carries no matches; post a match update"),
        )),
        Err(crate::ingest::IngestError::Fatal(e)) => Err(ApiError::Unavailable(e)),
    }
}

/// The old processors' "sync now" (no match list): answered as the deployed service's old
/// `/sync` did, changing nothing. Its body is never read further nor logged.
fn sync_trigger(state: &AppState) -> Result<Response, ApiError> {
    if let Err(wait) = state.triggers.take() {
        state.metrics.count_message("http", "trigger_limited");
        return Err(ApiError::TooManyRequests(wait));
    }
    state.metrics.count_message("http", "trigger");
    // "Sync now": with a pull source, that is what it does (merged with other events, at most
    // one pull per 10 s; the pull runs on its own task, this never waits for it).
    let pull_started = state
        .pull
        .trigger(crate::ingest::pull::Trigger::SyncRequest);
    let message = if pull_started {
        tracing::info!("sync trigger received (POST /sync without a match list): pulling the list from the fogis-api-client service");
        "no match list in the request: a pull of FOGIS's own list from the fogis-api-client service was started"
    } else {
        tracing::info!("sync trigger received (POST /sync without a match list): nothing to apply");
        "no match list in the request: nothing to apply; the calendar follows every list the match-list-processor publishes (Redis) or posts (POST /sync with the list)"
    };
    Ok(Json(json!({
        "success": true,
        "status": "success",
        "message": message,
        "pull_started": pull_started,
    }))
    .into_response())
}

/// The `/sync` answer: a superset of the deployed service's `{"success": true}`.
pub fn sync_response(applied: &Applied) -> Value {
    let c = applied.counts;
    json!({
        "success": true,
        "status": "success",
        "outcome": applied.outcome.label(),
        "applied": applied.outcome == Outcome::Applied,
        "held": applied.held(),
        "duplicate": applied.outcome == Outcome::Duplicate,
        "stale": applied.outcome == Outcome::Stale,
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

pub(super) async fn held_list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
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

pub(super) async fn held_apply(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine.clone();
    let applied = tokio::task::spawn_blocking(move || engine.apply_held(id, "operator"))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    tracing::warn!(held_id = id, "held list applied by an operator");
    Ok(Json(sync_response(&applied)))
}

pub(super) async fn held_discard(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<Value>, ApiError> {
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

/// Most matches one `/matches` answer carries (`?limit=`), and the default.
pub const MATCHES_PAGE_MAX: usize = 1000;

/// How many `/matches` pages (and phonebooks and status pages, which also walk every match) are
/// built at once. A page of 1,000 matches is ~5 MB of JSON and
/// tens of milliseconds of one core: built all at once, 16 parallel requests took every core
/// from the async threads (`/health` waited behind them) and held 16 pages in memory. Further
/// requests wait their turn (in arrival order) instead of being refused: a client walking the
/// pages gets every page, only later, and has nothing to retry.
#[derive(Debug)]
pub struct PageGate {
    permits: Arc<tokio::sync::Semaphore>,
    size: usize,
    waiting: AtomicUsize,
}

impl PageGate {
    /// A gate letting `size` (at least 1) pages be built at once.
    pub fn new(size: usize) -> PageGate {
        let size = size.max(1);
        PageGate {
            permits: Arc::new(tokio::sync::Semaphore::new(size)),
            size,
            waiting: AtomicUsize::new(0),
        }
    }

    /// The service's gate: one core left to the async threads (`/health`, the feeds, the
    /// ingest), at least one page at a time.
    pub fn for_this_machine() -> PageGate {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        PageGate::new(cores.saturating_sub(1))
    }

    /// Pages that may be built at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Requests waiting for their turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Waits for a turn; the permit is held until the page is built.
    pub(crate) async fn enter(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = self.permits.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        // The semaphore is never closed.
        permit.map_err(|e| ApiError::Internal(e.to_string()))
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    offset: Option<usize>,
    limit: Option<usize>,
}

/// One `/matches` answer. The fields in alphabetical order: the bytes are those of the
/// `serde_json::Value` object this replaced (whose keys are sorted).
#[derive(Serialize)]
struct PageBody<'a> {
    count: usize,
    limit: usize,
    matches: PageMatches<'a>,
    next_offset: Option<usize>,
    offset: usize,
    success: bool,
    total: usize,
}

/// A page's matches, serialised one at a time straight into the answer's bytes: no tree of the
/// whole page in memory, no copy of the matches.
struct PageMatches<'a> {
    matches: &'a [Arc<StoredMatch>],
    personal: bool,
}

impl Serialize for PageMatches<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.matches.len()))?;
        for m in self.matches {
            seq.serialize_element(&match_json(m, self.personal))?;
        }
        seq.end()
    }
}

/// The bytes of one page of `all`.
fn page_bytes(all: &[Arc<StoredMatch>], offset: usize, limit: usize, personal: bool) -> Vec<u8> {
    let total = all.len();
    let from = offset.min(total);
    let page = &all[from..from.saturating_add(limit).min(total)];
    let end = offset.saturating_add(page.len());
    let body = PageBody {
        count: page.len(),
        limit,
        matches: PageMatches {
            matches: page,
            personal,
        },
        next_offset: (end < total).then_some(end),
        offset,
        success: true,
        total,
    };
    // Serialising plain data into a Vec cannot fail; an empty answer would say so all the same.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// `GET /matches?offset=&limit=`: one page, in stored order. Built and serialised to its bytes
/// off the async threads (thousands of matches are CPU work), at most [`PageGate::size`] at
/// once; the async thread only sends the bytes.
pub(super) async fn matches(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    page: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Ok(Query(page)) = page else {
        return Err(ApiError::BadRequest(
            "offset and limit must be non-negative integers".into(),
        ));
    };
    let personal = may_see_personal_data(&state, &headers, &query);
    let offset = page.offset.unwrap_or(0);
    let limit = page
        .limit
        .unwrap_or(MATCHES_PAGE_MAX)
        .clamp(1, MATCHES_PAGE_MAX);
    let permit = state.pages.enter().await?;
    // The view once it is our turn: the page is of the state current when it is built.
    let view = state.engine.view();
    let body = tokio::task::spawn_blocking(move || {
        let bytes = page_bytes(&view.matches, offset, limit, personal);
        drop(permit);
        bytes
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from(body),
    )
        .into_response())
}

pub(super) async fn calendar(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (engine, feeds) = (state.engine.clone(), state.feeds.clone());
    // Rendered once per change and digested once per render, off the async threads.
    let validated = tokio::task::spawn_blocking(move || {
        feeds.calendar.validate(engine.feed(), chrono::Utc::now())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(feed_response(
        &headers,
        validated,
        "text/calendar; charset=utf-8",
    ))
}

pub(super) async fn quarantine(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let engine = state.engine.clone();
    let list = tokio::task::spawn_blocking(move || engine.quarantined(100))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(
        json!({"success": true, "count": list.len(), "entries": list}),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::MatchRecord;
    use crate::reconcile::{Action, Presence};
    use chrono::{TimeZone, Utc};
    use fogis_pubsub::{Referee, TeamContact};

    fn stored(id: i64) -> Arc<StoredMatch> {
        let at = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        let record = MatchRecord {
            match_id: id,
            match_nr: Some(format!("{id}00")),
            home_team: Some(format!("Home {id}")),
            away_team: Some(format!("Away {id}")),
            start: at + chrono::Duration::days(id),
            venue: Some("Vallen".into()),
            venue_address: None,
            coordinates: Some((59.3, 18.1)),
            competition: Some("Div 4".into()),
            cancelled: id % 3 == 0,
            postponed: false,
            interrupted: false,
            referees: vec![Referee {
                name: format!("Referee {id}"),
                referee_number: Some(format!("{id}")),
                mobile: Some("070-123 45 67".into()),
                email: Some(format!("ref{id}@example.se")),
                ..Referee::default()
            }]
            .into_iter()
            .map(std::sync::Arc::new)
            .collect(),
            team_contacts: vec![TeamContact {
                name: format!("Contact {id}"),
                mobile: Some("073-765 43 21".into()),
                ..TeamContact::default()
            }]
            .into_iter()
            .map(std::sync::Arc::new)
            .collect(),
        };
        Arc::new(StoredMatch {
            hash: record.content_hash(),
            record,
            presence: if id % 2 == 0 {
                Presence::Listed
            } else {
                Presence::Archived
            },
            sequence: u32::try_from(id).unwrap(),
            created_at: at,
            changed_at: at,
            last_action: Action::Create,
        })
    }

    /// The page as the handler built it before it was streamed: one `serde_json::Value` tree
    /// of the whole page, serialised at the end.
    fn as_one_tree(
        all: &[Arc<StoredMatch>],
        offset: usize,
        limit: usize,
        personal: bool,
    ) -> Vec<u8> {
        let total = all.len();
        let list: Vec<Value> = all
            .iter()
            .skip(offset)
            .take(limit)
            .map(|m| match_json(m, personal))
            .collect();
        let end = offset.saturating_add(list.len());
        serde_json::to_vec(&json!({
            "success": true,
            "count": list.len(),
            "total": total,
            "offset": offset,
            "limit": limit,
            "next_offset": (end < total).then_some(end),
            "matches": list,
        }))
        .unwrap()
    }

    #[test]
    fn a_page_streamed_from_the_view_is_byte_for_byte_the_page_built_as_one_tree() {
        let all: Vec<_> = (1..=7).map(stored).collect();
        for personal in [true, false] {
            for (offset, limit) in [
                (0, 1000),
                (0, 3),
                (3, 3),
                (6, 3),
                (7, 3),
                (100, 2),
                (usize::MAX, 1),
            ] {
                let streamed = page_bytes(&all, offset, limit, personal);
                assert_eq!(
                    String::from_utf8(streamed).unwrap(),
                    String::from_utf8(as_one_tree(&all, offset, limit, personal)).unwrap(),
                    "offset {offset}, limit {limit}, personal {personal}"
                );
            }
        }
        let open = String::from_utf8(page_bytes(&all, 0, 1000, true)).unwrap();
        let closed = String::from_utf8(page_bytes(&all, 0, 1000, false)).unwrap();
        assert!(open.contains("070-123 45 67") && open.contains("ref7@example.se"));
        assert!(
            !closed.contains("070-123") && !closed.contains("073-765") && !closed.contains('@')
        );
        assert!(
            closed.contains("Referee 7"),
            "only the contact data is left out"
        );
    }

    #[tokio::test]
    async fn pages_past_the_gate_wait_for_a_turn_and_get_it_when_one_is_free() {
        let gate = Arc::new(PageGate::new(2));
        let first = gate.enter().await.unwrap();
        let second = gate.enter().await.unwrap();
        let third = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.is_ok() }
        });
        // A single-threaded runtime: the third request runs only when this test yields.
        while gate.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!third.is_finished(), "a third page was let in beside two");
        assert_eq!(gate.waiting(), 1);
        drop(first);
        assert!(third.await.unwrap(), "the waiting page got its turn");
        assert_eq!(gate.waiting(), 0);
        drop(second);
        // A machine of one core still builds pages, one at a time.
        assert_eq!(PageGate::new(0).size(), 1);
        assert!(PageGate::for_this_machine().size() >= 1);
    }
}
