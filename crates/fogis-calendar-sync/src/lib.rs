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

pub mod auth;
pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod feed_cache;
pub mod files;
pub mod group_owner;
pub mod held;
pub mod http_server;
pub mod ics;
pub mod instance;
pub mod mask;
pub mod metrics;
pub mod model;
pub mod outbound;
pub mod outbox;
pub mod pipeline;
pub mod pull;
pub mod purge;
pub mod reconcile;
pub mod remote;
pub mod server;
pub mod sinks;
pub mod state_health;
pub mod status_page;
pub mod store;
pub mod title;
pub mod trigger;
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
    for (var, url, credentials) in [
        ("CALDAV_URL", &s.caldav_url, s.caldav_password.is_some()),
        ("CARDDAV_URL", &s.carddav_url, s.carddav_password.is_some()),
        ("FORWARD_URL", &s.forward_url, s.forward_token.is_some()),
    ] {
        if let Some(url) = url {
            outbound::warn_plain_http(var, url, credentials);
        }
    }
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
            sinks::carddav::book_name(&opts.state.calendar_name),
            opts.state.user_referee_number.clone(),
        )
        .context("CARDDAV_URL")?;
        kinds.push(sinks::SinkKind::CardDav(sink));
    }
    if let Some(url) = &s.forward_url {
        let sink = sinks::forward::ForwardSink::new(url, s.forward_token.clone(), timeout)
            .context("FORWARD_URL")?;
        kinds.push(sinks::SinkKind::Forward(sink));
    }
    let (calendar, contacts) = sinks::google::build(
        &opts.google,
        opts.state.user_referee_number.clone(),
        timeout,
    )
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
        title: title::TitleTemplate::new(&opts.event_title, opts.user_referee_number.as_deref()),
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
    match applied.outcome {
        // The engine already said so, loudly.
        engine::Outcome::Held(_) | engine::Outcome::Stale => {}
        engine::Outcome::Duplicate => {
            tracing::info!(%origin, message_id = ?applied.message_id, "duplicate message, already applied");
        }
        engine::Outcome::Applied => tracing::info!(
            %origin,
            message_id = ?applied.message_id,
            created = c.created,
            updated = c.updated,
            cancelled = c.cancelled,
            withdrawn = c.withdrawn,
            unchanged = c.unchanged,
            rejected = c.rejected,
            "sync applied"
        ),
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
    let access = auth::policy(&opts, listener.local_addr()?)?;
    let kinds = sink_kinds(&opts)?;
    let state_opts = opts.state.clone();
    // One `serve` per DATA_DIR, held until `run` returns.
    let (_lock, engine, ledger) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let lock = files::ServeLock::acquire(&state_opts.data_dir)?;
        let engine = open_engine(&state_opts)?;
        checkpoint::tune(&engine);
        // The sinks' ledgers have a connection of their own: their writes never wait for the
        // engine's lock, and the engine's never for theirs.
        let ledger = Store::open_dir(&state_opts.data_dir)?;
        Ok((lock, engine, ledger))
    })
    .await??;
    let engine = Arc::new(engine);
    // Before anything is started: a refusal leaves nothing running.
    let mut redis_opts = opts.redis.clone();
    if redis_opts.durable.stream().is_some() && redis_opts.enabled() {
        let e = engine.clone();
        let id = tokio::task::spawn_blocking(move || instance::state_id(&e)).await??;
        if redis_opts.consumer_group().is_none() {
            redis_opts.redis_consumer_group = Some(instance::default_group(&id));
        }
        let config = redis_opts.subscriber_config()?;
        if let Some(stream) = &config.stream {
            group_owner::claim(&config.redis_url, &stream.key, &stream.group, &id).await?;
        }
    }
    let tracker = tokio_util::task::TaskTracker::new();
    let sinks_shutdown = shutdown.child_token();
    let context = sinks::SinkContext::new(engine.watch(), ledger);
    let sinks = sinks::Sinks::start(kinds, &context, &tracker, &sinks_shutdown);
    tracker.spawn(follow_other_writers(engine.clone(), sinks_shutdown.clone()));
    if opts.archive_retention_days > 0 || opts.max_archived_matches > 0 {
        tracker.spawn(purge::retention_loop(
            opts.state.data_dir.clone(),
            opts.archive_retention_days,
            opts.max_archived_matches,
            sinks_shutdown.clone(),
        ));
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let sub_config = redis_opts.subscriber_config()?;
    if let Some(stream) = &sub_config.stream {
        tracing::info!(stream = %stream.key, group = %stream.group, consumer = %stream.consumer, "reading the stream");
    }
    if sub_config.enabled {
        tracing::info!(
            redis = %sub_config.redis_url.redacted(),
            channels = sub_config.match_channels.len() + sub_config.status_channels.len(),
            "✅ Redis pub/sub integration enabled for calendar service"
        );
    } else {
        tracing::info!("Redis pub/sub disabled (REDIS_PUBSUB_ENABLED / REDIS_ENABLED): HTTP only");
    }
    let pull = pull::Pull::new(&opts.pull, opts.max_body_bytes)?;
    let subscriber = fogis_pubsub::drive(
        sub_config,
        pipeline::CalendarTarget::new(engine.clone(), metrics.clone()).with_pull(pull.clone()),
    );
    let pull_shutdown = shutdown.child_token();
    pull.start(engine.clone(), &tracker, pull_shutdown.clone());
    let addr = listener.local_addr()?;
    let state = server::AppState {
        engine,
        metrics,
        subscriber: subscriber.clone(),
        sinks,
        user_referee_number: opts.state.user_referee_number.clone(),
        api_token: opts.api_token.clone(),
        feed_token: opts.feed_token.clone(),
        max_body_bytes: opts.max_body_bytes,
        started: Instant::now(),
        pull,
        triggers: Arc::new(trigger::RateLimit::default()),
        feeds: Arc::default(),
    };
    tracing::info!(%addr, data_dir = %opts.state.data_dir.display(), "fogis-calendar-sync listening");
    let app = auth::protect(
        server::router(state).merge(fogis_pubsub::http::routes(subscriber.clone())),
        access,
    );
    let served = http_server::serve(listener, app, shutdown.clone(), opts.http_limits()).await;
    subscriber.shutdown();
    subscriber.join().await;
    pull_shutdown.cancel();
    sinks_shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    served?;
    tracing::info!("stopped");
    Ok(())
}
