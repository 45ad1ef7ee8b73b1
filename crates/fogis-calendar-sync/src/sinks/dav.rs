//! A small async WebDAV client for one CalDAV calendar or CardDAV address book.
//!
//! The sinks need only a handful of operations, each idempotent when used with the right
//! precondition: make sure the collection exists, PUT an item with `If-None-Match: *` (create)
//! or `If-Match` (update), GET, DELETE, list the items with their ETags, and find the `UID`
//! inside every item so that a sink can adopt an event or card that already carries our UID
//! under another resource name (a client may have copied it, or a previous install used other
//! names). Multistatus answers are parsed in `wire`, by local element name, because servers
//! choose their own namespace prefixes.
//!
//! Errors say what a caller must do next: [`DavError::is_auth`] means "stop and fix the
//! configuration" (never retry it in a loop), [`DavError::is_retryable`] means "try again later",
//! and [`DavError::PreconditionFailed`] means "someone else changed it: re-read". Errors never
//! carry the password, and of a server's answer at most a 200-character excerpt of its error
//! text, since item data is personal.
//!
//! Redirects are not followed: a PUT or DELETE that is silently redirected can land somewhere
//! else, and credentials must not travel to another host. A 3xx answer is an error naming the
//! new location, so the operator can configure the final collection URL.

mod error;
mod wire;

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH};
use reqwest::{Method, RequestBuilder, Response, Url};

use error::status_error;

pub use error::DavError;
pub use wire::extract_uid;

/// Largest answer read into memory (a REPORT with every item of a big calendar fits easily).
const MAX_BODY: usize = 32 * 1024 * 1024;
const XML: &str = "application/xml; charset=utf-8";

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

/// One item of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The last path segment, percent-decoded (`fogis-match-6186203.ics`).
    pub name: String,
    /// The href as the server wrote it.
    pub href: String,
    pub etag: Option<String>,
    /// The `UID` inside the item; only [`DavClient::find_uids`] reads it.
    pub uid: Option<String>,
}

/// Whether the collection is a calendar or an address book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionKind {
    Calendar,
    AddressBook,
}

/// What a PROPFIND of the collection found.
enum Probe {
    Missing,
    Is(CollectionKind),
    Other,
}

/// A client for one collection. Cheap to share behind an `Arc`; requests may run concurrently.
pub struct DavClient {
    http: reqwest::Client,
    collection: Url,
    username: Option<String>,
    password: Option<String>,
    /// Learned by `ensure_*` or by the first [`DavClient::find_uids`].
    kind: OnceLock<CollectionKind>,
}

impl std::fmt::Debug for DavClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DavClient")
            .field("collection", &self.collection.as_str())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("kind", &self.kind.get())
            .finish()
    }
}

impl DavClient {
    /// A client for the collection at `collection_url` (a trailing `/` is added). Credentials in
    /// the URL itself are taken out of it, so the URL can be logged; explicit ones win. With a
    /// username, every request carries Basic authentication.
    pub fn new(
        collection_url: &str,
        username: Option<String>,
        password: Option<String>,
        timeout: Duration,
    ) -> Result<DavClient, DavError> {
        let mut url = Url::parse(collection_url.trim())
            .map_err(|e| DavError::Protocol(format!("invalid collection URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(DavError::Protocol(
                "the collection URL must be http(s)://host/...".into(),
            ));
        }
        let url_user = Some(wire::decode_segment(url.username())).filter(|u| !u.is_empty());
        let url_password = url.password().map(wire::decode_segment);
        // Cannot fail for an http(s) URL with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let (username, password) = match username {
            Some(u) => (Some(u), password),
            None => (url_user, password.or(url_password)),
        };
        let http = crate::outbound::client(timeout)
            .build()
            .map_err(DavError::from_reqwest)?;
        Ok(DavClient {
            http,
            collection: url,
            username,
            password,
            kind: OnceLock::new(),
        })
    }

    /// The collection URL, always ending with `/`, without credentials.
    pub fn collection_url(&self) -> &str {
        self.collection.as_str()
    }

    /// Makes sure the collection exists and is a calendar, creating it with MKCALENDAR.
    pub async fn ensure_calendar(&self, display_name: &str) -> Result<(), DavError> {
        let body = wire::mkcalendar(display_name);
        self.ensure(CollectionKind::Calendar, "MKCALENDAR", body)
            .await
    }

    /// Makes sure the collection exists and is an address book, creating it with an extended
    /// MKCOL (RFC 5689).
    pub async fn ensure_addressbook(&self, display_name: &str) -> Result<(), DavError> {
        let body = wire::mkcol_addressbook(display_name);
        self.ensure(CollectionKind::AddressBook, "MKCOL", body)
            .await
    }

    async fn ensure(
        &self,
        want: CollectionKind,
        method: &str,
        body: String,
    ) -> Result<(), DavError> {
        match self.probe().await? {
            Probe::Is(kind) if kind == want => return self.found(kind),
            Probe::Is(_) | Probe::Other => return Err(not_a(want)),
            Probe::Missing => {}
        }
        let request = self
            .request(dav_method(method)?, self.collection.clone())
            .header(CONTENT_TYPE, XML)
            .body(body);
        let resp = self.send(request).await?;
        let status = resp.status();
        if status.is_success() {
            tracing::info!(collection = %self.collection, kind = ?want, "created the collection");
            return self.found(want);
        }
        let error = status_error(resp).await;
        // Someone may have created it meanwhile. RFC 4791 says 405 for an existing resource;
        // Radicale 3 answers 409 (resource-must-be-null) to MKCALENDAR and 403 to MKCOL.
        if matches!(status.as_u16(), 403 | 405 | 409) {
            if let Probe::Is(kind) = self.probe().await? {
                return if kind == want {
                    self.found(kind)
                } else {
                    Err(not_a(want))
                };
            }
        }
        Err(error)
    }

    fn found(&self, kind: CollectionKind) -> Result<(), DavError> {
        let _ = self.kind.set(kind);
        Ok(())
    }

    /// PROPFIND Depth 0 of the collection.
    async fn probe(&self) -> Result<Probe, DavError> {
        let found = self.propfind(self.collection.clone(), "0").await;
        let responses = match found {
            Err(DavError::NotFound) => return Ok(Probe::Missing),
            other => other?,
        };
        let own = responses
            .iter()
            .find(|r| self.is_collection_href(&r.href))
            .or(responses.first());
        Ok(match own {
            Some(r) if r.calendar => Probe::Is(CollectionKind::Calendar),
            Some(r) if r.addressbook => Probe::Is(CollectionKind::AddressBook),
            Some(r) if r.status == Some(404) => Probe::Missing,
            _ => Probe::Other,
        })
    }

    /// Stores `body` as the item `name`; returns its new ETag when the server tells it (in the
    /// answer, or else through a PROPFIND of the item). A weak ETag is not returned: `If-Match`
    /// compares strongly, so it could never match.
    pub async fn put(
        &self,
        name: &str,
        body: String,
        content_type: &str,
        precondition: Precondition,
    ) -> Result<Option<String>, DavError> {
        let url = self.item_url(name)?;
        let mut request = self
            .request(Method::PUT, url.clone())
            .header(CONTENT_TYPE, content_type)
            .body(body);
        request = match &precondition {
            Precondition::CreateOnly => request.header(IF_NONE_MATCH, "*"),
            Precondition::IfMatch(etag) => request.header(IF_MATCH, etag.as_str()),
            Precondition::Unconditional => request,
        };
        let resp = self.send(request).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        if let Some(etag) = strong_etag(&resp) {
            return Ok(Some(etag));
        }
        // The item is stored; not knowing its ETag only costs an unconditional write later,
        // while an error here would make the caller repeat a write that succeeded.
        match self.propfind(url, "0").await {
            Ok(found) => Ok(found
                .into_iter()
                .find_map(|r| r.etag)
                .filter(|e| !e.starts_with("W/"))),
            Err(e) => {
                tracing::debug!(item = name, error = %e, "could not learn the ETag after PUT");
                Ok(None)
            }
        }
    }

    /// The item's text and ETag, or `None` if there is no such item.
    pub async fn get(&self, name: &str) -> Result<Option<(String, Option<String>)>, DavError> {
        let resp = self
            .send(self.request(Method::GET, self.item_url(name)?))
            .await?;
        if matches!(resp.status().as_u16(), 404 | 410) {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        let etag = strong_etag(&resp);
        let body = read_body(resp, MAX_BODY).await?;
        Ok(Some((String::from_utf8_lossy(&body).into_owned(), etag)))
    }

    /// Deletes the item (only this version, with an ETag). An item that is already gone is
    /// success: deleting is idempotent.
    pub async fn delete(&self, name: &str, etag: Option<&str>) -> Result<(), DavError> {
        let mut request = self.request(Method::DELETE, self.item_url(name)?);
        if let Some(etag) = etag {
            request = request.header(IF_MATCH, etag);
        }
        let resp = self.send(request).await?;
        match resp.status().as_u16() {
            404 | 410 => Ok(()),
            _ if resp.status().is_success() => Ok(()),
            _ => Err(status_error(resp).await),
        }
    }

    /// Every item of the collection with its ETag (PROPFIND Depth 1); sub-collections are left
    /// out. `uid` stays `None`.
    pub async fn list(&self) -> Result<Vec<Resource>, DavError> {
        let responses = self.propfind(self.collection.clone(), "1").await?;
        Ok(self.resources(responses))
    }

    /// Every item with its ETag and the `UID` inside it, by a REPORT calendar-query or
    /// addressbook-query that asks for the item data.
    pub async fn find_uids(&self) -> Result<Vec<Resource>, DavError> {
        let kind = match self.kind.get() {
            Some(kind) => *kind,
            None => match self.probe().await? {
                Probe::Is(kind) => {
                    let _ = self.kind.set(kind);
                    kind
                }
                Probe::Missing => return Err(DavError::NotFound),
                Probe::Other => {
                    let text = "the collection is neither a calendar nor an address book";
                    return Err(DavError::Protocol(text.into()));
                }
            },
        };
        let body = match kind {
            CollectionKind::Calendar => wire::CALENDAR_QUERY,
            CollectionKind::AddressBook => wire::ADDRESSBOOK_QUERY,
        };
        let responses = self
            .multistatus(dav_method("REPORT")?, self.collection.clone(), "1", body)
            .await?;
        Ok(self.resources(responses))
    }

    fn resources(&self, responses: Vec<wire::Response>) -> Vec<Resource> {
        responses
            .into_iter()
            .filter(|r| !r.collection && r.status.is_none_or(|s| (200..300).contains(&s)))
            .filter(|r| !self.is_collection_href(&r.href))
            .filter_map(|r| {
                let name = self.name_of(&r.href)?;
                let uid = r.data.as_deref().and_then(wire::extract_uid);
                Some(Resource {
                    name,
                    href: r.href,
                    etag: r.etag,
                    uid,
                })
            })
            .collect()
    }

    async fn propfind(&self, url: Url, depth: &str) -> Result<Vec<wire::Response>, DavError> {
        self.multistatus(dav_method("PROPFIND")?, url, depth, wire::PROPFIND)
            .await
    }

    async fn multistatus(
        &self,
        method: Method,
        url: Url,
        depth: &str,
        body: &'static str,
    ) -> Result<Vec<wire::Response>, DavError> {
        let request = self
            .request(method, url)
            .header("Depth", depth)
            .header(CONTENT_TYPE, XML)
            .body(body);
        let resp = self.send(request).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        let body = read_body(resp, MAX_BODY).await?;
        wire::parse_multistatus(&body).map_err(DavError::Protocol)
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.username {
            Some(user) => request.basic_auth(user, self.password.as_deref()),
            None => request,
        }
    }

    async fn send(&self, request: RequestBuilder) -> Result<Response, DavError> {
        request.send().await.map_err(DavError::from_reqwest)
    }

    /// The URL of item `name`: the collection plus the percent-encoded name.
    fn item_url(&self, name: &str) -> Result<Url, DavError> {
        if name.is_empty() || name == "." || name == ".." {
            return Err(DavError::Protocol(format!("invalid item name {name:?}")));
        }
        self.collection
            .join(&wire::encode_segment(name))
            .map_err(|e| DavError::Protocol(format!("invalid item name: {e}")))
    }

    fn resolve(&self, href: &str) -> Option<Url> {
        self.collection.join(href.trim()).ok()
    }

    fn is_collection_href(&self, href: &str) -> bool {
        let trim = |p: &str| p.trim_end_matches('/').to_owned();
        self.resolve(href)
            .is_some_and(|u| trim(u.path()) == trim(self.collection.path()))
    }

    /// The decoded last path segment of `href`.
    fn name_of(&self, href: &str) -> Option<String> {
        let url = self.resolve(href)?;
        let last = url.path().trim_end_matches('/').rsplit('/').next()?;
        Some(wire::decode_segment(last)).filter(|n| !n.is_empty())
    }
}

/// A WebDAV extension method (PROPFIND, REPORT, MKCALENDAR, MKCOL).
fn dav_method(name: &str) -> Result<Method, DavError> {
    Method::from_bytes(name.as_bytes()).map_err(|e| DavError::Protocol(e.to_string()))
}

fn not_a(want: CollectionKind) -> DavError {
    let what = match want {
        CollectionKind::Calendar => "a calendar",
        CollectionKind::AddressBook => "an address book",
    };
    DavError::Protocol(format!("the collection exists but is not {what}"))
}

fn strong_etag(resp: &Response) -> Option<String> {
    let etag = resp.headers().get(ETAG)?.to_str().ok()?.trim();
    (!etag.is_empty() && !etag.starts_with("W/")).then(|| etag.to_owned())
}

/// Reads at most `limit` bytes of the body; more is a protocol error.
async fn read_body(mut resp: Response, limit: usize) -> Result<Vec<u8>, DavError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(DavError::from_reqwest)? {
        if body.len() + chunk.len() > limit {
            return Err(DavError::Protocol(format!(
                "answer larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
