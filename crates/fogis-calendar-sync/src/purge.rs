//! Removing personal data from the state: `fogis-calendar-sync purge`.
//!
//! The state holds referees' and team contacts' names, phones, e-mails and addresses, in the
//! stored matches, their raw FOGIS JSON, the quarantine (rejected inputs, kept for inspection)
//! and held lists. Retention without a purge: the quarantine keeps the newest 500 inputs, held
//! lists the newest 200, the sync log 500 lines (no personal data), processed message ids 10,000;
//! matches are kept until purged, because a played match stays in the calendar.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;

use crate::store::{Store, StoreError};

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
            crate::store::bump_state_version(&tx)?;
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
