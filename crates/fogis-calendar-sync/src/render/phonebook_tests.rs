//! Unit tests of [`super::phonebook`]: who is in it, how sightings merge, what the NOTE says.
#![allow(clippy::unwrap_used)]

use chrono::{TimeZone, Utc};

use super::*;
use crate::model::MatchRecord;
use crate::reconcile::{Action, Presence};
use crate::render::vcard::note;
use fogis_pubsub::Address;

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 5, day, hour, 0, 0).unwrap()
}

fn referee(name: &str, nr: Option<&str>, mobile: Option<&str>, email: Option<&str>) -> Referee {
    Referee {
        name: name.into(),
        role: Some("Huvuddomare".into()),
        role_short: Some("Dom".into()),
        referee_number: nr.map(Into::into),
        mobile: mobile.map(Into::into),
        email: email.map(Into::into),
        ..Referee::default()
    }
}

fn stored(
    id: i64,
    start: DateTime<Utc>,
    presence: Presence,
    referees: Vec<Referee>,
) -> StoredMatch {
    let record = MatchRecord {
        match_id: id,
        match_nr: None,
        home_team: Some(format!("Home{id}")),
        away_team: Some(format!("Away{id}")),
        start,
        venue: None,
        venue_address: None,
        coordinates: None,
        competition: None,
        cancelled: false,
        postponed: false,
        interrupted: false,
        referees: referees.into_iter().map(std::sync::Arc::new).collect(),
        team_contacts: Vec::new(),
    };
    StoredMatch {
        hash: record.content_hash(),
        record,
        presence,
        sequence: 0,
        created_at: at(1, 0),
        changed_at: at(1, id as u32 % 20),
        last_action: Action::Create,
    }
}

const USER: &str = "1000";

fn user() -> Referee {
    referee("Ulla User", Some(USER), Some("0700000000"), None)
}

#[test]
fn the_user_is_skipped_and_one_referee_on_many_matches_is_one_contact() {
    let anna = referee("Anna Berg", Some("61318"), Some("070-123 45 67"), None);
    let matches = vec![
        stored(1, at(10, 17), Presence::Listed, vec![user(), anna.clone()]),
        stored(2, at(12, 17), Presence::Listed, vec![anna.clone(), user()]),
        stored(3, at(3, 17), Presence::Archived, vec![user(), anna]),
    ];
    let book = phonebook(&matches, Some(USER), at(5, 0));
    assert_eq!(book.len(), 1, "{book:#?}");
    let c = &book[0];
    assert_eq!(c.uid, "fogis-referee-61318");
    assert_eq!(c.file_name(), "fogis-referee-61318.vcf");
    assert_eq!(c.mobile.as_deref(), Some("+46701234567"));
    // The archived match is past: only the two ahead are upcoming, in order.
    let titles: Vec<&str> = c.upcoming.iter().map(|u| u.1.as_str()).collect();
    assert_eq!(titles, ["Home1 - Away1", "Home2 - Away2"]);
    assert_eq!(c.updated, at(1, 3));

    // Without knowing the user, the user is a contact too.
    assert_eq!(phonebook(&matches, None, at(5, 0)).len(), 2);
}

#[test]
fn withdrawn_matches_do_not_count() {
    let bo = referee("Bo Ek", Some("2"), Some("0701111111"), None);
    let matches = vec![stored(1, at(10, 17), Presence::Withdrawn, vec![user(), bo])];
    assert!(phonebook(&matches, Some(USER), at(5, 0)).is_empty());
}

#[test]
fn merges_by_number_then_phone_then_email_and_the_newest_data_wins() {
    let old = referee(
        "Anna Berg",
        Some("61318"),
        Some("070-123 45 67"),
        Some("old@x.se"),
    );
    // A lossy form: no number, same phone (spelled differently), a new e-mail.
    let lossy = referee(
        "Anna  Berg",
        None,
        Some("+46 70 123 45 67"),
        Some("Anna@New.se"),
    );
    // Only the e-mail links this one, in another case.
    let by_mail = referee("A. Berg", None, None, Some("anna@new.se"));
    let mut newest = by_mail.clone();
    newest.address = Some(Address {
        street: Some("Storgatan 1".into()),
        postal_code: None,
        city: Some("Borås".into()),
    });
    let matches = vec![
        stored(1, at(10, 17), Presence::Listed, vec![old]),
        stored(2, at(11, 17), Presence::Listed, vec![lossy]),
        stored(3, at(12, 17), Presence::Listed, vec![by_mail]),
        stored(4, at(13, 17), Presence::Archived, vec![newest]),
    ];
    let book = phonebook(&matches, Some(USER), at(1, 0));
    assert_eq!(book.len(), 1, "{book:#?}");
    let c = &book[0];
    assert_eq!(c.uid, "fogis-referee-61318");
    assert_eq!(c.referee_number.as_deref(), Some("61318"));
    assert_eq!(c.name, "A. Berg");
    assert_eq!(c.email.as_deref(), Some("anna@new.se"));
    assert_eq!(c.mobile.as_deref(), Some("+46701234567"));
    assert_eq!(
        c.address.as_ref().and_then(|a| a.city.as_deref()),
        Some("Borås")
    );
    assert_eq!(c.upcoming.len(), 4);
}

#[test]
fn different_numbers_are_different_people_even_with_one_phone() {
    let parent_phone = Some("0709999999");
    let a = referee("Kim Ek", Some("11"), parent_phone, None);
    let b = referee("Sam Ek", Some("12"), parent_phone, None);
    let c = referee("Sam Ek", None, parent_phone, Some("sam@x.se"));
    let matches = vec![stored(1, at(10, 17), Presence::Listed, vec![a, b, c])];
    let book = phonebook(&matches, Some(USER), at(1, 0));
    let uids: Vec<&str> = book.iter().map(|c| c.uid.as_str()).collect();
    // The numberless sighting cannot be told apart: it stays alone rather than guess.
    let alone = "fogis-referee-p46709999999";
    assert_eq!(uids, ["fogis-referee-11", "fogis-referee-12", alone]);
    assert!(book[..2].iter().all(|c| c.email.is_none()));
}

#[test]
fn contacts_without_a_number_get_phone_or_email_uids_and_a_stable_order() {
    let p = referee("Östen Ö", None, Some("070-765 43 21"), None);
    let e = referee("Åsa Å", None, None, Some(" Asa@Example.se "));
    let nobody = referee("Nils Namelös", None, None, None);
    let matches = vec![stored(1, at(10, 17), Presence::Listed, vec![p, e, nobody])];
    let book = phonebook(&matches, None, at(1, 0));
    assert_eq!(book.len(), 2);
    assert_eq!(book[0].name, "Åsa Å");
    assert!(book[0].uid.starts_with("fogis-referee-e"));
    assert_eq!(book[0].uid.len(), "fogis-referee-e".len() + 16);
    // The UID names the card on the server: CPython's
    // `hashlib.sha256(b"asa@example.se").hexdigest()[:16]`.
    assert_eq!(book[0].uid, "fogis-referee-e31b6407ce48f3b5d");
    assert!(!book[0].uid.contains("asa"));
    assert_eq!(book[1].uid, "fogis-referee-p46707654321");
    let again = phonebook(&matches, None, at(1, 0));
    assert_eq!(render_all(&book), render_all(&again));
    assert_eq!(render_all(&book).matches("BEGIN:VCARD").count(), 2);
}

#[test]
fn note_lists_upcoming_shared_matches_in_stockholm_time() {
    let mut anna = referee("Anna Berg", Some("61318"), None, None);
    anna.role = Some("Assisterande 1".into());
    let mut late = stored(2, at(20, 16), Presence::Listed, vec![user(), anna.clone()]);
    late.record.cancelled = true;
    let matches = vec![
        late,
        stored(1, at(10, 17), Presence::Listed, vec![user(), anna.clone()]),
        stored(9, at(2, 17), Presence::Archived, vec![user(), anna]),
    ];
    let book = phonebook(&matches, Some(USER), at(5, 0));
    let text = note(&book[0]).unwrap();
    assert_eq!(
        text,
        "FOGIS referee number: 61318\nUpcoming matches together:\n\
         2025-05-10 19:00 Home1 - Away1 (Assisterande 1)\n\
         2025-05-20 18:00 Home2 - Away2 (inställd) (Assisterande 1)"
    );
    let card = render_vcard(&book[0]);
    assert!(card
        .replace("\r\n ", "")
        .contains("NOTE:FOGIS referee number: 61318\\nUpcoming"));
}
