//! The sink boundary (issue 15): whatever commits (the CLI next to a running service included)
//! reaches every sink and the running service's feed and status page; a fresh install against
//! an address book holding our cards deletes and rewrites nothing; `/health` answers while
//! another process holds the state's write lock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/google_fake.rs"]
mod google_fake;
#[path = "common/google_support.rs"]
mod google_support;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/radicale.rs"]
mod radicale;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use fogis_calendar_sync::sinks::dav::DavClient;
use google_fake::GoogleFake;
use google_support::{message, six_matches, CALENDAR_ID};
use proxy::recording_proxy;
use radicale::Radicale;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

fn dav(url: &str) -> DavClient {
    DavClient::new(
        url,
        Some("user".into()),
        Some("pass".into()),
        Duration::from_secs(10),
    )
    .unwrap()
}

/// Runs the binary with `DATA_DIR=dir`.
async fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fogis-calendar-sync"))
            .args(&args)
            .env("DATA_DIR", &dir)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Waits until every sink has planned against the current state, has nothing pending and
/// no error since its last success.
async fn wait_sinks_idle(svc: &Service) -> Value {
    svc.wait_json("/sinks", "sinks idle", LIMIT, |s| {
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

/// Names of the live (not deleted) Google events, by match id.
fn google_live(fake: &GoogleFake) -> BTreeMap<String, String> {
    fake.lock()
        .calendar
        .events(CALENDAR_ID)
        .into_iter()
        .filter(|e| e["status"] != "cancelled")
        .map(|e| {
            (
                e["extendedProperties"]["private"]["matchId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["summary"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_applied_by_the_cli_and_held_apply_reach_every_sink_and_the_running_service() {
    let r = Radicale::start();
    let fake = GoogleFake::start().await;
    let (cal_url, book_url) = (r.collection_url("calendar"), r.collection_url("contacts"));
    let svc =
        google_support::start_service_with(&fake, tempfile::tempdir().unwrap(), true, true, |o| {
            o.sinks.caldav_url = Some(cal_url.clone());
            o.sinks.caldav_username = Some("user".into());
            o.sinks.caldav_password = secret("pass");
            o.sinks.carddav_url = Some(book_url.clone());
            o.sinks.carddav_username = Some("user".into());
            o.sinks.carddav_password = secret("pass");
        })
        .await;
    wait_sinks_idle(&svc).await;
    let (cal, book) = (dav(&cal_url), dav(&book_url));
    let dir = svc.dir.path().to_path_buf();

    // `sync FILE` in another process, next to the running service.
    let file = dir.join("list.json");
    // The five future matches (a past one would stay in the calendar when withdrawn).
    let matches = &six_matches()[..5];
    std::fs::write(&file, message(matches, "cli-1").to_string()).unwrap();
    let out = cli(&dir, &["sync", file.to_str().unwrap()]).await;
    assert!(out.status.success(), "{out:?}");
    let feed = eventually(
        "the CLI's list in the feed",
        LIMIT,
        Duration::from_millis(20),
        || async {
            let text = svc.feed().await;
            let n = parse_feed(&text).len();
            if n == 5 {
                Ok(text)
            } else {
                Err(format!("{n} events"))
            }
        },
    )
    .await;
    assert!(feed.contains("Malmö FF - Åtvidabergs FF"), "{feed}");
    let page = svc.get_text("/").await;
    assert!(
        page.contains("Malmö FF"),
        "the status page shows the CLI's list"
    );
    wait_sinks_idle(&svc).await;
    assert_eq!(cal.list().await.unwrap().len(), 5, "CalDAV");
    let cards = book.find_uids().await.unwrap();
    assert!(!cards.is_empty(), "CardDAV holds the referees");
    assert_eq!(google_live(&fake).len(), 5, "Google Calendar");
    assert!(
        !fake.lock().people.persons.is_empty(),
        "Google Contacts holds the referees"
    );

    // An empty list is held; `held apply` (another process again) withdraws every match.
    std::fs::write(&file, message(&[], "cli-empty").to_string()).unwrap();
    let out = cli(&dir, &["sync", file.to_str().unwrap()]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("held, not applied (#1)"), "{text}");
    svc.wait_json("/health", "the CLI's hold seen", LIMIT, |h| {
        h["held_snapshots"] == 1
    })
    .await;
    assert_eq!(
        cal.list().await.unwrap().len(),
        5,
        "a held list changes nothing"
    );
    let out = cli(&dir, &["held", "apply", "1"]).await;
    assert!(out.status.success(), "{out:?}");
    eventually(
        "the held apply in the feed",
        LIMIT,
        Duration::from_millis(20),
        || async {
            let n = parse_feed(&svc.feed().await).len();
            if n == 0 {
                Ok(())
            } else {
                Err(format!("{n} events"))
            }
        },
    )
    .await;
    svc.wait_json("/health", "the hold resolved", LIMIT, |h| {
        h["held_snapshots"] == 0
    })
    .await;
    wait_sinks_idle(&svc).await;
    assert!(cal.list().await.unwrap().is_empty(), "CalDAV follows");
    assert!(google_live(&fake).is_empty(), "Google Calendar follows");
    // Withdrawn matches stay on the status page a while, struck through, as "removed from your
    // list".
    let page = svc.get_text("/").await;
    assert_eq!(
        page.matches("removed from your list").count(),
        5,
        "the status page follows"
    );
    svc.stop().await;
}

async fn start_carddav(dir: tempfile::TempDir, book: &str) -> Service {
    let book = book.to_string();
    Service::start_in(dir, |o| {
        o.sinks.carddav_url = Some(book);
        o.sinks.carddav_username = Some("user".into());
        o.sinks.carddav_password = secret("pass");
        o.state.user_referee_number = Some("61318".into());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_install_against_an_address_book_holding_our_cards_deletes_and_rewrites_nothing() {
    let r = Radicale::start();
    let (proxy, seen) = recording_proxy(r.url()).await;
    let book_url = format!("{proxy}/user/contacts/");
    let list = future_snapshot(&[10, 20, 30, 40], "first");

    // An earlier install wrote the cards.
    let svc = start_carddav(tempfile::tempdir().unwrap(), &book_url).await;
    svc.post("/sync", serde_json::to_vec(&list).unwrap()).await;
    wait_sinks_idle(&svc).await;
    svc.stop().await;
    let book = dav(&r.collection_url("contacts"));
    let before: Vec<(String, Option<String>)> = {
        let mut v: Vec<_> = book
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|x| (x.name, x.etag))
            .collect();
        v.sort();
        v
    };
    assert_eq!(before.len(), 2, "{before:?}");

    // A fresh install (empty DATA_DIR) meets them: nothing is deleted before the first list...
    seen.lock().unwrap().clear();
    let svc = start_carddav(tempfile::tempdir().unwrap(), &book_url).await;
    wait_sinks_idle(&svc).await;
    // ...nor after it, and no card that is already as we would write it is written again.
    let mut again = list.clone();
    again["message_id"] = json!("first-again");
    svc.post("/sync", serde_json::to_vec(&again).unwrap()).await;
    wait_sinks_idle(&svc).await;
    let writes: Vec<(String, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "PUT" || s.method == "DELETE")
        .map(|s| (s.method.clone(), s.path.clone()))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    let mut after: Vec<(String, Option<String>)> = book
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.name, x.etag))
        .collect();
    after.sort();
    assert_eq!(after, before);

    // The adopted cards are the new install's own now: a referee who leaves the list leaves
    // the address book.
    let mut fewer = list.clone();
    fewer["message_id"] = json!("fewer");
    fewer["payload"]["matches"] = json!([list["payload"]["matches"][0].clone()]);
    svc.post("/sync", serde_json::to_vec(&fewer).unwrap()).await;
    wait_sinks_idle(&svc).await;
    let deletes = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "DELETE")
        .count();
    let cards = svc.get_text("/contacts.vcf").await;
    assert_eq!(
        book.list().await.unwrap().len(),
        cards.matches("BEGIN:VCARD").count(),
        "{cards}"
    );
    assert_eq!(deletes, before.len() - cards.matches("BEGIN:VCARD").count());
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_another_process_holds_the_write_lock() {
    let svc = Service::start().await;
    svc.post(
        "/sync",
        serde_json::to_vec(&future_snapshot(&[1, 2], "h1")).unwrap(),
    )
    .await;
    let db = svc.dir.path().join("state.db");
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    // A list arrives meanwhile: the engine waits for the write lock (up to its busy timeout),
    // holding its own lock all along.
    let body = serde_json::to_vec(&future_snapshot(&[1, 2, 3], "h2")).unwrap();
    let (http, url) = (svc.http.clone(), svc.url("/sync"));
    let sync = tokio::spawn(async move { http.post(url).body(body).send().await });
    tokio::task::yield_now().await;
    let health = tokio::time::timeout(LIMIT, svc.get_json("/health"))
        .await
        .expect("/health answered while the write lock was held");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["matches"], 2);
    // Released only now, after /health answered.
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let _ = sync.await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_configured_later_writes_what_the_state_already_holds() {
    let r = Radicale::start();
    // The lists arrive while no sink is configured.
    let svc = Service::start().await;
    svc.post(
        "/sync",
        serde_json::to_vec(&future_snapshot(&[10, 20, 30], "before")).unwrap(),
    )
    .await;
    let dir = svc.stop().await;
    let (cal_url, book_url) = (r.collection_url("calendar"), r.collection_url("contacts"));
    let svc = Service::start_in(dir, |o| {
        o.sinks.caldav_url = Some(cal_url.clone());
        o.sinks.caldav_username = Some("user".into());
        o.sinks.caldav_password = secret("pass");
        o.sinks.carddav_url = Some(book_url.clone());
        o.sinks.carddav_username = Some("user".into());
        o.sinks.carddav_password = secret("pass");
        o.state.user_referee_number = Some("61318".into());
    })
    .await;
    wait_sinks_idle(&svc).await;
    assert_eq!(dav(&cal_url).list().await.unwrap().len(), 3);
    let cards = svc.get_text("/contacts.vcf").await;
    assert_eq!(
        dav(&book_url).list().await.unwrap().len(),
        cards.matches("BEGIN:VCARD").count()
    );
    assert!(cards.contains("BEGIN:VCARD"), "{cards}");
    svc.stop().await;
}

#[test]
fn every_change_bumps_the_state_version_whichever_process_makes_it() {
    use fogis_calendar_sync::{apply_bytes, open_engine};
    let dir = tempfile::tempdir().unwrap();
    let opts = state_opts(dir.path());
    // The service's engine and the CLI's, on the same file.
    let (service, cli) = (open_engine(&opts).unwrap(), open_engine(&opts).unwrap());
    let list = |days: &[i64], id: &str| serde_json::to_vec(&future_snapshot(days, id)).unwrap();
    assert_eq!(service.view().version, 0, "no list was ever applied");
    let watch = service.watch();

    apply_bytes(&cli, &list(&[5, 6], "one"), "cli").unwrap();
    service.refresh().unwrap();
    assert!(watch.has_changed().unwrap(), "readers are woken");
    let view = service.view();
    assert_eq!((view.version, view.matches.len()), (1, 2));

    // A duplicate, and the same list under a new id, change nothing: no new version.
    apply_bytes(&cli, &list(&[5, 6], "one"), "cli").unwrap();
    apply_bytes(&cli, &list(&[5, 6], "one-again"), "cli").unwrap();
    service.refresh().unwrap();
    assert_eq!(service.view().version, 1);

    // The service's own commit, seen by the CLI's engine.
    apply_bytes(&service, &list(&[5, 6, 7], "two"), "http").unwrap();
    assert_eq!(service.view().version, 2);
    cli.refresh().unwrap();
    let view = cli.view();
    assert_eq!((view.version, view.matches.len()), (2, 3));

    // A purge is a change too.
    let purge = fogis_calendar_sync::store::purge::PurgeOptions {
        matches_before: Some(chrono::Utc::now() + chrono::Duration::days(365)),
        ..Default::default()
    };
    cli.with_store(|s| s.purge(purge)).unwrap();
    service.refresh().unwrap();
    let view = service.view();
    assert_eq!((view.version, view.matches.len()), (3, 0));
}
