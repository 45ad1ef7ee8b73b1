//! Two instances, one calendar: each with its own DATA_DIR and state, both consuming every list
//! from one real redis-server, both configured with the same CalDAV calendar and CardDAV address
//! book on a real server (Radicale, Xandikos). Only the holder of the sink lease writes; when it
//! is killed (SIGKILL, nothing released) the standby takes over and converges the calendar from
//! its own state with exactly one event per match; a holder that cannot reach Redis stops
//! writing and resumes when it is back. The services run as child processes.
//!
//! Nothing here asserts on time; the takeover times seen are printed (`--nocapture`).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/google_fake.rs"]
mod google_fake;
#[path = "common/google_support.rs"]
mod google_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use fogis_calendar_sync::sinks::dav::DavClient;
use fogis_pubsub::{PublishTargets, Publisher, RedisUrl};
use serde_json::Value;
use test_support::dav::{Flavour, Server, PASSWORD, USER};
use test_support::RedisServer;

/// Longer than any takeover may take (TTL 10 s + retry 2 s), with room for a busy machine.
const LIMIT: Duration = Duration::from_secs(60);

fn env(
    redis: &RedisServer,
    dav: &Server,
    dir: &std::path::Path,
    name: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("DATA_DIR", dir.display().to_string()),
        ("REDIS_URL", redis.url()),
        ("REDIS_CONSUMER_NAME", name.to_string()),
        ("SINK_LEASE", "true".into()),
        // The server root: the holder discovers (or creates) the collections by name.
        ("CALDAV_URL", dav.root()),
        ("CALDAV_USERNAME", USER.into()),
        ("CALDAV_PASSWORD", PASSWORD.into()),
        ("CARDDAV_URL", dav.root()),
        ("CARDDAV_USERNAME", USER.into()),
        ("CARDDAV_PASSWORD", PASSWORD.into()),
        ("USER_REFEREE_NUMBER", "61318".into()),
    ]
}

fn role(health: &Value) -> &str {
    health["sink_lease"]["role"].as_str().unwrap_or("")
}

async fn wait_role(svc: &ServiceProcess, want: &str) -> Value {
    svc.wait_json("/health", &format!("sink lease {want}"), LIMIT, |h| {
        role(h) == want
    })
    .await
}

/// The `/sinks` entry of `name`.
fn sink<'a>(sinks: &'a Value, name: &str) -> &'a Value {
    sinks["sinks"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

/// Waits until every sink planned against the current state and has nothing pending.
async fn wait_sinks_idle(svc: &ServiceProcess) -> Value {
    wait_n_sinks_idle(svc, 2).await
}

async fn wait_n_sinks_idle(svc: &ServiceProcess, n: usize) -> Value {
    svc.wait_json("/sinks", "sinks idle", LIMIT, |s| {
        s["sinks"].as_array().is_some_and(|all| {
            all.len() == n
                && all.iter().all(|x| {
                    x["pending"] == 0 && x["last_success"].is_string() && x["standby"] == false
                })
        })
    })
    .await
}

fn ops(sinks: &Value) -> u64 {
    ["caldav", "carddav"]
        .iter()
        .map(|n| sink(sinks, n)["operations_done"].as_u64().unwrap_or(0))
        .sum()
}

fn client(url: &str) -> DavClient {
    DavClient::new(
        url,
        Some(USER.into()),
        Some(PASSWORD.into()),
        Duration::from_secs(10),
    )
    .unwrap()
}

/// UID -> DTSTART line of the events in iCalendar `text`, added to `out`; panics on a second
/// event of one UID.
fn events_of(text: &str, out: &mut BTreeMap<String, String>) {
    let unfolded = text.replace("\r\n", "\n").replace("\n ", "");
    for block in unfolded.split("BEGIN:VEVENT").skip(1) {
        let line = |p: &str| {
            block
                .lines()
                .find(|l| l.starts_with(p))
                .unwrap_or("")
                .to_string()
        };
        let uid = line("UID:").trim_start_matches("UID:").to_string();
        assert!(
            out.insert(uid.clone(), line("DTSTART")).is_none(),
            "two events for {uid}"
        );
    }
}

/// The events in the calendar.
async fn remote_events(calendar: &DavClient) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for r in calendar.list().await.unwrap() {
        // None: deleted since it was listed (the sink is at work).
        if let Some((body, _)) = calendar.get(&r.name).await.unwrap() {
            events_of(&body, &mut out);
        }
    }
    out
}

/// The same map from a service's feed: what its state wants in the calendar.
async fn feed_events(svc: &ServiceProcess) -> BTreeMap<String, String> {
    let text = reqwest::get(format!("{}/calendar.ics", svc.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    events_of(&text, &mut out);
    out
}

/// A card's UID in one form whatever the vCard version: the URI UID of a key-form UID
/// (`fogis-referee-61318`, what vCard 3.0 cards carry), other UIDs as they are.
fn uri_uid(uid: &str) -> String {
    if uid.starts_with("fogis-referee-") {
        fogis_calendar_sync::render::vcard::card_uid(uid)
    } else {
        uid.to_string()
    }
}

/// Card UIDs in the address book ([`uri_uid`]), and how many cards there are.
async fn remote_cards(book: &DavClient) -> (Vec<String>, usize) {
    let found = book.find_uids().await.unwrap();
    let mut uids: Vec<String> = found
        .iter()
        .filter_map(|r| r.uid.as_deref().map(uri_uid))
        .collect();
    uids.sort();
    (uids, found.len())
}

/// Card UIDs of a service's phonebook ([`uri_uid`]).
async fn feed_cards(svc: &ServiceProcess) -> Vec<String> {
    let text = reqwest::get(format!("{}/contacts.vcf", svc.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut uids: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("UID:").map(uri_uid))
        .collect();
    uids.sort();
    uids
}

/// Waits until the calendar and the address book hold exactly what `svc`'s state wants: one
/// event per match in its feed, at its time, and one card per person in its phonebook.
async fn wait_converged(svc: &ServiceProcess, calendar: &DavClient, book: &DavClient) {
    eventually("the calendar equal to the state", LIMIT, Duration::from_millis(100), || async {
        let (want, have) = (feed_events(svc).await, remote_events(calendar).await);
        let (want_cards, (have_cards, count)) = (feed_cards(svc).await, remote_cards(book).await);
        if want == have && want_cards == have_cards && count == have_cards.len() {
            Ok(())
        } else {
            Err(format!(
                "feed {want:?}, calendar {have:?}; phonebook {want_cards:?}, address book {have_cards:?} ({count})"
            ))
        }
    })
    .await;
}

/// List 1: matches 7000000-7000002. List 2: 7000000 moved, 7000002 withdrawn, 7000003 new.
fn lists() -> (Value, Value) {
    let first = future_snapshot(&[10, 20, 30], "lease-1");
    let mut second = future_snapshot(&[12, 20, 30, 40], "lease-2");
    second["payload"]["matches"]
        .as_array_mut()
        .unwrap()
        .remove(2);
    (first, second)
}

async fn publish(redis: &RedisServer, list: &Value) {
    let p = Publisher::new(RedisUrl::new(redis.url()).unwrap());
    let targets = PublishTargets {
        channel: "fogis:matches:updates".into(),
        latest_key: Some("fogis:matches:latest".into()),
        stream: None,
    };
    p.publish_snapshot(&serde_json::to_vec(list).unwrap(), &targets)
        .await
        .unwrap();
}

/// Starts the DAV server, Redis and instance A (the holder), then B (the standby), both
/// connected to Redis.
async fn pair(
    flavour: Flavour,
) -> (
    Server,
    RedisServer,
    tempfile::TempDir,
    ServiceProcess,
    ServiceProcess,
) {
    let dav = tokio::task::spawn_blocking(move || Server::start(flavour))
        .await
        .unwrap();
    let redis = RedisServer::start();
    let dirs = tempfile::tempdir().unwrap();
    let (da, db) = (dirs.path().join("a"), dirs.path().join("b"));
    let a = ServiceProcess::spawn(&env(&redis, &dav, &da, "a")).await;
    wait_role(&a, "active").await;
    let b = ServiceProcess::spawn(&env(&redis, &dav, &db, "b")).await;
    for svc in [&a, &b] {
        svc.wait_json("/redis-status", "connected to Redis", LIMIT, |s| {
            s["redis_status"]["connected"] == true
        })
        .await;
    }
    (dav, redis, dirs, a, b)
}

/// The collections the holder's sinks write (discovered from the server root).
fn collections(sinks: &Value) -> (DavClient, DavClient) {
    let target = |n| sink(sinks, n)["target"].as_str().unwrap().to_string();
    (client(&target("caldav")), client(&target("carddav")))
}

/// Waits until the holder applied list 1 and its sinks wrote it; returns the collections.
async fn first_list_written(a: &ServiceProcess) -> (DavClient, DavClient) {
    a.wait_json("/matches", "list 1 applied", LIMIT, |m| m["total"] == 3)
        .await;
    let (calendar, book) = collections(&wait_sinks_idle(a).await);
    wait_converged(a, &calendar, &book).await;
    assert_eq!(remote_events(&calendar).await.len(), 3);
    (calendar, book)
}

async fn the_standby_takes_over_from_a_killed_holder_with_one_event_per_match(flavour: Flavour) {
    let (_dav, redis, _dirs, mut a, b) = pair(flavour).await;
    let (first, second) = lists();
    publish(&redis, &first).await;
    let (calendar, book) = first_list_written(&a).await;
    let sinks_a = a.get_json("/sinks").await.unwrap();
    // B applied the list too, and wrote nothing: it stands by.
    b.wait_json("/matches", "list 1 applied on B", LIMIT, |m| {
        m["total"] == 3
    })
    .await;
    let health_b = b.get_json("/health").await.unwrap();
    assert_eq!(role(&health_b), "standby", "{health_b}");
    let sinks_b = b.get_json("/sinks").await.unwrap();
    assert_eq!(ops(&sinks_b), 0, "the standby wrote: {sinks_b}");
    assert!(ops(&sinks_a) > 0, "{sinks_a}");
    assert_eq!(sinks_b["lease"]["role"], "standby", "{sinks_b}");
    assert!(sink(&sinks_b, "caldav")["standby"] == true, "{sinks_b}");
    assert!(a.log().contains("acquired the sink lease"), "{}", a.log());

    // Kill the holder: nothing is released, the key expires on its own.
    a.kill();
    let killed = Instant::now();
    publish(&redis, &second).await;
    b.wait_json("/matches", "list 2 applied on B", LIMIT, |m| {
        m["total"] == 4
    })
    .await;
    let health = wait_role(&b, "active").await;
    let takeover = killed.elapsed();
    assert_eq!(health["sink_lease"]["acquisitions"], 1, "{health}");
    wait_converged(&b, &calendar, &book).await;
    let converged = killed.elapsed();
    eprintln!(
        "{flavour:?}: takeover {:.1} s after the kill, calendar converged {:.1} s after it",
        takeover.as_secs_f64(),
        converged.as_secs_f64()
    );
    // One event per match the state keeps: the moved one moved, the withdrawn one gone (the
    // killed holder wrote it; the standby took it over and deleted it), the new one there.
    let events = remote_events(&calendar).await;
    let ids: Vec<&str> = events.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [7_000_000, 7_000_001, 7_000_003].map(fogis_calendar_sync::render::ics::uid),
        "{events:?}"
    );
    assert!(b.log().contains("acquired the sink lease"), "{}", b.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radicale_the_standby_takes_over_from_a_killed_holder_with_one_event_per_match() {
    the_standby_takes_over_from_a_killed_holder_with_one_event_per_match(Flavour::Radicale).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xandikos_the_standby_takes_over_from_a_killed_holder_with_one_event_per_match() {
    the_standby_takes_over_from_a_killed_holder_with_one_event_per_match(Flavour::Xandikos).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_cannot_reach_redis_stops_writing_and_resumes_when_it_is_back() {
    let (_dav, mut redis, _dirs, a, b) = pair(Flavour::Radicale).await;
    let (first, second) = lists();
    publish(&redis, &first).await;
    let (calendar, book) = first_list_written(&a).await;
    let before = remote_events(&calendar).await;

    // Redis frozen: A cannot renew, and must stop before its key could expire.
    redis.pause();
    let frozen = Instant::now();
    let health = wait_role(&a, "standby").await;
    assert!(
        health["attention"]
            .to_string()
            .contains("sink lease cannot reach Redis"),
        "{health}"
    );
    eprintln!(
        "the holder stood down {:.1} s after Redis froze",
        frozen.elapsed().as_secs_f64()
    );
    assert!(a.log().contains("lost the sink lease"), "{}", a.log());
    // A list reaches both over HTTP meanwhile.
    let body = serde_json::to_vec(&second).unwrap();
    for svc in [&a, &b] {
        assert_eq!(svc.post("/sync", body.clone()).await, 200);
    }
    let sinks = a
        .wait_json("/sinks", "the sinks standing by with work", LIMIT, |s| {
            let c = sink(s, "caldav");
            c["standby"] == true && c["pending"].as_u64().is_some_and(|p| p > 0)
        })
        .await;
    let ops_at_loss = ops(&sinks);
    // Give a sink that wrongly kept writing the time to do it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        remote_events(&calendar).await,
        before,
        "written without the lease"
    );
    let sinks = a.get_json("/sinks").await.unwrap();
    assert_eq!(
        ops(&sinks),
        ops_at_loss,
        "written without the lease: {sinks}"
    );
    assert_eq!(role(&b.get_json("/health").await.unwrap()), "standby");

    // Redis back: one of the two takes the lease and the calendar follows list 2, once.
    redis.resume();
    let holder = eventually(
        "a holder again",
        LIMIT,
        Duration::from_millis(50),
        || async {
            for (svc, name) in [(&a, "a"), (&b, "b")] {
                if svc.get_json("/health").await.as_ref().map(role) == Some("active") {
                    return Ok(name);
                }
            }
            Err("no holder".to_string())
        },
    )
    .await;
    let svc = if holder == "a" { &a } else { &b };
    wait_converged(svc, &calendar, &book).await;
    let events = remote_events(&calendar).await;
    assert_eq!(events.len(), 3, "{events:?}");
    let other = if holder == "a" { &b } else { &a };
    assert_eq!(role(&other.get_json("/health").await.unwrap()), "standby");
}

/// Waits until the Google fake holds exactly `want` (match id -> how many events).
async fn wait_google(fake: &google_fake::GoogleFake, what: &str, want: &BTreeMap<String, usize>) {
    eventually(what, LIMIT, Duration::from_millis(50), || async {
        let have = google_events(fake);
        if &have == want {
            Ok(())
        } else {
            Err(format!("{have:?}"))
        }
    })
    .await;
}

/// Match id -> number of live events in the fake Google calendar.
fn google_events(fake: &google_fake::GoogleFake) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let f = fake.lock();
    for e in f
        .calendar
        .calendars
        .get(google_support::CALENDAR_ID)
        .into_iter()
        .flat_map(|c| c.values())
        .filter(|e| e["status"] != "cancelled")
    {
        let id = &e["extendedProperties"]["private"]["matchId"];
        let id = id.as_str().map_or(id.to_string(), str::to_string);
        *out.entry(id).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_the_standby_takes_over_from_a_killed_holder_with_one_event_per_match() {
    let fake = google_fake::GoogleFake::start().await;
    let redis = RedisServer::start();
    let dirs = tempfile::tempdir().unwrap();
    let env = |name: &str| {
        let token = dirs.path().join(format!("token-{name}.json"));
        fake.write_token_file(&token, true);
        vec![
            ("DATA_DIR", dirs.path().join(name).display().to_string()),
            ("REDIS_URL", redis.url()),
            ("REDIS_CONSUMER_NAME", name.to_string()),
            ("SINK_LEASE", "true".into()),
            ("GOOGLE_TOKEN_FILE", token.display().to_string()),
            ("GOOGLE_CALENDAR_ID", google_support::CALENDAR_ID.into()),
            ("GOOGLE_CONTACTS_ENABLED", "false".into()),
            ("GOOGLE_CALENDAR_API_URL", fake.calendar_url()),
            ("GOOGLE_PEOPLE_API_URL", fake.people_url()),
            ("GOOGLE_TOKEN_URL", fake.token_url()),
            ("GOOGLE_RETRY_BASE_MS", "20".into()),
            ("USER_REFEREE_NUMBER", google_support::USER_REFEREE.into()),
        ]
    };
    let mut a = ServiceProcess::spawn(&env("a")).await;
    wait_role(&a, "active").await;
    let b = ServiceProcess::spawn(&env("b")).await;
    for svc in [&a, &b] {
        svc.wait_json("/redis-status", "connected to Redis", LIMIT, |s| {
            s["redis_status"]["connected"] == true
        })
        .await;
    }
    let (first, second) = lists();
    publish(&redis, &first).await;
    a.wait_json("/matches", "list 1 applied", LIMIT, |m| m["total"] == 3)
        .await;
    let one_each = |ids: &[i64]| -> BTreeMap<String, usize> {
        ids.iter().map(|i| (i.to_string(), 1)).collect()
    };
    let want = one_each(&[7_000_000, 7_000_001, 7_000_002]);
    wait_google(&fake, "list 1 in Google", &want).await;
    wait_n_sinks_idle(&a, 1).await;
    b.wait_json("/matches", "list 1 applied on B", LIMIT, |m| {
        m["total"] == 3
    })
    .await;
    let sinks_b = b.get_json("/sinks").await.unwrap();
    assert_eq!(
        sink(&sinks_b, "google_calendar")["operations_done"],
        0,
        "{sinks_b}"
    );

    a.kill();
    let killed = Instant::now();
    publish(&redis, &second).await;
    wait_role(&b, "active").await;
    eprintln!(
        "Google: takeover {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let want = one_each(&[7_000_000, 7_000_001, 7_000_003]);
    wait_google(&fake, "list 2 in Google, once", &want).await;
    wait_n_sinks_idle(&b, 1).await;
    assert_eq!(google_events(&fake), want);
}
