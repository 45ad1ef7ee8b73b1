//! SIGKILL in the middle of a stream of snapshots loses and duplicates nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The binary on `port` (the same across restarts) with its state in `dir`, Redis off.
async fn start(dir: &std::path::Path, port: u16) -> ServiceProcess {
    ServiceProcess::builder()
        .port(port)
        .env("DATA_DIR", dir)
        .env("REDIS_ENABLED", "false")
        .env("RUST_LOG", "warn")
        .start()
        .await
}

/// Snapshot number `i`: match 7000000 kicks off `i` minutes later than in snapshot 0.
fn snapshot(i: i64, base_ms: i64) -> Value {
    let mut s = future_snapshot(&[30, 31], &format!("stream-{i}"));
    s["payload"]["matches"][0]["tid"] = json!(format!("/Date({})/", base_ms + i * 60_000));
    s
}

fn start_of(matches: &Value, id: i64) -> i64 {
    let m = matches["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["match_id"] == id)
        .unwrap();
    chrono::DateTime::parse_from_rfc3339(m["start"].as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = test_support::free_port();
    let base_ms =
        (chrono::Utc::now() + chrono::Duration::days(60)).timestamp_millis() / 60_000 * 60_000;
    let http = reqwest::Client::new();
    let acked = Arc::new(AtomicI64::new(-1));
    let mut next = 0i64;

    for round in 0..3 {
        let proc = start(dir.path(), port).await;
        if round > 0 {
            // After the kill: the state is the last acknowledged snapshot or the one in flight.
            let matches = proc.get_json("/matches").await.unwrap();
            let a = acked.load(Ordering::SeqCst);
            let got = (start_of(&matches, 7_000_000) - base_ms) / 60_000;
            assert!(
                got == a || got == a + 1,
                "state is snapshot {got}, last acknowledged {a}"
            );
            // Replaying the last acknowledged snapshot is a duplicate.
            let (status, body) = post(&http, &proc.base, &snapshot(a, base_ms)).await;
            assert_eq!(status, 200);
            assert_eq!(body["duplicate"], true, "{body}");
            // Exactly one event per match in the feed.
            let feed = proc.get_text("/calendar.ics").await;
            assert_eq!(parse_feed(&feed).len(), 2);
            next = got + 1;
        }
        // Stream snapshots and kill the process while they flow.
        let base = proc.base.clone();
        let acked2 = acked.clone();
        let http2 = http.clone();
        let streamer = tokio::spawn(async move {
            let mut i = next;
            loop {
                match post(&http2, &base, &snapshot(i, base_ms)).await {
                    (200, _) => acked2.store(i, Ordering::SeqCst),
                    _ => break,
                }
                i += 1;
            }
        });
        // Let a few dozen snapshots land, then kill at a point that varies by round.
        let want = acked.load(Ordering::SeqCst) + 20 + round * 7;
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.load(Ordering::SeqCst) < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(proc); // SIGKILL
        let _ = streamer.await;
    }

    // A last start: the final state, then the stream completed to the end.
    let proc = start(dir.path(), port).await;
    let a = acked.load(Ordering::SeqCst);
    assert!(a >= 60, "only {a} snapshots were acknowledged");
    let matches = proc.get_json("/matches").await.unwrap();
    let got = (start_of(&matches, 7_000_000) - base_ms) / 60_000;
    assert!(got == a || got == a + 1);
    let (status, body) = post(&http, &proc.base, &snapshot(got + 1, base_ms)).await;
    assert_eq!((status, body["updated"].as_u64()), (200, Some(1)), "{body}");
}

async fn post(http: &reqwest::Client, base: &str, body: &Value) -> (u16, Value) {
    match http.post(format!("{base}/sync")).json(body).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}
