//! The durable outbox: work for the sinks, written in the same transaction as the state change
//! that causes it, so a crash can never apply a change and forget to tell a sink (or the
//! reverse).
//!
//! One row per (sink, key): a CalDAV event per match id, the whole phonebook under one key, the
//! latest snapshot for the forward sink. Enqueueing the same key again while it waits replaces
//! its payload and bumps its `generation`, so a sink that was down for an hour catches up with
//! the final state (in the order the work first arose) instead of replaying every step. A row is
//! deleted only when the sink finished it *and* its generation did not move meanwhile.
//!
//! `sink_items` remembers what each sink last wrote (remote name, ETag, content hash), so
//! writes are conditional and unchanged items are skipped.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use crate::store::{Store, StoreError};

/// Work to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWork {
    pub sink: &'static str,
    pub key: String,
    pub payload: Option<String>,
}

/// One waiting row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub key: String,
    pub payload: Option<String>,
    pub generation: i64,
    pub attempts: i64,
}

/// What a sink last wrote for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkItem {
    pub key: String,
    pub remote_name: String,
    pub etag: Option<String>,
    pub hash: String,
}

pub(crate) fn enqueue(tx: &rusqlite::Connection, work: &[NewWork]) -> Result<(), StoreError> {
    if work.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (sink, key, payload, created_at, due_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (sink, key) DO UPDATE SET payload = excluded.payload,
             generation = outbox.generation + 1,
             due_at = CASE WHEN outbox.attempts = 0 THEN excluded.due_at ELSE outbox.due_at END",
    )?;
    for w in work {
        stmt.execute(params![
            w.sink,
            w.key,
            w.payload,
            now.to_rfc3339(),
            now.timestamp_millis()
        ])?;
    }
    Ok(())
}

impl Store {
    /// Enqueues work outside a snapshot (a sink seeding itself, a periodic refresh).
    pub fn enqueue(&mut self, work: &[NewWork]) -> Result<(), StoreError> {
        crate::store::in_transaction(&mut self.conn, |tx| enqueue(tx, work))
    }

    /// Rows of `sink` that are due at `now`, oldest first.
    pub fn outbox_due(
        &self,
        sink: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, key, payload, generation, attempts FROM outbox
             WHERE sink = ?1 AND due_at <= ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![sink, now.timestamp_millis(), limit as i64], |r| {
            Ok(OutboxItem {
                id: r.get(0)?,
                key: r.get(1)?,
                payload: r.get(2)?,
                generation: r.get(3)?,
                attempts: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the next row of `sink` is due, if any.
    pub fn outbox_next_due(&self, sink: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms: Option<i64> = self.conn.query_row(
            "SELECT MIN(due_at) FROM outbox WHERE sink = ?1",
            [sink],
            |r| r.get(0),
        )?;
        Ok(ms.and_then(DateTime::from_timestamp_millis))
    }

    /// Waiting rows of `sink`.
    pub fn outbox_pending(&self, sink: &str) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM outbox WHERE sink = ?1", [sink], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// The row is done: deleted unless new work for its key arrived meanwhile.
    pub fn outbox_done(&mut self, id: i64, generation: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM outbox WHERE id = ?1 AND generation = ?2",
            params![id, generation],
        )?;
        Ok(())
    }

    /// The row failed: try again at `due`.
    pub fn outbox_retry(
        &mut self,
        id: i64,
        due: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, due_at = ?2, last_error = ?3 WHERE id = ?1",
            params![id, due.timestamp_millis(), error],
        )?;
        Ok(())
    }

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

    /// Whether `sink` was seeded with the whole state once (a sink configured after matches
    /// were stored must still receive them).
    pub fn sink_seeded(&self, sink: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seeded FROM sink_state WHERE sink = ?1",
                [sink],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0)
            != 0)
    }

    /// Binds remote resources found carrying our UIDs (`found`) to their keys, keeping our own
    /// record (ETag, hash) where the resource is still where we left it; then, the first time
    /// only, seeds `sink` with `seed`. What every DAV-style sink does when it starts.
    pub fn adopt_and_seed(
        &mut self,
        sink: &'static str,
        found: &[SinkItem],
        seed: &[NewWork],
    ) -> Result<(), StoreError> {
        for item in found {
            match self.sink_item(sink, &item.key)? {
                Some(mine) if mine.remote_name == item.remote_name => {}
                _ => self.put_sink_item(sink, item)?,
            }
        }
        if !self.sink_seeded(sink)? {
            self.seed_sink(sink, seed)?;
        }
        Ok(())
    }

    /// Seeds `sink` with `work` and remembers that it was, in one transaction.
    pub fn seed_sink(&mut self, sink: &str, work: &[NewWork]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        enqueue(&tx, work)?;
        tx.execute(
            "INSERT INTO sink_state (sink, seeded) VALUES (?1, 1)
             ON CONFLICT (sink) DO UPDATE SET seeded = 1",
            [sink],
        )?;
        tx.commit()?;
        Ok(())
    }
}
