//! A 15 s Redis outage, alone in its test binary so that the process CPU time measured during
//! the outage belongs to the subscriber and nothing else.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fogis_pubsub::drive;
use test_support::RedisServer;

const OUTAGE: Duration = Duration::from_secs(15);

/// User + system CPU time of this process, from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name (field 2) may contain spaces; the fields after its ')' start at field 3.
    let rest = &stat[stat.rfind(')').expect("comm") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifteen_second_outage_costs_no_cpu_and_recovers_within_five_seconds() {
    let mut redis = RedisServer::start();
    let recorder = Recorder::new();
    // The default ceiling is 30 s: right for production (a long outage is retried politely),
    // but then a return could wait up to 30 s. The test lowers it to 2 s to check the recovery
    // path within 5 s; the ceiling itself is unit-tested in subscriber::backoff.
    let config = fogis_pubsub::SubscriberConfig {
        backoff_max: Duration::from_secs(2),
        ..config_for(&redis.url())
    };
    let handle = drive(config, recorder.clone());
    connected(&handle, Duration::from_secs(10)).await;
    let publisher = publisher_for(&redis);
    publisher
        .publish(
            "fogis:matches:updates",
            fixture("processor_match_updates.json"),
        )
        .await
        .expect("published");
    eventually("the first update", Duration::from_secs(10), || {
        recorder.update_count() == 1
    })
    .await;

    let cpu_before = cpu_time();
    redis.stop();
    let down = Instant::now();
    eventually("connected=false", Duration::from_secs(2), || {
        !handle.status().connected
    })
    .await;
    // Sit out the outage, checking that the status never claims a connection.
    while down.elapsed() < OUTAGE {
        let s = handle.status();
        assert!(
            !s.connected && !s.subscribed,
            "connected during the outage: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu = cpu_time().saturating_sub(cpu_before);
    println!("CPU time during a {OUTAGE:?} outage: {cpu:?}");
    assert!(
        cpu < Duration::from_secs(2),
        "the outage cost {cpu:?} of CPU"
    );
    let s = handle.status();
    assert!(s.last_error.is_some() && s.disconnected_since.is_some() && !s.redis_available);

    redis.start_again();
    let back = Instant::now();
    connected(&handle, Duration::from_secs(5)).await;
    publisher
        .publish(
            "fogis:matches:updates",
            fixture("processor_match_updates_v3.1.json"),
        )
        .await
        .expect("published after the outage");
    eventually(
        "the update after the outage",
        Duration::from_secs(5),
        || recorder.update_count() == 2,
    )
    .await;
    let recovered = back.elapsed();
    println!("handled the first update {recovered:?} after Redis came back");
    assert!(
        recovered < Duration::from_secs(5),
        "recovered after {recovered:?}"
    );

    let s = handle.status();
    assert_eq!(s.reconnect_count, 1);
    assert!(s.connected && s.subscribed && s.redis_available);
    assert!(s.connected_since.is_some() && s.disconnected_since.is_none());
    // Every channel was subscribed again.
    for channel in &s.channels {
        let numsub = redis.cli(&["PUBSUB", "NUMSUB", channel]);
        assert_eq!(numsub, format!("{channel}\n1"));
    }
    eventually("the reconnect event", Duration::from_secs(5), || {
        recorder.connected_events() == [false, true]
    })
    .await;
    handle.shutdown();
    handle.join().await;
}
