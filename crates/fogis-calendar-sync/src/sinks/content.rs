//! What "the same item" means when a DAV sink compares an item it found on the server with the
//! one it would write: the same content lines, whatever the server did to their form.
//!
//! Servers store an item in their own spelling: Radicale sorts a vCard's properties and
//! re-serialises an iCalendar object, XML turns CRLF into LF, lines are folded elsewhere. And
//! some properties say when a copy was made, not what it holds: a card's `REV`, an event's
//! `DTSTAMP`, `CREATED`, `LAST-MODIFIED` and `SEQUENCE` (another install of this service, or
//! an earlier one, stamps them from its own state). [`lines_hash`] ignores all of that, so a
//! fresh install adopting what an earlier one wrote rewrites nothing that is unchanged.

use sha2::{Digest, Sha256};

/// The ledger hash of an item found on the server, not written by this sink: its lines' hash
/// ([`lines_hash`]) after this prefix.
pub const ADOPTED: &str = "adopted:";

/// The ledger hash of an item found at a takeover under the sink lease: the pair's own (the
/// other instance wrote it, so it may be rewritten and deleted), compared by its lines'
/// hash after this prefix.
pub const TAKEN: &str = "taken:";

/// The lines' hash a ledger hash carries, for an item found rather than written
/// ([`ADOPTED`] or [`TAKEN`]).
pub fn found_lines(hash: &str) -> Option<&str> {
    hash.strip_prefix(ADOPTED)
        .or_else(|| hash.strip_prefix(TAKEN))
}

/// What a vCard's hash leaves out: when our state last changed, not what the card says.
pub const VCARD_STAMPS: &[&str] = &["REV"];
/// What an event's hash leaves out: when the copy was rendered and the install's own record
/// of its history. `SEQUENCE` counts the changes one install saw; two installs that hold the
/// same match count differently, and rewriting an equal event would not make them agree.
pub const EVENT_STAMPS: &[&str] = &["DTSTAMP", "CREATED", "LAST-MODIFIED", "SEQUENCE"];

/// A hash of an item's content lines: unfolded, without line endings, in sorted order, and
/// without the properties named in `ignored` (case-insensitive, with any parameters). The same
/// for a copy a server stored with other line endings, folding or property order.
pub fn lines_hash(body: &str, ignored: &[&str]) -> String {
    let mut lines: Vec<String> = Vec::new();
    for raw in body.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match (
            line.strip_prefix(' ').or_else(|| line.strip_prefix('\t')),
            lines.last_mut(),
        ) {
            (Some(rest), Some(last)) => last.push_str(rest),
            _ if line.is_empty() => {}
            _ => lines.push(line.to_string()),
        }
    }
    lines.retain(|l| {
        let name = l.split([';', ':']).next().unwrap_or_default();
        !ignored.iter().any(|i| name.eq_ignore_ascii_case(i))
    });
    for line in &mut lines {
        if let Some(canonical) = canonical_duration(line) {
            *line = canonical;
        }
    }
    lines.sort();
    hex::encode(Sha256::digest(lines.join("\n").as_bytes()))
}

/// A `TRIGGER` or `DURATION` line with its duration (RFC 5545 3.3.6) as a number of seconds:
/// servers write the same duration their own way (Xandikos turns `-PT2880M` into `-P2D`).
/// `None` for any other line, or a value that is no duration (a `TRIGGER` at a date-time).
fn canonical_duration(line: &str) -> Option<String> {
    let (head, value) = line.split_once(':')?;
    let name = head.split(';').next().unwrap_or_default();
    if !(name.eq_ignore_ascii_case("TRIGGER") || name.eq_ignore_ascii_case("DURATION")) {
        return None;
    }
    let seconds = duration_seconds(value.trim())?;
    Some(format!("{head}:{seconds}s"))
}

/// `[+-]P[nW][nD][T[nH][nM][nS]]` in seconds.
fn duration_seconds(value: &str) -> Option<i64> {
    let (sign, rest) = match value.as_bytes().first()? {
        b'-' => (-1, &value[1..]),
        b'+' => (1, &value[1..]),
        _ => (1, value),
    };
    let rest = rest.strip_prefix(['P', 'p'])?;
    let (mut total, mut number, mut in_time, mut any) = (0i64, None::<i64>, false, false);
    for c in rest.chars() {
        match c.to_ascii_uppercase() {
            'T' if number.is_none() && !in_time => in_time = true,
            d @ '0'..='9' => {
                let digit = i64::from(d as u8 - b'0');
                number = Some(number.unwrap_or(0).checked_mul(10)?.checked_add(digit)?);
            }
            unit => {
                let factor = match (unit, in_time) {
                    ('W', false) => 604_800,
                    ('D', false) => 86_400,
                    ('H', true) => 3_600,
                    ('M', true) => 60,
                    ('S', true) => 1,
                    _ => return None,
                };
                total = total.checked_add(number.take()?.checked_mul(factor)?)?;
                any = true;
            }
        }
    }
    (any && number.is_none()).then_some(sign * total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_folding_and_order_do_not_count() {
        let a = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Anna Berg\r\nTEL:+4670\r\nEND:VCARD\r\n";
        let b = "BEGIN:VCARD\nFN:Anna\n  Berg\nVERSION:4.0\nTEL:+4670\nEND:VCARD\n";
        assert_eq!(lines_hash(a, &[]), lines_hash(b, &[]));
        assert_ne!(
            lines_hash(a, &[]),
            lines_hash(&a.replace("+4670", "+4671"), &[])
        );
    }

    #[test]
    fn durations_compare_by_their_length() {
        let ours = "BEGIN:VALARM\r\nTRIGGER:-PT2880M\r\nEND:VALARM\r\n";
        let xandikos = "BEGIN:VALARM\nTRIGGER:-P2D\nEND:VALARM\n";
        assert_eq!(lines_hash(ours, &[]), lines_hash(xandikos, &[]));
        let other = "BEGIN:VALARM\nTRIGGER:-P1D\nEND:VALARM\n";
        assert_ne!(lines_hash(ours, &[]), lines_hash(other, &[]));
        assert_ne!(
            lines_hash(ours, &[]),
            lines_hash(&ours.replace('-', ""), &[])
        );
        assert_eq!(duration_seconds("P1W2DT3H4M5S"), Some(788_645));
        assert_eq!(duration_seconds("+PT15M"), Some(900));
        for bad in [
            "",
            "P",
            "PT",
            "P1H",
            "PT1D",
            "P1",
            "-",
            "19970101T000000Z",
            "P9999999999999999999D",
        ] {
            assert_eq!(duration_seconds(bad), None, "{bad:?}");
        }
        // A trigger at a date-time is left as it is.
        let at = "TRIGGER;VALUE=DATE-TIME:19980101T050000Z";
        assert_eq!(canonical_duration(at), None);
    }

    #[test]
    fn only_the_named_properties_are_ignored_with_their_parameters() {
        let a = "BEGIN:VEVENT\r\nUID:x\r\nSUMMARY:A - B\r\nEND:VEVENT\r\n";
        let stamped = a.replace(
            "UID:x\r\n",
            "UID:x\r\nDTSTAMP:20261203T143354Z\r\ncreated;VALUE=DATE-TIME:20261101T000000Z\r\n\
             LAST-MODIFIED:20261102T000000Z\r\nSEQUENCE:3\r\n",
        );
        assert_eq!(
            lines_hash(a, EVENT_STAMPS),
            lines_hash(&stamped, EVENT_STAMPS)
        );
        assert_ne!(lines_hash(a, &[]), lines_hash(&stamped, &[]));
        // A property whose name merely starts like an ignored one is content.
        let other = a.replace("UID:x\r\n", "UID:x\r\nDTSTAMPED:1\r\n");
        assert_ne!(
            lines_hash(a, EVENT_STAMPS),
            lines_hash(&other, EVENT_STAMPS)
        );
        // A changed summary is a change.
        let moved = stamped.replace("A - B", "A - C");
        assert_ne!(
            lines_hash(a, EVENT_STAMPS),
            lines_hash(&moved, EVENT_STAMPS)
        );
    }
}
