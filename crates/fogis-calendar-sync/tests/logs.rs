//! The log as `docker logs` and journald show it: the service's stderr is a pipe (here a file),
//! so it must carry no colour escapes, and the integration README's lines, which runbooks and
//! alerts grep for, must appear once per event (PROTOCOL.md section 7).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::ServiceProcess;
use test_support::{free_port, RedisServer};

/// The binary on Redis at `redis_url` with `envs`, its state in `dir`, its log level and
/// colours left to it (no `RUST_LOG`, no `NO_COLOR`); not waited for.
fn start(dir: &Path, redis_url: &str, envs: &[(&str, &str)]) -> ServiceProcess {
    envs.iter()
        .fold(
            ServiceProcess::builder()
                .env("DATA_DIR", dir.join("data"))
                .env("REDIS_URL", redis_url)
                .env("REDIS_RECONNECT_MAX_SECONDS", "1")
                .env_remove("RUST_LOG")
                .env_remove("NO_COLOR"),
            |b, (k, v)| b.env(k, v),
        )
        .start_now()
}

fn once(log: &str, line: &str) {
    assert_eq!(log.matches(line).count(), 1, "{line:?} once in:\n{log}");
}

#[tokio::test]
async fn the_integration_readmes_lines_without_colour_escapes() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), &redis.url(), &[]);
    svc.wait_log("Subscribed to match updates from match-list-processor")
        .await;
    let payload = String::from_utf8(common::fixture("processor_match_updates.json")).unwrap();
    redis.cli(&["PUBLISH", "fogis:matches:updates", &payload]);
    let log = svc
        .wait_log("Calendar sync triggered successfully (sync #1)")
        .await;
    for line in [
        "✅ Redis pub/sub integration enabled for calendar service",
        "📡 Subscribed to match updates from match-list-processor",
        "📅 Received 3 matches via Redis pub/sub",
        "🗓️ Triggering calendar sync for 3 matches...",
        "✅ Calendar sync triggered successfully (sync #1)",
    ] {
        once(&log, line);
    }
    let order: Vec<usize> = [
        "Received 3 matches",
        "Triggering calendar sync",
        "triggered successfully",
    ]
    .iter()
    .map(|l| log.find(l).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{log}");

    // The old processors' trigger: its fields (a password) are never logged.
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/sync", svc.base))
        .body(r#"{"username": "referee", "password": "old-hunter2-password"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let log = svc.wait_log("sync trigger received").await;
    assert!(!log.contains("hunter2"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no ANSI escapes in a piped log:\n{log:?}"
    );
    // The fixture's phone numbers and addresses stay out of the log.
    assert!(!log.contains("0700000000"), "{log}");
    assert!(!log.contains("example.com"), "{log}");
}

#[tokio::test]
async fn without_redis_the_log_says_so_once_and_json_carries_the_same_text() {
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), &dead, &[("LOG_FORMAT", "json")]);
    let http = reqwest::Client::new();
    // Let several reconnect attempts fail (backoff from 250 ms, ceiling 1 s): still one
    // warning for the outage.
    common::eventually(
        "three seconds of outage",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let http = http.clone();
            let url = format!("{}/health", svc.base);
            async move {
                let health: serde_json::Value = http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let down = health["redis"]["connected"] == false;
                if down && health["uptime_seconds"].as_u64() >= Some(3) {
                    Ok(())
                } else {
                    Err(health.to_string())
                }
            }
        },
    )
    .await;
    let log = svc.log();
    let mut lines = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        if message == "⚠️ Redis not available - calendar service will use HTTP endpoints only" {
            lines += 1;
            assert!(v["fields"]["retry_in"].is_string(), "{line}");
        }
    }
    assert_eq!(lines, 1, "one warning per outage:\n{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
}
