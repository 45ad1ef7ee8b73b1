//! A Redis pub/sub subscriber for match updates that never stays down.
//!
//! Two tasks per subscriber, owned by one [`SubscriberHandle`]:
//!
//! - the **reading task** connects, subscribes every match and status channel plus a private
//!   probe channel, and then only reads: it size-checks, decodes and hands off. It reconnects
//!   forever with capped, jittered exponential backoff and pings an idle connection so that a
//!   dead or frozen Redis is noticed within `ping_interval + ping_timeout`.
//! - the **worker** takes the newest snapshot from a one-place coalescing slot and awaits the
//!   handler. A slow handler therefore never slows the reader, and Redis never disconnects us
//!   for a full output buffer; snapshots that were overtaken before the handler got to them are
//!   counted as coalesced, which loses nothing because every snapshot is the whole match list.
//!
//! Pub/sub is at-most-once: whatever is published while we are disconnected is gone. Every
//! successful subscription is therefore reported to the handler
//! ([`SyncTarget::on_connected`]) so that the application can catch up.
//!
//! Three ways in, from simplest: [`subscribe_to_match_updates`] with an async closure, [`drive`]
//! with an existing [`SyncTarget`], and [`http::router`](crate::http::router) on top of either.

mod backoff;
mod handle;
mod reader;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SubscriberConfig;
use crate::envelope::Snapshot;
use crate::error::RejectReason;
use crate::publisher::Publisher;
use crate::status::{StatusCell, SubscriberStatus};

pub use handle::SubscriberHandle;

/// How much of a rejected payload is kept for quarantine.
pub const REJECTED_RAW_LIMIT: usize = 64 * 1024;

/// A boxed, sendable future: what [`SyncTarget`] methods return so the trait can be used as
/// `Arc<dyn SyncTarget>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A match snapshot as received: the matches, the envelope metadata and where it came from.
#[derive(Debug, Clone)]
pub struct MatchUpdate {
    pub channel: String,
    pub snapshot: Snapshot,
    pub received_at: DateTime<Utc>,
}

/// What the handler did with a snapshot; drives the counters of [`SubscriberStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerOutcome {
    /// The snapshot was applied (`sync_count` and `last_sync_time` are updated).
    Applied { summary: String },
    /// The snapshot had been applied before (same `message_id` or content).
    Duplicate,
    /// The snapshot could not be applied.
    Rejected { reason: String },
}

/// A payload that was received but could not be used, for the application to quarantine.
#[derive(Debug, Clone)]
pub struct RejectedPayload {
    pub channel: String,
    pub error: RejectReason,
    /// The payload, truncated to [`REJECTED_RAW_LIMIT`] bytes.
    pub raw: Vec<u8>,
    /// The size of the whole payload.
    pub size: usize,
    pub received_at: DateTime<Utc>,
}

/// Something that applies match snapshots: the sync function of an application.
///
/// Object safe, so it can be shared as `Arc<dyn SyncTarget>`; `Arc<T>` and `Box<T>` of a target
/// are targets too. Only [`sync`](SyncTarget::sync) is required.
///
/// ```
/// use fogis_pubsub::{BoxFuture, HandlerOutcome, MatchUpdate, SyncTarget};
///
/// struct Calendar;
///
/// impl SyncTarget for Calendar {
///     fn sync(&self, update: MatchUpdate) -> BoxFuture<'_, HandlerOutcome> {
///         Box::pin(async move {
///             let n = update.snapshot.matches.len();
///             HandlerOutcome::Applied { summary: format!("{n} matches") }
///         })
///     }
/// }
///
/// let target: std::sync::Arc<dyn SyncTarget> = std::sync::Arc::new(Calendar);
/// # let _ = target;
/// ```
pub trait SyncTarget: Send + Sync {
    /// Applies one snapshot. Runs on the worker task, never on the reading task; it may take as
    /// long as it needs (newer snapshots coalesce meanwhile).
    fn sync(&self, update: MatchUpdate) -> BoxFuture<'_, HandlerOutcome>;

    /// Called after every successful subscription: `reconnect` is false the first time. Updates
    /// published while disconnected were lost; this is the moment to catch up.
    fn on_connected(&self, reconnect: bool) -> BoxFuture<'_, ()> {
        let _ = reconnect;
        Box::pin(std::future::ready(()))
    }

    /// Called with payloads that were too large or could not be decoded (oldest dropped when
    /// more than a few are waiting).
    fn on_rejected(&self, rejected: RejectedPayload) -> BoxFuture<'_, ()> {
        let _ = rejected;
        Box::pin(std::future::ready(()))
    }
}

impl<T: SyncTarget + ?Sized> SyncTarget for Arc<T> {
    fn sync(&self, update: MatchUpdate) -> BoxFuture<'_, HandlerOutcome> {
        (**self).sync(update)
    }
    fn on_connected(&self, reconnect: bool) -> BoxFuture<'_, ()> {
        (**self).on_connected(reconnect)
    }
    fn on_rejected(&self, rejected: RejectedPayload) -> BoxFuture<'_, ()> {
        (**self).on_rejected(rejected)
    }
}

impl<T: SyncTarget + ?Sized> SyncTarget for Box<T> {
    fn sync(&self, update: MatchUpdate) -> BoxFuture<'_, HandlerOutcome> {
        (**self).sync(update)
    }
    fn on_connected(&self, reconnect: bool) -> BoxFuture<'_, ()> {
        (**self).on_connected(reconnect)
    }
    fn on_rejected(&self, rejected: RejectedPayload) -> BoxFuture<'_, ()> {
        (**self).on_rejected(rejected)
    }
}

/// Adapts an async closure to [`SyncTarget`].
struct FnTarget<F>(F);

impl<F, Fut> SyncTarget for FnTarget<F>
where
    F: Fn(MatchUpdate) -> Fut + Send + Sync,
    Fut: Future<Output = HandlerOutcome> + Send + 'static,
{
    fn sync(&self, update: MatchUpdate) -> BoxFuture<'_, HandlerOutcome> {
        Box::pin((self.0)(update))
    }
}

/// Subscribes to match updates and calls `handler` with every snapshot (option 1 of the
/// integration README). Must be called inside a Tokio runtime; the tasks run until
/// [`SubscriberHandle::shutdown`] or until the last handle is dropped.
///
/// ```no_run
/// use fogis_pubsub::{subscribe_to_match_updates, HandlerOutcome, SubscriberConfig};
///
/// # async fn demo() {
/// let handle = subscribe_to_match_updates(SubscriberConfig::default(), |update| async move {
///     println!("{} matches on {}", update.snapshot.matches.len(), update.channel);
///     HandlerOutcome::Applied { summary: "printed".into() }
/// });
/// // ... later, at shutdown:
/// handle.shutdown();
/// handle.join().await;
/// # }
/// ```
pub fn subscribe_to_match_updates<F, Fut>(config: SubscriberConfig, handler: F) -> SubscriberHandle
where
    F: Fn(MatchUpdate) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerOutcome> + Send + 'static,
{
    spawn(config, Arc::new(FnTarget(handler)))
}

/// Drives an existing sync function (option 3 of the integration README): every snapshot goes
/// to `target.sync`, every (re)connection to `target.on_connected`.
///
/// ```no_run
/// use std::sync::Arc;
/// use fogis_pubsub::{drive, BoxFuture, HandlerOutcome, MatchUpdate, SubscriberConfig, SyncTarget};
///
/// struct Calendar;
/// impl SyncTarget for Calendar {
///     fn sync(&self, update: MatchUpdate) -> BoxFuture<'_, HandlerOutcome> {
///         Box::pin(async move { HandlerOutcome::Duplicate })
///     }
/// }
///
/// # async fn demo() {
/// let target: Arc<dyn SyncTarget> = Arc::new(Calendar);
/// let handle = drive(SubscriberConfig::default(), target);
/// println!("{:?}", handle.status().connected);
/// # }
/// ```
pub fn drive(config: SubscriberConfig, target: impl SyncTarget + 'static) -> SubscriberHandle {
    spawn(config, Arc::new(target))
}

fn spawn(config: SubscriberConfig, target: Arc<dyn SyncTarget>) -> SubscriberHandle {
    let shared = Arc::new(Shared::new(config));
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    if shared.config.enabled {
        tracker.spawn(reader::run(shared.clone(), cancel.clone()));
        tracker.spawn(worker::run(shared.clone(), target, cancel.clone()));
    } else {
        tracing::info!("Redis integration disabled; not connecting");
    }
    tracker.close();
    SubscriberHandle::new(shared, cancel, tracker)
}

/// State shared by the reading task, the worker and the handles.
pub(crate) struct Shared {
    pub(crate) config: SubscriberConfig,
    /// `fogis:calendar-sync:probe:<uuid>`: only this instance listens here.
    pub(crate) probe_channel: String,
    pub(crate) status: StatusCell,
    /// `restart()` wakes the reading task; a stored permit survives if it is busy connecting.
    pub(crate) restart: Notify,
    /// Probe tokens in flight, completed by the reading task when the token comes back.
    pub(crate) probes: Mutex<HashMap<String, oneshot::Sender<Instant>>>,
    pub(crate) inbox: worker::Inbox,
    /// A separate connection for probes; the subscribed connection cannot publish.
    pub(crate) publisher: Publisher,
}

impl Shared {
    fn new(config: SubscriberConfig) -> Self {
        // Each channel once, in configuration order (a name listed twice is subscribed once).
        let mut channels: Vec<String> = Vec::new();
        for channel in config.match_channels.iter().chain(&config.status_channels) {
            if !channels.contains(channel) {
                channels.push(channel.clone());
            }
        }
        let status = SubscriberStatus {
            enabled: config.enabled,
            channels,
            ..SubscriberStatus::default()
        };
        Shared {
            probe_channel: format!("fogis:calendar-sync:probe:{}", uuid::Uuid::new_v4()),
            status: StatusCell::new(status),
            restart: Notify::new(),
            probes: Mutex::new(HashMap::new()),
            inbox: worker::Inbox::default(),
            publisher: Publisher::new(config.redis_url.clone()).with_timeout(handle::PROBE_TIMEOUT),
            config,
        }
    }

    /// The reading task saw a probe token come back.
    pub(crate) fn probe_returned(&self, token: &[u8]) {
        let Ok(token) = std::str::from_utf8(token) else {
            return;
        };
        let waiter = self
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
        if let Some(waiter) = waiter {
            let _ = waiter.send(Instant::now());
        }
    }
}
