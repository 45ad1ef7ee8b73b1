//! Feeds that never lie: a phone polling `/calendar.ics` with `If-None-Match` (and
//! `If-Modified-Since`, as phones send both) sees every change, also across a restart of the
//! service on the same data directory; weak tags, lists and `*` are understood; the feeds come
//! gzip- or br-compressed when asked; an empty calendar is still a valid one. Real HTTP, the
//! service in this process.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Read;

use common::*;
use reqwest::header;
use serde_json::{json, Value};

/// What a phone keeps of a subscribed feed.
#[derive(Default)]
struct Phone {
    etag: Option<String>,
    last_modified: Option<String>,
    body: Option<String>,
}

impl Phone {
    /// One poll of `path`, conditional once the phone holds a copy; returns the status.
    async fn poll(&mut self, svc: &Service, path: &str) -> u16 {
        let mut req = svc.http.get(svc.url(path));
        if let Some(tag) = &self.etag {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        if let Some(lm) = &self.last_modified {
            req = req.header(header::IF_MODIFIED_SINCE, lm);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = |name| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let (etag, lm) = (text(header::ETAG), text(header::LAST_MODIFIED));
        assert!(
            etag.is_some() && lm.is_some(),
            "{status} without validators"
        );
        match status {
            200 => {
                (self.etag, self.last_modified) = (etag, lm);
                self.body = Some(resp.text().await.unwrap());
            }
            304 => {
                assert_eq!(etag, self.etag, "a 304 names the copy the phone holds");
                assert_eq!(text(header::VARY).as_deref(), Some("accept-encoding"));
                assert!(resp.bytes().await.unwrap().is_empty());
            }
            other => panic!("GET {path}: {other}"),
        }
        status
    }
}

/// An event's UID, start, status and summary.
type Event = (String, String, String, String);

/// What a calendar says, without the render time.
fn content(feed: &str) -> BTreeSet<Event> {
    parse_feed(feed)
        .into_iter()
        .map(|e| {
            let p = |k: &str| e.props.get(k).cloned().unwrap_or_default();
            (e.uid.clone(), p("DTSTART"), p("STATUS"), p("SUMMARY"))
        })
        .collect()
}

/// Change `step` of the calendar: match 0 moves a day each step, match 1 is cancelled on odd
/// steps and back on even ones, and from step 4 on a third match joins.
fn list(step: i64) -> Value {
    let days: Vec<i64> = if step >= 4 {
        vec![30 + step, 40, 50]
    } else {
        vec![30 + step, 40]
    };
    let mut s = future_snapshot(&days, &format!("step-{step}"));
    if step % 2 == 1 {
        s["payload"]["matches"][1]["installd"] = json!(true);
    }
    s
}

async fn apply(svc: &Service, step: i64) {
    let (status, body) = svc
        .post("/sync", serde_json::to_vec(&list(step)).unwrap())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], true, "{body}");
}

/// The phone's copy is the service's current feed, and differs from every earlier copy.
async fn phone_is_current(
    phone: &Phone,
    svc: &Service,
    seen: &mut Vec<BTreeSet<Event>>,
    step: i64,
) {
    let held = content(phone.body.as_deref().unwrap());
    assert_eq!(held, content(&svc.feed().await), "step {step}");
    assert!(
        !seen.contains(&held),
        "step {step} looks like an earlier one"
    );
    seen.push(held);
    // Cancellations come through, and so do matches put back.
    let events = parse_feed(phone.body.as_deref().unwrap());
    let status = event(&events, 7_000_001).props.get("STATUS").cloned();
    let want = if step % 2 == 1 {
        "CANCELLED"
    } else {
        "CONFIRMED"
    };
    assert_eq!(status.as_deref(), Some(want), "step {step}");
}

async fn restart(svc: Service) -> Service {
    let dir = svc.stop().await;
    Service::start_in(dir, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_polling_with_if_none_match_across_a_restart_sees_every_change() {
    let mut svc = Service::start().await;
    let mut phone = Phone::default();
    let mut seen = Vec::new();
    // Every change polled at once.
    for step in 0..3 {
        apply(&svc, step).await;
        assert_eq!(phone.poll(&svc, "/calendar.ics").await, 200, "step {step}");
        phone_is_current(&phone, &svc, &mut seen, step).await;
        assert_eq!(phone.poll(&svc, "/calendar.ics").await, 304, "step {step}");
    }
    // A restart and as many changes as before, all while the phone is not looking: its next
    // poll must not take the new state for the one it holds.
    svc = restart(svc).await;
    for step in 3..6 {
        apply(&svc, step).await;
    }
    assert_eq!(
        phone.poll(&svc, "/calendar.ics").await,
        200,
        "steps 3-5 not seen"
    );
    phone_is_current(&phone, &svc, &mut seen, 5).await;
    // A restart without a change: nothing to download.
    svc = restart(svc).await;
    assert_eq!(phone.poll(&svc, "/calendar.ics").await, 304);
    // And after it, every change again.
    for step in 6..9 {
        apply(&svc, step).await;
        assert_eq!(phone.poll(&svc, "/calendar.ics").await, 200, "step {step}");
        phone_is_current(&phone, &svc, &mut seen, step).await;
        assert_eq!(phone.poll(&svc, "/calendar.ics").await, 304, "step {step}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phonebook_is_validated_the_same_way_across_a_restart() {
    let svc = Service::start().await;
    let mut phone = Phone::default();
    assert_eq!(phone.poll(&svc, "/contacts.vcf").await, 200);
    assert_eq!(phone.body.as_deref(), Some(""), "no matches, no cards");
    assert_eq!(phone.poll(&svc, "/contacts.vcf").await, 304);
    apply(&svc, 0).await;
    assert_eq!(phone.poll(&svc, "/contacts.vcf").await, 200);
    let cards = phone.body.clone().unwrap();
    assert!(cards.contains("BEGIN:VCARD"), "{cards}");
    let dir = svc.stop().await;
    let svc = Service::start_in(dir, |_| {}).await;
    assert_eq!(phone.poll(&svc, "/contacts.vcf").await, 304);
    // Referees change: the phonebook does.
    let mut next = list(0);
    next["message_id"] = json!("other referees");
    for m in next["payload"]["matches"].as_array_mut().unwrap() {
        m["domaruppdraglista"] = json!([]);
    }
    let (status, body) = svc.post("/sync", serde_json::to_vec(&next).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(phone.poll(&svc, "/contacts.vcf").await, 200);
    assert_ne!(phone.body.as_deref(), Some(cards.as_str()));
}

async fn get_with(svc: &Service, path: &str, name: header::HeaderName, value: &str) -> u16 {
    let resp = svc
        .http
        .get(svc.url(path))
        .header(name, value)
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_tags_lists_star_and_if_modified_since_are_understood() {
    let svc = Service::start().await;
    apply(&svc, 0).await;
    let resp = svc.http.get(svc.url("/calendar.ics")).send().await.unwrap();
    let tag = resp.headers()[header::ETAG].to_str().unwrap().to_string();
    let lm = resp.headers()[header::LAST_MODIFIED]
        .to_str()
        .unwrap()
        .to_string();
    assert!(tag.starts_with("W/\""), "{tag}");
    let strong = tag.trim_start_matches("W/").to_string();
    let inm = header::IF_NONE_MATCH;
    let ims = header::IF_MODIFIED_SINCE;
    assert_eq!(
        get_with(&svc, "/calendar.ics", inm.clone(), &tag).await,
        304
    );
    // A proxy that decompressed may hand the tag on without W/: weak comparison still matches.
    assert_eq!(
        get_with(&svc, "/calendar.ics", inm.clone(), &strong).await,
        304
    );
    let list = format!("\"elsewhere\", {tag}");
    assert_eq!(
        get_with(&svc, "/calendar.ics", inm.clone(), &list).await,
        304
    );
    assert_eq!(get_with(&svc, "/calendar.ics", inm.clone(), "*").await, 304);
    assert_eq!(
        get_with(&svc, "/calendar.ics", inm.clone(), "\"g1\"").await,
        200
    );
    assert_eq!(get_with(&svc, "/calendar.ics", ims.clone(), &lm).await, 304);
    let before = "Mon, 01 Jan 2024 00:00:00 GMT";
    assert_eq!(
        get_with(&svc, "/calendar.ics", ims.clone(), before).await,
        200
    );
    // If-None-Match decides when both are sent.
    let resp = svc
        .http
        .get(svc.url("/calendar.ics"))
        .header(inm.clone(), "\"elsewhere\"")
        .header(ims.clone(), &lm)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // A change gives a new tag and a later Last-Modified, even within the same second.
    apply(&svc, 1).await;
    assert_eq!(get_with(&svc, "/calendar.ics", inm, &tag).await, 200);
    assert_eq!(get_with(&svc, "/calendar.ics", ims, &lm).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feeds_are_compressed_when_asked() {
    let svc = Service::start().await;
    apply(&svc, 4).await;
    let plain = svc.feed().await;
    for (encoding, decode) in [
        ("gzip", gunzip as fn(&[u8]) -> String),
        ("br", unbrotli as fn(&[u8]) -> String),
    ] {
        let resp = svc
            .http
            .get(svc.url("/calendar.ics"))
            .header(header::ACCEPT_ENCODING, encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let h = resp.headers().clone();
        assert_eq!(h[header::CONTENT_ENCODING], encoding);
        assert!(h[header::VARY]
            .to_str()
            .unwrap()
            .contains("accept-encoding"));
        assert!(h[header::ETAG].to_str().unwrap().starts_with("W/"));
        let bytes = resp.bytes().await.unwrap();
        assert!(bytes.len() < plain.len(), "{encoding} did not compress");
        assert_eq!(decode(&bytes), plain, "{encoding}");
    }
    // Not asked, not compressed.
    let resp = svc.http.get(svc.url("/contacts.vcf")).send().await.unwrap();
    assert!(resp.headers().get(header::CONTENT_ENCODING).is_none());
    let resp = svc
        .http
        .get(svc.url("/contacts.vcf"))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
    assert!(gunzip(&resp.bytes().await.unwrap()).contains("BEGIN:VCARD"));
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn unbrotli(bytes: &[u8]) -> String {
    let mut out = String::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_calendar_is_still_a_valid_one() {
    let svc = Service::start().await;
    let feed = svc.feed().await;
    let unfolded = icalendar::parser::unfold(&feed);
    let cal = icalendar::parser::read_calendar(&unfolded).unwrap();
    let names: Vec<String> = cal.components.iter().map(|c| c.name.to_string()).collect();
    assert_eq!(names, ["VTIMEZONE"], "{feed}");
    let tzid = cal.components[0]
        .properties
        .iter()
        .find(|p| p.name == "TZID")
        .map(|p| p.val.to_string());
    assert_eq!(tzid.as_deref(), Some("Europe/Stockholm"));
}
