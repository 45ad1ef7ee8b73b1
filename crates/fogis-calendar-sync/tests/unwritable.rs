//! A state that cannot be written is not bad input. While another connection holds SQLite's
//! write lock for longer than the busy timeout, stream entries stay pending (nothing is
//! acknowledged before its commit), a pub/sub list stays in the subscriber's slot and is
//! retried, and `POST /sync` answers 503 with `Retry-After`; once the lock is released every
//! list is applied exactly once, and nothing was rejected or quarantined.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/lists.rs"]
mod lists;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use fogis_pubsub::{PublishTargets, Publisher, RedisUrl, StreamTarget};
use lists::{list_number, wait_for_list};
use serde_json::{json, Value};
use test_support::RedisServer;

const STREAM: &str = "fogis:matches:stream";
/// How long the write lock is held at least: longer than the store's 5 s busy timeout, so
/// every attempt meanwhile fails.
const HOLD: Duration = Duration::from_secs(7);

/// List `i` (see [`lists`]), sent at second `i`.
fn list(i: i64) -> Value {
    let mut s = lists::numbered(i, &[30, 31]);
    s["timestamp"] = json!(format!("2030-01-01T00:00:{i:02}.000000Z"));
    s
}

/// Holds the write lock of `dir/state.db` from another connection (`BEGIN IMMEDIATE`) on its
/// own thread, until the returned sender is dropped or sent to.
fn hold_write_lock(dir: &Path) -> mpsc::Sender<()> {
    let path = dir.join("state.db");
    let (locked_tx, locked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    release_tx
}

/// `(message_id, outcome)` of every row of the sync log, oldest first.
fn sync_log(dir: &Path) -> Vec<(Option<String>, String)> {
    let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT message_id, outcome FROM sync_log ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn applied_count(log: &[(Option<String>, String)], id: &str) -> usize {
    log.iter()
        .filter(|(m, o)| m.as_deref() == Some(id) && o == "applied")
        .count()
}

/// Nothing was rejected or quarantined, in the log or in the quarantine.
fn nothing_rejected(dir: &Path) {
    let log = sync_log(dir);
    assert!(
        log.iter().all(|(_, o)| o != "rejected"),
        "a list was rejected: {log:?}"
    );
    let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    let quarantined: i64 = conn
        .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))
        .unwrap();
    assert_eq!(quarantined, 0, "a list went to the quarantine");
}

/// `/health` until it says the state cannot be written; returns it.
async fn wait_unwritable(svc: &Service) -> Value {
    svc.wait_json(
        "/health",
        "the state reported unwritable",
        Duration::from_secs(30),
        |h| h["state"]["writable"] == false,
    )
    .await
}

/// [`wait_unwritable`], and its attention says the state cannot be written.
async fn wait_unwritable_attention(svc: &Service) -> Value {
    let health = wait_unwritable(svc).await;
    assert!(
        health["attention"]
            .to_string()
            .contains("cannot be written"),
        "{health}"
    );
    health
}

/// A service reading the stream only (no pub/sub) from the Redis at `url`, its state in `dir`.
async fn stream_service(dir: tempfile::TempDir, url: &str) -> Service {
    Service::start_in(dir, |o| {
        o.redis = redis_opts(Some(url));
        o.redis.redis_pubsub_enabled = false;
        o.redis.durable.redis_stream = Some(STREAM.into());
    })
    .await
}

fn publisher(redis: &RedisServer) -> Publisher {
    Publisher::new(RedisUrl::new(redis.url()).unwrap())
}

fn stream_only() -> PublishTargets {
    PublishTargets {
        channel: "nobody-listens".into(),
        latest_key: None,
        stream: Some(StreamTarget {
            key: STREAM.into(),
            max_len: 10_000,
        }),
    }
}

fn pubsub_only() -> PublishTargets {
    PublishTargets {
        channel: "fogis:matches:updates".into(),
        latest_key: None,
        stream: None,
    }
}

async fn publish(p: &Publisher, i: i64, targets: &PublishTargets) {
    p.publish_snapshot(&serde_json::to_vec(&list(i)).unwrap(), targets)
        .await
        .unwrap();
}

/// The service's consumer group (its state's own, see `instance.rs`).
async fn group(svc: &Service) -> String {
    let config = svc.get_json("/redis-config").await;
    config["stream"]["group"].as_str().unwrap().to_string()
}

/// The number of entries XPENDING counts for `group`.
fn pending(redis: &RedisServer, group: &str) -> i64 {
    let out = redis.cli(&["XPENDING", STREAM, group]);
    out.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_entries_stay_pending_while_the_state_is_locked_and_are_applied_once_after() {
    let redis = RedisServer::start();
    let url = redis.url();
    let svc = stream_service(tempfile::tempdir().unwrap(), &url).await;
    let group = group(&svc).await;
    let p = publisher(&redis);
    publish(&p, 0, &stream_only()).await;
    wait_for_list(&svc, 0).await;
    svc.wait_json(
        "/redis-stats",
        "entry 0 acked",
        Duration::from_secs(10),
        |s| s["stream"]["acked"] == 1,
    )
    .await;

    let release = hold_write_lock(svc.dir.path());
    let locked_at = Instant::now();
    for i in 1..=3 {
        publish(&p, i, &stream_only()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_unwritable_attention(&svc).await;
    // Until the lock is released: retried, never acknowledged.
    eventually(
        "retried twice with the lock held",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let s = svc.get_json("/redis-stats").await;
            assert_eq!(
                s["stream"]["acked"], 1,
                "acknowledged before its commit: {s}"
            );
            // The entries read so far (the consumer reads its own pending ones again before
            // anything new, so the later ones may not have been delivered yet).
            let pending = pending(&redis, &group);
            assert!((0..=3).contains(&pending), "{pending} pending: {s}");
            let retried = s["stream"]["retried"].as_u64().unwrap_or(0);
            if retried >= 2 && pending >= 1 && locked_at.elapsed() >= HOLD {
                Ok(())
            } else {
                Err(format!("retried {retried}, {pending} pending"))
            }
        },
    )
    .await;
    assert_eq!(list_number(&svc.get_json("/matches").await), Some(0));
    release.send(()).unwrap();

    wait_for_list(&svc, 3).await;
    svc.wait_json(
        "/redis-stats",
        "all four acked",
        Duration::from_secs(30),
        |s| s["stream"]["acked"] == 4,
    )
    .await;
    assert_eq!(pending(&redis, &group), 0);
    let log = sync_log(svc.dir.path());
    assert_eq!(applied_count(&log, "list-0"), 1, "{log:?}");
    assert_eq!(applied_count(&log, "list-3"), 1, "{log:?}");
    for i in 1..=3 {
        assert!(
            applied_count(&log, &format!("list-{i}")) <= 1,
            "list-{i} applied twice: {log:?}"
        );
    }
    nothing_rejected(svc.dir.path());
    let health = svc.get_json("/health").await;
    assert_eq!(health["state"]["writable"], true, "{health}");
    let stats = svc.get_json("/redis-stats").await;
    assert_eq!(stats["messages_rejected"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pubsub_list_is_kept_while_the_state_is_locked_and_applied_once_after() {
    let redis = RedisServer::start();
    let url = redis.url();
    let svc = Service::start_with(|o| o.redis = redis_opts(Some(&url))).await;
    svc.wait_redis_connected(Duration::from_secs(10)).await;
    let p = publisher(&redis);
    publish(&p, 0, &pubsub_only()).await;
    wait_for_list(&svc, 0).await;

    let release = hold_write_lock(svc.dir.path());
    let locked_at = Instant::now();
    publish(&p, 1, &pubsub_only()).await;
    wait_unwritable(&svc).await;
    // A newer list arriving while the first waits for its retry replaces it.
    publish(&p, 2, &pubsub_only()).await;
    eventually(
        "retried with the lock held",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let s = svc.get_json("/redis-stats").await;
            assert_eq!(s["messages_rejected"], 0, "{s}");
            let retried = s["messages_retried"].as_u64().unwrap_or(0);
            if retried >= 3 && locked_at.elapsed() >= HOLD {
                Ok(())
            } else {
                Err(format!("retried {retried}"))
            }
        },
    )
    .await;
    let health = svc.get_json("/health").await;
    assert!(
        health["redis"]["messages_retried"].as_u64().unwrap() >= 3,
        "{health}"
    );
    assert_eq!(list_number(&svc.get_json("/matches").await), Some(0));
    release.send(()).unwrap();

    wait_for_list(&svc, 2).await;
    let log = sync_log(svc.dir.path());
    assert_eq!(applied_count(&log, "list-2"), 1, "{log:?}");
    assert_eq!(applied_count(&log, "list-1"), 0, "{log:?}");
    nothing_rejected(svc.dir.path());
    let metrics = svc.get_text("/metrics").await;
    assert!(metrics.contains("fogis_state_writable 1\n"), "{metrics}");
    assert!(
        !metrics.contains("fogis_state_write_failures_total 0\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_post_while_the_state_is_locked_gets_503_with_retry_after() {
    let svc = Service::start().await;
    let (status, _) = svc
        .post("/sync", serde_json::to_vec(&list(0)).unwrap())
        .await;
    assert_eq!(status, 200);

    let release = hold_write_lock(svc.dir.path());
    let resp = svc
        .http
        .post(svc.url("/sync"))
        .body(serde_json::to_vec(&list(1)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], false, "{body}");
    let health = svc.get_json("/health").await;
    assert_eq!(health["state"]["writable"], false, "{health}");
    release.send(()).unwrap();

    // The same list again, once the state is writable: applied, once.
    let (status, body) = svc
        .post("/sync", serde_json::to_vec(&list(1)).unwrap())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], true, "{body}");
    assert_eq!(list_number(&svc.get_json("/matches").await), Some(1));
    let log = sync_log(svc.dir.path());
    assert_eq!(applied_count(&log, "list-1"), 1, "{log:?}");
    nothing_rejected(svc.dir.path());
    let health = svc.get_json("/health").await;
    assert_eq!(health["state"]["writable"], true, "{health}");
}

/// A tmpfs mounted on a directory for the length of a test; unmounted (lazily, in case the
/// service still has a file open) on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mounts a tmpfs of `size` on `dir`, or says why not (not root, no mount permission).
    fn mount(dir: &Path, size: &str) -> Result<SmallDisk, String> {
        let uid = std::process::Command::new("id").arg("-u").output();
        let root = uid.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root {
            return Err("not root".into());
        }
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes `path` until the file system says it is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in [1 << 20, 4096, 512] {
        let block = vec![0u8; chunk];
        while f.write_all(&block).is_ok() {}
    }
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_entries_stay_pending_while_the_disk_is_full_and_are_applied_once_after() {
    let dir = tempfile::tempdir().unwrap();
    let disk = match SmallDisk::mount(dir.path(), "16m") {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIP: no small disk to fill ({why})");
            return;
        }
    };
    let redis = RedisServer::start();
    let url = redis.url();
    let svc = stream_service(dir, &url).await;
    let p = publisher(&redis);
    publish(&p, 0, &stream_only()).await;
    wait_for_list(&svc, 0).await;

    let filler = svc.dir.path().join("filler");
    fill(&filler);
    publish(&p, 1, &stream_only()).await;
    publish(&p, 2, &stream_only()).await;
    let health = wait_unwritable_attention(&svc).await;
    eprintln!("with the disk full: {}", health["state"]);
    eventually(
        "retried with the disk full",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let s = svc.get_json("/redis-stats").await;
            assert_eq!(
                s["stream"]["acked"], 1,
                "acknowledged before its commit: {s}"
            );
            let retried = s["stream"]["retried"].as_u64().unwrap_or(0);
            if retried >= 2 {
                Ok(())
            } else {
                Err(format!("retried {retried}"))
            }
        },
    )
    .await;
    assert_eq!(list_number(&svc.get_json("/matches").await), Some(0));
    std::fs::remove_file(&filler).unwrap();

    wait_for_list(&svc, 2).await;
    svc.wait_json(
        "/redis-stats",
        "all three acked",
        Duration::from_secs(30),
        |s| s["stream"]["acked"] == 3,
    )
    .await;
    let log = sync_log(svc.dir.path());
    assert_eq!(applied_count(&log, "list-2"), 1, "{log:?}");
    assert!(applied_count(&log, "list-1") <= 1, "{log:?}");
    nothing_rejected(svc.dir.path());
    let dir = svc.stop().await;
    drop(disk);
    drop(dir);
}
