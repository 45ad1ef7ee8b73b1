//! The SQLite state: the single owner of `state.db`.
//!
//! Tables: `meta` (schema version), `matches` (one row per match: the record as JSON, its hash,
//! presence, sequence, the raw match as last received), `processed_messages` (message ids already
//! applied, for duplicate detection; bounded), `sync_log` (what each message did; bounded) and
//! `quarantine` (raw inputs that were rejected, kept for inspection; bounded).
//!
//! WAL journal with `synchronous=NORMAL`: a committed transaction survives the process being
//! killed (it is in the WAL, which the OS holds); only a power loss may drop the last commits.
//! Every snapshot is applied in one transaction.

pub mod files;
pub mod holds;
pub mod ledger;

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::reconcile::{Action, Counts, Presence, StoredMatch};

/// The schema this code writes. Older files are migrated by `init_schema`.
pub const SCHEMA_VERSION: i64 = 1;
/// How many processed message ids are remembered for duplicate detection (at least; up to
/// [`PROCESSED_PRUNE_EVERY`] more between prunes).
pub const PROCESSED_KEEP: i64 = 10_000;
/// The processed ids are pruned when the newest id is a multiple of this.
pub const PROCESSED_PRUNE_EVERY: i64 = 64;
/// How many rejected inputs are kept.
pub const QUARANTINE_KEEP: i64 = 500;
/// Largest raw input kept in the quarantine (longer ones are cut).
pub const QUARANTINE_MAX_BYTES: usize = 256 * 1024;
/// How many sync log rows are kept (at least; up to [`LOG_PRUNE_EVERY`] more between prunes).
pub const LOG_KEEP: i64 = 500;
/// The sync log is pruned when the newest row id is a multiple of this.
pub const LOG_PRUNE_EVERY: i64 = 64;

/// Errors of the state database: these are fatal for the operation that met them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("state database holds schema version {0}, newer than this program ({SCHEMA_VERSION})")]
    TooNew(i64),
    #[error("state database row for match {match_id} is unreadable: {reason}")]
    BadRow { match_id: i64, reason: String },
}

/// One line of the sync log.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub at: DateTime<Utc>,
    pub origin: String,
    pub message_id: Option<String>,
    pub outcome: String,
    pub counts: Option<Counts>,
    pub detail: Option<String>,
}

/// One quarantined input.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub origin: String,
    pub reason: String,
    pub size: usize,
}

/// The state database.
#[derive(Debug)]
pub struct Store {
    pub(crate) conn: Connection,
}

impl Store {
    /// Opens (creating when missing) `dir/state.db`.
    /// Opens `dir/state.db`; the directory is made 0700 and the state files 0600, whatever the
    /// umask (see [`crate::store::files`]).
    pub fn open_dir(dir: &Path) -> Result<Store, StoreError> {
        let db = dir.join("state.db");
        let private = |path: &Path, r: std::io::Result<()>| {
            r.map_err(|source| StoreError::Dir {
                path: path.display().to_string(),
                source,
            })
        };
        private(dir, crate::store::files::private_dir(dir))?;
        private(&db, crate::store::files::private_file(&db))?;
        let store = Store::open(&db)?;
        for suffix in ["-wal", "-shm"] {
            let side = dir.join(format!("state.db{suffix}"));
            private(&side, crate::store::files::private_if_exists(&side))?;
        }
        Ok(store)
    }

    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store { conn };
        store.init_schema()?;
        store.init_held()?;
        Ok(store)
    }

    /// Creates the tables when missing; idempotent.
    fn init_schema(&self) -> Result<(), StoreError> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS matches (
                 match_id INTEGER PRIMARY KEY,
                 record TEXT NOT NULL,
                 hash TEXT NOT NULL,
                 presence TEXT NOT NULL,
                 sequence INTEGER NOT NULL,
                 start_utc INTEGER NOT NULL,
                 created_at TEXT NOT NULL,
                 changed_at TEXT NOT NULL,
                 last_action TEXT NOT NULL,
                 raw TEXT,
                 last_message_id TEXT
             );
             CREATE TABLE IF NOT EXISTS processed_messages (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 message_id TEXT NOT NULL UNIQUE,
                 applied_at TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS sync_log (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 at TEXT NOT NULL,
                 origin TEXT NOT NULL,
                 message_id TEXT,
                 outcome TEXT NOT NULL,
                 counts TEXT,
                 detail TEXT
             );
             CREATE TABLE IF NOT EXISTS outbox (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 sink TEXT NOT NULL,
                 key TEXT NOT NULL,
                 payload TEXT,
                 generation INTEGER NOT NULL DEFAULT 1,
                 created_at TEXT NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 due_at INTEGER NOT NULL,
                 last_error TEXT,
                 UNIQUE (sink, key)
             );
             CREATE TABLE IF NOT EXISTS sink_items (
                 sink TEXT NOT NULL,
                 key TEXT NOT NULL,
                 remote_name TEXT NOT NULL,
                 etag TEXT,
                 hash TEXT NOT NULL,
                 PRIMARY KEY (sink, key)
             );
             CREATE TABLE IF NOT EXISTS sink_state (
                 sink TEXT PRIMARY KEY,
                 seeded INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS sink_failures (
                 sink TEXT NOT NULL,
                 key TEXT NOT NULL,
                 attempts INTEGER NOT NULL,
                 due_at INTEGER NOT NULL,
                 last_error TEXT NOT NULL,
                 PRIMARY KEY (sink, key)
             );
             CREATE TABLE IF NOT EXISTS quarantine (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 at TEXT NOT NULL,
                 origin TEXT NOT NULL,
                 reason TEXT NOT NULL,
                 size INTEGER NOT NULL,
                 raw BLOB NOT NULL
             );",
        )?;
        let version: Option<i64> = self
            .conn
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match version {
            None => {
                self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(v) if v > SCHEMA_VERSION => return Err(StoreError::TooNew(v)),
            Some(_) => {}
        }
        // A file from before the state version: its matches count as one applied list.
        self.conn.execute(
            "INSERT OR IGNORE INTO meta (key, value)
             SELECT 'state_version', CASE WHEN EXISTS (SELECT 1 FROM matches) THEN '1' ELSE '0' END",
            [],
        )?;
        Ok(())
    }

    /// The persistent state version: bumped in the transaction of every change to the stored
    /// matches, by whichever process makes it. 0: no list was ever applied.
    pub fn state_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'state_version'), 0)",
            )?
            .query_row([], |r| r.get(0))?)
    }

    /// A value of the `meta` table.
    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        set_meta(&self.conn, key, value)
    }

    /// SQLite's `data_version`: changes when another connection (the CLI next to a running
    /// service) commits to the file.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?)
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Every stored match.
    pub fn load_matches(&self) -> Result<HashMap<i64, StoredMatch>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT match_id, record, hash, presence, sequence, created_at, changed_at, last_action
             FROM matches",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (match_id, record, hash, presence, sequence, created, changed, action) = row?;
            let bad = |reason: String| StoreError::BadRow { match_id, reason };
            let stored = StoredMatch {
                record: serde_json::from_str(&record).map_err(|e| bad(e.to_string()))?,
                hash,
                presence: Presence::parse(&presence)
                    .ok_or_else(|| bad(format!("unknown presence {presence:?}")))?,
                sequence: u32::try_from(sequence).map_err(|e| bad(e.to_string()))?,
                created_at: parse_time(&created).ok_or_else(|| bad("created_at".into()))?,
                changed_at: parse_time(&changed).ok_or_else(|| bad("changed_at".into()))?,
                last_action: Action::parse(&action)
                    .ok_or_else(|| bad(format!("unknown action {action:?}")))?,
            };
            out.insert(match_id, stored);
        }
        Ok(out)
    }

    /// Whether a message id was already applied.
    pub fn is_processed(&self, message_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM processed_messages WHERE message_id = ?1")?
            .query_row([message_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Writes the changes of one snapshot, marks its message id processed, logs it, and writes
    /// `extra`: in the transaction [`Store::begin`] opened, or in one of its own.
    pub fn commit(
        &mut self,
        writes: &[&StoredMatch],
        raw: &HashMap<i64, &serde_json::Value>,
        message_id: Option<&str>,
        log: &LogEntry,
        extra: &CommitExtra<'_>,
    ) -> Result<(), StoreError> {
        in_transaction(&mut self.conn, |tx| {
            if !writes.is_empty() {
                bump_state_version(tx)?;
            }
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO matches (match_id, record, hash, presence, sequence, start_utc,
                         created_at, changed_at, last_action, raw, last_message_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT(match_id) DO UPDATE SET record = excluded.record,
                         hash = excluded.hash, presence = excluded.presence,
                         sequence = excluded.sequence, start_utc = excluded.start_utc,
                         changed_at = excluded.changed_at, last_action = excluded.last_action,
                         raw = COALESCE(excluded.raw, matches.raw),
                         last_message_id = COALESCE(excluded.last_message_id, matches.last_message_id)",
                )?;
                for m in writes {
                    let id = m.record.match_id;
                    let record =
                        serde_json::to_string(&m.record).map_err(|e| StoreError::BadRow {
                            match_id: id,
                            reason: e.to_string(),
                        })?;
                    let raw_text = raw.get(&id).filter(|v| !v.is_null()).map(|v| v.to_string());
                    upsert.execute(params![
                        id,
                        record,
                        m.hash,
                        m.presence.as_str(),
                        m.sequence,
                        m.record.start.timestamp(),
                        m.created_at.to_rfc3339(),
                        m.changed_at.to_rfc3339(),
                        m.last_action.as_str(),
                        raw_text,
                        message_id,
                    ])?;
                }
            }
            if let Some(id) = message_id {
                let inserted = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO processed_messages (message_id, applied_at) VALUES (?1, ?2)",
                    )?
                    .execute(params![id, log.at.to_rfc3339()])?;
                // Pruned every PROCESSED_PRUNE_EVERY ids, not at each one: deleting the oldest id
                // dirties two more pages (its table and index leaves) in every commit otherwise.
                if inserted == 1 && tx.last_insert_rowid() % PROCESSED_PRUNE_EVERY == 0 {
                    tx.prepare_cached(
                        "DELETE FROM processed_messages WHERE seq <= (SELECT MAX(seq) FROM processed_messages) - ?1",
                    )?
                    .execute([PROCESSED_KEEP])?;
                }
            }
            insert_log(tx, log)?;
            for (key, value) in &extra.meta {
                set_meta(tx, key, value)?;
            }
            if let Some(r) = extra.resolve_holds {
                let (id, state) = r.hold.unzip();
                tx.prepare_cached(
                    "UPDATE held SET state = CASE WHEN id = ?1 THEN ?2 ELSE 'superseded' END,
                         resolved_at = ?3, resolved_by = ?4
                     WHERE state = 'pending' AND (?1 IS NOT NULL OR ?5 IS NULL OR origin = ?5)",
                )?
                .execute(params![
                    id,
                    state,
                    Utc::now().to_rfc3339(),
                    r.by,
                    r.only_from
                ])?;
            }
            Ok(())
        })
    }

    /// Starts the transaction one snapshot is applied in (`write`: `BEGIN IMMEDIATE`, taking
    /// the write lock now; otherwise a read transaction). The store's writing methods called
    /// until [`Store::end`] join it instead of committing on their own. A transaction left open
    /// by a panic in between is rolled back first.
    pub fn begin(&mut self, write: bool) -> Result<(), StoreError> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        let begin = if write { "BEGIN IMMEDIATE" } else { "BEGIN" };
        self.conn.prepare_cached(begin)?.execute([])?;
        Ok(())
    }

    /// Commits (`commit`) or rolls back the transaction [`Store::begin`] started. A failed
    /// commit is rolled back and reported.
    pub fn end(&mut self, commit: bool) -> Result<(), StoreError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        if commit {
            match self.conn.prepare_cached("COMMIT")?.execute([]) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    if !self.conn.is_autocommit() {
                        let _ = self.conn.execute_batch("ROLLBACK");
                    }
                    return Err(e.into());
                }
            }
        }
        self.conn.prepare_cached("ROLLBACK")?.execute([])?;
        Ok(())
    }

    /// Records a log line outside a snapshot (duplicates, rejections, status messages).
    pub fn log(&mut self, entry: &LogEntry) -> Result<(), StoreError> {
        in_transaction(&mut self.conn, |tx| insert_log(tx, entry))
    }

    /// The newest log lines, newest first.
    pub fn recent_log(&self, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, origin, message_id, outcome, counts, detail FROM sync_log
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(LogEntry {
                at: parse_time(&r.get::<_, String>(0)?).unwrap_or_default(),
                origin: r.get(1)?,
                message_id: r.get(2)?,
                outcome: r.get(3)?,
                counts: r
                    .get::<_, Option<String>>(4)?
                    .and_then(|c| serde_json::from_str(&c).ok()),
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keeps a rejected input for inspection (cut at [`QUARANTINE_MAX_BYTES`]); the table is
    /// bounded to the newest [`QUARANTINE_KEEP`] rows.
    pub fn quarantine(
        &mut self,
        origin: &str,
        reason: &str,
        raw: &[u8],
        size: usize,
    ) -> Result<(), StoreError> {
        let kept = &raw[..raw.len().min(QUARANTINE_MAX_BYTES)];
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO quarantine (at, origin, reason, size, raw) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![Utc::now().to_rfc3339(), origin, reason, size as i64, kept],
        )?;
        tx.execute(
            "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?1",
            [QUARANTINE_KEEP],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The quarantined inputs, newest first (without their bytes).
    pub fn quarantined(&self, limit: usize) -> Result<Vec<QuarantineEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at, origin, reason, size FROM quarantine ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(QuarantineEntry {
                id: r.get(0)?,
                at: parse_time(&r.get::<_, String>(1)?).unwrap_or_default(),
                origin: r.get(2)?,
                reason: r.get(3)?,
                size: r.get::<_, i64>(4)? as usize,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The bytes of one quarantined input.
    pub fn quarantined_raw(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT raw FROM quarantine WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The raw match as last received.
    pub fn raw_match(&self, match_id: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT raw FROM matches WHERE match_id = ?1",
                [match_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }
}

/// What else a snapshot's transaction writes besides its matches, its id and its log line.
#[derive(Debug, Default)]
pub struct CommitExtra<'a> {
    /// `meta` rows to set.
    pub meta: Vec<(&'a str, String)>,
    /// Resolve every pending hold so (a normal list supersedes them).
    pub resolve_holds: Option<crate::store::holds::Resolution<'a>>,
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// Bumps the persistent state version: every transaction that changes the stored matches
/// calls it, so every reader (this process or another) can tell the state moved on.
pub(crate) fn bump_state_version(tx: &Connection) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('state_version', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
    )?
    .execute([])?;
    Ok(())
}

/// Runs `f` in the transaction [`Store::begin`] opened, or in one of its own when none is open.
pub(crate) fn in_transaction<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if !conn.is_autocommit() {
        return f(conn);
    }
    let tx = conn.transaction()?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

fn insert_log(tx: &Connection, e: &LogEntry) -> Result<(), StoreError> {
    let counts = e
        .counts
        .as_ref()
        .and_then(|c| serde_json::to_string(c).ok());
    tx.prepare_cached(
        "INSERT INTO sync_log (at, origin, message_id, outcome, counts, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        e.at.to_rfc3339(),
        e.origin,
        e.message_id,
        e.outcome,
        counts,
        e.detail
    ])?;
    // Pruned every LOG_PRUNE_EVERY rows, like the processed ids: one page less per commit.
    if tx.last_insert_rowid() % LOG_PRUNE_EVERY == 0 {
        tx.prepare_cached("DELETE FROM sync_log WHERE id <= (SELECT MAX(id) FROM sync_log) - ?1")?
            .execute([LOG_KEEP])?;
    }
    Ok(())
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests;
