//! HTTP: the service's API. Routes and handlers ([`api`]), who may call what ([`auth`]), the
//! feeds' validators ([`feeds`]), the body-less sync trigger ([`trigger`]), the status page
//! ([`status_page`]) and the server with its limits ([`serve`]).

pub mod api;
pub mod auth;
pub mod error;
pub mod feeds;
pub mod serve;
pub mod status_page;
pub mod trigger;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::config::Secret;
use crate::engine::Engine;
use crate::ingest::metrics::Metrics;
use fogis_pubsub::SubscriberHandle;

pub use error::ApiError;

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
    /// The FOGIS pull source (disabled without `FOGIS_API_CLIENT_URL`).
    pub pull: crate::ingest::pull::Pull,
    /// The rate of the body-less `POST /sync` trigger (see [`crate::http::trigger`]).
    pub triggers: Arc<crate::http::trigger::RateLimit>,
    /// The feeds' validators (ETag, Last-Modified).
    pub feeds: Arc<crate::http::feeds::Feeds>,
    /// How many `/matches` pages are built at once (see [`api::PageGate`]).
    pub pages: Arc<api::PageGate>,
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/", get(status_page::page))
        .route("/health", get(api::health))
        .route("/sync", post(api::sync))
        .route("/manual-sync", post(api::sync))
        .route("/matches", get(api::matches))
        .route(
            "/calendar.ics",
            get(api::calendar).layer(api::compression()),
        )
        .route(
            "/contacts.vcf",
            get(api::contacts).layer(api::compression()),
        )
        .route("/sinks", get(api::sinks))
        .route("/quarantine", get(api::quarantine))
        .route("/metrics", get(api::metrics))
        .route("/held", get(api::held_list))
        .route("/held/{id}/apply", post(api::held_apply))
        .route("/held/{id}/discard", post(api::held_discard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
