//! The sinks against real servers: CalDAV and CardDAV against Radicale, the forward sink
//! against a local HTTP server that fails first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/radicale.rs"]
mod radicale;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use fogis_calendar_sync::sinks::dav::{DavClient, Precondition};
use radicale::Radicale;
use serde_json::{json, Value};

fn dav(url: &str) -> DavClient {
    DavClient::new(
        url,
        Some("user".into()),
        Some("pass".into()),
        Duration::from_secs(10),
    )
    .unwrap()
}

async fn start_with_radicale(dir: tempfile::TempDir, r: &Radicale) -> Service {
    let (cal, book) = (r.collection_url("calendar"), r.collection_url("contacts"));
    Service::start_in(dir, |o| {
        o.sinks.caldav_url = Some(cal);
        o.sinks.caldav_username = Some("user".into());
        o.sinks.caldav_password = secret("pass");
        o.sinks.carddav_url = Some(book);
        o.sinks.carddav_username = Some("user".into());
        o.sinks.carddav_password = secret("pass");
        o.state.user_referee_number = Some("61318".into());
    })
    .await
}

/// Waits until every sink has nothing pending and no error since its last success.
async fn wait_sinks_idle(svc: &Service, limit: Duration) -> Value {
    svc.wait_json("/sinks", "sinks idle", limit, |s| {
        s["sinks"].as_array().is_some_and(|sinks| {
            !sinks.is_empty()
                && sinks.iter().all(|x| {
                    x["pending"] == 0
                        && x["last_success"].is_string()
                        && x["paused_until"].is_null()
                })
        })
    })
    .await
}

/// UID -> (DTSTART line, STATUS line) of every event in the remote calendar.
async fn remote_events(client: &DavClient) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for r in client.list().await.unwrap() {
        let (body, _) = client.get(&r.name).await.unwrap().unwrap();
        let event = body.split("BEGIN:VEVENT").nth(1).unwrap_or_default();
        let line = |p: &str| {
            event
                .lines()
                .find(|l| l.starts_with(p))
                .unwrap_or("")
                .to_string()
        };
        let uid = line("UID:").trim_start_matches("UID:").to_string();
        assert!(
            out.insert(uid.clone(), (line("DTSTART"), line("STATUS:")))
                .is_none(),
            "duplicate {uid}"
        );
    }
    out
}

/// The same map from the service's own feed.
async fn feed_events(svc: &Service) -> BTreeMap<String, (String, String)> {
    let text = svc.feed().await;
    let mut out = BTreeMap::new();
    for block in text.split("BEGIN:VEVENT").skip(1) {
        let line = |p: &str| {
            block
                .lines()
                .find(|l| l.starts_with(p))
                .unwrap_or("")
                .to_string()
        };
        let uid = line("UID:").trim_start_matches("UID:").to_string();
        out.insert(uid, (line("DTSTART"), line("STATUS:")));
    }
    out
}

/// Referee numbers (from the card UIDs) in the remote address book, with the card count.
async fn remote_cards(client: &DavClient) -> (Vec<String>, usize) {
    let found = client.find_uids().await.unwrap();
    let mut uids: Vec<String> = found.iter().filter_map(|r| r.uid.clone()).collect();
    uids.sort();
    (uids, found.len())
}

/// Three changing lists: 4 matches; then one moved, one re-refereed, one cancelled, one
/// withdrawn; then the moved one moved again.
fn changes() -> Vec<Value> {
    let first = future_snapshot(&[10, 20, 30, 40], "s1");
    let mut second = first.clone();
    second["message_id"] = json!("s2");
    {
        let list = second["payload"]["matches"].as_array_mut().unwrap();
        let t = list[0]["tid"].as_str().unwrap().to_string();
        let ms: i64 = t[6..t.len() - 2].parse().unwrap();
        list[0]["tid"] = json!(format!("/Date({})/", ms + 90 * 60_000));
        list[1]["domaruppdraglista"][2]["personnamn"] = json!("Carl Carlsson");
        list[1]["domaruppdraglista"][2]["domarnr"] = json!("99999");
        list[1]["domaruppdraglista"][2]["mobiltelefon"] = json!("070-999 99 99");
        list[1]["domaruppdraglista"][2]["epostadress"] = json!("carl@example.com");
        list[3]["installd"] = json!(true);
        list.remove(2);
    }
    let mut third = second.clone();
    third["message_id"] = json!("s3");
    let t = third["payload"]["matches"][0]["tid"]
        .as_str()
        .unwrap()
        .to_string();
    let ms: i64 = t[6..t.len() - 2].parse().unwrap();
    third["payload"]["matches"][0]["tid"] = json!(format!("/Date({})/", ms + 30 * 60_000));
    vec![first, second, third]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_and_address_book_follow_the_snapshots() {
    let r = Radicale::start();
    let svc = start_with_radicale(tempfile::tempdir().unwrap(), &r).await;
    let (cal, book) = (
        dav(&r.collection_url("calendar")),
        dav(&r.collection_url("contacts")),
    );
    let lists = changes();
    let (status, _) = svc
        .post("/sync", serde_json::to_vec(&lists[0]).unwrap())
        .await;
    assert_eq!(status, 200);
    wait_sinks_idle(&svc, Duration::from_secs(20)).await;
    assert_eq!(remote_events(&cal).await, feed_events(&svc).await);
    assert_eq!(remote_events(&cal).await.len(), 4);
    let (cards, n) = remote_cards(&book).await;
    assert_eq!(
        cards,
        ["fogis-referee-61438", "fogis-referee-62000"],
        "the user (61318) is not in their own phonebook"
    );
    assert_eq!(n, 2);

    for list in &lists[1..] {
        let (status, _) = svc.post("/sync", serde_json::to_vec(list).unwrap()).await;
        assert_eq!(status, 200);
    }
    wait_sinks_idle(&svc, Duration::from_secs(20)).await;
    let remote = remote_events(&cal).await;
    assert_eq!(remote, feed_events(&svc).await);
    assert_eq!(remote.len(), 3, "the withdrawn match is gone: {remote:?}");
    let cancelled = &remote[&fogis_calendar_sync::render::ics::uid(7_000_003)];
    assert_eq!(cancelled.1, "STATUS:CANCELLED");
    // What FOGIS says shows in a phone's list view too, and a cancelled match rings no alarm.
    let mut bodies = Vec::new();
    for r in cal.list().await.unwrap() {
        bodies.push(cal.get(&r.name).await.unwrap().unwrap().0);
    }
    let cancelled_body = bodies
        .iter()
        .find(|b| b.contains(&fogis_calendar_sync::render::ics::uid(7_000_003)))
        .unwrap();
    assert!(
        cancelled_body.contains("SUMMARY:INSTÄLLD: Home 3 - Away 3"),
        "{cancelled_body}"
    );
    assert!(!cancelled_body.contains("VALARM"), "{cancelled_body}");
    assert!(bodies
        .iter()
        .filter(|b| !b.contains("STATUS:CANCELLED"))
        .all(|b| b.contains("BEGIN:VALARM")));
    let (cards, _) = remote_cards(&book).await;
    assert_eq!(
        cards,
        [
            "fogis-referee-61438",
            "fogis-referee-62000",
            "fogis-referee-99999"
        ]
    );
    let (carl, _) = book.get("fogis-referee-99999.vcf").await.unwrap().unwrap();
    assert!(carl.contains("TEL;TYPE=cell:+46709999999"), "{carl}");
    assert!(carl.contains("FN:Carl Carlsson"), "{carl}");

    // The same cards at /contacts.vcf.
    let vcf = svc.get_text("/contacts.vcf").await;
    assert_eq!(vcf.matches("BEGIN:VCARD").count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radicale_away_then_back_converges_with_no_duplicate_even_across_a_restart() {
    let mut r = Radicale::start();
    let svc = start_with_radicale(tempfile::tempdir().unwrap(), &r).await;
    let (cal, book) = (
        dav(&r.collection_url("calendar")),
        dav(&r.collection_url("contacts")),
    );
    let lists = changes();
    svc.post("/sync", serde_json::to_vec(&lists[0]).unwrap())
        .await;
    wait_sinks_idle(&svc, Duration::from_secs(20)).await;

    r.stop();
    for list in &lists[1..] {
        let (status, _) = svc.post("/sync", serde_json::to_vec(list).unwrap()).await;
        assert_eq!(
            status, 200,
            "the service keeps applying while a sink is away"
        );
    }
    // The work waits, and the status says why.
    svc.wait_json(
        "/sinks",
        "CalDAV work waiting with its error",
        Duration::from_secs(10),
        |s| {
            let cal_sink = s["sinks"]
                .as_array()
                .and_then(|all| all.iter().find(|x| x["name"] == "caldav"));
            cal_sink.is_some_and(|c| {
                c["pending"].as_u64().is_some_and(|n| n > 0) && c["last_error"].is_string()
            })
        },
    )
    .await;
    let health = svc.get_json("/health").await;
    assert!(
        health["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["state"] == "unavailable: retrying"),
        "{health}"
    );

    // Restart the service while the sink is still away: the outbox is durable.
    let dir = svc.stop().await;
    r.start_again();
    let svc = start_with_radicale(dir, &r).await;
    wait_sinks_idle(&svc, Duration::from_secs(30)).await;
    let remote = remote_events(&cal).await;
    assert_eq!(remote, feed_events(&svc).await);
    assert_eq!(remote.len(), 3);
    let (cards, n) = remote_cards(&book).await;
    assert_eq!(n, 3, "{cards:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_already_carrying_our_uid_is_adopted_not_duplicated() {
    let r = Radicale::start();
    let cal = dav(&r.collection_url("calendar"));
    cal.ensure_calendar("mine").await.unwrap();
    let list = future_snapshot(&[10], "one");
    // Written earlier under a foreign name, with a stale title.
    let foreign = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//old//EN\r\nBEGIN:VEVENT\r\nUID:{}\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250101T120000Z\r\nSUMMARY:old title\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        fogis_calendar_sync::render::ics::uid(7_000_000)
    );
    cal.put(
        "old-name.ics",
        foreign,
        "text/calendar",
        Precondition::CreateOnly,
    )
    .await
    .unwrap();
    let svc = start_with_radicale(tempfile::tempdir().unwrap(), &r).await;
    svc.post("/sync", serde_json::to_vec(&list).unwrap()).await;
    wait_sinks_idle(&svc, Duration::from_secs(20)).await;
    let all = cal.list().await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].name, "old-name.ics");
    let (body, _) = cal.get("old-name.ics").await.unwrap().unwrap();
    assert!(body.contains("SUMMARY:Home 0 - Away 0"), "{body}");
}

/// A tiny HTTP server: answers 500 to the first `failures` POSTs, then 200; records bodies.
async fn flaky_server(failures: usize) -> (String, Arc<Mutex<Vec<(u16, Value, Option<String>)>>>) {
    use axum::{extract::State, http::HeaderMap, routing::post, Router};
    type Log = Arc<Mutex<Vec<(u16, Value, Option<String>)>>>;
    let log: Log = Arc::default();
    async fn handler(
        State((log, failures)): State<(Log, usize)>,
        headers: HeaderMap,
        body: String,
    ) -> (axum::http::StatusCode, &'static str) {
        let mut l = log.lock().unwrap();
        let status = if l.len() < failures { 500 } else { 200 };
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        l.push((
            status,
            serde_json::from_str(&body).unwrap_or(Value::Null),
            auth,
        ));
        (axum::http::StatusCode::from_u16(status).unwrap(), "{}")
    }
    let app = Router::new()
        .route("/manual-sync", post(handler))
        .with_state((log.clone(), failures));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/manual-sync", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forward_sink_retries_until_the_target_takes_the_list() {
    let (url, log) = flaky_server(3).await;
    let svc = Service::start_with(|o| {
        o.sinks.forward_url = Some(url);
        o.sinks.forward_token = secret("fwd-token");
    })
    .await;
    let (status, _) = svc
        .post("/sync", fixture("processor_match_updates.json"))
        .await;
    assert_eq!(status, 200);
    eventually(
        "delivered",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let log = log.lock().unwrap();
            if log.iter().any(|(s, _, _)| *s == 200) {
                Ok(())
            } else {
                Err(format!("{} attempts, none answered 200", log.len()))
            }
        },
    )
    .await;
    let entries = log.lock().unwrap().clone();
    assert_eq!(
        entries.len(),
        4,
        "three failures, then success, then nothing more"
    );
    let (_, body, auth) = &entries[3];
    assert_eq!(auth.as_deref(), Some("Bearer fwd-token"));
    assert_eq!(body["matches"].as_array().unwrap().len(), 3);
    assert_eq!(body["matches"][0]["matchid"], 6186203);
    assert_eq!(
        body["metadata"]["message_id"],
        "d23f0824-128b-4f33-8c5c-7fd0a6a3a450"
    );
    let s = wait_sinks_idle(&svc, Duration::from_secs(5)).await;
    assert_eq!(s["sinks"][0]["name"], "forward");
    // A duplicate or an unchanged list is not forwarded again.
    svc.post("/sync", fixture("seed_flat.json")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_reported_and_never_retried_in_a_hot_loop() {
    use axum::{extract::State, routing::any, Router};
    let hits = Arc::new(Mutex::new(0usize));
    async fn deny(State(h): State<Arc<Mutex<usize>>>) -> axum::http::StatusCode {
        *h.lock().unwrap() += 1;
        axum::http::StatusCode::UNAUTHORIZED
    }
    let app = Router::new().fallback(any(deny)).with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cal/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let svc = Service::start_with(|o| o.sinks.caldav_url = Some(url)).await;
    svc.post("/sync", fixture("processor_match_updates.json"))
        .await;
    svc.wait_json(
        "/health",
        "refused credentials reported",
        Duration::from_secs(10),
        |h| h["sinks"][0]["state"] == "credentials refused: fix the sink's username/password",
    )
    .await;
    let before = *hits.lock().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        *hits.lock().unwrap(),
        before,
        "no retry within the 10-minute pause"
    );
    let s = svc.get_json("/sinks").await;
    assert_eq!(s["sinks"][0]["auth_failed"], true);
    assert!(s["sinks"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("401"));
}
