//! Finding a calendar or address book from a server root, the way pimsync, vdirsyncer and
//! DAVx5 do, so users give a server and a user name instead of a collection URL.
//!
//! From any URL:
//! 1. If the URL already is a collection of the wanted kind, that is the answer.
//! 2. Context path (RFC 6764 5): for a URL without a path, `/.well-known/caldav` (or
//!    `carddav`) first, then the URL itself; for a URL with a path, the other way round.
//!    Redirects are followed here (at most 5, never from https to http), because RFC 6764
//!    says the well-known URL redirects to the real context.
//! 3. `current-user-principal` (RFC 5397) of the context, then `calendar-home-set` (RFC 4791
//!    6.2.1) or `addressbook-home-set` (RFC 6352 7.1.1) of the principal. A context that
//!    answers the home set itself is used directly.
//! 4. The home's collections (PROPFIND Depth 1): the one whose `displayname` is the wanted
//!    name, else the one whose last path segment is, is the answer.
//! 5. [`find_or_create`] makes a missing one in the first home, under a path segment made of
//!    the name (`Fotboll Domare` -> `fotboll-domare/`).
//!
//! A home set may point to another host (iCloud puts calendars on `pNN-caldav.icloud.com`);
//! the same credentials go there, but never over plain HTTP when discovery started on HTTPS.

use reqwest::{Method, Url};

use crate::client::Depth;
use crate::collection::{collection_of, last_segment, same_path, Collection, CollectionKind};
use crate::error::status_error;
use crate::xml::{self, CALDAV, CALSERVER, CARDDAV, DAV};
use crate::{DavClient, DavError};

const MAX_REDIRECTS: usize = 5;

/// The principal and home collections discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Homes {
    pub principal: Option<Url>,
    pub homes: Vec<Url>,
}

/// The collection of `kind` named `display_name` reachable from `start`, or `None` if the
/// server's homes hold none of that name.
pub async fn find_collection(
    client: &DavClient,
    start: &Url,
    kind: CollectionKind,
    display_name: &str,
) -> Result<Option<Collection>, DavError> {
    if let Some(own) = as_collection(client, start, kind).await? {
        return Ok(Some(own));
    }
    let homes = find_homes(client, start, kind).await?;
    for home in &homes.homes {
        let all = list_collections(client, home, kind).await?;
        if let Some(found) = pick(all, display_name) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Like [`find_collection`], but creates the collection in the first home when it is missing
/// (a calendar taking `components`, all if empty; or an address book).
pub async fn find_or_create(
    client: &DavClient,
    start: &Url,
    kind: CollectionKind,
    display_name: &str,
    components: &[&str],
) -> Result<Collection, DavError> {
    if let Some(own) = as_collection(client, start, kind).await? {
        return Ok(own);
    }
    let homes = find_homes(client, start, kind).await?;
    let mut first: Option<(Url, Vec<Url>)> = None;
    for home in &homes.homes {
        let members = client.members(home).await?;
        let all = collections_in(client, home, kind).await?;
        if let Some(found) = pick(all, display_name) {
            return Ok(found);
        }
        if first.is_none() {
            first = Some((home.clone(), members.into_iter().map(|m| m.url).collect()));
        }
    }
    let (home, taken) = first.ok_or_else(|| {
        DavError::Protocol("the server names no home for calendars or address books".into())
    })?;
    let url = free_url(&home, display_name, &taken)?;
    match kind {
        CollectionKind::Calendar => client.mkcalendar(&url, display_name, components).await?,
        CollectionKind::AddressBook => client.mkcol_addressbook(&url, display_name).await?,
    }
    tracing::info!(collection = %url, ?kind, "created the collection");
    client
        .collection(&url)
        .await?
        .filter(|c| c.kind == Some(kind))
        .ok_or_else(|| DavError::Protocol("the created collection is not there".into()))
}

/// The principal and homes of `kind` reachable from `start` (steps 2 and 3 above).
pub async fn find_homes(
    client: &DavClient,
    start: &Url,
    kind: CollectionKind,
) -> Result<Homes, DavError> {
    let home_prop = home_property(kind);
    let well_known = start
        .join(match kind {
            CollectionKind::Calendar => "/.well-known/caldav",
            CollectionKind::AddressBook => "/.well-known/carddav",
        })
        .map_err(|e| DavError::Protocol(e.to_string()))?;
    let candidates = if start.path().trim_matches('/').is_empty() {
        [well_known, start.clone()]
    } else {
        [start.clone(), well_known]
    };
    let props = [(DAV, "current-user-principal"), home_prop];
    let mut last_error = None;
    for context in candidates {
        let (url, response) = match propfind_following(client, &context, &props).await {
            Ok(found) => found,
            Err(e) if e.is_auth() || e.is_transient() => return Err(e),
            Err(e) => {
                tracing::debug!(url = %context, error = %e, "no DAV context here");
                last_error = Some(e);
                continue;
            }
        };
        let homes = hrefs(&url, &response, home_prop)?;
        if !homes.is_empty() {
            return Ok(Homes {
                principal: None,
                homes,
            });
        }
        let Some(principal) = response.prop_href(DAV, "current-user-principal") else {
            continue;
        };
        let principal = follow(&url, &principal)?;
        let (at, response) = propfind_following(client, &principal, &[home_prop]).await?;
        let homes = hrefs(&at, &response, home_prop)?;
        if !homes.is_empty() {
            return Ok(Homes {
                principal: Some(principal),
                homes,
            });
        }
    }
    Err(last_error.unwrap_or_else(|| {
        DavError::Protocol(format!(
            "the server names no current-user-principal or {}",
            home_prop.1
        ))
    }))
}

/// The collections of `kind` directly inside `home`.
pub async fn list_collections(
    client: &DavClient,
    home: &Url,
    kind: CollectionKind,
) -> Result<Vec<Collection>, DavError> {
    collections_in(client, home, kind).await
}

async fn collections_in(
    client: &DavClient,
    home: &Url,
    kind: CollectionKind,
) -> Result<Vec<Collection>, DavError> {
    let props = [
        (DAV, "resourcetype"),
        (DAV, "displayname"),
        (DAV, "sync-token"),
        (CALDAV, "supported-calendar-component-set"),
        (CARDDAV, "supported-address-data"),
        (CALSERVER, "getctag"),
    ];
    let responses = client.propfind(home, Depth::One, &props).await?;
    let mut out = Vec::new();
    for r in responses
        .iter()
        .filter(|r| r.ok() && !same_path(home, &r.href))
    {
        let url = follow(home, &r.href)?;
        let collection = collection_of(url, r);
        if collection.kind == Some(kind) {
            out.push(collection);
        }
    }
    Ok(out)
}

/// `start` itself, when it is a collection of `kind`. Errors that only say "not here" are
/// `None`; authentication and transient errors stop discovery.
async fn as_collection(
    client: &DavClient,
    start: &Url,
    kind: CollectionKind,
) -> Result<Option<Collection>, DavError> {
    match client.collection(start).await {
        Ok(found) => Ok(found.filter(|c| c.kind == Some(kind))),
        Err(e) if e.is_auth() || e.is_transient() => Err(e),
        Err(_) => Ok(None),
    }
}

/// Exact display name first, then the last path segment.
fn pick(all: Vec<Collection>, name: &str) -> Option<Collection> {
    let name = name.trim();
    if let Some(i) = all
        .iter()
        .position(|c| c.display_name.as_deref().map(str::trim) == Some(name))
    {
        return all.into_iter().nth(i);
    }
    all.into_iter()
        .find(|c| last_segment(&c.url).as_deref() == Some(name))
}

/// PROPFIND Depth 0 that follows redirects; the final URL and its own response.
async fn propfind_following(
    client: &DavClient,
    start: &Url,
    props: &[(&str, &str)],
) -> Result<(Url, xml::Response), DavError> {
    let propfind =
        Method::from_bytes(b"PROPFIND").map_err(|e| DavError::Protocol(e.to_string()))?;
    let mut url = start.clone();
    for _ in 0..=MAX_REDIRECTS {
        let resp = client
            .raw(
                propfind.clone(),
                &url,
                Some("0"),
                Some(xml::propfind(props)),
            )
            .await?;
        if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| DavError::Protocol("a redirect without Location".into()))?;
            url = follow(&url, location)?;
            continue;
        }
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        let body = resp.bytes().await.map_err(DavError::from_reqwest)?;
        let responses = xml::parse_multistatus(&body).map_err(DavError::Protocol)?;
        let own = responses
            .iter()
            .find(|r| same_path(&url, &r.href))
            .or(responses.first())
            .cloned()
            .ok_or_else(|| DavError::Protocol("an empty multistatus".into()))?;
        return Ok((url, own));
    }
    Err(DavError::Protocol(format!(
        "more than {MAX_REDIRECTS} redirects from {start}"
    )))
}

fn home_property(kind: CollectionKind) -> (&'static str, &'static str) {
    match kind {
        CollectionKind::Calendar => (CALDAV, "calendar-home-set"),
        CollectionKind::AddressBook => (CARDDAV, "addressbook-home-set"),
    }
}

fn hrefs(base: &Url, r: &xml::Response, prop: (&str, &str)) -> Result<Vec<Url>, DavError> {
    r.prop_hrefs(prop.0, prop.1)
        .iter()
        .map(|h| follow(base, h).map(with_slash))
        .collect()
}

/// `href` resolved against `base`, refusing a step down from https to http.
fn follow(base: &Url, href: &str) -> Result<Url, DavError> {
    let url = base
        .join(href.trim())
        .map_err(|e| DavError::Protocol(format!("the server sent an invalid href: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(DavError::Protocol("the server sent a non-HTTP href".into()));
    }
    if base.scheme() == "https" && url.scheme() == "http" {
        return Err(DavError::Protocol(format!(
            "the server points from https to plain http ({url}); not following"
        )));
    }
    Ok(url)
}

fn with_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// `home` + a path segment made of `name`, one not already taken.
fn free_url(home: &Url, name: &str, taken: &[Url]) -> Result<Url, DavError> {
    let mut slug: String = name
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    slug = slug
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    if slug.is_empty() {
        slug = "collection".into();
    }
    let taken_names: Vec<String> = taken.iter().filter_map(last_segment).collect();
    let mut candidate = slug.clone();
    let mut n = 2;
    while taken_names.contains(&candidate) {
        candidate = format!("{slug}-{n}");
        n += 1;
    }
    home.join(&format!("{candidate}/"))
        .map_err(|e| DavError::Protocol(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redirects_and_hrefs_never_step_down_to_http() {
        let base = Url::parse("https://caldav.example/").unwrap();
        let other = follow(&base, "https://p42-caldav.example/1/calendars/").unwrap();
        assert_eq!(other.host_str(), Some("p42-caldav.example"));
        assert!(follow(&base, "http://caldav.example/").is_err());
        assert!(follow(&base, "ftp://x/").is_err());
        assert_eq!(
            follow(&base, "/dav/").unwrap().as_str(),
            "https://caldav.example/dav/"
        );
    }

    #[test]
    fn created_collections_get_a_free_segment_made_of_the_name() {
        let home = Url::parse("http://h/user/").unwrap();
        let taken = [Url::parse("http://h/user/fotboll-domare/").unwrap()];
        let url = free_url(&home, " Fotboll  Domare! ", &taken).unwrap();
        assert_eq!(url.as_str(), "http://h/user/fotboll-domare-2/");
        assert_eq!(
            free_url(&home, "åäö", &[]).unwrap().as_str(),
            "http://h/user/collection/"
        );
    }
}
