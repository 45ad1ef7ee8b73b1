//! The service core over real HTTP: the README's promises, tried as a user would.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};

fn counts(v: &Value) -> [u64; 6] {
    [
        "created",
        "updated",
        "cancelled",
        "withdrawn",
        "unchanged",
        "rejected",
    ]
    .map(|k| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("{k} missing in {v}"))
    })
}

#[tokio::test]
async fn the_production_message_creates_three_events_at_the_right_local_times() {
    let svc = Service::start().await;
    let (status, body) = svc
        .post("/sync", fixture("processor_match_updates.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(counts(&body), [3, 0, 0, 0, 0, 0]);

    let feed = svc.feed().await;
    assert!(
        feed.contains("DTSTART;TZID=Europe/Stockholm:20250506T183000"),
        "{feed}"
    );
    assert!(feed.contains("BEGIN:VTIMEZONE\r\nTZID:Europe/Stockholm"));
    let events = parse_feed(&feed);
    assert_eq!(events.len(), 3);

    let e = event(&events, 6186203);
    assert_eq!(e.props["SUMMARY"], "IFK Göteborg - Falkenbergs FF");
    assert_eq!(e.props["DTSTART"], "20250506T183000");
    assert_eq!(e.dtstart_tzid.as_deref(), Some("Europe/Stockholm"));
    assert_eq!(e.props["DTEND"], "20250506T203000");
    assert_eq!(e.props["LOCATION"], "Kamratgården 2 hybrid");
    assert_eq!(e.props["GEO"], "57.697617;12.028288");
    assert_eq!(e.props["SEQUENCE"], "0");
    assert_eq!(e.props["STATUS"], "CONFIRMED");
    assert_eq!(e.alarm_trigger.as_deref(), Some("-PT2880M"));
    let d = &e.props["DESCRIPTION"];
    for needle in [
        "Match 000402010",
        "Ligacupen Elit Västra",
        "Dom: John Doe, Mobil: 0700000000",
        "AD1: Jane Smith, Mobil: 0700000000",
        "AD2: Alice Andersson, Mobil: 0700000001",
        "IFK Göteborg: Team Contact 1, Mobil: 0700000000",
        "https://www.svenskfotboll.se/matchfakta/6186203/",
    ] {
        assert!(d.contains(needle), "{needle:?} not in {d:?}");
    }
    // Winter and summer: 6186300 is 2025-05-10 14:00 local, 6186400 2025-05-17 13:00.
    assert_eq!(event(&events, 6186300).props["DTSTART"], "20250510T140000");
    assert_eq!(event(&events, 6186400).props["DTSTART"], "20250517T130000");

    let matches = svc.get_json("/matches").await;
    assert_eq!(matches["count"], 3);
    assert_eq!(matches["matches"][0]["presence"], "listed");
}

#[tokio::test]
async fn the_same_list_again_in_any_form_changes_nothing() {
    let svc = Service::start().await;
    let (status, _) = svc
        .post("/sync", fixture("processor_match_updates.json"))
        .await;
    assert_eq!(status, 200);
    let before = svc.get_json("/matches").await;
    let feed_before = parse_feed(&svc.feed().await);

    // The same message again (and its older-processor twins with the same id): a duplicate.
    for name in [
        "processor_match_updates.json",
        "processor_match_updates_v3.0.json",
        "processor_match_updates_v3.1.json",
    ] {
        let (status, body) = svc.post("/sync", fixture(name)).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["duplicate"], true, "{name}");
        assert_eq!(counts(&body), [0; 6], "{name}");
    }
    // The same list in other forms: unchanged.
    let mut bare = fixture_json("processor_match_updates.json")["payload"]["matches"].clone();
    let bare_bytes = serde_json::to_vec(&bare).unwrap();
    let matches_only = serde_json::to_vec(&json!({"matches": bare.take()})).unwrap();
    for (name, bytes) in [
        ("seed_flat", fixture("seed_flat.json")),
        ("enhanced", fixture("enhanced_v2.json")),
        ("legacy", fixture("legacy_simplified.json")),
        ("bare list", bare_bytes),
        ("matches only", matches_only),
    ] {
        let (status, body) = svc.post("/manual-sync", bytes).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(counts(&body), [0, 0, 0, 0, 3, 0], "{name}: {body}");
    }
    let after = svc.get_json("/matches").await;
    assert_eq!(before, after);
    let feed_after = parse_feed(&svc.feed().await);
    for (a, b) in feed_before.iter().zip(&feed_after) {
        let strip = |e: &ParsedEvent| {
            let mut p = e.props.clone();
            p.remove("DTSTAMP");
            p
        };
        assert_eq!(strip(a), strip(b));
    }
}

/// `uppskjuten` shows in the title, and EVENT_TITLE puts the referee's own role first.
#[tokio::test]
async fn the_title_says_postponed_and_follows_event_title() {
    let svc = Service::start_with(|o| {
        o.state.event_title = "{role}: {home} - {away} ({competition})".into();
        o.state.user_referee_number = Some("61438".into());
    })
    .await;
    let mut list = future_snapshot(&[10, 20], "titles");
    list["payload"]["matches"][1]["uppskjuten"] = json!(true);
    let (status, body) = svc.post("/sync", serde_json::to_vec(&list).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let events = parse_feed(&svc.feed().await);
    // 61438 is the fixture's first assistant (AD1).
    assert_eq!(
        event(&events, 7_000_000).props["SUMMARY"],
        "AD1: Home 0 - Away 0 (Ligacupen Elit Västra)"
    );
    assert_eq!(
        event(&events, 7_000_001).props["SUMMARY"],
        "UPPSKJUTEN: AD1: Home 1 - Away 1 (Ligacupen Elit Västra)"
    );
    assert!(event(&events, 7_000_001).alarm_trigger.is_some());
}

#[tokio::test]
async fn a_changed_list_shows_exactly_its_changes() {
    let svc = Service::start().await;
    let first = future_snapshot(&[10, 20, 30, 40], "first");
    let (status, body) = svc.post("/sync", serde_json::to_vec(&first).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(counts(&body), [4, 0, 0, 0, 0, 0]);

    let mut next = first.clone();
    next["message_id"] = json!("second");
    let list = next["payload"]["matches"].as_array_mut().unwrap();
    // 7000000: moved 90 minutes later.
    let old_tid = list[0]["tid"].as_str().unwrap().to_string();
    let ms: i64 = old_tid[6..old_tid.len() - 2].parse().unwrap();
    list[0]["tid"] = json!(format!("/Date({})/", ms + 90 * 60 * 1000));
    // 7000001: the second assistant swapped.
    list[1]["domaruppdraglista"][2]["personnamn"] = json!("Carl Carlsson");
    list[1]["domaruppdraglista"][2]["domarnr"] = json!("99999");
    list[1]["domaruppdraglista"][2]["mobiltelefon"] = json!("0709999999");
    // 7000003: cancelled.
    list[3]["installd"] = json!(true);
    // 7000002: withdrawn (gone from the list).
    list.remove(2);
    let (status, body) = svc.post("/sync", serde_json::to_vec(&next).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(counts(&body), [0, 2, 1, 1, 0, 0], "{body}");

    let events = parse_feed(&svc.feed().await);
    assert_eq!(events.len(), 3, "the withdrawn future match left the feed");
    let moved = event(&events, 7_000_000);
    assert_eq!(moved.props["SEQUENCE"], "1");
    let new_start = chrono::DateTime::from_timestamp_millis(ms + 90 * 60 * 1000).unwrap();
    let local = new_start.with_timezone(&chrono_tz::Europe::Stockholm);
    assert_eq!(
        moved.props["DTSTART"],
        local.format("%Y%m%dT%H%M%S").to_string()
    );
    let reref = event(&events, 7_000_001);
    assert_eq!(reref.props["SEQUENCE"], "1");
    assert!(reref.props["DESCRIPTION"].contains("AD2: Carl Carlsson, Mobil: 0709999999"));
    assert!(!reref.props["DESCRIPTION"].contains("Alice Andersson"));
    let cancelled = event(&events, 7_000_003);
    assert_eq!(cancelled.props["STATUS"], "CANCELLED");
    assert_eq!(cancelled.props["SEQUENCE"], "1");
    assert_eq!(cancelled.props["SUMMARY"], "INSTÄLLD: Home 3 - Away 3");
    assert_eq!(
        cancelled.alarm_trigger, None,
        "no reminder for a cancelled match"
    );
    assert_eq!(moved.alarm_trigger.as_deref(), Some("-PT2880M"));
    assert!(!events
        .iter()
        .any(|e| e.uid == fogis_calendar_sync::render::ics::uid(7_000_002)));

    // Applying it once more (new id, same content) changes nothing.
    next["message_id"] = json!("third");
    let (_, body) = svc.post("/sync", serde_json::to_vec(&next).unwrap()).await;
    assert_eq!(counts(&body), [0, 0, 0, 0, 3, 0], "{body}");
}

/// Older processors' HTTP fallback is a trigger, not an upload (PROTOCOL.md section 7): no body
/// (`PHONEBOOK_SYNC_SERVICE_URL/sync`) or `{}` (`CALENDAR_SYNC_URL`, reading `json()["status"]`).
#[tokio::test]
async fn the_old_processors_triggers_answer_success_and_change_nothing() {
    let svc = Service::start_with(|o| o.api_token = secret("a-write-token-of-some-length")).await;
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth("a-write-token-of-some-length");
    let applied = auth(svc.http.post(svc.url("/sync")))
        .body(fixture("processor_match_updates.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(applied.status(), 200);
    // With a token set, reading the state needs it too.
    let read = |path: &'static str| {
        let req = auth(svc.http.get(svc.url(path)));
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let before = read("/matches").await;
    let feed_before = read("/calendar.ics").await;

    let bodies: [(&str, &[u8]); 5] = [
        ("/sync", b""),
        ("/sync", b"{}"),
        ("/manual-sync", b"{}"),
        ("/sync", b" {\n} "),
        (
            "/sync",
            br#"{"delete": false, "username": "referee", "password": "hunter2-old-password"}"#,
        ),
    ];
    for (path, body) in bodies {
        // No token: a trigger carries no data and changes nothing by itself.
        let (status, answer) = svc.post(path, body.to_vec()).await;
        assert_eq!(status, 200, "{path} {body:?}: {answer}");
        assert_eq!(answer["success"], true, "{answer}");
        assert_eq!(answer["status"], "success", "{answer}");
        assert!(answer["message"]
            .as_str()
            .unwrap()
            .contains("nothing to apply"));
        assert!(!answer.to_string().contains("hunter2"));
    }
    // Rate-limited: the bucket holds five.
    let (status, answer) = svc.post("/sync", "").await;
    assert_eq!(status, 429, "{answer}");
    let limited = svc.http.post(svc.url("/sync")).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));

    // A real list still needs the token.
    let (status, _) = svc
        .post("/sync", fixture("processor_match_updates.json"))
        .await;
    assert_eq!(status, 401);
    assert_eq!(read("/matches").await, before);
    let no_stamp = |f: &str| {
        f.lines()
            .filter(|l| !l.starts_with("DTSTAMP"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        no_stamp(&read("/calendar.ics").await),
        no_stamp(&feed_before)
    );
    let metrics = svc.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"fogis_messages_total{channel="http",outcome="trigger"} 5"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let svc = Service::start_with(|o| o.max_body_bytes = 64 * 1024).await;
    let (status, _) = svc
        .post("/sync", fixture("processor_match_updates.json"))
        .await;
    assert_eq!(status, 200);
    let before = svc.get_json("/matches").await;
    let feed_before = svc.feed().await;

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "not json",
            b"{\"matches\": [".to_vec(),
            400,
            "invalid JSON at line 1",
        ),
        ("binary", vec![0xff, 0x00, 0x13, 0x37], 400, "invalid JSON"),
        (
            "matches not a list",
            br#"{"matches": 5}"#.to_vec(),
            400,
            "matches: expected a list, found a number",
        ),
        (
            "unknown form",
            br#"{"hello": "world"}"#.to_vec(),
            400,
            "no match list",
        ),
        (
            "unknown type",
            br#"{"type": "heartbeat", "payload": {}}"#.to_vec(),
            400,
            "unsupported message type",
        ),
        (
            "a string",
            br#""text""#.to_vec(),
            400,
            "expected an object or a list",
        ),
        (
            "all rejected",
            br#"{"matches": [{"matchid": 6186203, "lag1namn": "x"}]}"#.to_vec(),
            400,
            "every match was rejected: matches[0].speldatum: cannot be placed in time",
        ),
        (
            "status message",
            fixture("processing_status_completed.json"),
            400,
            "carries no matches",
        ),
        ("too large", vec![b' '; 200 * 1024], 413, "MAX_BODY_BYTES"),
    ];
    for (name, body, want, needle) in &cases {
        let (status, answer) = svc.post("/sync", body.clone()).await;
        assert_eq!(status, *want, "{name}: {answer}");
        assert_eq!(answer["success"], false, "{name}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(needle), "{name}: {error:?} lacks {needle:?}");
    }
    assert_eq!(svc.get_json("/matches").await, before);
    let feed_after = svc.feed().await;
    let no_stamp = |f: &str| {
        f.lines()
            .filter(|l| !l.starts_with("DTSTAMP"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(no_stamp(&feed_after), no_stamp(&feed_before));

    // Everything rejected (but the status message, which is valid) was kept for inspection.
    let q = svc.get_json("/quarantine").await;
    assert_eq!(q["count"].as_u64().unwrap(), cases.len() as u64 - 1, "{q}");
    assert!(q["entries"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("exceeds MAX_BODY_BYTES"));
}

#[tokio::test]
async fn tokens_guard_the_api_and_the_feed() {
    let svc = Service::start_with(|o| {
        o.api_token = secret("api-secret-0123456789");
        o.feed_token = secret("feed-secret-0123456789");
    })
    .await;
    let (status, _) = svc.post("/sync", fixture("seed_flat.json")).await;
    assert_eq!(status, 401);
    let resp = svc
        .http
        .post(svc.url("/sync"))
        .bearer_auth("wrong")
        .body(fixture("seed_flat.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = svc
        .http
        .post(svc.url("/sync"))
        .bearer_auth("api-secret-0123456789")
        .body(fixture("seed_flat.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let feed = svc.http.get(svc.url("/calendar.ics")).send().await.unwrap();
    assert_eq!(feed.status().as_u16(), 401);
    let feed = svc
        .http
        .get(svc.url("/calendar.ics?token=feed-secret-0123456789"))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status().as_u16(), 200);
    assert!(feed.text().await.unwrap().contains("BEGIN:VEVENT"));

    // Without a token /matches answers 401 and no data; with one it shows all.
    let open = svc.http.get(svc.url("/matches")).send().await.unwrap();
    assert_eq!(open.status().as_u16(), 401);
    let open = open.text().await.unwrap();
    assert!(
        !open.contains("0700000000") && !open.contains("example.com"),
        "{open}"
    );
    let full = svc
        .get_json("/matches?token=feed-secret-0123456789")
        .await
        .to_string();
    assert!(full.contains("0700000000"));
}

#[tokio::test]
async fn the_state_survives_a_restart() {
    let svc = Service::start().await;
    svc.post(
        "/sync",
        serde_json::to_vec(&future_snapshot(&[5, 6], "a")).unwrap(),
    )
    .await;
    let before = svc.get_json("/matches").await;
    let feed_before = parse_feed(&svc.feed().await);
    let dir = svc.stop().await;
    let svc = Service::start_in(dir, |_| {}).await;
    assert_eq!(svc.get_json("/matches").await, before);
    let feed_after = parse_feed(&svc.feed().await);
    assert_eq!(feed_before.len(), feed_after.len());
    for (a, b) in feed_before.iter().zip(&feed_after) {
        assert_eq!(a.props["UID"], b.props["UID"]);
        assert_eq!(a.props["SEQUENCE"], b.props["SEQUENCE"]);
        assert_eq!(a.props["DESCRIPTION"], b.props["DESCRIPTION"]);
    }
    let (_, body) = svc
        .post(
            "/sync",
            serde_json::to_vec(&future_snapshot(&[5, 6], "a")).unwrap(),
        )
        .await;
    assert_eq!(body["duplicate"], true);
}

#[tokio::test]
async fn health_answers() {
    let svc = Service::start().await;
    let h = svc.get_json("/health").await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["matches"], 0);
}

#[tokio::test]
async fn matches_come_in_pages_that_together_hold_every_match_once() {
    let svc = Service::start().await;
    let (status, _) = svc
        .post(
            "/sync",
            serde_json::to_vec(&future_snapshot(&[1, 2, 3, 4, 5], "pages")).unwrap(),
        )
        .await;
    assert_eq!(status, 200);
    let all = svc.get_json("/matches").await;
    assert_eq!((&all["count"], &all["total"]), (&5.into(), &5.into()));
    assert!(all["next_offset"].is_null());
    let mut seen = Vec::new();
    let mut offset = Some(0);
    while let Some(o) = offset {
        let page = svc.get_json(&format!("/matches?offset={o}&limit=2")).await;
        assert_eq!(page["total"], 5);
        assert!(page["count"].as_u64().unwrap() <= 2);
        for m in page["matches"].as_array().unwrap() {
            seen.push(m["match_id"].as_i64().unwrap());
        }
        offset = page["next_offset"].as_u64();
    }
    let ids: Vec<i64> = all["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["match_id"].as_i64().unwrap())
        .collect();
    assert_eq!(seen, ids);
    let past = svc.get_json("/matches?offset=99").await;
    assert_eq!((&past["count"], &past["total"]), (&0.into(), &5.into()));
    let (status, body) = {
        let resp = svc
            .http
            .get(svc.url("/matches?limit=-1"))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_matches_past_their_retention_are_removed_by_the_running_service() {
    let svc = Service::start_with(|o| {
        o.archive_retention_days = 0;
        o.max_archived_matches = 0;
    })
    .await;
    let ids = |m: &Value| -> Vec<i64> {
        m["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["match_id"].as_i64().unwrap())
            .collect()
    };
    // 7000000 kicked off 401 days ago, 7000001 ten days ago, 7000002 is in three days.
    let (s, b) = svc
        .post(
            "/sync",
            serde_json::to_vec(&future_snapshot(&[-401, -10, 3], "r1")).unwrap(),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    // The next list has only the coming match: the played ones are archived, not deleted.
    let mut next = future_snapshot(&[-401, -10, 3], "r2");
    let list = next["payload"]["matches"].as_array_mut().unwrap();
    list.drain(..2);
    let (s, b) = svc.post("/sync", serde_json::to_vec(&next).unwrap()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["archived"], 2, "{b}");
    let m = svc.get_json("/matches").await;
    assert_eq!(ids(&m), [7_000_000, 7_000_001, 7_000_002]);
    let dir = svc.stop().await;

    // With the default retention (400 days), the service removes the one past it at once.
    let svc = Service::start_in(dir, |o| o.archive_retention_days = 400).await;
    let m = svc
        .wait_json(
            "/matches",
            "the old archived match pruned",
            std::time::Duration::from_secs(10),
            |m| m["total"] == 2,
        )
        .await;
    assert_eq!(ids(&m), [7_000_001, 7_000_002]);
    assert_eq!(m["matches"][0]["presence"], "archived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_archived_matches_are_kept_the_latest_ones() {
    let svc = Service::start_with(|o| o.max_archived_matches = 0).await;
    // Four played matches, then a list without them: all four archived.
    let (s, b) = svc
        .post(
            "/sync",
            serde_json::to_vec(&future_snapshot(&[-40, -30, -20, -10, 3], "c1")).unwrap(),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let mut next = future_snapshot(&[-40, -30, -20, -10, 3], "c2");
    next["payload"]["matches"]
        .as_array_mut()
        .unwrap()
        .drain(..4);
    let (s, b) = svc.post("/sync", serde_json::to_vec(&next).unwrap()).await;
    assert_eq!((s, &b["archived"]), (200, &4.into()), "{b}");
    let dir = svc.stop().await;
    let svc = Service::start_in(dir, |o| o.max_archived_matches = 2).await;
    let m = svc
        .wait_json(
            "/matches",
            "two archived matches left",
            std::time::Duration::from_secs(10),
            |m| m["total"] == 3,
        )
        .await;
    let ids: Vec<i64> = m["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["match_id"].as_i64().unwrap())
        .collect();
    // The two that kicked off last, and the listed one.
    assert_eq!(ids, [7_000_002, 7_000_003, 7_000_004]);
}
