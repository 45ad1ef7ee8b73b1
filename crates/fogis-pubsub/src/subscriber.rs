//! A subscriber for match updates that never stays down and, with the stream, never loses one.
//!
//! Up to three tasks per subscriber, owned by one [`SubscriberHandle`]:
//!
//! - the **reading task** (pub/sub, on unless `pubsub` is false) connects, subscribes every
//!   match and status channel plus a private probe channel, catches up (below), and then only
//!   reads: it size-checks and hands off. A large payload on a match channel is handed off raw
//!   (decoding 30 KB of JSON takes longer than receiving it; a reader that decoded every message
//!   would fall behind a burst), so the worker decodes only the snapshot that survives
//!   coalescing; status channels and small payloads are decoded at once. It reconnects forever with capped,
//!   jittered exponential backoff and pings an idle connection so that a dead or frozen Redis is
//!   noticed within `ping_interval + ping_timeout`.
//! - the **stream consumer** (when [`SubscriberConfig::stream`] is set) reads a Redis stream
//!   through a consumer group and acknowledges each entry only after the handler returned for
//!   it (see below).
//! - the **worker** takes the work from a small inbox and awaits the handler: one call at a
//!   time, whichever way the snapshot came. A slow handler therefore never slows the pub/sub
//!   reader, and Redis never disconnects us for a full output buffer; pub/sub snapshots that
//!   were overtaken before the handler got to them are counted as coalesced, which loses nothing
//!   because every snapshot is the whole match list. (A large payload overtaken before the
//!   worker came round is counted as coalesced without being decoded; see the inbox module.)
//!
//! # Delivery guarantees
//!
//! **Pub/sub is at most once**: whatever is published while we are disconnected is gone. Two
//! things make up for it. Every successful subscription is reported to the handler
//! ([`SyncTarget::on_connected`]). And, with `latest_key` set (the default), every successful
//! (re)subscription is followed by a **catch-up** of the newest snapshot, in this order:
//!
//! 1. `SUBSCRIBE` every channel and wait for the confirmations, so that from here on nothing
//!    published can fall between the catch-up and the live messages;
//! 2. on a second connection, in one `MULTI`/`EXEC`: `GET <latest_key>` and `PUBLISH` a random
//!    marker on the private probe channel. The marker arrives among the live messages exactly
//!    where the `GET` ran: messages before it were published before the read, messages after it
//!    after;
//! 3. when the marker arrives, the key's snapshot is handed over as if it had arrived on channel
//!    `catch-up:<key>` (counted in [`SubscriberStatus::catch_ups`]), unless a match snapshot
//!    already arrived between the subscription and the marker: that one is at least as new as
//!    the key (publishers write key and message in one transaction, see
//!    [`Publisher::publish_snapshot`]), and handing the key after it could only go back in time.
//!
//! The reader also follows the processor's cycle on its status channel: `started`, then, only
//! when it detected a change, the match list and `completed`. A `completed` that reports
//! changes with no match list received since its `started` means a publish was lost (the
//! processor does not retry one); the handler hears of it ([`SyncTarget::on_publish_lost`]) and
//! can fetch the list another way.
//!
//! A catch-up of a snapshot already applied is a duplicate, which the application skips for
//! free. Together: at most once, plus the latest snapshot on every reconnect, which is all a
//! snapshot protocol needs, as long as every publisher writes the key and Redis keeps it.
//!
//! **The stream is at least once**: an entry is acknowledged (`XACK`) only after the handler
//! returned [`Applied`](HandlerOutcome::Applied), [`Duplicate`](HandlerOutcome::Duplicate) or
//! [`Rejected`](HandlerOutcome::Rejected) for it (or for a newer snapshot that supersedes it).
//! A crash between the application's commit and the `XACK` delivers the entry again, so the
//! application's apply must be idempotent (it is: snapshots are deduplicated by `message_id`
//! and content). See the `stream` module for the commands.
//!
//! Both can run together; the worker then gives a waiting stream entry the handler before a
//! waiting pub/sub snapshot (the stream entry is the older one), and the application
//! deduplicates what arrives both ways.
//!
//! # Redis settings that matter
//!
//! - **Persistence** (AOF `appendonly yes`, or RDB snapshots): without it a Redis restart
//!   empties the latest key, the stream and the consumer group, and what was published but not
//!   yet read is gone. With `appendfsync everysec` (the default) up to a second can be lost in a
//!   crash of the Redis host.
//! - **`maxmemory-policy noeviction`**: under an evicting policy the stream or the key can be
//!   evicted at any time. (A vanished stream or group is recreated, `NOGROUP`, but its entries
//!   are lost.)
//! - `client-output-buffer-limit pubsub`: the reading task reads fast precisely so that this
//!   limit is never reached.
//!
//! Three ways in, from simplest: [`subscribe_to_match_updates`] with an async closure, [`drive`]
//! with an existing [`SyncTarget`], and [`http::router`](crate::http::router) on top of either.
//!
//! [`Publisher::publish_snapshot`]: crate::Publisher::publish_snapshot
//! [`SubscriberConfig::stream`]: crate::SubscriberConfig::stream

mod backoff;
mod conn;
mod handle;
mod inbox;
mod intake;
mod reader;
mod stream;
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
use crate::envelope::{Snapshot, StatusUpdate};
use crate::error::RejectReason;
use crate::publisher::Publisher;
use crate::status::{StatusCell, StreamStatus, SubscriberStatus};

pub use handle::SubscriberHandle;

/// The [`MatchUpdate::channel`] of a catch-up snapshot starts so (`catch-up:<key>`): the
/// latest-list key read after a (re)subscription, a copy that may be older than what the live
/// channels delivered before.
pub const CATCH_UP_PREFIX: &str = "catch-up:";

/// How much of a rejected payload is kept for quarantine.
pub const REJECTED_RAW_LIMIT: usize = 64 * 1024;

/// A boxed, sendable future: what [`SyncTarget`] methods return so the trait can be used as
/// `Arc<dyn SyncTarget>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A match snapshot as received: the matches, the envelope metadata and where it came from.
#[derive(Debug, Clone)]
pub struct MatchUpdate {
    /// The channel it came on; `catch-up:<key>` ([`CATCH_UP_PREFIX`]) for the latest-list key,
    /// `stream:<key>` for a stream entry.
    pub channel: String,
    pub snapshot: Snapshot,
    pub received_at: DateTime<Utc>,
    /// A copy of an earlier list, not a live one: the catch-up key, or a stream entry delivered
    /// again (pending from before a restart, or claimed from a dead consumer). Lists applied
    /// since may be newer, so the application should order it by its timestamp and not let it
    /// turn the state back. Live lists arrive in publish order and need no such check (a
    /// publisher's clock may step back).
    pub replay: bool,
}

/// What the handler did with a snapshot; drives the counters of [`SubscriberStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerOutcome {
    /// The snapshot was applied (`sync_count` and `last_sync_time` are updated).
    Applied { summary: String },
    /// The snapshot had been applied before (same `message_id` or content).
    Duplicate,
    /// A copy older than what the handler applied last (the catch-up key read on a reconnect,
    /// say): skipped. Acknowledged on the stream.
    Stale { reason: String },
    /// Kept back by the handler's guard until something confirms it (a list that would empty
    /// the calendar, say): neither applied nor bad. Acknowledged on the stream: the handler
    /// keeps it.
    Held { reason: String },
    /// The snapshot could not be applied and never will be (it is acknowledged on the stream).
    Rejected { reason: String },
    /// The snapshot could not be applied *now* (the database is unavailable, say). On the
    /// stream the entry is not acknowledged and is read again after a backoff; a pub/sub
    /// snapshot is kept and tried again after a backoff unless a newer one arrives first.
    Retry { reason: String },
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

    /// Called when a `processing_status` `completed` says changes were detected but no match
    /// list arrived since the `started` before it, on the same connection: the processor's
    /// publish was lost (it does not retry one), or never made. The list must be fetched some
    /// other way. Counted in [`SubscriberStatus::lost_publishes`]. Several waiting are merged
    /// into one call with the newest status.
    fn on_publish_lost(&self, status: StatusUpdate) -> BoxFuture<'_, ()> {
        let _ = status;
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
    fn on_publish_lost(&self, status: StatusUpdate) -> BoxFuture<'_, ()> {
        (**self).on_publish_lost(status)
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
    fn on_publish_lost(&self, status: StatusUpdate) -> BoxFuture<'_, ()> {
        (**self).on_publish_lost(status)
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
    let config = &shared.config;
    let stream = config.stream.clone();
    if !config.enabled {
        tracing::info!("Redis integration disabled; not connecting");
    } else if !config.pubsub && stream.is_none() {
        tracing::warn!("Redis pub/sub is off and no stream is configured: nothing to read");
    } else {
        if config.pubsub {
            tracker.spawn(reader::run(shared.clone(), cancel.clone()));
        }
        if let Some(stream) = stream {
            tracker.spawn(stream::run(shared.clone(), stream, cancel.clone()));
        }
        tracker.spawn(worker::run(shared.clone(), target, cancel.clone()));
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
    pub(crate) inbox: inbox::Inbox,
    /// A separate connection for probes; the subscribed connection cannot publish.
    pub(crate) publisher: Publisher,
    /// Where the processor's current cycle is, as the pub/sub reader saw it (see
    /// [`intake::cycle_status`]): one of the `CYCLE_*` values of the intake module.
    pub(crate) cycle: std::sync::atomic::AtomicU8,
}

impl Shared {
    fn new(config: SubscriberConfig) -> Self {
        // Each channel once, in configuration order (a name listed twice is subscribed once).
        let mut channels: Vec<String> = Vec::new();
        let listed = config.match_channels.iter().chain(&config.status_channels);
        for channel in listed.filter(|_| config.pubsub) {
            if !channels.contains(channel) {
                channels.push(channel.clone());
            }
        }
        let stream = config.stream.as_ref().map(|s| StreamStatus {
            key: s.key.clone(),
            group: s.group.clone(),
            consumer: s.consumer.clone(),
            ..StreamStatus::default()
        });
        let status = SubscriberStatus {
            enabled: config.enabled,
            channels,
            stream,
            ..SubscriberStatus::default()
        };
        Shared {
            probe_channel: format!("fogis:calendar-sync:probe:{}", uuid::Uuid::new_v4()),
            status: StatusCell::new(status),
            restart: Notify::new(),
            probes: Mutex::new(HashMap::new()),
            inbox: inbox::Inbox::default(),
            publisher: Publisher::new(config.redis_url.clone()).with_timeout(handle::PROBE_TIMEOUT),
            cycle: std::sync::atomic::AtomicU8::new(intake::CYCLE_NONE),
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
