//! A stand-in for the stack's fogis-api-client service, which cannot be reached from here. It
//! answers `GET /matches` the way PROTOCOL.md section 7 says the real one does (a bare JSON array
//! of raw FOGIS matches, or `{"matchlista": [...]}`; `500 {"error": ...}` when FOGIS cannot be
//! reached), and the bad days a test asks for: no answer, a slow one, garbage, an object that is
//! no list.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// What `GET /matches` answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `200` with a bare array.
    Bare(Value),
    /// `200` with `{"matchlista": [...]}`.
    Wrapped(Value),
    /// `500 {"error": ...}`, as when FOGIS is down.
    FogisDown(String),
    /// `200` with these bytes.
    Raw(String),
    /// Never answers.
    Hang,
    /// Waits, then answers.
    Slow(Duration, Box<Answer>),
}

struct Fake {
    answer: Mutex<Answer>,
    requests: AtomicU64,
}

pub struct ApiClientFake {
    /// `http://127.0.0.1:PORT`: what `FOGIS_API_CLIENT_URL` is set to.
    pub url: String,
    fake: Arc<Fake>,
    stop: CancellationToken,
}

impl ApiClientFake {
    pub async fn start(answer: Answer) -> ApiClientFake {
        let fake = Arc::new(Fake {
            answer: Mutex::new(answer),
            requests: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/matches", get(matches))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
        });
        ApiClientFake { url, fake, stop }
    }

    /// From now on `GET /matches` answers this.
    pub fn set(&self, answer: Answer) {
        *self.fake.answer.lock().unwrap() = answer;
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.fake.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ApiClientFake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn matches(State(fake): State<Arc<Fake>>) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    let answer = fake.answer.lock().unwrap().clone();
    respond(answer).await
}

async fn respond(mut answer: Answer) -> Response {
    loop {
        return match answer {
            Answer::Bare(list) => axum::Json(list).into_response(),
            Answer::Wrapped(list) => axum::Json(json!({ "matchlista": list })).into_response(),
            Answer::FogisDown(error) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "error": error })),
            )
                .into_response(),
            Answer::Raw(text) => text.into_response(),
            Answer::Hang => std::future::pending().await,
            Answer::Slow(wait, then) => {
                tokio::time::sleep(wait).await;
                answer = *then;
                continue;
            }
        };
    }
}
