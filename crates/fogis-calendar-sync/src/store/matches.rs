//! The stored matches, the processed message ids, and the one transaction a snapshot commits
//! in.

use super::log::insert_log;
use super::*;

/// What else a snapshot's transaction writes besides its matches, its id and its log line.
#[derive(Debug, Default)]
pub struct CommitExtra<'a> {
    /// `meta` rows to set.
    pub meta: Vec<(&'a str, String)>,
    /// Resolve every pending hold so (a normal list supersedes them).
    pub resolve_holds: Option<crate::store::holds::Resolution<'a>>,
}

impl Store {
    /// Every stored match, each passed through `prepare` as it is read (so that what it frees,
    /// such as copies of shared people, is freed before the next row is read).
    pub fn load_matches(
        &self,
        mut prepare: impl FnMut(&mut StoredMatch),
    ) -> Result<HashMap<i64, StoredMatch>, StoreError> {
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
            let mut stored = StoredMatch {
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
            prepare(&mut stored);
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
