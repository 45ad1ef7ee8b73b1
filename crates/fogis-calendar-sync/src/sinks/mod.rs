//! Sinks: adapters that make a remote calendar, address book or service match the state.
//!
//! Each configured sink runs one worker task that takes its work from the durable outbox
//! ([`crate::outbox`]), oldest first, and writes idempotently (stable resource names and UIDs,
//! `If-None-Match`/`If-Match`). A sink that is down delays only itself: its work waits in the
//! outbox, across restarts, and the worker backs off (1 s doubling to 5 min; 10 min after a
//! 401/403, which needs a configuration change, never a hot loop). Per-sink status (pending
//! work, last success, last error) is shown by `/sinks` and `/health`.

pub mod caldav;
pub mod carddav;
pub mod dav;
pub mod forward;
pub mod google;
pub mod phonebook;
pub mod vcard;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::outbox::OutboxItem;
use crate::store::StoreError;
use dav::DavError;

/// Sink names, as stored in the outbox.
pub const CALDAV: &str = "caldav";
pub const CARDDAV: &str = "carddav";
pub const FORWARD: &str = "forward";
pub const GOOGLE_CALENDAR: &str = "google_calendar";
pub const GOOGLE_CONTACTS: &str = "google_contacts";
/// The carddav sink's one outbox key: the phonebook is rebuilt as a whole.
pub const PHONEBOOK_KEY: &str = "phonebook";
/// The forward sink's one outbox key: the latest applied list.
pub const SNAPSHOT_KEY: &str = "snapshot";

/// Why one piece of sink work failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Dav(#[from] DavError),
    #[error("state database: {0}")]
    State(String),
    /// The remote answered, but not with success; worth retrying later.
    #[error("{0}")]
    Remote(String),
    /// The remote refused the credentials (non-DAV sinks): retried only every 10 minutes.
    #[error("{0}")]
    Auth(String),
    /// The remote refused this one item (a 4xx for its content): it is retried on its own.
    #[error("{0}")]
    Refused(String),
    /// The remote asked the sink to stop for a while (Google's `quotaExceeded`).
    #[error("{reason}")]
    Paused { reason: String, wait: Duration },
    /// The OAuth grant is dead (`invalid_grant`): a person must authorize again.
    #[error("{0}")]
    Reauthorize(String),
}

impl From<StoreError> for SinkError {
    fn from(e: StoreError) -> Self {
        SinkError::State(e.to_string())
    }
}

impl SinkError {
    fn is_auth(&self) -> bool {
        matches!(self, SinkError::Dav(e) if e.is_auth()) || matches!(self, SinkError::Auth(_))
    }

    /// The remote (or the state) is away: stop and wait, rather than fail item after item.
    fn is_outage(&self) -> bool {
        match self {
            SinkError::Dav(e) => e.is_retryable(),
            SinkError::State(_) | SinkError::Remote(_) => true,
            SinkError::Paused { .. } | SinkError::Reauthorize(_) => true,
            SinkError::Auth(_) | SinkError::Refused(_) => false,
        }
    }
}

/// What `/sinks` shows of one sink.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkStatus {
    pub name: &'static str,
    /// Where it writes (no credentials).
    pub target: String,
    pub pending: u64,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// The worker waits until then before trying again.
    pub paused_until: Option<DateTime<Utc>>,
    /// The remote refused the credentials: fix the configuration.
    pub auth_failed: bool,
    /// Set while the sink waits for `google-auth` to be run again: what to do.
    pub reauthorize: Option<String>,
    /// What the sink last reported (adoption, contacts linked).
    pub notice: Option<String>,
    pub consecutive_failures: u32,
    pub operations_done: u64,
}

/// A shared, cheap-to-read status cell.
pub type StatusCell = Arc<Mutex<SinkStatus>>;

/// The three kinds of sink.
#[derive(Debug)]
pub enum SinkKind {
    CalDav(caldav::CalDavSink),
    CardDav(carddav::CardDavSink),
    Forward(forward::ForwardSink),
    GoogleCalendar(google::calendar::CalendarSink),
    GoogleContacts(google::contacts::ContactsSink),
}

impl SinkKind {
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::CalDav(_) => CALDAV,
            SinkKind::CardDav(_) => CARDDAV,
            SinkKind::Forward(_) => FORWARD,
            SinkKind::GoogleCalendar(_) => GOOGLE_CALENDAR,
            SinkKind::GoogleContacts(_) => GOOGLE_CONTACTS,
        }
    }

    pub fn target(&self) -> String {
        match self {
            SinkKind::CalDav(s) => s.target(),
            SinkKind::CardDav(s) => s.target(),
            SinkKind::Forward(s) => s.target(),
            SinkKind::GoogleCalendar(s) => s.target(),
            SinkKind::GoogleContacts(s) => s.target(),
        }
    }

    async fn prepare(&self, engine: &Arc<Engine>) -> Result<(), SinkError> {
        match self {
            SinkKind::CalDav(s) => s.prepare(engine).await,
            SinkKind::CardDav(s) => s.prepare(engine).await,
            SinkKind::Forward(_) => Ok(()),
            SinkKind::GoogleCalendar(s) => s.prepare(engine).await,
            SinkKind::GoogleContacts(s) => s.prepare(engine).await,
        }
    }

    async fn process(&self, engine: &Arc<Engine>, item: &OutboxItem) -> Result<(), SinkError> {
        match self {
            SinkKind::CalDav(s) => s.process(engine, item).await,
            SinkKind::CardDav(s) => s.process(engine, item).await,
            SinkKind::Forward(s) => s.process(item).await,
            SinkKind::GoogleCalendar(s) => s.process(engine, item).await,
            SinkKind::GoogleContacts(s) => s.process(engine, item).await,
        }
    }

    /// What the sink last reported, if it reports anything.
    fn notice(&self) -> Option<String> {
        match self {
            SinkKind::GoogleCalendar(s) => s.notice(),
            SinkKind::GoogleContacts(s) => s.notice(),
            _ => None,
        }
    }
}

/// Runs `f` on the store on a blocking thread.
pub(crate) async fn blocking<R: Send + 'static>(
    engine: &Arc<Engine>,
    f: impl FnOnce(&mut crate::store::Store) -> Result<R, StoreError> + Send + 'static,
) -> Result<R, SinkError> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || engine.with_store(f))
        .await
        .map_err(|e| SinkError::State(e.to_string()))?
        .map_err(SinkError::from)
}

/// Writes `body` as `name` with the conditional write its known state calls for (`etag`:
/// `If-Match`; known without an ETag: unconditional; unknown: `If-None-Match: *`), and makes the
/// state win a 412: the resource changed under us or already exists (a write whose answer was
/// lost before a crash), so its current ETag is read and the write repeated once.
pub(crate) async fn write_over(
    client: &dav::DavClient,
    name: &str,
    body: String,
    content_type: &str,
    known: Option<Option<String>>,
) -> Result<Option<String>, DavError> {
    use dav::Precondition;
    let precondition = match known {
        Some(Some(etag)) => Precondition::IfMatch(etag),
        Some(None) => Precondition::Unconditional,
        None => Precondition::CreateOnly,
    };
    match client
        .put(name, body.clone(), content_type, precondition)
        .await
    {
        Err(DavError::PreconditionFailed) => {
            let precondition = match client.get(name).await?.and_then(|(_, etag)| etag) {
                Some(etag) => Precondition::IfMatch(etag),
                None => Precondition::CreateOnly,
            };
            client.put(name, body, content_type, precondition).await
        }
        other => other,
    }
}

fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.min(9).saturating_sub(1);
    Duration::from_secs(secs.min(300))
}

/// The worker of one sink: runs until `shutdown`.
pub async fn run(
    kind: SinkKind,
    engine: Arc<Engine>,
    status: StatusCell,
    shutdown: CancellationToken,
) {
    let name = kind.name();
    let mut signal = engine.outbox_signal();
    let mut prepared = false;
    let mut failures = 0u32;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let outcome = if prepared {
            work_once(&kind, &engine, &status).await
        } else {
            kind.prepare(&engine).await.map(|()| {
                prepared = true;
                true
            })
        };
        let pending = blocking(&engine, move |s| s.outbox_pending(name))
            .await
            .unwrap_or(0);
        let pause = match outcome {
            Ok(progress) => {
                failures = 0;
                let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
                st.pending = pending;
                st.consecutive_failures = 0;
                st.paused_until = None;
                st.auth_failed = false;
                st.reauthorize = None;
                st.notice = kind.notice();
                drop(st);
                if progress {
                    continue;
                }
                None
            }
            Err(e) => {
                failures += 1;
                let wait = match &e {
                    SinkError::Paused { wait, .. } => *wait,
                    // Only a local file is looked at until it changes: cheap to check often.
                    SinkError::Reauthorize(_) => Duration::from_secs(10),
                    _ if e.is_auth() => Duration::from_secs(600),
                    _ => backoff(failures),
                };
                let now = Utc::now();
                let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
                st.pending = pending;
                st.consecutive_failures = failures;
                st.auth_failed = e.is_auth();
                st.reauthorize = match &e {
                    SinkError::Reauthorize(what) => Some(what.clone()),
                    _ => None,
                };
                st.notice = kind.notice();
                st.last_error = Some(e.to_string());
                st.last_error_at = Some(now);
                st.paused_until = chrono::Duration::from_std(wait).ok().map(|w| now + w);
                drop(st);
                if matches!(e, SinkError::Reauthorize(_)) {
                    // The token source said so once, for both Google sinks.
                    tracing::debug!(sink = name, error = %e, "sink waits for re-authorization");
                } else if failures == 1 || e.is_auth() || matches!(e, SinkError::Paused { .. }) {
                    tracing::warn!(sink = name, error = %e, "sink unavailable, retrying in {wait:?}");
                } else {
                    tracing::debug!(sink = name, error = %e, "sink still unavailable, retrying in {wait:?}");
                }
                Some(wait)
            }
        };
        // Cancel safety: every branch only waits; dropping the losers loses nothing (the work is
        // in the outbox, the signal is a counter read again on the next turn).
        match pause {
            Some(wait) => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            None => {
                let next = blocking(&engine, move |s| s.outbox_next_due(name))
                    .await
                    .ok()
                    .flatten();
                let wait = next
                    .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                    .unwrap_or(Duration::from_secs(3600))
                    .min(Duration::from_secs(3600));
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = signal.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                if name == CARDDAV {
                    // The cards list upcoming matches: refresh them when time moves on.
                    let _ = carddav::refresh_if_stale(&engine).await;
                }
            }
        }
    }
}

/// Processes the due work of one sink; `Ok(true)` when something was done (look again).
async fn work_once(
    kind: &SinkKind,
    engine: &Arc<Engine>,
    status: &StatusCell,
) -> Result<bool, SinkError> {
    let name = kind.name();
    let items = blocking(engine, move |s| s.outbox_due(name, Utc::now(), 50)).await?;
    if items.is_empty() {
        return Ok(false);
    }
    for item in items {
        match kind.process(engine, &item).await {
            Ok(()) => {
                let (id, generation) = (item.id, item.generation);
                blocking(engine, move |s| s.outbox_done(id, generation)).await?;
                let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
                st.last_success = Some(Utc::now());
                st.operations_done += 1;
            }
            Err(e) if e.is_outage() || e.is_auth() => return Err(e),
            Err(e) => {
                // This item alone is refused (a 4xx for its content): back it off and go on.
                let wait = backoff(item.attempts as u32 + 1);
                let due = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                let (id, text) = (item.id, e.to_string());
                tracing::warn!(sink = name, key = %item.key, error = %text, "sink refused an item, retrying in {wait:?}");
                blocking(engine, move |s| s.outbox_retry(id, due, &text)).await?;
                let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
                st.last_error = Some(e.to_string());
                st.last_error_at = Some(Utc::now());
            }
        }
    }
    Ok(true)
}

/// The sinks of a running service.
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    pub statuses: Vec<StatusCell>,
}

impl Sinks {
    /// Starts one worker per sink on `tracker`.
    pub fn start(
        kinds: Vec<SinkKind>,
        engine: &Arc<Engine>,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: &CancellationToken,
    ) -> Sinks {
        let mut statuses = Vec::new();
        for kind in kinds {
            let status = Arc::new(Mutex::new(SinkStatus {
                name: kind.name(),
                target: kind.target(),
                ..SinkStatus::default()
            }));
            tracing::info!(sink = kind.name(), target = %kind.target(), "sink enabled");
            statuses.push(status.clone());
            tracker.spawn(run(kind, engine.clone(), status, shutdown.clone()));
        }
        Sinks { statuses }
    }

    /// A copy of every sink's status, with fresh pending counts.
    pub fn snapshot(&self, engine: &Engine) -> Vec<SinkStatus> {
        self.statuses
            .iter()
            .map(|cell| {
                let mut st = cell.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let name = st.name;
                if let Ok(n) = engine.with_store(|s| s.outbox_pending(name)) {
                    st.pending = n;
                }
                st
            })
            .collect()
    }
}
