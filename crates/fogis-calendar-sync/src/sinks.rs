//! Sinks: adapters that make a remote calendar, address book or service match the state.
//!
//! The engine knows no sink. Each configured sink runs one worker task that reconciles: on
//! every new view of the state ([`crate::engine::view`]), on an item's backoff and on its refresh timer,
//! a pass plans what the state wants against the sink's own ledger ([`crate::store::ledger`]: remote
//! name, ETag, content hash of what it wrote) with the pure [`plan::plan`], then executes the
//! steps, writing idempotently (stable resource names and UIDs, `If-None-Match`/`If-Match`) and
//! recording each result. A commit from any process (HTTP, Redis, the CLI's `sync FILE` and
//! `held apply`, `purge`) therefore reaches every sink, and a sink configured later starts from
//! an empty ledger: it writes what the state holds. An item the remote refuses waits for its
//! own backoff while the others go on; a remote that is down delays only its sink, whose worker
//! backs off (1 s doubling to 5 min; 10 min after a 401/403, which needs a configuration change,
//! never a hot loop). Per-sink status (pending steps, last success, last error) is shown by
//! `/sinks` and `/health`.
//!
//! Sinks see a [`SinkContext`]: the view of the state, and their ledger's own SQLite
//! connection, used only on blocking threads. Never the engine.

pub mod caldav;
pub mod carddav;
pub mod content;
pub mod dav;
pub mod forward;
pub mod google;
pub mod lease;
pub mod listing;
pub mod plan;
mod worker;

pub use worker::run;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::engine::view::{StateView, ViewWatch};
use crate::store::ledger::SinkItem;
use crate::store::{Store, StoreError};
use dav::DavError;
use plan::{Known, Plan};

/// Sink names, as stored in the ledgers.
pub const CALDAV: &str = "caldav";
pub const CARDDAV: &str = "carddav";
pub const FORWARD: &str = "forward";
pub const GOOGLE_CALENDAR: &str = "google_calendar";
pub const GOOGLE_CONTACTS: &str = "google_contacts";
/// The Google contacts sink's one ledger key for its failures: the phonebook is written whole.
pub const PHONEBOOK_KEY: &str = "phonebook";
/// The forward sink's one ledger key: the latest applied list.
pub const SNAPSHOT_KEY: &str = "snapshot";
/// How often a sink whose items move with time (the cards list *upcoming* matches) passes
/// even when the state did not change.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3600);

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
    /// Another instance holds the sink lease: this one writes nothing until it takes over.
    pub standby: bool,
    /// The state version the last successful pass planned against (-1: none yet). While it is
    /// older than the current view, the sink has work it has not planned yet: `pending` shows
    /// at least 1.
    #[serde(skip)]
    pub synced_version: i64,
}

/// A shared, cheap-to-read status cell.
pub type StatusCell = Arc<Mutex<SinkStatus>>;

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

pub(crate) fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.min(9).saturating_sub(1);
    Duration::from_secs(secs.min(300))
}

/// The sinks' narrow view of the service: the state as committed, and their ledger.
#[derive(Debug, Clone)]
pub struct SinkContext {
    view: ViewWatch,
    ledger: Arc<Mutex<Store>>,
}

impl SinkContext {
    /// `ledger`: a connection of the sinks' own to the state file.
    pub fn new(view: ViewWatch, ledger: Store) -> SinkContext {
        SinkContext {
            view,
            ledger: Arc::new(Mutex::new(ledger)),
        }
    }

    /// The current view of the state.
    pub fn view(&self) -> Arc<StateView> {
        self.view.borrow().clone()
    }

    /// Runs `f` on the ledger's connection on a blocking thread.
    pub async fn ledger<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, SinkError> {
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = ledger.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut store)
        })
        .await
        .map_err(|e| SinkError::State(e.to_string()))?
        .map_err(SinkError::from)
    }

    /// The ledger of `sink`, by key.
    pub async fn items(&self, sink: &'static str) -> Result<BTreeMap<String, SinkItem>, SinkError> {
        let items = self.ledger(move |s| s.sink_items(sink)).await?;
        Ok(items.into_iter().map(|i| (i.key.clone(), i)).collect())
    }

    /// Records what `sink` wrote.
    pub async fn record(&self, sink: &'static str, item: SinkItem) -> Result<(), SinkError> {
        self.ledger(move |s| s.put_sink_item(sink, &item)).await
    }

    /// Records what a listing of `sink`'s collection taught ([`listing::reconcile`]).
    pub async fn learn(
        &self,
        sink: &'static str,
        learned: listing::Learned,
    ) -> Result<(), SinkError> {
        if learned.record.is_empty() && learned.forget.is_empty() {
            return Ok(());
        }
        tracing::info!(
            sink,
            found = learned.record.len(),
            gone = learned.forget.len(),
            "the collection holds items of ours the ledger did not know as they are"
        );
        self.ledger(move |s| {
            for item in &learned.record {
                s.put_sink_item(sink, item)?;
            }
            for key in &learned.forget {
                s.delete_sink_item(sink, key)?;
            }
            Ok(())
        })
        .await
    }

    /// Forgets an item of `sink`.
    pub async fn forget(&self, sink: &'static str, key: &str) -> Result<(), SinkError> {
        let key = key.to_string();
        self.ledger(move |s| s.delete_sink_item(sink, &key)).await
    }
}

/// What a sink planned, and what it needs to execute the steps.
#[derive(Debug)]
pub struct Planned<W> {
    pub plan: Plan,
    pub work: W,
}

/// The kinds of sink.
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

    /// Passes even without a new view this often (items that move with time).
    pub(crate) fn refresh_every(&self) -> Option<Duration> {
        match self {
            SinkKind::CardDav(_) | SinkKind::GoogleContacts(_) => Some(REFRESH_EVERY),
            _ => None,
        }
    }

    /// Once per start, and under a lease once per grant: the remote collection made ready (the
    /// Google calendar also adopts the Python service's events here; the DAV sinks list and
    /// adopt before a pass, when their collection changed: [`listing`]). `fresh_look`: a
    /// takeover under the sink lease, after which what is found is the pair's own.
    pub(crate) async fn prepare(
        &self,
        ctx: &SinkContext,
        fresh_look: bool,
    ) -> Result<(), SinkError> {
        match self {
            SinkKind::CalDav(s) => s.prepare(ctx, fresh_look).await,
            SinkKind::CardDav(s) => s.prepare(ctx, fresh_look).await,
            SinkKind::Forward(_) | SinkKind::GoogleContacts(_) => Ok(()),
            SinkKind::GoogleCalendar(s) => s.prepare(ctx, fresh_look).await,
        }
    }

    /// What the sink last reported, if it reports anything.
    pub(crate) fn notice(&self) -> Option<String> {
        match self {
            SinkKind::GoogleCalendar(s) => s.notice(),
            SinkKind::GoogleContacts(s) => s.notice(),
            _ => None,
        }
    }
}

/// The sinks of a running service.
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    pub statuses: Vec<StatusCell>,
    /// The state the sinks follow (`None`: no sinks were started).
    view: Option<ViewWatch>,
    /// The sink lease ([`lease`]): role `off` when none is configured.
    pub lease: lease::Lease,
}

impl Sinks {
    /// Starts one worker per sink on `tracker`, each writing only while `gate` is granted.
    pub fn start(
        kinds: Vec<SinkKind>,
        ctx: &SinkContext,
        (gate, lease): (lease::Gate, lease::Lease),
        tracker: &tokio_util::task::TaskTracker,
        shutdown: &CancellationToken,
    ) -> Sinks {
        let mut statuses = Vec::new();
        for kind in kinds {
            let status = Arc::new(Mutex::new(SinkStatus {
                name: kind.name(),
                target: kind.target(),
                synced_version: -1,
                ..SinkStatus::default()
            }));
            tracing::info!(sink = kind.name(), target = %kind.target(), "sink enabled");
            statuses.push(status.clone());
            tracker.spawn(run(
                kind,
                ctx.clone(),
                status,
                gate.clone(),
                shutdown.clone(),
            ));
        }
        Sinks {
            statuses,
            view: Some(ctx.view.clone()),
            lease,
        }
    }

    /// A copy of every sink's status (no I/O: the workers keep them current). A sink that has
    /// not planned against the current state yet shows pending work.
    pub fn snapshot(&self) -> Vec<SinkStatus> {
        let current = self.view.as_ref().map(|v| v.borrow().version);
        let standby = self.lease.status().role == lease::Role::Standby;
        self.statuses
            .iter()
            .map(|cell| {
                let mut st = cell.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if current.is_some_and(|v| st.synced_version < v) || st.synced_version < 0 {
                    st.pending = st.pending.max(1);
                }
                st.standby = standby;
                st
            })
            .collect()
    }
}

/// The ledger records of `items` as planning sees them; `owned` tells which the sink wrote.
pub(crate) fn known_of(
    items: &BTreeMap<String, SinkItem>,
    owned: impl Fn(&SinkItem) -> bool,
) -> BTreeMap<String, Known> {
    items
        .iter()
        .map(|(k, i)| {
            (
                k.clone(),
                Known {
                    hash: i.hash.clone(),
                    owned: owned(i),
                },
            )
        })
        .collect()
}
