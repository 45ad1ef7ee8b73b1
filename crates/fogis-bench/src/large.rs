//! Benchmark 5, a large state: the service started on a state of `matches` stored matches
//! (50,000 in the benchmark), then `clients` parallel `GET /matches` clients for a while, each
//! walking the pages (`?offset=`, 1,000 matches a page) over and over with the API token, while
//! `/health` is asked every 10 ms on a connection of its own and the service's memory is read
//! every 20 ms.
//!
//! The state is built in process, before the service starts, on the engine the service uses
//! (the CLI's settings, with the per-list cap raised): one list of `matches` distinct copies of
//! the production match ([`crate::workload::list`]), all kick-offs in the future, so every match
//! is listed and served. One list, because a list is the whole truth: matches missing from a
//! later list would be withdrawn. For 50,000 matches that takes about 35 s and 3.7 GB in the
//! benchmark process (the decoded list and the engine's mirror), and 670 MB of `state.db`.
//!
//! Measured: how long the state took to build, exec to `/health` 200 on it, the service's
//! `VmRSS` before the load and at most during it, `VmHWM` (the peak since exec, start
//! included) at the end, `/matches` answers and their latency, and `/health`'s latency under
//! the load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use test_support::RedisServer;

use crate::service::Setup;
use crate::steady::Quantiles;
use crate::Target;

/// The tokens the service runs with (both must be at least 16 characters, and different).
const API_TOKEN: &str = "fogis-bench-api-token-0123456789";
const FEED_TOKEN: &str = "fogis-bench-feed-token-0123456789";
/// Matches a `/matches` page carries (the service's largest page).
const PAGE: usize = 1000;
/// How often `/health` is asked, and the memory read.
const HEALTH_EVERY: Duration = Duration::from_millis(10);
const MEMORY_EVERY: Duration = Duration::from_millis(20);

/// The outcome of the large-state run.
#[derive(Debug, Clone, Default)]
pub struct LargeResult {
    pub matches: usize,
    pub clients: usize,
    /// Building the state in process (decode, plan, commit).
    pub build: Duration,
    /// `state.db` and its WAL, bytes.
    pub db_bytes: u64,
    /// Exec to `/health` 200 on the large state.
    pub ready_after: Duration,
    /// `VmRSS` before the load.
    pub rss_before: u64,
    /// The largest `VmRSS` sampled during the load.
    pub rss_max: u64,
    /// The peak since exec: `VmHWM` at the end, or the largest `VmRSS` sampled when that is
    /// larger (the kernel folds per-thread counters into the high-water mark lazily).
    pub hwm: u64,
    pub seconds: f64,
    /// `/matches` pages answered 200, and their latency.
    pub pages: u64,
    pub page_latency: Quantiles,
    /// Answers other than 200 (to `/matches` or `/health`).
    pub errors: u64,
    /// `/health` latency under the load.
    pub health: Quantiles,
}

/// Builds a state of `matches` listed matches in `dir`.
pub fn build_state(dir: &std::path::Path, matches: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let engine = crate::growth::engine(dir)?;
    let snapshot = {
        let bytes = crate::workload::list(matches, 0)?;
        crate::growth::decode(&bytes)?
    };
    let applied = engine.apply(&snapshot, "fogis-bench", false)?;
    if applied.counts.created as usize != matches {
        bail!("the list of {matches} matches created {:?}", applied.counts);
    }
    Ok(started.elapsed())
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The large-state benchmark.
pub fn run(
    target: &Target,
    redis: &RedisServer,
    matches: usize,
    clients: usize,
    load: Duration,
) -> anyhow::Result<LargeResult> {
    let dir = tempfile::tempdir()?;
    let build = build_state(dir.path(), matches).context("building the state")?;
    let db_bytes = ["state.db", "state.db-wal"]
        .iter()
        .map(|f| file_size(&dir.path().join(f)))
        .sum();
    let setup = Setup {
        dir: Some(dir),
        ..Setup::flags([
            ("--api-token", API_TOKEN.to_string()),
            ("--feed-token", FEED_TOKEN.to_string()),
        ])
    };
    let service = crate::start(target, redis, setup)?;
    let bearer = format!("Bearer {API_TOKEN}");

    // The service serves the whole state, and only with a token.
    let mut client = service.client();
    let first = client.get("/matches?limit=1", &[("Authorization", &bearer)])?;
    let total = first.json().ok().and_then(|v| v["total"].as_u64());
    if first.status != 200 || total != Some(matches as u64) {
        bail!(
            "GET /matches answered {} with total {total:?}, not {matches}: {}",
            first.status,
            service.log_tail()
        );
    }
    let anonymous = client.get("/matches?limit=1", &[])?.status;
    if anonymous == 200 {
        bail!("GET /matches without a token answered 200");
    }
    let rss_before = service.memory()?.rss;

    let stop = Arc::new(AtomicBool::new(false));
    let pages = matches.div_ceil(PAGE).max(1);
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (mut client, stop, bearer) = (service.client(), stop.clone(), bearer.clone());
            std::thread::spawn(move || -> anyhow::Result<(Vec<f64>, u64)> {
                let (mut lat, mut errors) = (Vec::new(), 0);
                // Each client starts on another page.
                let mut page = c * pages / clients.max(1);
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("/matches?offset={}&limit={PAGE}", page * PAGE);
                    let t = Instant::now();
                    let r = client.get(&path, &[("Authorization", &bearer)])?;
                    if r.status == 200 {
                        lat.push(t.elapsed().as_secs_f64());
                    } else {
                        errors += 1;
                    }
                    page = (page + 1) % pages;
                }
                Ok((lat, errors))
            })
        })
        .collect();
    let health = {
        let (mut client, stop) = (service.client(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<(Vec<f64>, u64)> {
            let (mut lat, mut errors) = (Vec::new(), 0);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = client.get("/health", &[])?;
                if r.status == 200 {
                    lat.push(t.elapsed().as_secs_f64());
                } else {
                    errors += 1;
                }
                std::thread::sleep(HEALTH_EVERY);
            }
            Ok((lat, errors))
        })
    };
    let mut rss_max = rss_before;
    while started.elapsed() < load {
        rss_max = rss_max.max(service.memory()?.rss);
        std::thread::sleep(MEMORY_EVERY);
    }
    stop.store(true, Ordering::Relaxed);
    let join = |h: std::thread::JoinHandle<anyhow::Result<(Vec<f64>, u64)>>| {
        h.join().map_err(|_| anyhow!("a client panicked"))?
    };
    let (mut page_lat, mut errors) = (Vec::new(), 0);
    for w in workers {
        let (lat, e) = join(w).context("a /matches client")?;
        page_lat.extend(lat);
        errors += e;
    }
    let (mut health_lat, e) = join(health).context("the /health client")?;
    errors += e;
    let seconds = started.elapsed().as_secs_f64();
    let end = service.memory()?;
    let ready_after = service.ready_after;
    service.stop()?;
    Ok(LargeResult {
        matches,
        clients,
        build,
        db_bytes,
        ready_after,
        rss_before,
        rss_max: rss_max.max(end.rss),
        hwm: end.hwm.max(rss_max).max(end.rss),
        seconds,
        pages: page_lat.len() as u64,
        page_latency: Quantiles::of(&mut page_lat),
        errors,
        health: Quantiles::of(&mut health_lat),
    })
}
