//! The fast path of [`decode`](super::decode) for match updates in the processor envelope and
//! the flat form: one typed pass that builds JSON values only for what a [`Snapshot`] keeps (the
//! matches, which stay available as [`Match::raw`](crate::Match::raw), and the metadata) and
//! skips everything else (`detailed_changes`, unknown fields) without building it.
//!
//! Measured on the 29 KB production message: the general path (`serde_json::Value` of the whole
//! message, then [`decode_value`](super::decode_value)) spends about 85 % of its time building
//! that value, a third of which is thrown away again; this path takes about half the time.
//!
//! It only ever answers for well-formed input of those forms: anything else (not UTF-8, not an
//! object, a field of an unexpected type, `null` where an object or list belongs, a duplicate
//! field, status and alert messages, a missing match list) gives `None`, and the general path
//! decodes the message and says what is wrong with it. So both paths give the same result for
//! every input; the tests check that on the fixtures and on mutations of them.

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{flat_meta, loose, parse_timestamp, snapshot, Message, MessageForm, Meta};

/// The top level of a message, as far as a match update needs it.
#[derive(Deserialize)]
struct Top {
    #[serde(default)]
    message_id: Option<Value>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default)]
    source: Option<Value>,
    #[serde(rename = "type", default)]
    message_type: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    schema_version: bool,
    #[serde(default, deserialize_with = "required")]
    payload: Option<Payload>,
    #[serde(default, deserialize_with = "required")]
    matches: Option<Vec<Value>>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// The processor envelope's `payload`.
#[derive(Deserialize)]
struct Payload {
    #[serde(default, deserialize_with = "required")]
    matches: Option<Vec<Value>>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    schema_version: bool,
    #[serde(default, deserialize_with = "present")]
    detailed_changes: bool,
}

/// True when the field is there, whatever its value (`null` included), without building it.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// A field that, when there, must be a `T` (`null` included: `null` is not an object or a list,
/// and is left to the general path to report).
fn required<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Decodes a match update in the envelope or the flat form; `None` for anything else.
pub(super) fn decode(bytes: &[u8]) -> Option<Message> {
    // Validating the whole text at once is faster than string by string.
    let text = std::str::from_utf8(bytes).ok()?;
    let top: Top = serde_json::from_str(text).ok()?;
    let meta = Meta {
        message_id: loose(top.message_id.as_ref()),
        timestamp: top
            .timestamp
            .as_ref()
            .and_then(Value::as_str)
            .and_then(parse_timestamp),
        source: loose(top.source.as_ref()),
        message_type: loose(top.message_type.as_ref()),
    };
    if let Some(payload) = top.payload {
        if matches!(
            meta.message_type.as_deref(),
            Some("processing_status" | "system_alert")
        ) {
            return None;
        }
        let form = if top.schema_version {
            MessageForm::Enhanced
        } else if payload.schema_version {
            MessageForm::ProcessorSchema2
        } else if payload.detailed_changes {
            MessageForm::ProcessorV31
        } else {
            MessageForm::ProcessorV30
        };
        let metadata = payload.metadata.unwrap_or(Value::Null);
        let items = payload.matches?;
        // A bound exceeded: the general path says which.
        return snapshot(meta, form, items, "payload.", None, metadata)
            .ok()
            .map(Message::Matches);
    }
    let items = top.matches?;
    let metadata = top.metadata.unwrap_or(Value::Null);
    let meta = flat_meta(meta, &metadata);
    let form = if top.schema_version {
        MessageForm::Enhanced
    } else {
        MessageForm::Flat
    };
    snapshot(meta, form, items, "", None, metadata)
        .ok()
        .map(Message::Matches)
}

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
