//! Oversized messages on a match channel. One over `REDIS_MAX_MESSAGE_BYTES` but under Redis'
//! pub/sub output-buffer hard limit (32 MB by default) reaches the service and is rejected,
//! counted and quarantined. A 100 MB one never reaches any subscriber: Redis itself closes the
//! subscriber's connection when the message passes that limit. Either way the service stays
//! responsive, changes nothing, is subscribed again, and its memory comes back down.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ServiceProcess;
use fogis_pubsub::{Publisher, RedisUrl};
use serde_json::Value;
use test_support::RedisServer;

fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_rejected_or_cut_by_redis_and_memory_stays_bounded() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Not waited for: the first wait below is for Redis, which comes after `/health`.
    let svc = ServiceProcess::builder()
        .env("DATA_DIR", dir.path())
        .env("REDIS_URL", redis.url())
        .env("RUST_LOG", "warn")
        .start_now();
    let pid = svc.pid().unwrap();
    let get = |path: &'static str| svc.get_json(path);
    // GETs `path` until `pred` holds on its answer (a failed request counts as none).
    let wait = |path: &'static str, what: &'static str, secs: u64, pred: fn(&Value) -> bool| {
        svc.wait_json(path, what, Duration::from_secs(secs), pred)
    };
    wait("/redis-status", "connected", 20, |s| {
        s["redis_status"]["connected"] == true
    })
    .await;
    let p =
        Publisher::new(RedisUrl::new(redis.url()).unwrap()).with_timeout(Duration::from_secs(60));
    p.publish(
        "fogis:matches:updates",
        common::fixture("processor_match_updates.json"),
    )
    .await
    .unwrap();
    wait("/matches", "3 matches", 10, |m| m["count"] == 3).await;
    let rss_before = status_kb(pid, "VmRSS:");

    let big = vec![b'['; 10 * 1024 * 1024];
    p.publish("fogis:matches:updates", &big).await.unwrap();
    drop(big);
    wait("/redis-stats", "rejected", 30, |s| {
        s["messages_rejected"] == 1
    })
    .await;
    let huge = vec![b'['; 100 * 1024 * 1024];
    p.publish("fogis:matches:updates", &huge).await.unwrap();
    drop(huge);
    // Redis cut the subscriber (output buffer over its hard limit); it is back, and a normal
    // list applies again.
    wait("/redis-stats", "back", 30, |s| {
        s["reconnect_count"] == 1 && s["connected"] == true
    })
    .await;
    assert!(
        redis
            .log()
            .contains("scheduled to be closed ASAP for overcoming of output buffer limits"),
        "{}",
        redis.log()
    );
    // Responsive, unchanged, still subscribed.
    let h = get("/health").await.unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["redis"]["connected"], true);
    assert_eq!(get("/matches").await.unwrap()["count"], 3);
    let q_reason = {
        let q = get("/quarantine").await.unwrap();
        q["entries"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(q_reason.contains("10485760"), "{q_reason}");
    let peak = status_kb(pid, "VmHWM:");
    // The Redis client holds one whole message while reading it; nothing keeps it after.
    let start = Instant::now();
    let after = loop {
        let rss = status_kb(pid, "VmRSS:");
        if rss < rss_before + 32 * 1024 || start.elapsed() > Duration::from_secs(10) {
            break rss;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("RSS before {rss_before} kB, peak {peak} kB, after {after} kB");
    assert!(peak < 400 * 1024, "peak RSS {peak} kB for a 100 MB message");
    assert!(
        after < rss_before + 32 * 1024,
        "memory not given back: {rss_before} kB -> {after} kB"
    );
    drop(svc);
}
