//! Ingest: where lists come from. Redis pub/sub and streams ([`redis`]), the FOGIS pull source
//! ([`pull`]), and the decoding of one body into an applied snapshot ([`apply_bytes`]), shared by
//! all of them and by the HTTP API and the CLI.

pub mod group_owner;
pub mod instance;
pub mod metrics;
pub mod pull;
pub mod redis;
pub mod state_health;

use fogis_pubsub::{DecodeError, Message};

use crate::engine::{self, Applied, ApplyError, Engine};
use crate::mask;

/// Why an input was not applied.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Bad input: it was kept in the quarantine and changed nothing.
    #[error("{0}")]
    Rejected(String),
    /// A status or alert message: recorded, never applied.
    #[error("{0} message")]
    NotAMatchUpdate(&'static str),
    /// The state could not be written.
    #[error("{0}")]
    Fatal(String),
}

/// Decodes and applies one message; bad input is quarantined. Blocking (SQLite).
pub fn apply_bytes(engine: &Engine, bytes: &[u8], origin: &str) -> Result<Applied, IngestError> {
    let reject = |reason: String| {
        tracing::warn!(%origin, reason = %mask::mask_pii(&reason), "rejected input");
        engine.quarantine(origin, &reason, bytes);
        IngestError::Rejected(reason)
    };
    let message = match fogis_pubsub::decode(bytes) {
        Ok(m) => m,
        Err(DecodeError::Empty) => return Err(reject("empty body: post a match update".into())),
        Err(e) => return Err(reject(e.to_string())),
    };
    let snapshot = match message {
        Message::Matches(s) => s,
        Message::Status(_) => return Err(IngestError::NotAMatchUpdate("processing_status")),
        Message::Alert(_) => return Err(IngestError::NotAMatchUpdate("system_alert")),
    };
    match engine.apply(&snapshot, origin, false) {
        Ok(applied) => {
            log_applied(&applied, origin);
            Ok(applied)
        }
        Err(e @ (ApplyError::AllRejected(_) | ApplyError::TooManyMatches { .. })) => {
            Err(reject(e.to_string()))
        }
        Err(e @ ApplyError::NoSuchHold(_)) => Err(IngestError::Rejected(e.to_string())),
        Err(ApplyError::Store(e)) => Err(IngestError::Fatal(e.to_string())),
    }
}

fn log_applied(applied: &Applied, origin: &str) {
    let c = applied.counts;
    match applied.outcome {
        // The engine already said so, loudly.
        engine::Outcome::Held(_) | engine::Outcome::Stale => {}
        engine::Outcome::Duplicate => {
            tracing::info!(%origin, message_id = ?applied.message_id, "duplicate message, already applied");
        }
        engine::Outcome::Applied => tracing::info!(
            %origin,
            message_id = ?applied.message_id,
            created = c.created,
            updated = c.updated,
            cancelled = c.cancelled,
            withdrawn = c.withdrawn,
            unchanged = c.unchanged,
            rejected = c.rejected,
            "sync applied"
        ),
    }
}
