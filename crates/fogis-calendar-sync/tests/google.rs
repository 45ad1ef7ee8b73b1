//! The Google Calendar and Google Contacts sinks and `google-auth`, against a local fake of
//! Google's endpoints (tests/common/google_fake.rs) pre-filled exactly as the deployed Python
//! service fills them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/google_fake.rs"]
mod google_fake;
#[path = "common/google_support.rs"]
mod google_support;

use std::time::Duration;

use google_fake::{Api, GoogleFake};
use google_support::*;
use reqwest::Method;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

fn event_of(fake: &GoogleFake, id: &str) -> Value {
    fake.lock().calendar.event(CALENDAR_ID, id).expect("event")
}

fn live_events_of(fake: &GoogleFake, match_id: i64) -> Vec<Value> {
    fake.lock()
        .calendar
        .events(CALENDAR_ID)
        .into_iter()
        .filter(|e| {
            e["extendedProperties"]["private"]["matchId"].as_str() == Some(&match_id.to_string())
        })
        .filter(|e| e["status"] != "cancelled")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_from_the_deployed_calendar_writes_nothing_for_unchanged_matches() {
    let fake = GoogleFake::start().await;
    {
        let mut f = fake.lock();
        f.calendar.page_cap = Some(2);
        f.calendar.empty_first_page = true;
        f.calendar.put(CALENDAR_ID, json!({"summary": "Tandläkare", "start": {"date": "2030-01-02"}, "end": {"date": "2030-01-03"}}));
    }
    let matches = six_matches();
    let ids = prefill(&fake, &matches);
    let svc = start_service(&fake, true, false).await;
    let (status, _) = svc.post("/sync", message(&matches, "m1").to_string()).await;
    assert_eq!(status, 200);
    let sinks = wait_idle(&svc, LIMIT).await;
    assert_eq!(
        fake.lock().calendar.writes,
        0,
        "unchanged matches are never written"
    );
    assert_eq!(fake.lock().calendar.events(CALENDAR_ID).len(), 7);
    let notice = sinks["sinks"][0]["notice"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(notice.contains("6 newly bound"), "{notice}");
    // The whole calendar was listed: every page, deleted events too, by our tag, no window.
    let lists: Vec<String> = fake
        .log()
        .into_iter()
        .filter(|l| l.api == Api::Calendar && l.method == Method::GET)
        .map(|l| l.uri)
        .collect();
    assert!(
        lists.len() >= 4,
        "short and empty pages followed: {lists:?}"
    );
    assert!(lists
        .iter()
        .all(|u| u.contains("/calendars/fogis-matches%40group.calendar.google.com/events")));
    assert!(lists.iter().all(|u| u.contains("showDeleted=true")
        && u.contains("syncTag%3DFOGIS_CALENDAR_SYNC")
        && !u.contains("timeMin")));

    // One match moves: one PATCH, with If-Match, on the deployed service's own event.
    let mut moved = matches.clone();
    let t = moved[1]["tid"].as_str().unwrap().to_string();
    let ms: i64 = t[6..t.len() - 2].parse().unwrap();
    moved[1]["tid"] = json!(format!("/Date({})/", ms + 90 * 60_000));
    svc.post("/sync", message(&moved, "m2").to_string()).await;
    wait_idle(&svc, LIMIT).await;
    assert_eq!(fake.lock().calendar.writes, 1);
    let writes: Vec<_> = fake
        .log()
        .into_iter()
        .filter(|l| l.api == Api::Calendar && l.method != Method::GET)
        .collect();
    assert_eq!(writes[0].method, Method::PATCH);
    assert!(writes[0].uri.ends_with(&ids[1].1), "{:?}", writes[0]);
    let e = event_of(&fake, &ids[1].1);
    assert_eq!(e["summary"], "Malmö FF - Åtvidabergs FF");
    assert_eq!(e["location"], "Eleda Stadion");
    assert_eq!(e["start"]["timeZone"], "Europe/Stockholm");
    assert!(
        e["start"]["dateTime"]
            .as_str()
            .unwrap()
            .ends_with(":30:00+01:00")
            || e["start"]["dateTime"]
                .as_str()
                .unwrap()
                .ends_with(":30:00+02:00")
    );
    assert_eq!(
        e["reminders"],
        json!({"useDefault": false, "overrides": [{"method": "popup", "minutes": 2880}]})
    );
    let python_hash =
        python_events(&moved[1..2])[0]["extendedProperties"]["private"]["calendarHash"].clone();
    assert_eq!(
        e["extendedProperties"]["private"]["calendarHash"], python_hash,
        "the deployed hash of the new match"
    );
    assert!(e["description"]
        .as_str()
        .unwrap()
        .contains("Match Details: https://www.svenskfotboll.se/matchfakta/7100002/"));
    assert_eq!(live_events_of(&fake, 7100002).len(), 1);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_cancelled_withdrawn_duplicated_and_new_matches() {
    let fake = GoogleFake::start().await;
    let matches = six_matches();
    let ids = prefill(&fake, &matches);
    // The deployed service made a second event for match 4 (outside its 7-day lookup).
    let dup = prefill(&fake, &matches[3..4])[0].1.clone();
    let svc = start_service(&fake, true, false).await;
    svc.post("/sync", message(&matches, "c1").to_string()).await;
    let sinks = wait_idle(&svc, LIMIT).await;
    assert!(
        sinks["sinks"][0]["notice"]
            .as_str()
            .unwrap()
            .contains("1 duplicate events removed"),
        "{sinks}"
    );
    assert_eq!(live_events_of(&fake, 7100004).len(), 1);
    assert_eq!(
        fake.lock().calendar.writes,
        1,
        "only the duplicate was deleted"
    );
    let kept4 = live_events_of(&fake, 7100004)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(kept4, dup, "the most recently updated one is kept");

    // The user colours match 1's event: its ETag moves on, our stored one is stale.
    fake.lock()
        .calendar
        .user_edit(CALENDAR_ID, &ids[0].1, json!({"colorId": "5"}));
    let untouched = event_of(&fake, &ids[4].1)["etag"].clone();
    let mut next = matches.clone();
    let t = next[0]["tid"].as_str().unwrap().to_string();
    let ms: i64 = t[6..t.len() - 2].parse().unwrap();
    next[0]["tid"] = json!(format!("/Date({})/", ms + 3_600_000));
    next[1]["installd"] = json!(true);
    next.remove(2); // withdrawn
    next.push(raw_match(
        7100007,
        40,
        "Örebro SK",
        "Ängelholms FF",
        "Behrn Arena",
    ));
    svc.post("/sync", message(&next, "c2").to_string()).await;
    wait_idle(&svc, LIMIT).await;

    let a = event_of(&fake, &ids[0].1);
    assert_eq!(
        fake.count(Api::Calendar, 412),
        1,
        "the stale ETag met a 412 and was re-read"
    );
    assert_eq!(a["colorId"], "5", "PATCH keeps what the user added");
    assert_eq!(
        a["extendedProperties"]["private"]["calendarHash"],
        python_events(&next[0..1])[0]["extendedProperties"]["private"]["calendarHash"]
    );
    let b = event_of(&fake, &ids[1].1);
    assert_eq!(b["summary"], "INSTÄLLD: Malmö FF - Åtvidabergs FF");
    assert_eq!(b["status"], "confirmed");
    assert_eq!(
        b["reminders"]["overrides"],
        json!([]),
        "a cancelled match rings no reminder"
    );
    assert_eq!(
        event_of(&fake, &ids[2].1)["status"],
        "cancelled",
        "withdrawn: deleted"
    );
    assert_eq!(event_of(&fake, &ids[4].1)["etag"], untouched);
    let new = event_of(&fake, "fogis7100007");
    assert_eq!(new["summary"], "Örebro SK - Ängelholms FF");
    assert_eq!(
        new["extendedProperties"]["private"]["syncTag"],
        "FOGIS_CALENDAR_SYNC"
    );

    // The user deletes match 5 in Google Calendar, then it is withdrawn: 410 is success.
    // Match 8 is inserted, but the answer is lost: the repeat meets 409 and is adopted.
    fake.lock()
        .calendar
        .user_edit(CALENDAR_ID, &ids[4].1, json!({"status": "cancelled"}));
    fake.lock().calendar.lose_next_insert_answer = true;
    let mut third: Vec<Value> = next
        .iter()
        .filter(|m| m["matchid"] != 7100005)
        .cloned()
        .collect();
    third.push(raw_match(
        7100008,
        45,
        "Sandvikens IF",
        "Täby FK",
        "Jernvallen",
    ));
    svc.post("/sync", message(&third, "c3").to_string()).await;
    wait_idle(&svc, LIMIT).await;
    assert_eq!(
        fake.count(Api::Calendar, 410),
        1,
        "deleting a deleted event is success"
    );
    assert_eq!(fake.count(Api::Calendar, 409), 1);
    assert_eq!(live_events_of(&fake, 7100008).len(), 1);
    let s = sink(&svc, "google_calendar").await;
    assert!(s["last_error"].is_null(), "{s}");

    // Match 3 comes back: its deleted event is brought back, not duplicated.
    let mut fourth = third.clone();
    fourth.push(matches[2].clone());
    svc.post("/sync", message(&fourth, "c4").to_string()).await;
    wait_idle(&svc, LIMIT).await;
    assert_eq!(event_of(&fake, &ids[2].1)["status"], "confirmed");
    assert_eq!(live_events_of(&fake, 7100003).len(), 1);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_state_meets_its_tombstones_with_409_and_revives_them() {
    let fake = GoogleFake::start().await;
    fake.lock().calendar.bare_tombstones = true;
    let matches = six_matches();
    let svc = start_service(&fake, true, false).await;
    svc.post("/sync", message(&matches[..4], "t1").to_string())
        .await;
    wait_idle(&svc, LIMIT).await;
    assert_eq!(event_of(&fake, "fogis7100002")["status"], "confirmed");
    svc.post("/sync", message(&matches[2..4], "t2").to_string())
        .await;
    wait_idle(&svc, LIMIT).await;
    for id in ["fogis7100001", "fogis7100002"] {
        assert_eq!(
            event_of(&fake, id)["status"],
            "cancelled",
            "withdrawn: {id} deleted"
        );
    }
    svc.stop().await;

    // The state is lost; Google lists the tombstones without their properties. The matches
    // come back: inserting their ids meets 409, and the tombstones are revived.
    let svc = start_service(&fake, true, false).await;
    let writes = fake.lock().calendar.writes;
    svc.post("/sync", message(&matches[..4], "t3").to_string())
        .await;
    wait_idle(&svc, LIMIT).await;
    assert_eq!(fake.count(Api::Calendar, 409), 2);
    for id in [
        "fogis7100001",
        "fogis7100002",
        "fogis7100003",
        "fogis7100004",
    ] {
        assert_eq!(event_of(&fake, id)["status"], "confirmed", "{id}");
    }
    assert_eq!(
        fake.lock().calendar.events(CALENDAR_ID).len(),
        4,
        "no duplicates"
    );
    assert_eq!(
        fake.lock().calendar.writes - writes,
        4,
        "two inserts met 409, two patches; matches 3 and 4 adopted as they are"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_from_before_the_google_sink_is_adopted_without_writes() {
    let fake = GoogleFake::start().await;
    let matches = six_matches();
    prefill(&fake, &matches);
    // The matches reach the state while Google is not configured yet.
    let svc = common::Service::start().await;
    svc.post("/sync", message(&matches, "s1").to_string()).await;
    let dir = svc.stop().await;
    let svc = start_service_in(&fake, dir, true, false).await;
    wait_idle(&svc, LIMIT).await;
    assert_eq!(fake.lock().calendar.writes, 0);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_matches_are_deleted_under_google_cancelled_delete() {
    use fogis_calendar_sync::config::google::CancelledPolicy;
    let fake = GoogleFake::start().await;
    let mut matches = six_matches();
    let ids = prefill(&fake, &matches);
    let dir = tempfile::tempdir().unwrap();
    let svc = start_service_with(&fake, dir, true, false, |o| {
        o.google.google_cancelled = CancelledPolicy::Delete;
    })
    .await;
    matches[0]["installd"] = json!(true);
    svc.post("/sync", message(&matches, "d1").to_string()).await;
    wait_idle(&svc, LIMIT).await;
    assert_eq!(event_of(&fake, &ids[0].1)["status"], "cancelled");
    assert_eq!(fake.lock().calendar.writes, 1);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_and_a_401_refreshes_once() {
    let fake = GoogleFake::start().await;
    let svc = start_service(&fake, false, false).await;
    svc.post("/sync", message(&six_matches()[..1], "r1").to_string())
        .await;
    wait_idle(&svc, LIMIT).await;
    assert_eq!(fake.lock().refreshes, 1);
    let path = svc.dir.path().join("token.json");
    let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        file["token"].as_str().unwrap().starts_with("ya29.fake-"),
        "{file}"
    );
    assert_eq!(file["refresh_token"], google_fake::REFRESH_TOKEN);
    assert_eq!(
        file["scopes"].as_array().unwrap().len(),
        3,
        "other keys kept"
    );
    let expiry = chrono::DateTime::parse_from_rfc3339(file["expiry"].as_str().unwrap()).unwrap();
    assert!(expiry > chrono::Utc::now() + chrono::Duration::minutes(50));
    let leftovers = std::fs::read_dir(svc.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0);

    fake.revoke_access_tokens();
    svc.post("/sync", message(&six_matches()[..2], "r2").to_string())
        .await;
    wait_idle(&svc, LIMIT).await;
    assert_eq!(
        fake.count(Api::Calendar, 401),
        1,
        "one 401, then a fresh token"
    );
    assert_eq!(fake.lock().refreshes, 2);
    assert_eq!(live_events_of(&fake, 7100002).len(), 1);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_back_off_then_succeed() {
    let fake = GoogleFake::start().await;
    for (status, reason) in [
        (403, "rateLimitExceeded"),
        (403, "userRateLimitExceeded"),
        (429, "rateLimitExceeded"),
        (500, "backendError"),
        (503, "backendError"),
    ] {
        fake.inject(Api::Calendar, None, status, reason, 1);
    }
    let svc = start_service(&fake, true, false).await;
    svc.post("/sync", message(&six_matches()[..2], "b1").to_string())
        .await;
    wait_idle(&svc, LIMIT).await;
    let calls: Vec<_> = fake
        .log()
        .into_iter()
        .filter(|l| l.api == Api::Calendar)
        .collect();
    let statuses: Vec<u16> = calls.iter().take(6).map(|l| l.status).collect();
    assert_eq!(statuses, [403, 403, 429, 500, 503, 200]);
    for i in 1..6 {
        let gap = calls[i].at - calls[i - 1].at;
        let floor = Duration::from_millis(20 << (i - 1)).min(Duration::from_millis(640));
        assert!(
            gap >= floor,
            "attempt {i} came after {gap:?}, before {floor:?}"
        );
    }
    assert_eq!(live_events_of(&fake, 7100001).len(), 1);
    assert!(fake.max_per_minute(Api::Calendar) <= 600);
    assert!(sink(&svc, "google_calendar").await["last_error"].is_null());
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_exceeded_pauses_the_calendar_sink_and_says_so() {
    let fake = GoogleFake::start().await;
    fake.inject(Api::Calendar, None, 403, "quotaExceeded", 1);
    let svc = start_service(&fake, true, false).await;
    svc.post("/sync", message(&six_matches()[..1], "q1").to_string())
        .await;
    let s = wait_sink(&svc, "google_calendar", LIMIT, |s| {
        s["paused_until"].is_string()
    })
    .await;
    let error = s["last_error"].as_str().unwrap();
    assert!(
        error.contains("usage limits exceeded") && error.contains("quotaExceeded"),
        "{error}"
    );
    let until = chrono::DateTime::parse_from_rfc3339(s["paused_until"].as_str().unwrap()).unwrap();
    assert!(until > chrono::Utc::now() + chrono::Duration::minutes(55));
    let n = fake.log().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.log().len(), n, "paused: no more requests");
    let health = svc.get_json("/health").await;
    assert_eq!(health["sinks"][0]["state"], "unavailable: retrying");
    // /health is public: a fixed text, the remote's words only on /sinks.
    assert_eq!(
        health["sinks"][0]["last_error"],
        "the last attempt failed: see GET /sinks"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_pauses_both_sinks_until_google_auth_writes_a_new_token() {
    let fake = GoogleFake::start().await;
    fake.lock().invalid_grant = true;
    let svc = start_service(&fake, false, true).await;
    svc.post("/sync", message(&six_matches()[..1], "g1").to_string())
        .await;
    for name in ["google_calendar", "google_contacts"] {
        let s = wait_sink(&svc, name, LIMIT, |s| s["reauthorize"].is_string()).await;
        assert!(
            s["reauthorize"]
                .as_str()
                .unwrap()
                .contains("fogis-calendar-sync google-auth"),
            "{s}"
        );
    }
    let health = svc.get_json("/health").await;
    for s in health["sinks"].as_array().unwrap() {
        let state = s["state"].as_str().unwrap();
        assert!(
            state.starts_with("re-authorize") && state.contains("google-auth"),
            "{health}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.lock().refreshes,
        1,
        "a dead grant is tried once, not by every request"
    );
    assert_eq!(fake.lock().calendar.writes, 0);

    // `google-auth` writes a new token: both sinks carry on without a restart.
    fake.lock().invalid_grant = false;
    fake.write_token_file(&svc.dir.path().join("token.json"), true);
    wait_idle(&svc, Duration::from_secs(40)).await;
    assert_eq!(live_events_of(&fake, 7100001).len(), 1);
    assert!(sink(&svc, "google_contacts").await["reauthorize"].is_null());
    assert!(
        fake.lock().people.group_named("Referees").is_some(),
        "the group was created"
    );
    svc.stop().await;
}

#[path = "common/google_contacts_cases.rs"]
mod contacts_cases;

#[path = "common/google_auth_cases.rs"]
mod auth_cases;
