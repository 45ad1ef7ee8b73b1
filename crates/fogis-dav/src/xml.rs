//! A tiny namespace-aware XML tree for DAV answers, and the request bodies this crate sends.
//!
//! Servers spell namespaces with whatever prefixes they like (`D:`, `d:`, `ns0:`, a default
//! namespace), so elements are matched by (namespace URI, local name), resolved by quick-xml's
//! `NsReader`. Parse errors name the byte offset, never the document text: item data is
//! personal.

use quick_xml::escape::escape;
use quick_xml::events::{BytesRef, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// `DAV:` (RFC 4918).
pub const DAV: &str = "DAV:";
/// CalDAV (RFC 4791).
pub const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";
/// CardDAV (RFC 6352).
pub const CARDDAV: &str = "urn:ietf:params:xml:ns:carddav";
/// Apple's calendarserver namespace (`getctag`).
pub const CALSERVER: &str = "http://calendarserver.org/ns/";

/// One element: its namespace (empty when unbound), local name, attributes, text and children.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Element {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<(String, String)>,
    /// The element's own text (all text nodes joined), not its children's.
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// True for the element `{ns}name`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// The first child `{ns}name`.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    /// Every child `{ns}name`.
    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The trimmed text, `None` when empty.
    pub fn trimmed(&self) -> Option<String> {
        Some(self.text.trim().to_owned()).filter(|t| !t.is_empty())
    }

    /// The text of the first `DAV:href` child.
    pub fn href(&self) -> Option<String> {
        self.child(DAV, "href").and_then(Element::trimmed)
    }
}

/// Parses a document into its root element.
pub fn parse(body: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("XML is not UTF-8: {e}"))?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Element> = Vec::new();
    let at = |r: &NsReader<&[u8]>| r.buffer_position();
    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok((ResolveResult::Bound(ns), event)) => {
                (String::from_utf8_lossy(ns.as_ref()).into_owned(), event)
            }
            Ok((_, event)) => (String::new(), event),
            Err(e) => return Err(format!("malformed XML near byte {}: {e}", at(&reader))),
        };
        match event {
            Event::Start(e) => {
                let mut element = Element {
                    ns,
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                for attr in e.attributes().flatten() {
                    let key = String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned();
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::default())
                        .map_err(|e| format!("bad attribute near byte {}: {e}", at(&reader)))?;
                    element.attrs.push((key, value.into_owned()));
                }
                stack.push(element);
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("XML closes an element never opened")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::Text(t) => {
                let t = t.xml10_content().map_err(|e| e.to_string())?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t);
                }
            }
            Event::CData(t) => {
                let t = t.xml10_content().map_err(|e| e.to_string())?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    push_reference(&mut top.text, &r)?;
                }
            }
            Event::Eof => return Err("XML ends before its root element closes".into()),
            _ => {}
        }
    }
}

/// Appends a character or predefined entity reference (`&#13;`, `&amp;`); others are dropped.
fn push_reference(buf: &mut String, r: &BytesRef<'_>) -> Result<(), String> {
    if r.is_char_ref() {
        buf.extend(r.resolve_char_ref().map_err(|e| e.to_string())?);
        return Ok(());
    }
    let c = match r.decode().map_err(|e| e.to_string())?.as_ref() {
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

/// One `<response>` of a `207 Multi-Status`: its href, its own status, and the properties of
/// its 2xx propstats (a property the server could not give, 404 say, is left out).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Response {
    pub href: String,
    pub status: Option<u16>,
    pub props: Vec<Element>,
}

impl Response {
    pub fn prop(&self, ns: &str, name: &str) -> Option<&Element> {
        self.props.iter().find(|p| p.is(ns, name))
    }

    /// The text of a property.
    pub fn prop_text(&self, ns: &str, name: &str) -> Option<String> {
        self.prop(ns, name).and_then(Element::trimmed)
    }

    /// The href inside a property (`current-user-principal`, say).
    pub fn prop_href(&self, ns: &str, name: &str) -> Option<String> {
        self.prop(ns, name).and_then(Element::href)
    }

    /// Every href inside a property (`calendar-home-set` may hold several).
    pub fn prop_hrefs(&self, ns: &str, name: &str) -> Vec<String> {
        self.prop(ns, name)
            .map(|p| {
                p.children_named(DAV, "href")
                    .filter_map(Element::trimmed)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True when `resourcetype` holds `{ns}name`.
    pub fn has_type(&self, ns: &str, name: &str) -> bool {
        self.prop(DAV, "resourcetype")
            .is_some_and(|t| t.child(ns, name).is_some())
    }

    /// False only for a response whose own status is not 2xx.
    pub fn ok(&self) -> bool {
        self.status.is_none_or(|s| (200..300).contains(&s))
    }
}

/// Parses a `207 Multi-Status` body.
pub fn parse_multistatus(body: &[u8]) -> Result<Vec<Response>, String> {
    let root = parse(body)?;
    if !root.is(DAV, "multistatus") {
        return Err(format!("expected DAV:multistatus, got <{}>", root.name));
    }
    let mut out = Vec::new();
    for r in root.children_named(DAV, "response") {
        let mut response = Response {
            href: r.href().unwrap_or_default(),
            status: r.child(DAV, "status").and_then(|s| parse_status(&s.text)),
            props: Vec::new(),
        };
        for stat in r.children_named(DAV, "propstat") {
            let status = stat
                .child(DAV, "status")
                .and_then(|s| parse_status(&s.text));
            if status.is_none_or(|s| (200..300).contains(&s)) {
                if let Some(prop) = stat.child(DAV, "prop") {
                    response.props.extend(prop.children.iter().cloned());
                }
            }
        }
        out.push(response);
    }
    Ok(out)
}

/// `HTTP/1.1 200 OK` -> 200.
fn parse_status(line: &str) -> Option<u16> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The precondition of a `DAV:error` body (RFC 4918 16): the first child element that is not
/// a description, as (namespace, name), and the server's human-readable text if it gave one
/// (`responsedescription`, or the text inside the precondition element).
pub fn parse_error(body: &[u8]) -> Option<(String, String, Option<String>)> {
    let root = parse(body).ok()?;
    if !root.is(DAV, "error") {
        return None;
    }
    let condition = root
        .children
        .iter()
        .find(|c| !(c.ns == DAV && c.name == "responsedescription"))?;
    let reason = root
        .child(DAV, "responsedescription")
        .and_then(Element::trimmed)
        .or_else(|| condition.trimmed())
        .or_else(|| root.trimmed());
    Some((condition.ns.clone(), condition.name.clone(), reason))
}

/// A PROPFIND body asking for `props`, each `(namespace, name)`.
pub fn propfind(props: &[(&str, &str)]) -> String {
    let mut body = String::from(r#"<?xml version="1.0" encoding="utf-8"?><D:propfind"#);
    body.push_str(namespaces());
    body.push_str("><D:prop>");
    for (ns, name) in props {
        body.push_str(&format!("<{}:{name}/>", prefix(ns)));
    }
    body.push_str("</D:prop></D:propfind>");
    body
}

/// A `calendar-multiget` or `addressbook-multiget` REPORT body (RFC 4791 7.9, RFC 6352 8.7).
pub fn multiget(ns: &str, hrefs: &[String]) -> String {
    let (root, data) = if ns == CARDDAV {
        ("CR:addressbook-multiget", "CR:address-data")
    } else {
        ("C:calendar-multiget", "C:calendar-data")
    };
    let mut body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><{root}{}>"#,
        namespaces()
    );
    body.push_str(&format!("<D:prop><D:getetag/><{data}/></D:prop>"));
    for href in hrefs {
        body.push_str(&format!("<D:href>{}</D:href>", escape(href.as_str())));
    }
    body.push_str(&format!("</{root}>"));
    body
}

/// MKCALENDAR body (RFC 4791 5.3.1) with a display name and the component set.
pub fn mkcalendar(display_name: &str, components: &[&str]) -> String {
    let mut body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><C:mkcalendar{}><D:set><D:prop><D:displayname>{}</D:displayname>"#,
        namespaces(),
        escape(display_name)
    );
    if !components.is_empty() {
        body.push_str("<C:supported-calendar-component-set>");
        for comp in components {
            body.push_str(&format!(r#"<C:comp name="{}"/>"#, escape(*comp)));
        }
        body.push_str("</C:supported-calendar-component-set>");
    }
    body.push_str("</D:prop></D:set></C:mkcalendar>");
    body
}

/// Extended MKCOL body (RFC 5689) that makes an address book (RFC 6352 6.3.1).
pub fn mkcol_addressbook(display_name: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?><D:mkcol{}><D:set><D:prop>"#,
            r#"<D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype>"#,
            r#"<D:displayname>{}</D:displayname></D:prop></D:set></D:mkcol>"#
        ),
        namespaces(),
        escape(display_name)
    )
}

fn namespaces() -> &'static str {
    concat!(
        r#" xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav""#,
        r#" xmlns:CR="urn:ietf:params:xml:ns:carddav" xmlns:CS="http://calendarserver.org/ns/""#
    )
}

fn prefix(ns: &str) -> &'static str {
    match ns {
        CALDAV => "C",
        CARDDAV => "CR",
        CALSERVER => "CS",
        _ => "D",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn multistatus_by_namespace_not_prefix() {
        let xml = concat!(
            r#"<?xml version="1.0"?><ns0:multistatus xmlns:ns0="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">"#,
            r#"<ns0:response><ns0:href>/u/cal/</ns0:href><ns0:propstat><ns0:prop><ns0:resourcetype>"#,
            r#"<ns0:collection/><c:calendar/></ns0:resourcetype><c:supported-calendar-component-set>"#,
            r#"<c:comp name="VTODO"/></c:supported-calendar-component-set></ns0:prop>"#,
            r#"<ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response>"#,
            r#"<response xmlns="DAV:"><href>/u/cal/a%20b.ics</href><propstat><prop>"#,
            r#"<getetag>&quot;e1&quot;</getetag></prop><status>HTTP/1.1 200 OK</status></propstat>"#,
            r#"<propstat><prop><displayname>hidden</displayname></prop>"#,
            r#"<status>HTTP/1.1 404 Not Found</status></propstat></response>"#,
            r#"<D:response xmlns:D="DAV:"><D:href>/u/cal/gone.ics</D:href>"#,
            r#"<D:status>HTTP/1.1 404 Not Found</D:status></D:response></ns0:multistatus>"#
        );
        let rs = parse_multistatus(xml.as_bytes()).unwrap();
        assert_eq!(rs.len(), 3);
        assert!(rs[0].has_type(DAV, "collection") && rs[0].has_type(CALDAV, "calendar"));
        assert!(!rs[0].has_type(CARDDAV, "addressbook"));
        let comps = rs[0]
            .prop(CALDAV, "supported-calendar-component-set")
            .unwrap();
        assert_eq!(comps.children[0].attr("name"), Some("VTODO"));
        assert_eq!(rs[1].prop_text(DAV, "getetag").as_deref(), Some("\"e1\""));
        assert_eq!(rs[1].prop(DAV, "displayname"), None);
        assert!(!rs[2].ok());
    }

    #[test]
    fn a_calendar_element_in_another_namespace_is_not_a_calendar() {
        let xml = concat!(
            r#"<multistatus xmlns="DAV:"><response><href>/x/</href><propstat><prop>"#,
            r#"<resourcetype><collection/><calendar xmlns="urn:example"/></resourcetype>"#,
            r#"</prop></propstat></response></multistatus>"#
        );
        let rs = parse_multistatus(xml.as_bytes()).unwrap();
        assert!(!rs[0].has_type(CALDAV, "calendar"));
    }

    #[test]
    fn error_bodies_name_the_precondition_and_the_reason() {
        let xandikos = concat!(
            r#"<ns0:error xmlns:ns0="DAV:" xmlns:ns1="urn:ietf:params:xml:ns:caldav">"#,
            r#"<ns1:supported-calendar-component /><ns0:responsedescription>This calendar "#,
            r#"does not accept VEVENT components.</ns0:responsedescription></ns0:error>"#
        );
        let (ns, name, reason) = parse_error(xandikos.as_bytes()).unwrap();
        assert_eq!(
            (ns.as_str(), name.as_str()),
            (CALDAV, "supported-calendar-component")
        );
        assert_eq!(
            reason.as_deref(),
            Some("This calendar does not accept VEVENT components.")
        );
        let sabre = concat!(
            r#"<d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" "#,
            r#"xmlns:cal="urn:ietf:params:xml:ns:caldav"><cal:valid-calendar-data/>"#,
            r#"<s:message>bad data</s:message></d:error>"#
        );
        let (_, name, _) = parse_error(sabre.as_bytes()).unwrap();
        assert_eq!(name, "valid-calendar-data");
        assert_eq!(parse_error(b"<html>Forbidden</html>"), None);
        assert_eq!(parse_error(b"Forbidden"), None);
    }

    #[test]
    fn bad_xml_is_an_error_without_its_content() {
        for bad in [
            "<a><b>secret-person</a>",
            "<a>unterminated secret-person",
            "\u{0}<<",
            "",
        ] {
            let err = parse(bad.as_bytes()).unwrap_err();
            assert!(!err.contains("secret-person"), "{err}");
        }
    }

    #[test]
    fn request_bodies_are_well_formed_and_escape_names() {
        let mk = mkcalendar("Matcher & <co>", &["VTODO"]);
        let root = parse(mk.as_bytes()).unwrap();
        assert!(root.is(CALDAV, "mkcalendar"));
        let prop = &root.children[0].children[0];
        assert_eq!(
            prop.child(DAV, "displayname").unwrap().text,
            "Matcher & <co>"
        );
        let ab = parse(mkcol_addressbook("A").as_bytes()).unwrap();
        assert!(ab.is(DAV, "mkcol"));
        let pf = parse(propfind(&[(DAV, "resourcetype"), (CALSERVER, "getctag")]).as_bytes());
        let pf = pf.unwrap();
        assert!(pf.children[0].child(CALSERVER, "getctag").is_some());
        let mg = parse(multiget(CARDDAV, &["/a&b.vcf".into()]).as_bytes()).unwrap();
        assert!(mg.is(CARDDAV, "addressbook-multiget"));
        assert_eq!(mg.href().as_deref(), Some("/a&b.vcf"));
    }
}
