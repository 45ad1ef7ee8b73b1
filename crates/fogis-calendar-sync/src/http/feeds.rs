//! Validators and conditional requests for the feeds (`/calendar.ics`, `/contacts.vcf`).
//!
//! A phone subscribed to the feed polls it with `If-None-Match` (or `If-Modified-Since`) and
//! keeps its copy on `304`. So a validator must never name two contents, not even across a
//! restart:
//!
//! - **ETag**: a weak tag, `W/"<digest>"`, of the body's SHA-256 with the lines that change on
//!   every render but carry no content left out (the calendar's `DTSTAMP`). The same content
//!   gives the same tag before and after a restart (no needless download), and different
//!   content a different one (no stale copy). Weak, because the body may be sent compressed or
//!   not (RFC 9110 8.8.3: a strong tag names one byte sequence).
//! - **Last-Modified**: when this process first served the current content; a later content gets
//!   a later second, even within one second of the previous one. After a restart it is the
//!   first render's time: a client asking `If-Modified-Since` an earlier time downloads once
//!   more, which costs a download and never a change.
//!
//! [`not_modified`] evaluates the request's conditions as RFC 9110 section 13.2.2 orders them:
//! `If-None-Match` (weak comparison, lists, `*`) when present, else `If-Modified-Since`.

use std::sync::Mutex;

use axum::body::Bytes;
use axum::http::{header, HeaderMap};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use sha2::{Digest, Sha256};

/// The caches of the service's two feeds.
#[derive(Debug)]
pub struct Feeds {
    pub calendar: FeedCache,
    pub contacts: FeedCache,
}

impl Default for Feeds {
    fn default() -> Self {
        Feeds {
            // DTSTAMP is the render time: it changes on every render, the content does not.
            calendar: FeedCache::new(&["DTSTAMP:"]),
            // A card's REV is its data's change time, part of the content.
            contacts: FeedCache::new(&[]),
        }
    }
}

/// The validators of one body. The body is the rendered bytes themselves, shared: cloning a
/// `Validated` or answering with its body copies no byte.
#[derive(Debug, Clone)]
pub struct Validated {
    pub body: Bytes,
    /// `W/"..."`, ready for the `ETag` header.
    pub etag: String,
    pub last_modified: DateTime<Utc>,
}

impl Validated {
    /// `Last-Modified` as an HTTP date (IMF-fixdate).
    pub fn last_modified_header(&self) -> String {
        http_date(self.last_modified)
    }
}

/// The last body served of one feed and its validators. A `std::sync::Mutex`: held only to
/// compare and replace, never across I/O or an `.await`.
#[derive(Debug)]
pub struct FeedCache {
    /// Line prefixes left out of the digest.
    volatile: &'static [&'static str],
    last: Mutex<Option<Validated>>,
}

impl FeedCache {
    /// A cache whose digest skips lines starting with one of `volatile`.
    pub fn new(volatile: &'static [&'static str]) -> FeedCache {
        FeedCache {
            volatile,
            last: Mutex::new(None),
        }
    }

    /// The validators of `body`, served at `now`. The same bytes as last time (the same
    /// buffer, not only equal content) are not digested again.
    pub fn validate(&self, body: Bytes, now: DateTime<Utc>) -> Validated {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = last.as_ref().filter(|v| same_buffer(&v.body, &body)) {
            return v.clone();
        }
        let etag = etag_of(&body, self.volatile);
        let now = now.trunc_subsecs(0);
        let last_modified = match last.as_ref() {
            Some(v) if v.etag == etag => v.last_modified,
            // HTTP dates have whole seconds: a change within the second of the previous one
            // must still be later than it, or `If-Modified-Since` would hide it.
            Some(v) => now.max(v.last_modified + Duration::seconds(1)),
            None => now,
        };
        let v = Validated {
            body,
            etag,
            last_modified,
        };
        *last = Some(v.clone());
        v
    }
}

/// Whether `a` and `b` are one buffer (a clone of the other), without comparing bytes.
fn same_buffer(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// `W/"<hex>"`: the first 128 bits of the SHA-256 of `body` without its `volatile` lines.
pub fn etag_of(body: &[u8], volatile: &[&str]) -> String {
    let mut h = Sha256::new();
    for line in body.split_inclusive(|b| *b == b'\n') {
        if !volatile.iter().any(|p| line.starts_with(p.as_bytes())) {
            h.update(line);
        }
    }
    let digest = h.finalize();
    format!("W/\"{}\"", hex::encode(&digest[..16]))
}

/// Whether the request's conditions say the client's copy is current: `304 Not Modified`.
pub fn not_modified(headers: &HeaderMap, v: &Validated, now: DateTime<Utc>) -> bool {
    let mut inm = headers.get_all(header::IF_NONE_MATCH).iter().peekable();
    if inm.peek().is_some() {
        let ours = opaque(&v.etag);
        return inm.any(|value| {
            value
                .to_str()
                .ok()
                .is_some_and(|list| if_none_match_hits(list, ours))
        });
    }
    let Some(since) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_http_date)
    else {
        return false;
    };
    // A date later than our clock is not one we sent: ignored (the client's own clock, say).
    v.last_modified <= since && since <= now
}

/// The opaque part of an entity tag (`W/"x"` and `"x"` give `x`).
fn opaque(tag: &str) -> &str {
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag)
}

/// Weak comparison of one `If-None-Match` field value (`*`, or a comma list of entity tags, each
/// maybe `W/`) with our opaque tag. A malformed value matches nothing: the full answer is
/// never wrong.
fn if_none_match_hits(list: &str, ours: &str) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            return false;
        }
        rest = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(quoted) = rest.strip_prefix('"') else {
            return false;
        };
        // An opaque tag may hold commas but no quote.
        let Some(end) = quoted.find('"') else {
            return false;
        };
        if &quoted[..end] == ours {
            return true;
        }
        rest = &quoted[end + 1..];
    }
}

/// An IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// An HTTP date in the preferred form (RFC 2822 syntax, which also reads `+0000`). The
/// obsolete forms are not read: the condition is then ignored and the full answer sent.
fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_tag_follows_the_content_not_the_render_time() {
        let a = b"BEGIN:VEVENT\r\nDTSTAMP:20260101T000000Z\r\nSUMMARY:A\r\n";
        let b = b"BEGIN:VEVENT\r\nDTSTAMP:20270101T000000Z\r\nSUMMARY:A\r\n";
        let c = b"BEGIN:VEVENT\r\nDTSTAMP:20260101T000000Z\r\nSUMMARY:B\r\n";
        let skip = &["DTSTAMP:"];
        assert_eq!(etag_of(a, skip), etag_of(b, skip));
        assert_ne!(etag_of(a, skip), etag_of(c, skip));
        assert_ne!(etag_of(a, &[]), etag_of(b, &[]));
        assert!(etag_of(a, skip).starts_with("W/\"") && etag_of(a, skip).ends_with('"'));
        // Clients hold this tag: the first 128 bits of CPython's
        // `hashlib.sha256(b"BEGIN:VEVENT\r\nSUMMARY:A\r\n")`, in lower-case hex.
        assert_eq!(etag_of(a, skip), "W/\"b72328f41a709b12ceeaa5ed627f8434\"");
    }

    #[test]
    fn last_modified_moves_only_with_the_content_and_always_forward() {
        let cache = FeedCache::new(&["DTSTAMP:"]);
        let t0 = at("2026-01-01T10:00:00.700Z");
        let v1 = cache.validate(Bytes::from_static(b"DTSTAMP:1\nA\n"), t0);
        assert_eq!(v1.last_modified, at("2026-01-01T10:00:00Z"));
        // Re-rendered, same content: same validators.
        let again = cache.validate(
            Bytes::from_static(b"DTSTAMP:2\nA\n"),
            t0 + Duration::hours(1),
        );
        assert_eq!(
            (again.etag.as_str(), again.last_modified),
            (v1.etag.as_str(), v1.last_modified)
        );
        // Changed within the same second: still a later Last-Modified.
        let v2 = cache.validate(Bytes::from_static(b"DTSTAMP:3\nB\n"), t0);
        assert_ne!(v2.etag, v1.etag);
        assert_eq!(v2.last_modified, v1.last_modified + Duration::seconds(1));
        let v3 = cache.validate(Bytes::from_static(b"C\n"), t0 + Duration::minutes(5));
        assert_eq!(v3.last_modified, at("2026-01-01T10:05:00Z"));
    }

    #[test]
    fn the_body_served_is_the_rendered_buffer_itself() {
        let cache = FeedCache::new(&[]);
        let body = Bytes::from(String::from("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"));
        let now = at("2026-01-01T12:00:00Z");
        for v in [
            cache.validate(body.clone(), now),
            cache.validate(body.clone(), now),
        ] {
            assert_eq!((v.body.as_ptr(), v.body.len()), (body.as_ptr(), body.len()));
        }
    }

    #[test]
    fn if_none_match_uses_weak_comparison_lists_and_star() {
        let now = at("2026-01-01T12:00:00Z");
        let v = FeedCache::new(&[]).validate(Bytes::from_static(b"x"), now);
        let tag = opaque(&v.etag).to_string();
        let inm = |value: &str| not_modified(&headers(&[(header::IF_NONE_MATCH, value)]), &v, now);
        assert!(inm(&format!("W/\"{tag}\"")));
        assert!(inm(&format!("\"{tag}\"")));
        assert!(inm(&format!("\"a\", W/\"b,c\" ,\"{tag}\"")));
        assert!(inm("*"));
        assert!(!inm("\"a\", \"b\""));
        assert!(!inm(&format!("W/{tag}")));
        assert!(!inm(&format!("\"{tag}")));
        assert!(!inm(""));
        // Two header lines count as one list.
        let two = headers(&[
            (header::IF_NONE_MATCH, "\"a\""),
            (header::IF_NONE_MATCH, &format!("W/\"{tag}\"")),
        ]);
        assert!(not_modified(&two, &v, now));
    }

    #[test]
    fn if_modified_since_only_without_if_none_match_and_never_from_the_future() {
        let served = at("2026-01-01T12:00:00Z");
        let v = FeedCache::new(&[]).validate(Bytes::from_static(b"x"), served);
        let now = served + Duration::minutes(10);
        let ims =
            |value: &str| not_modified(&headers(&[(header::IF_MODIFIED_SINCE, value)]), &v, now);
        assert_eq!(v.last_modified_header(), "Thu, 01 Jan 2026 12:00:00 GMT");
        assert!(ims("Thu, 01 Jan 2026 12:00:00 GMT"));
        assert!(ims("Thu, 01 Jan 2026 12:05:00 GMT"));
        assert!(!ims("Thu, 01 Jan 2026 11:59:59 GMT"));
        assert!(!ims("Thu, 01 Jan 2026 13:00:00 GMT"));
        assert!(!ims("Thursday, 01-Jan-26 12:00:00 GMT"));
        assert!(!ims("yesterday"));
        let both = headers(&[
            (header::IF_NONE_MATCH, "\"other\""),
            (header::IF_MODIFIED_SINCE, "Thu, 01 Jan 2026 12:00:00 GMT"),
        ]);
        assert!(!not_modified(&both, &v, now));
    }
}
