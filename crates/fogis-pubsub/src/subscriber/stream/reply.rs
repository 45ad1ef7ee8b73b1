//! The stream commands' replies, parsed by hand from [`redis::Value`] (RESP2 and RESP3 shapes):
//! the redis crate's typed replies skip entries whose data was trimmed away, and those must be
//! acknowledged too or they stay pending forever.

use std::fmt;

use redis::Value;

/// One stream entry. `fields` is `None` when the entry is still pending but its data was
/// trimmed from the stream (`MAXLEN`) or deleted (`XDEL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl Entry {
    /// The value of the first field called `name`.
    pub(super) fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
}

/// A reply that does not have the documented shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Malformed(String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected reply from Redis: {}", self.0)
    }
}

fn malformed(what: &str, v: &Value) -> Malformed {
    let mut text = format!("{what}: {v:?}");
    text.truncate(200);
    Malformed(text)
}

/// A stream entry id, `<milliseconds>-<sequence>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EntryId(u64, u64);

impl EntryId {
    pub(super) fn parse(id: &str) -> Option<EntryId> {
        let (ms, seq) = id.split_once('-')?;
        Some(EntryId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// `[id, [field, value, ...]]`, or `[id, nil]` for a trimmed entry.
fn entry(v: Value) -> Result<Entry, Malformed> {
    let Value::Array(parts) = v else {
        return Err(malformed("stream entry", &v));
    };
    let mut parts = parts.into_iter();
    let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
        return Err(Malformed("stream entry without id and fields".into()));
    };
    let id = text(id).ok_or_else(|| Malformed("stream entry id".into()))?;
    let fields = match fields {
        Value::Nil => None,
        Value::Array(flat) => {
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                pairs.push((bytes(k).unwrap_or_default(), bytes(v).unwrap_or_default()));
            }
            Some(pairs)
        }
        Value::Map(map) => Some(
            map.into_iter()
                .map(|(k, v)| (bytes(k).unwrap_or_default(), bytes(v).unwrap_or_default()))
                .collect(),
        ),
        other => return Err(malformed("stream entry fields", &other)),
    };
    Ok(Entry { id, fields })
}

fn entries(v: Value) -> Result<Vec<Entry>, Malformed> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => items.into_iter().map(entry).collect(),
        other => Err(malformed("stream entries", &other)),
    }
}

/// `XREADGROUP` of one stream: nil on timeout, else `[[key, entries]]` (RESP2) or
/// `{key: entries}` (RESP3).
pub(super) fn read(v: Value) -> Result<Vec<Entry>, Malformed> {
    let mut all = Vec::new();
    match v {
        Value::Nil => {}
        Value::Array(streams) => {
            for stream in streams {
                let Value::Array(pair) = stream else {
                    return Err(malformed("XREADGROUP stream", &stream));
                };
                if let Some(list) = pair.into_iter().nth(1) {
                    all.extend(entries(list)?);
                }
            }
        }
        Value::Map(streams) => {
            for (_key, list) in streams {
                all.extend(entries(list)?);
            }
        }
        other => return Err(malformed("XREADGROUP", &other)),
    }
    Ok(all)
}

/// What `XAUTOCLAIM` returned.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Claimed {
    /// Where the next call starts; `0-0` when the whole pending list was scanned.
    pub(super) cursor: String,
    pub(super) entries: Vec<Entry>,
    /// Pending entries that no longer exist (Redis 7 drops them from the pending list itself).
    pub(super) deleted: usize,
}

/// `XAUTOCLAIM`: `[cursor, entries]` (Redis 6.2) or `[cursor, entries, deleted ids]` (7.0+).
pub(super) fn autoclaim(v: Value) -> Result<Claimed, Malformed> {
    let Value::Array(parts) = v else {
        return Err(malformed("XAUTOCLAIM", &v));
    };
    let mut parts = parts.into_iter();
    let cursor = parts
        .next()
        .and_then(text)
        .ok_or_else(|| Malformed("XAUTOCLAIM cursor".into()))?;
    // Redis 6.2 puts nil in place of a deleted entry; skip those (they stay unclaimed).
    let entries = match parts.next() {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter(|e| *e != Value::Nil)
            .map(entry)
            .collect::<Result<_, _>>()?,
        Some(Value::Nil) | None => Vec::new(),
        Some(other) => return Err(malformed("XAUTOCLAIM entries", &other)),
    };
    let deleted = match parts.next() {
        Some(Value::Array(ids)) => ids.len(),
        _ => 0,
    };
    Ok(Claimed {
        cursor,
        entries,
        deleted,
    })
}

/// The count of the summary form of `XPENDING key group`: `[count, min, max, consumers]`.
pub(super) fn pending_count(v: &Value) -> Option<u64> {
    match v {
        Value::Array(parts) => match parts.first()? {
            Value::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn raw_entry(id: &str, fields: &[(&str, &str)]) -> Value {
        let flat = fields
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect();
        Value::Array(vec![bulk(id), Value::Array(flat)])
    }

    #[test]
    fn reads_resp2_resp3_nil_and_trimmed_entries() {
        assert_eq!(read(Value::Nil), Ok(vec![]));
        let list = Value::Array(vec![
            raw_entry("1-0", &[("payload", "{}"), ("message_id", "m")]),
            Value::Array(vec![bulk("2-0"), Value::Nil]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("s"), list.clone()])]);
        let got = read(resp2).expect("parses");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].field("payload"), Some(&b"{}"[..]));
        assert_eq!(got[0].field("message_id"), Some(&b"m"[..]));
        assert_eq!(got[0].field("nope"), None);
        assert_eq!(got[1].fields, None);
        let resp3 = Value::Map(vec![(bulk("s"), list)]);
        assert_eq!(read(resp3).expect("parses").len(), 2);
        assert!(read(Value::Int(3)).is_err());
    }

    #[test]
    fn autoclaim_both_versions() {
        let v7 = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![raw_entry("5-1", &[("payload", "x")])]),
            Value::Array(vec![bulk("4-0")]),
        ]);
        let c = autoclaim(v7).expect("parses");
        assert_eq!(c.cursor, "0-0");
        assert_eq!(c.entries[0].id, "5-1");
        assert_eq!(c.deleted, 1);
        let v62 = Value::Array(vec![bulk("7-0"), Value::Array(vec![Value::Nil])]);
        let c = autoclaim(v62).expect("parses");
        assert_eq!(
            (c.cursor.as_str(), c.entries.len(), c.deleted),
            ("7-0", 0, 0)
        );
    }

    #[test]
    fn ids_order_numerically_and_pending_counts() {
        let a = EntryId::parse("999-5").expect("id");
        let b = EntryId::parse("1000-0").expect("id");
        assert!(a < b);
        assert_eq!(EntryId::parse("nope"), None);
        let summary = Value::Array(vec![Value::Int(3), bulk("1-0"), bulk("2-0"), Value::Nil]);
        assert_eq!(pending_count(&summary), Some(3));
        assert_eq!(pending_count(&Value::Nil), None);
    }
}
