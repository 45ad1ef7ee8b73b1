//! Two instances on one stream, each with its own state: each gets its own consumer group by
//! default (`calendar-sync-<state id>`), so each applies every list and ends at the last one;
//! a restart on the same data directory finds its group again. Real redis-server.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/lists.rs"]
mod lists;

use std::time::Duration;

use common::*;
use fogis_pubsub::{PublishTargets, Publisher, RedisUrl, StreamTarget};
use lists::wait_for_list;
use serde_json::{json, Value};
use test_support::RedisServer;

const STREAM: &str = "fogis:matches:stream";

/// List `i` (see [`lists`]), sent at second `i`.
fn list(i: i64) -> Value {
    let mut s = lists::numbered(i, &[30, 31]);
    s["timestamp"] = json!(format!("2030-01-01T00:00:{i:02}.000000Z"));
    s
}

async fn start(dir: tempfile::TempDir, url: &str) -> Service {
    Service::start_in(dir, |o| {
        o.redis = redis_opts(Some(url));
        o.redis.redis_pubsub_enabled = false;
        o.redis.durable.redis_stream = Some(STREAM.into());
    })
    .await
}

async fn group(svc: &Service) -> String {
    let config = svc.get_json("/redis-config").await;
    config["stream"]["group"].as_str().unwrap().to_string()
}

/// The names of the stream's consumer groups.
fn groups(redis: &RedisServer) -> Vec<String> {
    let out = redis.cli(&["XINFO", "GROUPS", STREAM]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "name")
        .map(|w| w[1].to_string())
        .collect()
}

async fn publish(p: &Publisher, from: i64, to: i64) {
    let targets = PublishTargets {
        channel: "nobody-listens".into(),
        latest_key: None,
        stream: Some(StreamTarget {
            key: STREAM.into(),
            max_len: 10_000,
        }),
    };
    for i in from..=to {
        p.publish_snapshot(&serde_json::to_vec(&list(i)).unwrap(), &targets)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_their_own_states_each_get_every_list() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = start(tempfile::tempdir().unwrap(), &url).await;
    let b = start(tempfile::tempdir().unwrap(), &url).await;
    let (ga, gb) = (group(&a).await, group(&b).await);
    assert_ne!(ga, gb, "one group for two states");
    assert!(ga.starts_with("calendar-sync-"), "{ga}");

    let p = Publisher::new(RedisUrl::new(redis.url()).unwrap());
    publish(&p, 0, 19).await;
    wait_for_list(&a, 19).await;
    wait_for_list(&b, 19).await;
    let mut names = groups(&redis);
    names.sort();
    let mut want = vec![ga.clone(), gb.clone()];
    want.sort();
    assert_eq!(names, want);

    // A restart on the same data directory is the same instance: same group, nothing missed.
    let dir = a.stop().await;
    publish(&p, 20, 24).await;
    let a = start(dir, &url).await;
    assert_eq!(group(&a).await, ga);
    wait_for_list(&a, 24).await;
    wait_for_list(&b, 24).await;
    assert_eq!(groups(&redis).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_state_in_the_same_group_is_refused_with_a_clear_error() {
    let redis = RedisServer::start();
    let url = redis.url();
    let shared = |o: &mut fogis_calendar_sync::config::ServeOpts| {
        o.redis = redis_opts(Some(&url));
        o.redis.redis_pubsub_enabled = false;
        o.redis.durable.redis_stream = Some(STREAM.into());
        o.redis.redis_consumer_group = Some("shared".into());
    };
    let a = Service::start_with(shared).await;
    a.wait_json(
        "/redis-stats",
        "stream connected",
        Duration::from_secs(10),
        |s| s["stream"]["connected"] == true,
    )
    .await;

    // Another state, the same group: `run` returns the error before it serves anything.
    let other = tempfile::tempdir().unwrap();
    let mut opts = serve_opts(other.path());
    shared(&mut opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let err = fogis_calendar_sync::run(opts, listener, shutdown)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("belongs to another state"), "{err}");
    assert!(err.contains("REDIS_CONSUMER_GROUP"), "{err}");
    assert!(
        !err.contains(&url),
        "the URL is not needed to say it: {err}"
    );

    // The same state again (a restart on its data directory) is the owner: it starts.
    let dir = a.stop().await;
    let a = Service::start_in(dir, shared).await;
    let p = Publisher::new(RedisUrl::new(redis.url()).unwrap());
    publish(&p, 0, 0).await;
    wait_for_list(&a, 0).await;
}
