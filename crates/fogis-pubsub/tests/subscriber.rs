//! The subscriber against real redis-servers, one per test.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fogis_pubsub::config::{DEFAULT_MATCH_CHANNELS, DEFAULT_STATUS_CHANNELS};
use fogis_pubsub::{
    drive, AlertKind, AlertSeverity, Message, ProbeError, RejectReason, SubscriberConfig,
};
use test_support::{free_port, RedisServer};

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_on_every_channel_is_handled_once_or_recorded() {
    let redis = RedisServer::start();
    let recorder = Recorder::new();
    let handle = drive(config_for(&redis.url()), recorder.clone());
    connected(&handle, T).await;
    let publisher = publisher_for(&redis);

    let (mut handled, mut statuses, mut alerts, mut rejected) = (0u64, 0u64, 0u64, 0u64);
    for (name, bytes) in fixtures() {
        let kind = fogis_pubsub::decode(&bytes);
        let channels = match kind {
            // Status messages really travel on the status channels; send them there too.
            Ok(Message::Status(_) | Message::Alert(_)) => DEFAULT_MATCH_CHANNELS
                .iter()
                .chain(DEFAULT_STATUS_CHANNELS.iter())
                .collect::<Vec<_>>(),
            _ => DEFAULT_MATCH_CHANNELS.iter().collect(),
        };
        for channel in channels {
            let receivers = publisher.publish(channel, &bytes).await.expect("published");
            assert_eq!(receivers, 1, "{name} on {channel}");
            match &kind {
                Ok(Message::Matches(_)) => handled += 1,
                Ok(Message::Status(_)) => statuses += 1,
                Ok(Message::Alert(_)) => alerts += 1,
                Err(_) => rejected += 1,
            }
            // Wait for this one before the next, so coalescing cannot merge them.
            eventually(&format!("{name} on {channel}"), T, || {
                let s = handle.status();
                recorder.update_count() as u64 == handled
                    && s.status_messages == statuses
                    && s.alert_messages == alerts
                    && s.messages_rejected == rejected
            })
            .await;
            if let Ok(Message::Matches(expected)) = &kind {
                let updates = recorder.updates.lock().expect("lock");
                let got = updates.last().expect("an update");
                assert_eq!(&got.channel, channel);
                assert_eq!(got.snapshot.matches.len(), expected.matches.len(), "{name}");
                assert_eq!(got.snapshot.meta.message_id, expected.meta.message_id);
            }
        }
    }
    // The probe travels behind everything published before it: once it is back, nothing else
    // can still be in flight, so the counts are final.
    handle.probe().await.expect("probe");
    let s = handle.status();
    assert_eq!(recorder.update_count() as u64, handled);
    assert_eq!(s.messages_applied, handled);
    assert_eq!(s.sync_count, handled);
    assert!(s.last_sync_time.is_some());
    assert_eq!(s.messages_received, handled + statuses + alerts + rejected);
    assert!(
        handled >= 6 * 8,
        "most fixtures are match updates ({handled})"
    );
    assert!(statuses > 0 && alerts > 0);
    assert_eq!(s.messages_coalesced, 0);
    assert_eq!(s.reconnect_count, 0);
    assert_eq!(s.recent.len(), 20);
    assert!(s.last_status.is_some());
    // The fixture's alert, kept as known values (its text is never kept).
    let alert = s.last_alert.as_ref().expect("an alert");
    assert_eq!(
        (alert.alert_type, alert.severity),
        (AlertKind::ProcessingError, AlertSeverity::Error)
    );
    assert_eq!(
        alert.message_chars,
        "Match processing failed: example failure".len()
    );
    for channel in DEFAULT_MATCH_CHANNELS {
        assert!(
            s.messages_received_by_channel
                .get(channel)
                .copied()
                .unwrap_or(0)
                > 0
        );
    }
    assert_eq!(
        recorder.rejected.lock().expect("lock").len() as u64,
        rejected
    );
    assert_eq!(recorder.connected_events(), vec![false]);
    handle.shutdown();
    handle.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_absent_at_start_is_connected_when_it_appears() {
    let port = free_port();
    let recorder = Recorder::new();
    let handle = drive(
        config_for(&format!("redis://127.0.0.1:{port}")),
        recorder.clone(),
    );
    eventually("a failed first attempt", T, || {
        handle.status().last_error.is_some()
    })
    .await;
    let s = handle.status();
    assert!(!s.connected && !s.subscribed && !s.redis_available);
    assert!(s.disconnected_since.is_some());

    let redis = RedisServer::options().port(port).start();
    connected(&handle, T).await;
    assert_eq!(
        handle.status().reconnect_count,
        0,
        "the first subscription is no reconnect"
    );
    let receivers = publisher_for(&redis)
        .publish("fogis_matches", fixture("seed_flat.json"))
        .await
        .expect("published");
    assert_eq!(receivers, 1);
    eventually("the update", T, || recorder.update_count() == 1).await;
    assert_eq!(recorder.connected_events(), vec![false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_is_noticed_within_ten_seconds() {
    let mut redis = RedisServer::start();
    let recorder = Recorder::new();
    // Default timings: ping after 3 s of silence, dead after 4 s without a reply.
    let handle = drive(config_for(&redis.url()), recorder.clone());
    connected(&handle, T).await;

    redis.pause();
    let frozen = Instant::now();
    eventually("connected=false", Duration::from_secs(10), || {
        !handle.status().connected
    })
    .await;
    let noticed = frozen.elapsed();
    println!("a frozen Redis was noticed after {noticed:?}");
    assert!(noticed < Duration::from_secs(10), "took {noticed:?}");
    let s = handle.status();
    assert!(!s.subscribed);
    let error = s.last_error.expect("an error is recorded");
    // The idle PING notices it; so does the catch-up read when the pause lands while that
    // read (made right after subscribing) is still in flight, as it does on a loaded machine.
    assert!(
        error.contains("PING") || error.contains("catch-up read of fogis:matches:latest failed"),
        "{error}"
    );

    redis.resume();
    eventually("reconnected", Duration::from_secs(20), || {
        let s = handle.status();
        s.connected && s.reconnect_count == 1
    })
    .await;
    eventually("the reconnect event", T, || {
        recorder.connected_events() == [false, true]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_never_connects() {
    let redis = RedisServer::start();
    let config = SubscriberConfig {
        enabled: false,
        ..config_for(&redis.url())
    };
    let handle = drive(config, Recorder::new());
    // No task was started at all: joining returns at once without a shutdown.
    tokio::time::timeout(Duration::from_secs(1), handle.join())
        .await
        .expect("no tasks to wait for");
    let s = handle.status();
    assert!(!s.enabled && !s.connected && !s.subscribed && !s.redis_available);
    assert_eq!(handle.probe().await, Err(ProbeError::Disabled));
    assert_eq!(redis.cli(&["PUBSUB", "NUMPAT"]), "0");
    assert_eq!(redis.cli(&["PUBSUB", "CHANNELS"]), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_round_trips_and_fails_clearly_when_redis_is_down() {
    let mut redis = RedisServer::start();
    let recorder = Recorder::new();
    let handle = drive(config_for(&redis.url()), recorder.clone());
    connected(&handle, T).await;

    for _ in 0..3 {
        let rtt = handle.probe().await.expect("probe with Redis up");
        assert!(rtt < Duration::from_secs(3), "{rtt:?}");
    }
    assert!(handle
        .probe_channel()
        .starts_with("fogis:calendar-sync:probe:"));
    // Probes never show up as messages, let alone on a match channel.
    let s = handle.status();
    assert_eq!(s.messages_received, 0);
    assert_eq!(recorder.update_count(), 0);

    redis.stop();
    eventually("disconnected", T, || !handle.status().connected).await;
    let err = handle.probe().await.expect_err("Redis is down");
    assert!(
        matches!(err, ProbeError::NotSubscribed | ProbeError::Unavailable(_)),
        "{err:?}"
    );
    assert!(!err.to_string().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_under_a_slow_handler_coalesces_without_disconnects() {
    let redis = RedisServer::start();
    let recorder = Recorder::slow(Duration::from_millis(2));
    let handle = drive(config_for(&redis.url()), recorder.clone());
    connected(&handle, T).await;

    let client_id = subscriber_client_id(&redis).expect("our subscriber is listed");

    const N: usize = 5_000;
    // Each copy gets a fresh message_id, spliced into the raw bytes (cheaper than re-serialising
    // 5,000 JSON documents in a debug build).
    let raw = fixture("processor_match_updates.json");
    let original = fogis_pubsub::decode(&raw)
        .expect("fixture decodes")
        .meta()
        .message_id
        .clone()
        .expect("fixture has a message_id");
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, tail) = text.split_once(&original).expect("id in the text");
    let client = redis::Client::open(redis.url()).expect("client");
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connection");
    // Pipelines of BATCH publishes, one every PACE: 5,000 snapshots (146 MB) in about a second,
    // 100x what a 2 ms handler could take. Not one single 146 MB pipeline: over loopback that
    // outruns even the redis crate's bare pub/sub reader on a small machine (measured: a reader
    // doing nothing at all was cut off at the 32 MB limit in some runs), so it would test the
    // machine, not this subscriber.
    const BATCH: usize = 100;
    const PACE: Duration = Duration::from_millis(20);
    let mut ticks = tokio::time::interval(PACE);
    let mut last_id = String::new();
    let mut receivers: Vec<usize> = Vec::with_capacity(N);
    for _ in 0..N / BATCH {
        ticks.tick().await;
        let mut pipe = redis::pipe();
        for _ in 0..BATCH {
            last_id = uuid::Uuid::new_v4().to_string();
            let payload = format!("{head}{last_id}{tail}");
            pipe.cmd("PUBLISH")
                .arg("fogis:matches:updates")
                .arg(payload);
        }
        let batch: Vec<usize> = pipe.query_async(&mut conn).await.expect("pipeline");
        receivers.extend(batch);
    }
    let missed = receivers.iter().filter(|&&r| r != 1).count();
    assert_eq!(
        missed,
        0,
        "every publish must reach the subscriber; status {:?}; log {}",
        handle.status(),
        redis.log()
    );

    eventually("all messages read", Duration::from_secs(120), || {
        handle.status().messages_received == N as u64
    })
    .await;
    eventually("the last snapshot handled", T, || {
        recorder.last_message_id().as_deref() == Some(last_id.as_str())
    })
    .await;
    let s = handle.status();
    println!(
        "burst: {} applied, {} coalesced",
        s.messages_applied, s.messages_coalesced
    );
    assert_eq!(s.reconnect_count, 0);
    assert!(s.connected);
    assert_eq!(s.messages_applied + s.messages_coalesced, N as u64);
    assert!(
        s.messages_coalesced > 0,
        "a 2 ms handler cannot keep up with a pipelined burst"
    );
    assert_eq!(recorder.update_count() as u64, s.messages_applied);
    // Redis did not cut us off for the output buffer either: the same client (by id) is still
    // subscribed, no kill was logged, and (Redis 7.2+) the disconnection counter is zero.
    assert_eq!(subscriber_client_id(&redis), Some(client_id));
    let log = redis.log();
    assert!(
        !log.contains("output buffer"),
        "Redis closed a client: {log}"
    );
    let stats = redis.cli(&["INFO", "stats"]);
    if let Some(line) = stats
        .lines()
        .find(|l| l.starts_with("client_output_buffer_limit_disconnections:"))
    {
        assert_eq!(line.trim(), "client_output_buffer_limit_disconnections:0");
    }
}

/// The `id=` of the one client subscribed to our 10 channels (9 + the probe channel).
fn subscriber_client_id(redis: &RedisServer) -> Option<String> {
    let clients = redis.cli(&["CLIENT", "LIST"]);
    let mut subscribers = clients.lines().filter(|l| l.contains(" sub=10 "));
    let line = subscribers.next()?;
    assert!(
        subscribers.next().is_none(),
        "one subscriber expected: {clients}"
    );
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("id="))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_payload_is_rejected_without_reaching_the_handler() {
    let redis = RedisServer::start();
    let recorder = Recorder::new();
    let handle = drive(config_for(&redis.url()), recorder.clone());
    connected(&handle, T).await;
    let publisher = publisher_for(&redis);

    let mut huge = br#"{"matches": [], "padding": ""#.to_vec();
    huge.resize(5_000_000, b'x');
    huge.extend_from_slice(br#""}"#);
    publisher
        .publish("fogis_matches", &huge)
        .await
        .expect("published");
    eventually("the rejection", T, || {
        recorder.rejected.lock().expect("lock").len() == 1
    })
    .await;
    {
        let rejected = recorder.rejected.lock().expect("lock");
        let r = &rejected[0];
        assert_eq!(r.channel, "fogis_matches");
        assert_eq!(r.size, huge.len());
        assert_eq!(r.raw.len(), 64 * 1024);
        assert!(
            matches!(r.error, RejectReason::TooLarge { .. }),
            "{:?}",
            r.error
        );
    }
    // Garbage is rejected too, and the subscriber goes on.
    publisher
        .publish("fogis_matches", b"not json")
        .await
        .expect("published");
    publisher
        .publish("fogis_matches", fixture("seed_flat.json"))
        .await
        .expect("published");
    // The status counts an update once the handler has returned, after the recorder saw it.
    eventually("the valid update, counted", T, || {
        recorder.update_count() == 1 && handle.status().messages_applied == 1
    })
    .await;
    let s = handle.status();
    assert_eq!(s.messages_rejected, 2);
    assert_eq!(s.messages_received, 3);
    assert_eq!(s.messages_applied, 1);
    assert!(s.connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reconnects_and_tells_the_handler() {
    let redis = RedisServer::start();
    let recorder = Recorder::new();
    let handle = drive(config_for(&redis.url()), recorder.clone());
    connected(&handle, T).await;
    handle.restart();
    eventually("the reconnect", T, || handle.status().reconnect_count == 1).await;
    connected(&handle, T).await;
    eventually("two connection events", T, || {
        recorder.connected_events() == [false, true]
    })
    .await;
    handle.probe().await.expect("still receiving");
    assert_eq!(
        redis.cli(&["PUBSUB", "NUMSUB", "fogis_matches"]),
        "fogis_matches\n1"
    );
    handle.shutdown();
    tokio::time::timeout(T, handle.join())
        .await
        .expect("tasks end after shutdown");
    assert!(!handle.status().connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_acl_users_work_and_never_leak() {
    let redis = RedisServer::options()
        .arg("--requirepass")
        .arg("s3cret-pw")
        .start();
    let port = redis.port();
    let acl = redis.cli(&[
        "--no-auth-warning",
        "-a",
        "s3cret-pw",
        "ACL",
        "SETUSER",
        "alice",
        "on",
        ">al1ce-pw",
        "~*",
        "&*",
        "+@all",
    ]);
    assert_eq!(acl, "OK");

    for url in [
        format!("redis://:s3cret-pw@127.0.0.1:{port}"),
        format!("redis://alice:al1ce-pw@127.0.0.1:{port}/0"),
    ] {
        let handle = drive(config_for(&url), Recorder::new());
        connected(&handle, T).await;
        handle.probe().await.expect("probe with credentials");
        assert!(!format!("{handle:?}").contains("-pw"));
        assert!(!format!("{:?}", handle.config()).contains("-pw"));
    }

    let handle = drive(
        config_for(&format!("redis://alice:wr0ng-pw@127.0.0.1:{port}")),
        Recorder::new(),
    );
    eventually("an auth error", T, || handle.status().last_error.is_some()).await;
    let s = handle.status();
    let error = s.last_error.expect("error");
    assert!(!error.contains("wr0ng-pw"), "{error}");
    assert!(!s.connected);
    assert!(
        s.redis_available,
        "the server answered, it just refused us: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closure_handler_that_panics_does_not_stop_the_subscriber() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let redis = RedisServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let handle =
        fogis_pubsub::subscribe_to_match_updates(config_for(&redis.url()), move |update| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(n > 0, "the first call panics on purpose");
                fogis_pubsub::HandlerOutcome::Applied {
                    summary: format!("{} matches", update.snapshot.matches.len()),
                }
            }
        });
    connected(&handle, T).await;
    let publisher = publisher_for(&redis);
    publisher
        .publish("fogis_matches", fixture("seed_flat.json"))
        .await
        .expect("published");
    eventually("the panicking call", T, || {
        handle.status().messages_rejected == 1
    })
    .await;
    publisher
        .publish("fogis_matches", fixture("seed_flat.json"))
        .await
        .expect("published");
    eventually("the next call", T, || handle.status().messages_applied == 1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let s = handle.status();
    assert!(
        s.recent.iter().any(|r| r.outcome.contains("panicked")),
        "{:?}",
        s.recent
    );
}

/// A Redis reached over its Unix socket (`redis+unix://`, read by the subscriber's own frame
/// reader like TCP): subscribed, catch-up read, a published list handled, PING answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_on_a_unix_socket_delivers_like_tcp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("redis.sock");
    let redis = RedisServer::options()
        .arg("--unixsocket")
        .arg(socket.display().to_string())
        .arg("--unixsocketperm")
        .arg("700")
        .start();
    let recorder = Recorder::new();
    let config = SubscriberConfig {
        ping_interval: Duration::from_millis(100),
        // A pong that never came would drop the connection well within the wait below.
        ping_timeout: Duration::from_millis(200),
        ..config_for(&format!("redis+unix://{}", socket.display()))
    };
    let handle = drive(config, recorder.clone());
    connected(&handle, T).await;
    let receivers = publisher_for(&redis)
        .publish("fogis_matches", fixture("seed_flat.json"))
        .await
        .expect("published");
    assert_eq!(
        receivers, 1,
        "the unix-socket subscriber is the one receiver"
    );
    eventually("the update", T, || recorder.update_count() == 1).await;
    // Idle pings go out and come back on the same socket: the connection stays up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = handle.status();
    assert!(s.connected, "{s:?}");
    assert_eq!(s.reconnect_count, 0, "{s:?}");
}
