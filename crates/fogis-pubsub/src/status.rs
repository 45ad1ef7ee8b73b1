//! What the subscriber knows about itself: connection state, counters, the last processing
//! status and alert, and a short history of messages for a status page.
//!
//! Nothing here holds text from a message: a status or alert is kept as a summary of known
//! values ([`StatusSummary`], [`AlertSummary`]), every value this crate does not know reads
//! `other`, and history outcomes are fixed texts. A processor's free text (an alert's
//! `message`, `details`) may quote what it failed on, names and phone numbers included; it is
//! logged only at debug level, masked, and never stored.
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
    /// The last processing status, as known values only.
    pub last_status: Option<StatusSummary>,
    /// The last system alert, as known values only.
    pub last_alert: Option<AlertSummary>,
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

/// A processing status's `payload.status`: the values the processor sends, `other` for any
/// other (never echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingState {
    Started,
    Completed,
    Failed,
    Other,
}

impl ProcessingState {
    /// The state named by `text` (ASCII case ignored); `Other` for anything else.
    pub fn of(text: &str) -> ProcessingState {
        match text.to_ascii_lowercase().as_str() {
            "started" => ProcessingState::Started,
            "completed" => ProcessingState::Completed,
            "failed" => ProcessingState::Failed,
            _ => ProcessingState::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProcessingState::Started => "started",
            ProcessingState::Completed => "completed",
            ProcessingState::Failed => "failed",
            ProcessingState::Other => "other",
        }
    }
}

/// A system alert's `severity`, `other` for a value not listed (never echoed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
    Other,
}

impl AlertSeverity {
    /// The severity named by `text` (ASCII case ignored, `warn` is `warning`); `Other` for
    /// anything else.
    pub fn of(text: &str) -> AlertSeverity {
        match text.to_ascii_lowercase().as_str() {
            "debug" => AlertSeverity::Debug,
            "info" => AlertSeverity::Info,
            "warning" | "warn" => AlertSeverity::Warning,
            "error" => AlertSeverity::Error,
            "critical" => AlertSeverity::Critical,
            _ => AlertSeverity::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Debug => "debug",
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Error => "error",
            AlertSeverity::Critical => "critical",
            AlertSeverity::Other => "other",
        }
    }
}

/// A system alert's `alert_type`: the types the FOGIS processor is known to send, `other` for
/// any other (never echoed: a type is the sender's free text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The processor could not process the match list (`processing_error`).
    ProcessingError,
    Other,
}

impl AlertKind {
    /// The type named by `text` (ASCII case ignored); `Other` for anything else.
    pub fn of(text: &str) -> AlertKind {
        match text.to_ascii_lowercase().as_str() {
            "processing_error" => AlertKind::ProcessingError,
            _ => AlertKind::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ProcessingError => "processing_error",
            AlertKind::Other => "other",
        }
    }
}

/// What the status keeps of a processing status: its state, counts and times, no text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusSummary {
    /// When this subscriber received it.
    pub received_at: DateTime<Utc>,
    /// The message's own `timestamp` (the processor's clock), when it had a readable one.
    pub sent_at: Option<DateTime<Utc>>,
    pub status: ProcessingState,
    /// `details.changes_detected`, when it is a flag, a count or `"true"`/`"false"`.
    pub changes_detected: Option<bool>,
    /// `details.matches_processed`, when it is a whole number.
    pub matches_processed: Option<u64>,
}

impl StatusSummary {
    pub fn of(update: &StatusUpdate, received_at: DateTime<Utc>) -> StatusSummary {
        let details = &update.details;
        StatusSummary {
            received_at,
            sent_at: update.meta.timestamp,
            status: ProcessingState::of(&update.status),
            changes_detected: changes_detected(details),
            matches_processed: details
                .get("matches_processed")
                .and_then(serde_json::Value::as_u64),
        }
    }
}

/// What the status keeps of a system alert: its type and severity as known values, its times,
/// and how long its text was; never the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertSummary {
    /// When this subscriber received it.
    pub received_at: DateTime<Utc>,
    /// The message's own `timestamp`, when it had a readable one.
    pub sent_at: Option<DateTime<Utc>>,
    pub alert_type: AlertKind,
    pub severity: AlertSeverity,
    /// Characters in its `message` (the text itself is never kept).
    pub message_chars: usize,
}

impl AlertSummary {
    pub fn of(alert: &SystemAlert, received_at: DateTime<Utc>) -> AlertSummary {
        AlertSummary {
            received_at,
            sent_at: alert.meta.timestamp,
            alert_type: AlertKind::of(&alert.alert_type),
            severity: AlertSeverity::of(&alert.severity),
            message_chars: alert.message.chars().count(),
        }
    }
}

/// `details.changes_detected` read as a flag: `true`/`false`, a count (positive is yes), or
/// the text `"true"`/`"false"`; `None` when absent or anything else.
pub(crate) fn changes_detected(details: &serde_json::Value) -> Option<bool> {
    use serde_json::Value;
    match details.get("changes_detected")? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|n| n > 0.0),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
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

    #[test]
    fn summaries_keep_known_values_and_no_text() {
        let foreign = "Anna Svensson 070-123 45 67 anna@example.se Storgatan 12";
        let meta = crate::envelope::Meta {
            message_id: Some(foreign.into()),
            timestamp: None,
            source: Some(foreign.into()),
            message_type: Some("system_alert".into()),
        };
        let alert = SystemAlert {
            meta: meta.clone(),
            alert_type: foreign.into(),
            severity: foreign.into(),
            message: foreign.into(),
            details: serde_json::json!({"error_message": foreign, "changes_detected": true}),
        };
        let now = Utc::now();
        let a = AlertSummary::of(&alert, now);
        assert_eq!(
            (a.alert_type, a.severity),
            (AlertKind::Other, AlertSeverity::Other)
        );
        assert_eq!(a.message_chars, foreign.chars().count());
        let update = StatusUpdate {
            meta,
            status: foreign.into(),
            details: serde_json::json!({"error_message": foreign, "matches_processed": 3,
                "changes_detected": "TRUE"}),
        };
        let u = StatusSummary::of(&update, now);
        assert_eq!(u.status, ProcessingState::Other);
        assert_eq!(
            (u.changes_detected, u.matches_processed),
            (Some(true), Some(3))
        );
        let shown = serde_json::to_string(&(a, u)).unwrap_or_default();
        for word in ["Anna", "123", "example", "Storgatan"] {
            assert!(!shown.contains(word), "{word} in {shown}");
        }
        assert!(shown.contains("\"other\""), "{shown}");

        let known = SystemAlert {
            alert_type: "Processing_Error".into(),
            severity: "WARN".into(),
            ..alert
        };
        let k = AlertSummary::of(&known, now);
        assert_eq!(k.alert_type.as_str(), "processing_error");
        assert_eq!(k.severity.as_str(), "warning");
        for (text, state) in [
            ("started", ProcessingState::Started),
            ("Completed", ProcessingState::Completed),
            ("failed", ProcessingState::Failed),
        ] {
            assert_eq!(ProcessingState::of(text), state);
        }
    }
}
