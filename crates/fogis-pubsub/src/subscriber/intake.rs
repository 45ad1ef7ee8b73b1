//! What happens to a received payload before the handler: size check, decoding, and recording
//! of what never reaches it (processing status, alerts, rejections). Shared by the pub/sub
//! reader, the worker (which decodes what the reader left raw) and the stream consumer; never
//! logs payload contents.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::conn::Message as PubSubMessage;
use super::inbox::{RawPayload, SlotItem};
use super::{MatchUpdate, RejectedPayload, Shared, REJECTED_RAW_LIMIT};
use crate::envelope::{Message, Snapshot, StatusUpdate};
use crate::error::RejectReason;
use crate::status::{changes_detected, AlertSummary, RecordKind, StatusCell, StatusSummary};

/// Payloads on match channels at least this large are handed to the worker undecoded (see
/// [`intake_raw`]); smaller ones (status messages, alerts, tiny lists, garbage) cost little to
/// decode and are decoded by the reader, so they are recorded as before and never wait in the
/// slot without being known.
pub(super) const RAW_MIN: usize = 4096;

/// What [`accept`] made of a payload.
pub(super) enum Accepted {
    /// A match snapshot, for the handler.
    Snapshot(Snapshot),
    /// A processing status or alert: recorded, done.
    Recorded,
    /// Too large or undecodable: recorded and queued for `on_rejected`, done.
    Rejected,
}

/// The history record of a payload: still to be made, or made by the reader when it took the
/// payload in without decoding it (then only its kind and outcome change).
#[derive(Debug, Clone, Copy)]
pub(super) enum Record {
    New,
    Made(u64),
}

impl Record {
    fn write(self, status: &StatusCell, channel: &str, kind: RecordKind, outcome: String) {
        match self {
            Record::New => {
                status.received(channel, kind, outcome);
            }
            Record::Made(seq) => StatusCell::set_record(&mut status.lock(), seq, kind, outcome),
        }
    }
}

/// Size-checks and decodes a payload; records everything that is not a snapshot.
pub(super) fn accept(
    shared: &Shared,
    channel: &str,
    payload: &[u8],
    received_at: DateTime<Utc>,
) -> Accepted {
    accept_as(shared, channel, payload, received_at, Record::New)
}

/// [`accept`], for a payload whose history record may exist already.
pub(super) fn accept_as(
    shared: &Shared,
    channel: &str,
    payload: &[u8],
    received_at: DateTime<Utc>,
    record: Record,
) -> Accepted {
    let limit = shared.config.max_message_bytes;
    let decoded = if payload.len() > limit {
        Err(RejectReason::TooLarge {
            size: payload.len(),
            limit,
        })
    } else {
        crate::decode(payload).map_err(RejectReason::from)
    };
    let status = &shared.status;
    match decoded {
        Ok(Message::Matches(snapshot)) => Accepted::Snapshot(snapshot),
        Ok(Message::Status(update)) => {
            let summary = StatusSummary::of(&update, received_at);
            let state = summary.status.as_str();
            tracing::info!(channel, status = state, "processing status");
            tracing::debug!(
                channel,
                details = %excerpt(&update.details.to_string()),
                "processing status details (masked excerpt)"
            );
            record.write(
                status,
                channel,
                RecordKind::Status,
                format!("status: {state}"),
            );
            let lost = cycle_status(shared, &update);
            {
                let mut s = status.lock();
                s.status_messages += 1;
                s.lost_publishes += u64::from(lost);
                s.last_status = Some(summary);
            }
            if lost {
                tracing::warn!(
                    channel,
                    "the processor reports changes but published no match list since its `started`: a lost publish"
                );
                shared.inbox.publish_lost(update);
            }
            Accepted::Recorded
        }
        Ok(Message::Alert(alert)) => {
            let summary = AlertSummary::of(&alert, received_at);
            let (kind, severity) = (summary.alert_type.as_str(), summary.severity.as_str());
            tracing::warn!(channel, severity, alert_type = kind, "system alert");
            tracing::debug!(
                channel,
                message = %excerpt(&alert.message),
                details = %excerpt(&alert.details.to_string()),
                "system alert text (masked excerpt)"
            );
            let outcome = format!("alert: {kind} ({severity})");
            record.write(status, channel, RecordKind::Alert, outcome);
            let mut s = status.lock();
            s.alert_messages += 1;
            s.last_alert = Some(summary);
            Accepted::Recorded
        }
        Err(reason) => {
            reject_as(shared, channel, reason, payload, received_at, record);
            Accepted::Rejected
        }
    }
}

/// No processor cycle seen on this connection (or the last one ended).
pub(super) const CYCLE_NONE: u8 = 0;
/// A `started` arrived, no match list since.
pub(super) const CYCLE_STARTED: u8 = 1;
/// A `started` arrived, and a match list after it.
pub(super) const CYCLE_LISTED: u8 = 2;

/// Follows the processor's cycle (PROTOCOL.md section 7: `started`, then, only when it detected
/// a change, the match list and `completed`). True when this status is a `completed` that
/// reports changes while no match list arrived since the `started`: the publish was lost.
/// Messages on one connection arrive in publish order, whatever channel they use, so the
/// reader's order is the processor's. A `completed` without a `started` seen (we connected in
/// between) proves nothing and reports nothing.
pub(super) fn cycle_status(shared: &Shared, update: &StatusUpdate) -> bool {
    match update.status.as_str() {
        "started" => {
            shared.cycle.store(CYCLE_STARTED, Ordering::Relaxed);
            false
        }
        "completed" => {
            let was = shared.cycle.swap(CYCLE_NONE, Ordering::Relaxed);
            was == CYCLE_STARTED && changes_detected(&update.details) == Some(true)
        }
        _ => false,
    }
}

/// A match payload arrived: the current cycle published its list.
pub(super) fn cycle_listed(shared: &Shared) {
    let _ = shared.cycle.compare_exchange(
        CYCLE_STARTED,
        CYCLE_LISTED,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}

/// A new connection: whatever cycle was under way is unknown now.
pub(super) fn cycle_reset(shared: &Shared) {
    shared.cycle.store(CYCLE_NONE, Ordering::Relaxed);
}

/// Longest excerpt of a processor's free text in a debug line.
pub(crate) const EXCERPT_CHARS: usize = 120;

/// A processor's free text (an alert's message, a status's details) as a debug line may show it:
/// cut to [`EXCERPT_CHARS`], every digit `#` (phone numbers, street numbers, postcodes) and
/// every word with an `@` in it `***@***`. Names cannot be told from other words, which is why
/// this goes to debug level only, and why the service's log writer masks every line again.
pub(crate) fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
            chars += 1;
        }
        if word.contains('@') {
            out.push_str("***@***");
            chars += 7;
        } else {
            for c in word.chars() {
                if chars >= EXCERPT_CHARS {
                    break;
                }
                out.push(if c.is_numeric() { '#' } else { c });
                chars += 1;
            }
        }
        if chars >= EXCERPT_CHARS {
            out.push_str("...");
            break;
        }
    }
    out
}

/// Records a payload that cannot be used and queues it for `on_rejected`.
pub(super) fn reject(
    shared: &Shared,
    channel: &str,
    reason: RejectReason,
    payload: &[u8],
    received_at: DateTime<Utc>,
) {
    reject_as(shared, channel, reason, payload, received_at, Record::New);
}

fn reject_as(
    shared: &Shared,
    channel: &str,
    reason: RejectReason,
    payload: &[u8],
    received_at: DateTime<Utc>,
    record: Record,
) {
    tracing::warn!(channel, size = payload.len(), "rejected message: {reason}");
    let status = &shared.status;
    record.write(status, channel, RecordKind::Rejected, reason.to_string());
    status.lock().messages_rejected += 1;
    shared.inbox.rejected(RejectedPayload {
        channel: channel.to_string(),
        error: reason,
        raw: payload[..payload.len().min(REJECTED_RAW_LIMIT)].to_vec(),
        size: payload.len(),
        received_at,
    });
}

/// The pub/sub path for a payload decoded by the reader (status channels, small payloads, and
/// match channels while a catch-up is pending, when the reader must know whether a snapshot
/// arrived): accept, then put a snapshot in the coalescing slot. True when a match snapshot was
/// handed off.
pub(super) fn intake(shared: &Shared, channel: &str, payload: &[u8]) -> bool {
    let received_at = Utc::now();
    let Accepted::Snapshot(snapshot) = accept(shared, channel, payload, received_at) else {
        return false;
    };
    cycle_listed(shared);
    let n = snapshot.matches.len();
    let seq = shared.status.received(
        channel,
        RecordKind::Matches,
        format!("queued ({n} matches)"),
    );
    let update = MatchUpdate {
        channel: channel.to_string(),
        snapshot,
        received_at,
        replay: channel.starts_with(super::CATCH_UP_PREFIX),
    };
    put(shared, SlotItem::Update(seq, update));
    true
}

/// The pub/sub fast path for a large payload on a match channel: no decoding here. The payload
/// goes into the coalescing slot as it is and the worker decodes it only if it is still the
/// newest when the handler is free, so the reading task keeps up with any burst Redis can send.
/// Too large is still rejected at once (that costs nothing).
pub(super) fn intake_raw(shared: &Shared, msg: PubSubMessage) {
    let (channel, size) = (msg.channel.as_str(), msg.payload.len());
    if size > shared.config.max_message_bytes {
        accept(shared, channel, &msg.payload, Utc::now());
        return;
    }
    tracing::debug!(channel, size, "received a message");
    // A payload this large on a match channel is a match list (see the inbox's docs).
    cycle_listed(shared);
    let seq = shared
        .status
        .received(channel, RecordKind::Matches, "queued".into());
    put(
        shared,
        SlotItem::Raw(RawPayload {
            seq,
            msg,
            received_at: Utc::now(),
        }),
    );
}

/// Puts an item in the slot and counts what it superseded as coalesced.
fn put(shared: &Shared, item: SlotItem) {
    let superseded = shared.inbox.put(item);
    if !superseded.is_empty() {
        let mut s = shared.status.lock();
        for seq in superseded {
            coalesced(&mut s, seq);
        }
    }
}

/// Counts one snapshot as coalesced: superseded before the handler got to it.
pub(super) fn coalesced(s: &mut crate::status::SubscriberStatus, seq: u64) {
    s.messages_coalesced += 1;
    let text = "coalesced: superseded by a newer snapshot".to_string();
    StatusCell::set_outcome(s, seq, text);
}

#[cfg(test)]
mod cycle_tests {
    use super::*;

    use serde_json::Value;

    #[test]
    fn changes_detected_may_be_a_flag_a_count_or_a_string() {
        let yes = [
            serde_json::json!({"changes_detected": true}),
            serde_json::json!({"changes_detected": 3}),
            serde_json::json!({"changes_detected": "True"}),
        ];
        let no = [
            serde_json::json!({"changes_detected": false}),
            serde_json::json!({"changes_detected": 0}),
            serde_json::json!({}),
            Value::Null,
        ];
        assert!(yes.iter().all(|d| changes_detected(d) == Some(true)));
        assert!(!no.iter().any(|d| changes_detected(d) == Some(true)));
    }

    #[test]
    fn an_excerpt_shows_no_digit_nor_address_and_is_short() {
        let text = "Ring Anna 070-123 45 67 eller anna@example.se, Storgatan 12 +46(0)70.123";
        assert_eq!(
            excerpt(text),
            "Ring Anna ###-### ## ## eller ***@*** Storgatan ## +##(#)##.###"
        );
        let long = excerpt(&"word ".repeat(100));
        assert!(long.ends_with("..."), "{long}");
        assert!(long.chars().count() <= EXCERPT_CHARS + 3, "{long}");
        assert_eq!(excerpt(""), "");
    }
}
