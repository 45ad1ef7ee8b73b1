//! "Never lose a match update": the latest-key catch-up and the stream consumer group against
//! real redis-servers, one per test.

mod common;

use std::collections::{HashMap, HashSet};
use std::future::pending;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use fogis_pubsub::publisher::{stamp, PublishTargets};
use fogis_pubsub::{
    drive, BoxFuture, HandlerOutcome, Kickoff, MatchUpdate, RejectReason, RejectedPayload,
    StreamConfig, StreamStatus, SubscriberConfig, SubscriberHandle, SyncTarget,
};
use serde_json::{json, Value};
use test_support::RedisServer;

const T: Duration = Duration::from_secs(10);
const STREAM: &str = "fogis:matches:stream";
const GROUP: &str = "calendar-sync";

/// One handler call, as the application saw it.
#[derive(Debug, Clone)]
struct Call {
    message_id: String,
    channel: String,
    /// Kick-off of the first match, epoch milliseconds: the field each snapshot changes.
    tid: Option<i64>,
    outcome: HandlerOutcome,
}

/// A handler that behaves like the application: idempotent by `message_id`, optionally
/// blocking forever on one message (a crash), asking to retry a few times, or slow.
#[derive(Debug, Default)]
struct App {
    calls: Mutex<Vec<Call>>,
    applied: Mutex<HashSet<String>>,
    rejected: Mutex<Vec<RejectedPayload>>,
    /// The handler never returns for this message id.
    hang_on: Option<String>,
    /// Answer `Retry` this many times before applying.
    retries: AtomicUsize,
    delay: Duration,
}

impl App {
    fn new() -> Arc<Self> {
        Arc::new(App::default())
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }

    fn last(&self) -> Option<Call> {
        self.calls.lock().expect("lock").last().cloned()
    }

    fn calls_by_id(&self) -> HashMap<String, usize> {
        let mut by_id = HashMap::new();
        for call in self.calls() {
            *by_id.entry(call.message_id).or_default() += 1;
        }
        by_id
    }
}

impl SyncTarget for App {
    fn sync(&self, update: MatchUpdate) -> BoxFuture<'_, HandlerOutcome> {
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let message_id = update.snapshot.meta.message_id.clone().unwrap_or_default();
            if self.hang_on.as_deref() == Some(message_id.as_str()) {
                pending::<()>().await;
            }
            // Decide and record under one lock, so a test that sees the
            // id applied also sees the call that applied it.
            let mut calls = self.calls.lock().expect("lock");
            let outcome = if self
                .retries
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                HandlerOutcome::Retry {
                    reason: "database locked".into(),
                }
            } else if self
                .applied
                .lock()
                .expect("lock")
                .insert(message_id.clone())
            {
                HandlerOutcome::Applied {
                    summary: format!("{} matches", update.snapshot.matches.len()),
                }
            } else {
                HandlerOutcome::Duplicate
            };
            let tid = update
                .snapshot
                .matches
                .first()
                .and_then(|m| match m.kickoff {
                    Kickoff::Utc(at) => Some(at.timestamp_millis()),
                    _ => None,
                });
            calls.push(Call {
                message_id,
                channel: update.channel,
                tid,
                outcome: outcome.clone(),
            });
            drop(calls);
            outcome
        })
    }

    fn on_rejected(&self, rejected: RejectedPayload) -> BoxFuture<'_, ()> {
        self.rejected.lock().expect("lock").push(rejected);
        Box::pin(async {})
    }
}

/// A snapshot to publish: its message id, its bytes and the `tid` it carries.
struct Snap {
    id: String,
    bytes: Vec<u8>,
    tid: i64,
}

/// `n` snapshots made from the production fixture, each with its own message id and the first
/// match moved by `i` minutes.
fn snapshots(prefix: &str, n: usize) -> Vec<Snap> {
    let template: Value =
        serde_json::from_slice(&fixture("processor_match_updates.json")).expect("fixture JSON");
    let base: i64 = 1_746_549_000_000;
    (1..=n)
        .map(|i| {
            let tid = base + 60_000 * i as i64;
            let mut v = template.clone();
            v["payload"]["matches"][0]["tid"] = json!(format!("/Date({tid})/"));
            let id = format!("{prefix}-{i:03}");
            stamp(&mut v, &id, Utc::now()).expect("an object");
            Snap {
                id,
                bytes: serde_json::to_vec(&v).expect("serialises"),
                tid,
            }
        })
        .collect()
}

/// Fast retries and a short `BLOCK`, so that outages and shutdowns resolve quickly.
fn fast(url: &str) -> SubscriberConfig {
    SubscriberConfig {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_secs(1),
        ..config_for(url)
    }
}

/// Stream only (pub/sub off).
fn stream_only(url: &str, consumer: &str, coalesce: bool) -> SubscriberConfig {
    SubscriberConfig {
        pubsub: false,
        stream: Some(StreamConfig {
            consumer: consumer.into(),
            block: Duration::from_millis(500),
            coalesce,
            ..StreamConfig::default()
        }),
        ..fast(url)
    }
}

fn stream_status(handle: &SubscriberHandle) -> StreamStatus {
    handle.status().stream.expect("a stream consumer")
}

async fn stream_ready(handle: &SubscriberHandle) {
    eventually("the stream consumer connected", T, || {
        stream_status(handle).connected
    })
    .await;
}

/// `XPENDING key group` count, through redis-cli.
fn xpending(redis: &RedisServer, group: &str) -> u64 {
    let out = redis.cli(&["XPENDING", STREAM, group]);
    out.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

async fn publish_all(redis: &RedisServer, snaps: &[Snap]) {
    let publisher = publisher_for(redis);
    for s in snaps {
        publisher
            .publish_snapshot(&s.bytes, &PublishTargets::default())
            .await
            .expect("published");
    }
}

async fn stop(handle: SubscriberHandle) {
    handle.shutdown();
    tokio::time::timeout(T, handle.join())
        .await
        .expect("tasks end after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pubsub_consumer_started_late_catches_up_to_the_fiftieth_snapshot() {
    let redis = RedisServer::start();
    let snaps = snapshots("late", 51);
    publish_all(&redis, &snaps[..50]).await;

    let app = App::new();
    let config = SubscriberConfig {
        // A reconnect waits at least 500 ms (half the jittered first delay): the snapshot
        // published below surely goes out while nobody listens.
        backoff_initial: Duration::from_secs(1),
        ..config_for(&redis.url())
    };
    let handle = drive(config, app.clone());
    eventually("the catch-up of snapshot 50", T, || {
        app.last().is_some_and(|c| c.message_id == snaps[49].id)
    })
    .await;
    let call = app.last().expect("a call");
    assert_eq!(call.channel, "catch-up:fogis:matches:latest");
    assert_eq!(call.tid, Some(snaps[49].tid));
    assert_eq!(app.calls().len(), 1, "only the newest: {:?}", app.calls());
    assert_eq!(handle.status().catch_ups, 1);

    // Cut the subscriber off and publish while it reconnects: the catch-up brings it back.
    let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed, "1");
    publish_all(&redis, &snaps[50..]).await;
    eventually("the catch-up of snapshot 51", T, || {
        app.last().is_some_and(|c| c.message_id == snaps[50].id)
    })
    .await;
    let s = handle.status();
    assert_eq!(s.reconnect_count, 1);
    assert_eq!(s.catch_ups, 2);
    assert_eq!(
        app.last().map(|c| c.channel),
        Some("catch-up:fogis:matches:latest".to_string())
    );
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_consumer_started_late_hands_over_only_the_fiftieth_snapshot() {
    let redis = RedisServer::start();
    let snaps = snapshots("backlog", 50);
    publish_all(&redis, &snaps).await;
    assert_eq!(redis.cli(&["XLEN", STREAM]), "50");

    let app = App::new();
    let handle = drive(stream_only(&redis.url(), "c1", true), app.clone());
    eventually("every entry acknowledged", T, || {
        stream_status(&handle).acked == 50
    })
    .await;
    let calls = app.calls();
    assert_eq!(calls.len(), 1, "coalesced to the newest: {calls:?}");
    assert_eq!(calls[0].message_id, snaps[49].id);
    assert_eq!(calls[0].tid, Some(snaps[49].tid));
    assert_eq!(calls[0].channel, format!("stream:{STREAM}"));
    let st = stream_status(&handle);
    assert_eq!((st.delivered, st.superseded, st.poison), (50, 49, 0));
    assert_eq!(
        st.groups_created, 1,
        "created at 0 so that the backlog is read"
    );
    assert_eq!(xpending(&redis, GROUP), 0);
    eventually("pending refreshed", T, || {
        stream_status(&handle).pending == Some(0)
    })
    .await;
    let s = handle.status();
    assert!(s.connected && !s.subscribed, "stream only: {s:?}");
    assert_eq!(s.messages_applied, 1);
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_both_ways_at_once_apply_the_newest_once() {
    let redis = RedisServer::start();
    let snaps = snapshots("both", 30);
    publish_all(&redis, &snaps[..20]).await;
    let app = App::new();
    let config = SubscriberConfig {
        stream: stream_only(&redis.url(), "c1", true).stream,
        ..fast(&redis.url())
    };
    let handle = drive(config, app.clone());
    connected(&handle, T).await;
    stream_ready(&handle).await;
    publish_all(&redis, &snaps[20..]).await;
    eventually("all entries acknowledged", T, || {
        stream_status(&handle).acked == 30
    })
    .await;
    eventually("snapshot 30 handled", T, || {
        app.last().is_some_and(|c| c.message_id == snaps[29].id)
    })
    .await;
    let applied = app.applied.lock().expect("lock").clone();
    assert!(applied.contains(&snaps[19].id) && applied.contains(&snaps[29].id));
    // Whatever came twice (pub/sub and stream) was a duplicate the second time.
    for (id, n) in app.calls_by_id() {
        assert!(n <= 2, "{id} handled {n} times");
    }
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_a_redis_restart_mid_stream_loses_nothing_and_redelivers_at_most_the_entry_in_flight() {
    let mut redis = RedisServer::options().persistent().start();
    let snaps = snapshots("restart", 40);
    let app = Arc::new(App {
        delay: Duration::from_millis(5),
        ..App::default()
    });
    let handle = drive(stream_only(&redis.url(), "c1", false), app.clone());
    stream_ready(&handle).await;

    let publisher = publisher_for(&redis);
    for (i, s) in snaps.iter().enumerate() {
        if i == 20 {
            redis.stop();
            redis.start_again();
        }
        publisher
            .publish_snapshot(&s.bytes, &PublishTargets::default())
            .await
            .expect("published");
    }
    eventually("snapshot 40 handled", T, || {
        app.last().is_some_and(|c| c.message_id == snaps[39].id)
    })
    .await;
    eventually("everything acknowledged", T, || {
        xpending(&redis, GROUP) == 0
    })
    .await;
    let calls = app.calls();
    let by_id = app.calls_by_id();
    // Every entry reached the handler (coalesce off), in order of publication.
    assert_eq!(by_id.len(), 40, "{by_id:?}");
    let first_calls: Vec<&str> = {
        let mut seen = HashSet::new();
        calls
            .iter()
            .filter(|c| seen.insert(c.message_id.clone()))
            .map(|c| c.message_id.as_str())
            .collect()
    };
    let published: Vec<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(first_calls, published);
    // Acknowledged entries (persisted with appendfsync always) were not delivered again; the
    // one the handler had when Redis died may come again, as a duplicate.
    let again: Vec<&Call> = calls
        .iter()
        .filter(|c| c.outcome == HandlerOutcome::Duplicate)
        .collect();
    assert!(again.len() <= 1, "redelivered: {again:?}");
    assert!(by_id.values().all(|&n| n <= 2));
    let applied = calls
        .iter()
        .filter(|c| matches!(c.outcome, HandlerOutcome::Applied { .. }))
        .count();
    assert_eq!(applied, 40);
    let st = stream_status(&handle);
    assert!(st.connected);
    // `acked` counts XACK replies: an XACK that Redis executed just before it was killed has
    // no reply (the entry is acknowledged, and was not redelivered), so 39 is possible.
    assert!(st.acked >= 39, "{st:?}");
    assert!(st.last_error.is_some(), "the outage was noticed");
    println!(
        "restart: {} handler calls for 40 entries, {} redelivered as duplicates",
        calls.len(),
        again.len()
    );
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_an_entry_whose_handler_never_returned_goes_to_the_next_consumer_of_that_name() {
    let redis = RedisServer::start();
    let snaps = snapshots("crash", 1);
    let hung = Arc::new(App {
        hang_on: Some(snaps[0].id.clone()),
        ..App::default()
    });
    let crashed = drive(stream_only(&redis.url(), "worker-1", true), hung.clone());
    stream_ready(&crashed).await;
    publish_all(&redis, &snaps).await;
    eventually("the entry pending with the hung handler", T, || {
        xpending(&redis, GROUP) == 1
    })
    .await;
    // The crash: the subscriber goes away while the handler still has the entry.
    crashed.shutdown();
    drop(crashed);
    assert!(hung.calls().is_empty());

    let app = App::new();
    let handle = drive(stream_only(&redis.url(), "worker-1", true), app.clone());
    eventually("the entry acknowledged", T, || {
        stream_status(&handle).acked == 1
    })
    .await;
    let calls = app.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].message_id, snaps[0].id);
    assert!(matches!(calls[0].outcome, HandlerOutcome::Applied { .. }));
    assert_eq!(xpending(&redis, GROUP), 0);
    assert_eq!(
        stream_status(&handle).claimed,
        0,
        "read as its own pending entry"
    );
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_an_idle_dead_consumers_entry_is_claimed_by_another() {
    let redis = RedisServer::start();
    let snaps = snapshots("claim", 1);
    let hung = Arc::new(App {
        hang_on: Some(snaps[0].id.clone()),
        ..App::default()
    });
    let crashed = drive(stream_only(&redis.url(), "dead", true), hung.clone());
    stream_ready(&crashed).await;
    publish_all(&redis, &snaps).await;
    eventually("the entry pending", T, || xpending(&redis, GROUP) == 1).await;
    crashed.shutdown();
    drop(crashed);

    let app = App::new();
    let mut config = stream_only(&redis.url(), "alive", true);
    if let Some(stream) = config.stream.as_mut() {
        stream.claim_idle = Duration::from_millis(700);
        stream.claim_every = Duration::from_millis(200);
    }
    let handle = drive(config, app.clone());
    eventually("the entry claimed and acknowledged", T, || {
        stream_status(&handle).acked == 1
    })
    .await;
    let st = stream_status(&handle);
    assert_eq!(st.claimed, 1);
    assert_eq!(app.calls().len(), 1);
    assert_eq!(xpending(&redis, GROUP), 0);
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_two_consumers_share_a_group_and_every_group_gets_everything() {
    const N: usize = 40;
    let redis = RedisServer::start();
    let snaps = snapshots("share", N);
    let in_group = |consumer: &str, group: &str| {
        let mut config = stream_only(&redis.url(), consumer, false);
        if let Some(stream) = config.stream.as_mut() {
            stream.group = group.into();
        }
        config
    };
    let slow = || {
        Arc::new(App {
            delay: Duration::from_millis(15),
            ..App::default()
        })
    };
    let (x, y, z) = (slow(), slow(), App::new());
    let hx = drive(in_group("x", "g1"), x.clone());
    let hy = drive(in_group("y", "g1"), y.clone());
    let hz = drive(in_group("z", "g2"), z.clone());
    for h in [&hx, &hy, &hz] {
        stream_ready(h).await;
    }
    let publisher = publisher_for(&redis);
    for s in &snaps {
        publisher
            .publish_snapshot(&s.bytes, &PublishTargets::default())
            .await
            .expect("published");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually("g1 acknowledged everything", T, || {
        stream_status(&hx).acked + stream_status(&hy).acked == N as u64
    })
    .await;
    eventually("g2 acknowledged everything", T, || {
        stream_status(&hz).acked == N as u64
    })
    .await;

    let ids =
        |app: &App| -> Vec<String> { app.calls().into_iter().map(|c| c.message_id).collect() };
    let (xs, ys, zs) = (ids(&x), ids(&y), ids(&z));
    let all: Vec<String> = snaps.iter().map(|s| s.id.clone()).collect();
    let xset: HashSet<&String> = xs.iter().collect();
    let yset: HashSet<&String> = ys.iter().collect();
    assert_eq!(xs.len(), xset.len(), "x handled an entry twice");
    assert_eq!(ys.len(), yset.len(), "y handled an entry twice");
    assert!(xset.is_disjoint(&yset), "an entry went to both");
    assert_eq!(xs.len() + ys.len(), N);
    assert!(!xs.is_empty() && !ys.is_empty(), "x {xs:?} y {ys:?}");
    assert_eq!(zs, all, "the other group gets everything, in order");
    assert_eq!(xpending(&redis, "g1"), 0);
    assert_eq!(xpending(&redis, "g2"), 0);
    for h in [hx, hy, hz] {
        stop(h).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_a_deleted_stream_gets_its_group_back_and_entries_flow_again() {
    let redis = RedisServer::start();
    let snaps = snapshots("deleted", 3);
    let app = App::new();
    let handle = drive(stream_only(&redis.url(), "c1", true), app.clone());
    stream_ready(&handle).await;
    publish_all(&redis, &snaps[..1]).await;
    eventually("the first entry", T, || stream_status(&handle).acked == 1).await;

    assert_eq!(redis.cli(&["DEL", STREAM]), "1");
    // The next XADD creates the stream again, without the group.
    publish_all(&redis, &snaps[1..]).await;
    eventually("the entries after the DEL", T, || {
        app.last().is_some_and(|c| c.message_id == snaps[2].id)
    })
    .await;
    let st = stream_status(&handle);
    assert_eq!(st.groups_created, 2, "{st:?}");
    assert!(st.connected);
    assert_eq!(xpending(&redis, GROUP), 0);
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_poison_entries_are_rejected_acknowledged_and_do_not_block() {
    let redis = RedisServer::start();
    let snaps = snapshots("poison", 2);
    let app = App::new();
    let config = SubscriberConfig {
        max_message_bytes: 64 * 1024,
        ..stream_only(&redis.url(), "c1", false)
    };
    let handle = drive(config, app.clone());
    stream_ready(&handle).await;

    publish_all(&redis, &snaps[..1]).await;
    assert!(!redis
        .cli(&["XADD", STREAM, "*", "payload", "not json"])
        .is_empty());
    assert!(!redis
        .cli(&["XADD", STREAM, "*", "other", "field"])
        .is_empty());
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let huge = vec![b'x'; 100 * 1024];
    let _: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("payload")
        .arg(huge)
        .query_async(&mut conn)
        .await
        .expect("XADD");
    publish_all(&redis, &snaps[1..]).await;

    eventually("the snapshot after the poison", T, || {
        app.last().is_some_and(|c| c.message_id == snaps[1].id)
    })
    .await;
    eventually("everything acknowledged", T, || {
        stream_status(&handle).acked == 5
    })
    .await;
    let st = stream_status(&handle);
    assert_eq!(st.poison, 3);
    assert_eq!(app.calls().len(), 2);
    assert_eq!(xpending(&redis, GROUP), 0);
    eventually("three rejections", T, || {
        app.rejected.lock().expect("lock").len() == 3
    })
    .await;
    let rejected = app.rejected.lock().expect("lock").clone();
    assert!(matches!(rejected[0].error, RejectReason::Undecodable(_)));
    assert!(matches!(
        rejected[1].error,
        RejectReason::MissingPayload { .. }
    ));
    assert!(matches!(rejected[2].error, RejectReason::TooLarge { .. }));
    assert!(rejected
        .iter()
        .all(|r| r.channel == format!("stream:{STREAM}")));
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_retry_leaves_the_entry_pending_until_the_handler_succeeds() {
    let redis = RedisServer::start();
    let snaps = snapshots("retry", 2);
    let app = Arc::new(App {
        retries: AtomicUsize::new(3),
        ..App::default()
    });
    let mut config = stream_only(&redis.url(), "c1", true);
    // Slow enough retries to see the entry pending in between.
    config.backoff_initial = Duration::from_millis(300);
    let handle = drive(config, app.clone());
    stream_ready(&handle).await;
    publish_all(&redis, &snaps[..1]).await;

    eventually("the first retry", T, || stream_status(&handle).retried >= 1).await;
    assert_eq!(xpending(&redis, GROUP), 1, "not acknowledged");
    assert_eq!(stream_status(&handle).acked, 0);
    let started = Instant::now();
    eventually("applied after three retries", T, || {
        stream_status(&handle).acked == 1
    })
    .await;
    println!("applied {:?} after the first retry", started.elapsed());
    let calls = app.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls[..3]
        .iter()
        .all(|c| matches!(c.outcome, HandlerOutcome::Retry { .. })));
    assert!(matches!(calls[3].outcome, HandlerOutcome::Applied { .. }));
    assert!(calls.iter().all(|c| c.message_id == snaps[0].id));
    assert_eq!(xpending(&redis, GROUP), 0);
    let s = handle.status();
    assert_eq!(s.messages_retried, 3);
    assert_eq!(stream_status(&handle).retried, 3);

    // The next entry is not held up by the earlier retries.
    publish_all(&redis, &snaps[1..]).await;
    eventually("the next entry", T, || stream_status(&handle).acked == 2).await;
    stop(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_retry_on_pubsub_tries_the_snapshot_again() {
    let redis = RedisServer::start();
    let snaps = snapshots("retry-pubsub", 1);
    let app = Arc::new(App {
        retries: AtomicUsize::new(2),
        ..App::default()
    });
    let config = SubscriberConfig {
        latest_key: None,
        ..fast(&redis.url())
    };
    let handle = drive(config, app.clone());
    connected(&handle, T).await;
    publish_all(&redis, &snaps).await;
    eventually("applied on the third try", T, || {
        app.applied.lock().expect("lock").contains(&snaps[0].id)
    })
    .await;
    assert_eq!(app.calls().len(), 3);
    assert_eq!(handle.status().messages_retried, 2);
    assert_eq!(handle.status().messages_applied, 1);
    stop(handle).await;
}
