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
mod log;
mod matches;
pub mod purge;
mod quarantine;
mod schema;

pub use log::LogEntry;
pub use matches::CommitExtra;
pub use quarantine::QuarantineEntry;

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

/// The state database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
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

    /// Sets `key` in the `meta` table unless it is set, and returns its value.
    pub fn meta_or_insert(&mut self, key: &str, value: &str) -> Result<String, StoreError> {
        // INSERT OR IGNORE: another process opening the same state at the same moment cannot
        // make a second value.
        self.conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
            [key, value],
        )?;
        Ok(self.get_meta(key)?.unwrap_or_default())
    }

    /// SQLite's `wal_autocheckpoint` of this connection (log pages between checkpoints).
    pub fn autocheckpoint(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?)
    }

    /// Sets this connection's `wal_autocheckpoint`.
    pub fn set_autocheckpoint(&self, pages: i64) -> Result<(), StoreError> {
        Ok(self.conn.pragma_update(None, "wal_autocheckpoint", pages)?)
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

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests;
