//! The pure half of a sink's pass: what the state wants, against what the sink's ledger says it
//! wrote, gives the steps to take. No I/O: each sink gathers its inputs, calls [`plan`], then
//! executes the steps (see [`crate::sinks::run`]).
//!
//! The rules, the same for every sink:
//! - a wanted item the ledger knows with the same content is left alone, never rewritten (an
//!   equal item the sink only found, never wrote, becomes its own: [`Step::Own`]);
//! - a wanted item the ledger does not know, or knows with other content, is written;
//! - an item is deleted only when the state says it must go (`gone`), the sink owns it (it wrote
//!   it, or owned it while the state still wanted it), and a list was applied at least once: a
//!   fresh install deletes nothing, and an item found for a match the state already knew as
//!   withdrawn is not the sink's to delete;
//! - an item whose last attempt failed waits for its own backoff (`waiting`), the others go on.

use std::collections::{BTreeMap, BTreeSet};

/// What the ledger says of one item, as far as planning cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// The content the ledger recorded (each sink's own hash or encoding).
    pub hash: String,
    /// The sink wrote this item (or took it over while the state wanted it): it may delete it.
    pub owned: bool,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write the item as the state wants it.
    Put(String),
    /// The remote item is already as wanted: record it as the sink's own, no remote write.
    Own(String),
    /// Delete the remote item and forget it.
    Delete(String),
}

impl Step {
    pub fn key(&self) -> &str {
        match self {
            Step::Put(k) | Step::Own(k) | Step::Delete(k) => k,
        }
    }
}

/// The steps of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Steps left for a later pass: their item waits for its backoff.
    pub deferred: usize,
}

/// Plans one pass; `same` tells whether the ledger's record equals a wanted item.
pub fn plan<W>(
    wanted: &BTreeMap<String, W>,
    gone: &BTreeSet<String>,
    known: &BTreeMap<String, Known>,
    has_list: bool,
    waiting: &BTreeSet<String>,
    same: impl Fn(&W, &Known) -> bool,
) -> Plan {
    let mut out = Plan::default();
    let mut push = |step: Step| {
        if waiting.contains(step.key()) {
            out.deferred += 1;
        } else {
            out.steps.push(step);
        }
    };
    for (key, w) in wanted {
        match known.get(key) {
            Some(k) if same(w, k) => {
                if !k.owned {
                    push(Step::Own(key.clone()));
                }
            }
            _ => push(Step::Put(key.clone())),
        }
    }
    if has_list {
        for key in gone {
            if wanted.contains_key(key) {
                continue;
            }
            if known.get(key).is_some_and(|k| k.owned) {
                push(Step::Delete(key.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(items: &[(&str, &str, bool)]) -> BTreeMap<String, Known> {
        items
            .iter()
            .map(|(k, h, owned)| {
                (
                    k.to_string(),
                    Known {
                        hash: h.to_string(),
                        owned: *owned,
                    },
                )
            })
            .collect()
    }

    fn wanted(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(k, h)| (k.to_string(), h.to_string()))
            .collect()
    }

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    fn eq(w: &String, k: &Known) -> bool {
        *w == k.hash
    }

    #[test]
    fn an_empty_ledger_writes_what_the_state_holds() {
        let p = plan(
            &wanted(&[("1", "a"), ("2", "b")]),
            &set(&["3"]),
            &BTreeMap::new(),
            true,
            &set(&[]),
            eq,
        );
        assert_eq!(p.steps, vec![Step::Put("1".into()), Step::Put("2".into())]);
    }

    #[test]
    fn unchanged_items_are_left_alone_and_changed_ones_written() {
        let p = plan(
            &wanted(&[("1", "a"), ("2", "b2")]),
            &set(&[]),
            &known(&[("1", "a", true), ("2", "b", true)]),
            true,
            &set(&[]),
            eq,
        );
        assert_eq!(p.steps, vec![Step::Put("2".into())]);
    }

    #[test]
    fn an_equal_item_found_but_not_written_is_taken_over_without_a_write() {
        let p = plan(
            &wanted(&[("1", "a")]),
            &set(&[]),
            &known(&[("1", "a", false)]),
            true,
            &set(&[]),
            eq,
        );
        assert_eq!(p.steps, vec![Step::Own("1".into())]);
    }

    #[test]
    fn only_owned_items_of_gone_keys_are_deleted() {
        let p = plan(
            &wanted(&[]),
            &set(&["1", "2", "4"]),
            &known(&[("1", "a", true), ("2", "b", false), ("3", "c", true)]),
            true,
            &set(&[]),
            eq,
        );
        // 2: found, never written (withdrawn before the sink knew it); 3: not said to be gone;
        // 4: never known.
        assert_eq!(p.steps, vec![Step::Delete("1".into())]);
    }

    #[test]
    fn nothing_is_deleted_before_the_first_list() {
        let p = plan(
            &wanted(&[]),
            &set(&["1"]),
            &known(&[("1", "a", true)]),
            false,
            &set(&[]),
            eq,
        );
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn a_failed_item_waits_for_its_own_backoff_while_the_others_go_on() {
        let p = plan(
            &wanted(&[("1", "a"), ("2", "b")]),
            &set(&["3"]),
            &known(&[("3", "c", true)]),
            true,
            &set(&["1", "3"]),
            eq,
        );
        assert_eq!(p.steps, vec![Step::Put("2".into())]);
        assert_eq!(p.deferred, 2);
    }

    #[test]
    fn a_key_both_wanted_and_gone_is_never_deleted() {
        let p = plan(
            &wanted(&[("1", "a")]),
            &set(&["1"]),
            &known(&[("1", "a", true)]),
            true,
            &set(&[]),
            eq,
        );
        assert!(p.steps.is_empty());
    }
}
