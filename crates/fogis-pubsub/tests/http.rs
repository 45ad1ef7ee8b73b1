//! The status routes, served by a real axum server on 127.0.0.1:0.

mod common;

use std::time::Duration;

use common::*;
use fogis_pubsub::http::auth::AccessPolicy;
use fogis_pubsub::{drive, http};
use serde_json::Value;
use test_support::RedisServer;

const T: Duration = Duration::from_secs(10);

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_answer_the_documented_shapes() {
    let mut redis = RedisServer::options()
        .arg("--requirepass")
        .arg("h77p-pw")
        .start();
    let url = format!("redis://:h77p-pw@127.0.0.1:{}", redis.port());
    let recorder = Recorder::new();
    let handle = drive(config_for(&url), recorder.clone());
    connected(&handle, T).await;
    let publisher = fogis_pubsub::Publisher::new(url.parse().expect("url"));
    publisher
        .publish("fogis_matches", fixture("seed_flat.json"))
        .await
        .expect("published");
    eventually("the update", T, || handle.status().sync_count == 1).await;

    // Merged into an app that has routes of its own.
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(http::router(handle.clone(), AccessPolicy::open()));
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    assert_eq!(
        get("/health")
            .await
            .expect("health")
            .text()
            .await
            .expect("body"),
        "ok"
    );

    let status: Value = get("/redis-status")
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["success"], true);
    assert!(status["timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(status["redis_enabled"], true);
    assert_eq!(status["sync_count"], 1);
    assert!(status["last_sync_time"].is_string());
    assert_eq!(
        status["redis_status"],
        serde_json::json!({"enabled": true, "connected": true, "subscribed": true, "redis_available": true})
    );
    let stats = &status["stats"];
    assert_eq!(stats["channels"].as_array().map(Vec::len), Some(9));
    assert_eq!(stats["messages_received"], 1);
    assert_eq!(stats["messages_applied"], 1);
    for key in ["messages_duplicate", "messages_rejected", "reconnect_count"] {
        assert_eq!(stats[key], 0, "{key}");
    }
    assert!(stats["last_message_at"].is_string());
    assert!(stats.get("last_error").is_some());

    let stats: Value = get("/redis-stats")
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["success"], true);
    for key in [
        "messages_received",
        "messages_applied",
        "messages_duplicate",
        "messages_rejected",
        "messages_coalesced",
        "reconnect_count",
        "sync_count",
        "status_messages",
        "alert_messages",
    ] {
        assert!(stats[key].is_u64(), "{key} in {stats}");
    }
    assert_eq!(stats["messages_received_by_channel"]["fogis_matches"], 1);
    assert_eq!(stats["recent"][0]["channel"], "fogis_matches");
    assert!(stats["recent"][0]["outcome"]
        .as_str()
        .is_some_and(|o| o.starts_with("applied")));

    let config: Value = get("/redis-config")
        .await
        .expect("config")
        .json()
        .await
        .expect("json");
    let text = config.to_string();
    assert!(!text.contains("h77p-pw"), "{text}");
    assert_eq!(
        config["redis_url"],
        format!("redis://:***@127.0.0.1:{}", redis.port())
    );
    assert_eq!(config["match_channels"].as_array().map(Vec::len), Some(6));
    assert_eq!(config["status_channels"].as_array().map(Vec::len), Some(3));
    assert_eq!(config["ping_interval_ms"], 3000);
    assert_eq!(config["backoff_max_ms"], 30000);

    let test = client
        .post(format!("{base}/redis-test"))
        .send()
        .await
        .expect("test");
    assert_eq!(test.status(), 200);
    let test: Value = test.json().await.expect("json");
    assert_eq!(test["success"], true);
    assert_eq!(test["redis_available"], true);
    assert!(test["round_trip_ms"].is_f64(), "{test}");
    assert_eq!(
        recorder.update_count(),
        1,
        "the test never publishes a match"
    );

    let restart = client
        .post(format!("{base}/redis-restart"))
        .send()
        .await
        .expect("restart");
    assert_eq!(restart.status(), 200);
    eventually("the restart", T, || handle.status().reconnect_count == 1).await;

    redis.stop();
    eventually("disconnected", T, || !handle.status().connected).await;
    let test = client
        .post(format!("{base}/redis-test"))
        .send()
        .await
        .expect("test");
    assert_eq!(test.status(), 503);
    let test: Value = test.json().await.expect("json");
    assert_eq!(test["success"], false);
    assert_eq!(test["redis_available"], false);
    assert!(test["error"].as_str().is_some_and(|e| !e.is_empty()));
    let status: Value = get("/redis-status")
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["redis_status"]["connected"], false);
    assert!(status["stats"]["last_error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_integration_says_so() {
    let config = fogis_pubsub::SubscriberConfig {
        enabled: false,
        ..fogis_pubsub::SubscriberConfig::default()
    };
    let handle = drive(config, Recorder::new());
    let base = serve(http::router(handle, AccessPolicy::open())).await;
    let client = reqwest::Client::new();
    let status: Value = client
        .get(format!("{base}/redis-status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["redis_enabled"], false);
    assert_eq!(status["redis_status"]["connected"], false);
    let test = client
        .post(format!("{base}/redis-test"))
        .send()
        .await
        .expect("test");
    assert_eq!(test.status(), 503);
    let restart = client
        .post(format!("{base}/redis-restart"))
        .send()
        .await
        .expect("restart");
    assert_eq!(restart.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_consumer_is_configured_and_counted_in_the_routes() {
    let redis = RedisServer::start();
    let config = fogis_pubsub::SubscriberConfig {
        pubsub: false,
        stream: Some(fogis_pubsub::StreamConfig {
            consumer: "web-1".into(),
            block: Duration::from_millis(500),
            ..fogis_pubsub::StreamConfig::default()
        }),
        ..config_for(&redis.url())
    };
    let handle = drive(config, Recorder::new());
    let base = serve(http::router(handle.clone(), AccessPolicy::open())).await;
    let publisher = fogis_pubsub::Publisher::new(redis.url().parse().expect("url"));
    let report = publisher
        .publish_snapshot(
            &fixture("seed_flat.json"),
            &fogis_pubsub::PublishTargets::default(),
        )
        .await
        .expect("published");
    assert_eq!(report.receivers, 0, "nobody on pub/sub");
    let entry = report.stream_id.expect("an entry id");
    eventually("the entry acknowledged", T, || {
        handle
            .status()
            .stream
            .is_some_and(|s| s.acked == 1 && s.pending == Some(0))
    })
    .await;

    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    let config: Value = get("/redis-config")
        .await
        .expect("config")
        .json()
        .await
        .expect("json");
    assert_eq!(config["pubsub"], false);
    assert_eq!(config["latest_key"], "fogis:matches:latest");
    let stream = &config["stream"];
    assert_eq!(stream["key"], "fogis:matches:stream");
    assert_eq!(stream["group"], "calendar-sync");
    assert_eq!(stream["consumer"], "web-1");
    assert_eq!(stream["block_ms"], 500);
    assert_eq!(stream["batch"], 100);
    assert_eq!(stream["claim_idle_ms"], 60000);
    assert_eq!(stream["claim_every_ms"], 30000);
    assert_eq!(stream["coalesce"], true);

    let stats: Value = get("/redis-stats")
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    let stream = &stats["stream"];
    assert_eq!(stream["connected"], true);
    assert_eq!(stream["consumer"], "web-1");
    assert_eq!(stream["delivered"], 1);
    assert_eq!(stream["acked"], 1);
    assert_eq!(stream["pending"], 0);
    assert_eq!(stream["last_id"], entry.as_str());
    assert_eq!(stats["catch_ups"], 0);
    assert_eq!(stats["sync_count"], 1);

    let status: Value = get("/redis-status")
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["redis_status"]["connected"], true, "{status}");
    assert_eq!(status["stats"]["stream"]["connected"], true);
    // Without pub/sub the probe is a PING.
    let test = client
        .post(format!("{base}/redis-test"))
        .send()
        .await
        .expect("test");
    assert_eq!(test.status(), 200);
    handle.shutdown();
    handle.join().await;
}

const WRITE: &str = "write-token-for-the-tests";
const READ: &str = "read-token-for-the-tests";

/// The library's router takes the same policy as the app around it: the POST routes need the
/// write token (header only), `/redis-stats` a token, `/redis-status` and `/redis-config`
/// none; restarts are rate-limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_follow_the_access_policy_and_restarts_are_rate_limited() {
    // Enabled, aimed at a port where nothing listens: restarts are accepted, nothing connects.
    let handle = drive(config_for("redis://127.0.0.1:1"), Recorder::new());
    let policy = AccessPolicy::new(Some(WRITE.into()), Some(READ.into())).expect("tokens");
    let base = serve(http::router(handle.clone(), policy)).await;
    let client = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, auth: Option<&str>| {
        let mut req = client.request(method, format!("{base}{path}"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    let code = |r: reqwest::Response| r.status().as_u16();
    use reqwest::Method as M;
    for path in ["/redis-status", "/redis-config"] {
        assert_eq!(
            code(send(M::GET, path, None).await.expect("get")),
            200,
            "{path}"
        );
    }
    for auth in [None, Some("Bearer nope"), Some("Bearer "), Some("")] {
        let r = send(M::GET, "/redis-stats", auth).await.expect("stats");
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body = r.text().await.expect("body");
        assert!(!body.contains("messages_received"), "{body}");
        for path in ["/redis-restart", "/redis-test"] {
            assert_eq!(
                code(send(M::POST, path, auth).await.expect("post")),
                401,
                "{path} {auth:?}"
            );
        }
    }
    // The read token opens the stats, in the query or the header; never the POST routes.
    let stats = client
        .get(format!("{base}/redis-stats?token={READ}"))
        .send()
        .await
        .expect("stats");
    assert_eq!(stats.status(), 200);
    assert_eq!(stats.headers()["cache-control"], "private, no-store");
    let read = format!("Bearer {READ}");
    assert_eq!(
        code(
            send(M::GET, "/redis-stats", Some(&read))
                .await
                .expect("stats")
        ),
        200
    );
    assert_eq!(
        code(
            send(M::POST, "/redis-restart", Some(&read))
                .await
                .expect("restart")
        ),
        401
    );
    // The write token: in the header, in any scheme case; never in the query.
    let write = format!("bEaReR {WRITE}");
    assert_eq!(
        code(
            send(M::GET, "/redis-stats", Some(&write))
                .await
                .expect("stats")
        ),
        200
    );
    let in_query = client
        .get(format!("{base}/redis-stats?token={WRITE}"))
        .send()
        .await
        .expect("stats");
    assert_eq!(in_query.status(), 401);
    let restart = send(M::POST, "/redis-restart", Some(&write))
        .await
        .expect("restart");
    assert_eq!(restart.status(), 200);
    // A second restart at once is refused, with the time to wait.
    let again = send(M::POST, "/redis-restart", Some(&write))
        .await
        .expect("restart");
    assert_eq!(again.status(), 429);
    let wait: u64 = again.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (1..=http::RESTART_INTERVAL.as_secs()).contains(&wait),
        "{wait}"
    );
    assert_eq!(
        handle.status().reconnect_count,
        0,
        "nothing connected: no reconnect counted"
    );
    handle.shutdown();
}
