//! A local fake of Google's Calendar v3, People v1, OAuth token and authorization endpoints,
//! reproducing the behaviours a sync client meets (docs/GOOGLE.md section 5): tombstones and
//! 409 on their ids, ETags with 412 and 304, short and empty pages, error bodies in Calendar's
//! and google.rpc's shapes, injectable 403/429/5xx, stale reads and etags in People, token
//! refresh with `invalid_grant`, and 401 on stale bearer tokens. Every request is logged with
//! its time, so tests count writes and requests per minute.
#![allow(dead_code, clippy::unwrap_used)]

#[path = "google_fake_calendar.rs"]
pub mod calendar;
#[path = "google_fake_oauth.rs"]
mod oauth;
#[path = "google_fake_people.rs"]
pub mod people;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub const CLIENT_ID: &str = "fake-client.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "fake-client-secret";
pub const REFRESH_TOKEN: &str = "1//fake-refresh-token";

/// Which API a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    Calendar,
    People,
    Token,
    Auth,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub at: Instant,
    pub api: Api,
    pub method: Method,
    /// Path and query as sent (percent-encoding kept).
    pub uri: String,
    pub status: u16,
}

/// An error to answer instead of doing the work.
#[derive(Debug, Clone)]
pub struct Injected {
    pub api: Api,
    /// Only requests of this method (any when `None`).
    pub method: Option<Method>,
    pub status: u16,
    pub reason: String,
}

/// Everything the fake holds.
#[derive(Debug, Default)]
pub struct Fake {
    pub access_tokens: HashSet<String>,
    pub refresh_tokens: HashSet<String>,
    /// The token endpoint answers `invalid_grant` to every refresh.
    pub invalid_grant: bool,
    pub refreshes: usize,
    /// code -> (challenge, method, redirect_uri)
    pub codes: HashMap<String, (String, String, String)>,
    pub auth_requests: Vec<HashMap<String, String>>,
    pub code_exchanges: Vec<HashMap<String, String>>,
    pub calendar: calendar::Calendar,
    pub people: people::People,
    pub inject: VecDeque<Injected>,
    pub log: Vec<Logged>,
    seq: u64,
}

impl Fake {
    /// A fresh number for ids and ETags.
    pub fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn issue_access_token(&mut self) -> String {
        let t = format!("ya29.fake-{}", self.next());
        self.access_tokens.insert(t.clone());
        t
    }
}

pub type Shared = Arc<Mutex<Fake>>;

/// The fake, listening on a free port; stopped on drop.
pub struct GoogleFake {
    pub base: String,
    pub state: Shared,
    shutdown: CancellationToken,
}

impl Drop for GoogleFake {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl GoogleFake {
    pub async fn start() -> GoogleFake {
        let mut fake = Fake::default();
        fake.refresh_tokens.insert(REFRESH_TOKEN.into());
        people::seed_system_groups(&mut fake.people);
        let state: Shared = Arc::new(Mutex::new(fake));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone().cancelled_owned();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
                .unwrap()
        });
        GoogleFake {
            base,
            state,
            shutdown,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Fake> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn calendar_url(&self) -> String {
        format!("{}/calendar/v3", self.base)
    }
    pub fn people_url(&self) -> String {
        format!("{}/v1", self.base)
    }
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }
    pub fn auth_url(&self) -> String {
        format!("{}/o/oauth2/v2/auth", self.base)
    }

    /// Writes a token file as google-auth (the Python service) does; `fresh`: with an access
    /// token the fake accepts, else an expired one.
    pub fn write_token_file(&self, path: &std::path::Path, fresh: bool) {
        let (token, expiry) = if fresh {
            let t = self.lock().issue_access_token();
            (t, chrono::Utc::now() + chrono::Duration::minutes(50))
        } else {
            (
                "ya29.expired".to_string(),
                chrono::Utc::now() - chrono::Duration::minutes(5),
            )
        };
        let file = json!({
            "token": token,
            "refresh_token": REFRESH_TOKEN,
            "token_uri": "https://oauth2.googleapis.com/token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scopes": ["https://www.googleapis.com/auth/calendar",
                       "https://www.googleapis.com/auth/contacts",
                       "https://www.googleapis.com/auth/drive"],
            "expiry": expiry.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        });
        // Atomically, as google-auth and the service do: a reader never sees half a file.
        let tmp = path.with_extension("writing");
        std::fs::write(&tmp, serde_json::to_vec(&file).unwrap()).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// Answers the next `count` matching requests with an error.
    pub fn inject(
        &self,
        api: Api,
        method: Option<Method>,
        status: u16,
        reason: &str,
        count: usize,
    ) {
        let mut f = self.lock();
        for _ in 0..count {
            f.inject.push_back(Injected {
                api,
                method: method.clone(),
                status,
                reason: reason.into(),
            });
        }
    }

    /// Every bearer token issued so far stops working (401 until refreshed).
    pub fn revoke_access_tokens(&self) {
        self.lock().access_tokens.clear();
    }

    pub fn log(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// Requests of `api` answered with `status`.
    pub fn count(&self, api: Api, status: u16) -> usize {
        self.lock()
            .log
            .iter()
            .filter(|l| l.api == api && l.status == status)
            .count()
    }

    /// The most requests of `api` in any 60 s window.
    pub fn max_per_minute(&self, api: Api) -> usize {
        let times: Vec<Instant> = self
            .lock()
            .log
            .iter()
            .filter(|l| l.api == api)
            .map(|l| l.at)
            .collect();
        times
            .iter()
            .map(|t| {
                times
                    .iter()
                    .filter(|u| **u >= *t && u.duration_since(*t).as_secs() < 60)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

/// `application/x-www-form-urlencoded` (also query strings), pairs in order.
pub fn decode_form(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

/// RFC 4648 base64url without padding, as the PKCE challenge is written.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Calendar's error body.
pub fn calendar_error(status: u16, reason: &str, message: &str) -> Response {
    let domain = match reason {
        "rateLimitExceeded" | "userRateLimitExceeded" | "quotaExceeded" => "usageLimits",
        _ => "global",
    };
    let body = json!({"error": {"errors": [{"domain": domain, "reason": reason, "message": message}],
                                "code": status, "message": message}});
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

/// google.rpc's error body (People API).
pub fn rpc_error(status: u16, rpc_status: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status, "message": message, "status": rpc_status}});
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

pub fn json_ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = decode_form(uri.query().unwrap_or(""));
    let api = if path.starts_with("/calendar/v3/") {
        Api::Calendar
    } else if path.starts_with("/v1/") {
        Api::People
    } else if path == "/token" {
        Api::Token
    } else {
        Api::Auth
    };
    let resp = match api {
        Api::Calendar | Api::People => match gate(&state, api, &method, &headers) {
            Some(early) => early,
            None if api == Api::Calendar => {
                calendar::handle(&state, &method, &path, &query, &headers, &body)
            }
            None => people::handle(&state, &method, &path, &query, &body).await,
        },
        Api::Token => oauth::token(&state, &body),
        Api::Auth => oauth::authorize(&state, &query),
    };
    let mut f = state.lock().unwrap_or_else(|p| p.into_inner());
    f.log.push(Logged {
        at: Instant::now(),
        api,
        method,
        uri: uri.to_string(),
        status: resp.status().as_u16(),
    });
    resp
}

/// Bearer check, then injected errors.
fn gate(state: &Shared, api: Api, method: &Method, headers: &HeaderMap) -> Option<Response> {
    let mut f = state.lock().unwrap_or_else(|p| p.into_inner());
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !f.access_tokens.contains(bearer) {
        return Some(match api {
            Api::Calendar => calendar_error(401, "authError", "Invalid Credentials"),
            _ => rpc_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            ),
        });
    }
    let pos = f
        .inject
        .iter()
        .position(|i| i.api == api && i.method.as_ref().is_none_or(|m| m == method))?;
    let i = f.inject.remove(pos)?;
    Some(match api {
        Api::People if i.status == 429 => rpc_error(429, "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Critical read requests' and limit 'Critical read requests per minute per user'"),
        Api::People => rpc_error(i.status, &i.reason, "injected"),
        _ => {
            let message = match i.reason.as_str() {
                "quotaExceeded" => "Calendar usage limits exceeded.",
                "rateLimitExceeded" => "Rate Limit Exceeded",
                "userRateLimitExceeded" => "User Rate Limit Exceeded",
                "backendError" => "Backend Error",
                _ => "injected",
            };
            calendar_error(i.status, &i.reason, message)
        }
    })
}
