//! The service with a real redis-server: real-time updates, outages, bursts, honest status.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use fogis_pubsub::{Publisher, RedisUrl};
use serde_json::{json, Value};
use test_support::RedisServer;

async fn start_with_redis(redis: &RedisServer) -> Service {
    let url = redis.url();
    let svc = Service::start_with(|o| o.redis = redis_opts(Some(&url))).await;
    wait_for(&svc, "connected", Duration::from_secs(10), |s| {
        s["redis_status"]["connected"] == true
    })
    .await;
    svc
}

/// Polls `/redis-status` until `pred` holds; returns how long that took.
async fn wait_for(
    svc: &Service,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Duration {
    let start = Instant::now();
    svc.wait_json("/redis-status", what, limit, pred).await;
    start.elapsed()
}

/// Polls `/matches` until it counts `n`; returns how long that took.
async fn wait_matches(svc: &Service, n: u64, limit: Duration) -> Duration {
    let start = Instant::now();
    let what = format!("{n} matches");
    svc.wait_json("/matches", &what, limit, |m| m["count"] == n)
        .await;
    start.elapsed()
}

fn publisher(redis: &RedisServer) -> Publisher {
    Publisher::new(RedisUrl::new(redis.url()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_update_reaches_the_feed_and_other_forms_change_nothing() {
    let redis = RedisServer::start();
    let svc = start_with_redis(&redis).await;
    let p = publisher(&redis);
    let receivers = p
        .publish(
            "fogis:matches:updates",
            fixture("processor_match_updates.json"),
        )
        .await
        .unwrap();
    assert_eq!(receivers, 1);
    wait_matches(&svc, 3, Duration::from_secs(1)).await;
    let feed = svc.feed().await;
    assert!(feed.contains("DTSTART;TZID=Europe/Stockholm:20250506T183000"));
    let before = svc.get_json("/matches").await;

    // The same list in the flat form on the README's channel, and every other form on every
    // other match channel: applied or duplicate, never a change.
    let channels = fogis_pubsub::config::DEFAULT_MATCH_CHANNELS;
    let forms = [
        "seed_flat.json",
        "enhanced_v2.json",
        "legacy_simplified.json",
        "processor_match_updates_v3.1.json",
    ];
    let mut sent = 1;
    for channel in channels {
        for form in forms {
            p.publish(channel, fixture(form)).await.unwrap();
            sent += 1;
        }
    }
    // Status and alerts are recorded, never applied.
    p.publish(
        "fogis:processor:status",
        fixture("processing_status_completed.json"),
    )
    .await
    .unwrap();
    p.publish("fogis:system:alerts", fixture("system_alert.json"))
        .await
        .unwrap();
    let stats = wait_until_stats(&svc, |s| {
        let st = s;
        let handled = st["messages_applied"].as_u64().unwrap_or(0)
            + st["messages_duplicate"].as_u64().unwrap_or(0)
            + st["messages_coalesced"].as_u64().unwrap_or(0);
        handled == sent && s["alert_messages"] == 1 && s["status_messages"] == 1
    })
    .await;
    assert_eq!(stats["messages_rejected"], 0, "{stats}");
    assert_eq!(svc.get_json("/matches").await, before, "nothing changed");
    let metrics = svc.get_text("/metrics").await;
    let applied: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("fogis_messages_total{") && l.contains("outcome=\"applied\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        applied,
        stats["messages_applied"].as_u64().unwrap(),
        "{metrics}"
    );
    // The v3.1 copy has the production message's id: the last one sent (never coalesced, as
    // nothing comes after it) is a duplicate; the others may have been replaced in the slot.
    let last = channels[channels.len() - 1];
    assert!(
        metrics.contains(&format!(
            "fogis_messages_total{{channel=\"{last}\",outcome=\"duplicate\"}}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("fogis_redis_connected 1"));
}

/// Polls `/redis-stats` until `pred` holds (5 s).
async fn wait_until_stats(svc: &Service, pred: impl Fn(&Value) -> bool) -> Value {
    svc.wait_json(
        "/redis-stats",
        "the expected stats",
        Duration::from_secs(5),
        pred,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_reported_honestly_and_survived() {
    let mut redis = RedisServer::start();
    let svc = start_with_redis(&redis).await;
    redis.stop();
    wait_for(&svc, "disconnected", Duration::from_secs(10), |s| {
        s["redis_status"]["connected"] == false
    })
    .await;
    let health = svc.http.get(svc.url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["redis"]["connected"], false);
    assert!(
        health["mode"].as_str().unwrap().starts_with("degraded"),
        "{health}"
    );
    // HTTP still works while Redis is away.
    let (status, _) = svc.post("/sync", fixture("seed_flat.json")).await;
    assert_eq!(status, 200);
    let test = svc.http.post(svc.url("/redis-test")).send().await.unwrap();
    assert_eq!(test.status().as_u16(), 503);

    tokio::time::sleep(Duration::from_secs(6)).await; // let the backoff grow to its ceiling
    redis.start_again();
    let back = wait_for(&svc, "reconnected", Duration::from_secs(5), |s| {
        s["redis_status"]["connected"] == true
    })
    .await;
    eprintln!("reconnected {back:?} after Redis returned");
    let mut next = future_snapshot(&[3], "after-outage");
    next["payload"]["matches"][0]["matchid"] = json!(7_100_000);
    publisher(&redis)
        .publish("fogis:matches:updates", serde_json::to_vec(&next).unwrap())
        .await
        .unwrap();
    wait_matches(&svc, 4, Duration::from_secs(2)).await;
    let test: Value = svc
        .http
        .post(svc.url("/redis-test"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(test["success"], true, "{test}");
    let status = svc.get_json("/redis-status").await;
    assert!(status["stats"]["reconnect_count"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_absent_at_start_is_picked_up_when_it_appears() {
    let port = test_support::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let svc = Service::start_with(|o| o.redis = redis_opts(Some(&url))).await;
    let h = svc.get_json("/health").await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["redis"]["connected"], false);
    let redis = RedisServer::options().port(port).start();
    wait_for(&svc, "connected", Duration::from_secs(6), |s| {
        s["redis_status"]["connected"] == true
    })
    .await;
    publisher(&redis)
        .publish("fogis_matches", fixture("seed_flat.json"))
        .await
        .unwrap();
    wait_matches(&svc, 3, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn http_only_mode_never_touches_redis() {
    let svc = Service::start().await; // REDIS_PUBSUB_ENABLED=false in the helper
    let s = svc.get_json("/redis-status").await;
    assert_eq!(s["redis_enabled"], false);
    assert_eq!(s["redis_status"]["connected"], false);
    let h = svc.get_json("/health").await;
    assert_eq!(h["mode"], "http-only (Redis disabled)");
    let (status, _) = svc.post("/sync", fixture("seed_flat.json")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_production_size_messages_ends_in_the_last_snapshot() {
    let redis = RedisServer::start();
    let svc = start_with_redis(&redis).await;
    let template = fixture_json("processor_match_updates.json");
    let base_ms = 1_900_000_000_000i64;
    let n = 5_000;
    let p = publisher(&redis);
    for i in 0..n {
        let mut msg = template.clone();
        msg["message_id"] = json!(format!("burst-{i}"));
        msg["payload"]["matches"][0]["tid"] = json!(format!("/Date({})/", base_ms + i * 60_000));
        p.publish("fogis:matches:updates", serde_json::to_vec(&msg).unwrap())
            .await
            .unwrap();
    }
    let last_start = chrono::DateTime::from_timestamp_millis(base_ms + (n - 1) * 60_000).unwrap();
    svc.wait_json(
        "/matches",
        "the last snapshot",
        Duration::from_secs(30),
        |m| {
            m["matches"]
                .as_array()
                .and_then(|all| all.iter().find(|x| x["match_id"] == 6186203))
                .is_some_and(|x| x["start"] == json!(last_start))
        },
    )
    .await;
    let s = svc.get_json("/redis-stats").await;
    assert_eq!(s["reconnect_count"], 0, "Redis dropped the subscriber: {s}");
    assert_eq!(s["messages_received"], n, "{s}");
    assert!(!redis.log().contains("output buffer"), "{}", redis.log());
}

/// Runs the binary with `args` and `env`, off the async threads.
async fn run_cli(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fogis-calendar-sync"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("BIND")
        .env_remove("SERVICE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_status_and_healthcheck_commands_work_against_a_running_service() {
    let redis = RedisServer::start();
    let svc = start_with_redis(&redis).await;
    let file = fixture_path("processor_match_updates.json");
    let out = run_cli(
        &["publish", file.to_str().unwrap()],
        &[("REDIS_URL", redis.url())],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("on fogis:matches:updates to 1 subscriber(s), message_id "),
        "{text}"
    );
    wait_matches(&svc, 3, Duration::from_secs(2)).await;
    // A fresh message id each time: the second publish is applied (unchanged), not a duplicate.
    run_cli(
        &[
            "publish",
            "--channel",
            "fogis_matches",
            file.to_str().unwrap(),
        ],
        &[("REDIS_URL", redis.url())],
    )
    .await;
    let stats = wait_until_stats(&svc, |s| s["messages_applied"] == 2).await;
    assert_eq!(stats["messages_duplicate"], 0);

    let out = run_cli(&["status", "--url", &svc.base], &[]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("redis       connected since"), "{text}");
    assert!(
        text.contains("matches     3 stored, 3 in the feed"),
        "{text}"
    );
    assert!(
        text.contains("messages    2 received, 2 applied, 0 duplicate, 0 rejected"),
        "{text}"
    );

    let addr = svc.base.trim_start_matches("http://").to_string();
    let ok = run_cli(&["healthcheck"], &[("BIND", addr)]).await;
    assert_eq!(ok.status.code(), Some(0));
    let nobody = format!("127.0.0.1:{}", test_support::free_port());
    let down = run_cli(&["healthcheck"], &[("BIND", nobody)]).await;
    assert_eq!(down.status.code(), Some(1));
}

/// The broken processor's empty lists over pub/sub (PROTOCOL.md section 7): held, counted as
/// held (not rejected) in /redis-stats and /metrics, and the calendar keeps its matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_lists_over_redis_are_held_not_rejected() {
    let redis = RedisServer::start();
    let svc = start_with_redis(&redis).await;
    let p = Publisher::new(RedisUrl::new(redis.url()).unwrap());
    let full = future_snapshot(&[5, 6, 7], "full");
    p.publish("fogis:matches:updates", &serde_json::to_vec(&full).unwrap())
        .await
        .unwrap();
    wait_matches(&svc, 3, Duration::from_secs(10)).await;
    for i in 0..2 {
        let mut empty = full.clone();
        empty["payload"]["matches"] = json!([]);
        empty["payload"]["metadata"]["has_changes"] = json!(true);
        empty["message_id"] = json!(format!("empty-{i}"));
        p.publish(
            "fogis:matches:updates",
            &serde_json::to_vec(&empty).unwrap(),
        )
        .await
        .unwrap();
    }
    let stats = svc
        .wait_json("/redis-stats", "two held", Duration::from_secs(10), |s| {
            s["messages_held"] == 2
        })
        .await;
    assert_eq!(stats["messages_rejected"], 0, "{stats}");
    assert_eq!(stats["messages_applied"], 1, "{stats}");
    assert_eq!(parse_feed(&svc.feed().await).len(), 3);
    assert_eq!(svc.get_json("/held").await["pending"], 1);
    let metrics = svc.get_text("/metrics").await;
    assert!(
        metrics
            .contains(r#"fogis_messages_total{channel="fogis:matches:updates",outcome="held"} 2"#),
        "{metrics}"
    );
}
