//! Adoption: binding the events already in the calendar to their matches (pure).
//!
//! The calendar is listed whole (every page, `showDeleted`); each event carrying a private
//! `matchId` belongs to that match. Per match one event is kept: the one already bound, else
//! a live one (ours by id first, else the most recently updated); the other live events are
//! duplicates to delete. What the sink knows of each binding is kept in `sink_items.hash` as a
//! [`Binding`].

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::event::{event_id, CANCELLED_PREFIX};
use crate::store::ledger::SinkItem;

/// What the sink knows of the event bound to a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// We wrote this body (hash), or found the event equal to it.
    Body(String),
    /// Found in the calendar, not compared yet: its `calendarHash` (or legacy `matchHash`)
    /// and whether its title carries the cancelled prefix.
    Adopted { hash: String, prefixed: bool },
    /// Found without any hash: compare by writing.
    Unknown,
    /// We deleted it (withdrawn, or cancelled with `GOOGLE_CANCELLED=delete`).
    Removed,
}

/// A [`State`] plus whether the event is deleted by someone else (a tombstone we did not make).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub state: State,
    pub deleted: bool,
}

impl Binding {
    pub fn encode(&self) -> String {
        let state = match &self.state {
            State::Body(h) => format!("body:{h}"),
            State::Adopted { hash, prefixed } => format!("adopted:{hash}:{}", u8::from(*prefixed)),
            State::Unknown => "unknown".into(),
            State::Removed => "removed".into(),
        };
        if self.deleted {
            format!("deleted:{state}")
        } else {
            state
        }
    }

    pub fn decode(s: &str) -> Binding {
        let (deleted, rest) = match s.strip_prefix("deleted:") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let state = if let Some(h) = rest.strip_prefix("body:") {
            State::Body(h.into())
        } else if let Some(a) = rest.strip_prefix("adopted:") {
            let (hash, p) = a.rsplit_once(':').unwrap_or((a, "0"));
            State::Adopted {
                hash: hash.into(),
                prefixed: p == "1",
            }
        } else if rest == "removed" {
            State::Removed
        } else {
            State::Unknown
        };
        Binding { state, deleted }
    }
}

/// A duplicate event to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub match_id: i64,
    pub id: String,
    pub etag: Option<String>,
}

/// What adoption changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// New or changed bindings.
    pub bind: Vec<SinkItem>,
    /// Bound keys whose event is gone from the calendar.
    pub unbind: Vec<String>,
    pub duplicates: Vec<Duplicate>,
    /// Events bound for the first time.
    pub adopted: usize,
}

fn text<'a>(e: &'a Value, key: &str) -> Option<&'a str> {
    e.get(key).and_then(Value::as_str)
}

fn match_id(e: &Value) -> Option<i64> {
    let id = &e["extendedProperties"]["private"]["matchId"];
    id.as_str()
        .and_then(|s| s.trim().parse().ok())
        .or_else(|| id.as_i64())
}

fn is_live(e: &Value) -> bool {
    text(e, "status") != Some("cancelled")
}

/// Plans the bindings for the listed `events`, given what the sink knows (`known`).
pub fn plan(events: &[Value], known: &[SinkItem]) -> Plan {
    let mut groups: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for e in events {
        if let (Some(m), Some(_)) = (match_id(e), text(e, "id")) {
            groups.entry(m).or_default().push(e);
        }
    }
    let known: HashMap<&str, &SinkItem> = known.iter().map(|k| (k.key.as_str(), k)).collect();
    let mut out = Plan::default();
    for (key, item) in &known {
        if key.parse::<i64>().is_ok_and(|m| !groups.contains_key(&m)) {
            out.unbind.push(item.key.clone());
        }
    }
    for (m, list) in &groups {
        let key = m.to_string();
        let mine = known.get(key.as_str()).copied();
        let ours = event_id(*m);
        let pick = |live: bool| {
            let candidates: Vec<&&Value> = list.iter().filter(|e| is_live(e) == live).collect();
            let bound = mine.and_then(|k| {
                candidates
                    .iter()
                    .find(|e| text(e, "id") == Some(k.remote_name.as_str()))
            });
            let by_id = candidates
                .iter()
                .find(|e| text(e, "id") == Some(ours.as_str()));
            let newest = candidates.iter().max_by_key(|e| {
                (
                    text(e, "updated").unwrap_or(""),
                    text(e, "id").unwrap_or(""),
                )
            });
            bound.or(by_id).or(newest).map(|e| **e)
        };
        let Some(keeper) = pick(true).or_else(|| pick(false)) else {
            continue;
        };
        let keeper_id = text(keeper, "id").unwrap_or_default().to_string();
        for e in list.iter().filter(|e| is_live(e)) {
            if text(e, "id") != Some(keeper_id.as_str()) {
                out.duplicates.push(Duplicate {
                    match_id: *m,
                    id: text(e, "id").unwrap_or_default().into(),
                    etag: text(e, "etag").map(String::from),
                });
            }
        }
        let live = is_live(keeper);
        let etag = text(keeper, "etag").map(String::from);
        let binding = match mine {
            Some(k) if k.remote_name == keeper_id => {
                let mut b = Binding::decode(&k.hash);
                // Our own deletion stays ours; anyone else's is noted (or its undoing).
                b.deleted = !live && b.state != State::Removed;
                if live && b.state == State::Removed {
                    // Brought back by someone after we deleted it: compare by writing.
                    b.state = State::Unknown;
                }
                if b.encode() == k.hash && k.etag == etag {
                    continue;
                }
                b
            }
            _ => {
                out.adopted += 1;
                let private = &keeper["extendedProperties"]["private"];
                let hash = private["calendarHash"]
                    .as_str()
                    .or_else(|| private["matchHash"].as_str());
                let state = match hash {
                    Some(h) => State::Adopted {
                        hash: h.into(),
                        prefixed: text(keeper, "summary")
                            .is_some_and(|s| s.starts_with(CANCELLED_PREFIX)),
                    },
                    None => State::Unknown,
                };
                Binding {
                    state,
                    deleted: !live,
                }
            }
        };
        out.bind.push(SinkItem {
            key,
            remote_name: keeper_id,
            etag,
            hash: binding.encode(),
        });
    }
    out
}

#[cfg(test)]
#[path = "adopt_tests.rs"]
mod tests;
