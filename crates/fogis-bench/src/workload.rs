//! The messages the benchmarks send: the production fixture, made into a real change each time.
//!
//! [`Template`] keeps the fixture's bytes as they are (29 KB, pretty-printed like the processor
//! sends them) and splices three values in: a fresh `message_id`, the envelope `timestamp` (now,
//! to the microsecond: the service measures its lag from it, and skips lists older than one it
//! applied) and the first match's `tid`, moved by a minute per message, so that every message
//! changes one event. Building one is a few memcpys, so the publisher is never the bottleneck.
//!
//! [`list`] builds lists of any size for the growth benchmark and the micro-benchmarks.

use anyhow::{anyhow, Context};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{json, Value};

/// The production message form (`payload.schema_version: "2.0"`), as the fixture has it.
pub const PRODUCTION_FIXTURE: &str = "processor_match_updates.json";

/// The kick-off of the changed match in message 0 (a Tuesday evening in 2030); message `i`
/// moves it `i` minutes later.
pub const BASE_TID_MS: i64 = 1_904_400_000_000;

/// The fixtures directory of the workspace.
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A fixture's bytes.
pub fn fixture(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Which value a splice point takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    MessageId,
    Timestamp,
    Tid,
}

/// The production message with three splice points.
#[derive(Debug, Clone)]
pub struct Template {
    /// The text between the splice points (one more than `fields`).
    parts: Vec<Vec<u8>>,
    fields: Vec<Field>,
    /// The id of the match whose `tid` changes.
    pub changed_match: i64,
    /// Every match id of the message.
    pub match_ids: Vec<i64>,
}

impl Template {
    /// The production fixture.
    pub fn production() -> anyhow::Result<Template> {
        Template::from_bytes(&fixture(PRODUCTION_FIXTURE)?)
    }

    /// Splices at the string values of `message_id`, `timestamp` and the first `"tid"`.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Template> {
        let value: Value = serde_json::from_slice(bytes)?;
        let matches = value["payload"]["matches"]
            .as_array()
            .ok_or_else(|| anyhow!("the fixture has no payload.matches"))?;
        let match_ids: Vec<i64> = matches
            .iter()
            .filter_map(|m| m["matchid"].as_i64())
            .collect();
        let changed_match = *match_ids.first().ok_or_else(|| anyhow!("no matches"))?;
        let text = std::str::from_utf8(bytes)?;
        let mut points = Vec::new();
        for (field, key) in [
            (Field::MessageId, "\"message_id\": \""),
            (Field::Timestamp, "\"timestamp\": \""),
            (Field::Tid, "\"tid\": \""),
        ] {
            let start = text
                .find(key)
                .ok_or_else(|| anyhow!("no {key} in the fixture"))?
                + key.len();
            let len = text[start..]
                .find('"')
                .ok_or_else(|| anyhow!("unterminated {key}"))?;
            points.push((start, start + len, field));
        }
        points.sort_by_key(|p| p.0);
        let mut parts = Vec::new();
        let mut at = 0;
        for (start, end, _) in &points {
            parts.push(bytes[at..*start].to_vec());
            at = *end;
        }
        parts.push(bytes[at..].to_vec());
        Ok(Template {
            parts,
            fields: points.into_iter().map(|p| p.2).collect(),
            changed_match,
            match_ids,
        })
    }

    /// Message `i`, stamped `now`.
    pub fn message(&self, i: u64, now: DateTime<Utc>) -> Vec<u8> {
        let id = uuid::Uuid::new_v4().to_string();
        let ts = now.to_rfc3339_opts(SecondsFormat::Micros, true);
        let tid = format!("/Date({})/", tid_ms(i));
        let mut out = Vec::with_capacity(self.parts.iter().map(Vec::len).sum::<usize>() + 96);
        for (k, part) in self.parts.iter().enumerate() {
            out.extend_from_slice(part);
            match self.fields.get(k) {
                Some(Field::MessageId) => out.extend_from_slice(id.as_bytes()),
                Some(Field::Timestamp) => out.extend_from_slice(ts.as_bytes()),
                Some(Field::Tid) => out.extend_from_slice(tid.as_bytes()),
                None => {}
            }
        }
        out
    }
}

/// The changed match's kick-off in message `i`, epoch milliseconds.
pub fn tid_ms(i: u64) -> i64 {
    BASE_TID_MS + i as i64 * 60_000
}

/// The changed match's kick-off in message `i`.
pub fn kickoff(i: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(tid_ms(i))
        .single()
        .unwrap_or_default()
}

/// The changed match's `DTSTART` line in the feed (Europe/Stockholm) after message `i`.
pub fn dtstart(i: u64) -> String {
    let local = kickoff(i).with_timezone(&chrono_tz::Europe::Stockholm);
    format!(
        "DTSTART;TZID=Europe/Stockholm:{}",
        local.format("%Y%m%dT%H%M%S")
    )
}

/// A processor message with `n` distinct raw matches made from the fixture's first one; the
/// kick-offs are moved by `shift` minutes, so two lists with different shifts change every
/// match. Compact JSON, stamped with a fresh id and no timestamp.
///
/// Built as text (the match serialised once with placeholders, then spliced), so that a list
/// of 50,000 matches (about 260 MB) costs its bytes and not a `Value` tree ten times larger.
pub fn list(n: usize, shift: i64) -> anyhow::Result<Vec<u8>> {
    const ID: i64 = 987_654_321_123;
    const NR: &str = "@@matchnr@@";
    const TID: &str = "@@tid@@";
    let value: Value = serde_json::from_slice(&fixture(PRODUCTION_FIXTURE)?)?;
    let mut first = value["payload"]["matches"][0].clone();
    first["matchid"] = json!(ID);
    first["matchnr"] = json!(NR);
    first["tid"] = json!(TID);
    let text = serde_json::to_string(&first)?;
    // The text between the placeholders, and which placeholder follows each piece.
    let mut points: Vec<(usize, usize, u8)> = Vec::new();
    for (key, which) in [
        (format!("\"matchid\":{ID}"), 0u8),
        (format!("\"matchnr\":\"{NR}\""), 1),
        (format!("\"tid\":\"{TID}\""), 2),
    ] {
        let start = text
            .find(&key)
            .ok_or_else(|| anyhow!("no {key} in the serialised match"))?;
        points.push((start, start + key.len(), which));
    }
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut at = 0;
    for (start, end, _) in &points {
        pieces.push(&text[at..*start]);
        at = *end;
    }
    let tail = &text[at..];
    let head = format!(
        "{{\"message_id\":\"{}\",\"type\":\"match_updates\",\"source\":\"fogis-bench\",\"payload\":{{\"matches\":[",
        uuid::Uuid::new_v4()
    );
    let end = "],\"schema_version\":\"2.0\",\"metadata\":{\"has_changes\":true}}}";
    let mut out = Vec::with_capacity(head.len() + end.len() + n * (text.len() + 1));
    out.extend_from_slice(head.as_bytes());
    for k in 0..n {
        if k > 0 {
            out.push(b',');
        }
        let id = 7_000_000 + k as i64;
        let tid = BASE_TID_MS + (k as i64 * 90 + shift) * 60_000;
        for (piece, (_, _, which)) in pieces.iter().zip(&points) {
            out.extend_from_slice(piece.as_bytes());
            let field = match which {
                0 => format!("\"matchid\":{id}"),
                1 => format!("\"matchnr\":\"{id:09}\""),
                _ => format!("\"tid\":\"/Date({tid})/\""),
            };
            out.extend_from_slice(field.as_bytes());
        }
        out.extend_from_slice(tail.as_bytes());
    }
    out.extend_from_slice(end.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_decodes_with_its_own_id_time_and_kickoff() -> anyhow::Result<()> {
        let t = Template::production()?;
        let now = Utc::now();
        let (a, b) = (t.message(0, now), t.message(7, now));
        assert!((a.len() as i64 - fixture(PRODUCTION_FIXTURE)?.len() as i64).abs() < 64);
        let decode = |bytes: &[u8]| match fogis_pubsub::decode(bytes) {
            Ok(fogis_pubsub::Message::Matches(s)) => Ok(s),
            other => Err(anyhow!("not a snapshot: {other:?}")),
        };
        let (sa, sb) = (decode(&a)?, decode(&b)?);
        assert_ne!(sa.meta.message_id, sb.meta.message_id);
        assert_eq!(
            sb.meta.timestamp.map(|t| t.timestamp_micros()),
            Some(now.timestamp_micros())
        );
        let start = |s: &fogis_pubsub::Snapshot| s.matches[0].kickoff;
        assert_eq!(start(&sb), fogis_pubsub::Kickoff::Utc(kickoff(7)));
        assert_ne!(start(&sa), start(&sb));
        assert_eq!(sa.matches.len(), t.match_ids.len());
        let big = decode(&list(50, 3)?)?;
        assert_eq!(big.matches.len(), 50);
        assert!(big.rejected.is_empty());
        let ids: std::collections::BTreeSet<i64> = big.matches.iter().map(|m| m.match_id).collect();
        assert_eq!(ids.len(), 50, "every match has its own id");
        let other = decode(&list(50, 4)?)?;
        assert_eq!(other.matches[7].match_id, big.matches[7].match_id);
        assert_ne!(
            other.matches[7].kickoff, big.matches[7].kickoff,
            "another shift moves every kick-off"
        );
        Ok(())
    }
}
