//! The sinks' handle on one CalDAV calendar or CardDAV address book, over the `fogis-dav`
//! protocol crate.
//!
//! The sinks need only a handful of operations, each idempotent when used with the right
//! precondition: make sure the collection exists, PUT an item with `If-None-Match: *` (create)
//! or `If-Match` (update), GET, DELETE (with `If-Match` when the ETag is known), list the items
//! with their ETags, and find the `UID` inside every item so that a sink can adopt an event or
//! card that already carries our UID under another resource name.
//!
//! The configured URL is normally the collection; when it is missing it is created there. When
//! it names something that exists but is no calendar or address book (a server root, a
//! principal, a home), fogis-dav's discovery finds the collection with the sink's display name
//! below it, or creates one ([`fogis_dav::discovery`]).
//!
//! Errors say what a caller must do next: [`DavError::is_auth`] means "stop and fix the
//! configuration" (never retry it in a loop), [`DavError::is_retryable`] means "try again later",
//! [`DavError::Refused`] means "the server will not take this one item", and
//! [`DavError::PreconditionFailed`] means "someone else changed it: re-read".
//!
//! Redirects are not followed (outside discovery): a PUT or DELETE that is silently redirected
//! can land somewhere else. A 3xx answer is an error naming the new location.

mod error;
mod wire;

use std::sync::OnceLock;
use std::time::Duration;

use fogis_dav::{CollectionKind, Url, VcardVersion};

pub use error::DavError;
pub use wire::extract_uid;

/// Items asked for in one multiget REPORT.
const MULTIGET_BATCH: usize = 100;

/// What a PUT requires of the item already on the server.
pub type Precondition = fogis_dav::Precondition;

/// One item of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The last path segment, percent-decoded (`fogis-match-6186203.ics`).
    pub name: String,
    /// The href (the URL's path).
    pub href: String,
    pub etag: Option<String>,
    /// The `UID` inside the item; only [`DavClient::find_uids`] reads it.
    pub uid: Option<String>,
    /// The item's text; only [`DavClient::find_uids`] reads it.
    pub data: Option<String>,
}

/// What the sink learned about its collection when it made sure of it.
#[derive(Debug, Clone)]
struct Known {
    url: Url,
    kind: CollectionKind,
    vcard: VcardVersion,
}

/// A client for one collection. Cheap to share behind an `Arc`; requests may run concurrently.
pub struct DavClient {
    dav: fogis_dav::DavClient,
    /// As configured (credentials taken out, a trailing `/`).
    configured: Url,
    has_password: bool,
    username: Option<String>,
    /// Set by `ensure_*` or by the first [`DavClient::find_uids`].
    known: OnceLock<Known>,
}

impl std::fmt::Debug for DavClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DavClient")
            .field("collection", &self.collection_url())
            .field("username", &self.username)
            .field("password", &self.has_password.then_some("<redacted>"))
            .field("kind", &self.known.get().map(|k| k.kind))
            .finish()
    }
}

impl DavClient {
    /// A client for the collection at `collection_url` (a trailing `/` is added). Credentials in
    /// the URL itself are taken out of it, so the URL can be logged; explicit ones win.
    ///
    /// Basic credentials go with the first request (as they always did, and as Radicale with
    /// `auth type = none` needs to name the principal) over https and to loopback; to a plain
    /// http host elsewhere nothing is sent until the server's challenge says Basic or Digest.
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
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let url_user = Some(decode(url.username())).filter(|u| !u.is_empty());
        let url_password = url.password().map(decode);
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
        let host = url.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let mut builder = fogis_dav::DavClient::builder()
            .timeout(timeout)
            .user_agent(concat!("fogis-calendar-sync/", env!("CARGO_PKG_VERSION")))
            .preemptive_basic(url.scheme() == "https" || loopback);
        if let Some(user) = &username {
            builder = builder.credentials(user.clone(), password.clone().unwrap_or_default());
        }
        Ok(DavClient {
            dav: builder.build()?,
            configured: url,
            has_password: password.is_some(),
            username,
            known: OnceLock::new(),
        })
    }

    /// The collection URL, always ending with `/`, without credentials: the discovered one
    /// once known.
    pub fn collection_url(&self) -> &str {
        self.collection().as_str()
    }

    fn collection(&self) -> &Url {
        self.known.get().map_or(&self.configured, |k| &k.url)
    }

    /// The vCard version to write: 4.0 where the address book offers it, else 3.0.
    pub fn vcard_version(&self) -> VcardVersion {
        self.known.get().map_or(VcardVersion::V4, |k| k.vcard)
    }

    /// Makes sure the collection exists and is a calendar, creating it with MKCALENDAR.
    pub async fn ensure_calendar(&self, display_name: &str) -> Result<(), DavError> {
        self.ensure(CollectionKind::Calendar, display_name, &[])
            .await
    }

    /// Makes sure the collection exists and is an address book, creating it with an extended
    /// MKCOL (RFC 5689).
    pub async fn ensure_addressbook(&self, display_name: &str) -> Result<(), DavError> {
        self.ensure(CollectionKind::AddressBook, display_name, &[])
            .await
    }

    /// Like [`DavClient::ensure_addressbook`], but where the collection must be discovered, an
    /// address book named `display_name`, else one named one of `earlier` (what an earlier
    /// version called it), is used before one named `display_name` is created.
    pub async fn ensure_addressbook_or(
        &self,
        display_name: &str,
        earlier: &[&str],
    ) -> Result<(), DavError> {
        self.ensure(CollectionKind::AddressBook, display_name, earlier)
            .await
    }

    async fn ensure(
        &self,
        want: CollectionKind,
        display_name: &str,
        earlier: &[&str],
    ) -> Result<(), DavError> {
        let url = &self.configured;
        let found = match self.dav.collection(url).await? {
            Some(c) if c.kind == Some(want) => c,
            Some(c) if c.kind.is_some() => return Err(not_a(want)),
            Some(_) => {
                // Something that is no calendar or address book: a root, a principal or a
                // home. Find the collection below it by name, or create one there.
                let components: &[&str] = match want {
                    CollectionKind::Calendar => &["VEVENT"],
                    CollectionKind::AddressBook => &[],
                };
                let mut existing = None;
                if !earlier.is_empty() {
                    for name in std::iter::once(display_name).chain(earlier.iter().copied()) {
                        existing =
                            fogis_dav::discovery::find_collection(&self.dav, url, want, name)
                                .await?;
                        if existing.is_some() {
                            break;
                        }
                    }
                }
                let found = match existing {
                    Some(found) => found,
                    None => {
                        fogis_dav::discovery::find_or_create(
                            &self.dav,
                            url,
                            want,
                            display_name,
                            components,
                        )
                        .await?
                    }
                };
                tracing::info!(configured = %url, collection = %found.url, "discovered the collection");
                found
            }
            None => self.create(want, display_name).await?,
        };
        self.found(found);
        Ok(())
    }

    async fn create(
        &self,
        want: CollectionKind,
        display_name: &str,
    ) -> Result<fogis_dav::Collection, DavError> {
        let url = &self.configured;
        let made = match want {
            CollectionKind::Calendar => self.dav.mkcalendar(url, display_name, &["VEVENT"]).await,
            CollectionKind::AddressBook => self.dav.mkcol_addressbook(url, display_name).await,
        };
        let status = match &made {
            Ok(()) => {
                tracing::info!(collection = %url, kind = ?want, "created the collection");
                None
            }
            Err(fogis_dav::DavError::Forbidden { .. }) => Some(403),
            Err(fogis_dav::DavError::Precondition { status, .. }) => Some(*status),
            Err(fogis_dav::DavError::Status { status, .. }) => Some(*status),
            Err(_) => None,
        };
        // Someone may have created it meanwhile. RFC 4791 says 405 for an existing resource;
        // Radicale 3 answers 409 (resource-must-be-null) to MKCALENDAR and 403 to MKCOL.
        if made.is_ok() || matches!(status, Some(403 | 405 | 409)) {
            if let Some(c) = self.dav.collection(url).await? {
                return match c.kind {
                    Some(kind) if kind == want => Ok(c),
                    _ => Err(not_a(want)),
                };
            }
        }
        made?;
        Err(DavError::NotFound)
    }

    fn found(&self, c: fogis_dav::Collection) {
        let Some(kind) = c.kind else { return };
        let _ = self.known.set(Known {
            vcard: c.vcard_version(),
            url: c.url,
            kind,
        });
    }

    /// The collection's change tag: its RFC 6578 `sync-token`, else its `getctag`, prefixed
    /// with which it is; `None` when the server offers neither. One PROPFIND Depth 0.
    pub async fn change_tag(&self) -> Result<Option<String>, DavError> {
        let c = self
            .dav
            .collection(self.collection())
            .await?
            .ok_or(DavError::NotFound)?;
        Ok(c.sync_token
            .map(|t| format!("sync-token {t}"))
            .or_else(|| c.ctag.map(|t| format!("ctag {t}"))))
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
        Ok(self.dav.put(&url, body, content_type, precondition).await?)
    }

    /// The item's text and ETag, or `None` if there is no such item.
    pub async fn get(&self, name: &str) -> Result<Option<(String, Option<String>)>, DavError> {
        let url = self.item_url(name)?;
        Ok(self.dav.get(&url).await?.map(|item| (item.data, item.etag)))
    }

    /// Deletes the item (only this version, with an ETag: someone else's change gives
    /// [`DavError::PreconditionFailed`]). An item that is already gone is success.
    pub async fn delete(&self, name: &str, etag: Option<&str>) -> Result<(), DavError> {
        let url = self.item_url(name)?;
        Ok(self.dav.delete(&url, etag).await?)
    }

    /// Every item of the collection with its ETag (PROPFIND Depth 1); sub-collections are left
    /// out. `uid` stays `None`.
    pub async fn list(&self) -> Result<Vec<Resource>, DavError> {
        let members = self.dav.members(self.collection()).await?;
        Ok(members
            .into_iter()
            .filter(|m| !m.is_collection)
            .map(|m| Resource {
                href: m.url.path().to_owned(),
                name: m.name,
                etag: m.etag,
                uid: None,
                data: None,
            })
            .collect())
    }

    /// Every item with its ETag, its text and the `UID` inside it: the members, then their
    /// data by calendar-multiget or addressbook-multiget.
    pub async fn find_uids(&self) -> Result<Vec<Resource>, DavError> {
        let kind = match self.known.get() {
            Some(k) => k.kind,
            None => match self.dav.collection(&self.configured).await? {
                Some(c) if c.kind.is_some() => {
                    self.found(c);
                    self.known
                        .get()
                        .map_or(CollectionKind::Calendar, |k| k.kind)
                }
                Some(_) => {
                    let text = "the collection is neither a calendar nor an address book";
                    return Err(DavError::Protocol(text.into()));
                }
                None => return Err(DavError::NotFound),
            },
        };
        let mut items = self.list().await?;
        let urls: Vec<Url> = items
            .iter()
            .filter_map(|r| self.collection().join(&r.href).ok())
            .collect();
        let mut data = std::collections::HashMap::new();
        for batch in urls.chunks(MULTIGET_BATCH) {
            for item in self.dav.multiget(self.collection(), kind, batch).await? {
                data.insert(decoded(item.url.path()), item.data);
            }
        }
        for item in &mut items {
            // By decoded path: a server may escape an href differently in the two answers.
            item.data = data.remove(&decoded(&item.href));
            item.uid = item.data.as_deref().and_then(extract_uid);
        }
        Ok(items)
    }

    /// The URL of item `name`: the collection plus the percent-encoded name.
    fn item_url(&self, name: &str) -> Result<Url, DavError> {
        Ok(fogis_dav::item_url(self.collection(), name)?)
    }
}

fn decoded(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

fn not_a(want: CollectionKind) -> DavError {
    let what = match want {
        CollectionKind::Calendar => "a calendar",
        CollectionKind::AddressBook => "an address book",
    };
    DavError::Protocol(format!("the collection exists but is not {what}"))
}
