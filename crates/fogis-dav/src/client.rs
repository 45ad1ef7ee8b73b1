//! [`DavClient`]: one authenticated HTTP session and the WebDAV, CalDAV and CardDAV requests
//! this crate speaks. Every operation takes the URL it works on, so one client serves a whole
//! server (discovery walks from the root to a collection with it).
//!
//! Redirects are not followed by the HTTP layer: a PUT or DELETE that is silently redirected
//! can land somewhere else, and credentials must not travel to another host by themselves. A
//! 3xx is [`DavError::Redirect`]; only discovery follows them, on purpose ([`crate::discovery`]).

use std::time::Duration;

use reqwest::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH,
};
use reqwest::{Method, StatusCode, Url};

use crate::auth::{AfterChallenge, Auth, Credentials};
use crate::error::status_error;
use crate::xml::{self, CALDAV, CALSERVER, CARDDAV, DAV};
use crate::DavError;

/// Largest answer read into memory (a REPORT with every item of a big calendar fits easily).
const MAX_BODY: usize = 32 * 1024 * 1024;
const XML_TYPE: &str = "application/xml; charset=utf-8";

/// What a PUT requires of the item already on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// `If-None-Match: *`: only create; an existing item gives [`DavError::PreconditionFailed`].
    CreateOnly,
    /// `If-Match: <etag>`: only replace this exact version.
    IfMatch(String),
    /// Write whatever is there.
    Unconditional,
}

/// `Depth` of a PROPFIND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Zero,
    One,
}

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

/// Builds a [`DavClient`].
#[derive(Debug)]
pub struct ClientBuilder {
    credentials: Option<Credentials>,
    timeout: Duration,
    preemptive_basic: bool,
    user_agent: String,
}

impl ClientBuilder {
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials {
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// Per-request timeout (connect and whole answer). Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Send Basic credentials before the server asks, for servers that never challenge but
    /// look at credentials when present (Radicale with `auth type = none` names the principal
    /// after them). Off by default: the password would travel as Basic even to a Digest server.
    pub fn preemptive_basic(mut self, yes: bool) -> Self {
        self.preemptive_basic = yes;
        self
    }

    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    pub fn build(self) -> Result<DavClient, DavError> {
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(self.user_agent)
            .build()
            .map_err(DavError::from_reqwest)?;
        Ok(DavClient {
            http,
            auth: Auth::new(self.credentials, self.preemptive_basic),
        })
    }
}

/// One HTTP session against a DAV server. Cheap to share behind an `Arc`; requests may run
/// concurrently.
#[derive(Debug)]
pub struct DavClient {
    http: reqwest::Client,
    auth: Auth,
}

/// A request kept whole so that it can be sent again after a challenge.
struct Request {
    method: Method,
    url: Url,
    headers: Vec<(HeaderName, String)>,
    body: Option<String>,
}

impl DavClient {
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            credentials: None,
            timeout: Duration::from_secs(30),
            preemptive_basic: false,
            user_agent: concat!("fogis-dav/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The authentication scheme in use, once the server has asked for one.
    pub fn auth_scheme(&self) -> Option<&'static str> {
        self.auth.scheme_name()
    }

    /// Sends a request, answering one authentication challenge. A 401 never comes back as a
    /// response: it is one of the authentication errors.
    async fn send(&self, request: Request) -> Result<reqwest::Response, DavError> {
        let target = match request.url.query() {
            Some(q) => format!("{}?{q}", request.url.path()),
            None => request.url.path().to_owned(),
        };
        let method = request.method.as_str().to_owned();
        let first = self.auth.authorization(&method, &target);
        let resp = self.send_once(&request, first.as_deref()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let sent = first.as_deref().and_then(scheme_of);
        let AfterChallenge::Retry(value) =
            self.auth
                .on_unauthorized(resp.headers(), sent, &method, &target)?;
        let resp = self.send_once(&request, Some(&value)).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let sent = scheme_of(&value);
        // A second challenge can still be a stale nonce or a change of scheme; after that, no.
        match self
            .auth
            .on_unauthorized(resp.headers(), sent, &method, &target)?
        {
            AfterChallenge::Retry(_) => Err(DavError::CredentialsRefused {
                scheme: sent.unwrap_or("Basic"),
            }),
        }
    }

    async fn send_once(
        &self,
        request: &Request,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, DavError> {
        let mut builder = self
            .http
            .request(request.method.clone(), request.url.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(value) = authorization {
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                DavError::Protocol("credentials that cannot be sent in a header".into())
            })?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        builder.send().await.map_err(DavError::from_reqwest)
    }

    /// A PROPFIND for `props`; the multistatus responses.
    pub async fn propfind(
        &self,
        url: &Url,
        depth: Depth,
        props: &[(&str, &str)],
    ) -> Result<Vec<xml::Response>, DavError> {
        let depth = match depth {
            Depth::Zero => "0",
            Depth::One => "1",
        };
        self.multistatus(method("PROPFIND")?, url, depth, xml::propfind(props))
            .await
    }

    async fn multistatus(
        &self,
        method: Method,
        url: &Url,
        depth: &str,
        body: String,
    ) -> Result<Vec<xml::Response>, DavError> {
        let request = Request {
            method,
            url: url.clone(),
            headers: vec![
                (HeaderName::from_static("depth"), depth.to_owned()),
                (CONTENT_TYPE, XML_TYPE.to_owned()),
            ],
            body: Some(body),
        };
        let resp = self.send(request).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        let body = read_body(resp).await?;
        xml::parse_multistatus(&body).map_err(DavError::Protocol)
    }

    /// The collection's type, name, supported components and vCard versions, and change tags.
    /// `None` when nothing is there.
    pub async fn collection(&self, url: &Url) -> Result<Option<Collection>, DavError> {
        const PROPS: &[(&str, &str)] = &[
            (DAV, "resourcetype"),
            (DAV, "displayname"),
            (DAV, "sync-token"),
            (CALDAV, "supported-calendar-component-set"),
            (CARDDAV, "supported-address-data"),
            (CALSERVER, "getctag"),
        ];
        let responses = match self.propfind(url, Depth::Zero, PROPS).await {
            Err(DavError::NotFound { .. }) => return Ok(None),
            other => other?,
        };
        let Some(own) = responses
            .iter()
            .find(|r| same_path(url, &r.href))
            .or(responses.first())
        else {
            return Ok(None);
        };
        if !own.ok() {
            return Ok(None);
        }
        Ok(Some(collection_of(url.clone(), own)))
    }

    /// Every member with its ETag (PROPFIND Depth 1), the collection itself left out.
    pub async fn members(&self, collection: &Url) -> Result<Vec<Member>, DavError> {
        let props = [(DAV, "resourcetype"), (DAV, "getetag")];
        let responses = self.propfind(collection, Depth::One, &props).await?;
        Ok(responses
            .into_iter()
            .filter(|r| r.ok() && !same_path(collection, &r.href))
            .filter_map(|r| {
                let url = collection.join(&r.href).ok()?;
                let name = last_segment(&url)?;
                Some(Member {
                    name,
                    etag: r.prop_text(DAV, "getetag"),
                    is_collection: r.has_type(DAV, "collection"),
                    url,
                })
            })
            .collect())
    }

    /// The data of several items in one REPORT (`calendar-multiget` or
    /// `addressbook-multiget`). Items the server could not find are left out.
    pub async fn multiget(
        &self,
        collection: &Url,
        kind: CollectionKind,
        items: &[Url],
    ) -> Result<Vec<Item>, DavError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (ns, data) = match kind {
            CollectionKind::Calendar => (CALDAV, "calendar-data"),
            CollectionKind::AddressBook => (CARDDAV, "address-data"),
        };
        let hrefs: Vec<String> = items.iter().map(|u| u.path().to_owned()).collect();
        let responses = self
            .multistatus(
                method("REPORT")?,
                collection,
                "1",
                xml::multiget(ns, &hrefs),
            )
            .await?;
        Ok(responses
            .into_iter()
            .filter(|r| r.ok())
            .filter_map(|r| {
                Some(Item {
                    url: collection.join(&r.href).ok()?,
                    etag: r.prop_text(DAV, "getetag"),
                    data: r.prop(ns, data)?.text.clone(),
                })
            })
            .collect())
    }

    /// The item, or `None` when there is none (404/410).
    pub async fn get(&self, url: &Url) -> Result<Option<Item>, DavError> {
        let resp = self.send(plain(Method::GET, url)).await?;
        if matches!(resp.status().as_u16(), 404 | 410) {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        let etag = strong_etag(&resp);
        let body = read_body(resp).await?;
        Ok(Some(Item {
            url: url.clone(),
            etag,
            data: String::from_utf8_lossy(&body).into_owned(),
        }))
    }

    /// Stores `body` at `url`; returns the new strong ETag when the server tells it (in the
    /// answer, or else through a PROPFIND of the item). A weak ETag is never returned:
    /// `If-Match` compares strongly, so it could never match.
    pub async fn put(
        &self,
        url: &Url,
        body: String,
        content_type: &str,
        precondition: Precondition,
    ) -> Result<Option<String>, DavError> {
        let mut request = plain(Method::PUT, url);
        request
            .headers
            .push((CONTENT_TYPE, content_type.to_owned()));
        match precondition {
            Precondition::CreateOnly => request.headers.push((IF_NONE_MATCH, "*".into())),
            Precondition::IfMatch(etag) => request.headers.push((IF_MATCH, etag)),
            Precondition::Unconditional => {}
        }
        request.body = Some(body);
        let resp = self.send(request).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        if let Some(etag) = strong_etag(&resp) {
            return Ok(Some(etag));
        }
        // The item is stored; not knowing its ETag only costs an unconditional write later,
        // while an error here would make the caller repeat a write that succeeded.
        match self.propfind(url, Depth::Zero, &[(DAV, "getetag")]).await {
            Ok(found) => Ok(found
                .iter()
                .find_map(|r| r.prop_text(DAV, "getetag"))
                .filter(|e| !e.starts_with("W/"))),
            Err(e) => {
                tracing::debug!(error = %e, "could not learn the ETag after PUT");
                Ok(None)
            }
        }
    }

    /// Deletes the item; with an ETag only that version (`If-Match`), so an item someone else
    /// changed meanwhile gives [`DavError::PreconditionFailed`] instead of being lost. An item
    /// already gone is success: deleting is idempotent.
    pub async fn delete(&self, url: &Url, etag: Option<&str>) -> Result<(), DavError> {
        let mut request = plain(Method::DELETE, url);
        if let Some(etag) = etag {
            request.headers.push((IF_MATCH, etag.to_owned()));
        }
        let resp = self.send(request).await?;
        match resp.status().as_u16() {
            404 | 410 => Ok(()),
            _ if resp.status().is_success() => Ok(()),
            _ => Err(status_error(resp).await),
        }
    }

    /// Creates a calendar (MKCALENDAR, RFC 4791 5.3.1) taking `components` (all if empty).
    pub async fn mkcalendar(
        &self,
        url: &Url,
        display_name: &str,
        components: &[&str],
    ) -> Result<(), DavError> {
        self.make(
            method("MKCALENDAR")?,
            url,
            xml::mkcalendar(display_name, components),
        )
        .await
    }

    /// Creates an address book (extended MKCOL, RFC 5689 and RFC 6352 6.3.1).
    pub async fn mkcol_addressbook(&self, url: &Url, display_name: &str) -> Result<(), DavError> {
        self.make(method("MKCOL")?, url, xml::mkcol_addressbook(display_name))
            .await
    }

    async fn make(&self, method: Method, url: &Url, body: String) -> Result<(), DavError> {
        let mut request = plain(method, url);
        request.headers.push((CONTENT_TYPE, XML_TYPE.to_owned()));
        request.body = Some(body);
        let resp = self.send(request).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(status_error(resp).await)
    }

    /// Sends a body-less request and returns the raw answer (401 already handled); for
    /// discovery, which must see redirects.
    pub(crate) async fn raw(
        &self,
        method: Method,
        url: &Url,
        depth: Option<&str>,
        body: Option<String>,
    ) -> Result<reqwest::Response, DavError> {
        let mut request = plain(method, url);
        if let Some(depth) = depth {
            request
                .headers
                .push((HeaderName::from_static("depth"), depth.to_owned()));
        }
        if let Some(body) = body {
            request.headers.push((CONTENT_TYPE, XML_TYPE.to_owned()));
            request.body = Some(body);
        }
        self.send(request).await
    }
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

fn plain(method: Method, url: &Url) -> Request {
    Request {
        method,
        url: url.clone(),
        headers: Vec::new(),
        body: None,
    }
}

fn scheme_of(authorization: &str) -> Option<&'static str> {
    if authorization.starts_with("Digest ") {
        Some("Digest")
    } else if authorization.starts_with("Basic ") {
        Some("Basic")
    } else {
        None
    }
}

/// A WebDAV extension method.
fn method(name: &str) -> Result<Method, DavError> {
    Method::from_bytes(name.as_bytes()).map_err(|e| DavError::Protocol(e.to_string()))
}

fn strong_etag(resp: &reqwest::Response) -> Option<String> {
    let etag = resp.headers().get(ETAG)?.to_str().ok()?.trim();
    (!etag.is_empty() && !etag.starts_with("W/")).then(|| etag.to_owned())
}

/// Reads at most [`MAX_BODY`] bytes; more is a protocol error.
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, DavError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(DavError::from_reqwest)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(DavError::Protocol(format!(
                "answer larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
