//! # fogis-calendar-sync
//!
//! A football referee's calendar that follows FOGIS. Every match-update message is the referee's
//! whole match list (a [`fogis_pubsub::Snapshot`]); the [`engine::Engine`] plans it against the
//! SQLite state ([`reconcile::plan`], pure) and applies the plan in one transaction, so
//! duplicates, replays and reordering change nothing. The engine knows no sink: each commit
//! bumps a persistent state version and publishes an immutable [`engine::view::StateView`],
//! which HTTP handlers and sinks read without a lock or SQL. Each sink reconciles that view
//! against its own ledger ([`store::ledger`]), so a commit from any process reaches every sink.
//! The wire contract is described in `docs/PROTOCOL.md`.
//!
//! ## Layout
//!
//! The folders, in the order a list goes through them:
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`ingest`] | where lists come from: Redis pub/sub and streams ([`ingest::redis`]), the FOGIS pull source ([`ingest::pull`]), one body decoded and applied ([`ingest::apply_bytes`]); consumer-group ownership, counters |
//! | [`model`] | the match as this service stores it ([`model::MatchRecord`]) |
//! | [`reconcile`] | the pure plan of a list against the stored matches, and the guard that holds a list that would empty the calendar ([`reconcile::guard`]) |
//! | [`engine`] | applies a list (one [`engine::Outcome`]), publishes the view; retention, checkpoints |
//! | [`store`] | the SQLite state, its connection private to it: schema, matches, sync log, quarantine, holds, sink ledgers, private files |
//! | [`render`] | text others read: iCalendar, event titles, contacts, vCards, the phonebook |
//! | [`sinks`] | each sink's worker: plan against its ledger, then write (CalDAV, CardDAV, forward, Google) |
//! | [`http`] | the API: router and state, access ([`http::auth`]), errors, handlers, feeds, status page |
//!
//! Beside them: [`config`] (every option, read once), [`mask`] (personal data out of logs) and
//! [`outbound`] (the one way to build an HTTP client). No module depends on one that depends on
//! it (`tests/layout.rs` checks the folders and the modules inside each). The CLI's client for a
//! running service (`remote.rs`) belongs to the binary.
//!
//! One list from the Redis socket to a CalDAV `PUT`: the library's subscriber hands it to
//! [`ingest::redis`]; [`engine::Engine::apply`] plans it with [`reconcile::plan`] and
//! [`reconcile::guard`] and commits it through [`store::Store`]; the new view wakes the CalDAV
//! sink's worker in [`sinks`], which renders the event with [`render::ics`] and writes it
//! ([`sinks::caldav`], on the `fogis-dav` crate), recording the result in its ledger.
//! [`http`] serves the same view.
//!
//! The service is a library: [`run`] takes its configuration, a bound listener and a shutdown
//! token, so tests start it on port 0 and stop it explicitly.

pub mod config;
pub mod engine;
pub mod http;
pub mod ingest;
pub mod mask;
pub mod model;
pub mod outbound;
pub mod reconcile;
pub mod render;
pub mod sinks;
pub mod store;

use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ServeOpts;
use crate::engine::Engine;
use crate::store::Store;

pub use crate::engine::{engine_settings, open_engine};
pub use crate::ingest::{apply_bytes, IngestError};

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

/// The sink lease when configured (`SINK_LEASE`, `SINK_LEASE_KEY`), else an open gate.
fn start_lease(
    opts: &ServeOpts,
    kinds: &[sinks::SinkKind],
    tracker: &tokio_util::task::TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<(sinks::lease::Gate, sinks::lease::Lease)> {
    use anyhow::Context;
    let off = (sinks::lease::Gate::open(), sinks::lease::Lease::off());
    if !opts.sinks.lease_enabled() {
        return Ok(off);
    }
    if kinds.is_empty() {
        tracing::warn!("SINK_LEASE is set but no sink is configured: there is nothing to lease");
        return Ok(off);
    }
    let targets: Vec<String> = kinds
        .iter()
        .map(|k| format!("{}={}", k.name(), k.target()))
        .collect();
    let config = sinks::lease::LeaseConfig::new(
        opts.sinks.sink_lease_key.as_deref(),
        &targets,
        std::time::Duration::from_secs(opts.sinks.sink_lease_ttl_seconds),
    );
    let url = fogis_pubsub::RedisUrl::new(opts.redis.redis_url.clone()).context("REDIS_URL")?;
    sinks::lease::start(&url, config, tracker, shutdown.clone()).context("SINK_LEASE")
}

/// Runs the service until `shutdown` is cancelled.
pub async fn run(
    opts: ServeOpts,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let access = http::auth::policy(&opts, listener.local_addr()?)?;
    let kinds = sink_kinds(&opts)?;
    let state_opts = opts.state.clone();
    // One `serve` per DATA_DIR, held until `run` returns.
    let (_lock, engine, ledger) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let lock = store::files::ServeLock::acquire(&state_opts.data_dir)?;
        let engine = open_engine(&state_opts)?;
        engine::checkpoint::tune(&engine);
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
        let id = tokio::task::spawn_blocking(move || ingest::instance::state_id(&e)).await??;
        if redis_opts.consumer_group().is_none() {
            redis_opts.redis_consumer_group = Some(ingest::instance::default_group(&id));
        }
        let config = redis_opts.subscriber_config()?;
        if let Some(stream) = &config.stream {
            ingest::group_owner::claim(&config.redis_url, &stream.key, &stream.group, &id).await?;
        }
    }
    let tracker = tokio_util::task::TaskTracker::new();
    // The sinks on a tracker of their own: the lease is released only once they stopped.
    let sink_tracker = tokio_util::task::TaskTracker::new();
    let sinks_shutdown = shutdown.child_token();
    let lease_shutdown = CancellationToken::new();
    let gate = start_lease(&opts, &kinds, &tracker, &lease_shutdown)?;
    let context = sinks::SinkContext::new(engine.watch(), ledger);
    let sinks = sinks::Sinks::start(kinds, &context, gate, &sink_tracker, &sinks_shutdown);
    tracker.spawn(follow_other_writers(engine.clone(), sinks_shutdown.clone()));
    if opts.archive_retention_days > 0 || opts.max_archived_matches > 0 {
        tracker.spawn(engine::retention::retention_loop(
            opts.state.data_dir.clone(),
            opts.archive_retention_days,
            opts.max_archived_matches,
            sinks_shutdown.clone(),
        ));
    }
    let metrics = Arc::new(ingest::metrics::Metrics::default());
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
    let pull = ingest::pull::Pull::new(&opts.pull, opts.max_body_bytes)?;
    let subscriber = fogis_pubsub::drive(
        sub_config,
        ingest::redis::CalendarTarget::new(engine.clone(), metrics.clone()).with_pull(pull.clone()),
    );
    let pull_shutdown = shutdown.child_token();
    pull.start(engine.clone(), &tracker, pull_shutdown.clone());
    let addr = listener.local_addr()?;
    let state = http::AppState {
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
        triggers: Arc::new(http::trigger::RateLimit::default()),
        feeds: Arc::default(),
        pages: Arc::new(http::api::PageGate::for_this_machine()),
    };
    tracing::info!(%addr, data_dir = %opts.state.data_dir.display(), "fogis-calendar-sync listening");
    let app = http::auth::protect(
        http::router(state).merge(fogis_pubsub::http::routes(subscriber.clone())),
        access,
    );
    let served = http::serve::serve(
        listener,
        app,
        shutdown.clone(),
        http::serve::HttpLimits::of(&opts),
    )
    .await;
    subscriber.shutdown();
    subscriber.join().await;
    pull_shutdown.cancel();
    sinks_shutdown.cancel();
    sink_tracker.close();
    sink_tracker.wait().await;
    lease_shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    served?;
    tracing::info!("stopped");
    Ok(())
}
