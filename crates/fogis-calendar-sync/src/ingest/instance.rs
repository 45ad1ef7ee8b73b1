//! This state's identity, and the stream's consumer group that follows from it.
//!
//! Every instance keeps its own state (its `DATA_DIR`). Instances sharing a consumer group
//! would each be handed a different part of the stream's entries, and each state would then
//! follow a different subset of the lists: feeds that diverge, and sinks written from both. So
//! the group defaults to one per state, `calendar-sync-<state id>`, with the id made once and
//! kept in the state itself: a restart (or a new container on the same volume) finds its group
//! and its pending entries again, and a second instance with a state of its own gets a group of
//! its own and every list (fan-out).

use crate::engine::Engine;
use crate::store::StoreError;

/// The `meta` key of the state's id.
pub const STATE_ID_KEY: &str = "state_id";

/// The state's id: 12 hex digits, made at the first call and kept. Blocking (SQLite).
pub fn state_id(engine: &Engine) -> Result<String, StoreError> {
    let fresh = uuid::Uuid::new_v4().simple().to_string();
    engine.with_store(|s| s.meta_or_insert(STATE_ID_KEY, &fresh[..12]))
}

/// The consumer group of the state with id `state_id`.
pub fn default_group(state_id: &str) -> String {
    format!("calendar-sync-{state_id}")
}
