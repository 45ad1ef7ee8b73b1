//! The CalDAV and CardDAV sinks against real servers, each started by the test, most behind a
//! proxy that counts what the sinks ask for:
//! - a fresh install adopting an earlier install's events rewrites none that is unchanged
//!   (Radicale and Xandikos);
//! - a vCard 4.0 card with a URI UID under our name is adopted, and keeps its UID (Radicale);
//! - a server root as `CARDDAV_URL` leads to `<CALENDAR_NAME> – referees`, or to an earlier
//!   version's `FOGIS referees` (Xandikos);
//! - a Digest-only server (lighttpd in front of Xandikos) and a Basic-only one (Radicale): the
//!   right password works, a wrong one is "credentials refused", a refused event is not;
//! - a collection whose change tag did not change is not listed again, and a change someone
//!   else made is seen (Radicale and Xandikos).
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

async fn start_carddav(dir: tempfile::TempDir, url: &str) -> Service {
    let url = url.to_string();
    Service::start_in(dir, |o| {
        o.sinks.carddav_url = Some(url);
        o.sinks.carddav_username = Some(USER.into());
        o.sinks.carddav_password = secret(PASSWORD);
        o.state.user_referee_number = Some("61318".into());
    })
    .await
}

/// A card another install wrote as vCard 4.0, with the URI UID ([`card_uid`]) under our
/// resource name, is adopted by that name: no second card for the person, no UID conflict. The
/// address book (Radicale's) offers only 3.0, so it is written once as 3.0 at the same name,
/// keeping its UID (Radicale refuses to change the UID of a resource); a new card in a 3.0 book
/// has the key as UID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vcard_4_card_with_a_uri_uid_is_adopted_by_its_name() {
    use fogis_calendar_sync::render::vcard::card_uid;
    let server = server(Flavour::Radicale).await;
    let (proxy, seen) = recording_proxy(server.root().trim_end_matches('/').to_string()).await;
    let url = format!("{proxy}/user/contacts/");
    let direct_url = Url::parse(&format!("{}user/contacts/", server.root())).unwrap();
    let client = direct();
    client
        .mkcol_addressbook(&direct_url, "Referees")
        .await
        .unwrap();
    let key = "fogis-referee-61438";
    let uid = card_uid(key);
    let v4 = format!(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:{uid}\r\nFN:Jane Smith\r\nN:Smith;Jane;;;\r\nEND:VCARD\r\n"
    );
    let item = fogis_dav::item_url(&direct_url, &format!("{key}.vcf")).unwrap();
    client
        .put(&item, v4, "text/vcard", fogis_dav::Precondition::CreateOnly)
        .await
        .unwrap();

    let svc = start_carddav(tempfile::tempdir().unwrap(), &url).await;
    let list = future_snapshot(&[10, 20], "first");
    svc.post("/sync", serde_json::to_vec(&list).unwrap()).await;
    wait_sinks_idle(&svc).await;
    let names: Vec<String> = etags(direct_url.as_str())
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        ["fogis-referee-61438.vcf", "fogis-referee-62000.vcf"],
        "one card per referee"
    );
    let card = client.get(&item).await.unwrap().unwrap().data;
    assert!(card.contains("VERSION:3.0"), "{card}");
    assert!(card.contains(&format!("UID:{uid}")), "{card}");
    assert!(card.contains("TEL;TYPE=cell:+46700000000"), "{card}");
    let other = fogis_dav::item_url(&direct_url, "fogis-referee-62000.vcf").unwrap();
    let new = client.get(&other).await.unwrap().unwrap().data;
    assert!(new.contains("UID:fogis-referee-62000"), "{new}");
    // One rewrite of the adopted card, one new card; no refused or repeated write.
    assert_eq!(count(&seen, "PUT"), 2, "{:?}", seen.lock().unwrap());
    svc.stop().await;
}

/// `CARDDAV_URL` a server root: the address book is `<CALENDAR_NAME> – referees`, created in
/// the user's address book home; where an earlier version's `FOGIS referees` exists, that one
/// is used and no other is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_root_as_carddav_url_leads_to_an_address_book_named_after_calendar_name() {
    use fogis_dav::{discovery, CollectionKind};
    let start = |root: String| {
        Service::start_with(move |o| {
            o.sinks.carddav_url = Some(root);
            o.state.calendar_name = "Domaruppdrag".into();
            o.state.user_referee_number = Some("61318".into());
        })
    };
    let list = serde_json::to_vec(&future_snapshot(&[10, 20], "first")).unwrap();
    let client = DavClient::builder().build().unwrap();
    for earlier in [false, true] {
        let server = server(Flavour::Xandikos).await;
        let root = Url::parse(&server.root()).unwrap();
        if earlier {
            let old = root.join("user/contacts/referees/").unwrap();
            client
                .mkcol_addressbook(&old, "FOGIS referees")
                .await
                .unwrap();
        }
        let svc = start(root.to_string()).await;
        svc.post("/sync", list.clone()).await;
        wait_sinks_idle(&svc).await;
        svc.stop().await;
        let book = CollectionKind::AddressBook;
        let named = discovery::find_collection(&client, &root, book, "Domaruppdrag – referees");
        let named = named.await.unwrap();
        let old = discovery::find_collection(&client, &root, book, "FOGIS referees");
        let old = old.await.unwrap();
        let used = if earlier {
            assert!(named.is_none(), "no second book: {named:?}");
            old.expect("the earlier book")
        } else {
            assert!(old.is_none());
            named.expect("created under the user's address book home")
        };
        assert!(
            used.url.path().starts_with("/user/contacts/"),
            "{}",
            used.url
        );
        assert_eq!(
            etags(used.url.as_str()).await.len(),
            2,
            "the cards are there"
        );
    }
}

/// The calendar and address book of the server's user.
fn collections(flavour: Flavour, root: &str) -> (String, String) {
    let root = root.trim_end_matches('/');
    match flavour {
        Flavour::Xandikos | Flavour::XandikosDigest => (
            format!("{root}/user/calendars/calendar/"),
            format!("{root}/user/contacts/addressbook/"),
        ),
        _ => (
            format!("{root}/user/calendar/"),
            format!("{root}/user/contacts/"),
        ),
    }
}

async fn start_both(cal: &str, book: &str, password: &str) -> Service {
    start_both_in(tempfile::tempdir().unwrap(), cal, book, password).await
}

async fn start_both_in(dir: tempfile::TempDir, cal: &str, book: &str, password: &str) -> Service {
    let (cal, book, password) = (cal.to_string(), book.to_string(), password.to_string());
    Service::start_in(dir, move |o| {
        o.sinks.caldav_url = Some(cal);
        o.sinks.caldav_username = Some(USER.into());
        o.sinks.caldav_password = secret(&password);
        o.sinks.carddav_url = Some(book);
        o.sinks.carddav_username = Some(USER.into());
        o.sinks.carddav_password = secret(&password);
        o.state.user_referee_number = Some("61318".into());
    })
    .await
}

fn sink<'a>(sinks: &'a Value, name: &str) -> &'a Value {
    sinks["sinks"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

/// Both DAV sinks against a server that speaks one authentication scheme: a wrong password is
/// "credentials refused" on each (a 401, never taken for one refused item), the right one
/// writes every event and card.
async fn sinks_authenticate(flavour: Flavour) {
    let server = server(flavour).await;
    let (cal, book) = collections(flavour, &server.root());
    let list = serde_json::to_vec(&future_snapshot(&[10, 20, 30], "first")).unwrap();

    let svc = start_both(&cal, &book, "wrong horse").await;
    svc.post("/sync", list.clone()).await;
    let sinks = svc
        .wait_json("/sinks", "refused credentials", LIMIT, |s| {
            sink(s, "caldav")["auth_failed"] == true && sink(s, "carddav")["auth_failed"] == true
        })
        .await;
    for name in ["caldav", "carddav"] {
        let error = sink(&sinks, name)["last_error"]
            .as_str()
            .unwrap_or_default();
        assert!(error.contains("HTTP 401"), "{name}: {error}");
        assert!(!error.contains("refused this item"), "{name}: {error}");
    }
    let health = svc.get_json("/health").await.to_string();
    assert_eq!(health.matches("credentials refused").count(), 2, "{health}");
    assert!(!health.contains("wrong horse"));
    svc.stop().await;

    let svc = start_both(&cal, &book, PASSWORD).await;
    svc.post("/sync", list).await;
    wait_sinks_idle(&svc).await;
    assert_eq!(etags(&cal).await.len(), 3, "events");
    assert_eq!(etags(&book).await.len(), 2, "cards");
    let health = svc.get_json("/health").await.to_string();
    assert!(!health.contains("credentials refused"), "{health}");
    svc.stop().await;
}

/// lighttpd asking for Digest in front of Xandikos (Baïkal's default scheme).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dav_sinks_work_against_a_digest_only_server() {
    sinks_authenticate(Flavour::XandikosDigest).await;
    // It really takes Digest only: the right password sent as Basic is refused.
    let server = server(Flavour::XandikosDigest).await;
    let (cal, _) = collections(Flavour::XandikosDigest, &server.root());
    let propfind = reqwest::Method::from_bytes(b"PROPFIND").unwrap();
    let basic = reqwest::Client::new()
        .request(propfind, &cal)
        .basic_auth(USER, Some(PASSWORD))
        .header("Depth", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    let challenge = basic.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Digest "), "{challenge}");
}

/// Radicale with an htpasswd file: Basic only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dav_sinks_work_against_a_basic_only_server() {
    sinks_authenticate(Flavour::Radicale).await;
}

/// Through Digest, a tasks-only calendar's 403 naming a precondition is that event's problem:
/// the sink is not paused and no credentials are blamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_digest_a_refused_event_is_not_taken_for_refused_credentials() {
    let server = server(Flavour::XandikosDigest).await;
    let tasks = Url::parse(&server.root())
        .unwrap()
        .join("user/calendars/tasks/")
        .unwrap();
    direct()
        .mkcalendar(&tasks, "Tasks", &["VTODO"])
        .await
        .unwrap();
    let svc = start_both(
        tasks.as_str(),
        &collections(Flavour::XandikosDigest, &server.root()).1,
        PASSWORD,
    )
    .await;
    svc.post(
        "/sync",
        serde_json::to_vec(&future_snapshot(&[3, 4], "s1")).unwrap(),
    )
    .await;
    let sinks = svc
        .wait_json("/sinks", "the refusal reported", LIMIT, |s| {
            sink(s, "caldav")["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("supported-calendar-component"))
        })
        .await;
    let caldav = sink(&sinks, "caldav");
    assert_eq!(caldav["auth_failed"], false, "{caldav}");
    assert!(caldav["paused_until"].is_null(), "{caldav}");
    let health = svc.get_json("/health").await.to_string();
    assert!(!health.contains("credentials refused"), "{health}");
    // The address book, on the same server, took its cards.
    let book = collections(Flavour::XandikosDigest, &server.root()).1;
    svc.wait_json("/sinks", "cards written", LIMIT, |s| {
        sink(s, "carddav")["pending"] == 0 && sink(s, "carddav")["last_success"].is_string()
    })
    .await;
    assert_eq!(etags(&book).await.len(), 2);
    svc.stop().await;
}

/// The listing requests (PROPFIND Depth 1, REPORT) the proxy saw for paths under `path`, and
/// the PROPFIND Depth 0 ones.
fn listings(log: &Log, path: &str) -> (usize, usize) {
    let log = log.lock().unwrap();
    let under: Vec<_> = log.iter().filter(|s| s.path.starts_with(path)).collect();
    let depth0 = under
        .iter()
        .filter(|s| s.method == "PROPFIND" && s.depth.as_deref() == Some("0"))
        .count();
    (under.iter().filter(|s| s.is_listing()).count(), depth0)
}

/// A collection whose change tag did not change since the last pass is not listed again (a
/// restart reads the tags, one PROPFIND Depth 0 each, and lists nothing); an event someone
/// else deleted changes the calendar's tag, so the next pass lists the calendar, sees it gone
/// and writes it again, while the address book, unchanged by anyone else, is still not listed.
async fn unchanged_collections_are_not_listed_again(flavour: Flavour) {
    let server = server(flavour).await;
    let (proxy, seen) = recording_proxy(server.root().trim_end_matches('/').to_string()).await;
    let (cal, book) = collections(flavour, &proxy);
    let (direct_cal, _) = collections(flavour, &server.root());
    let path = |url: &str| Url::parse(url).unwrap().path().to_string();
    let (cal_path, book_path) = (path(&cal), path(&book));

    let svc = start_both(&cal, &book, PASSWORD).await;
    let list = future_snapshot(&[10, 20, 30], "first");
    svc.post("/sync", serde_json::to_vec(&list).unwrap()).await;
    wait_sinks_idle(&svc).await;
    let dir = svc.stop().await;
    assert!(listings(&seen, &cal_path).0 > 0, "a fresh install lists");

    seen.lock().unwrap().clear();
    let svc = start_both_in(dir, &cal, &book, PASSWORD).await;
    wait_sinks_idle(&svc).await;
    for p in [&cal_path, &book_path] {
        let (listed, checked) = listings(&seen, p);
        assert_eq!(listed, 0, "{p}: {:?}", seen.lock().unwrap());
        assert!(checked > 0, "{p}: the tag was read");
    }

    // Someone else deletes an event of a match that stays as it is.
    let gone = fogis_dav::item_url(&Url::parse(&direct_cal).unwrap(), "fogis-match-7000001.ics");
    direct().delete(&gone.unwrap(), None).await.unwrap();
    assert_eq!(etags(&direct_cal).await.len(), 2);
    seen.lock().unwrap().clear();
    let mut more = future_snapshot(&[10, 20, 30, 40], "more");
    more["payload"]["matches"][1] = list["payload"]["matches"][1].clone();
    svc.post("/sync", serde_json::to_vec(&more).unwrap()).await;
    wait_sinks_idle(&svc).await;
    assert_eq!(
        etags(&direct_cal).await.len(),
        4,
        "the deleted event is back"
    );
    assert!(
        listings(&seen, &cal_path).0 > 0,
        "the changed calendar was listed"
    );
    assert_eq!(
        listings(&seen, &book_path).0,
        0,
        "the address book changed only by us"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radicale_collections_unchanged_since_the_last_pass_are_not_listed_again() {
    unchanged_collections_are_not_listed_again(Flavour::Radicale).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xandikos_collections_unchanged_since_the_last_pass_are_not_listed_again() {
    unchanged_collections_are_not_listed_again(Flavour::Xandikos).await;
}
