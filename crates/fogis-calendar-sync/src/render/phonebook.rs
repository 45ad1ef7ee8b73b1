//! The referee's phonebook, derived from the state: everyone they share a match with.
//!
//! A referee on a match the user sees (any presence that is in the feed, past matches
//! included) becomes one [`Contact`]. The same person appears on many matches, and not always
//! the same way: the lossy message forms drop the referee number, people change phones. So the
//! sightings are merged, first by FOGIS referee number, then by normalised phone, then by
//! lower-case e-mail, with one rule on top: two different referee numbers are two people, even
//! when they share a phone or an address (a parent's number on two youth referees). Within one
//! person the newest match (latest kick-off) wins for name, phone, e-mail and address.
//!
//! The result is a pure function of the state and `now`, sorted by name then UID, so the
//! rendered cards are byte-for-byte stable and a sink writes only what changed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use fogis_pubsub::Referee;
use sha2::{Digest, Sha256};

use crate::reconcile::StoredMatch;
pub use crate::render::contact::Contact;
use crate::render::vcard::{normalize_phone, render_vcard};

/// One referee on one match.
struct Sighting<'a> {
    referee: &'a Referee,
    number: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    start: DateTime<Utc>,
    match_id: i64,
    title: String,
    changed_at: DateTime<Utc>,
}

/// The phonebook of everyone who shares a match in the feed with the user (whose own referee
/// number is left out). Referees with no number, phone or e-mail are left out: there is no way
/// to reach them and nothing stable to name the card by.
pub fn phonebook<M: std::borrow::Borrow<StoredMatch>>(
    matches: &[M],
    user_referee_number: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<Contact> {
    let user = user_referee_number.and_then(clean_number);
    let mut sightings = Vec::new();
    for m in matches
        .iter()
        .map(std::borrow::Borrow::borrow)
        .filter(|m: &&StoredMatch| m.presence.in_feed())
    {
        for referee in &m.record.referees {
            let number = referee.referee_number.as_deref().and_then(clean_number);
            if number.is_some() && number == user {
                continue;
            }
            let phone = [&referee.mobile, &referee.phone]
                .into_iter()
                .find_map(|p| p.as_deref().and_then(normalize_phone));
            let email = referee
                .email
                .as_deref()
                .map(str::trim)
                .filter(|e| e.contains('@'))
                .map(str::to_owned);
            if number.is_none() && phone.is_none() && email.is_none() {
                continue;
            }
            let mut title = m.record.title();
            if m.record.cancelled {
                title.push_str(" (inställd)");
            }
            sightings.push(Sighting {
                referee,
                number,
                phone,
                email,
                start: m.record.start,
                match_id: m.record.match_id,
                title,
                changed_at: m.changed_at,
            });
        }
    }
    // Oldest first, so "the last one that has it" is the newest.
    sightings.sort_by_key(|s| (s.start, s.match_id));

    let mut groups = Groups::new(&sightings);
    let keys: [fn(&Sighting<'_>) -> Option<String>; 3] = [
        |s| s.number.clone(),
        |s| s.phone.clone(),
        |s| s.email.as_deref().map(str::to_lowercase),
    ];
    for key in keys {
        // Sorted by key, so the result never depends on hash order.
        let mut sharing: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, s) in sightings.iter().enumerate() {
            if let Some(k) = key(s) {
                sharing.entry(k).or_default().push(i);
            }
        }
        for list in sharing.values() {
            groups.join(list);
        }
    }
    let mut members: BTreeMap<usize, Vec<&Sighting<'_>>> = BTreeMap::new();
    for (i, s) in sightings.iter().enumerate() {
        members.entry(groups.find(i)).or_default().push(s);
    }
    let mut contacts: Vec<Contact> = members
        .into_values()
        .filter_map(|group| contact(&group, now))
        .collect();
    contacts.sort_by(|a, b| (a.name.to_lowercase(), &a.uid).cmp(&(b.name.to_lowercase(), &b.uid)));
    contacts
}

/// Every card, concatenated (`GET /contacts.vcf`).
pub fn render_all(contacts: &[Contact]) -> String {
    contacts.iter().map(render_vcard).collect()
}

/// One person from their sightings, oldest first.
fn contact(group: &[&Sighting<'_>], now: DateTime<Utc>) -> Option<Contact> {
    let newest =
        |f: &dyn Fn(&Sighting<'_>) -> Option<String>| group.iter().rev().find_map(|s| f(s));
    let number = newest(&|s| s.number.clone());
    let mobile = newest(&|s| s.phone.clone());
    let email = newest(&|s| s.email.clone());
    let name = newest(&|s| {
        let name = s
            .referee
            .name
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        (!name.is_empty()).then_some(name)
    })
    .unwrap_or_else(|| "Referee".to_owned());
    let address = group.iter().rev().find_map(|s| {
        s.referee
            .address
            .as_ref()
            .filter(|a| !a.is_empty())
            .cloned()
    });
    let uid = match (&number, &mobile, &email) {
        (Some(nr), _, _) => format!("fogis-referee-{nr}"),
        (None, Some(phone), _) => {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            format!("fogis-referee-p{digits}")
        }
        (None, None, Some(e)) => {
            let hash = Sha256::digest(e.to_lowercase().as_bytes());
            format!("fogis-referee-e{}", hex::encode(&hash[..8]))
        }
        (None, None, None) => return None,
    };
    let mut upcoming: Vec<(DateTime<Utc>, String, String, i64)> = Vec::new();
    for s in group.iter().filter(|s| s.start >= now) {
        if upcoming.iter().any(|u| u.3 == s.match_id) {
            continue;
        }
        let role = [&s.referee.role, &s.referee.role_short]
            .into_iter()
            .find_map(|r| r.as_deref().map(str::trim).filter(|r| !r.is_empty()))
            .unwrap_or_default()
            .to_owned();
        upcoming.push((s.start, s.title.clone(), role, s.match_id));
    }
    upcoming.sort();
    Some(Contact {
        uid,
        referee_number: number,
        name,
        mobile,
        email,
        address,
        upcoming: upcoming
            .into_iter()
            .map(|(t, title, role, _)| (t, title, role))
            .collect(),
        updated: group.iter().map(|s| s.changed_at).max()?,
    })
}

/// A referee number safe for a UID and a resource name: trimmed, letters, digits and dashes.
pub(crate) fn clean_number(raw: &str) -> Option<String> {
    let nr: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!nr.is_empty()).then_some(nr)
}

/// Union-find over sightings that never joins two different referee numbers.
struct Groups {
    parent: Vec<usize>,
    number: Vec<Option<String>>,
}

impl Groups {
    fn new(sightings: &[Sighting<'_>]) -> Groups {
        Groups {
            parent: (0..sightings.len()).collect(),
            number: sightings.iter().map(|s| s.number.clone()).collect(),
        }
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    /// Joins sightings that share a phone or e-mail. If the people already known to be behind
    /// it have different numbers, the key is ambiguous: only the sightings without a number are
    /// joined, to each other, rather than to one of those people at random.
    fn join(&mut self, list: &[usize]) {
        let mut numbers: Vec<Option<String>> = Vec::new();
        for &i in list {
            let root = self.find(i);
            numbers.push(self.number[root].clone());
        }
        let mut known: Vec<&String> = numbers.iter().flatten().collect();
        known.sort();
        known.dedup();
        let joinable: Vec<usize> = if known.len() > 1 {
            list.iter()
                .zip(&numbers)
                .filter(|(_, n)| n.is_none())
                .map(|(i, _)| *i)
                .collect()
        } else {
            list.to_vec()
        };
        for pair in joinable.windows(2) {
            self.union(pair[0], pair[1]);
        }
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if let (Some(x), Some(y)) = (&self.number[a], &self.number[b]) {
            if x != y {
                return;
            }
        }
        let (keep, gone) = (a.min(b), a.max(b));
        self.parent[gone] = keep;
        if self.number[keep].is_none() {
            self.number[keep] = self.number[gone].take();
        }
    }
}

#[cfg(test)]
#[path = "phonebook_tests.rs"]
mod tests;
