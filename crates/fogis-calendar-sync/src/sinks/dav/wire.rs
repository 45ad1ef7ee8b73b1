//! What goes over the wire for [`super::DavClient`], kept apart from the HTTP code so it can be
//! tested without a server: request bodies, the `207 Multi-Status` parser, percent-coding of
//! resource names, and finding the `UID` inside calendar or address data.
//!
//! Servers spell namespaces with whatever prefixes they like (`D:`, `d:`, none, `ns0:`), so the
//! parser matches elements by local name only. Everything the parser keeps is structural (href,
//! status, ETag, resource types) or the item data handed back to the caller; it never echoes
//! document text into an error, because item data is personal.

use quick_xml::events::{BytesRef, Event};
use quick_xml::Reader;

/// PROPFIND body asking for what [`super::DavClient`] needs to know about a collection or item.
pub(super) const PROPFIND: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<D:propfind xmlns:D="DAV:"><D:prop>"#,
    r#"<D:resourcetype/><D:getetag/><D:displayname/>"#,
    r#"</D:prop></D:propfind>"#
);

/// REPORT body: every calendar object in the collection, with its data.
pub(super) const CALENDAR_QUERY: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">"#,
    r#"<D:prop><D:getetag/><C:calendar-data/></D:prop>"#,
    r#"<C:filter><C:comp-filter name="VCALENDAR"/></C:filter>"#,
    r#"</C:calendar-query>"#
);

/// REPORT body: every vCard in the address book, with its data. An empty filter matches all.
pub(super) const ADDRESSBOOK_QUERY: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<CR:addressbook-query xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">"#,
    r#"<D:prop><D:getetag/><CR:address-data/></D:prop>"#,
    r#"<CR:filter/>"#,
    r#"</CR:addressbook-query>"#
);

/// MKCALENDAR body (RFC 4791 5.3.1): a display name, events only.
pub(super) fn mkcalendar(display_name: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">"#,
            r#"<D:set><D:prop><D:displayname>{}</D:displayname>"#,
            r#"<C:supported-calendar-component-set><C:comp name="VEVENT"/>"#,
            r#"</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"#
        ),
        quick_xml::escape::escape(display_name)
    )
}

/// Extended MKCOL body (RFC 5689) that makes an address book (RFC 6352 6.3.1).
pub(super) fn mkcol_addressbook(display_name: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">"#,
            r#"<D:set><D:prop><D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype>"#,
            r#"<D:displayname>{}</D:displayname></D:prop></D:set></D:mkcol>"#
        ),
        quick_xml::escape::escape(display_name)
    )
}

/// One `<response>` of a multistatus, with the properties of its successful propstats.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Response {
    pub href: String,
    /// A status on the response itself (for a resource that is gone, say).
    pub status: Option<u16>,
    pub etag: Option<String>,
    pub collection: bool,
    pub calendar: bool,
    pub addressbook: bool,
    /// `calendar-data` or `address-data`.
    pub data: Option<String>,
}

/// Properties of the propstat being read; merged into the response if its status is 2xx.
#[derive(Debug, Default)]
struct Propstat {
    status: Option<u16>,
    etag: Option<String>,
    collection: bool,
    calendar: bool,
    addressbook: bool,
    data: Option<String>,
}

/// Parses a `207 Multi-Status` body. Unknown elements are skipped; malformed XML is an error
/// that names the byte offset, never the content.
pub(super) fn parse_multistatus(body: &[u8]) -> Result<Vec<Response>, String> {
    let text = String::from_utf8_lossy(body);
    let mut reader = Reader::from_str(&text);
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut buf = String::new();
    let mut out = Vec::new();
    let mut response: Option<Response> = None;
    let mut stat = Propstat::default();
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "malformed multistatus XML near byte {}: {e}",
                reader.buffer_position()
            )
        })?;
        match event {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_vec();
                open(&name, &mut response, &mut stat);
                stack.push(name);
                buf.clear();
            }
            Event::Empty(e) => {
                let name = e.local_name().as_ref().to_vec();
                open(&name, &mut response, &mut stat);
                let parent = stack.last().map(Vec::as_slice).unwrap_or_default();
                close(&name, parent, "", &mut response, &mut stat, &mut out);
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                let parent = stack.last().map(Vec::as_slice).unwrap_or_default();
                close(&name, parent, &buf, &mut response, &mut stat, &mut out);
                buf.clear();
            }
            Event::Text(t) => buf.push_str(&t.xml10_content().map_err(|e| e.to_string())?),
            Event::CData(t) => buf.push_str(&t.xml10_content().map_err(|e| e.to_string())?),
            Event::GeneralRef(r) => push_reference(&mut buf, &r)?,
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("multistatus XML ends inside an element".into());
    }
    Ok(out)
}

fn open(name: &[u8], response: &mut Option<Response>, stat: &mut Propstat) {
    match name {
        b"response" => *response = Some(Response::default()),
        b"propstat" => *stat = Propstat::default(),
        _ => {}
    }
}

fn close(
    name: &[u8],
    parent: &[u8],
    text: &str,
    response: &mut Option<Response>,
    stat: &mut Propstat,
    out: &mut Vec<Response>,
) {
    let value = || Some(text.trim().to_owned()).filter(|v| !v.is_empty());
    match (name, parent) {
        (b"href", b"response") => {
            if let Some(r) = response.as_mut().filter(|r| r.href.is_empty()) {
                r.href = text.trim().to_owned();
            }
        }
        (b"status", b"propstat") => stat.status = parse_status(text),
        (b"status", b"response") => {
            if let Some(r) = response.as_mut() {
                r.status = parse_status(text);
            }
        }
        (b"getetag", _) => stat.etag = value(),
        (b"collection", b"resourcetype") => stat.collection = true,
        (b"calendar", b"resourcetype") => stat.calendar = true,
        (b"addressbook", b"resourcetype") => stat.addressbook = true,
        (b"calendar-data" | b"address-data", _) => stat.data = Some(text.to_owned()),
        (b"propstat", _) => {
            let ok = stat.status.is_none_or(|s| (200..300).contains(&s));
            if let (true, Some(r)) = (ok, response.as_mut()) {
                let s = std::mem::take(stat);
                r.etag = s.etag.or(r.etag.take());
                r.data = s.data.or(r.data.take());
                r.collection |= s.collection;
                r.calendar |= s.calendar;
                r.addressbook |= s.addressbook;
            }
        }
        (b"response", _) => out.extend(response.take()),
        _ => {}
    }
}

/// `HTTP/1.1 200 OK` -> 200.
fn parse_status(line: &str) -> Option<u16> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Appends a character or predefined entity reference (`&#13;`, `&amp;`); others are dropped.
fn push_reference(buf: &mut String, r: &BytesRef<'_>) -> Result<(), String> {
    if r.is_char_ref() {
        let c = r.resolve_char_ref().map_err(|e| e.to_string())?;
        buf.extend(c);
        return Ok(());
    }
    let name = r.decode().map_err(|e| e.to_string())?;
    let c = match name.as_ref() {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        _ => return Ok(()),
    };
    buf.push(c);
    Ok(())
}

/// Percent-encodes a resource name for one path segment: only RFC 3986 unreserved characters
/// stay as they are, so `/`, `:`, `?`, `#` and `%` can never change what the URL means.
pub(super) fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid ones stay as they are); invalid UTF-8 is replaced.
pub(super) fn decode_segment(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.extend(u8::try_from(hi * 16 + lo).ok());
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `UID` of the object in iCalendar or vCard text: the UID property of the first VEVENT,
/// VTODO, VJOURNAL or VCARD, after unfolding. A UID inside a VALARM does not count.
pub fn extract_uid(data: &str) -> Option<String> {
    let unfolded = data
        .replace("\r\n", "\n")
        .replace("\n ", "")
        .replace("\n\t", "");
    let mut components: Vec<String> = Vec::new();
    for line in unfolded.lines() {
        let Some((head, value)) = line.split_once(':') else {
            continue;
        };
        let name = head.split(';').next().unwrap_or_default().trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("BEGIN") {
            components.push(value.to_ascii_uppercase());
        } else if name.eq_ignore_ascii_case("END") {
            components.pop();
        } else if name.eq_ignore_ascii_case("UID") && !value.is_empty() {
            let owner = components.last().map(String::as_str);
            if matches!(owner, Some("VEVENT" | "VTODO" | "VJOURNAL" | "VCARD")) {
                return Some(value.to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_multistatus_with_any_prefix_and_entities() {
        let xml = concat!(
            r#"<?xml version="1.0"?><ns0:multistatus xmlns:ns0="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">"#,
            r#"<ns0:response><ns0:href>/u/cal/</ns0:href><ns0:propstat><ns0:prop><ns0:resourcetype>"#,
            r#"<ns0:collection/><c:calendar/></ns0:resourcetype></ns0:prop>"#,
            r#"<ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response>"#,
            r#"<response xmlns="DAV:"><href>/u/cal/a%20b.ics</href><propstat><prop>"#,
            r#"<getetag>&quot;e1&quot;</getetag><c:calendar-data>BEGIN:VCALENDAR&#13;"#,
            "\nBEGIN:VEVENT&#13;\nUID:x&amp;y&#13;\nEND:VEVENT</c:calendar-data></prop>",
            r#"<status>HTTP/1.1 200 OK</status></propstat><propstat><prop><displayname/></prop>"#,
            r#"<status>HTTP/1.1 404 Not Found</status></propstat></response>"#,
            r#"<D:response xmlns:D="DAV:"><D:href>/u/cal/gone.ics</D:href>"#,
            r#"<D:status>HTTP/1.1 404 Not Found</D:status></D:response></ns0:multistatus>"#
        );
        let rs = parse_multistatus(xml.as_bytes()).unwrap();
        assert_eq!(rs.len(), 3);
        assert!(rs[0].collection && rs[0].calendar && !rs[0].addressbook);
        assert_eq!(rs[0].etag, None);
        assert_eq!(rs[1].href, "/u/cal/a%20b.ics");
        assert_eq!(rs[1].etag.as_deref(), Some("\"e1\""));
        let data = rs[1].data.as_deref().unwrap();
        assert!(data.contains("UID:x&y\r\n"), "{data:?}");
        assert_eq!(extract_uid(data).as_deref(), Some("x&y"));
        assert_eq!(rs[2].status, Some(404));
    }

    #[test]
    fn failed_propstats_are_ignored_and_bad_xml_is_an_error_without_content() {
        let xml = concat!(
            r#"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/x</d:href><d:propstat>"#,
            r#"<d:prop><d:getetag>"nope"</d:getetag></d:prop>"#,
            r#"<d:status>HTTP/1.1 403 Forbidden</d:status></d:propstat></d:response></d:multistatus>"#
        );
        let rs = parse_multistatus(xml.as_bytes()).unwrap();
        assert_eq!(rs[0].etag, None);
        for bad in [
            "<a><b>secret-person</a>",
            "<a>unterminated secret-person",
            "\u{0}<<",
        ] {
            let err = parse_multistatus(bad.as_bytes()).unwrap_err();
            assert!(!err.contains("secret-person"), "{err}");
        }
    }

    #[test]
    fn segments_round_trip_and_cannot_escape_the_collection() {
        let name = "fogis match/../?#%ö.ics";
        let enc = encode_segment(name);
        assert_eq!(enc, "fogis%20match%2F..%2F%3F%23%25%C3%B6.ics");
        assert_eq!(decode_segment(&enc), name);
        assert_eq!(
            encode_segment("fogis-referee-61318.vcf"),
            "fogis-referee-61318.vcf"
        );
        assert_eq!(decode_segment("50%zz%4"), "50%zz%4");
    }

    #[test]
    fn uid_comes_from_the_object_not_the_alarm_and_is_unfolded() {
        let ics = "BEGIN:VCALENDAR\r\nBEGIN:VTIMEZONE\r\nTZID:X\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\n\
                   BEGIN:VALARM\r\nUID:alarm\r\nEND:VALARM\r\nUID:fogis-match-1\r\n 2@x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(extract_uid(ics).as_deref(), Some("fogis-match-12@x"));
        let vcf = "BEGIN:VCARD\nVERSION:4.0\nuid;VALUE=text:urn:uuid:1\nEND:VCARD\n";
        assert_eq!(extract_uid(vcf).as_deref(), Some("urn:uuid:1"));
        assert_eq!(extract_uid("UID:outside\r\n"), None);
    }
}
