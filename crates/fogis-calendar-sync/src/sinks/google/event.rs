//! The Google Calendar event of one match, in the deployed service's shape.
//!
//! Summary, location, description and the popup reminder are the feed's ([`StateView::event`]);
//! times are local with the configured zone (`timeZone: Europe/Stockholm`); the private
//! extended properties are the deployed service's `{matchId, syncTag, calendarHash}`, with
//! `calendarHash` computed from the raw FOGIS match exactly as it did ([`super::hash`]), so an
//! event either program wrote is recognised by the other.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::hash::{calendar_hash, is_raw_fogis};
use crate::engine::view::StateView;
use crate::reconcile::StoredMatch;

/// The deployed service's tag on every event it writes.
pub const SYNC_TAG: &str = "FOGIS_CALENDAR_SYNC";
/// Title prefix of a cancelled match that is kept (the feed's, [`crate::render::title`]).
pub use crate::render::title::CANCELLED_PREFIX;

/// The event id we give a match's event: `fogis{matchid}` (base32hex: `a-v`, `0-9`, 5 or more
/// characters), so an insert that is repeated, or meets the tombstone of a deleted event,
/// answers 409 instead of making a second event.
pub fn event_id(match_id: i64) -> String {
    if match_id >= 0 {
        format!("fogis{match_id}")
    } else {
        format!("fogisn{}", match_id.unsigned_abs())
    }
}

/// What one match's event should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The fields we own, as sent (PATCH adds `status`, insert adds `id`).
    pub body: Value,
    /// SHA-256 of `body`: what the sink remembers to skip unchanged writes.
    pub hash: String,
    /// The `calendarHash` written into the event.
    pub calendar_hash: String,
    /// The title carries [`CANCELLED_PREFIX`].
    pub cancelled: bool,
}

/// The event of `m`. `raw` is the raw match as the state keeps it; without a raw FOGIS match
/// (only lossy forms were received) `calendarHash` is the state's own content hash.
pub fn desired(view: &StateView, m: &StoredMatch, raw: Option<&str>) -> Desired {
    let ev = view.event(m);
    let opts = view.feed_options();
    let raw: Option<Value> = raw.and_then(|r| serde_json::from_str(r).ok());
    let calendar_hash = match &raw {
        Some(r) if is_raw_fogis(r) => calendar_hash(r),
        _ => m.hash.clone(),
    };
    // The feed's title: a cancelled match's already starts with CANCELLED_PREFIX.
    let cancelled = m.record.cancelled;
    let summary = ev.summary.clone();
    let time = |t: chrono::DateTime<chrono::Utc>| {
        json!({
            "dateTime": t.with_timezone(&opts.tz).to_rfc3339(),
            "timeZone": opts.tz.name(),
        })
    };
    // No reminder for a match that will not be played.
    let overrides: Vec<Value> = opts
        .reminder_minutes
        .filter(|_| !cancelled)
        .map(|m| json!({"method": "popup", "minutes": m}))
        .into_iter()
        .collect();
    let body = json!({
        "summary": summary,
        "location": ev.location,
        "description": ev.description,
        "start": time(ev.start),
        "end": time(ev.end),
        "reminders": {"useDefault": false, "overrides": overrides},
        "extendedProperties": {"private": {
            "matchId": m.record.match_id.to_string(),
            "syncTag": SYNC_TAG,
            "calendarHash": calendar_hash,
        }},
    });
    let hash = hex::encode(Sha256::digest(body.to_string().as_bytes()));
    Desired {
        body,
        hash,
        calendar_hash,
        cancelled,
    }
}

/// The insert body: ours plus the id, without empty fields.
pub fn insert_body(d: &Desired, id: &str) -> Value {
    let mut body = d.body.clone();
    if let Some(map) = body.as_object_mut() {
        map.retain(|_, v| !v.is_null());
        map.insert("id".into(), Value::from(id));
    }
    body
}

/// The patch body: ours (a `null` location deletes it) and `status: confirmed`, which also
/// brings back an event that was deleted.
pub fn patch_body(d: &Desired) -> Value {
    let mut body = d.body.clone();
    body["status"] = Value::from("confirmed");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_base32hex() {
        for id in [event_id(6186203), event_id(0), event_id(-42)] {
            assert!(id.len() >= 5);
            assert!(
                id.chars().all(|c| matches!(c, 'a'..='v' | '0'..='9')),
                "{id}"
            );
        }
        assert_eq!(event_id(6186203), "fogis6186203");
        assert_ne!(event_id(42), event_id(-42));
    }
}
