//! vCard 4.0 (RFC 6350), or 3.0 (RFC 2426) for address books that take only that, for the referee
//! phonebook, written straight to text like [`crate::render::ics`].
//!
//! A card is rendered only from a [`Contact`], so the output is deterministic: the same state
//! gives the same bytes, and a sink can tell "unchanged" from a hash. The rules phones and
//! servers are strict about are kept: CRLF line ends, lines folded at 75 octets between UTF-8
//! characters ([`crate::render::ics::fold_line`]), and every value escaped ([`crate::render::ics::escape_text`]
//! escapes `\`, `,`, `;` and newlines and drops other control characters), which is also what
//! the structured values `N` and `ADR` need, where `;` separates components and `,` values.
//!
//! Phone numbers are stored in E.164 (`+46701234567`) by [`normalize_phone`]: FOGIS has them as
//! people typed them (`070-123 45 67`), and only one spelling lets the phone match an incoming
//! call to the card and the phonebook merge two sightings of one person.

use fogis_dav::VcardVersion;

use crate::render::contact::Contact;
use crate::render::ics::{escape_text, fold_line};

const PRODID: &str = "-//fogis-calendar-sync//EN";
/// Shorter numbers are extensions or typos, not something to call.
const MIN_DIGITS: usize = 7;
/// The E.164 maximum.
const MAX_DIGITS: usize = 15;

/// One vCard 4.0, CRLF-terminated.
pub fn render_vcard(card: &Contact) -> String {
    render_vcard_as(card, VcardVersion::V4)
}

/// How a card's `UID` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UidForm {
    /// The contact's key as text (`fogis-referee-61318`): vCard 3.0, and every card written
    /// before vCard 4.0 UIDs were URIs.
    Key,
    /// [`card_uid`], a `urn:uuid:` URI, as RFC 6350 6.7.6 asks of vCard 4.0.
    Uri,
}

impl UidForm {
    /// The form a new card takes in `version`.
    pub fn new_in(version: VcardVersion) -> UidForm {
        match version {
            VcardVersion::V3 => UidForm::Key,
            VcardVersion::V4 => UidForm::Uri,
        }
    }

    /// The form of a UID found in a card.
    pub fn of(uid: &str) -> UidForm {
        if uid.starts_with("fogis-referee-") {
            UidForm::Key
        } else {
            UidForm::Uri
        }
    }
}

/// One new vCard in the version an address book takes, its UID in the form for that version
/// ([`UidForm::new_in`]).
pub fn render_vcard_as(card: &Contact, version: VcardVersion) -> String {
    render_vcard_in(card, version, UidForm::new_in(version))
}

/// One vCard in `version` with its UID in `form`. The card uses only properties and
/// parameters vCard 3.0 (RFC 2426) has too (`PRODID`, `TEL;TYPE=cell`, `ADR;TYPE=home`,
/// `CATEGORIES`, `REV` as a UTC date-time), so only the `VERSION` and `UID` lines differ. A
/// vCard 4.0 `UID` is a URI (RFC 6350 6.7.6), [`card_uid`]; a 3.0 `UID` is text (RFC 2426
/// 3.6.7), the contact's key (`fogis-referee-61318`), as every earlier version wrote it. A card
/// already on a server keeps the form it has (servers refuse a changed UID: Radicale answers
/// 409 `no-uid-conflict`). The resource name is the key in both ([`Contact::file_name`]).
pub fn render_vcard_in(card: &Contact, version: VcardVersion, form: UidForm) -> String {
    let mut out = String::with_capacity(512);
    let mut line = |text: String| {
        out.push_str(&fold_line(&text));
        out.push_str("\r\n");
    };
    line("BEGIN:VCARD".into());
    line(match version {
        VcardVersion::V3 => "VERSION:3.0".into(),
        VcardVersion::V4 => "VERSION:4.0".into(),
    });
    line(format!("PRODID:{PRODID}"));
    line(match form {
        UidForm::Key => format!("UID:{}", escape_text(&card.uid)),
        UidForm::Uri => format!("UID:{}", card_uid(&card.uid)),
    });
    line(format!("FN:{}", escape_text(&card.name)));
    let (given, family) = split_name(&card.name);
    line(format!(
        "N:{};{};;;",
        escape_text(family),
        escape_text(given)
    ));
    if let Some(mobile) = &card.mobile {
        line(format!("TEL;TYPE=cell:{}", escape_text(mobile)));
    }
    if let Some(email) = &card.email {
        line(format!("EMAIL:{}", escape_text(email)));
    }
    if let Some(a) = card.address.as_ref().filter(|a| !a.is_empty()) {
        let part = |p: &Option<String>| escape_text(p.as_deref().unwrap_or_default().trim());
        // post office box; extended; street; locality; region; postal code; country
        line(format!(
            "ADR;TYPE=home:;;{};{};;{};",
            part(&a.street),
            part(&a.city),
            part(&a.postal_code)
        ));
    }
    line("CATEGORIES:Referees".into());
    if let Some(note) = note(card) {
        line(format!("NOTE:{}", escape_text(&note)));
    }
    line(format!("REV:{}", card.updated.format("%Y%m%dT%H%M%SZ")));
    line("END:VCARD".into());
    out
}

/// The vCard 4.0 `UID` of the contact with key `key` (`fogis-referee-61318`): `urn:uuid:` and
/// a name-based (version 5) UUID of the key, so the same referee has the same UID in every
/// install, and the key can be checked against it ([`is_card_uid_of`]).
pub fn card_uid(key: &str) -> String {
    format!(
        "urn:uuid:{}",
        uuid::Uuid::new_v5(&namespace(), key.as_bytes())
    )
}

/// True when `uid` is [`card_uid`] of `key` (the UUID in any letter case).
pub fn is_card_uid_of(uid: &str, key: &str) -> bool {
    uid.get(..9)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:uuid:"))
        && uuid::Uuid::parse_str(&uid[9..])
            .is_ok_and(|u| u == uuid::Uuid::new_v5(&namespace(), key.as_bytes()))
}

/// The UUID namespace of this service's card UIDs (RFC 9562 6.5: any UUID chosen for the
/// purpose; this one was drawn at random once). It must never change: the UIDs would.
fn namespace() -> uuid::Uuid {
    uuid::uuid!("76bbbbc9-83ad-41df-beb9-3f27d022d706")
}

/// The card's NOTE: the FOGIS referee number and the upcoming matches together, one a line
/// (`2025-05-06 18:30 IFK Göteborg - Malmö FF (Assisterande 1)`, Stockholm time); `None` when
/// there is nothing to say.
pub fn note(card: &Contact) -> Option<String> {
    let mut lines = Vec::new();
    if let Some(nr) = &card.referee_number {
        lines.push(format!("FOGIS referee number: {nr}"));
    }
    if !card.upcoming.is_empty() {
        lines.push("Upcoming matches together:".to_owned());
        for (start, title, role) in &card.upcoming {
            let local = start.with_timezone(&chrono_tz::Europe::Stockholm);
            let mut entry = format!("{} {title}", local.format("%Y-%m-%d %H:%M"));
            if !role.is_empty() {
                entry.push_str(&format!(" ({role})"));
            }
            lines.push(entry);
        }
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// `(given, family)`: the family name is the last word; a single word is a given name.
fn split_name(name: &str) -> (&str, &str) {
    let name = name.trim();
    match name.rsplit_once(char::is_whitespace) {
        Some((given, family)) => (given.trim_end(), family),
        None => (name, ""),
    }
}

/// A phone number in E.164 (`+46701234567`). Swedish forms are understood: a leading trunk `0`
/// (`070-123 45 67`), `0046...`, `+46 (0)70...` and `+46 070...`. Spaces, dashes, dots, slashes
/// and parentheses are dropped. A number with no prefix at all (`701234567`) stays as its
/// digits, since its country is unknown. Letters, or fewer than 7 digits, give `None`.
pub fn normalize_phone(s: &str) -> Option<String> {
    let s = s.trim().replace("(0)", "");
    let mut plus = false;
    let mut digits = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '+' if i == 0 => plus = true,
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '/' | '(' | ')' | '\u{a0}' => {}
            _ => return None,
        }
    }
    if digits.len() < MIN_DIGITS {
        return None;
    }
    let e164 = if plus {
        match digits.strip_prefix("460") {
            // `+46 070...`: the trunk zero written after the country code.
            Some(rest) => format!("+46{rest}"),
            None => format!("+{digits}"),
        }
    } else if let Some(international) = digits.strip_prefix("00") {
        format!("+{international}")
    } else if let Some(national) = digits.strip_prefix('0') {
        format!("+46{national}")
    } else {
        digits
    };
    let count = e164.bytes().filter(u8::is_ascii_digit).count();
    (count <= MAX_DIGITS).then_some(e164)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use fogis_pubsub::Address;

    fn card() -> Contact {
        Contact {
            uid: "fogis-referee-61318".into(),
            referee_number: Some("61318".into()),
            name: "Anna Maria Berg".into(),
            mobile: Some("+46701234567".into()),
            email: Some("anna@example.se".into()),
            address: Some(Address {
                street: Some("Storgatan 1; lgh 2".into()),
                postal_code: Some("411 01".into()),
                city: Some("Göteborg".into()),
            }),
            upcoming: vec![(
                Utc.with_ymd_and_hms(2025, 5, 6, 16, 30, 0).unwrap(),
                "IFK Göteborg - Malmö FF".into(),
                "Assisterande 1".into(),
            )],
            updated: Utc.with_ymd_and_hms(2025, 4, 20, 12, 15, 0).unwrap(),
        }
    }

    #[test]
    fn swedish_numbers_become_e164() {
        let cases = [
            ("070-123 45 67", Some("+46701234567")),
            ("0046 70 123 45 67", Some("+46701234567")),
            ("+46 (0)70-123 45 67", Some("+46701234567")),
            ("+46 070 123 45 67", Some("+46701234567")),
            ("+46701234567", Some("+46701234567")),
            ("(031) 12 34 56", Some("+4631123456")),
            ("+47 912 34 567", Some("+4791234567")),
            ("701234567", Some("701234567")),
            ("070-12", None),
            ("012 345", None),
            ("", None),
            ("070 123 45 67 hem", None),
            ("070+1234567", None),
            ("+46 70 123 45 67 89 01 23", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_phone(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn renders_a_complete_card_with_crlf_and_escaping() {
        let text = render_vcard(&card());
        assert!(text.ends_with("END:VCARD\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'));
        let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
        assert_eq!(
            &lines[..3],
            ["BEGIN:VCARD", "VERSION:4.0", &format!("PRODID:{PRODID}")]
        );
        for want in [
            "FN:Anna Maria Berg",
            "N:Berg;Anna Maria;;;",
            "TEL;TYPE=cell:+46701234567",
            "EMAIL:anna@example.se",
            "ADR;TYPE=home:;;Storgatan 1\\; lgh 2;Göteborg;;411 01;",
            "CATEGORIES:Referees",
            "REV:20250420T121500Z",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in {text}");
        }
        // The NOTE is longer than 75 octets: folded, and whole again when unfolded.
        let note = lines.iter().find(|l| l.starts_with("NOTE:")).unwrap();
        assert_eq!(note.len(), 75);
        let unfolded = text.replace("\r\n ", "");
        let want = "NOTE:FOGIS referee number: 61318\\nUpcoming matches together:\\n\
                    2025-05-06 18:30 IFK Göteborg - Malmö FF (Assisterande 1)\r\n";
        assert!(unfolded.contains(want), "{unfolded}");
    }

    #[test]
    fn hostile_names_cannot_add_properties_and_long_lines_fold() {
        let mut c = card();
        c.name = "Eve\r\nTEL:+4611, Evil;Person".into();
        c.mobile = None;
        c.email = None;
        c.address = None;
        c.referee_number = None;
        c.upcoming.clear();
        let text = render_vcard(&c);
        let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
        assert!(!lines.iter().any(|l| l.starts_with("TEL")));
        assert!(!lines
            .iter()
            .any(|l| l.starts_with("NOTE") || l.starts_with("ADR")));
        assert!(lines.contains(&"FN:Eve\\nTEL:+4611\\, Evil\\;Person"));
        assert!(lines.contains(&"N:Evil\\;Person;Eve\\nTEL:+4611\\,;;;"));

        c.name = "Å".repeat(60);
        let text = render_vcard(&c);
        for l in text.split("\r\n") {
            assert!(l.len() <= 75, "{l:?} is {} octets", l.len());
        }
        let unfolded = text.replace("\r\n ", "");
        assert!(unfolded.contains(&format!("FN:{}\r\n", "Å".repeat(60))));
    }

    #[test]
    fn a_vcard_4_uid_is_a_uuid_urn_of_the_key_and_a_3_0_uid_the_key() {
        let c = card();
        let uid = card_uid(&c.uid);
        let u = uuid::Uuid::parse_str(uid.strip_prefix("urn:uuid:").unwrap()).unwrap();
        assert_eq!(u.get_version_num(), 5);
        // Deterministic (the same in every install and version), and one per key.
        assert_eq!(uid, "urn:uuid:be0526e4-8245-57a4-af38-779f853e8d20");
        assert_ne!(card_uid("fogis-referee-61319"), uid);
        assert!(is_card_uid_of(&uid, "fogis-referee-61318"));
        assert!(is_card_uid_of(&uid.to_uppercase(), "fogis-referee-61318"));
        assert!(!is_card_uid_of(&uid, "fogis-referee-61319"));
        assert!(!is_card_uid_of(
            "fogis-referee-61318",
            "fogis-referee-61318"
        ));
        assert!(!is_card_uid_of("urn:uuid:", "fogis-referee-61318"));
        assert!(!is_card_uid_of("é", "fogis-referee-61318"));

        let v4 = render_vcard_as(&c, VcardVersion::V4);
        assert!(v4.contains(&format!("\r\nUID:{uid}\r\n")), "{v4}");
        let v3 = render_vcard_as(&c, VcardVersion::V3);
        assert!(v3.contains("\r\nUID:fogis-referee-61318\r\n"), "{v3}");
        assert!(v3.contains("\r\nVERSION:3.0\r\n"), "{v3}");
        // A card already written keeps its form, whatever the version.
        let kept = render_vcard_in(&c, VcardVersion::V4, UidForm::Key);
        assert!(kept.contains("\r\nUID:fogis-referee-61318\r\n"), "{kept}");
        let kept = render_vcard_in(&c, VcardVersion::V3, UidForm::Uri);
        assert!(kept.contains(&format!("\r\nUID:{uid}\r\n")), "{kept}");
        assert_eq!(UidForm::of("fogis-referee-61318"), UidForm::Key);
        assert_eq!(UidForm::of(&uid), UidForm::Uri);
    }

    #[test]
    fn a_single_name_is_a_given_name() {
        assert_eq!(split_name(" Pelé "), ("Pelé", ""));
        assert_eq!(split_name("Anna  Berg"), ("Anna", "Berg"));
    }
}
