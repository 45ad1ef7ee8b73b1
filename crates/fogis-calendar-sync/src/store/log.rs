//! The sync log: what each message did (bounded).

use super::*;

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

impl Store {
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
}

pub(super) fn insert_log(tx: &Connection, e: &LogEntry) -> Result<(), StoreError> {
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
