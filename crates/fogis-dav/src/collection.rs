//! What a collection is and holds: its kind, the components and vCard versions it takes, its
//! members and items, and the URLs of items inside it.

use reqwest::Url;

use crate::xml::{self, CALDAV, CALSERVER, CARDDAV, DAV};
use crate::DavError;

/// Whether a collection is a calendar or an address book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollectionKind {
    Calendar,
    AddressBook,
}

/// A vCard version an address book takes (RFC 6352 6.2.2 `supported-address-data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VcardVersion {
    V3,
    V4,
}

/// What a PROPFIND Depth 0 tells about a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub url: Url,
    /// `None` for a plain WebDAV collection (a home, say) or something else.
    pub kind: Option<CollectionKind>,
    pub display_name: Option<String>,
    /// `supported-calendar-component-set` (`VEVENT`, `VTODO`); empty when not stated, which
    /// RFC 4791 5.2.3 says means "any".
    pub components: Vec<String>,
    /// vCard versions of `supported-address-data`; empty when not stated.
    pub vcard_versions: Vec<VcardVersion>,
    /// Apple's `getctag`: changes whenever any member changes.
    pub ctag: Option<String>,
    /// RFC 6578 `sync-token`.
    pub sync_token: Option<String>,
}

impl Collection {
    /// Whether the calendar takes components of this type (`VEVENT`).
    pub fn accepts_component(&self, component: &str) -> bool {
        self.components.is_empty()
            || self
                .components
                .iter()
                .any(|c| c.eq_ignore_ascii_case(component))
    }

    /// The vCard version to write: 4.0 where offered, else 3.0, which RFC 6352 5.1 makes every
    /// server accept (and the default when `supported-address-data` is absent).
    pub fn vcard_version(&self) -> VcardVersion {
        self.vcard_versions
            .iter()
            .copied()
            .max()
            .unwrap_or(VcardVersion::V3)
    }
}

/// A member of a collection, from a PROPFIND Depth 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub url: Url,
    /// The last path segment, percent-decoded (`fogis-match-6186203.ics`).
    pub name: String,
    pub etag: Option<String>,
    /// True for a sub-collection.
    pub is_collection: bool,
}

/// An item's data with its ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub url: Url,
    pub etag: Option<String>,
    pub data: String,
}

/// The URL of item `name` in `collection`: the collection (with a trailing `/`) plus the
/// percent-encoded name, so `/`, `?`, `#` and `%` in a name can never leave the collection.
pub fn item_url(collection: &Url, name: &str) -> Result<Url, DavError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(DavError::Protocol(format!("invalid item name {name:?}")));
    }
    let mut base = collection.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let segment = percent_encoding::utf8_percent_encode(name, SEGMENT).to_string();
    base.join(&segment)
        .map_err(|e| DavError::Protocol(format!("invalid item name: {e}")))
}

/// Everything but RFC 3986 unreserved characters is encoded in a path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn collection_of(url: Url, r: &xml::Response) -> Collection {
    let kind = if r.has_type(CALDAV, "calendar") {
        Some(CollectionKind::Calendar)
    } else if r.has_type(CARDDAV, "addressbook") {
        Some(CollectionKind::AddressBook)
    } else {
        None
    };
    let components = r
        .prop(CALDAV, "supported-calendar-component-set")
        .map(|set| {
            set.children_named(CALDAV, "comp")
                .filter_map(|c| c.attr("name"))
                .map(str::to_ascii_uppercase)
                .collect()
        })
        .unwrap_or_default();
    let mut vcard_versions: Vec<VcardVersion> = r
        .prop(CARDDAV, "supported-address-data")
        .map(|set| {
            // RFC 6352 names the element `address-data-type`; Xandikos 0.4 writes
            // `content-type`. Either carries the two attributes that matter.
            set.children
                .iter()
                .filter(|t| t.ns == CARDDAV)
                .filter(|t| {
                    t.attr("content-type")
                        .is_none_or(|c| c.eq_ignore_ascii_case("text/vcard"))
                })
                .filter_map(|t| match t.attr("version").unwrap_or("3.0") {
                    "3.0" => Some(VcardVersion::V3),
                    "4.0" => Some(VcardVersion::V4),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    vcard_versions.sort();
    vcard_versions.dedup();
    Collection {
        url,
        kind,
        display_name: r.prop_text(DAV, "displayname"),
        components,
        vcard_versions,
        ctag: r.prop_text(CALSERVER, "getctag"),
        sync_token: r.prop_text(DAV, "sync-token"),
    }
}

/// True when `href` (relative to `base`) names the same path as `base`, trailing `/` aside.
pub(crate) fn same_path(base: &Url, href: &str) -> bool {
    let trim = |p: &str| p.trim_end_matches('/').to_owned();
    base.join(href.trim())
        .is_ok_and(|u| trim(u.path()) == trim(base.path()))
}

/// The decoded last path segment.
pub(crate) fn last_segment(url: &Url) -> Option<String> {
    let last = url.path().trim_end_matches('/').rsplit('/').next()?;
    let decoded = percent_encoding::percent_decode_str(last).decode_utf8_lossy();
    Some(decoded.into_owned()).filter(|n| !n.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn item_names_cannot_escape_the_collection() {
        let c = Url::parse("http://h/u/cal").unwrap();
        let u = item_url(&c, "fogis match/../?#%ö.ics").unwrap();
        assert_eq!(
            u.as_str(),
            "http://h/u/cal/fogis%20match%2F..%2F%3F%23%25%C3%B6.ics"
        );
        assert_eq!(last_segment(&u).as_deref(), Some("fogis match/../?#%ö.ics"));
        assert!(item_url(&c, "..").is_err());
    }

    #[test]
    fn vcard_version_prefers_4_and_defaults_to_3() {
        let xandikos = concat!(
            r#"<ns0:multistatus xmlns:ns0="DAV:" xmlns:ns1="urn:ietf:params:xml:ns:carddav"><ns0:response>"#,
            r#"<ns0:href>/ab/</ns0:href><ns0:propstat><ns0:prop><ns1:supported-address-data>"#,
            r#"<ns1:content-type content-type="text/vcard" version="4.0" /></ns1:supported-address-data>"#,
            r#"</ns0:prop></ns0:propstat></ns0:response></ns0:multistatus>"#
        );
        let rs = xml::parse_multistatus(xandikos.as_bytes()).unwrap();
        let c = collection_of(Url::parse("http://h/ab/").unwrap(), &rs[0]);
        assert_eq!(c.vcard_versions, vec![VcardVersion::V4]);
        let xml = concat!(
            r#"<d:multistatus xmlns:d="DAV:" xmlns:r="urn:ietf:params:xml:ns:carddav"><d:response>"#,
            r#"<d:href>/ab/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/><r:addressbook/>"#,
            r#"</d:resourcetype><r:supported-address-data><r:address-data-type content-type="text/vcard" "#,
            r#"version="3.0"/></r:supported-address-data></d:prop></d:propstat></d:response></d:multistatus>"#
        );
        let rs = xml::parse_multistatus(xml.as_bytes()).unwrap();
        let c = collection_of(Url::parse("http://h/ab/").unwrap(), &rs[0]);
        assert_eq!(c.kind, Some(CollectionKind::AddressBook));
        assert_eq!(c.vcard_versions, vec![VcardVersion::V3]);
        assert_eq!(c.vcard_version(), VcardVersion::V3);
        let both = Collection {
            vcard_versions: vec![VcardVersion::V3, VcardVersion::V4],
            ..c.clone()
        };
        assert_eq!(both.vcard_version(), VcardVersion::V4);
        let unstated = Collection {
            vcard_versions: vec![],
            ..c
        };
        assert_eq!(unstated.vcard_version(), VcardVersion::V3);
        assert!(unstated.accepts_component("VEVENT"));
    }
}
