//! Whether the state could be written the last time a list was applied.
//!
//! A list that cannot be committed (SQLite busy past its timeout because another process holds
//! the write lock, a full disk, an I/O error, a panic while applying) is not bad input: it is
//! kept and tried again (the stream entry stays pending, the pub/sub list stays in the
//! subscriber's slot, an HTTP caller is told 503 with `Retry-After`). This cell is how `/health`
//! and `/metrics` say so while it lasts: set by the first failure, cleared by the next commit.
//!
//! A `std::sync::Mutex`: every critical section is a few field updates, never held across an
//! `.await` or any I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The `Retry-After` an HTTP caller is given when the state cannot be written, in seconds: the
/// store's busy timeout, the time a held write lock is waited for on every attempt.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// An episode of failed writes, from the first failure to the next commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failing {
    pub since: DateTime<Utc>,
    /// Attempts that failed since `since` (every retry of every waiting list counts).
    pub failed_attempts: u64,
    /// The last error, as the store said it (no payload contents).
    pub last_error: String,
    /// Where the last failed list came from (`redis:<channel>`, `http`).
    pub last_origin: String,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct StateHealth {
    failing: Mutex<Option<Failing>>,
    /// Failed attempts since start, over all episodes.
    failures: AtomicU64,
}

impl StateHealth {
    fn lock(&self) -> MutexGuard<'_, Option<Failing>> {
        // Plain data: a panic elsewhere cannot leave it inconsistent.
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A list from `origin` could not be committed.
    pub fn failed(&self, origin: &str, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut failing = self.lock();
        let episode = failing.get_or_insert_with(|| Failing {
            since: Utc::now(),
            failed_attempts: 0,
            last_error: String::new(),
            last_origin: String::new(),
        });
        episode.failed_attempts += 1;
        episode.last_error = error.to_string();
        episode.last_origin = origin.to_string();
    }

    /// A list was committed (or found to be a duplicate): the state is writable again.
    pub fn recovered(&self) {
        let ended = self.lock().take();
        if let Some(episode) = ended {
            tracing::warn!(
                since = %episode.since,
                failed_attempts = episode.failed_attempts,
                "the state is writable again"
            );
        }
    }

    /// The episode in progress, if any.
    pub fn failing(&self) -> Option<Failing> {
        self.lock().clone()
    }

    /// Failed attempts since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_lasts_from_the_first_failure_to_the_next_commit() {
        let h = StateHealth::default();
        assert_eq!(h.failing(), None);
        h.failed("redis:a", "database is locked");
        h.failed("http", "disk full");
        let f = h.failing().unwrap();
        assert_eq!(f.failed_attempts, 2);
        assert_eq!(f.last_error, "disk full");
        assert_eq!(f.last_origin, "http");
        h.recovered();
        assert_eq!(h.failing(), None);
        h.failed("http", "x");
        assert_eq!(h.failing().unwrap().failed_attempts, 1);
        assert_eq!(h.failures(), 3);
    }
}
