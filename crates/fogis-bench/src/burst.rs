//! Benchmark 1, the burst: `n` production-size messages, each a real change with a fresh id,
//! published pipelined on one match channel. In the same run a [`RawSubscriber`] on the same
//! channel counts what a subscriber doing nothing at all receives: the machine's ceiling.
//!
//! Measured: how fast each drains (messages / second from the first `PUBLISH` until it had
//! received the last one; the service by its own `messages_received`), what was lost (messages
//! not received, Redis closing the subscriber for its output buffer, reconnections), and how
//! long after the last `PUBLISH` (its reply: Redis has then sent the message to every
//! subscriber) the service's state equals the last snapshot. [`crate::run`] repeats the burst
//! on fresh services (`Sizes::burst_runs`): the targets are about every run, not one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chrono::Utc;
use test_support::RedisServer;

use crate::resp::{publish_pipelined, RawCount, RawSubscriber};
use crate::service::Service;
use crate::workload::{kickoff, Template};

/// The channel the processor publishes on.
pub const CHANNEL: &str = "fogis:matches:updates";

/// How long the service may take to drain and converge before the run is called a failure.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the service is asked how far it got while the burst is published (each ask costs
/// it a little CPU).
const POLL: Duration = Duration::from_millis(5);
/// How often, once everything is published, the state is compared with the last snapshot
/// (the resolution of "state = last snapshot", whose target is 100 ms).
const POLL_STATE: Duration = Duration::from_millis(2);
/// After the last `PUBLISH`, this long without a message received means the rest is lost.
const STALL: Duration = Duration::from_secs(20);

/// The outcome of one burst.
#[derive(Debug, Clone)]
pub struct BurstResult {
    pub messages: u64,
    pub message_bytes: usize,
    /// First `PUBLISH` written to the last reply read.
    pub publish: Duration,
    pub raw: RawCount,
    /// First `PUBLISH` to the raw subscriber's last message.
    pub raw_drain: Option<Duration>,
    /// Messages the service counted as received.
    pub service_received: u64,
    /// First `PUBLISH` to the service having counted all of them.
    pub service_drain: Option<Duration>,
    /// The last `PUBLISH`'s reply to the state equal to the last snapshot (`None`: never, within
    /// the stall timeout).
    pub converged: Option<Duration>,
    /// Replies that counted fewer than two receivers.
    pub short_publishes: u64,
    pub reconnects: u64,
    /// The service's subscriber connection is the one it had before (Redis did not close it).
    pub same_connection: bool,
    /// Redis' log mentions closing a client for its output buffer.
    pub buffer_kills: u64,
    /// Who was closed: `service` (the client subscribed to ten channels) or `raw`, with the
    /// output buffer it had.
    pub killed: Vec<String>,
    pub applied: u64,
    pub coalesced: u64,
}

impl BurstResult {
    /// Messages published per second (first `PUBLISH` to the last reply).
    pub fn publish_rate(&self) -> f64 {
        self.messages as f64 / self.publish.as_secs_f64().max(1e-9)
    }

    /// Nothing lost: every message received, on the same connection, no output-buffer kill, no
    /// reconnection, every `PUBLISH` reached both subscribers.
    pub fn clean(&self) -> bool {
        self.lost() == 0
            && self.buffer_kills == 0
            && self.reconnects == 0
            && self.short_publishes == 0
            && self.same_connection
    }

    pub fn raw_rate(&self) -> Option<f64> {
        self.raw_drain
            .map(|d| self.raw.messages as f64 / d.as_secs_f64())
    }

    pub fn service_rate(&self) -> Option<f64> {
        self.service_drain
            .map(|d| self.service_received as f64 / d.as_secs_f64())
    }

    /// Service drain rate over the raw ceiling.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.service_rate()? / self.raw_rate()?)
    }

    /// Messages the service did not receive.
    pub fn lost(&self) -> u64 {
        self.messages.saturating_sub(self.service_received)
    }
}

/// The counters of `/redis-stats` the burst needs.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    received: u64,
    reconnects: u64,
    applied: u64,
    coalesced: u64,
}

fn stats(client: &mut crate::http::Client) -> anyhow::Result<Stats> {
    let s = client.get("/redis-stats", &[])?.json()?;
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    Ok(Stats {
        received: n("messages_received"),
        reconnects: n("reconnect_count"),
        applied: n("messages_applied"),
        coalesced: n("messages_coalesced"),
    })
}

/// The start of the changed match in the service's state.
pub fn stored_start(
    client: &mut crate::http::Client,
    match_id: i64,
) -> anyhow::Result<Option<String>> {
    // `/matches` comes in pages: follow them until the match is found.
    let mut offset = Some(0u64);
    while let Some(o) = offset {
        let path = format!("/matches?offset={o}");
        let list: serde_json::Value = client.get(&path, &[])?.json()?;
        let found = list["matches"]
            .as_array()
            .and_then(|all| all.iter().find(|m| m["match_id"] == match_id))
            .and_then(|m| m["start"].as_str().map(String::from));
        if found.is_some() {
            return Ok(found);
        }
        offset = list["next_offset"].as_u64();
    }
    Ok(None)
}

/// The start as the service writes it.
pub fn start_text(i: u64) -> String {
    serde_json::to_value(kickoff(i))
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Publishes messages `first..first + n` as one pipelined burst.
pub fn run(
    redis: &RedisServer,
    service: &Service,
    template: &Template,
    first: u64,
    n: u64,
) -> anyhow::Result<BurstResult> {
    let mut client = service.client();
    let before = stats(&mut client)?;
    let client_id = subscriber_id(redis);
    let kills_before = buffer_kills(redis);
    let log_before = redis.log().lines().count();
    let raw = RawSubscriber::start(redis.port(), CHANNEL, n, Duration::from_secs(20))?;

    // The poller, on one kept-alive connection: the moment the service has counted every
    // message, and (once everything is published: the last snapshot cannot be in the state
    // before) the moment its state shows the last snapshot. Both independently: a service that
    // lost messages in the middle may still converge, and one that converged may still be
    // receiving. Ends when both are seen, or 20 s after the last progress.
    let done: Arc<std::sync::OnceLock<Instant>> = Arc::new(std::sync::OnceLock::new());
    let poller = {
        let mut client = service.client();
        let done = done.clone();
        let last_start = start_text(first + n - 1);
        let changed = template.changed_match;
        std::thread::spawn(
            move || -> anyhow::Result<(Option<Instant>, Option<Instant>, u64)> {
                let deadline = Instant::now() + CONVERGE_TIMEOUT;
                let (mut drained, mut converged) = (None, None);
                let mut received = 0;
                let mut progress = Instant::now();
                while Instant::now() < deadline {
                    let now = stats(&mut client)?.received - before.received;
                    if now > received {
                        (received, progress) = (now, Instant::now());
                    }
                    if drained.is_none() && now >= n {
                        drained = Some(Instant::now());
                    }
                    let Some(published) = done.get() else {
                        std::thread::sleep(POLL);
                        continue;
                    };
                    if converged.is_none()
                        && stored_start(&mut client, changed)?.as_deref()
                            == Some(last_start.as_str())
                    {
                        converged = Some(Instant::now());
                    }
                    if converged.is_some() && drained.is_some() {
                        break;
                    }
                    // Everything published and 20 s without progress: the rest is lost.
                    if progress.max(*published).elapsed() > STALL {
                        break;
                    }
                    std::thread::sleep(POLL_STATE);
                }
                Ok((drained, converged, received))
            },
        )
    };

    let profiler = Profiler::start(service.pid)?;
    let message_bytes = template.message(first, Utc::now()).len();
    let published = publish_pipelined(redis.port(), CHANNEL, n, 2, |i| {
        template.message(first + i, Utc::now())
    });
    // Set even when publishing failed, so that the poller ends (after its stall timeout).
    let _ = done.set(
        published
            .as_ref()
            .map_or_else(|_| Instant::now(), |p| p.acked),
    );
    let published = published.context("publishing the burst")?;
    let raw = raw.join()?;
    if let Some(p) = profiler {
        p.stop()?;
    }
    let (drained, converged, received) = poller
        .join()
        .map_err(|_| anyhow!("the poller panicked"))??;
    let after = stats(&mut client)?;
    let since = |t: Instant| t.saturating_duration_since(published.started);
    Ok(BurstResult {
        messages: n,
        message_bytes,
        publish: published.acked - published.started,
        raw_drain: raw.last.map(since),
        raw,
        service_received: received.max(after.received - before.received),
        service_drain: drained.map(since),
        converged: converged.map(|t| t.saturating_duration_since(published.acked)),
        short_publishes: published.short,
        reconnects: after.reconnects - before.reconnects,
        same_connection: client_id.is_some() && subscriber_id(redis) == client_id,
        buffer_kills: buffer_kills(redis) - kills_before,
        killed: killed(&redis.log(), log_before),
        applied: after.applied - before.applied,
        coalesced: after.coalesced - before.coalesced,
    })
}

/// The `id=` of the service's subscriber connection (the client subscribed to ten channels:
/// nine configured and the private probe channel).
pub fn subscriber_id(redis: &RedisServer) -> Option<String> {
    redis
        .cli(&["CLIENT", "LIST"])
        .lines()
        .find(|l| l.contains(" sub=10 "))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("id=")))
        .map(String::from)
}

/// How often Redis closed a client for its output buffer: its log line, and (Redis 7.2+) the
/// counter in `INFO stats`, whichever is larger.
pub fn buffer_kills(redis: &RedisServer) -> u64 {
    let logged = redis
        .log()
        .lines()
        .filter(|l| l.contains("output buffer"))
        .count() as u64;
    let counted = redis
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("client_output_buffer_limit_disconnections:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    logged.max(counted)
}

/// The clients Redis closed for their output buffer, from its log after line `from`.
fn killed(log: &str, from: usize) -> Vec<String> {
    log.lines()
        .skip(from)
        .filter(|l| l.contains("output buffer"))
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(name))
                    .unwrap_or("?")
                    .to_string()
            };
            let who = if field("sub=") == "10" {
                "service"
            } else {
                "raw"
            };
            format!("{who} (omem={})", field("omem="))
        })
        .collect()
}

/// A profiler attached to the service for the burst: the command in `FOGIS_BENCH_PROFILE_BURST`
/// (run by `sh -c`, with `SERVICE_PID` set; use `exec`, so that it gets the SIGINT that ends
/// it), e.g. `exec perf record -e cpu-clock -g -p $SERVICE_PID -o /tmp/burst.data`.
struct Profiler(std::process::Child);

impl Profiler {
    fn start(pid: u32) -> anyhow::Result<Option<Profiler>> {
        let Ok(command) = std::env::var("FOGIS_BENCH_PROFILE_BURST") else {
            return Ok(None);
        };
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("SERVICE_PID", pid.to_string())
            .spawn()?;
        // Time to attach.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Some(Profiler(child)))
    }

    fn stop(mut self) -> anyhow::Result<()> {
        std::process::Command::new("kill")
            .arg("-INT")
            .arg(self.0.id().to_string())
            .status()?;
        self.0.wait()?;
        Ok(())
    }
}
