//! Stamping messages with the identity the subscriber side deduplicates on, and the
//! processor's timestamp format.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::error::StampError;

/// Formats a timestamp the way the processor does: RFC 3339, UTC, microseconds, `Z`
/// (`2025-05-05T06:30:00.123456Z`).
pub fn format_timestamp(timestamp: DateTime<Utc>) -> String {
    timestamp.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Sets `message_id` and `timestamp` on a message. Envelope forms carry them at the top level;
/// the flat form (`{"matches": [...], "metadata": {...}}`, no envelope) inside `metadata`, which
/// is created when missing.
pub fn stamp(
    value: &mut Value,
    message_id: &str,
    timestamp: DateTime<Utc>,
) -> Result<(), StampError> {
    let Value::Object(top) = value else {
        return Err(StampError::NotAnObject(kind(value)));
    };
    let flat = top.contains_key("matches")
        && !top.contains_key("payload")
        && !top.contains_key("message_id");
    let target = if flat {
        let metadata = top
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if metadata.is_null() {
            *metadata = Value::Object(Default::default());
        }
        match metadata {
            Value::Object(m) => m,
            other => return Err(StampError::MetadataNotAnObject(kind(other))),
        }
    } else {
        top
    };
    target.insert("message_id".into(), Value::String(message_id.to_string()));
    target.insert(
        "timestamp".into(),
        Value::String(format_timestamp(timestamp)),
    );
    Ok(())
}

/// [`stamp`] with a fresh UUID v4 and the current time; returns the new `message_id`.
pub fn stamp_fresh(value: &mut Value) -> Result<String, StampError> {
    let message_id = uuid::Uuid::new_v4().to_string();
    stamp(value, &message_id, Utc::now())?;
    Ok(message_id)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        Utc.timestamp_opt(1_746_426_600, 123_456_000)
            .single()
            .expect("valid")
    }

    #[test]
    fn envelope_is_stamped_at_the_top() {
        let mut v =
            json!({"message_id": "old", "type": "match_updates", "payload": {"matches": []}});
        stamp(&mut v, "new", at()).expect("object");
        assert_eq!(v["message_id"], "new");
        assert_eq!(v["timestamp"], "2025-05-05T06:30:00.123456Z");
        let decoded = crate::decode(v.to_string().as_bytes()).expect("decodes");
        assert_eq!(decoded.meta().message_id.as_deref(), Some("new"));
    }

    #[test]
    fn flat_form_is_stamped_in_metadata() {
        let mut v = json!({"matches": [], "metadata": {"has_changes": true}});
        stamp(&mut v, "m-1", at()).expect("object");
        assert!(v.get("message_id").is_none());
        assert_eq!(v["metadata"]["message_id"], "m-1");
        assert_eq!(v["metadata"]["has_changes"], true);
        let decoded = crate::decode(v.to_string().as_bytes()).expect("decodes");
        assert_eq!(decoded.meta().message_id.as_deref(), Some("m-1"));

        let mut bare = json!({"matches": []});
        stamp(&mut bare, "m-2", at()).expect("object");
        assert_eq!(bare["metadata"]["message_id"], "m-2");
    }

    #[test]
    fn fresh_ids_differ_and_non_objects_are_refused() {
        let mut a = json!({"payload": {"matches": []}});
        let mut b = a.clone();
        assert_ne!(stamp_fresh(&mut a).ok(), stamp_fresh(&mut b).ok());
        assert_eq!(
            stamp(&mut json!([1]), "x", at()),
            Err(StampError::NotAnObject("a list"))
        );
        assert_eq!(
            stamp(&mut json!({"matches": [], "metadata": 3}), "x", at()),
            Err(StampError::MetadataNotAnObject("a number"))
        );
    }
}
