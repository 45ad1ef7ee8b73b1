//! Held snapshots, as stored: what the guard ([`crate::reconcile::guard`]) kept back, its
//! repeats, and how it was resolved.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use fogis_pubsub::Snapshot;

use crate::reconcile::guard::independent;
use crate::store::{Store, StoreError};

/// How many holds are kept (the oldest are dropped).
pub const HELD_KEEP: i64 = 200;

/// One held snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub origin: String,
    pub message_id: Option<String>,
    pub reason: String,
    /// `pending`, `applied` (by an operator), `confirmed` (by a list from FOGIS itself),
    /// `superseded` or `discarded`.
    pub state: String,
    /// The origin of the list or the operator that resolved it.
    pub resolved_by: Option<String>,
    /// How many later messages repeated the pending list (never evidence).
    pub repeats: u32,
    pub matches: usize,
}

/// How a commit resolves the pending holds: the one it applies becomes `applied` (an operator)
/// or `confirmed` (independent evidence), every other one `superseded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution<'a> {
    /// The origin of the list applied (`operator` for an operator).
    pub by: &'a str,
    /// The hold this list is, and the state it takes.
    pub hold: Option<(i64, &'a str)>,
    /// When no hold is resolved (`hold` is `None`), supersede only the holds from this origin.
    /// A pulled list that agrees with no hold leaves the holds of other sources pending: FOGIS
    /// disagreeing is no operator's word, and the hold stays visible until one gives it (or a
    /// later list from its source supersedes it). A list that confirms a hold supersedes all.
    pub only_from: Option<&'a str>,
}

/// What identifies "the same list": the sorted match ids.
pub fn fingerprint(snapshot: &Snapshot) -> String {
    let mut ids: Vec<i64> = snapshot.matches.iter().map(|m| m.match_id).collect();
    ids.sort_unstable();
    let text: Vec<String> = ids.iter().map(i64::to_string).collect();
    hex::encode(Sha256::digest(text.join(",").as_bytes()))
}

/// The held snapshot as a message the decoder reads back (flat form).
pub fn body(snapshot: &Snapshot) -> String {
    let matches: Vec<&serde_json::Value> = snapshot.matches.iter().map(|m| &m.raw).collect();
    serde_json::json!({
        "matches": matches,
        "metadata": {"message_id": snapshot.meta.message_id, "held": true},
    })
    .to_string()
}

impl Store {
    pub(crate) fn init_held(&self) -> Result<(), StoreError> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS held (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 at TEXT NOT NULL,
                 origin TEXT NOT NULL,
                 message_id TEXT,
                 reason TEXT NOT NULL,
                 fingerprint TEXT NOT NULL,
                 matches INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 state TEXT NOT NULL DEFAULT 'pending',
                 resolved_at TEXT
             );",
        )?;
        // Columns added later; files written before them are migrated here.
        for (column, decl) in [
            ("resolved_by", "TEXT"),
            ("repeats", "INTEGER NOT NULL DEFAULT 0"),
        ] {
            let present: bool = self.conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('held') WHERE name = ?1",
                [column],
                |r| r.get(0),
            )?;
            if !present {
                self.conn
                    .execute_batch(&format!("ALTER TABLE held ADD COLUMN {column} {decl}"))?;
            }
        }
        Ok(())
    }

    /// Keeps a snapshot that must not be applied yet; returns its id.
    pub fn hold(
        &mut self,
        origin: &str,
        snapshot: &Snapshot,
        reason: &str,
    ) -> Result<i64, StoreError> {
        crate::store::in_transaction(&mut self.conn, |tx| {
            tx.execute(
                "INSERT INTO held (at, origin, message_id, reason, fingerprint, matches, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    Utc::now().to_rfc3339(),
                    origin,
                    snapshot.meta.message_id,
                    reason,
                    fingerprint(snapshot),
                    snapshot.matches.len() as i64,
                    body(snapshot)
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "DELETE FROM held WHERE id <= (SELECT MAX(id) FROM held) - ?1",
                [HELD_KEEP],
            )?;
            Ok(id)
        })
    }

    /// The newest pending hold of the same list (the same set of match ids), with its origin.
    pub fn pending_hold_of(
        &self,
        snapshot: &Snapshot,
    ) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, origin FROM held WHERE state = 'pending' AND fingerprint = ?1
                 ORDER BY id DESC LIMIT 1",
                [fingerprint(snapshot)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// A pending hold that the list from `origin` confirms: the same non-empty list, held from
    /// a source independent of `origin` (see [`independent`]).
    pub fn confirming_hold(
        &self,
        snapshot: &Snapshot,
        origin: &str,
    ) -> Result<Option<i64>, StoreError> {
        if snapshot.matches.is_empty() {
            return Ok(None);
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, origin FROM held WHERE state = 'pending' AND fingerprint = ?1
             ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([fingerprint(snapshot)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (id, held_origin) = row?;
            if independent(origin, &held_origin) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Counts a repeat of a pending list: the hold stays as it is.
    pub fn count_repeat(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE held SET repeats = repeats + 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Marks one hold resolved.
    pub fn resolve_hold(&mut self, id: i64, state: &str, by: &str) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE held SET state = ?1, resolved_at = ?2, resolved_by = ?3
             WHERE id = ?4 AND state = 'pending'",
            params![state, Utc::now().to_rfc3339(), by, id],
        )? == 1)
    }

    /// The stored body of a pending hold.
    pub fn held_body(&self, id: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT body FROM held WHERE id = ?1 AND state = 'pending'",
                [id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The newest holds, pending first.
    pub fn holds(&self, limit: usize) -> Result<Vec<Held>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at, origin, message_id, reason, state, matches, resolved_by, repeats FROM held
             ORDER BY state = 'pending' DESC, id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(Held {
                id: r.get(0)?,
                at: DateTime::parse_from_rfc3339(&r.get::<_, String>(1)?)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_default(),
                origin: r.get(2)?,
                message_id: r.get(3)?,
                reason: r.get(4)?,
                state: r.get(5)?,
                matches: r.get::<_, i64>(6)? as usize,
                resolved_by: r.get(7)?,
                repeats: r.get::<_, i64>(8)?.clamp(0, i64::from(u32::MAX)) as u32,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn pending_holds(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM held WHERE state = 'pending'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Held lists stored by earlier versions are found again by this fingerprint: its text must
    /// not change. The value is `sha256("6186203,6186300,6186400")` as computed by CPython's
    /// `hashlib`.
    #[test]
    fn the_fingerprint_is_the_hex_sha256_of_the_sorted_ids() {
        let path = format!(
            "{}/../../fixtures/processor_match_updates.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let snapshot = match fogis_pubsub::decode(&std::fs::read(path).unwrap()).unwrap() {
            fogis_pubsub::Message::Matches(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            fingerprint(&snapshot),
            "7fdbbd27684c3f4cc78283a7a3420cab794c5b409b61a0be06c32df7c816cd0d"
        );
    }
}
