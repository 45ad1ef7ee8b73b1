//! The guard against emptying a calendar.
//!
//! A snapshot that is empty while the calendar holds future matches, or that would withdraw
//! more than `HOLD_WITHDRAW_SHARE` of them at once (and at least `HOLD_MIN_WITHDRAWALS`), is
//! not applied: it is kept ([`crate::store::holds`]) and reported (`/health`, `/held`, metrics, log).
//!
//! Repetition is no evidence: a released match-list-processor sent `payload.matches: []` on
//! every change cycle under a new `message_id` (PROTOCOL.md section 7), so "the same list again"
//! never confirms a hold, and a repeat of a pending list is folded into its hold. A held list is
//! applied only on independent evidence:
//! - an operator (`POST /held/{id}/apply`, `fogis-calendar-sync held apply ID`), the only way
//!   for an empty list;
//! - for a non-empty list, a list fetched from FOGIS itself (the pull source, origin
//!   [`PULL_ORIGIN`]) with the same set of match ids as a list held from another source, or the
//!   other way round (a processor list that agrees with a held pulled list).
//!
//! A normal snapshot applied meanwhile supersedes what is held.

use fogis_pubsub::Snapshot;

/// The origin of lists fetched from FOGIS itself (the fogis-api-client service).
pub const PULL_ORIGIN: &str = "pull";

/// Whether the list from `origin` is independent evidence for a list held from `held_origin`:
/// one of them comes from FOGIS itself, the other from somewhere else.
pub fn independent(origin: &str, held_origin: &str) -> bool {
    (origin == PULL_ORIGIN) != (held_origin == PULL_ORIGIN)
}

/// The guard's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldPolicy {
    /// Share of the future matches a snapshot may withdraw at once (0..=1).
    pub withdraw_share: f64,
    /// Withdrawals below this count are never held (one reassigned match is normal).
    pub min_withdrawals: u32,
}

impl Default for HoldPolicy {
    fn default() -> Self {
        HoldPolicy {
            withdraw_share: 0.5,
            min_withdrawals: 2,
        }
    }
}

impl HoldPolicy {
    /// Why a snapshot must be held, if it must.
    pub fn check(
        &self,
        snapshot: &Snapshot,
        future_listed: usize,
        withdrawals: u32,
    ) -> Option<String> {
        if snapshot.matches.is_empty() && snapshot.rejected.is_empty() && future_listed > 0 {
            return Some(format!(
                "the list is empty while the calendar holds {future_listed} future matches"
            ));
        }
        let share = withdrawals as f64 / future_listed.max(1) as f64;
        (withdrawals >= self.min_withdrawals && share > self.withdraw_share).then(|| {
            format!(
                "it would withdraw {withdrawals} of {future_listed} future matches at once (more than {:.0}%)",
                self.withdraw_share * 100.0
            )
        })
    }
}
