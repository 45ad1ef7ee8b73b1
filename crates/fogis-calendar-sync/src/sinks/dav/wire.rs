//! What the sinks read inside DAV items: the `UID` of a calendar object or vCard, so that a sink
//! can adopt an item that already carries our UID under another resource name. The protocol
//! itself (requests, multistatus, percent-coding) is fogis-dav's.

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
    fn uid_comes_from_the_object_not_the_alarm_and_is_unfolded() {
        let ics = "BEGIN:VCALENDAR\r\nBEGIN:VTIMEZONE\r\nTZID:X\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\n\
                   BEGIN:VALARM\r\nUID:alarm\r\nEND:VALARM\r\nUID:fogis-match-1\r\n 2@x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(extract_uid(ics).as_deref(), Some("fogis-match-12@x"));
        let vcf = "BEGIN:VCARD\nVERSION:4.0\nuid;VALUE=text:urn:uuid:1\nEND:VCARD\n";
        assert_eq!(extract_uid(vcf).as_deref(), Some("urn:uuid:1"));
        assert_eq!(extract_uid("UID:outside\r\n"), None);
    }
}
