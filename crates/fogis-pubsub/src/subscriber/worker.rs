//! The worker: takes the work from the [`Inbox`](super::inbox::Inbox) and awaits the handler,
//! one call at a time, whichever way the snapshot came.
//!
//! A pub/sub item the reader left raw is decoded here, and only if it is still the newest when
//! the handler is free; when it is not a snapshot after all, the fallbacks behind it take its
//! place (see the inbox's docs).
//!
//! A pub/sub snapshot whose handler answered [`HandlerOutcome::Retry`] is kept and put back
//! after a backoff (unless a newer snapshot arrived meanwhile, which supersedes it): pub/sub
//! cannot deliver it again. A raw one is kept raw, and decoded again then.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::Utc;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::inbox::{SlotItem, Work};
use super::intake::{accept_as, coalesced, Accepted, Record};
use super::{HandlerOutcome, MatchUpdate, Shared, SyncTarget};
use crate::status::StatusCell;

/// A pub/sub snapshot waiting to be tried again.
struct RetryLater {
    at: tokio::time::Instant,
    item: SlotItem,
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
                Work::PublishLost(status) => {
                    let hook = AssertUnwindSafe(target.on_publish_lost(status)).catch_unwind();
                    if hook.await.is_err() {
                        tracing::error!("on_publish_lost handler panicked");
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
                    let n = job.update.snapshot.matches.len();
                    tracing::info!(seq = job.seq, %channel, "📅 Received {n} matches via Redis stream");
                    let outcome = sync(&*target, job.update).await;
                    record(&shared.status, job.seq, &channel, outcome.clone());
                    // The consumer is gone only at shutdown; the entry then stays pending.
                    let _ = job.reply.send(outcome);
                }
                Work::Slot(newest, fallbacks) => {
                    let puts = shared.inbox.puts();
                    let Some((seq, update, kept)) = resolve(&shared, newest, fallbacks) else {
                        continue;
                    };
                    let channel = update.channel.clone();
                    let n = update.snapshot.matches.len();
                    // The integration README's line. An application that cares for the lag
                    // writes its log on a thread of its own (the service does).
                    tracing::info!(seq, %channel, "📅 Received {n} matches via Redis pub/sub");
                    let outcome = sync(&*target, update).await;
                    tracing::debug!(seq, "{n} matches from {channel}: {}", label(&outcome));
                    if matches!(outcome, HandlerOutcome::Retry { .. }) {
                        let delay = backoff.next_delay();
                        retry = Some(RetryLater {
                            at: tokio::time::Instant::now() + delay,
                            item: kept,
                        });
                    } else {
                        backoff.reset();
                        // Whatever waited for a retry is older than this one.
                        retry = None;
                    }
                    record(&shared.status, seq, &channel, outcome);
                    if burst(&shared, puts) {
                        // Cancel safety: a sleep holds nothing; the slot keeps what arrives.
                        tokio::select! {
                            biased;
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(config.burst_pause) => {}
                        }
                    }
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
                    if shared.inbox.put_back(r.item) {
                        tracing::info!("retrying a match update the handler could not apply");
                    }
                }
            }
        }
    }
}

/// The snapshot to hand over from the slot: the first of the newest item and its fallbacks
/// that is one. Those before it were recorded for what they were when decoded; those after it
/// are older and superseded: counted as coalesced, not decoded (see the inbox's docs). Returns
/// the history sequence number, the update, and what to keep for a retry.
fn resolve(
    shared: &Shared,
    newest: SlotItem,
    fallbacks: Vec<SlotItem>,
) -> Option<(u64, MatchUpdate, SlotItem)> {
    let mut items = std::iter::once(newest).chain(fallbacks);
    let chosen = items.by_ref().find_map(|item| decode(shared, item));
    let older: Vec<u64> = items.map(|item| item.seq()).collect();
    if !older.is_empty() {
        let mut s = shared.status.lock();
        for seq in older {
            coalesced(&mut s, seq);
        }
    }
    chosen
}

/// The item as a snapshot, decoding a raw one (a raw one that is not a snapshot is recorded as a
/// status, an alert or a rejection under its history record, and gives `None`).
fn decode(shared: &Shared, item: SlotItem) -> Option<(u64, MatchUpdate, SlotItem)> {
    match item {
        SlotItem::Update(seq, update) => {
            // Kept for a retry: pub/sub cannot deliver it again.
            let kept = SlotItem::Update(seq, update.clone());
            Some((seq, update, kept))
        }
        SlotItem::Raw(raw) => {
            let record = Record::Made(raw.seq);
            let (channel, payload) = (raw.channel(), raw.payload());
            match accept_as(shared, channel, payload, raw.received_at, record) {
                Accepted::Snapshot(snapshot) => {
                    let update = MatchUpdate {
                        channel: channel.to_string(),
                        snapshot,
                        received_at: raw.received_at,
                        // Raw payloads are live messages (catch-up copies are decoded at once).
                        replay: false,
                    };
                    Some((raw.seq, update, SlotItem::Raw(raw)))
                }
                Accepted::Recorded | Accepted::Rejected => None,
            }
        }
    }
}

/// True when a burst is arriving: enough pub/sub lists came in while the handler applied the
/// one taken when the slot had seen `puts` items (see [`crate::SubscriberConfig::burst_pause`]).
fn burst(shared: &Shared, puts: u64) -> bool {
    !shared.config.burst_pause.is_zero()
        && shared.inbox.puts().saturating_sub(puts) >= crate::config::BURST_ARRIVALS
}

/// One word for the log line of a handled snapshot.
fn label(outcome: &HandlerOutcome) -> &'static str {
    match outcome {
        HandlerOutcome::Applied { .. } => "applied",
        HandlerOutcome::Duplicate => "duplicate",
        HandlerOutcome::Stale { .. } => "stale",
        HandlerOutcome::Held { .. } => "held",
        HandlerOutcome::Rejected { .. } => "rejected",
        HandlerOutcome::Retry { .. } => "to be retried",
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
        HandlerOutcome::Stale { reason } => {
            s.messages_stale += 1;
            tracing::debug!(channel, %reason, "match update older than the one applied");
            format!("stale: {reason}")
        }
        HandlerOutcome::Held { reason } => {
            s.messages_held += 1;
            tracing::debug!(channel, %reason, "match update held by the handler");
            format!("held: {reason}")
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
