//! What happens to a received payload before the handler: size check, decoding, and recording
//! of what never reaches it (processing status, alerts, rejections). Shared by the pub/sub
//! reader and the stream consumer; never logs payload contents.

use chrono::{DateTime, Utc};

use super::{MatchUpdate, RejectedPayload, Shared, REJECTED_RAW_LIMIT};
use crate::envelope::{Message, Snapshot};
use crate::error::RejectReason;
use crate::status::RecordKind;

/// What [`accept`] made of a payload.
pub(super) enum Accepted {
    /// A match snapshot, for the handler.
    Snapshot(Snapshot),
    /// A processing status or alert: recorded, done.
    Recorded,
    /// Too large or undecodable: recorded and queued for `on_rejected`, done.
    Rejected,
}

/// Size-checks and decodes a payload; records everything that is not a snapshot.
pub(super) fn accept(
    shared: &Shared,
    channel: &str,
    payload: &[u8],
    received_at: DateTime<Utc>,
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
            status.received(
                channel,
                RecordKind::Status,
                format!("status: {}", update.status),
            );
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
            status.received(channel, RecordKind::Alert, outcome);
            let mut s = status.lock();
            s.alert_messages += 1;
            s.last_alert = Some(alert);
            Accepted::Recorded
        }
        Err(reason) => {
            reject(shared, channel, reason, payload, received_at);
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
    tracing::warn!(channel, size = payload.len(), "rejected message: {reason}");
    let status = &shared.status;
    status.received(channel, RecordKind::Rejected, reason.to_string());
    status.lock().messages_rejected += 1;
    shared.inbox.rejected(RejectedPayload {
        channel: channel.to_string(),
        error: reason,
        raw: payload[..payload.len().min(REJECTED_RAW_LIMIT)].to_vec(),
        size: payload.len(),
        received_at,
    });
}

/// The pub/sub path: accept, then put a snapshot in the coalescing slot. True when a match
/// snapshot was handed off.
pub(super) fn intake(shared: &Shared, channel: &str, payload: &[u8]) -> bool {
    let received_at = Utc::now();
    let Accepted::Snapshot(snapshot) = accept(shared, channel, payload, received_at) else {
        return false;
    };
    let status = &shared.status;
    let n = snapshot.matches.len();
    tracing::info!("received {n} matches on {channel}");
    let outcome = format!("queued ({n} matches)");
    let seq = status.received(channel, RecordKind::Matches, outcome);
    let update = MatchUpdate {
        channel: channel.to_string(),
        snapshot,
        received_at,
    };
    if let Some(replaced) = shared.inbox.put(seq, update) {
        let mut s = status.lock();
        s.messages_coalesced += 1;
        let text = "coalesced: superseded by a newer snapshot".to_string();
        crate::status::StatusCell::set_outcome(&mut s, replaced, text);
    }
    true
}
