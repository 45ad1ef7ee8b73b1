//! The tables, created when missing, and the schema version.

use super::*;

impl Store {
    /// Creates the tables when missing; idempotent.
    pub(super) fn init_schema(&self) -> Result<(), StoreError> {
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
}
