//! The bridge from the Redis subscriber to the engine: every snapshot the subscriber hands over
//! is applied on a blocking thread (SQLite), counted, and timed from its envelope timestamp to
//! the commit. Rejected payloads go to the quarantine.
//!
//! Only bad input is rejected. A snapshot that could not be committed because the state cannot
//! be written (SQLite busy past its timeout, a full disk, an I/O error), or whose apply
//! panicked, answers [`HandlerOutcome::Retry`]: the stream entry stays pending and a pub/sub
//! snapshot stays in the subscriber's slot, both tried again after a backoff; `/health` shows
//! it meanwhile ([`crate::ingest::state_health`]).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Utc;
use fogis_pubsub::{
    BoxFuture, HandlerOutcome, MatchUpdate, RejectedPayload, StatusUpdate, SyncTarget,
};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::engine::{ApplyError, Engine, Outcome};
use crate::ingest::metrics::Metrics;
use crate::mask::mask_pii;

/// Applies snapshots from Redis to the engine.
#[derive(Debug)]
pub struct CalendarTarget {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    /// Number of applied syncs, for the "sync #n applied" log line.
    syncs: AtomicU64,
    /// Asked for a pull whenever pub/sub may have lost something.
    pull: crate::ingest::pull::Pull,
}

impl CalendarTarget {
    pub fn new(engine: Arc<Engine>, metrics: Arc<Metrics>) -> Self {
        CalendarTarget {
            engine,
            metrics,
            syncs: AtomicU64::new(0),
            pull: crate::ingest::pull::Pull::disabled(),
        }
    }

    /// Asks `pull` for FOGIS's own list after every (re)subscription and lost publish.
    pub fn with_pull(mut self, pull: crate::ingest::pull::Pull) -> Self {
        self.pull = pull;
        self
    }

    async fn apply(&self, update: MatchUpdate) -> HandlerOutcome {
        let channel = update.channel.clone();
        let engine = self.engine.clone();
        let origin = format!("redis:{channel}");
        let sent_at = update.snapshot.meta.timestamp;
        // The integration README's line (its runbooks grep for it); the log writer runs on a
        // thread of its own, so this costs the commit no system call.
        tracing::info!(%channel, "🗓️ Triggering calendar sync for {} matches...", update.snapshot.matches.len());
        let work = move || {
            let mode = crate::engine::ApplyMode {
                // Only copies of earlier lists (the catch-up key, a stream entry delivered
                // again after a restart) are ordered by their timestamp: live lists arrive in
                // publish order, and the publisher's clock may step back (PROTOCOL.md 7).
                catch_up: update.replay,
                ..crate::engine::ApplyMode::default()
            };
            let r = engine.apply_with(&update.snapshot, &origin, mode, Utc::now());
            // The lag is measured to the commit, not to this task's next turn.
            let committed_at = Utc::now();
            if let Err(ApplyError::AllRejected(_)) = &r {
                let raw = serde_json::to_vec(&update.snapshot.metadata).unwrap_or_default();
                let reason = r
                    .as_ref()
                    .err()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                engine.quarantine(&origin, &reason, &raw);
            }
            r.map(|applied| (applied, committed_at))
        };
        // A panic is our bug, not the input's fault: caught here, where it cannot poison the
        // worker, and answered like a state that cannot be written (kept and retried).
        let work = move || std::panic::catch_unwind(AssertUnwindSafe(work));
        let result = if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
            // In place: the runtime hands this thread's other tasks to another worker, and the
            // commit starts now instead of after a blocking-pool thread has been woken (and
            // this task after it). Measured: most of the lag of an applied message on an idle
            // machine was those two wake-ups. See BENCHMARKS.md.
            tokio::task::block_in_place(work).map_err(|_| ())
        } else {
            // A join error is a panic too (or a runtime shutting down): retried either way.
            tokio::task::spawn_blocking(work)
                .await
                .map_err(|_| ())
                .and_then(|r| r.map_err(|_| ()))
        };
        if let Ok(Ok(_)) = &result {
            self.metrics.state.recovered();
        }
        match result {
            Ok(Ok((applied, committed_at))) => {
                self.metrics
                    .count_message(&channel, applied.outcome.label());
                match applied.outcome {
                    Outcome::Held(h) => HandlerOutcome::Held {
                        reason: format!("held for confirmation (#{}): {}", h.id, h.reason),
                    },
                    Outcome::Stale => HandlerOutcome::Stale {
                        reason: "older than the list applied last".into(),
                    },
                    Outcome::Duplicate => {
                        tracing::info!(%channel, message_id = ?applied.message_id, "duplicate message, already applied");
                        HandlerOutcome::Duplicate
                    }
                    Outcome::Applied => {
                        if let Some(sent) = sent_at {
                            let lag = (committed_at - sent).num_microseconds().unwrap_or(i64::MAX);
                            self.metrics.observe_lag(lag as f64 / 1e6);
                        }
                        let n = self.syncs.fetch_add(1, Ordering::Relaxed) + 1;
                        let c = applied.counts;
                        let summary = format!(
                            "created {}, updated {}, cancelled {}, withdrawn {}, unchanged {}, rejected {}",
                            c.created, c.updated, c.cancelled, c.withdrawn, c.unchanged, c.rejected
                        );
                        tracing::info!(
                            %channel,
                            message_id = ?applied.message_id,
                            created = c.created,
                            updated = c.updated,
                            cancelled = c.cancelled,
                            withdrawn = c.withdrawn,
                            unchanged = c.unchanged,
                            rejected = c.rejected,
                            "✅ Calendar sync triggered successfully (sync #{n})"
                        );
                        HandlerOutcome::Applied { summary }
                    }
                }
            }
            Ok(Err(ApplyError::Store(e))) => self.retry(&channel, &e.to_string()),
            Ok(Err(e)) => {
                self.metrics.count_message(&channel, "rejected");
                let reason = e.to_string();
                tracing::warn!(%channel, reason = %mask_pii(&reason), "snapshot not applied");
                HandlerOutcome::Rejected { reason }
            }
            Err(()) => {
                tracing::error!(%channel, "applying a snapshot panicked");
                self.retry(&channel, "applying the list panicked")
            }
        }
    }

    /// The snapshot could not be committed now: never acknowledged, never reported as bad
    /// input, tried again by the subscriber after a backoff.
    fn retry(&self, channel: &str, error: &str) -> HandlerOutcome {
        self.metrics.count_message(channel, "retry");
        self.metrics
            .state
            .failed(&format!("redis:{channel}"), error);
        tracing::error!(%channel, %error, "the state cannot be written: the list is kept and retried");
        HandlerOutcome::Retry {
            reason: format!("the state cannot be written: {error}"),
        }
    }
}

impl SyncTarget for CalendarTarget {
    fn sync(&self, update: MatchUpdate) -> BoxFuture<'_, HandlerOutcome> {
        Box::pin(self.apply(update))
    }

    fn on_connected(&self, reconnect: bool) -> BoxFuture<'_, ()> {
        // The first subscription too: what was published between the start pull and it is
        // gone. The pull runs on its own task, rate-limited; this never waits for it.
        if self.pull.trigger(crate::ingest::pull::Trigger::Reconnect) {
            tracing::debug!(
                reconnect,
                "subscribed: a pull from the fogis-api-client service is due"
            );
        }
        Box::pin(std::future::ready(()))
    }

    fn on_publish_lost(&self, _status: StatusUpdate) -> BoxFuture<'_, ()> {
        if self.pull.trigger(crate::ingest::pull::Trigger::LostPublish) {
            tracing::info!("a lost publish: pulling the list from the fogis-api-client service");
        }
        Box::pin(std::future::ready(()))
    }

    fn on_rejected(&self, rejected: RejectedPayload) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.metrics.count_message(&rejected.channel, "rejected");
            let engine = self.engine.clone();
            let origin = format!("redis:{}", rejected.channel);
            let reason = rejected.error.to_string();
            tracing::warn!(channel = %rejected.channel, size = rejected.size, reason = %mask_pii(&reason), "rejected a Redis message");
            let _ = tokio::task::spawn_blocking(move || {
                engine.quarantine(&origin, &reason, &rejected.raw);
            })
            .await;
        })
    }
}
