//! The hand-off between the reading tasks and the worker.
//!
//! The [`Inbox`] holds at most: one pending "connected" event, a few rejected payloads, one
//! stream entry and the pub/sub **slot**. The worker drains it in that order and awaits the
//! handler for each item; the reading tasks never wait for it, except the stream consumer, which
//! must not acknowledge an entry before the handler returned and so waits for its
//! [`StreamJob`]'s reply.
//!
//! The stream entry goes before the slot: both exist at once only when the stream entry was read
//! before the pub/sub message arrived, so it is the older of the two, and the handler should see
//! the newer one last.
//!
//! # The slot
//!
//! A new pub/sub snapshot replaces an unprocessed one: the newest list is all that matters, so
//! nothing is lost and memory stays bounded whatever the publish rate. The reader puts large
//! payloads in **raw** (not decoded: decoding 30 KB takes longer than receiving it, and a reader
//! that decodes falls behind a burst), so it cannot be sure that such a payload is a snapshot.
//! A raw payload therefore does not throw away what it replaces at once: up to [`FALLBACKS`]
//! older items stay behind it, newest first, and the worker takes the first of them that
//! decodes to a snapshot if the newest is not one (garbage on a match channel). Items older than
//! the one handled, and items pushed out of the fallbacks, are counted as coalesced without
//! being decoded: payloads that large are snapshots (small ones, such as status messages, are
//! decoded by the reader and never wait here undecoded). A decoded snapshot replaces everything.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::{oneshot, Notify};

use super::{HandlerOutcome, MatchUpdate, RejectedPayload};
use crate::envelope::StatusUpdate;

/// How many rejected payloads may wait for `on_rejected` (each at most 64 KiB).
const REJECTED_QUEUE: usize = 16;

/// How many older items stay behind a raw one (see the module docs).
pub(crate) const FALLBACKS: usize = 4;

/// A stream entry for the handler; the outcome goes back to the stream consumer, which
/// acknowledges the entry (or not) accordingly.
#[derive(Debug)]
pub(crate) struct StreamJob {
    /// History sequence number.
    pub(crate) seq: u64,
    pub(crate) update: MatchUpdate,
    pub(crate) reply: oneshot::Sender<HandlerOutcome>,
}

/// A pub/sub message the reader did not decode: its payload is a slice of the buffer the
/// connection read (copying 30 KB per message is a cost the reader does not need).
#[derive(Debug, Clone)]
pub(crate) struct RawPayload {
    /// History sequence number.
    pub(crate) seq: u64,
    pub(crate) msg: super::conn::Message,
    pub(crate) received_at: DateTime<Utc>,
}

impl RawPayload {
    pub(crate) fn channel(&self) -> &str {
        &self.msg.channel
    }

    pub(crate) fn payload(&self) -> &[u8] {
        &self.msg.payload
    }
}

/// What waits in the slot.
#[derive(Debug, Clone)]
pub(crate) enum SlotItem {
    /// A decoded snapshot and its history sequence number.
    Update(u64, MatchUpdate),
    Raw(RawPayload),
}

impl SlotItem {
    pub(crate) fn seq(&self) -> u64 {
        match self {
            SlotItem::Update(seq, _) => *seq,
            SlotItem::Raw(raw) => raw.seq,
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    /// Merged connection events: `Some(true)` if any of them was a reconnect.
    connected: Option<bool>,
    /// The newest status that revealed a lost publish, not yet handed to the handler.
    publish_lost: Option<StatusUpdate>,
    rejected: VecDeque<RejectedPayload>,
    /// The stream entry waiting for the handler (the consumer hands over one at a time).
    stream: Option<StreamJob>,
    /// The newest unprocessed pub/sub item.
    newest: Option<SlotItem>,
    /// The items the newest (raw) one replaced, newest first; see the module docs.
    fallbacks: VecDeque<SlotItem>,
    /// Items ever put in the slot (the worker tells a burst by it).
    puts: u64,
}

/// Work waiting for the worker. A std mutex: held only to move values in and out.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pending: Mutex<Pending>,
    // `notify_one` stores a permit when the worker is busy, so a wake-up is never lost.
    pub(crate) notify: Notify,
}

/// One piece of work for the worker.
#[derive(Debug)]
pub(crate) enum Work {
    Connected(bool),
    PublishLost(StatusUpdate),
    Rejected(RejectedPayload),
    Stream(StreamJob),
    /// The newest pub/sub item, and the fallbacks behind it (newest first).
    Slot(SlotItem, Vec<SlotItem>),
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts an item in the slot; returns the sequence numbers of the items it superseded for
    /// good (to be counted as coalesced).
    pub(crate) fn put(&self, item: SlotItem) -> Vec<u64> {
        let mut superseded = Vec::new();
        {
            let mut p = self.lock();
            if let Some(previous) = p.newest.take() {
                match item {
                    SlotItem::Update(..) => {
                        superseded.push(previous.seq());
                        superseded.extend(p.fallbacks.drain(..).map(|f| f.seq()));
                    }
                    SlotItem::Raw(_) => {
                        p.fallbacks.push_front(previous);
                        if p.fallbacks.len() > FALLBACKS {
                            superseded.extend(p.fallbacks.pop_back().map(|f| f.seq()));
                        }
                    }
                }
            }
            p.newest = Some(item);
            p.puts += 1;
        }
        self.notify.notify_one();
        superseded
    }

    /// How many items were ever put in the slot.
    pub(crate) fn puts(&self) -> u64 {
        self.lock().puts
    }

    /// Puts an item back for another try, unless a newer one is waiting (which wins).
    pub(crate) fn put_back(&self, item: SlotItem) -> bool {
        {
            let mut p = self.lock();
            if p.newest.is_some() {
                return false;
            }
            p.newest = Some(item);
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

    /// Queues a lost-publish event (merged with one still waiting: the newest status wins).
    pub(crate) fn publish_lost(&self, status: StatusUpdate) {
        self.lock().publish_lost = Some(status);
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

    pub(crate) fn take(&self) -> Option<Work> {
        let mut p = self.lock();
        if let Some(reconnect) = p.connected.take() {
            return Some(Work::Connected(reconnect));
        }
        if let Some(status) = p.publish_lost.take() {
            return Some(Work::PublishLost(status));
        }
        if let Some(payload) = p.rejected.pop_front() {
            return Some(Work::Rejected(payload));
        }
        if let Some(job) = p.stream.take() {
            return Some(Work::Stream(job));
        }
        let newest = p.newest.take()?;
        Some(Work::Slot(newest, p.fallbacks.drain(..).collect()))
    }
}

#[cfg(test)]
#[path = "inbox_tests.rs"]
mod tests;
