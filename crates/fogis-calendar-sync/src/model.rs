//! A match as the calendar knows it: [`MatchRecord`], everything one event shows, normalised and
//! placed in time, with the content hash that decides whether an event must change.
//!
//! Lossy message forms (enhanced 2.0, simplified legacy) do not carry every field. A field a
//! message does not carry keeps the value already stored, so the same list sent in a poorer
//! form changes nothing; a raw FOGIS referee list replaces the stored one as a whole.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, LocalResult, TimeZone, Utc};
use fogis_pubsub::{Kickoff, Match, MatchForm, Referee, TeamContact};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Everything one calendar event shows about a match. The content hash covers all of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchRecord {
    pub match_id: i64,
    pub match_nr: Option<String>,
    pub home_team: Option<String>,
    pub away_team: Option<String>,
    pub start: DateTime<Utc>,
    pub venue: Option<String>,
    pub venue_address: Option<String>,
    pub coordinates: Option<(f64, f64)>,
    pub competition: Option<String>,
    pub cancelled: bool,
    pub postponed: bool,
    pub interrupted: bool,
    /// Shared: the same people appear in many matches, and the engine keeps one copy of each
    /// ([`People`]).
    pub referees: Vec<Arc<Referee>>,
    pub team_contacts: Vec<Arc<TeamContact>>,
}

impl MatchRecord {
    /// SHA-256 (hex) of the canonical JSON of the record: changes exactly when what the event
    /// shows changes.
    pub fn content_hash(&self) -> String {
        // Serialising a struct of plain fields cannot fail; fall back to Debug text all the same.
        let bytes = serde_json::to_vec(self).unwrap_or_else(|_| format!("{self:?}").into_bytes());
        hex::encode(Sha256::digest(&bytes))
    }

    /// `Home - Away`, with a placeholder for an unknown side.
    pub fn title(&self) -> String {
        format!(
            "{} - {}",
            self.home_team.as_deref().unwrap_or("?"),
            self.away_team.as_deref().unwrap_or("?")
        )
    }

    /// The public match page.
    pub fn match_url(&self) -> String {
        format!("https://www.svenskfotboll.se/matchfakta/{}/", self.match_id)
    }

    /// The event description: match number, competition, referees (role, name, mobile), team
    /// contacts and the match link, one fact a line.
    pub fn description(&self) -> String {
        let mut lines = Vec::new();
        if let Some(nr) = &self.match_nr {
            lines.push(format!("Match {nr}"));
        }
        if let Some(c) = &self.competition {
            lines.push(c.clone());
        }
        if self.cancelled {
            lines.push("INSTÄLLD (cancelled)".to_string());
        }
        if self.postponed {
            lines.push("UPPSKJUTEN (postponed)".to_string());
        }
        if !self.referees.is_empty() {
            lines.push(String::new());
            lines.push("Referees:".to_string());
            for r in &self.referees {
                let role = r
                    .role_short
                    .as_deref()
                    .or(r.role.as_deref())
                    .unwrap_or("Domare");
                let mut line = format!("{role}: {}", r.name);
                if let Some(m) = r.mobile.as_deref().or(r.phone.as_deref()) {
                    line.push_str(&format!(", Mobil: {m}"));
                }
                lines.push(line);
            }
        }
        if !self.team_contacts.is_empty() {
            lines.push(String::new());
            lines.push("Team contacts:".to_string());
            for c in &self.team_contacts {
                let mut line = match &c.team {
                    Some(t) => format!("{t}: {}", c.name),
                    None => c.name.clone(),
                };
                if c.reserve {
                    line.push_str(" (reserv)");
                }
                if let Some(m) = &c.mobile {
                    line.push_str(&format!(", Mobil: {m}"));
                } else if let Some(p) = &c.phone {
                    line.push_str(&format!(", Tel: {p}"));
                }
                if let Some(e) = &c.email {
                    line.push_str(&format!(", {e}"));
                }
                lines.push(line);
            }
        }
        lines.push(String::new());
        lines.push(format!("Match Details: {}", self.match_url()));
        lines.join("\n")
    }
}

/// Resolves a kick-off to an instant; a local wall time is read in `tz`.
pub fn resolve_kickoff(kickoff: Kickoff, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    match kickoff {
        Kickoff::Utc(t) => Ok(t),
        Kickoff::Local(local) => match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
            // A kick-off in the hour that is repeated at the end of summer time: the first one.
            LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
            LocalResult::None => Err(format!(
                "kick-off {local} does not exist in {tz} (clocks skip that hour)"
            )),
        },
    }
}

/// Builds the record for an incoming match, keeping what `stored` knows wherever the message is
/// silent (see the module doc).
pub fn normalize(
    incoming: &Match,
    stored: Option<&MatchRecord>,
    tz: chrono_tz::Tz,
) -> Result<MatchRecord, String> {
    let start = resolve_kickoff(incoming.kickoff, tz)?;
    let keep = |new: &Option<String>, old: fn(&MatchRecord) -> &Option<String>| {
        new.clone().or_else(|| stored.and_then(|s| old(s).clone()))
    };
    let referees = match &incoming.referees {
        Some(list) if incoming.form == MatchForm::Raw => {
            list.iter().cloned().map(Arc::new).collect()
        }
        Some(list) => merge_referees(list, stored.map(|s| s.referees.as_slice()).unwrap_or(&[])),
        None => stored.map(|s| s.referees.clone()).unwrap_or_default(),
    };
    let team_contacts = match &incoming.team_contacts {
        Some(list) => list.iter().cloned().map(Arc::new).collect(),
        None => stored.map(|s| s.team_contacts.clone()).unwrap_or_default(),
    };
    let flag = |new: Option<bool>, old: fn(&MatchRecord) -> bool| {
        new.or_else(|| stored.map(old)).unwrap_or(false)
    };
    Ok(MatchRecord {
        match_id: incoming.match_id,
        match_nr: keep(&incoming.match_nr, |s| &s.match_nr),
        home_team: keep(&incoming.home_team, |s| &s.home_team),
        away_team: keep(&incoming.away_team, |s| &s.away_team),
        start,
        venue: keep(&incoming.venue, |s| &s.venue),
        venue_address: keep(&incoming.venue_address, |s| &s.venue_address),
        coordinates: incoming
            .coordinates
            .or_else(|| stored.and_then(|s| s.coordinates)),
        competition: keep(&incoming.competition, |s| &s.competition),
        cancelled: flag(incoming.cancelled, |s| s.cancelled),
        postponed: flag(incoming.postponed, |s| s.postponed),
        interrupted: flag(incoming.interrupted, |s| s.interrupted),
        referees,
        team_contacts,
    })
}

/// A lossy referee list (names, perhaps roles) over the stored full one: a referee known by name
/// keeps their stored details; a new name takes the role of the stored referee in its place.
fn merge_referees(incoming: &[Referee], stored: &[Arc<Referee>]) -> Vec<Arc<Referee>> {
    incoming
        .iter()
        .enumerate()
        .map(|(i, new)| {
            let known = stored
                .iter()
                .find(|s| s.name.trim().eq_ignore_ascii_case(new.name.trim()));
            Arc::new(match known {
                Some(old) => overlay((**old).clone(), new),
                None => {
                    let mut r = new.clone();
                    if r.role.is_none() && r.role_short.is_none() {
                        if let Some(slot) = stored.get(i) {
                            r.role = slot.role.clone();
                            r.role_short = slot.role_short.clone();
                        }
                    }
                    r
                }
            })
        })
        .collect()
}

fn overlay(mut base: Referee, new: &Referee) -> Referee {
    macro_rules! take {
        ($($f:ident),*) => { $( if new.$f.is_some() { base.$f = new.$f.clone(); } )* };
    }
    take!(
        role,
        role_short,
        referee_number,
        referee_id,
        mobile,
        phone,
        email,
        address
    );
    base
}

/// One copy of each referee and team contact, shared by every match that names them: a state
/// of many matches names the same few people again and again (50,000 matches took 3.9 KB each
/// in memory with a copy per match; BENCHMARKS.md, large state).
#[derive(Debug, Default)]
pub struct People {
    referees: HashSet<Arc<Referee>>,
    contacts: HashSet<Arc<TeamContact>>,
    /// Size of both sets after the last sweep of people no match names any more.
    swept_at: usize,
}

impl People {
    /// Points `record`'s people at the shared copies (adding the ones not seen yet).
    pub fn share(&mut self, record: &mut MatchRecord) {
        for r in &mut record.referees {
            share_one(&mut self.referees, r);
        }
        for c in &mut record.team_contacts {
            share_one(&mut self.contacts, c);
        }
        let size = self.referees.len() + self.contacts.len();
        if size > 2 * self.swept_at.max(512) {
            // Only this set holds them: no stored match names them any more.
            self.referees.retain(|r| Arc::strong_count(r) > 1);
            self.contacts.retain(|c| Arc::strong_count(c) > 1);
            self.swept_at = self.referees.len() + self.contacts.len();
        }
    }

    /// How many distinct people are kept.
    pub fn len(&self) -> usize {
        self.referees.len() + self.contacts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn share_one<T: Eq + std::hash::Hash>(set: &mut HashSet<Arc<T>>, item: &mut Arc<T>) {
    match set.get(&**item) {
        Some(shared) => *item = shared.clone(),
        None => {
            set.insert(item.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::NaiveDate;
    use fogis_pubsub::{decode, Message};

    fn snapshot(name: &str) -> Vec<Match> {
        let path = format!("{}/../../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        match decode(&std::fs::read(path).unwrap()).unwrap() {
            Message::Matches(s) => s.matches,
            _ => panic!(),
        }
    }

    const TZ: chrono_tz::Tz = chrono_tz::Europe::Stockholm;

    /// The state stores these hashes and compares the next list's against them: a change of
    /// their text would count every stored match as updated. Pinned from the version that
    /// wrote them.
    #[test]
    fn content_hashes_keep_their_stored_text() {
        let hashes: Vec<String> = snapshot("processor_match_updates.json")
            .iter()
            .map(|m| normalize(m, None, TZ).unwrap().content_hash())
            .collect();
        assert_eq!(
            hashes,
            [
                "f0104a86f970ccb48e54c483fed1fea942ee81b4d6b15df7d98a87bb05e7bd7f",
                "2fa64a80bf9fa4172f96ab47254f8ee733045083f334a498339d499d6657e424",
                "3541308087fe131d3e4267c68afa0b85ec1715898ae57ae8ce4d1ba19f1b8934",
            ]
        );
    }

    #[test]
    fn lossy_forms_of_the_same_list_keep_the_same_hash() {
        let full = snapshot("processor_match_updates.json");
        let records: Vec<MatchRecord> = full
            .iter()
            .map(|m| normalize(m, None, TZ).unwrap())
            .collect();
        for name in [
            "enhanced_v2.json",
            "legacy_simplified.json",
            "seed_flat.json",
        ] {
            for (m, stored) in snapshot(name).iter().zip(&records) {
                let again = normalize(m, Some(stored), TZ).unwrap();
                assert_eq!(&again, stored, "{name} match {}", m.match_id);
                assert_eq!(again.content_hash(), stored.content_hash());
            }
        }
    }

    #[test]
    fn a_new_referee_in_a_lossy_list_takes_the_role_of_its_slot() {
        let previous = vec![
            Referee {
                name: "A".into(),
                role_short: Some("Dom".into()),
                mobile: Some("1".into()),
                ..Default::default()
            },
            Referee {
                name: "B".into(),
                role_short: Some("AD1".into()),
                ..Default::default()
            },
        ];
        let incoming = vec![
            Referee {
                name: "A".into(),
                ..Default::default()
            },
            Referee {
                name: "C".into(),
                ..Default::default()
            },
        ];
        let previous: Vec<Arc<Referee>> = previous.into_iter().map(Arc::new).collect();
        let merged = merge_referees(&incoming, &previous);
        assert_eq!(merged[0], previous[0]);
        assert_eq!(merged[1].name, "C");
        assert_eq!(merged[1].role_short.as_deref(), Some("AD1"));
    }

    #[test]
    fn local_kickoff_is_dst_correct() {
        let summer = NaiveDate::from_ymd_opt(2025, 5, 6)
            .unwrap()
            .and_hms_opt(18, 30, 0)
            .unwrap();
        let t = resolve_kickoff(Kickoff::Local(summer), TZ).unwrap();
        assert_eq!(t.to_rfc3339(), "2025-05-06T16:30:00+00:00");
        let winter = NaiveDate::from_ymd_opt(2025, 1, 6)
            .unwrap()
            .and_hms_opt(18, 30, 0)
            .unwrap();
        let t = resolve_kickoff(Kickoff::Local(winter), TZ).unwrap();
        assert_eq!(t.to_rfc3339(), "2025-01-06T17:30:00+00:00");
        let gap = NaiveDate::from_ymd_opt(2025, 3, 30)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert!(resolve_kickoff(Kickoff::Local(gap), TZ)
            .unwrap_err()
            .contains("does not exist"));
    }

    #[test]
    fn the_hash_sees_every_shown_field() {
        let base = normalize(&snapshot("processor_match_updates.json")[0], None, TZ).unwrap();
        let h = base.content_hash();
        let mut changed = base.clone();
        Arc::make_mut(&mut changed.referees[1]).mobile = Some("0709999999".into());
        assert_ne!(changed.content_hash(), h);
        let mut changed = base.clone();
        Arc::make_mut(&mut changed.team_contacts[0]).email = None;
        assert_ne!(changed.content_hash(), h);
        let mut changed = base.clone();
        changed.venue = Some("Elsewhere".into());
        assert_ne!(changed.content_hash(), h);
        assert_eq!(base.clone().content_hash(), h);
    }

    #[test]
    #[allow(clippy::excessive_precision)] // the long literal is the point of the test
    fn a_record_read_back_from_the_state_has_the_same_hash() {
        // Found by the state_row fuzz target: without serde_json's float_roundtrip, a long
        // coordinate did not read back to the same f64, so the hash changed across a restart.
        let mut r = normalize(&snapshot("processor_match_updates.json")[0], None, TZ).unwrap();
        r.coordinates = Some((14.677_777_777_777_777_797_617, 12.028288));
        let text = serde_json::to_string(&r).unwrap();
        let back: MatchRecord = serde_json::from_str(&text).unwrap();
        let parsed: MatchRecord = serde_json::from_str(&text.replace(
            "14.677777777777779",
            "14.6777777777777777777777777777797617",
        ))
        .unwrap();
        assert_eq!(back.content_hash(), r.content_hash());
        assert_eq!(
            serde_json::from_str::<MatchRecord>(&serde_json::to_string(&parsed).unwrap())
                .unwrap()
                .content_hash(),
            parsed.content_hash()
        );
    }

    #[test]
    fn description_lists_the_facts() {
        let r = normalize(&snapshot("processor_match_updates.json")[0], None, TZ).unwrap();
        let d = r.description();
        assert!(
            d.starts_with("Match 000402010\nLigacupen Elit Västra\n"),
            "{d}"
        );
        assert!(d.contains("Dom: John Doe, Mobil: 0700000000"), "{d}");
        assert!(d.contains("AD2: Alice Andersson, Mobil: 0700000001"), "{d}");
        assert!(
            d.contains("Team contacts:\nIFK Göteborg: Team Contact 1"),
            "{d}"
        );
        assert!(d.ends_with("Match Details: https://www.svenskfotboll.se/matchfakta/6186203/"));
        assert_eq!(r.title(), "IFK Göteborg - Falkenbergs FF");
    }

    #[test]
    fn people_named_by_many_matches_are_kept_once() {
        let base = normalize(&snapshot("processor_match_updates.json")[0], None, TZ).unwrap();
        assert!(!base.referees.is_empty() && !base.team_contacts.is_empty());
        let mut people = People::default();
        let mut records: Vec<MatchRecord> = (0..3)
            .map(|i| {
                // Each a separate copy, as decoded or loaded.
                let mut r = base.clone();
                r.match_id = i;
                r.referees = base
                    .referees
                    .iter()
                    .map(|p| Arc::new((**p).clone()))
                    .collect();
                r
            })
            .collect();
        for r in &mut records {
            people.share(r);
        }
        for r in &records[1..] {
            for (a, b) in r.referees.iter().zip(&records[0].referees) {
                assert!(Arc::ptr_eq(a, b), "one copy of each referee");
            }
        }
        let distinct = people.len();
        assert_eq!(distinct, base.referees.len() + base.team_contacts.len());
        // Sharing changes nothing a record shows.
        assert_eq!(records[0].content_hash(), {
            let mut r = base.clone();
            r.match_id = 0;
            r.content_hash()
        });
        // People no match names any more are swept once the set has grown enough.
        drop(records);
        let mut other = base.clone();
        for i in 0..2000 {
            other.referees = vec![Arc::new(Referee {
                name: format!("Referee {i}"),
                ..Referee::default()
            })];
            people.share(&mut other);
        }
        assert!(people.len() < 2000, "swept: {}", people.len());
    }
}
