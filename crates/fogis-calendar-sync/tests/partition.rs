//! Network partitions between the service and Redis, on a test host of our own (a network
//! namespace): a silent partition of 60 s is detected, survived and healed, with nothing lost
//! (streams) or everything caught up (pub/sub); a refused one likewise.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn list(i: i64) -> Value {
    let mut s = future_snapshot(&[30, 31], &format!("part-{i}"));
    s["payload"]["matches"][0]["tid"] =
        json!(format!("/Date({})/", 1_900_000_000_000i64 + i * 60_000));
    s["timestamp"] = json!(format!("2030-01-01T00:00:{i:02}Z"));
    s
}

fn list_number(matches: &Value) -> Option<i64> {
    let m = matches["matches"]
        .as_array()?
        .iter()
        .find(|m| m["match_id"] == 7_000_000)?;
    let t = chrono::DateTime::parse_from_rfc3339(m["start"].as_str()?).ok()?;
    Some((t.timestamp_millis() - 1_900_000_000_000) / 60_000)
}

async fn until(
    svc: &Service,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Value, &Value) -> bool,
) -> Duration {
    let start = Instant::now();
    common::eventually(what, limit, Duration::from_millis(50), || async {
        let status = svc.get_json("/redis-status").await;
        let matches = svc.get_json("/matches").await;
        if pred(&status, &matches) {
            Ok(())
        } else {
            Err(status.to_string())
        }
    })
    .await;
    start.elapsed()
}

/// Publishes list `i` the way `publish` does: latest key, stream entry, channel.
fn publish_inside(host: &netns::RedisHost, i: i64) {
    let bytes = serde_json::to_vec(&list(i)).unwrap();
    host.cli_with(&["SET", "fogis:matches:latest"], &bytes);
    host.cli_with(&["XADD", "fogis:matches:stream", "*", "payload"], &bytes);
    host.cli_with(&["PUBLISH", "fogis:matches:updates"], &bytes);
}

async fn partition(stream: bool, reject: bool, seconds: u64) {
    let Some(host) = netns::RedisHost::start() else {
        return;
    };
    let url = host.url();
    let svc = Service::start_with(|o| {
        o.redis = redis_opts(Some(&url));
        if stream {
            o.redis.durable.redis_stream = Some("fogis:matches:stream".into());
        }
    })
    .await;
    until(&svc, "connected", Duration::from_secs(15), |s, _| {
        s["redis_status"]["connected"] == true
    })
    .await;
    publish_inside(&host, 1);
    until(&svc, "at list 1", Duration::from_secs(10), |_, m| {
        list_number(m) == Some(1)
    })
    .await;

    host.cut(reject);
    let noticed = until(&svc, "disconnected", Duration::from_secs(15), |s, _| {
        s["redis_status"]["connected"] == false
    })
    .await;
    eprintln!("stream={stream} reject={reject}: partition noticed after {noticed:?}");
    // Changes published on the far side of the partition.
    for i in 2..=4 {
        publish_inside(&host, i);
    }
    let h = svc.get_json("/health").await;
    assert_eq!(h["status"], "ok");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    host.heal();
    let healed = until(&svc, "at the last list", Duration::from_secs(20), |s, m| {
        s["redis_status"]["connected"] == true && list_number(m) == Some(4)
    })
    .await;
    eprintln!("stream={stream} reject={reject}: caught up {healed:?} after healing");
    assert_eq!(parse_feed(&svc.feed().await).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partition_of_a_minute_is_caught_up_over_pubsub() {
    partition(false, false, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partition_of_a_minute_loses_nothing_with_streams() {
    partition(true, false, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_partition_is_survived() {
    partition(false, true, 5).await;
}
