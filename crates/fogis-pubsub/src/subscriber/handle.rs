//! [`SubscriberHandle`]: status, restart, probe, shutdown and join.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use super::Shared;
use crate::config::SubscriberConfig;
use crate::error::ProbeError;
use crate::status::SubscriberStatus;

/// How long a probe may take end to end.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Controls a running subscriber. Cheap to clone; the subscriber's tasks stop at
/// [`shutdown`](Self::shutdown) or when the last clone is dropped.
///
/// Awaiting the handle (or [`join`](Self::join)) waits until all its tasks have finished, which
/// happens only after a shutdown: call `shutdown()` first.
#[derive(Clone)]
#[must_use = "the subscriber stops when the last handle is dropped"]
pub struct SubscriberHandle {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Cancels the tasks when the last clone of the handle goes away, so a forgotten subscriber
    /// does not reconnect forever in the background.
    _guard: Arc<DropGuard>,
}

impl fmt::Debug for SubscriberHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriberHandle")
            .field("redis_url", &self.shared.config.redis_url)
            .field("probe_channel", &self.shared.probe_channel)
            .field("shut_down", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl SubscriberHandle {
    pub(super) fn new(
        shared: Arc<Shared>,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        let guard = cancel.clone().drop_guard();
        SubscriberHandle {
            shared,
            cancel,
            tracker,
            _guard: Arc::new(guard),
        }
    }

    /// A copy of the current status.
    pub fn status(&self) -> SubscriberStatus {
        self.shared.status.snapshot()
    }

    /// The configuration the subscriber runs with.
    pub fn config(&self) -> &SubscriberConfig {
        &self.shared.config
    }

    /// This instance's private probe channel (`fogis:calendar-sync:probe:<uuid>`).
    pub fn probe_channel(&self) -> &str {
        &self.shared.probe_channel
    }

    /// Drops the current pub/sub connection and reconnects at once (also cuts a backoff wait
    /// short), which also catches up again. Does nothing when the integration is disabled or shut
    /// down, nor to the stream consumer (it has nothing to gain from a new connection).
    pub fn restart(&self) {
        if self.shared.config.enabled && !self.cancel.is_cancelled() {
            self.shared.restart.notify_one();
        }
    }

    /// Measures a real round trip: publishes a random token on this instance's private probe
    /// channel over a separate connection and waits until the reading task receives it
    /// (at most 3 s). Never publishes on a match channel. With pub/sub off (stream only) it is
    /// a `PING` on that separate connection.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future forgets the token; a late arrival is ignored.
    pub async fn probe(&self) -> Result<Duration, ProbeError> {
        if !self.shared.config.enabled {
            return Err(ProbeError::Disabled);
        }
        if self.cancel.is_cancelled() {
            return Err(ProbeError::ShuttingDown);
        }
        if !self.shared.config.pubsub {
            return self.ping().await;
        }
        if !self.shared.status.lock().subscribed {
            return Err(ProbeError::NotSubscribed);
        }
        let token = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        let pending = PendingProbe::register(&self.shared, token, tx);
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;

        let published = tokio::time::timeout_at(
            deadline,
            self.shared
                .publisher
                .publish(&self.shared.probe_channel, pending.token.as_bytes()),
        )
        .await;
        match published {
            Err(_) => return Err(ProbeError::Timeout(PROBE_TIMEOUT)),
            Ok(Err(e)) => {
                let reason = e.to_string();
                self.shared.status.error(reason.clone(), false);
                return Err(ProbeError::Unavailable(reason));
            }
            Ok(Ok(0)) => return Err(ProbeError::NoReceivers),
            Ok(Ok(_)) => {}
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(arrived)) => {
                self.shared.status.lock().redis_available = true;
                Ok(arrived.saturating_duration_since(started))
            }
            Ok(Err(_)) => Err(ProbeError::ShuttingDown),
            Err(_) => Err(ProbeError::Timeout(PROBE_TIMEOUT)),
        }
    }

    /// The probe without pub/sub: one `PING`.
    async fn ping(&self) -> Result<Duration, ProbeError> {
        let started = std::time::Instant::now();
        match tokio::time::timeout(PROBE_TIMEOUT, self.shared.publisher.ping()).await {
            Err(_) => Err(ProbeError::Timeout(PROBE_TIMEOUT)),
            Ok(Err(f)) => Err(ProbeError::Unavailable(f.error.to_string())),
            Ok(Ok(())) => {
                self.shared.status.lock().redis_available = true;
                Ok(started.elapsed())
            }
        }
    }

    /// Asks the tasks to stop. The reader stops at once; a handler call in progress finishes,
    /// and the stream entry it was working on is then acknowledged.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// True once [`shutdown`](Self::shutdown) was called (or every handle was dropped).
    pub fn is_shut_down(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Waits until the subscriber's tasks have finished (returns at once when disabled).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes the tasks.
    pub async fn join(&self) {
        self.tracker.wait().await;
    }
}

impl IntoFuture for SubscriberHandle {
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    /// Same as [`join`](SubscriberHandle::join).
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.join().await })
    }
}

/// A probe token registered with the reading task; unregistered on drop, whatever happens.
struct PendingProbe<'a> {
    shared: &'a Shared,
    token: String,
}

impl<'a> PendingProbe<'a> {
    fn register(
        shared: &'a Shared,
        token: String,
        tx: oneshot::Sender<std::time::Instant>,
    ) -> Self {
        shared
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), tx);
        PendingProbe { shared, token }
    }
}

impl Drop for PendingProbe<'_> {
    fn drop(&mut self) {
        self.shared
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.token);
    }
}
