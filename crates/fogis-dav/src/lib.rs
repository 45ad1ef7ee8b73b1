//! A small async client for WebDAV servers speaking CalDAV (RFC 4791) and CardDAV (RFC 6352),
//! with no calendar or contact code in it: items are opaque text with an ETag.
//!
//! The map, in the order a request crosses it:
//! - [`client`]: [`DavClient`], one HTTP session (reqwest). PROPFIND of a [`Collection`]'s
//!   type, supported components and vCard versions, change tags; members with ETags;
//!   multiget REPORTs; GET; PUT and DELETE with a [`Precondition`]; MKCALENDAR and extended
//!   MKCOL.
//! - [`collection`]: what those answers are read into, and [`item_url`].
//! - [`auth`]: Basic or Digest, chosen from the server's `WWW-Authenticate` challenge.
//! - [`discovery`]: from a server root to a collection (RFC 6764 well-known URLs,
//!   `current-user-principal`, home sets), finding one by display name or creating it.
//! - [`xml`]: the request bodies and a namespace-aware reader for `multistatus` and
//!   `DAV:error` answers.
//! - [`error`]: [`DavError`], told apart by what the caller does next ([`ErrorClass`]): fix
//!   the configuration (401), skip one item (a 403 naming a precondition such as
//!   `supported-calendar-component`), re-read (412), or retry later (5xx, timeouts).
//!
//! ```no_run
//! # async fn example() -> Result<(), fogis_dav::DavError> {
//! use fogis_dav::{discovery, CollectionKind, DavClient, Precondition};
//!
//! let client = DavClient::builder().credentials("anna", "secret").build()?;
//! let root = reqwest::Url::parse("https://dav.example.org/").expect("a URL");
//! let calendar = discovery::find_or_create(
//!     &client, &root, CollectionKind::Calendar, "Matches", &["VEVENT"],
//! ).await?;
//! let item = fogis_dav::item_url(&calendar.url, "match-1.ics")?;
//! let body = "BEGIN:VCALENDAR\r\n...\r\nEND:VCALENDAR\r\n".to_owned();
//! let etag = client.put(&item, body, "text/calendar", Precondition::CreateOnly).await?;
//! client.delete(&item, etag.as_deref()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod client;
pub mod collection;
pub mod discovery;
pub mod error;
pub mod xml;

pub use auth::Credentials;
pub use client::{ClientBuilder, DavClient, Depth, Precondition};
pub use collection::{item_url, Collection, CollectionKind, Item, Member, VcardVersion};
pub use error::{DavError, ErrorClass};
pub use reqwest::Url;
