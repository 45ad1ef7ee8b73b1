//! The quarantine: rejected inputs, kept (bounded, cut) for inspection.

use super::*;

/// One quarantined input.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub origin: String,
    pub reason: String,
    pub size: usize,
}

impl Store {
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
}
