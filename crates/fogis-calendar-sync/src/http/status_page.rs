//! The status page (`GET /`): one server-rendered HTML page a person can read on a phone.
//!
//! It shows whether Redis is connected, the last messages and what they did, the upcoming
//! matches as an agenda with recent changes highlighted, the sinks, and the links to subscribe
//! to the feed and the phonebook. No script, no external asset: it works offline and reloads
//! itself every 30 s.
//!
//! Personal data (phone numbers, e-mail addresses) is shown only when
//! [`may_see_personal_data`] allows it: no token is configured, or the request carries the feed
//! or the API token (`?token=` or `Authorization: Bearer`). Without it, free texts that may hold
//! such data (error reasons, sink targets) are masked with [`crate::mask::mask_pii`].
//!
//! The page is written with [`maud`]'s `html!` templates, checked when the crate compiles: every
//! value spliced into them (team names, venues, channels, errors, the `Host` header) is escaped
//! by the template itself, and only the constants of `html.rs` are marked as markup.

mod agenda;
mod html;
mod pull;
mod sections;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use fogis_pubsub::SubscriberStatus;
use maud::{html, Markup, PreEscaped};

use crate::http::auth::{constant_time_eq, may_see_personal_data, TokenQuery};
use crate::http::{ApiError, AppState};
use crate::reconcile::StoredMatch;
use crate::sinks::SinkStatus;
use crate::store::LogEntry;
pub use agenda::AgendaContext;

/// How many sync log lines and Redis messages the page lists.
const LAST_MESSAGES: usize = 12;

/// Everything one rendering of the page shows, gathered first so that rendering is pure.
#[derive(Debug, Clone)]
pub struct View {
    pub calendar_name: String,
    pub agenda: AgendaContext,
    pub links: Links,
    pub redis: SubscriberStatus,
    /// The view's matches, shared with it (no copy per request).
    pub matches: Vec<Arc<StoredMatch>>,
    /// The sync log, newest first, or why it could not be read.
    pub log: Result<Vec<LogEntry>, String>,
    pub sinks: Vec<SinkStatus>,
    /// The FOGIS pull source.
    pub pull: crate::ingest::pull::PullStatus,
}

/// The subscribe links, built from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// `host[:port]` as the client reached us; `None` when the `Host` header is unusable.
    pub host: Option<String>,
    /// `https` behind a TLS proxy (`X-Forwarded-Proto: https`), otherwise `http`.
    pub scheme: &'static str,
    /// The feed token, only when the request itself carried it.
    pub token: Option<String>,
    /// A feed token is configured: links without it answer 401.
    pub token_required: bool,
}

impl Links {
    fn suffix(&self) -> String {
        self.token
            .as_deref()
            .map(|t| format!("?token={}", html::query_value(t)))
            .unwrap_or_default()
    }

    /// `(webcal, plain)` URLs of the feed.
    pub fn feed(&self) -> Option<(String, String)> {
        let host = self.host.as_deref()?;
        let path = format!("{host}/calendar.ics{}", self.suffix());
        Some((
            format!("webcal://{path}"),
            format!("{}://{path}", self.scheme),
        ))
    }

    /// The phonebook's path, relative to the page.
    pub fn contacts(&self) -> String {
        format!("/contacts.vcf{}", self.suffix())
    }
}

/// `GET /`: the page.
pub(crate) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let personal = may_see_personal_data(&state, &headers, &query);
    let carried_feed_token = match (&state.feed_token, query.token.as_deref()) {
        (Some(t), Some(q)) => constant_time_eq(q.as_bytes(), t.expose().as_bytes()),
        _ => false,
    };
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let links = Links {
        host: header_str(header::HOST)
            .and_then(html::plausible_host)
            .map(str::to_string),
        scheme: match header_str(header::HeaderName::from_static("x-forwarded-proto")) {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        },
        token: carried_feed_token
            .then(|| state.feed_token.as_ref().map(|t| t.expose().to_string()))
            .flatten(),
        token_required: state.feed_token.is_some(),
    };
    let redis = state.subscriber.status();
    let engine = state.engine.clone();
    let sinks = state.sinks.clone();
    let matches = state.engine.view().matches.clone();
    let pull = state.pull.status();
    // The page walks every stored match: it takes its turn like a `/matches` page, and the log
    // (SQL) and the rendering (CPU) run off the async threads.
    let _turn = state.pages.enter().await?;
    let page = tokio::task::spawn_blocking(move || {
        let log = engine
            .recent_log(LAST_MESSAGES)
            .map_err(|e| format!("the sync log cannot be read: {e}"));
        let settings = engine.settings();
        let view = View {
            calendar_name: settings.calendar_name.clone(),
            agenda: AgendaContext {
                now: Utc::now(),
                tz: settings.timezone,
                match_duration: settings.match_duration,
                personal,
            },
            links,
            redis,
            matches,
            log,
            sinks: sinks.snapshot(),
            pull,
        };
        render(&view)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = axum::response::Html(page).into_response();
    let h = resp.headers_mut();
    // The page may hold personal data and a token in its links: keep it out of caches and
    // referrers, and allow nothing but its own inline style.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    Ok(resp)
}

/// The whole page.
pub fn render(v: &View) -> String {
    let (now, tz, personal) = (v.agenda.now, v.agenda.tz, v.agenda.personal);
    let page = html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content="30";
                title { (v.calendar_name) " · fogis-calendar-sync" }
                style { (html::style()) }
            }
            body {
                main {
                    h1 { (v.calendar_name) }
                    (banner(v))
                    h2 id="agenda" { "Upcoming matches" }
                    (agenda::render(&v.matches, &v.agenda))
                    h2 id="subscribe" { "Subscribe" }
                    (subscribe(&v.links))
                    h2 id="redis" { "Redis" }
                    (sections::redis(&v.redis, now, tz, personal))
                    h2 id="pull" { "FOGIS pull" }
                    (pull::section(&v.pull, now, tz, personal))
                    h2 id="messages" { "Last messages" }
                    (sections::messages(v))
                    h2 id="sinks" { "Sinks" }
                    (sections::sinks(&v.sinks, now, tz, personal))
                    p class="muted" {
                        "fogis-calendar-sync " (env!("CARGO_PKG_VERSION")) " · times in "
                        (tz.name()) " · refreshes every 30 s · "
                        a href="/health" { "health" } " · " a href="/metrics" { "metrics" }
                    }
                }
            }
        }
    };
    let mut out = page.into_string();
    out.push('\n');
    out
}

/// The one-look summary: real time, degraded or HTTP only; how many matches; the next one.
fn banner(v: &View) -> Markup {
    let r = &v.redis;
    let (class, mode) = match (r.enabled, r.connected) {
        (true, true) => ("ok", "Real time: Redis connected"),
        (true, false) => (
            "warn",
            "Degraded: Redis unavailable, HTTP only until it returns",
        ),
        (false, _) => ("", "HTTP only: Redis is switched off"),
    };
    let class = if v.sinks.iter().any(|s| s.auth_failed) {
        "bad"
    } else if v.pull.consecutive_failures > 0 {
        "warn"
    } else {
        class
    };
    let in_feed = v.matches.iter().filter(|m| m.presence.in_feed()).count();
    let ahead = agenda::upcoming(&v.matches, &v.agenda)
        .iter()
        .filter(|m| m.presence.in_feed())
        .count();
    html! {
        div class={ "card banner " (class) } {
            strong { (mode) } br;
            span class="muted" { (in_feed) " match(es) in the feed, " (ahead) " ahead" }
            @if let Some(next) = agenda::next_line(&v.matches, &v.agenda) { br; (next) }
        }
    }
}

fn subscribe(links: &Links) -> Markup {
    html! {
        div class="card" {
            @match links.feed() {
                Some((webcal, plain)) => {
                    p {
                        "Calendar on a phone or a computer: " a href=(webcal) { (webcal) } br;
                        span class="muted" { "Calendar apps that ask for a URL: " }
                        a href=(plain) { (plain) }
                    }
                }
                None => {
                    p {
                        "Calendar: " code { "webcal://HOST:9083/calendar.ics" }
                        " (this request named no usable host)"
                    }
                }
            }
            p { "The other referees as contacts: " a href=(links.contacts()) { "contacts.vcf" } }
            @if links.token_required && links.token.is_none() {
                p class="muted" {
                    "The feed needs its token: open this page as " code { "/?token=FEED_TOKEN" }
                    " to get links that carry it."
                }
            }
        }
    }
}
