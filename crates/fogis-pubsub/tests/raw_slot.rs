//! The reader hands match-channel payloads to the worker undecoded. Whatever arrives behind a
//! snapshot while the handler is busy, the newest *snapshot* is the one handled, and the rest is
//! counted for what it was.

mod common;

use std::time::Duration;

use common::*;
use fogis_pubsub::drive;
use test_support::RedisServer;

const T: Duration = Duration::from_secs(10);
const CHANNEL: &str = "fogis:matches:updates";

/// A snapshot large enough to be handed to the worker undecoded.
fn snapshot(id: &str) -> Vec<u8> {
    let padding = "x".repeat(8 * 1024);
    format!(
        r#"{{"message_id": "{id}", "type": "match_updates", "payload": {{"matches": [
        {{"match_id": 7, "teams": "A vs B", "date": "2031-05-06", "time": "18:30"}}],
        "metadata": {{"padding": "{padding}"}}}}}}"#
    )
    .into_bytes()
}

/// Garbage as large.
fn garbage() -> Vec<u8> {
    let mut g = br#"{"matches": [{"match_id": "#.to_vec();
    g.resize(8 * 1024, b'9');
    g
}

/// Publishes `payloads` in one pipeline, so that they reach the reader back to back.
async fn burst(redis: &RedisServer, payloads: &[Vec<u8>]) {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let mut pipe = redis::pipe();
    for p in payloads {
        pipe.cmd("PUBLISH").arg(CHANNEL).arg(p.as_slice());
    }
    let receivers: Vec<u64> = pipe.query_async(&mut conn).await.expect("pipeline");
    assert!(receivers.iter().all(|&r| r == 1), "{receivers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_or_a_status_behind_a_snapshot_never_hides_it() {
    let redis = RedisServer::start();
    let recorder = Recorder::slow(Duration::from_millis(300));
    let handle = drive(config_for(&redis.url()), recorder.clone());
    connected(&handle, T).await;

    // The handler is busy with the first one while the others arrive: a snapshot, then two
    // large undecodable payloads and a status message behind it.
    burst(&redis, &[snapshot("first")]).await;
    eventually("the first received", T, || {
        handle.status().messages_received == 1
    })
    .await;
    let status = fixture("processing_status_completed.json");
    burst(
        &redis,
        &[snapshot("second"), garbage(), status.clone(), garbage()],
    )
    .await;
    eventually("the second handled", T, || {
        recorder.last_message_id().as_deref() == Some("second")
    })
    .await;

    // Small payloads in between, then a snapshot that a status follows.
    burst(
        &redis,
        &[
            status.clone(),
            b"not json".to_vec(),
            snapshot("third"),
            status.clone(),
        ],
    )
    .await;
    eventually("the third handled", T, || {
        recorder.last_message_id().as_deref() == Some("third")
    })
    .await;
    handle.probe().await.expect("probe");
    eventually("every message accounted for", T, || {
        let s = handle.status();
        s.messages_applied + s.messages_coalesced + s.status_messages + s.messages_rejected
            == s.messages_received
    })
    .await;
    let s = handle.status();
    assert_eq!(s.messages_received, 9);
    assert_eq!(s.messages_rejected, 3, "the garbage, recorded as rejected");
    assert_eq!(s.status_messages, 3);
    assert_eq!(s.messages_applied + s.messages_coalesced, 3);
    assert_eq!(recorder.rejected.lock().expect("lock").len(), 3);
    let kinds: Vec<_> = s.recent.iter().map(|r| r.kind).collect();
    let count = |kind| kinds.iter().filter(|k| **k == kind).count();
    assert_eq!(count(fogis_pubsub::RecordKind::Status), 3, "{kinds:?}");
    assert_eq!(count(fogis_pubsub::RecordKind::Rejected), 3, "{kinds:?}");
    assert_eq!(count(fogis_pubsub::RecordKind::Matches), 3, "{kinds:?}");
    handle.shutdown();
    handle.join().await;
}
