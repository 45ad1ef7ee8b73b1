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
use crate::collection::{collection_of, last_segment, same_path};
use crate::error::status_error;
use crate::xml::{self, CALDAV, CALSERVER, CARDDAV, DAV};
use crate::{Collection, CollectionKind, DavError, Item, Member};

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
