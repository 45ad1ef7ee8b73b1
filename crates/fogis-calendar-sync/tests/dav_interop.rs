//! The CalDAV and CardDAV sinks against real servers, each started by the test, behind a proxy
//! that counts what the sink asks for: a fresh install adopting an earlier install's events
//! rewrites none that is unchanged (Radicale and Xandikos).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::time::Duration;

use common::*;
use fogis_dav::{DavClient, Url};
use proxy::{recording_proxy, Log};
use serde_json::{json, Value};
use test_support::dav::{Flavour, Server, PASSWORD, USER};

const LIMIT: Duration = Duration::from_secs(30);

async fn server(flavour: Flavour) -> Server {
    tokio::task::spawn_blocking(move || Server::start(flavour))
        .await
        .unwrap()
}

/// A client that talks to the server directly (not through the proxy), as another program.
fn direct() -> DavClient {
    DavClient::builder()
        .credentials(USER, PASSWORD)
        .preemptive_basic(true)
        .build()
        .unwrap()
}

/// The calendar of the server's user, below `base` (the server or the proxy).
fn calendar_of(flavour: Flavour, base: &str) -> String {
    match flavour {
        Flavour::Xandikos => format!("{base}/user/calendars/calendar/"),
        _ => format!("{base}/user/calendar/"),
    }
}

/// Waits until every sink has planned against the current state, has nothing pending and no
/// error since its last success.
async fn wait_sinks_idle(svc: &Service) -> Value {
    svc.wait_json("/sinks", "sinks idle", LIMIT, |s| {
        s["sinks"].as_array().is_some_and(|sinks| {
            !sinks.is_empty()
                && sinks.iter().all(|x| {
                    x["pending"] == 0
                        && x["last_success"].is_string()
                        && x["paused_until"].is_null()
                        && x["last_error"].is_null()
                })
        })
    })
    .await
}

async fn start_caldav(dir: tempfile::TempDir, url: &str) -> Service {
    let url = url.to_string();
    Service::start_in(dir, |o| {
        o.sinks.caldav_url = Some(url);
        o.sinks.caldav_username = Some(USER.into());
        o.sinks.caldav_password = secret(PASSWORD);
    })
    .await
}

/// (name, ETag) of every item, sorted.
async fn etags(url: &str) -> Vec<(String, Option<String>)> {
    let mut v: Vec<_> = direct()
        .members(&Url::parse(url).unwrap())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.is_collection)
        .map(|m| (m.name, m.etag))
        .collect();
    v.sort();
    v
}

fn count(log: &Log, method: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == method)
        .count()
}

/// An earlier install wrote the events; a fresh install (empty `DATA_DIR`) adopts them and,
/// after the same list, writes none again (its DTSTAMP, CREATED, LAST-MODIFIED differ), then
/// owns them: a withdrawn match's event is deleted.
async fn adopted_events_are_not_rewritten(flavour: Flavour) {
    let server = server(flavour).await;
    let (proxy, seen) = recording_proxy(server.root().trim_end_matches('/').to_string()).await;
    let url = calendar_of(flavour, &proxy);
    let direct_url = calendar_of(flavour, server.root().trim_end_matches('/'));
    let list = future_snapshot(&[10, 20, 30, 40], "first");

    let svc = start_caldav(tempfile::tempdir().unwrap(), &url).await;
    svc.post("/sync", serde_json::to_vec(&list).unwrap()).await;
    wait_sinks_idle(&svc).await;
    svc.stop().await;
    let before = etags(&direct_url).await;
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(before.iter().all(|(_, e)| e.is_some()), "{before:?}");

    // A second apart, so that every stamp of the new install differs from the old one's.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    seen.lock().unwrap().clear();
    let svc = start_caldav(tempfile::tempdir().unwrap(), &url).await;
    let mut again = list.clone();
    again["message_id"] = json!("first-again");
    svc.post("/sync", serde_json::to_vec(&again).unwrap()).await;
    wait_sinks_idle(&svc).await;
    assert_eq!(count(&seen, "PUT"), 0, "{:?}", seen.lock().unwrap());
    assert_eq!(count(&seen, "DELETE"), 0);
    assert_eq!(etags(&direct_url).await, before);

    // They are the new install's own: a match that leaves the list leaves the calendar.
    let mut fewer = list.clone();
    fewer["message_id"] = json!("fewer");
    fewer["payload"]["matches"]
        .as_array_mut()
        .unwrap()
        .truncate(3);
    svc.post("/sync", serde_json::to_vec(&fewer).unwrap()).await;
    wait_sinks_idle(&svc).await;
    assert_eq!(count(&seen, "DELETE"), 1);
    assert_eq!(count(&seen, "PUT"), 0);
    assert_eq!(etags(&direct_url).await.len(), 3);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radicale_events_an_earlier_install_wrote_are_adopted_without_a_rewrite() {
    adopted_events_are_not_rewritten(Flavour::Radicale).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xandikos_events_an_earlier_install_wrote_are_adopted_without_a_rewrite() {
    adopted_events_are_not_rewritten(Flavour::Xandikos).await;
}
