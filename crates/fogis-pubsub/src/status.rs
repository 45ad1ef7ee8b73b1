//! What the subscriber knows about itself: connection state, counters, the last processing
//! status and alert, and a short history of messages for a status page.
//!
//! The reading tasks, the worker and the handle share one `StatusCell`. It is a
//! `std::sync::Mutex`, not a tokio one, on purpose: every critical section is a few field
//! updates with no `.await` inside, so a blocking lock is cheaper and cannot be held across a
//! suspension point. Readers take a clone ([`SubscriberStatus`]) and never block the reader for
//! longer than that copy.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::envelope::{StatusUpdate, SystemAlert};

/// How many message records the status keeps.
pub const RECENT_MESSAGES: usize = 20;

/// What kind of message a [`MessageRecord`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A match snapshot, handed to the sync handler.
    Matches,
    /// A processing status (recorded only).
    Status,
    /// A system alert (recorded only).
    Alert,
    /// A payload that could not be used (too large, undecodable).
    Rejected,
}

/// One line of the recent-messages history. Never holds payload contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRecord {
    /// Sequence number of the received message (1 = first since start).
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub channel: String,
    pub kind: RecordKind,
    /// What became of it: `queued (3 matches)`, `applied: ...`, `duplicate`, `coalesced`, the
    /// rejection reason, ...
    pub outcome: String,
}

/// A snapshot of the subscriber's state, cheap to take and serialisable for status endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SubscriberStatus {
    pub enabled: bool,
    /// True only while a live, subscribed connection exists. With pub/sub off (stream only):
    /// while the stream consumer is connected.
    pub connected: bool,
    /// True while every configured channel is subscribed (implies `connected`).
    pub subscribed: bool,
    /// Redis answered the last connection attempt, ping or probe.
    pub redis_available: bool,
    pub connected_since: Option<DateTime<Utc>>,
    pub disconnected_since: Option<DateTime<Utc>>,
    /// The match and status channels (not the private probe channel).
    pub channels: Vec<String>,
    /// Messages received on the match and status channels, catch-up snapshots, and stream
    /// entries handed to the handler or recorded (status, alerts, poison; not the ones
    /// superseded before the handler saw them).
    pub messages_received: u64,
    pub messages_received_by_channel: BTreeMap<String, u64>,
    /// Snapshots the handler applied.
    pub messages_applied: u64,
    /// Snapshots the handler had already seen.
    pub messages_duplicate: u64,
    /// Snapshots the handler skipped as older than the one it applied last.
    pub messages_stale: u64,
    /// Snapshots the handler held back until confirmed.
    pub messages_held: u64,
    /// Payloads too large or undecodable, and snapshots the handler rejected.
    pub messages_rejected: u64,
    /// Snapshots replaced by a newer one before the handler got to them.
    pub messages_coalesced: u64,
    /// Handler outcomes [`Retry`](crate::HandlerOutcome::Retry): the snapshot was tried again
    /// later (pub/sub) or left pending in the stream.
    pub messages_retried: u64,
    /// Catch-up snapshots (the latest key, read after a (re)subscription) handed to the handler.
    pub catch_ups: u64,
    /// Successful subscriptions after the first one.
    pub reconnect_count: u64,
    pub last_message_at: Option<DateTime<Utc>>,
    /// The last connection problem, with any password scrubbed.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// When the handler last applied a snapshot.
    pub last_sync_time: Option<DateTime<Utc>>,
    /// How many snapshots the handler applied (same as `messages_applied`; the name the
    /// deployed services use).
    pub sync_count: u64,
    pub last_status: Option<StatusUpdate>,
    pub last_alert: Option<SystemAlert>,
    pub status_messages: u64,
    pub alert_messages: u64,
    /// `processing_status` `completed` messages that reported changes with no match list
    /// received since their `started`: publishes lost on the way (see
    /// [`SyncTarget::on_publish_lost`](crate::SyncTarget::on_publish_lost)).
    pub lost_publishes: u64,
    /// The last [`RECENT_MESSAGES`] messages, oldest first.
    pub recent: VecDeque<MessageRecord>,
    /// The stream consumer, when one is configured.
    pub stream: Option<StreamStatus>,
}

/// The stream consumer's state and counters.
///
/// An entry counts in `delivered` every time Redis hands it to this consumer (a redelivery after
/// a reconnect, a retry or a claim counts again) and in `acked` once. `superseded`, `poison`
/// and the handled entries are the three ways to be acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamStatus {
    pub key: String,
    pub group: String,
    pub consumer: String,
    /// True while the consumer has a working connection and its group exists.
    pub connected: bool,
    /// The id of the last entry acknowledged.
    pub last_id: Option<String>,
    /// Entries read: new ones, own pending ones read again, claimed ones.
    pub delivered: u64,
    /// Entries acknowledged (`XACK` said they were pending).
    pub acked: u64,
    /// Entries acknowledged without reaching the handler because a newer snapshot was handled
    /// (coalescing), or because they had been trimmed from the stream meanwhile.
    pub superseded: u64,
    /// Entries taken over from idle consumers (`XAUTOCLAIM`).
    pub claimed: u64,
    /// Entries without a `payload`, too large or undecodable: handed to `on_rejected`, acked.
    pub poison: u64,
    /// Handler outcomes `Retry`: the entry stayed pending and is read again after a backoff.
    pub retried: u64,
    /// How often this consumer created the group (at start when missing, after `NOGROUP`).
    pub groups_created: u64,
    /// The group's pending entries (`XPENDING`), refreshed after every read.
    pub pending: Option<u64>,
    /// The last problem, with any password scrubbed.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// The shared, lock-protected status. See the module docs for why the lock is a std mutex.
#[derive(Debug, Default)]
pub(crate) struct StatusCell(Mutex<SubscriberStatus>);

impl StatusCell {
    pub(crate) fn new(status: SubscriberStatus) -> Self {
        StatusCell(Mutex::new(status))
    }

    /// Locks the status. A panic elsewhere while holding the lock leaves counters that are still
    /// meaningful, so poisoning is ignored rather than spread.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SubscriberStatus> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn snapshot(&self) -> SubscriberStatus {
        self.lock().clone()
    }

    /// Counts a received message and starts its history record; returns its sequence number.
    pub(crate) fn received(&self, channel: &str, kind: RecordKind, outcome: String) -> u64 {
        let now = Utc::now();
        let mut s = self.lock();
        s.messages_received += 1;
        *s.messages_received_by_channel
            .entry(channel.to_string())
            .or_default() += 1;
        s.last_message_at = Some(now);
        let seq = s.messages_received;
        if s.recent.len() == RECENT_MESSAGES {
            s.recent.pop_front();
        }
        s.recent.push_back(MessageRecord {
            seq,
            at: now,
            channel: channel.to_string(),
            kind,
            outcome,
        });
        seq
    }

    /// Rewrites the outcome of a history record, if it is still in the ring.
    pub(crate) fn set_outcome(s: &mut SubscriberStatus, seq: u64, outcome: String) {
        if let Some(record) = s.recent.iter_mut().rev().find(|r| r.seq == seq) {
            record.outcome = outcome;
        }
    }

    /// Rewrites the kind and outcome of a history record, if it is still in the ring (a raw
    /// payload found to be a status message, an alert or garbage when it was decoded).
    pub(crate) fn set_record(
        s: &mut SubscriberStatus,
        seq: u64,
        kind: RecordKind,
        outcome: String,
    ) {
        if let Some(record) = s.recent.iter_mut().rev().find(|r| r.seq == seq) {
            record.kind = kind;
            record.outcome = outcome;
        }
    }

    pub(crate) fn error(&self, message: String, available: bool) {
        let mut s = self.lock();
        s.last_error = Some(message);
        s.last_error_at = Some(Utc::now());
        s.redis_available = available;
    }

    pub(crate) fn subscribed(&self, reconnect: bool) {
        let mut s = self.lock();
        s.connected = true;
        s.subscribed = true;
        s.redis_available = true;
        s.connected_since = Some(Utc::now());
        s.disconnected_since = None;
        if reconnect {
            s.reconnect_count += 1;
        }
    }

    /// Updates the stream consumer's status, if there is one.
    pub(crate) fn stream(&self, update: impl FnOnce(&mut StreamStatus)) {
        if let Some(stream) = self.lock().stream.as_mut() {
            update(stream);
        }
    }

    pub(crate) fn disconnected(&self) {
        let mut s = self.lock();
        if s.connected || s.disconnected_since.is_none() {
            s.disconnected_since = Some(Utc::now());
        }
        s.connected = false;
        s.subscribed = false;
        s.connected_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_twenty_and_outcomes_can_be_updated() {
        let cell = StatusCell::default();
        let mut last = 0;
        for i in 0..25 {
            last = cell.received(&format!("c{i}"), RecordKind::Matches, "queued".into());
        }
        let mut s = cell.lock();
        assert_eq!(s.recent.len(), RECENT_MESSAGES);
        assert_eq!(s.recent.front().map(|r| r.seq), Some(6));
        StatusCell::set_outcome(&mut s, last, "applied".into());
        StatusCell::set_outcome(&mut s, 1, "gone".into());
        assert_eq!(s.recent.back().map(|r| r.outcome.as_str()), Some("applied"));
        assert_eq!(s.messages_received, 25);
        assert_eq!(s.messages_received_by_channel.get("c3"), Some(&1));
    }

    #[test]
    fn connection_state_transitions() {
        let cell = StatusCell::default();
        cell.disconnected();
        assert!(cell.snapshot().disconnected_since.is_some());
        cell.subscribed(false);
        cell.subscribed(true);
        let s = cell.snapshot();
        assert!(s.connected && s.subscribed && s.redis_available);
        assert_eq!(s.reconnect_count, 1);
        assert!(s.disconnected_since.is_none());
        cell.disconnected();
        let s = cell.snapshot();
        assert!(!s.connected && !s.subscribed && s.disconnected_since.is_some());
    }
}
