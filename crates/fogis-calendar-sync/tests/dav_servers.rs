//! The CalDAV and CardDAV sinks against a real Xandikos (started by each test): a tasks-only
//! calendar that refuses events, an address book that offers only vCard 3.0, and a server root
//! given as `CALDAV_URL`. The Radicale runs are in tests/sinks.rs and tests/dav.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use fogis_dav::{discovery, CollectionKind, DavClient, Url};
use serde_json::Value;
use test_support::dav::{Flavour, Server};

/// The `/sinks` entry of `name`.
fn sink<'a>(sinks: &'a Value, name: &str) -> &'a Value {
    sinks["sinks"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

fn dav() -> DavClient {
    DavClient::builder().build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_only_calendar_refuses_each_event_with_its_reason_and_the_sink_is_not_paused() {
    let server = tokio::task::spawn_blocking(|| Server::start(Flavour::Xandikos))
        .await
        .unwrap();
    let tasks = Url::parse(&server.root())
        .unwrap()
        .join("user/calendars/tasks/")
        .unwrap();
    dav().mkcalendar(&tasks, "Tasks", &["VTODO"]).await.unwrap();
    let svc = Service::start_with(|o| o.sinks.caldav_url = Some(tasks.to_string())).await;
    let (status, _) = svc
        .post(
            "/sync",
            serde_json::to_vec(&future_snapshot(&[3, 4], "s1")).unwrap(),
        )
        .await;
    assert_eq!(status, 200);
    let sinks = svc
        .wait_json(
            "/sinks",
            "the refusal reported",
            Duration::from_secs(20),
            |s| {
                sink(s, "caldav")["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("supported-calendar-component"))
            },
        )
        .await;
    let caldav = sink(&sinks, "caldav");
    let error = caldav["last_error"].as_str().unwrap();
    assert!(
        error.contains("does not accept VEVENT"),
        "the server's reason: {error}"
    );
    assert_eq!(caldav["auth_failed"], false, "{caldav}");
    assert!(caldav["paused_until"].is_null(), "{caldav}");
    let health = svc.get_json("/health").await;
    assert!(
        !health.to_string().contains("credentials refused"),
        "{health}"
    );
    assert!(dav().members(&tasks).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_are_vcard_3_where_the_address_book_offers_only_3() {
    let server = tokio::task::spawn_blocking(|| Server::start(Flavour::Xandikos))
        .await
        .unwrap();
    // Xandikos --defaults makes this address book; it advertises vCard 3.0 only.
    let book = Url::parse(&server.root())
        .unwrap()
        .join("user/contacts/addressbook/")
        .unwrap();
    let svc = Service::start_with(|o| {
        o.sinks.carddav_url = Some(book.to_string());
        o.state.user_referee_number = Some("61318".into());
    })
    .await;
    svc.post(
        "/sync",
        serde_json::to_vec(&future_snapshot(&[3, 4], "s1")).unwrap(),
    )
    .await;
    svc.wait_json("/sinks", "cards written", Duration::from_secs(20), |s| {
        let c = sink(s, "carddav");
        c["pending"] == 0 && c["last_success"].is_string()
    })
    .await;
    let client = dav();
    let members = client.members(&book).await.unwrap();
    let urls: Vec<Url> = members.iter().map(|m| m.url.clone()).collect();
    let cards = client
        .multiget(&book, CollectionKind::AddressBook, &urls)
        .await
        .unwrap();
    assert_eq!(cards.len(), 2, "{members:?}");
    for card in &cards {
        // (XML turns the card's CRLF into LF on the way back.)
        let version: Vec<&str> = card
            .data
            .lines()
            .filter(|l| l.starts_with("VERSION:"))
            .collect();
        assert_eq!(version, ["VERSION:3.0"], "{}", card.data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_root_as_caldav_url_leads_to_a_calendar_named_after_calendar_name() {
    let server = tokio::task::spawn_blocking(|| Server::start(Flavour::Xandikos))
        .await
        .unwrap();
    let root = Url::parse(&server.root()).unwrap();
    let svc = Service::start_with(|o| {
        o.sinks.caldav_url = Some(root.to_string());
        o.state.calendar_name = "Domaruppdrag".into();
    })
    .await;
    svc.post(
        "/sync",
        serde_json::to_vec(&future_snapshot(&[3, 4, 5], "s1")).unwrap(),
    )
    .await;
    svc.wait_json("/sinks", "events written", Duration::from_secs(20), |s| {
        let c = sink(s, "caldav");
        c["pending"] == 0 && c["last_success"].is_string()
    })
    .await;
    let client = dav();
    let calendar =
        discovery::find_collection(&client, &root, CollectionKind::Calendar, "Domaruppdrag")
            .await
            .unwrap()
            .expect("the calendar was created under the user's calendar home");
    assert!(calendar.url.path().starts_with("/user/calendars/"));
    let names: Vec<String> = client
        .members(&calendar.url)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("fogis-match-")));
    // Nothing was written at the root itself.
    let at_root = client.members(&root).await.unwrap();
    assert!(at_root.iter().all(|m| m.is_collection), "{at_root:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_match_whose_event_someone_edited_is_left_in_place() {
    let server = tokio::task::spawn_blocking(|| Server::start(Flavour::Xandikos))
        .await
        .unwrap();
    let calendar = Url::parse(&server.root())
        .unwrap()
        .join("user/calendars/matcher/")
        .unwrap();
    let svc = Service::start_with(|o| o.sinks.caldav_url = Some(calendar.to_string())).await;
    let idle = |what: &'static str| {
        svc.wait_json("/sinks", what, Duration::from_secs(20), |s| {
            let c = sink(s, "caldav");
            c["pending"] == 0 && c["last_success"].is_string()
        })
    };
    let list = |days: &[i64], id: &str| serde_json::to_vec(&future_snapshot(days, id)).unwrap();
    let (status, _) = svc.post("/sync", list(&[3, 4, 5, 6], "s1")).await;
    assert_eq!(status, 200);
    idle("four events written").await;

    // Someone moves the last match's event by hand (a new ETag), then it leaves the list.
    let client = dav();
    let edited = fogis_dav::item_url(&calendar, "fogis-match-7000003.ics").unwrap();
    let item = client.get(&edited).await.unwrap().expect("written");
    let body = item.data.replace("SUMMARY:", "SUMMARY:Moved by hand: ");
    client
        .put(
            &edited,
            body,
            "text/calendar",
            fogis_dav::Precondition::IfMatch(item.etag.unwrap()),
        )
        .await
        .unwrap();
    let (status, _) = svc.post("/sync", list(&[3, 4, 5], "s2")).await;
    assert_eq!(status, 200);
    idle("the withdrawal handled").await;

    let kept = client.get(&edited).await.unwrap().expect("left in place");
    assert!(kept.data.contains("Moved by hand"), "{}", kept.data);
    let names: Vec<String> = client
        .members(&calendar)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
}
