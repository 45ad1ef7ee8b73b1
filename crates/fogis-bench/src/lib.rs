//! # fogis-bench
//!
//! The benchmark suite of fogis-calendar-sync. One run, on one machine, measures:
//!
//! 1. **burst** ([`burst`]): 20,000 production-size messages published pipelined; the service's
//!    drain rate against a raw subscriber's on the same channel (the ceiling), messages lost,
//!    time until the state equals the last snapshot;
//! 2. **steady** ([`steady`]): 200 messages a second for 10 s; lag to the commit (the service's
//!    own numbers) and to the feed;
//! 3. **memory and start** ([`service`]): resident memory idle, during steady traffic, at the
//!    burst's peak and after it; time from exec to the first `/health` 200;
//! 4. **micro** ([`micro`]): criterion benchmarks (`benches/micro.rs`);
//! 5. **growth** ([`growth`]): cost of one snapshot from 1 to 10,000 matches, and how linear it is.
//!
//! 1 to 3 run the release binary as a child process with its own `DATA_DIR`, against a
//! `redis-server` of its own on a free port. [`run`] does it all and returns [`Results`];
//! [`report`] makes the table and `BENCHMARKS.md` out of them. Sizes are parameters
//! ([`Sizes::full`], [`Sizes::smoke`]), so the smoke test runs the same code in seconds.
//!
//! ```no_run
//! let sizes = fogis_bench::Sizes::smoke();
//! let results = fogis_bench::run(&sizes, &fogis_bench::Target::InProcess)?;
//! println!("{}", fogis_bench::report::table(&results));
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod burst;
pub mod growth;
pub mod http;
pub mod machine;
pub mod micro;
pub mod report;
pub mod resp;
pub mod service;
pub mod steady;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use test_support::RedisServer;

use crate::service::{Memory, Service};

/// How much of everything.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub burst: u64,
    pub steady_rate: u64,
    pub steady_seconds: u64,
    pub growth: Vec<usize>,
    /// Extra cold starts for the start-time statistics (the main one is always measured).
    pub starts: usize,
    /// Idle time before the idle and after-burst memory readings.
    pub settle: Duration,
}

impl Sizes {
    /// The benchmark's sizes.
    pub fn full() -> Sizes {
        Sizes {
            burst: 20_000,
            steady_rate: 200,
            steady_seconds: 10,
            growth: vec![1, 10, 100, 1_000, 10_000],
            starts: 10,
            settle: Duration::from_secs(2),
        }
    }

    /// Tiny sizes for the smoke test.
    pub fn smoke() -> Sizes {
        Sizes {
            burst: 50,
            steady_rate: 20,
            steady_seconds: 1,
            growth: vec![1, 10],
            starts: 0,
            settle: Duration::from_millis(100),
        }
    }
}

/// Which service to measure.
#[derive(Debug, Clone)]
pub enum Target {
    /// The binary (`target/release/fogis-calendar-sync`) as a child process.
    Binary(PathBuf),
    /// The library in this process (memory figures are then this process's).
    InProcess,
}

/// Resident memory at the moments that matter, bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryResults {
    pub idle: u64,
    pub steady_max: u64,
    /// `VmHWM` after the burst: the peak of the whole run.
    pub burst_peak: u64,
    pub after: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub machine: machine::Machine,
    pub load_start: [f64; 3],
    pub load_end: [f64; 3],
    pub sizes_label: String,
    /// Exec to `/health` 200, every start measured.
    pub starts: Vec<Duration>,
    pub memory: MemoryResults,
    pub steady: steady::SteadyResult,
    pub burst: Option<burst::BurstResult>,
    pub growth: Vec<growth::GrowthPoint>,
    pub fit: growth::Fit,
    pub micro: Vec<micro::MicroResult>,
    /// The last snapshot's changed match, as the state shows it after the burst, and as the
    /// snapshot says it.
    pub final_state: (Option<String>, String),
}

fn start(target: &Target, redis: &RedisServer) -> anyhow::Result<Service> {
    match target {
        Target::Binary(path) => Service::spawn(path, &redis.url()),
        Target::InProcess => Service::in_process(Some(&redis.url())),
    }
}

/// Runs benchmarks 1, 2, 3 and 5 (the micro-benchmarks are [`micro::run`]).
pub fn run(sizes: &Sizes, target: &Target) -> anyhow::Result<Results> {
    let mut r = Results {
        machine: machine::Machine::probe(),
        load_start: machine::load_average(),
        sizes_label: format!(
            "burst {}, steady {}/s for {} s, growth {:?}",
            sizes.burst, sizes.steady_rate, sizes.steady_seconds, sizes.growth
        ),
        ..Results::default()
    };
    let redis = RedisServer::start();
    let template = workload::Template::production()?;

    // Cold starts first, each on a fresh state directory, then the one that is measured on.
    for _ in 0..sizes.starts {
        let s = start(target, &redis)?;
        r.starts.push(s.ready_after);
        s.stop()?;
    }
    let service = start(target, &redis)?;
    r.starts.push(service.ready_after);
    service.wait_subscribed()?;

    // Warm up: the first list creates the three matches. No timestamp, so no lag sample.
    let mut conn = resp::Conn::open(redis.port())?;
    let mut warm: serde_json::Value =
        serde_json::from_slice(&template.message(0, chrono::Utc::now()))?;
    if let Some(o) = warm.as_object_mut() {
        o.remove("timestamp");
    }
    conn.publish(burst::CHANNEL, &serde_json::to_vec(&warm)?)?;
    let mut client = service.client();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while burst::stored_start(&mut client, template.changed_match)?.as_deref()
        != Some(burst::start_text(0).as_str())
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the warm-up was not applied"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(sizes.settle);
    r.memory.idle = service.memory()?.rss;

    let steady_first = 1;
    r.steady = steady::run(
        redis.port(),
        &service,
        &template,
        steady_first,
        sizes.steady_rate,
        sizes.steady_seconds,
    )
    .context("steady")?;
    r.memory.steady_max = r.steady.rss_max;

    let burst_first = steady_first + sizes.steady_rate * sizes.steady_seconds + 1_000;
    if sizes.burst > 0 {
        let burst =
            burst::run(&redis, &service, &template, burst_first, sizes.burst).context("burst")?;
        let last = burst::start_text(burst_first + sizes.burst - 1);
        r.final_state = (
            burst::stored_start(&mut client, template.changed_match)?,
            last,
        );
        r.burst = Some(burst);
    }
    let peak: Memory = service.memory()?;
    r.memory.burst_peak = peak.hwm;
    std::thread::sleep(sizes.settle);
    r.memory.after = service.memory()?.rss;
    service.stop()?;

    let (points, fit) = growth::run(&sizes.growth).context("growth")?;
    r.growth = points;
    r.fit = fit;
    r.load_end = machine::load_average();
    Ok(r)
}
