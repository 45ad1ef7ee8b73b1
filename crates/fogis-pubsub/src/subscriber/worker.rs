//! The hand-off between the reading tasks and the handler.
//!
//! The [`Inbox`] holds at most: one pending "connected" event, a few rejected payloads, one
//! stream entry and one pub/sub snapshot. A new pub/sub snapshot replaces an unprocessed one
//! (the newest list is all that matters, so nothing is lost and memory stays bounded whatever the
//! publish rate). The worker drains it in that order and awaits the handler for each item; the
//! reading tasks never wait for it, except the stream consumer, which must not acknowledge an
//! entry before the handler returned and so waits for its [`StreamJob`]'s reply.
//!
//! The stream entry goes before the pub/sub snapshot: both exist at once only when the stream
//! entry was read before the pub/sub message arrived, so it is the older of the two, and the
//! handler should see the newer one last.
//!
//! A pub/sub snapshot whose handler answered [`HandlerOutcome::Retry`] is kept and put back
//! after a backoff (unless a newer snapshot arrived meanwhile, which supersedes it): pub/sub
//! cannot deliver it again.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::Utc;
use futures_util::FutureExt;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::{HandlerOutcome, MatchUpdate, RejectedPayload, Shared, SyncTarget};
use crate::status::StatusCell;

/// How many rejected payloads may wait for `on_rejected` (each at most 64 KiB).
const REJECTED_QUEUE: usize = 16;

/// A stream entry for the handler; the outcome goes back to the stream consumer, which
/// acknowledges the entry (or not) accordingly.
#[derive(Debug)]
pub(crate) struct StreamJob {
    /// History sequence number.
    pub(crate) seq: u64,
    pub(crate) update: MatchUpdate,
    pub(crate) reply: oneshot::Sender<HandlerOutcome>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Merged connection events: `Some(true)` if any of them was a reconnect.
    connected: Option<bool>,
    rejected: VecDeque<RejectedPayload>,
    /// The stream entry waiting for the handler (the consumer hands over one at a time).
    stream: Option<StreamJob>,
    /// The newest unprocessed snapshot and its history sequence number.
    slot: Option<(u64, MatchUpdate)>,
}

/// Work waiting for the worker. A std mutex: held only to move values in and out.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pending: Mutex<Pending>,
    // `notify_one` stores a permit when the worker is busy, so a wake-up is never lost.
    notify: Notify,
}

enum Work {
    Connected(bool),
    Rejected(RejectedPayload),
    Stream(StreamJob),
    Update(u64, MatchUpdate),
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts a snapshot in the slot; returns the sequence number of the one it replaced.
    pub(crate) fn put(&self, seq: u64, update: MatchUpdate) -> Option<u64> {
        let replaced = self.lock().slot.replace((seq, update)).map(|(s, _)| s);
        self.notify.notify_one();
        replaced
    }

    /// Puts a snapshot back for another try, unless a newer one is waiting (which wins).
    fn put_back(&self, seq: u64, update: MatchUpdate) -> bool {
        {
            let mut p = self.lock();
            if p.slot.is_some() {
                return false;
            }
            p.slot = Some((seq, update));
        }
        self.notify.notify_one();
        true
    }

    pub(crate) fn connected(&self, reconnect: bool) {
        {
            let mut p = self.lock();
            p.connected = Some(p.connected.unwrap_or(false) || reconnect);
        }
        self.notify.notify_one();
    }

    /// Queues a rejected payload; the oldest is dropped when the queue is full.
    pub(crate) fn rejected(&self, payload: RejectedPayload) {
        {
            let mut p = self.lock();
            if p.rejected.len() == REJECTED_QUEUE {
                p.rejected.pop_front();
            }
            p.rejected.push_back(payload);
        }
        self.notify.notify_one();
    }

    /// Hands a stream entry to the worker. A job still waiting (there is none: the consumer
    /// waits for each reply) would be dropped, and its consumer told so by the closed channel.
    pub(crate) fn submit(&self, job: StreamJob) {
        self.lock().stream = Some(job);
        self.notify.notify_one();
    }

    /// Takes the stream job back if the worker has not started it; true when it was still
    /// waiting (the handler will never see it).
    pub(crate) fn withdraw(&self) -> bool {
        self.lock().stream.take().is_some()
    }

    fn take(&self) -> Option<Work> {
        let mut p = self.lock();
        if let Some(reconnect) = p.connected.take() {
            return Some(Work::Connected(reconnect));
        }
        if let Some(payload) = p.rejected.pop_front() {
            return Some(Work::Rejected(payload));
        }
        if let Some(job) = p.stream.take() {
            return Some(Work::Stream(job));
        }
        p.slot.take().map(|(seq, update)| Work::Update(seq, update))
    }
}

/// A pub/sub snapshot waiting to be tried again.
struct RetryLater {
    at: tokio::time::Instant,
    seq: u64,
    update: MatchUpdate,
}

/// The worker loop: drain the inbox, then sleep until woken, a retry is due, or cancelled.
///
/// A handler call in progress is allowed to finish at shutdown (it may be in the middle of a
/// write); the loop stops before starting the next one.
pub(crate) async fn run(
    shared: Arc<Shared>,
    target: Arc<dyn SyncTarget>,
    cancel: CancellationToken,
) {
    let config = &shared.config;
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    let mut retry: Option<RetryLater> = None;
    loop {
        while let Some(work) = shared.inbox.take() {
            if cancel.is_cancelled() {
                // Dropping a stream job closes its reply channel: the entry stays pending.
                return;
            }
            match work {
                Work::Connected(reconnect) => {
                    // A panicking hook must not take the worker down with it.
                    let hook = AssertUnwindSafe(target.on_connected(reconnect)).catch_unwind();
                    if hook.await.is_err() {
                        tracing::error!("on_connected handler panicked");
                    }
                }
                Work::Rejected(payload) => {
                    let hook = AssertUnwindSafe(target.on_rejected(payload)).catch_unwind();
                    if hook.await.is_err() {
                        tracing::error!("on_rejected handler panicked");
                    }
                }
                Work::Stream(job) => {
                    let channel = job.update.channel.clone();
                    let outcome = sync(&*target, job.update).await;
                    record(&shared.status, job.seq, &channel, outcome.clone());
                    // The consumer is gone only at shutdown; the entry then stays pending.
                    let _ = job.reply.send(outcome);
                }
                Work::Update(seq, update) => {
                    let channel = update.channel.clone();
                    // Kept for a retry: pub/sub cannot deliver it again.
                    let kept = update.clone();
                    let outcome = sync(&*target, update).await;
                    if matches!(outcome, HandlerOutcome::Retry { .. }) {
                        let delay = backoff.next_delay();
                        retry = Some(RetryLater {
                            at: tokio::time::Instant::now() + delay,
                            seq,
                            update: kept,
                        });
                    } else {
                        backoff.reset();
                        // Whatever waited for a retry is older than this one.
                        retry = None;
                    }
                    record(&shared.status, seq, &channel, outcome);
                }
            }
        }
        let due = retry.as_ref().map(|r| r.at);
        // Cancel safety: all three are cancel safe. `cancelled()` holds no state, a `Notified`
        // dropped after being chosen by `notify_one` passes the permit on (so a snapshot put in
        // the slot meanwhile is picked up on the next round), and the retry deadline is kept
        // outside `select!`.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = shared.inbox.notify.notified() => {}
            _ = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(r) = retry.take() {
                    if shared.inbox.put_back(r.seq, r.update) {
                        tracing::info!("retrying a match update the handler could not apply");
                    }
                }
            }
        }
    }
}

/// Calls the handler; a panic becomes a rejection.
async fn sync(target: &dyn SyncTarget, update: MatchUpdate) -> HandlerOutcome {
    match AssertUnwindSafe(target.sync(update)).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(_) => HandlerOutcome::Rejected {
            reason: "the sync handler panicked".into(),
        },
    }
}

fn record(status: &StatusCell, seq: u64, channel: &str, outcome: HandlerOutcome) {
    let mut s = status.lock();
    let text = match outcome {
        HandlerOutcome::Applied { summary } => {
            s.messages_applied += 1;
            s.sync_count += 1;
            s.last_sync_time = Some(Utc::now());
            // The application logs what it applied, in its own words; this is for debugging.
            tracing::debug!(channel, %summary, "applied match update");
            format!("applied: {summary}")
        }
        HandlerOutcome::Duplicate => {
            s.messages_duplicate += 1;
            tracing::debug!(channel, "match update already applied");
            "duplicate".to_string()
        }
        HandlerOutcome::Rejected { reason } => {
            s.messages_rejected += 1;
            tracing::warn!(channel, %reason, "match update rejected by the handler");
            format!("rejected: {reason}")
        }
        HandlerOutcome::Retry { reason } => {
            s.messages_retried += 1;
            tracing::warn!(channel, %reason, "match update not applied; will retry");
            format!("retry: {reason}")
        }
    };
    StatusCell::set_outcome(&mut s, seq, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{MessageForm, Meta, Snapshot};

    fn update(id: &str) -> MatchUpdate {
        MatchUpdate {
            channel: "c".into(),
            snapshot: Snapshot {
                meta: Meta {
                    message_id: Some(id.into()),
                    ..Meta::default()
                },
                form: MessageForm::Flat,
                matches: vec![],
                rejected: vec![],
                has_changes: None,
                metadata: serde_json::Value::Null,
            },
            received_at: Utc::now(),
        }
    }

    #[test]
    fn newest_snapshot_wins_and_events_come_first() {
        let inbox = Inbox::default();
        assert_eq!(inbox.put(1, update("a")), None);
        assert_eq!(inbox.put(2, update("b")), Some(1));
        inbox.connected(false);
        inbox.connected(true);
        inbox.connected(false);
        assert!(matches!(inbox.take(), Some(Work::Connected(true))));
        match inbox.take() {
            Some(Work::Update(2, u)) => {
                assert_eq!(u.snapshot.meta.message_id.as_deref(), Some("b"))
            }
            _ => panic!("expected the newest snapshot"),
        }
        assert!(inbox.take().is_none());
    }

    #[test]
    fn stream_job_goes_before_the_slot_and_can_be_withdrawn() {
        let inbox = Inbox::default();
        inbox.put(1, update("pubsub"));
        let (reply, _rx) = oneshot::channel();
        inbox.submit(StreamJob {
            seq: 2,
            update: update("stream"),
            reply,
        });
        assert!(matches!(inbox.take(), Some(Work::Stream(_))));
        assert!(!inbox.withdraw(), "already taken");
        let (reply, _rx) = oneshot::channel();
        inbox.submit(StreamJob {
            seq: 3,
            update: update("stream"),
            reply,
        });
        assert!(inbox.withdraw());
        assert!(matches!(inbox.take(), Some(Work::Update(1, _))));
        assert!(inbox.put_back(1, update("again")));
        assert!(!inbox.put_back(4, update("older")), "the waiting one wins");
    }

    #[test]
    fn rejected_queue_is_bounded_dropping_the_oldest() {
        let inbox = Inbox::default();
        for i in 0..(REJECTED_QUEUE + 5) {
            inbox.rejected(RejectedPayload {
                channel: format!("{i}"),
                error: crate::error::RejectReason::TooLarge { size: 1, limit: 0 },
                raw: vec![],
                size: 1,
                received_at: Utc::now(),
            });
        }
        match inbox.take() {
            Some(Work::Rejected(p)) => assert_eq!(p.channel, "5"),
            _ => panic!("expected a rejected payload"),
        }
    }
}
