//! Never lose an update: a service that was down catches up from the latest key (pub/sub) or
//! the stream (streams mode); a live list is applied in publish order whatever its timestamp, and a stale catch-up copy never wins; SIGKILLs during a burst of
//! changing lists end in exactly the last one, in the feed and in Radicale.
#![allow(clippy::unwrap_used)]

#[path = "common/api_client_fake.rs"]
mod api_client_fake;
mod common;
#[path = "common/lists.rs"]
mod lists;
#[path = "common/radicale.rs"]
mod radicale;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use fogis_pubsub::{PublishTargets, Publisher, RedisUrl, StreamTarget};
use lists::{list_number, BASE_MS};
use serde_json::{json, Value};
use test_support::RedisServer;

/// List `i`: match 7000000 kicks off `i` minutes after BASE_MS.
fn list(i: i64) -> Value {
    list_of(i, &[30, 31])
}

/// List `i` with a match for each of `days` (see [`lists`]).
fn list_of(i: i64, days: &[i64]) -> Value {
    let mut s = lists::numbered(i, days);
    s["timestamp"] = json!(format!(
        "2030-01-01T00:00:{:02}.{:06}Z",
        i / 1_000_000 % 60,
        i % 1_000_000
    ));
    s
}

/// The binary on `port` with its state in `dir` and `env`, started and not waited for: a
/// SIGKILL may find it anywhere, even before it serves.
fn spawn_service(dir: &std::path::Path, port: u16, env: &[(&str, String)]) -> ServiceProcess {
    ServiceProcess::builder()
        .port(port)
        .env("DATA_DIR", dir)
        .env("RUST_LOG", "warn")
        .env("REDIS_CONSUMER_NAME", "calendar-1")
        .envs(env)
        .start_now()
}

async fn get(url: &str) -> Option<Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}

/// Waits until the service's list number is `want`; returns how long it took.
async fn wait_for_list(base: &str, want: i64, limit: Duration) -> Duration {
    let start = Instant::now();
    let what = format!("at list {want}");
    common::eventually(&what, limit, Duration::from_millis(10), || async {
        let at = get(&format!("{base}/matches"))
            .await
            .as_ref()
            .and_then(list_number);
        if at == Some(want) {
            Ok(())
        } else {
            Err(format!("list {at:?}"))
        }
    })
    .await;
    start.elapsed()
}

fn cli_publish(redis: &RedisServer, i: i64, stream: bool) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("list.json");
    std::fs::write(&file, serde_json::to_vec(&list(i)).unwrap()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fogis-calendar-sync"));
    cmd.arg("publish")
        .arg("--raw")
        .arg(&file)
        .env("REDIS_URL", redis.url())
        .env_remove("RUST_LOG");
    if stream {
        cmd.env("REDIS_STREAM", "fogis:matches:stream");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

async fn catch_up_after_downtime(stream: bool) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![("REDIS_URL", redis.url())];
    if stream {
        env.push(("REDIS_STREAM", "fogis:matches:stream".to_string()));
    }
    // Up once, then down while 50 changing lists are published.
    let svc = spawn_service(dir.path(), test_support::free_port(), &env);
    cli_publish(&redis, 0, stream);
    wait_for_list(&svc.base, 0, Duration::from_secs(20)).await;
    drop(svc);
    for i in 1..=50 {
        cli_publish(&redis, i, stream);
    }
    let started = Instant::now();
    let svc = spawn_service(dir.path(), test_support::free_port(), &env);
    wait_for_list(&svc.base, 50, Duration::from_secs(20)).await;
    eprintln!(
        "stream={stream}: final list shown {:?} after exec",
        started.elapsed()
    );
    let feed = svc.get_text("/calendar.ics").await;
    assert_eq!(parse_feed(&feed).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_was_down_catches_up_over_pubsub_from_the_latest_key() {
    catch_up_after_downtime(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_was_down_catches_up_from_the_stream() {
    catch_up_after_downtime(true).await;
}

/// The processor's clock is behind (NTP stepped it back, it moved host): its next real change
/// carries an envelope timestamp 10 minutes before the list applied last. Pub/sub keeps a
/// publisher's order, so it is applied, not skipped as "older".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_list_from_a_clock_that_stepped_back_is_applied() {
    let redis = RedisServer::start();
    let url = redis.url();
    let svc = Service::start_with(|o| o.redis = redis_opts(Some(&url))).await;
    svc.wait_redis_connected(Duration::from_secs(10)).await;
    let p = Publisher::new(RedisUrl::new(redis.url()).unwrap());
    let plain = PublishTargets {
        channel: "fogis:matches:updates".into(),
        latest_key: None,
        stream: None,
    };
    let mut first = list(7);
    first["timestamp"] = json!("2030-01-01T10:00:00.000000Z");
    p.publish_snapshot(&serde_json::to_vec(&first).unwrap(), &plain)
        .await
        .unwrap();
    wait_for_list(&svc.base, 7, Duration::from_secs(5)).await;
    let mut behind = list(3);
    behind["timestamp"] = json!("2030-01-01T09:50:00.000000Z");
    p.publish_snapshot(&serde_json::to_vec(&behind).unwrap(), &plain)
        .await
        .unwrap();
    wait_for_list(&svc.base, 3, Duration::from_secs(5)).await;
    let stats = svc.get_json("/redis-stats").await;
    assert_eq!(stats["messages_applied"], 2, "{stats}");
    assert_eq!(stats["messages_stale"], 0, "{stats}");
    assert_eq!(stats["messages_duplicate"], 0, "{stats}");
}

/// The real processor never writes the catch-up key, so whatever it holds (a list our own
/// publisher wrote long ago) is older than what pub/sub delivered since: on a reconnect that
/// copy is skipped as `stale` (not counted as a duplicate), and the calendar is not turned back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_catch_up_copy_never_turns_the_calendar_back() {
    let redis = RedisServer::start();
    let url = redis.url();
    let p = Publisher::new(RedisUrl::new(redis.url()).unwrap());
    let live_only = PublishTargets {
        channel: "fogis:matches:updates".into(),
        latest_key: None,
        stream: None,
    };
    let svc = Service::start_with(|o| o.redis = redis_opts(Some(&url))).await;
    svc.wait_redis_connected(Duration::from_secs(10)).await;
    p.publish_snapshot(&serde_json::to_vec(&list(7)).unwrap(), &live_only)
        .await
        .unwrap();
    wait_for_list(&svc.base, 7, Duration::from_secs(5)).await;
    // What an older publisher left in the key: a list this service never saw, sent before.
    let mut old = list(3);
    old["message_id"] = json!("written-long-ago");
    redis.cli(&["SET", "fogis:matches:latest", &old.to_string()]);
    // A reconnect reads the key.
    let (status, _) = svc.post("/redis-restart", "").await;
    assert_eq!(status, 200);
    let stats = svc
        .wait_json(
            "/redis-stats",
            "a stale catch-up",
            Duration::from_secs(10),
            |s| s["messages_stale"] == 1,
        )
        .await;
    assert_eq!(stats["catch_ups"], 1, "{stats}");
    assert_eq!(stats["messages_duplicate"], 0, "{stats}");
    assert_eq!(list_number(&svc.get_json("/matches").await), Some(7));
    let metrics = svc.get_text("/metrics").await;
    assert!(metrics.contains(r#"outcome="stale"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_ten_times_during_a_burst_ends_in_exactly_the_last_list() {
    let redis = RedisServer::start();
    let r = radicale::Radicale::start();
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("REDIS_URL", redis.url()),
        ("REDIS_STREAM", "fogis:matches:stream".to_string()),
        ("CALDAV_URL", r.collection_url("calendar")),
        ("CALDAV_USERNAME", "user".to_string()),
        ("CALDAV_PASSWORD", "pass".to_string()),
    ];
    let n = 1000i64;
    let publisher = tokio::spawn({
        let url = redis.url();
        async move {
            let p = Publisher::new(RedisUrl::new(url).unwrap());
            let targets = PublishTargets {
                stream: Some(StreamTarget {
                    key: "fogis:matches:stream".into(),
                    max_len: 10_000,
                }),
                ..PublishTargets::default()
            };
            for i in 0..n {
                p.publish_snapshot(&serde_json::to_vec(&list(i)).unwrap(), &targets)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let port = test_support::free_port();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..10 {
        let svc = spawn_service(dir.path(), port, &env);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(150 + seed % 400)).await;
        drop(svc); // SIGKILL
    }
    publisher.await.unwrap();
    let svc = spawn_service(dir.path(), port, &env);
    wait_for_list(&svc.base, n - 1, Duration::from_secs(30)).await;
    let feed = svc.get_text("/calendar.ics").await;
    let events = parse_feed(&feed);
    assert_eq!(events.len(), 2, "one event per match");
    // Radicale converges on the same two events, with no duplicate.
    let cal = fogis_calendar_sync::sinks::dav::DavClient::new(
        &r.collection_url("calendar"),
        Some("user".into()),
        Some("pass".into()),
        Duration::from_secs(10),
    )
    .unwrap();
    let start = Instant::now();
    loop {
        let found = cal.find_uids().await.unwrap_or_default();
        let mut uids: Vec<String> = found.iter().filter_map(|x| x.uid.clone()).collect();
        uids.sort();
        let sinks = svc.get_json("/sinks").await.unwrap_or(Value::Null);
        let idle = sinks["sinks"][0]["pending"] == 0;
        if idle && uids.len() == 2 {
            let (body, _) = cal.get("fogis-match-7000000.ics").await.unwrap().unwrap();
            let local = chrono::DateTime::from_timestamp_millis(BASE_MS + (n - 1) * 60_000)
                .unwrap()
                .with_timezone(&chrono_tz::Europe::Stockholm);
            let want = format!(
                "DTSTART;TZID=Europe/Stockholm:{}",
                local.format("%Y%m%dT%H%M%S")
            );
            if body.contains(&want) {
                break;
            }
        }
        assert!(found.len() <= 2, "duplicates in Radicale: {uids:?}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Radicale never converged: {uids:?} {sinks}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many clients Redis has closed for their output buffer since it started (its log says
/// so; Redis 7.0's `INFO` has no counter for it).
fn output_buffer_kills(redis: &RedisServer) -> usize {
    redis
        .log()
        .matches("closed ASAP for overcoming of output buffer limits")
        .count()
}

/// Redis closes the service's connection for its output buffer while lists are published
/// (issue 17, bursts): nothing tells the service what it missed, so on its reconnect it
/// converges from what Redis and FOGIS still hold. With `latest_key`, the service's own
/// publisher's catch-up key; without it (the real processor writes no key), a pull from the
/// fogis-api-client service, which every reconnect starts.
async fn an_overrun_connection_converges(catch_up_key: bool) {
    // Ten matches: about 100 KB a list, more than Redis's 16 KB reply buffer, so each one
    // goes to the output buffer that the limit below counts.
    let big = |i: i64| list_of(i, &(30..40).collect::<Vec<_>>());
    let redis = RedisServer::start();
    let url = redis.url();
    let api = api_client_fake::ApiClientFake::start(api_client_fake::Answer::Bare(
        big(0)["payload"]["matches"].clone(),
    ))
    .await;
    let api_url = api.url.clone();
    let svc = Service::start_with(|o| {
        o.redis = redis_opts(Some(&url));
        if !catch_up_key {
            o.pull.fogis_api_client_url = Some(api_url);
            // No interval: only the start and the events that may lose updates pull.
            o.pull.fogis_pull_interval_seconds = 0;
            o.pull.fogis_pull_timeout_seconds = 2;
        }
    })
    .await;
    svc.wait_redis_connected(Duration::from_secs(10)).await;
    let p = Publisher::new(RedisUrl::new(redis.url()).unwrap());
    let targets = PublishTargets {
        channel: "fogis:matches:updates".into(),
        latest_key: catch_up_key.then(|| fogis_pubsub::config::DEFAULT_LATEST_KEY.to_string()),
        stream: None,
    };
    p.publish_snapshot(&serde_json::to_vec(&big(0)).unwrap(), &targets)
        .await
        .unwrap();
    wait_for_list(&svc.base, 0, Duration::from_secs(10)).await;
    let reconnects = |health: &Value| health["redis"]["reconnect_count"].as_u64().unwrap();
    let reconnects_before = reconnects(&svc.get_json("/health").await);

    // A subscriber with more than 1 KiB waiting is closed at once: every list of the
    // production size now costs the service its connection, on every run.
    redis.cli(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 1024 1024 0",
    ]);
    let last = 40;
    for i in 1..=last {
        p.publish_snapshot(&serde_json::to_vec(&big(i)).unwrap(), &targets)
            .await
            .unwrap();
    }
    // FOGIS itself has the last list too (the processor read it there).
    api.set(api_client_fake::Answer::Bare(
        big(last)["payload"]["matches"].clone(),
    ));
    let kills = output_buffer_kills(&redis);
    assert!(
        kills >= 1,
        "Redis closed the service for its output buffer: {kills}"
    );
    // The burst is over: Redis takes its default limits again.
    redis.cli(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 33554432 8388608 60",
    ]);

    wait_for_list(&svc.base, last, Duration::from_secs(30)).await;
    let health = svc.get_json("/health").await;
    assert!(
        reconnects(&health) > reconnects_before,
        "the service noticed it was cut off and reconnected: {health}"
    );
    if !catch_up_key {
        assert!(api.requests() >= 2, "a reconnect pulled from FOGIS");
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_redis_closed_for_its_output_buffer_converges_from_the_catch_up_key() {
    an_overrun_connection_converges(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_redis_closed_for_its_output_buffer_converges_from_a_fogis_pull() {
    an_overrun_connection_converges(false).await;
}
