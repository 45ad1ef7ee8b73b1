//! The DAV client against a real Radicale (started by each test), and against a scripted
//! HTTP server for the answers Radicale never gives (401, 5xx, a PUT without an ETag, garbage).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/radicale.rs"]
mod radicale;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use fogis_calendar_sync::render::ics::{render_single, uid, FeedEvent, FeedOptions};
use fogis_calendar_sync::render::phonebook::Contact;
use fogis_calendar_sync::render::vcard::render_vcard;
use fogis_calendar_sync::sinks::dav::{DavClient, DavError, Precondition};
use radicale::Radicale;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ICS: &str = "text/calendar; charset=utf-8";
const VCF: &str = "text/vcard; charset=utf-8";

fn client(url: &str) -> DavClient {
    let (user, password) = (Some("user".into()), Some("s3cret-pass".into()));
    DavClient::new(url, user, password, Duration::from_secs(10)).unwrap()
}

fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 5, d, h, m, 0).unwrap()
}

fn event(match_id: i64, summary: &str) -> FeedEvent {
    FeedEvent {
        match_id,
        sequence: 0,
        start: at(6, 16, 30),
        end: at(6, 18, 30),
        summary: summary.into(),
        location: Some("Gamla Ullevi, Göteborg".into()),
        geo: None,
        description: "Match 123\nDomare: Anna Berg, Mobil: 070-123 45 67".into(),
        url: None,
        cancelled: false,
        created: at(1, 8, 0),
        last_modified: at(1, 8, 0),
    }
}

fn ics(e: &FeedEvent) -> String {
    let opts = FeedOptions {
        tz: chrono_tz::Europe::Stockholm,
        reminder_minutes: Some(2880),
        calendar_name: "FOGIS".into(),
        dtstamp: at(1, 8, 0),
    };
    render_single(e, &opts)
}

#[tokio::test]
async fn calendar_items_are_created_updated_and_deleted_with_preconditions() {
    let server = Radicale::start();
    let dav = client(&server.collection_url("calendar"));
    dav.ensure_calendar("FOGIS matches").await.unwrap();
    dav.ensure_calendar("FOGIS matches").await.unwrap();
    assert!(dav.list().await.unwrap().is_empty());

    let name = "fogis-match-6186203.ics";
    let mut e = event(6_186_203, "IFK Göteborg - Malmö FF");
    let created = dav.put(name, ics(&e), ICS, Precondition::CreateOnly).await;
    let etag1 = created.unwrap().expect("Radicale returns an ETag");
    let again = dav.put(name, ics(&e), ICS, Precondition::CreateOnly).await;
    assert_eq!(again, Err(DavError::PreconditionFailed));

    let (text, etag) = dav.get(name).await.unwrap().expect("stored");
    assert_eq!(etag.as_deref(), Some(etag1.as_str()));
    let unfolded = text.replace("\r\n ", "");
    assert!(
        unfolded.contains(&format!("UID:{}\r\n", uid(6_186_203))),
        "{text}"
    );
    assert!(unfolded.contains("DTSTART;TZID=Europe/Stockholm:20250506T183000\r\n"));

    e.sequence = 1;
    e.summary = "IFK Göteborg - BK Häcken".into();
    let precondition = Precondition::IfMatch(etag1.clone());
    let etag2 = dav.put(name, ics(&e), ICS, precondition).await.unwrap();
    let etag2 = etag2.expect("new ETag");
    assert_ne!(etag1, etag2);
    let stale = Precondition::IfMatch(etag1.clone());
    let lost = dav.put(name, ics(&e), ICS, stale).await;
    assert_eq!(lost, Err(DavError::PreconditionFailed));
    let (text, _) = dav.get(name).await.unwrap().unwrap();
    assert!(text.contains("BK Häcken"));

    let listed = dav.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, name);
    assert_eq!(listed[0].etag.as_deref(), Some(etag2.as_str()));

    let stale_delete = dav.delete(name, Some(&etag1)).await;
    assert_eq!(stale_delete, Err(DavError::PreconditionFailed));
    dav.delete(name, Some(&etag2)).await.unwrap();
    assert_eq!(dav.get(name).await.unwrap(), None);
    dav.delete(name, None).await.unwrap();
    assert!(dav.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn find_uids_sees_our_uid_under_a_foreign_name() {
    let server = Radicale::start();
    let url = server.collection_url("calendar");
    client(&url).ensure_calendar("FOGIS").await.unwrap();
    // A fresh client learns that the collection is a calendar by itself.
    let dav = client(&url);
    let foreign = "Imported från telefon.ics";
    let body = ics(&event(42, "A - B"));
    dav.put(foreign, body.clone(), ICS, Precondition::Unconditional)
        .await
        .unwrap();
    let ours = "fogis-match-43.ics";
    let put = dav.put(
        ours,
        ics(&event(43, "C - D")),
        ICS,
        Precondition::CreateOnly,
    );
    put.await.unwrap();

    let mut found = dav.find_uids().await.unwrap();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    let seen: Vec<(&str, Option<&str>)> = found
        .iter()
        .map(|r| (r.name.as_str(), r.uid.as_deref()))
        .collect();
    let (uid42, uid43) = (uid(42), uid(43));
    assert_eq!(
        seen,
        [
            (foreign, Some(uid42.as_str())),
            (ours, Some(uid43.as_str()))
        ]
    );
    assert!(found[0].href.contains("%20"), "{}", found[0].href);
    assert!(found.iter().all(|r| r.etag.is_some()));

    // Radicale keeps UIDs unique in a collection: the same event under our own name is refused,
    // which is why a sink must adopt the foreign item instead.
    let twin = dav.put("fogis-match-42.ics", body, ICS, Precondition::CreateOnly);
    let refused = twin.await.unwrap_err();
    assert!(
        matches!(&refused, DavError::Refused { status: 409, precondition, .. } if precondition == "no-uid-conflict"),
        "{refused:?}"
    );
    assert!(!refused.is_retryable() && !refused.is_auth());
}

fn contact() -> Contact {
    Contact {
        uid: "fogis-referee-61318".into(),
        referee_number: Some("61318".into()),
        name: "Anna Berg".into(),
        mobile: Some("+46701234567".into()),
        email: Some("anna@example.se".into()),
        address: None,
        upcoming: vec![(
            at(6, 16, 30),
            "IFK Göteborg - Malmö FF".into(),
            "AD1".into(),
        )],
        updated: at(1, 8, 0),
    }
}

#[tokio::test]
async fn address_book_holds_vcards_and_survives_a_restart() {
    let mut server = Radicale::start();
    let url = server.collection_url("contacts");
    let dav = client(&url);
    dav.ensure_addressbook("FOGIS referees").await.unwrap();
    dav.ensure_addressbook("FOGIS referees").await.unwrap();
    let wrong_kind = dav.ensure_calendar("not here").await.unwrap_err();
    assert!(
        matches!(wrong_kind, DavError::Protocol(_)),
        "{wrong_kind:?}"
    );

    let mut card = contact();
    let name = card.file_name();
    let put = dav.put(&name, render_vcard(&card), VCF, Precondition::CreateOnly);
    let etag = put.await.unwrap().expect("ETag");
    let (text, _) = dav.get(&name).await.unwrap().unwrap();
    assert!(text.contains("FN:Anna Berg"), "{text}");
    assert!(text.contains("+46701234567"));
    let found = client(&url).find_uids().await.unwrap();
    assert_eq!(found.len(), 1);
    // A vCard 4.0 UID is a URI (RFC 6350 6.7.6): the UUID URN of the key.
    let uid = fogis_calendar_sync::render::vcard::card_uid("fogis-referee-61318");
    assert_eq!(found[0].uid.as_deref(), Some(uid.as_str()));
    assert_eq!(found[0].etag.as_deref(), Some(etag.as_str()));

    // Down: a retryable transport error. Up again: everything is still there.
    server.stop();
    let down = dav.get(&name).await.unwrap_err();
    assert!(matches!(down, DavError::Transport(_)), "{down:?}");
    assert!(down.is_retryable() && !down.is_auth());
    server.start_again();
    card.mobile = Some("+46709876543".into());
    let update = Precondition::IfMatch(etag);
    dav.put(&name, render_vcard(&card), VCF, update)
        .await
        .unwrap();
    let (text, _) = dav.get(&name).await.unwrap().unwrap();
    assert!(text.contains("+46709876543"));
    dav.delete(&name, None).await.unwrap();
    assert!(dav.find_uids().await.unwrap().is_empty());
}

#[tokio::test]
async fn unreachable_hosts_are_retryable_and_errors_keep_secrets() {
    let bad_host = client("http://fogis-dav.invalid/cal");
    let e = bad_host.ensure_calendar("x").await.unwrap_err();
    assert!(
        matches!(e, DavError::Transport(_) | DavError::Timeout),
        "{e:?}"
    );
    assert!(e.is_retryable() && !e.is_auth());
    assert!(!e.to_string().contains("s3cret"));

    let with_creds = "http://u:url-pass@127.0.0.1:1/cal";
    let dav = DavClient::new(with_creds, None, None, Duration::from_secs(5)).unwrap();
    assert_eq!(dav.collection_url(), "http://127.0.0.1:1/cal/");
    let debug = format!("{dav:?} {:?}", client("http://127.0.0.1:1/"));
    assert!(
        !debug.contains("url-pass") && !debug.contains("s3cret"),
        "{debug}"
    );
    assert!(debug.contains("<redacted>"));
    let refused = dav.get("x.ics").await.unwrap_err();
    assert!(matches!(refused, DavError::Transport(_)), "{refused:?}");
    assert!(!refused.to_string().contains("url-pass"));

    let e = DavClient::new("ftp://host/x", None, None, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(e, DavError::Protocol(_)));
    let e = dav.put(
        "x.ics",
        String::new(),
        "text/calendar\r\nX: y",
        Precondition::Unconditional,
    );
    let e = e.await.unwrap_err();
    assert!(
        matches!(e, DavError::Protocol(_)) && !e.is_retryable(),
        "{e:?}"
    );
}

/// A one-request-per-connection HTTP server that answers from a script, in order, and keeps
/// each request's head for the test to look at.
async fn scripted(answers: Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cal/", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for answer in answers {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&request).into_owned());
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, seen)
}

fn answer(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_put_without_etag_learns_it_by_propfind() {
    let multistatus = concat!(
        r#"<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"><d:response>"#,
        r#"<d:href>/cal/a.ics</d:href><d:propstat><d:prop><d:getetag>"v1"</d:getetag></d:prop>"#,
        r#"<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"#
    );
    let script = vec![
        answer("201 Created", "", ""),
        answer(
            "207 Multi-Status",
            "Content-Type: application/xml\r\n",
            multistatus,
        ),
        answer("204 No Content", "ETag: W/\"weak\"\r\n", ""),
        answer("404 Not Found", "", ""),
    ];
    let (url, seen) = scripted(script).await;
    let dav = client(&url);
    let etag = dav.put(
        "a.ics",
        "BEGIN:VCALENDAR".into(),
        ICS,
        Precondition::CreateOnly,
    );
    assert_eq!(etag.await.unwrap().as_deref(), Some("\"v1\""));
    // A weak ETag cannot be used with If-Match; the follow-up PROPFIND finds none: None.
    let update = Precondition::IfMatch("\"v1\"".into());
    let etag = dav
        .put("a.ics", "BEGIN:VCALENDAR".into(), ICS, update)
        .await;
    assert_eq!(etag, Ok(None));

    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].starts_with("PUT /cal/a.ics "), "{}", seen[0]);
    let lower: Vec<String> = seen.iter().map(|r| r.to_lowercase()).collect();
    assert!(lower[0].contains("if-none-match: *") && lower[0].contains("authorization: basic"));
    assert!(seen[1].starts_with("PROPFIND /cal/a.ics ") && lower[1].contains("depth: 0"));
    assert!(lower[2].contains("if-match: \"v1\""));
}

#[tokio::test]
async fn server_errors_map_to_what_the_caller_must_do() {
    let long = "Internal error: ".to_owned() + &"x".repeat(5000);
    let script = vec![
        answer("401 Unauthorized", "WWW-Authenticate: Basic\r\n", "no"),
        answer("503 Service Unavailable", "", &long),
        answer("429 Too Many Requests", "", ""),
        answer(
            "207 Multi-Status",
            "",
            "<d:multistatus xmlns:d='DAV:'><d:response>",
        ),
        answer(
            "301 Moved Permanently",
            "Location: https://elsewhere/cal/\r\n",
            "",
        ),
        answer("400 Bad Request", "", ""),
    ];
    let (url, _) = scripted(script).await;
    let dav = client(&url);

    let e = dav.get("a.ics").await.unwrap_err();
    assert_eq!(e, DavError::Unauthorized { status: 401 });
    assert!(e.is_auth() && !e.is_retryable());

    let e = dav.get("a.ics").await.unwrap_err();
    let DavError::Status {
        status,
        body_excerpt,
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!(*status, 503);
    assert!(body_excerpt.starts_with("Internal error: xxx"));
    assert_eq!(body_excerpt.chars().count(), 200);
    // The server's words never reach the message (the sink status, the log).
    assert_eq!(
        e.to_string(),
        "HTTP 503: the server's text is logged at debug level"
    );
    assert!(e.is_retryable());

    let e = dav.delete("a.ics", None).await.unwrap_err();
    assert!(matches!(e, DavError::Status { status: 429, .. }) && e.is_retryable());

    let e = dav.list().await.unwrap_err();
    assert!(matches!(e, DavError::Protocol(_)), "{e:?}");

    let e = dav.get("a.ics").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("redirected to https://elsewhere/cal/"),
        "{e}"
    );
    assert!(!e.is_retryable());

    let e = dav.put("a.ics", String::new(), ICS, Precondition::Unconditional);
    let e = e.await.unwrap_err();
    assert!(matches!(e, DavError::Status { status: 400, .. }) && !e.is_retryable());
}
