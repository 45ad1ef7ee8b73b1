//! Google Calendar and Google Contacts, adopting everything the deployed Python service created.
//!
//! Two sinks reconciling against their ledgers like the DAV ones, sharing one OAuth token ([`token::TokenSource`],
//! the Python service's token file read as it is) and one HTTP client ([`api::Api`]: Google's
//! error handling, backoff and a client-side rate limit):
//!
//! - [`calendar::CalendarSink`]: one event per match in `GOOGLE_CALENDAR_ID`, in the deployed
//!   service's shape (`extendedProperties.private {matchId, syncTag, calendarHash}`, with the
//!   hash reproduced byte for byte by [`hash`]); its existing events are adopted ([`adopt`]),
//!   never duplicated, and never rewritten while their match is unchanged.
//! - [`contacts::ContactsSink`]: the other referees as contacts in the group "Referees",
//!   keyed by FOGIS id, then phone, then e-mail ([`person`]).
//!
//! `fogis-calendar-sync google-auth` ([`auth`]) writes the token file with the installed-app
//! flow. Plain `reqwest` and `serde_json`: about ten endpoints, with full control of `If-Match`,
//! the backoff and the base URLs (which tests aim at a local fake).

pub mod adopt;
pub mod api;
pub mod auth;
pub mod calendar;

pub mod contacts;
pub mod event;
pub mod hash;
pub mod person;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use self::api::{Api, Limiter};
use self::token::TokenSource;
use crate::config::google::GoogleOpts;

/// Google Calendar allows 600 requests a minute per user; stay just under.
pub const CALENDAR_PER_MINUTE: usize = 590;
/// People API quotas are lower (≈60 reads, 30 writes a minute by default).
pub const PEOPLE_PER_MINUTE: usize = 60;

/// The Google sinks `opts` asks for: none without `GOOGLE_TOKEN_FILE`.
pub fn build(
    opts: &GoogleOpts,
    user_referee_number: Option<String>,
    timeout: Duration,
) -> anyhow::Result<(
    Option<calendar::CalendarSink>,
    Option<contacts::ContactsSink>,
)> {
    let Some(path) = &opts.google_token_file else {
        return Ok((None, None));
    };
    for (name, url) in [
        ("GOOGLE_CALENDAR_API_URL", &opts.google_calendar_api_url),
        ("GOOGLE_PEOPLE_API_URL", &opts.google_people_api_url),
        ("GOOGLE_TOKEN_URL", &opts.google_token_url),
    ] {
        reqwest::Url::parse(url).with_context(|| format!("{name} {url:?}"))?;
    }
    let http = crate::outbound::client(timeout)
        .build()
        .context("building the HTTP client")?;
    let token = Arc::new(TokenSource::new(
        path.clone(),
        opts.google_token_url.clone(),
        opts.google_credentials_file.clone(),
        http.clone(),
    ));
    let api = |limit: usize, service: &'static str| {
        let limiter = Arc::new(Limiter::per_minute(limit));
        Api::new(
            http.clone(),
            token.clone(),
            limiter,
            opts.retry_base(),
            service,
        )
    };
    let calendar = calendar::CalendarSink::new(
        api(CALENDAR_PER_MINUTE, "Google Calendar"),
        &opts.google_calendar_api_url,
        &opts.google_calendar_id,
        opts.google_cancelled,
    );
    let contacts = opts.google_contacts_enabled.then(|| {
        contacts::ContactsSink::new(
            api(PEOPLE_PER_MINUTE, "Google People"),
            &opts.google_people_api_url,
            user_referee_number,
        )
    });
    Ok((Some(calendar), contacts))
}
