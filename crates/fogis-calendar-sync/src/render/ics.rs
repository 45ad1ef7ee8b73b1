//! Hand-written RFC 5545 (iCalendar) renderer for the referee's match feed.
//!
//! The feed has a small, fixed shape, so it is written straight to text. The
//! output is deterministic (stable ETags) and follows the rules clients are
//! strict about: CRLF line endings, and content lines folded at 75 octets
//! without splitting a UTF-8 character. All free text goes through
//! [`escape_text`], which also strips control characters, so a hostile team
//! name like `"A\r\nEND:VEVENT"` cannot add properties or components.
//!
//! Times are local wall time with a `TZID` parameter, so a 19:00 kick-off
//! stays 19:00 in the referee's zone. RFC 5545 then requires a matching
//! `VTIMEZONE`. It is built from chrono-tz for any configured zone, not from a
//! hard-coded table. The UTC offset is scanned over the years the events span,
//! plus one year on each side, and every change is pinned to the exact second
//! by binary search. Each change becomes one `STANDARD` or `DAYLIGHT`
//! observance, so the zone stays right when DST rules change.

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz, TzOffset};

/// One calendar event, fully computed by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// UID is `fogis-match-{match_id}@fogis-calendar-sync`.
    pub match_id: i64,
    pub sequence: u32,
    /// Rendered as local time in [`FeedOptions::tz`], as is `end`.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub summary: String,
    pub location: Option<String>,
    /// `(lat, lon)`; left out if not finite or out of range.
    pub geo: Option<(f64, f64)>,
    pub description: String,
    pub url: Option<String>,
    /// STATUS:CANCELLED if set, else STATUS:CONFIRMED.
    pub cancelled: bool,
    pub created: DateTime<Utc>,
    pub last_modified: DateTime<Utc>,
}

/// Calendar-wide rendering options.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    pub tz: Tz,
    /// Minutes before start for a DISPLAY alarm; `None` means no alarm.
    pub reminder_minutes: Option<u32>,
    /// Written as X-WR-CALNAME and NAME.
    pub calendar_name: String,
    /// DTSTAMP of every event.
    pub dtstamp: DateTime<Utc>,
}

const PRODID: &str = "-//fogis-calendar-sync//EN";
const UTC_TIME: &str = "%Y%m%dT%H%M%SZ";
const LOCAL_TIME: &str = "%Y%m%dT%H%M%S";
/// Maximum octets on one physical line, not counting the CRLF.
const MAX_OCTETS: usize = 75;
/// Scan step for offset changes. Changes are weeks apart. After a change the
/// scan restarts from it, so two changes within one step are still found.
const SCAN_STEP_SECS: i64 = 6 * 3600;

/// `ln!(out, "fmt", args..)` appends content lines, each folded and ended by
/// CRLF. A literal `\r\n` in the format separates lines; values never contain
/// CR or LF because they are escaped or filtered first.
macro_rules! ln {
    ($out:expr, $($fmt:tt)+) => {
        for line in format!($($fmt)+).split("\r\n") {
            $out.push_str(&fold_line(line));
            $out.push_str("\r\n");
        }
    };
}

/// The stable UID of a match's event.
pub fn uid(match_id: i64) -> String {
    format!("fogis-match-{match_id}@fogis-calendar-sync")
}

/// RFC 5545 TEXT escaping: backslash, semicolon, comma, newline
/// (`\r\n`, `\r` and `\n` all become `\n`). Other control characters except
/// tab are dropped, so the value cannot break out of its content line.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\\n");
            }
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Folds one content line (given without CRLF) so no physical line exceeds
/// 75 octets; continuation lines start with CRLF and one space. Folds fall
/// only between characters. The result has no trailing CRLF.
pub fn fold_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / 24);
    let mut used = 0;
    for c in line.chars() {
        if used + c.len_utf8() > MAX_OCTETS {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += c.len_utf8();
    }
    out
}

/// Whole VCALENDAR: feed properties, one VTIMEZONE for `opts.tz` (only when
/// there is at least one event), then the VEVENTs in the given order.
pub fn render_calendar(events: &[FeedEvent], opts: &FeedOptions) -> String {
    let mut out = String::with_capacity(1024 + events.len() * 768);
    let name = escape_text(&opts.calendar_name);
    ln!(out, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:{PRODID}");
    ln!(out, "CALSCALE:GREGORIAN\r\nMETHOD:PUBLISH\r\nNAME:{name}");
    ln!(out, "X-WR-CALNAME:{name}");
    ln!(out, "X-WR-TIMEZONE:{}", opts.tz.name());
    ln!(out, "REFRESH-INTERVAL;VALUE=DURATION:PT15M");
    ln!(out, "X-PUBLISHED-TTL:PT15M");
    if events.is_empty() {
        // RFC 5545 wants at least one component in a calendar: the feed's time zone, around
        // today, keeps an empty feed valid for every parser (and tells subscribers the zone).
        render_vtimezone_around(&mut out, opts.tz, &[opts.dtstamp]);
    } else {
        render_vtimezone(&mut out, opts.tz, events);
    }
    for event in events {
        render_event(&mut out, event, opts);
    }
    ln!(out, "END:VCALENDAR");
    out
}

/// A VCALENDAR holding exactly one VEVENT and its VTIMEZONE, for a CalDAV
/// PUT: no METHOD and none of the feed-only properties (names, refresh).
pub fn render_single(event: &FeedEvent, opts: &FeedOptions) -> String {
    let mut out = String::with_capacity(2048);
    ln!(out, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:{PRODID}");
    ln!(out, "CALSCALE:GREGORIAN");
    render_vtimezone(&mut out, opts.tz, std::slice::from_ref(event));
    render_event(&mut out, event, opts);
    ln!(out, "END:VCALENDAR");
    out
}

fn render_event(out: &mut String, e: &FeedEvent, opts: &FeedOptions) {
    let (tz, tzid) = (opts.tz, opts.tz.name());
    ln!(out, "BEGIN:VEVENT");
    ln!(out, "UID:{}", uid(e.match_id));
    ln!(out, "DTSTAMP:{}", opts.dtstamp.format(UTC_TIME));
    ln!(out, "CREATED:{}", e.created.format(UTC_TIME));
    ln!(out, "LAST-MODIFIED:{}", e.last_modified.format(UTC_TIME));
    ln!(out, "SEQUENCE:{}", e.sequence);
    let (start, end) = (e.start.with_timezone(&tz), e.end.with_timezone(&tz));
    ln!(out, "DTSTART;TZID={tzid}:{}", start.format(LOCAL_TIME));
    ln!(out, "DTEND;TZID={tzid}:{}", end.format(LOCAL_TIME));
    ln!(out, "SUMMARY:{}", escape_text(&e.summary));
    if let Some(location) = &e.location {
        ln!(out, "LOCATION:{}", escape_text(location));
    }
    if let Some((lat, lon)) = e.geo {
        if lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0 {
            ln!(out, "GEO:{};{}", fmt_coord(lat), fmt_coord(lon));
        }
    }
    ln!(out, "DESCRIPTION:{}", escape_text(&e.description));
    if let Some(url) = &e.url {
        // A URI is not TEXT-escaped, but control characters must not get in.
        ln!(out, "URL:{}", url.replace(char::is_control, ""));
    }
    let status = if e.cancelled {
        "CANCELLED"
    } else {
        "CONFIRMED"
    };
    ln!(out, "STATUS:{status}");
    ln!(out, "TRANSP:OPAQUE");
    // No reminder for a match that will not be played.
    if let Some(minutes) = opts.reminder_minutes.filter(|_| !e.cancelled) {
        ln!(out, "BEGIN:VALARM\r\nACTION:DISPLAY");
        ln!(out, "TRIGGER:-PT{minutes}M");
        ln!(out, "DESCRIPTION:{}\r\nEND:VALARM", escape_text(&e.summary));
    }
    ln!(out, "END:VEVENT");
}

/// Up to six decimals, trailing zeros trimmed (`57.7062`, `12`).
fn fmt_coord(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    (if s == "-0" { "0" } else { s }).to_owned()
}

/// UTC offset as `+HHMM`, or `+HHMMSS` when the seconds are not zero.
fn fmt_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, a % 3600 / 60, a % 60);
    match s {
        0 => format!("{sign}{h:02}{m:02}"),
        _ => format!("{sign}{h:02}{m:02}{s:02}"),
    }
}

/// The offset of `tz` at Unix second `at`. Callers only pass seconds derived
/// from valid dates, so the epoch fallback is never used.
fn offset(tz: Tz, at: i64) -> TzOffset {
    let utc = DateTime::from_timestamp(at, 0).unwrap_or_default();
    tz.offset_from_utc_datetime(&utc.naive_utc())
}

fn secs(offset: &TzOffset) -> i32 {
    offset.fix().local_minus_utc()
}

/// Every UTC-offset change in `[from, to)` (Unix seconds) as
/// `(second it takes effect, old offset in seconds, new offset)`.
fn transitions(tz: Tz, from: i64, to: i64) -> Vec<(i64, i32, TzOffset)> {
    let mut found = Vec::new();
    let (mut t, mut old) = (from, secs(&offset(tz, from)));
    while t < to {
        let next = t.saturating_add(SCAN_STEP_SECS).min(to);
        if secs(&offset(tz, next)) == old {
            t = next;
            continue;
        }
        // Invariant: the offset at lo is `old`, the offset at hi is not.
        let (mut lo, mut hi) = (t, next);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if secs(&offset(tz, mid)) == old {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let new = offset(tz, hi);
        found.push((hi, old, new));
        (t, old) = (hi, secs(&new));
    }
    found
}

fn year_start(year: i32) -> Option<i64> {
    let date = NaiveDate::from_ymd_opt(year, 1, 1)?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
}

fn render_vtimezone(out: &mut String, tz: Tz, events: &[FeedEvent]) {
    let times: Vec<DateTime<Utc>> = events.iter().flat_map(|e| [e.start, e.end]).collect();
    render_vtimezone_around(out, tz, &times);
}

/// The VTIMEZONE covering `times` (each with a year either side); nothing when empty.
fn render_vtimezone_around(out: &mut String, tz: Tz, times: &[DateTime<Utc>]) {
    let times = || times.iter().copied();
    let Some(first) = times().min() else {
        return;
    };
    let from = year_start(first.year() - 1).unwrap_or(first.timestamp());
    // Scan only the years that have events (each with a year either side), not the whole span:
    // a list is usually one season, and one stray date far away must not cost a century.
    let mut years: Vec<i32> = times().map(|t| t.year()).collect();
    years.sort_unstable();
    years.dedup();
    let mut list = Vec::new();
    let mut scanned_to = i64::MIN;
    for y in years {
        let (Some(a), Some(b)) = (year_start(y - 1), year_start(y + 2)) else {
            continue;
        };
        let a = a.max(scanned_to);
        if a < b {
            list.extend(transitions(tz, a, b));
            scanned_to = b;
        }
    }
    let base = offset(tz, from);
    ln!(out, "BEGIN:VTIMEZONE\r\nTZID:{}", tz.name());
    if list.is_empty() {
        // Fixed offset: a single observance, valid since 19700101T000000.
        observance(out, "STANDARD", 0, secs(&base), &base);
    } else if list[0].0 > first.timestamp() {
        // A yearly DST cycle always changes in the padding year before the
        // first event; a one-off change may not, so state the earlier offset.
        list.insert(0, (from, secs(&base), base));
    }
    for (at, old, new) in list {
        let kind = if new.dst_offset().is_zero() {
            "STANDARD"
        } else {
            "DAYLIGHT"
        };
        // DTSTART is the local time of the change, read in the old offset.
        observance(out, kind, at.saturating_add(i64::from(old)), old, &new);
    }
    ln!(out, "END:VTIMEZONE");
}

/// One STANDARD/DAYLIGHT block. `wall` is its local start time, encoded as
/// Unix seconds.
fn observance(out: &mut String, kind: &str, wall: i64, from: i32, to: &TzOffset) {
    let start = DateTime::from_timestamp(wall, 0).unwrap_or_default();
    let to_secs = secs(to);
    let name = to
        .abbreviation()
        .map_or_else(|| fmt_offset(to_secs), str::to_owned);
    ln!(out, "BEGIN:{kind}\r\nDTSTART:{}", start.format(LOCAL_TIME));
    ln!(out, "TZOFFSETFROM:{}", fmt_offset(from));
    ln!(out, "TZOFFSETTO:{}", fmt_offset(to_secs));
    ln!(out, "TZNAME:{}\r\nEND:{kind}", escape_text(&name));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use icalendar::parser::{read_calendar, unfold, Component};
    use proptest::prelude::*;

    const STHLM: Tz = chrono_tz::Europe::Stockholm;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn opts(tz: Tz) -> FeedOptions {
        let calendar_name = "Domaruppdrag, Anna".into();
        let (reminder_minutes, dtstamp) = (Some(90), at(2025, 5, 1, 8, 0));
        FeedOptions {
            tz,
            reminder_minutes,
            calendar_name,
            dtstamp,
        }
    }

    fn event() -> FeedEvent {
        FeedEvent {
            match_id: 6_123_456,
            sequence: 3,
            start: at(2025, 5, 6, 16, 30),
            end: at(2025, 5, 6, 18, 30),
            summary: "IFK Göteborg - Malmö FF".into(),
            location: Some("Gamla Ullevi, Göteborg".into()),
            geo: Some((57.706_2, 11.980_5)),
            description: "Domare: Åberg\nAss; Östen, Ärlig\r\nC:\\väg".into(),
            url: Some("https://fogis.se/m/6123456?a=1,b=2".into()),
            cancelled: false,
            created: at(2025, 4, 1, 10, 0),
            last_modified: at(2025, 4, 20, 12, 15),
        }
    }

    /// Physical lines of folded text, content lines of unfolded text.
    fn lines(text: &str) -> Vec<&str> {
        text.strip_suffix("\r\n").unwrap().split("\r\n").collect()
    }

    fn count(text: &str, line: &str) -> usize {
        lines(text).iter().filter(|l| **l == line).count()
    }

    fn find<'a>(cs: &'a [Component<'a>], name: &str) -> &'a Component<'a> {
        cs.iter().find(|c| c.name == name).expect(name)
    }

    fn prop(c: &Component<'_>, name: &str) -> String {
        c.find_prop(name).expect(name).val.as_str().to_owned()
    }

    #[test]
    fn escaping_strips_controls_and_blocks_injection() {
        assert_eq!(escape_text("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
        let controls = "x\r\ny\rz\tq\u{0}\u{1b}\u{7f}\u{85}å";
        assert_eq!(escape_text(controls), "x\\ny\\nz\tqå");
        let mut e = event();
        e.summary = "A\r\nEND:VEVENT\r\nBEGIN:VEVENT".into();
        e.location = Some("X\u{b}\nSTATUS:CANCELLED".into());
        e.url = Some("https://x/\r\nATTACH:evil".into());
        let text = render_calendar(&[e], &opts(STHLM));
        let unfolded = unfold(&text);
        for t in [&text, &unfolded] {
            assert_eq!(count(t, "BEGIN:VEVENT"), 1);
            assert_eq!(count(t, "END:VEVENT"), 1);
            assert_eq!(count(t, "STATUS:CANCELLED"), 0);
            assert!(!lines(t).iter().any(|l| l.starts_with("ATTACH")));
        }
        assert_eq!(count(&unfolded, "SUMMARY:A\\nEND:VEVENT\\nBEGIN:VEVENT"), 1);
        assert_eq!(count(&unfolded, "LOCATION:X\\nSTATUS:CANCELLED"), 1);
        assert_eq!(count(&unfolded, "URL:https://x/ATTACH:evil"), 1);
    }

    #[test]
    fn folds_long_utf8_lines_safely() {
        let value: String = "åäö ÅÄÖ xyz,".chars().cycle().take(300).collect();
        let line = format!("DESCRIPTION:{value}");
        let folded = fold_line(&line);
        let parts: Vec<&str> = folded.split("\r\n").collect();
        assert!(parts.len() > 5);
        for (i, part) in parts.iter().enumerate() {
            assert!(part.len() <= 75, "line {i}: {} octets", part.len());
            assert_eq!(i > 0, part.starts_with(' '));
            if let Some(next) = parts.get(i + 1) {
                // Packed greedily: the next (whole) character did not fit.
                let c = next[1..].chars().next().unwrap();
                assert!(part.len() + c.len_utf8() > 75);
            }
        }
        // Folds sit only between characters, so unfolding restores the line.
        assert_eq!(unfold(&folded), line);
        assert_eq!(fold_line(&"X".repeat(75)), "X".repeat(75));
        let (o37, o38) = ("ö".repeat(37), "ö".repeat(38));
        assert_eq!(fold_line(&o38), format!("{o37}\r\n ö"));
    }

    #[test]
    fn stockholm_wall_time_and_vtimezone() {
        let mut winter = event();
        (winter.start, winter.end) = (at(2025, 1, 15, 17, 0), at(2025, 1, 15, 19, 0));
        let text = render_calendar(&[event(), winter], &opts(STHLM));
        let tzid = ";TZID=Europe/Stockholm:";
        assert_eq!(count(&text, &format!("DTSTART{tzid}20250506T183000")), 1);
        assert_eq!(count(&text, &format!("DTEND{tzid}20250506T203000")), 1);
        assert_eq!(count(&text, &format!("DTSTART{tzid}20250115T180000")), 1);
        assert_eq!(count(&text, &format!("DTEND{tzid}20250115T200000")), 1);
        assert!(text.contains(
            "BEGIN:DAYLIGHT\r\nDTSTART:20250330T020000\r\nTZOFFSETFROM:+0100\r\n\
             TZOFFSETTO:+0200\r\nTZNAME:CEST\r\nEND:DAYLIGHT\r\n"
        ));
        assert!(text.contains(
            "BEGIN:STANDARD\r\nDTSTART:20251026T030000\r\nTZOFFSETFROM:+0200\r\n\
             TZOFFSETTO:+0100\r\nTZNAME:CET\r\nEND:STANDARD\r\n"
        ));
        // 2024..=2026: one change each spring and autumn, nothing else.
        assert_eq!(count(&text, "TZID:Europe/Stockholm"), 1);
        assert_eq!(count(&text, "BEGIN:DAYLIGHT"), 3);
        assert_eq!(count(&text, "BEGIN:STANDARD"), 3);
        assert_eq!(count(&text, "DTSTART:20240331T020000"), 1);
        assert_eq!(count(&text, "DTSTART:20261025T030000"), 1);
    }

    #[test]
    fn vtimezone_is_generic() {
        let ny = render_calendar(&[event()], &opts(chrono_tz::America::New_York));
        assert!(ny.contains(
            "BEGIN:STANDARD\r\nDTSTART:20251102T020000\r\nTZOFFSETFROM:-0400\r\n\
             TZOFFSETTO:-0500\r\nTZNAME:EST\r\n"
        ));
        assert!(ny.contains("\r\nDTSTART;TZID=America/New_York:20250506T123000\r\n"));
        let utc = render_calendar(&[event()], &opts(chrono_tz::UTC));
        assert!(utc.contains(
            "TZID:UTC\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n\
             TZOFFSETFROM:+0000\r\nTZOFFSETTO:+0000\r\nTZNAME:UTC\r\n\
             END:STANDARD\r\nEND:VTIMEZONE\r\n"
        ));
        assert_eq!(count(&utc, "DTSTART;TZID=UTC:20250506T163000"), 1);
    }

    #[test]
    fn layout_property_order_and_optional_parts() {
        let text = render_calendar(&[event()], &opts(STHLM));
        assert!(text.starts_with(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fogis-calendar-sync//EN\r\n\
             CALSCALE:GREGORIAN\r\nMETHOD:PUBLISH\r\nNAME:Domaruppdrag\\, Anna\r\n\
             X-WR-CALNAME:Domaruppdrag\\, Anna\r\nX-WR-TIMEZONE:Europe/Stockholm\r\n\
             REFRESH-INTERVAL;VALUE=DURATION:PT15M\r\nX-PUBLISHED-TTL:PT15M\r\n\
             BEGIN:VTIMEZONE\r\n"
        ));
        assert!(text.ends_with("END:VEVENT\r\nEND:VCALENDAR\r\n"));
        assert!(!text.replace("\r\n", "").contains(['\r', '\n']));
        assert_eq!(text, render_calendar(&[event()], &opts(STHLM)));
        let unfolded = unfold(&text);
        let ev = &unfolded[unfolded.find("BEGIN:VEVENT").unwrap()..];
        let names: Vec<_> = lines(ev)
            .into_iter()
            .map(|l| l.split([':', ';']).next())
            .collect();
        assert_eq!(
            names.into_iter().flatten().collect::<Vec<_>>().join(" "),
            "BEGIN UID DTSTAMP CREATED LAST-MODIFIED SEQUENCE DTSTART DTEND SUMMARY \
             LOCATION GEO DESCRIPTION URL STATUS TRANSP BEGIN ACTION TRIGGER DESCRIPTION \
             END END END"
        );
        assert_eq!(count(ev, "GEO:57.7062;11.9805"), 1);
        assert_eq!(count(ev, "DTSTAMP:20250501T080000Z"), 1);
        assert_eq!(count(ev, "LAST-MODIFIED:20250420T121500Z"), 1);

        let mut bare = event();
        (bare.location, bare.url, bare.cancelled) = (None, None, true);
        bare.geo = Some((f64::NAN, 1.0));
        let mut o = opts(STHLM);
        o.reminder_minutes = None;
        let text = render_calendar(&[bare], &o);
        for absent in ["LOCATION", "GEO", "URL", "VALARM"] {
            assert!(!text.contains(absent), "{absent}");
        }
        assert_eq!(count(&text, "STATUS:CANCELLED"), 1);
        // An empty feed still carries a component (RFC 5545): its time zone.
        let empty = render_calendar(&[], &o);
        assert_eq!(count(&empty, "BEGIN:VTIMEZONE"), 1);
        assert_eq!(count(&empty, "BEGIN:VEVENT"), 0);
        let unfolded = unfold(&empty);
        let cal = read_calendar(&unfolded).unwrap();
        assert_eq!(
            prop(find(&cal.components, "VTIMEZONE"), "TZID"),
            "Europe/Stockholm"
        );
    }

    #[test]
    fn round_trips_through_icalendar_parser() {
        let unfolded = unfold(&render_calendar(&[event()], &opts(STHLM)));
        let cal = read_calendar(&unfolded).unwrap();
        let vtimezone = find(&cal.components, "VTIMEZONE");
        assert_eq!(prop(vtimezone, "TZID"), "Europe/Stockholm");
        let (ev, e) = (find(&cal.components, "VEVENT"), event());
        assert_eq!(prop(ev, "UID"), "fogis-match-6123456@fogis-calendar-sync");
        assert_eq!(prop(ev, "SUMMARY"), e.summary);
        assert_eq!(prop(ev, "LOCATION"), "Gamla Ullevi, Göteborg");
        let description = "Domare: Åberg\nAss; Östen, Ärlig\nC:\\väg";
        assert_eq!(prop(ev, "DESCRIPTION"), description);
        assert_eq!(prop(ev, "SEQUENCE"), "3");
        assert_eq!(prop(ev, "STATUS"), "CONFIRMED");
        assert_eq!(prop(ev, "URL"), "https://fogis.se/m/6123456?a=1,b=2");
        let dtstart = ev.find_prop("DTSTART").unwrap();
        assert_eq!(dtstart.val.as_str(), "20250506T183000");
        let tzid = dtstart.params.iter().find(|p| p.key == "TZID").unwrap();
        assert_eq!(tzid.val.as_ref().unwrap().as_str(), "Europe/Stockholm");
        let alarm = find(&ev.components, "VALARM");
        assert_eq!(prop(alarm, "TRIGGER"), "-PT90M");
        assert_eq!(prop(alarm, "DESCRIPTION"), e.summary);

        let single = unfold(&render_single(&e, &opts(STHLM)));
        assert!(!single.contains("METHOD") && !single.contains("X-WR-"));
        let cal = read_calendar(&single).unwrap();
        let names: Vec<&str> = cal.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["VTIMEZONE", "VEVENT"]);
        let uid_prop = prop(&cal.components[1], "UID");
        assert_eq!(uid_prop, uid(e.match_id));
    }

    /// How TEXT reads back: line breaks become `\n`, other controls except
    /// tab are gone.
    fn expected_text(s: &str) -> String {
        let s = s.replace("\r\n", "\n").replace('\r', "\n");
        s.chars()
            .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
            .collect()
    }

    fn messy() -> impl Strategy<Value = String> {
        let special: Vec<char> = "\n\r\t\\;,:\" åÖ\u{0}\u{7f}\u{85}".chars().collect();
        let piece = prop_oneof![
            3 => any::<char>().prop_map(String::from),
            2 => prop::sample::select(special).prop_map(String::from),
            1 => Just("\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\n".to_owned()),
        ];
        prop::collection::vec(piece, 0..120).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn arbitrary_text_stays_contained(s in messy(), l in messy(), d in messy()) {
            let mut e = event();
            (e.summary, e.location, e.description) = (s.clone(), Some(l.clone()), d.clone());
            let text = render_calendar(&[e], &opts(STHLM));
            prop_assert_eq!(count(&text, "BEGIN:VEVENT"), 1);
            for line in lines(&text) {
                prop_assert!(line.len() <= 75, "{} octets: {:?}", line.len(), line);
            }
            let unfolded = unfold(&text);
            let cal = read_calendar(&unfolded).map_err(TestCaseError::fail)?;
            let ev = find(&cal.components, "VEVENT");
            prop_assert_eq!(prop(ev, "SUMMARY"), expected_text(&s));
            prop_assert_eq!(prop(ev, "LOCATION"), expected_text(&l));
            prop_assert_eq!(prop(ev, "DESCRIPTION"), expected_text(&d));
        }
    }

    #[test]
    fn vtimezone_covers_only_the_years_with_events() {
        let mut near = event();
        near.start = Utc.with_ymd_and_hms(2025, 5, 6, 16, 30, 0).unwrap();
        near.end = near.start + chrono::Duration::hours(2);
        let mut far = near.clone();
        far.match_id += 1;
        far.start = Utc.with_ymd_and_hms(2090, 5, 6, 16, 30, 0).unwrap();
        far.end = far.start + chrono::Duration::hours(2);
        let text = render_calendar(&[near, far], &opts(STHLM));
        assert!(text.contains("DTSTART:20250330T020000"));
        assert!(text.contains("DTSTART:20900326T020000"));
        assert!(
            !text.contains("DTSTART:2050"),
            "no scan of the years between"
        );
        assert_eq!(count(&text, "BEGIN:DAYLIGHT"), 6);
    }
}
