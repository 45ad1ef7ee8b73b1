//! The sinks' ledgers: what each sink last wrote, and which of its items failed.
//!
//! (The file keeps its historical name: until issue 15 it held a durable outbox the engine wrote
//! per-sink work into. Sinks now reconcile the state against these ledgers instead, so a commit
//! from any process reaches every sink, including one configured later; the `outbox` and
//! `sink_state` tables are left in the file, unused, so an older binary still opens it.)
//!
//! `sink_items` remembers what each sink last wrote (remote name, ETag, content hash), so
//! writes are conditional and unchanged items are skipped. `sink_failures` holds the items a
//! remote refused, each with its own backoff: the other items go on meanwhile.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use crate::store::{Store, StoreError};

/// What a sink last wrote for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkItem {
    pub key: String,
    pub remote_name: String,
    pub etag: Option<String>,
    pub hash: String,
}

/// One item whose last attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkFailure {
    pub key: String,
    pub attempts: u32,
    /// Not tried again before this.
    pub due: DateTime<Utc>,
    pub last_error: String,
}

impl Store {
    pub fn sink_item(&self, sink: &str, key: &str) -> Result<Option<SinkItem>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT key, remote_name, etag, hash FROM sink_items WHERE sink = ?1 AND key = ?2",
                params![sink, key],
                |r| {
                    Ok(SinkItem {
                        key: r.get(0)?,
                        remote_name: r.get(1)?,
                        etag: r.get(2)?,
                        hash: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn sink_items(&self, sink: &str) -> Result<Vec<SinkItem>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, remote_name, etag, hash FROM sink_items WHERE sink = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map([sink], |r| {
            Ok(SinkItem {
                key: r.get(0)?,
                remote_name: r.get(1)?,
                etag: r.get(2)?,
                hash: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn put_sink_item(&mut self, sink: &str, item: &SinkItem) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO sink_items (sink, key, remote_name, etag, hash) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (sink, key) DO UPDATE SET remote_name = excluded.remote_name,
                 etag = excluded.etag, hash = excluded.hash",
            params![sink, item.key, item.remote_name, item.etag, item.hash],
        )?;
        Ok(())
    }

    pub fn delete_sink_item(&mut self, sink: &str, key: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM sink_items WHERE sink = ?1 AND key = ?2",
            params![sink, key],
        )?;
        Ok(())
    }

    /// The raw match of every stored match that has one, as last received.
    pub fn raw_matches(&self) -> Result<std::collections::HashMap<i64, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT match_id, raw FROM matches WHERE raw IS NOT NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The items of `sink` whose last attempt failed.
    pub fn sink_failures(&self, sink: &str) -> Result<Vec<SinkFailure>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, attempts, due_at, last_error FROM sink_failures WHERE sink = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map([sink], |r| {
            Ok(SinkFailure {
                key: r.get(0)?,
                attempts: r.get::<_, i64>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
                due: DateTime::from_timestamp_millis(r.get(2)?).unwrap_or_default(),
                last_error: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that an item of `sink` failed again.
    pub fn put_sink_failure(&mut self, sink: &str, f: &SinkFailure) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO sink_failures (sink, key, attempts, due_at, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (sink, key) DO UPDATE SET attempts = excluded.attempts,
                 due_at = excluded.due_at, last_error = excluded.last_error",
            params![
                sink,
                f.key,
                i64::from(f.attempts),
                f.due.timestamp_millis(),
                f.last_error
            ],
        )?;
        Ok(())
    }

    /// The item succeeded (or is no longer wanted): forget its failures.
    pub fn clear_sink_failure(&mut self, sink: &str, key: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM sink_failures WHERE sink = ?1 AND key = ?2",
            params![sink, key],
        )?;
        Ok(())
    }
}
