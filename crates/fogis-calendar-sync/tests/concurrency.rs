//! Concurrent /sync posts and Redis messages never interleave a reconcile: the state is always
//! exactly one of the lists, never a mixture, and the in-memory view equals the file.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use fogis_pubsub::{Publisher, RedisUrl};
use serde_json::{json, Value};
use test_support::RedisServer;

/// List `i` changes both of its matches in step: match A's kick-off and match B's venue.
fn list(i: i64) -> Value {
    let mut s = future_snapshot(&[30, 31], &format!("conc-{i}"));
    s["payload"]["matches"][0]["tid"] =
        json!(format!("/Date({})/", 1_900_000_000_000i64 + i * 60_000));
    s["payload"]["matches"][1]["anlaggningnamn"] = json!(format!("Venue {i}"));
    s["timestamp"] = json!(format!("2030-01-01T00:{:02}:{:02}Z", i / 60, i % 60));
    s
}

/// Which list the state is, if it is exactly one.
fn which(matches: &Value) -> Option<i64> {
    let all = matches["matches"].as_array()?;
    let a = all.iter().find(|m| m["match_id"] == 7_000_000)?;
    let b = all.iter().find(|m| m["match_id"] == 7_000_001)?;
    let t = chrono::DateTime::parse_from_rfc3339(a["start"].as_str()?).ok()?;
    let from_a = (t.timestamp_millis() - 1_900_000_000_000) / 60_000;
    let from_b: i64 = b["record"]["venue"]
        .as_str()?
        .strip_prefix("Venue ")?
        .parse()
        .ok()?;
    (from_a == from_b).then_some(from_a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_redis_at_once_never_mix_two_lists() {
    let redis = RedisServer::start();
    let url = redis.url();
    let svc = Service::start_with(|o| o.redis = redis_opts(Some(&url))).await;
    svc.wait_redis_connected(Duration::from_secs(10)).await;
    let mut tasks = Vec::new();
    for i in 0..40i64 {
        let http = svc.http.clone();
        let url = svc.url("/sync");
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).json(&list(i)).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }));
    }
    let p = Publisher::new(RedisUrl::new(redis.url()).unwrap());
    for i in 40..80i64 {
        p.publish(
            "fogis:matches:updates",
            serde_json::to_vec(&list(i)).unwrap(),
        )
        .await
        .unwrap();
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Let the Redis side drain, then check the state is one whole list.
    svc.wait_json(
        "/redis-stats",
        "all 40 handled",
        Duration::from_secs(10),
        |s| {
            let handled = [
                "messages_applied",
                "messages_duplicate",
                "messages_coalesced",
                "messages_rejected",
            ]
            .iter()
            .map(|k| s[k].as_u64().unwrap_or(0))
            .sum::<u64>();
            handled == 40
        },
    )
    .await;
    let before = svc.get_json("/matches").await;
    assert!(which(&before).is_some(), "a mixture of lists: {before}");
    // The in-memory view is the file's: a restart shows the same.
    let dir = svc.stop().await;
    let svc = Service::start_in(dir, |_| {}).await;
    assert_eq!(svc.get_json("/matches").await, before);
}
