//! What happens to a received payload before the handler: size check, decoding, and recording
//! of what never reaches it (processing status, alerts, rejections). Shared by the pub/sub
//! reader, the worker (which decodes what the reader left raw) and the stream consumer; never
//! logs payload contents.

use chrono::{DateTime, Utc};

use super::inbox::{RawPayload, SlotItem};
use super::{MatchUpdate, RejectedPayload, Shared, REJECTED_RAW_LIMIT};
use crate::envelope::{Message, Snapshot};
use crate::error::RejectReason;
use crate::status::{RecordKind, StatusCell};

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
            tracing::info!(channel, status = %update.status, "processing status");
            let outcome = format!("status: {}", update.status);
            record.write(status, channel, RecordKind::Status, outcome);
            let mut s = status.lock();
            s.status_messages += 1;
            s.last_status = Some(update);
            Accepted::Recorded
        }
        Ok(Message::Alert(alert)) => {
            tracing::warn!(
                channel,
                severity = %alert.severity,
                alert_type = %alert.alert_type,
                "system alert"
            );
            let outcome = format!("alert: {} ({})", alert.alert_type, alert.severity);
            record.write(status, channel, RecordKind::Alert, outcome);
            let mut s = status.lock();
            s.alert_messages += 1;
            s.last_alert = Some(alert);
            Accepted::Recorded
        }
        Err(reason) => {
            reject_as(shared, channel, reason, payload, received_at, record);
            Accepted::Rejected
        }
    }
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
    };
    put(shared, SlotItem::Update(seq, update));
    true
}

/// The pub/sub fast path for a large payload on a match channel: no decoding here. The payload
/// goes into the coalescing slot as it is and the worker decodes it only if it is still the
/// newest when the handler is free, so the reading task keeps up with any burst Redis can send.
/// Too large is still rejected at once (that costs nothing).
pub(super) fn intake_raw(shared: &Shared, msg: redis::Msg) {
    let (channel, size) = (msg.get_channel_name(), msg.get_payload_bytes().len());
    if size > shared.config.max_message_bytes {
        accept(shared, channel, msg.get_payload_bytes(), Utc::now());
        return;
    }
    tracing::debug!(channel, size, "received a message");
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
