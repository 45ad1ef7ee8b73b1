//! Removing personal data from the state: `fogis-calendar-sync purge`.
//!
//! The state holds referees' and team contacts' names, phones, e-mails and addresses, in the
//! stored matches, their raw FOGIS JSON, the quarantine (rejected inputs, kept for inspection)
//! and held lists. Retention without a purge: the quarantine keeps the newest 500 inputs, held
//! lists the newest 200, the sync log 500 lines (no personal data), processed message ids 10,000;
//! a played match stays in the calendar, until the running service's retention
//! ([`crate::engine::retention`], `ARCHIVE_RETENTION_DAYS`) removes it once it is archived (no longer
//! listed) and older than the retention.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;

use crate::store::{bump_state_version, Store, StoreError};

/// What to purge.
#[derive(Debug, Clone, Copy, Default)]
pub struct PurgeOptions {
    /// Matches that kicked off before this instant (they leave the feed and every sink's next
    /// rebuild), with their raw JSON.
    pub matches_before: Option<DateTime<Utc>>,
    /// The quarantine and held lists (raw inputs with personal data).
    pub inputs: bool,
    /// Everything: matches, raw inputs, logs, the last list, sink ledgers.
    pub everything: bool,
}

/// What was removed.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PurgeReport {
    pub matches: usize,
    pub quarantined: usize,
    pub held: usize,
    pub log_lines: usize,
}

impl Store {
    /// Removes archived matches (played, no longer listed) that kicked off before `before`.
    pub fn prune_archived(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.delete_matches(
            "DELETE FROM matches WHERE presence = 'archived' AND start_utc < ?1",
            before.timestamp(),
        )
    }

    /// Keeps the `cap` archived matches that kicked off last, removes the others.
    pub fn cap_archived(&mut self, cap: usize) -> Result<usize, StoreError> {
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        self.delete_matches(
            "DELETE FROM matches WHERE presence = 'archived' AND match_id NOT IN (
                 SELECT match_id FROM matches WHERE presence = 'archived'
                 ORDER BY start_utc DESC, match_id DESC LIMIT ?1)",
            cap,
        )
    }

    /// Runs one `DELETE FROM matches` with one parameter and, when it removed any, bumps the
    /// state version in the same transaction, so a running service (whose view follows the
    /// version) and its sinks see the matches go.
    fn delete_matches(&mut self, sql: &str, param: i64) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let removed = tx.execute(sql, params![param])?;
        if removed > 0 {
            bump_state_version(&tx)?;
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Removes what `opts` names, in one transaction.
    pub fn purge(&mut self, opts: PurgeOptions) -> Result<PurgeReport, StoreError> {
        let tx = self.conn.transaction()?;
        let mut report = PurgeReport::default();
        if opts.everything {
            report.matches = tx.execute("DELETE FROM matches", [])?;
            report.quarantined = tx.execute("DELETE FROM quarantine", [])?;
            report.held = tx.execute("DELETE FROM held", [])?;
            report.log_lines = tx.execute("DELETE FROM sync_log", [])?;
            tx.execute_batch(
                "DELETE FROM processed_messages; DELETE FROM outbox; DELETE FROM sink_failures;
                 DELETE FROM sink_items; DELETE FROM sink_state;",
            )?;
        } else {
            if let Some(before) = opts.matches_before {
                report.matches = tx.execute(
                    "DELETE FROM matches WHERE start_utc < ?1",
                    params![before.timestamp()],
                )?;
            }
            if opts.inputs {
                report.quarantined = tx.execute("DELETE FROM quarantine", [])?;
                report.held = tx.execute("DELETE FROM held", [])?;
            }
        }
        if opts.everything || opts.inputs {
            // The last applied list (the forward sink's body) is a raw input too.
            tx.execute("DELETE FROM meta WHERE key = 'last_list'", [])?;
        }
        if report.matches > 0 {
            // Every reader (a running service, its sinks) sees that the state moved on.
            bump_state_version(&tx)?;
        }
        tx.commit()?;
        // Freed pages would still hold the bytes: rewrite the file without them, then empty the
        // write-ahead log, which holds old page images too.
        self.conn.execute_batch("VACUUM;")?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(report)
    }
}
