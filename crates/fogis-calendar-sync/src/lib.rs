//! # fogis-calendar-sync
//!
//! A football referee's calendar that follows FOGIS. Every match-update message is the referee's
//! whole match list (a [`fogis_pubsub::Snapshot`]); the [`engine::Engine`] plans it against the
//! SQLite state ([`reconcile::plan`], pure) and applies the plan in one transaction, so
//! duplicates, replays and reordering change nothing. The state is served as an iCalendar feed
//! ([`ics`]) and over a small HTTP API ([`server`]).
//!
//! The engine knows no sink: each commit bumps a persistent state version and publishes an
//! immutable [`view::StateView`], which HTTP handlers and sinks read without a lock or SQL.
//! Each sink ([`sinks`]) reconciles that view against its own ledger ([`outbox`]): a pure
//! [`sinks::plan::plan`], then the writes, so a commit from any process reaches every sink.
//!
//! The service is a library: [`run`] takes its configuration, a bound listener and a shutdown
//! token, so tests start it on port 0 and stop it explicitly.

pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod held;
pub mod http_server;
pub mod ics;
pub mod mask;
pub mod metrics;
pub mod model;
pub mod outbox;
pub mod pipeline;
pub mod purge;
pub mod reconcile;
pub mod remote;
pub mod server;
pub mod sinks;
pub mod status_page;
pub mod store;
pub mod view;

use std::sync::Arc;
use std::time::Instant;

use chrono::Duration;
use fogis_pubsub::{DecodeError, Message};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ServeOpts, StateOpts};
use crate::engine::{Applied, ApplyError, Engine, EngineSettings};
use crate::store::Store;

/// Why an input was not applied.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Bad input: it was kept in the quarantine and changed nothing.
    #[error("{0}")]
    Rejected(String),
    /// A status or alert message: recorded, never applied.
    #[error("{0} message")]
    NotAMatchUpdate(&'static str),
    /// The state could not be written.
    #[error("{0}")]
    Fatal(String),
}

/// Opens the state and builds the engine. It knows no sink: every sink, of this process or a
/// later one, reconciles what it commits.
pub fn open_engine(opts: &StateOpts) -> anyhow::Result<Engine> {
    use anyhow::Context;
    let store = Store::open_dir(&opts.data_dir)
        .with_context(|| format!("opening the state in {}", opts.data_dir.display()))?;
    Ok(Engine::new(store, engine_settings(opts))?)
}

/// How often a running service looks for another process's commit (the CLI's `sync FILE`,
/// `held apply`, `purge`): one `PRAGMA data_version` on a blocking thread.
pub const REFRESH_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// The sinks the configuration asks for.
pub fn sink_kinds(opts: &ServeOpts) -> anyhow::Result<Vec<sinks::SinkKind>> {
    use anyhow::Context;
    let s = &opts.sinks;
    let timeout = std::time::Duration::from_secs(s.sink_timeout_seconds);
    let secret = |p: &Option<config::Secret>| p.as_ref().map(|x| x.expose().to_string());
    let mut kinds = Vec::new();
    if let Some(url) = &s.caldav_url {
        let sink = sinks::caldav::CalDavSink::new(
            url,
            s.caldav_username.clone(),
            secret(&s.caldav_password),
            timeout,
            opts.state.calendar_name.clone(),
        )
        .context("CALDAV_URL")?;
        kinds.push(sinks::SinkKind::CalDav(sink));
    }
    if let Some(url) = &s.carddav_url {
        let sink = sinks::carddav::CardDavSink::new(
            url,
            s.carddav_username.clone(),
            secret(&s.carddav_password),
            timeout,
            "FOGIS referees".into(),
            s.user_referee_number.clone(),
        )
        .context("CARDDAV_URL")?;
        kinds.push(sinks::SinkKind::CardDav(sink));
    }
    if let Some(url) = &s.forward_url {
        let sink = sinks::forward::ForwardSink::new(url, s.forward_token.clone(), timeout)
            .context("FORWARD_URL")?;
        kinds.push(sinks::SinkKind::Forward(sink));
    }
    let (calendar, contacts) =
        sinks::google::build(&opts.google, s.user_referee_number.clone(), timeout)
            .context("Google sinks")?;
    kinds.extend(calendar.map(sinks::SinkKind::GoogleCalendar));
    kinds.extend(contacts.map(sinks::SinkKind::GoogleContacts));
    Ok(kinds)
}

pub fn engine_settings(opts: &StateOpts) -> EngineSettings {
    EngineSettings {
        timezone: opts.timezone,
        match_duration: Duration::minutes(i64::from(opts.match_duration_minutes)),
        reminder_minutes: (opts.reminder_minutes > 0).then_some(opts.reminder_minutes),
        calendar_name: opts.calendar_name.clone(),
        hold: held::HoldPolicy {
            withdraw_share: opts.hold_withdraw_share.clamp(0.0, 1.0),
            min_withdrawals: opts.hold_min_withdrawals,
        },
        max_matches: opts.max_matches_per_snapshot,
    }
}

/// Decodes and applies one message; bad input is quarantined. Blocking (SQLite).
pub fn apply_bytes(engine: &Engine, bytes: &[u8], origin: &str) -> Result<Applied, IngestError> {
    let reject = |reason: String| {
        tracing::warn!(%origin, reason = %mask::mask_pii(&reason), "rejected input");
        engine.quarantine(origin, &reason, bytes);
        IngestError::Rejected(reason)
    };
    let message = match fogis_pubsub::decode(bytes) {
        Ok(m) => m,
        Err(DecodeError::Empty) => return Err(reject("empty body: post a match update".into())),
        Err(e) => return Err(reject(e.to_string())),
    };
    let snapshot = match message {
        Message::Matches(s) => s,
        Message::Status(_) => return Err(IngestError::NotAMatchUpdate("processing_status")),
        Message::Alert(_) => return Err(IngestError::NotAMatchUpdate("system_alert")),
    };
    match engine.apply(&snapshot, origin, false) {
        Ok(applied) => {
            log_applied(&applied, origin);
            Ok(applied)
        }
        Err(e @ (ApplyError::AllRejected(_) | ApplyError::TooManyMatches { .. })) => {
            Err(reject(e.to_string()))
        }
        Err(e @ ApplyError::NoSuchHold(_)) => Err(IngestError::Rejected(e.to_string())),
        Err(ApplyError::Store(e)) => Err(IngestError::Fatal(e.to_string())),
    }
}

fn log_applied(applied: &Applied, origin: &str) {
    let c = applied.counts;
    if applied.held.is_some() {
        // The engine already said so, loudly.
    } else if applied.duplicate {
        tracing::info!(%origin, message_id = ?applied.message_id, "duplicate message, already applied");
    } else {
        tracing::info!(
            %origin,
            message_id = ?applied.message_id,
            created = c.created,
            updated = c.updated,
            cancelled = c.cancelled,
            withdrawn = c.withdrawn,
            unchanged = c.unchanged,
            rejected = c.rejected,
            "sync applied"
        );
    }
}

/// Publishes the commits of other processes (the CLI next to the service) as they appear, so
/// the feed, the status page and every sink follow them.
async fn follow_other_writers(engine: Arc<Engine>, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(REFRESH_POLL) => {}
        }
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || e.refresh()).await {
            Ok(Ok(())) => failing = false,
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::error!(error = %e, "could not look for changes other processes made to the state");
            }
            _ => {}
        }
    }
}

/// Runs the service until `shutdown` is cancelled.
pub async fn run(
    opts: ServeOpts,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let kinds = sink_kinds(&opts)?;
    let state_opts = opts.state.clone();
    let (engine, ledger) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let engine = open_engine(&state_opts)?;
        checkpoint::tune(&engine);
        // The sinks' ledgers have a connection of their own: their writes never wait for the
        // engine's lock, and the engine's never for theirs.
        let ledger = Store::open_dir(&state_opts.data_dir)?;
        Ok((engine, ledger))
    })
    .await??;
    let engine = Arc::new(engine);
    let tracker = tokio_util::task::TaskTracker::new();
    let sinks_shutdown = shutdown.child_token();
    let context = sinks::SinkContext::new(engine.watch(), ledger);
    let sinks = sinks::Sinks::start(kinds, &context, &tracker, &sinks_shutdown);
    tracker.spawn(follow_other_writers(engine.clone(), sinks_shutdown.clone()));
    let metrics = Arc::new(metrics::Metrics::default());
    let sub_config = opts.redis.subscriber_config()?;
    if sub_config.enabled {
        tracing::info!(
            redis = %sub_config.redis_url.redacted(),
            channels = sub_config.match_channels.len() + sub_config.status_channels.len(),
            "Redis pub/sub enabled"
        );
    } else {
        tracing::info!("Redis pub/sub disabled (REDIS_PUBSUB_ENABLED / REDIS_ENABLED): HTTP only");
    }
    let subscriber = fogis_pubsub::drive(
        sub_config,
        pipeline::CalendarTarget::new(engine.clone(), metrics.clone()),
    );
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && opts.api_token.is_none() {
        tracing::warn!(%addr, "listening beyond loopback without API_TOKEN: anyone who can reach this port can change the calendar");
    }
    let state = server::AppState {
        engine,
        metrics,
        subscriber: subscriber.clone(),
        sinks,
        user_referee_number: opts.sinks.user_referee_number.clone(),
        api_token: opts.api_token.clone(),
        feed_token: opts.feed_token.clone(),
        max_body_bytes: opts.max_body_bytes,
        started: Instant::now(),
    };
    tracing::info!(%addr, data_dir = %opts.state.data_dir.display(), "fogis-calendar-sync listening");
    let app = server::router(state).merge(fogis_pubsub::http::router(subscriber.clone()));
    let served = http_server::serve(listener, app, shutdown.clone(), opts.http_limits()).await;
    subscriber.shutdown();
    subscriber.join().await;
    sinks_shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    served?;
    tracing::info!("stopped");
    Ok(())
}
