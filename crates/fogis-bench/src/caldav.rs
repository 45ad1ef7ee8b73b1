//! Benchmark 4, CalDAV end to end: the part of "FOGIS to the phone" that is ours, from a list
//! published on Redis to its event written on a real CalDAV server.
//!
//! A local Radicale (test-support's, with Basic authentication: the Python of
//! `RADICALE_PYTHON` or `target/radicale-venv`) and the service with `CALDAV_URL` pointing at a
//! calendar on it. The first list creates the three events; then one changed list every
//! `interval` (the changed match moves by a minute each time) for `seconds`. After each
//! `PUBLISH` the benchmark polls the changed match's resource (`fogis-match-{id}.ics`) on
//! Radicale with `If-None-Match` until its body carries the new `DTSTART`: the lag is from just
//! before the `PUBLISH` to that `GET` returning, what any CalDAV client could see. Measured from
//! outside rather than from the sink's own timestamps: the service records when a pass ended
//! (`last_success` in `/sinks`), not when a given list's event was written, and only a read from
//! the server shows the write is really there. Each poll is one `GET` on Radicale (a new
//! connection each: Radicale answers HTTP/1.0), so the resolution is one poll round trip,
//! reported with the result.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use chrono::Utc;
use test_support::dav::{Flavour, Server, PASSWORD, USER};
use test_support::RedisServer;

use crate::burst::CHANNEL;
use crate::http::{basic_auth, Client};
use crate::resp::Conn;
use crate::service::Setup;
use crate::steady::Quantiles;
use crate::workload::{dtstart, Template};
use crate::Target;

/// How long one change may take to reach the server.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first list (three events, and the calendar created) may take.
const FIRST_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two polls of the event.
const POLL: Duration = Duration::from_millis(1);

/// The outcome of the CalDAV run.
#[derive(Debug, Clone, Default)]
pub struct CaldavResult {
    pub sent: u64,
    pub seconds: f64,
    pub interval: Duration,
    /// `PUBLISH` to the event's new content read back from the server.
    pub lag: Quantiles,
    /// One poll (`GET` with `If-None-Match` on Radicale): the resolution of `lag`.
    pub poll: Quantiles,
    /// The first list, publish to its event on the server (the calendar created, three events).
    pub first: Duration,
}

/// The resource of `match_id`'s event in `collection`.
fn event_path(collection: &str, match_id: i64) -> String {
    let path = collection
        .split_once("//")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    format!(
        "{path}{}",
        fogis_calendar_sync::sinks::caldav::resource_name(match_id)
    )
}

/// Starts Radicale (test-support panics when it cannot: turned into an error here).
fn radicale() -> anyhow::Result<Server> {
    std::panic::catch_unwind(|| Server::start(Flavour::Radicale)).map_err(|e| {
        let text = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        anyhow!("Radicale did not start (RADICALE_PYTHON or target/radicale-venv): {text}")
    })
}

/// Polls the event until its body has `want`; returns the ETag it had.
fn wait_for(
    client: &mut Client,
    path: &str,
    auth: &str,
    etag: &mut String,
    want: &str,
    timeout: Duration,
    polls: &mut Vec<f64>,
) -> anyhow::Result<Instant> {
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let mut headers = vec![("Authorization", auth)];
        if !etag.is_empty() {
            headers.push(("If-None-Match", etag.as_str()));
        }
        let r = client.get(path, &headers)?;
        let done = Instant::now();
        polls.push((done - t).as_secs_f64());
        match r.status {
            200 => {
                *etag = r.header("etag").unwrap_or_default().to_string();
                if r.text().contains(want) {
                    return Ok(done);
                }
            }
            304 | 404 => {}
            other => bail!("GET {path} answered {other}: {}", r.text()),
        }
        if started.elapsed() > timeout {
            bail!("{want} did not reach {path} within {timeout:?}");
        }
        std::thread::sleep(POLL);
    }
}

/// One changed list every `interval` for `seconds`, each followed to the server.
pub fn run(
    target: &Target,
    redis: &RedisServer,
    template: &Template,
    interval: Duration,
    seconds: u64,
) -> anyhow::Result<CaldavResult> {
    let server = radicale()?;
    let collection = format!("{}{USER}/fogis-bench/", server.root());
    let setup = Setup::flags([
        ("--caldav-url", collection.clone()),
        ("--caldav-username", USER.to_string()),
        ("--caldav-password", PASSWORD.to_string()),
    ]);
    let service = crate::start(target, redis, setup)?;
    service.wait_subscribed()?;
    let addr = server
        .root()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .context("Radicale's address")?;
    let mut dav = Client::new(addr);
    let auth = basic_auth(USER, PASSWORD);
    let path = event_path(&collection, template.changed_match);
    let mut etag = String::new();
    let mut polls = Vec::new();

    let published = Instant::now();
    crate::warm_up(redis, &service, template)?;
    let seen = wait_for(
        &mut dav,
        &path,
        &auth,
        &mut etag,
        &dtstart(0),
        FIRST_TIMEOUT,
        &mut Vec::new(),
    )
    .with_context(|| format!("the first list: {}", service.log_tail()))?;
    let first = seen - published;

    let mut conn = Conn::open(redis.port())?;
    let total = (seconds as u128 * 1000 / interval.as_millis().max(1)) as u64;
    let mut lags = Vec::with_capacity(total as usize);
    let started = Instant::now();
    for k in 0..total {
        let due = started + interval * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let i = 1 + k;
        let stamped = Instant::now();
        let receivers = conn.publish(CHANNEL, &template.message(i, Utc::now()))?;
        if receivers != 1 {
            bail!("message {i} reached {receivers} subscribers, not the service alone");
        }
        let seen = wait_for(
            &mut dav,
            &path,
            &auth,
            &mut etag,
            &dtstart(i),
            EVENT_TIMEOUT,
            &mut polls,
        )
        .with_context(|| format!("message {i}: {}", service.log_tail()))?;
        lags.push((seen - stamped).as_secs_f64());
    }
    let seconds = started.elapsed().as_secs_f64();
    service.stop()?;
    drop(server);
    Ok(CaldavResult {
        sent: total,
        seconds,
        interval,
        lag: Quantiles::of(&mut lags),
        poll: Quantiles::of(&mut polls),
        first,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_event_path_is_under_the_collection() {
        assert_eq!(
            super::event_path("http://127.0.0.1:5232/user/cal/", 42),
            "/user/cal/fogis-match-42.ics"
        );
    }
}
