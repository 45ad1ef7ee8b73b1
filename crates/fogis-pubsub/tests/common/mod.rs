//! Helpers shared by the integration tests: a recording handler, fast test configurations,
//! fixtures and polling with a deadline (never blind sleeps).
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fogis_pubsub::{
    BoxFuture, HandlerOutcome, MatchUpdate, Publisher, RedisUrl, RejectedPayload, SubscriberConfig,
    SubscriberHandle, SyncTarget,
};
use test_support::RedisServer;

/// A handler that remembers everything it is told, optionally slow.
#[derive(Debug, Default)]
pub struct Recorder {
    pub updates: Mutex<Vec<MatchUpdate>>,
    pub connected: Mutex<Vec<bool>>,
    pub rejected: Mutex<Vec<RejectedPayload>>,
    pub delay: Duration,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder::default())
    }

    pub fn slow(delay: Duration) -> Arc<Self> {
        Arc::new(Recorder {
            delay,
            ..Recorder::default()
        })
    }

    pub fn update_count(&self) -> usize {
        self.updates.lock().expect("lock").len()
    }

    pub fn last_message_id(&self) -> Option<String> {
        let updates = self.updates.lock().expect("lock");
        updates.last()?.snapshot.meta.message_id.clone()
    }

    pub fn connected_events(&self) -> Vec<bool> {
        self.connected.lock().expect("lock").clone()
    }
}

impl SyncTarget for Recorder {
    fn sync(&self, update: MatchUpdate) -> BoxFuture<'_, HandlerOutcome> {
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let summary = format!("{} matches", update.snapshot.matches.len());
            self.updates.lock().expect("lock").push(update);
            HandlerOutcome::Applied { summary }
        })
    }

    fn on_connected(&self, reconnect: bool) -> BoxFuture<'_, ()> {
        self.connected.lock().expect("lock").push(reconnect);
        Box::pin(async {})
    }

    fn on_rejected(&self, rejected: RejectedPayload) -> BoxFuture<'_, ()> {
        self.rejected.lock().expect("lock").push(rejected);
        Box::pin(async {})
    }
}

/// Shows the library's logs in test output (`RUST_LOG=fogis_pubsub=debug cargo test -- --nocapture`).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fogis_pubsub=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The default configuration aimed at a test server (and logs switched on).
pub fn config_for(url: &str) -> SubscriberConfig {
    init_logs();
    SubscriberConfig::with_url(RedisUrl::new(url).expect("valid test URL"))
}

pub fn publisher_for(redis: &RedisServer) -> Publisher {
    Publisher::new(RedisUrl::new(redis.url()).expect("valid test URL"))
}

/// Polls `condition` every 20 ms until it holds; panics after `within`.
pub async fn eventually(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the subscriber is connected and subscribed.
pub async fn connected(handle: &SubscriberHandle, within: Duration) {
    eventually("a subscribed connection", within, || {
        let s = handle.status();
        s.connected && s.subscribed
    })
    .await;
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Every `fixtures/*.json`, sorted by name.
pub fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("readable fixture"))
        })
        .collect();
    all.sort();
    assert!(!all.is_empty(), "no fixtures found");
    all
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).expect("fixture exists")
}
