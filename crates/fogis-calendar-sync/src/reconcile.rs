//! The planner: a pure function from (stored state, snapshot, now) to a [`Plan`].
//!
//! Snapshot semantics (docs/PROTOCOL.md section 4): every message is the referee's whole list.
//! - a match not in the state is **created**;
//! - a listed match whose content hash changed is **updated**; one that became `installd` is
//!   **cancelled** (its event stays, marked cancelled);
//! - a listed match that is gone from the list is **withdrawn** when it is still ahead (its event
//!   leaves the feed) and **archived** when it is over (its event stays: the match happened);
//! - a match that could not be read is **rejected** and its stored event is left alone;
//! - everything else is **unchanged**.
//!
//! Applying the plan and planning the same snapshot again gives a plan with no writes.

pub mod guard;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use fogis_pubsub::Snapshot;
use serde::{Deserialize, Serialize};

use crate::model::{normalize, MatchRecord};

/// Where a stored match stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// In the latest list.
    Listed,
    /// Gone from the list before it was played: not in the feed.
    Withdrawn,
    /// Gone from the list after it was played: still in the feed.
    Archived,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Listed => "listed",
            Presence::Withdrawn => "withdrawn",
            Presence::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "listed" => Some(Presence::Listed),
            "withdrawn" => Some(Presence::Withdrawn),
            "archived" => Some(Presence::Archived),
            _ => None,
        }
    }

    /// Whether the event is shown in calendars.
    pub fn in_feed(self) -> bool {
        self != Presence::Withdrawn
    }
}

/// One match as the state holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredMatch {
    pub record: MatchRecord,
    pub hash: String,
    pub presence: Presence,
    /// iCalendar SEQUENCE: bumped on every change of the event.
    pub sequence: u32,
    /// When the match first entered the state.
    pub created_at: DateTime<Utc>,
    /// When its event last changed.
    pub changed_at: DateTime<Utc>,
    /// What the last change was (shown on the status page: new, moved, cancelled, ...).
    pub last_action: Action,
}

/// What happens to one match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Cancel,
    Withdraw,
    Archive,
    Unchanged,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "created",
            Action::Update => "updated",
            Action::Cancel => "cancelled",
            Action::Withdraw => "withdrawn",
            Action::Archive => "archived",
            Action::Unchanged => "unchanged",
            Action::Reject => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Action::Create,
            Action::Update,
            Action::Cancel,
            Action::Withdraw,
            Action::Archive,
            Action::Unchanged,
            Action::Reject,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One planned step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub match_id: Option<i64>,
    pub action: Action,
    /// The state the match will have; `None` for unchanged and rejected.
    pub next: Option<StoredMatch>,
    /// Why, for rejections.
    pub reason: Option<String>,
}

/// Counts of a plan, as the HTTP API and the CLI report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub created: u32,
    pub updated: u32,
    pub cancelled: u32,
    pub withdrawn: u32,
    pub archived: u32,
    pub unchanged: u32,
    pub rejected: u32,
}

/// The plan for one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for ch in &self.changes {
            let slot = match ch.action {
                Action::Create => &mut c.created,
                Action::Update => &mut c.updated,
                Action::Cancel => &mut c.cancelled,
                Action::Withdraw => &mut c.withdrawn,
                Action::Archive => &mut c.archived,
                Action::Unchanged => &mut c.unchanged,
                Action::Reject => &mut c.rejected,
            };
            *slot += 1;
        }
        c
    }

    /// The changes that write state.
    pub fn writes(&self) -> impl Iterator<Item = &StoredMatch> {
        self.changes.iter().filter_map(|c| c.next.as_ref())
    }

    /// True when every match of a non-empty list was rejected: applying it would withdraw
    /// everything, so it must not be applied.
    pub fn all_rejected(&self) -> bool {
        let c = self.counts();
        c.rejected > 0 && c.created + c.updated + c.cancelled + c.unchanged == 0
    }
}

/// Plans `snapshot` against `state` at time `now`.
pub fn plan<M: std::borrow::Borrow<StoredMatch>>(
    state: &HashMap<i64, M>,
    snapshot: &Snapshot,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Plan {
    let mut changes = Vec::with_capacity(snapshot.matches.len());
    let mut seen: HashSet<i64> = HashSet::with_capacity(snapshot.matches.len());

    for rejected in &snapshot.rejected {
        if let Some(id) = rejected.match_id {
            seen.insert(id);
        }
        changes.push(Change {
            match_id: rejected.match_id,
            action: Action::Reject,
            next: None,
            reason: Some(rejected.reason.clone()),
        });
    }

    for incoming in &snapshot.matches {
        let id = incoming.match_id;
        if !seen.insert(id) {
            changes.push(Change {
                match_id: Some(id),
                action: Action::Reject,
                next: None,
                reason: Some(format!("match {id} appears more than once in the list")),
            });
            continue;
        }
        let stored: Option<&StoredMatch> = state.get(&id).map(std::borrow::Borrow::borrow);
        let record = match normalize(incoming, stored.map(|s| &s.record), tz) {
            Ok(r) => r,
            Err(reason) => {
                changes.push(Change {
                    match_id: Some(id),
                    action: Action::Reject,
                    next: None,
                    reason: Some(format!("match {id}: {reason}")),
                });
                continue;
            }
        };
        // A record equal to the stored one has its hash: skip serialising and hashing it
        // (most matches of most lists are unchanged; BENCHMARKS.md, steady lag).
        let hash = match stored {
            Some(old) if old.record == record => old.hash.clone(),
            _ => record.content_hash(),
        };
        let created_at = stored.map_or(now, |s| s.created_at);
        let (action, presence, sequence) = match stored {
            None => (Action::Create, Presence::Listed, 0),
            Some(old) if old.presence == Presence::Withdrawn => {
                (Action::Create, Presence::Listed, old.sequence + 1)
            }
            Some(old) if old.hash == hash => match old.presence {
                Presence::Listed => (Action::Unchanged, Presence::Listed, old.sequence),
                // Back in the list without a change: the event never left the feed.
                _ => (Action::Unchanged, Presence::Listed, old.sequence),
            },
            Some(old) if record.cancelled && !old.record.cancelled => {
                (Action::Cancel, Presence::Listed, old.sequence + 1)
            }
            Some(old) => (Action::Update, Presence::Listed, old.sequence + 1),
        };
        let needs_write = action != Action::Unchanged
            || stored.is_some_and(|old| old.presence != Presence::Listed);
        changes.push(Change {
            match_id: Some(id),
            action,
            next: needs_write.then(|| {
                let (changed_at, last_action) = match stored {
                    Some(old) if action == Action::Unchanged => (old.changed_at, old.last_action),
                    _ => (now, action),
                };
                StoredMatch {
                    record,
                    hash,
                    presence,
                    sequence,
                    created_at,
                    changed_at,
                    last_action,
                }
            }),
            reason: None,
        });
    }

    let mut gone: Vec<&StoredMatch> = state
        .values()
        .map(std::borrow::Borrow::borrow)
        .filter(|s: &&StoredMatch| {
            s.presence == Presence::Listed && !seen.contains(&s.record.match_id)
        })
        .collect();
    gone.sort_by_key(|s| s.record.match_id);
    for old in gone {
        let next = if old.record.start > now {
            StoredMatch {
                presence: Presence::Withdrawn,
                sequence: old.sequence + 1,
                changed_at: now,
                last_action: Action::Withdraw,
                ..old.clone()
            }
        } else {
            // The match was played: its event stays exactly as it was.
            StoredMatch {
                presence: Presence::Archived,
                ..old.clone()
            }
        };
        changes.push(Change {
            match_id: Some(old.record.match_id),
            action: if next.presence == Presence::Withdrawn {
                Action::Withdraw
            } else {
                Action::Archive
            },
            next: Some(next),
            reason: None,
        });
    }
    Plan { changes }
}

#[cfg(test)]
mod tests;
