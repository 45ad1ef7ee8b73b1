//! The hand-off between the reading task and the handler.
//!
//! The [`Inbox`] holds at most: one pending "connected" event, a few rejected payloads and one
//! snapshot. A new snapshot replaces an unprocessed one (the newest list is all that matters, so
//! nothing is lost and memory stays bounded whatever the publish rate). The worker drains it in
//! that order and awaits the handler for each item; the reading task never waits for it.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::Utc;
use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{HandlerOutcome, MatchUpdate, RejectedPayload, Shared, SyncTarget};
use crate::status::StatusCell;

/// How many rejected payloads may wait for `on_rejected` (each at most 64 KiB).
const REJECTED_QUEUE: usize = 16;

#[derive(Debug, Default)]
struct Pending {
    /// Merged connection events: `Some(true)` if any of them was a reconnect.
    connected: Option<bool>,
    rejected: VecDeque<RejectedPayload>,
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

    fn take(&self) -> Option<Work> {
        let mut p = self.lock();
        if let Some(reconnect) = p.connected.take() {
            return Some(Work::Connected(reconnect));
        }
        if let Some(payload) = p.rejected.pop_front() {
            return Some(Work::Rejected(payload));
        }
        p.slot.take().map(|(seq, update)| Work::Update(seq, update))
    }
}

/// The worker loop: drain the inbox, then sleep until woken or cancelled.
///
/// A handler call in progress is allowed to finish at shutdown (it may be in the middle of a
/// write); the loop stops before starting the next one.
pub(crate) async fn run(
    shared: Arc<Shared>,
    target: Arc<dyn SyncTarget>,
    cancel: CancellationToken,
) {
    loop {
        while let Some(work) = shared.inbox.take() {
            if cancel.is_cancelled() {
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
                Work::Update(seq, update) => {
                    let channel = update.channel.clone();
                    let outcome = match AssertUnwindSafe(target.sync(update)).catch_unwind().await {
                        Ok(outcome) => outcome,
                        Err(_) => HandlerOutcome::Rejected {
                            reason: "the sync handler panicked".into(),
                        },
                    };
                    record(&shared.status, seq, &channel, outcome);
                }
            }
        }
        // Cancel safety: both futures are cancel safe. `cancelled()` holds no state, and a
        // `Notified` dropped after being chosen by `notify_one` passes the permit on, so a
        // snapshot put in the slot meanwhile is picked up on the next round.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = shared.inbox.notify.notified() => {}
        }
    }
}

fn record(status: &StatusCell, seq: u64, channel: &str, outcome: HandlerOutcome) {
    let mut s = status.lock();
    let text = match outcome {
        HandlerOutcome::Applied { summary } => {
            s.messages_applied += 1;
            s.sync_count += 1;
            s.last_sync_time = Some(Utc::now());
            tracing::info!(channel, %summary, "applied match update");
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
