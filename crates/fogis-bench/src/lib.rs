//! # fogis-bench
//!
//! The benchmark suite of fogis-calendar-sync. One run, on one machine, measures the parts
//! ([`Part`]; `--only` runs some of them):
//!
//! 1. **burst** ([`burst`]): 20,000 production-size messages published pipelined, repeated on a
//!    fresh service and Redis ten times; per run the service's drain rate against a raw
//!    subscriber's on the same channel (the ceiling), messages lost, time from the last publish
//!    until the state equals the last snapshot, the memory peak;
//! 2. **steady** ([`steady`]): 200 messages a second for 10 s, five runs on fresh services; lag
//!    to the commit (the service's own numbers) and to the feed, and their spread over the runs;
//! 3. **start** ([`service`]): time from exec to the first `/health` 200 (and memory: idle and
//!    during the steady runs, at the bursts' peaks and after them);
//! 4. **caldav** ([`caldav`]): one changed list every 50 ms against a real Radicale; publish to
//!    the event's new content readable on the server;
//! 5. **large** ([`large`]): the service on a state of 50,000 matches under 16 parallel
//!    `GET /matches` clients; its memory and `/health` latency meanwhile;
//! 6. **growth** ([`growth`]): cost of one snapshot from 1 to 10,000 matches, and how linear it is;
//! 7. **micro** ([`micro`]): criterion benchmarks (`benches/micro.rs`), run by the binary.
//!
//! 1 to 5 run the release binary as a child process with its own `DATA_DIR`, against a
//! `redis-server` of its own on a free port. [`run`] does 1 to 6 and returns [`Results`];
//! [`report`] makes the tables and `BENCHMARKS.md` out of them. Sizes are parameters
//! ([`Sizes::full`], [`Sizes::smoke`]), so the smoke test runs the same code in seconds.
//!
//! ```no_run
//! let sizes = fogis_bench::Sizes::smoke();
//! let results = fogis_bench::run(&sizes, &fogis_bench::Target::InProcess, &fogis_bench::Part::ALL)?;
//! println!("{}", fogis_bench::report::table(&results));
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod burst;
pub mod caldav;
pub mod growth;
pub mod http;
pub mod large;
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

use crate::service::{Service, Setup};

/// A part of the benchmark, to be run alone or with others (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Cold starts: exec to the first `/health` 200.
    Start,
    /// Steady traffic: lag to the commit and to the feed, memory, over several runs.
    Steady,
    /// The burst, repeated on fresh services.
    Burst,
    /// Publish to the event written on a local Radicale.
    Caldav,
    /// A state of 50,000 matches under parallel `GET /matches`.
    Large,
    /// Snapshot cost from 1 to 10,000 matches (in process).
    Growth,
    /// The criterion micro-benchmarks (run by the binary through `cargo bench`).
    Micro,
}

impl Part {
    /// Every part, in the order they run.
    pub const ALL: [Part; 7] = [
        Part::Start,
        Part::Steady,
        Part::Burst,
        Part::Caldav,
        Part::Large,
        Part::Growth,
        Part::Micro,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Start => "start",
            Part::Steady => "steady",
            Part::Burst => "burst",
            Part::Caldav => "caldav",
            Part::Large => "large",
            Part::Growth => "growth",
            Part::Micro => "micro",
        }
    }
}

/// How much of everything.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Messages in one burst.
    pub burst: u64,
    /// Bursts, each on a fresh service and Redis.
    pub burst_runs: usize,
    pub steady_rate: u64,
    pub steady_seconds: u64,
    /// Steady runs, each on a fresh service.
    pub steady_runs: usize,
    /// One changed list this often, for `caldav_seconds`.
    pub caldav_interval: Duration,
    pub caldav_seconds: u64,
    /// Matches in the large state, parallel `/matches` clients, and how long they run.
    pub large_matches: usize,
    pub large_clients: usize,
    pub large_seconds: u64,
    pub growth: Vec<usize>,
    /// Cold starts for the start-time statistics.
    pub starts: usize,
    /// Idle time before the idle and after-burst memory readings.
    pub settle: Duration,
}

impl Sizes {
    /// The benchmark's sizes (about 15 minutes with the micro-benchmarks, on 2 CPUs).
    pub fn full() -> Sizes {
        Sizes {
            burst: 20_000,
            burst_runs: 10,
            steady_rate: 200,
            steady_seconds: 10,
            steady_runs: 5,
            caldav_interval: Duration::from_millis(50),
            caldav_seconds: 20,
            large_matches: 50_000,
            large_clients: 16,
            large_seconds: 20,
            growth: vec![1, 10, 100, 1_000, 10_000],
            starts: 11,
            settle: Duration::from_secs(2),
        }
    }

    /// Tiny sizes for the smoke test.
    pub fn smoke() -> Sizes {
        Sizes {
            burst: 50,
            burst_runs: 2,
            steady_rate: 20,
            steady_seconds: 1,
            steady_runs: 2,
            caldav_interval: Duration::from_millis(100),
            caldav_seconds: 1,
            large_matches: 1_500,
            large_clients: 4,
            large_seconds: 1,
            growth: vec![1, 10],
            starts: 1,
            settle: Duration::from_millis(100),
        }
    }

    /// What the run measured, for the report's header.
    pub fn label(&self, parts: &[Part]) -> String {
        let mut out = Vec::new();
        for part in parts {
            out.push(match part {
                Part::Start => format!("{} starts", self.starts),
                Part::Steady => format!(
                    "steady {}/s for {} s × {} runs",
                    self.steady_rate, self.steady_seconds, self.steady_runs
                ),
                Part::Burst => format!("burst {} × {} runs", self.burst, self.burst_runs),
                Part::Caldav => format!(
                    "caldav one list every {} ms for {} s",
                    self.caldav_interval.as_millis(),
                    self.caldav_seconds
                ),
                Part::Large => format!(
                    "large {} matches, {} clients for {} s",
                    self.large_matches, self.large_clients, self.large_seconds
                ),
                Part::Growth => format!("growth {:?}", self.growth),
                Part::Micro => "micro".to_string(),
            });
        }
        out.join(", ")
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
    /// Before the first steady run, after the warm-up list.
    pub idle: u64,
    /// The largest resident set sampled during the steady runs.
    pub steady_max: u64,
    /// The largest `VmHWM` at the end of a burst run: the peak of the worst run.
    pub burst_peak: u64,
    /// The largest resident set after a burst run settled.
    pub after: u64,
}

/// One burst run: the burst and the service's memory.
#[derive(Debug, Clone)]
pub struct BurstRun {
    pub burst: burst::BurstResult,
    /// `VmHWM` after the burst (the run's peak).
    pub peak: u64,
    /// `VmRSS` once settled after it.
    pub after: u64,
    /// The last snapshot's changed match, as the state shows it after the burst, and as the
    /// snapshot says it.
    pub final_state: (Option<String>, String),
}

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub machine: machine::Machine,
    pub load_start: [f64; 3],
    pub load_end: [f64; 3],
    pub sizes_label: String,
    /// The parts measured.
    pub parts: Vec<Part>,
    /// Exec to `/health` 200, every start measured.
    pub starts: Vec<Duration>,
    pub memory: MemoryResults,
    /// One per steady run.
    pub steady: Vec<steady::SteadyResult>,
    /// One per burst run.
    pub bursts: Vec<BurstRun>,
    pub caldav: Option<caldav::CaldavResult>,
    pub large: Option<large::LargeResult>,
    pub growth: Vec<growth::GrowthPoint>,
    pub fit: growth::Fit,
    pub micro: Vec<micro::MicroResult>,
}

impl Results {
    pub fn measured(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// Starts the service on `redis`.
pub fn start(target: &Target, redis: &RedisServer, setup: Setup) -> anyhow::Result<Service> {
    match target {
        Target::Binary(path) => Service::spawn(path, &redis.url(), setup),
        Target::InProcess => Service::in_process(Some(&redis.url()), setup),
    }
}

/// Publishes message 0 without a timestamp (so no lag sample) and waits until it is applied:
/// the first list creates the matches.
pub fn warm_up(
    redis: &RedisServer,
    service: &Service,
    template: &workload::Template,
) -> anyhow::Result<()> {
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
            "the warm-up was not applied: {}",
            service.log_tail()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Runs the `parts` of benchmarks 1 to 6 (the micro-benchmarks are [`micro::run`]).
pub fn run(sizes: &Sizes, target: &Target, parts: &[Part]) -> anyhow::Result<Results> {
    let mut r = Results {
        machine: machine::Machine::probe(),
        load_start: machine::load_average(),
        sizes_label: sizes.label(parts),
        parts: parts.to_vec(),
        ..Results::default()
    };
    let template = workload::Template::production()?;
    let redis = RedisServer::start();

    if parts.contains(&Part::Start) {
        // Each on a fresh state directory.
        for _ in 0..sizes.starts {
            let s = start(target, &redis, Setup::default())?;
            r.starts.push(s.ready_after);
            s.stop()?;
        }
    }

    if parts.contains(&Part::Steady) {
        for run in 0..sizes.steady_runs {
            let service = start(target, &redis, Setup::default())?;
            service.wait_subscribed()?;
            warm_up(&redis, &service, &template)?;
            std::thread::sleep(sizes.settle);
            if run == 0 {
                r.memory.idle = service.memory()?.rss;
            }
            eprintln!("steady run {} of {}", run + 1, sizes.steady_runs);
            let s = steady::run(
                redis.port(),
                &service,
                &template,
                1,
                sizes.steady_rate,
                sizes.steady_seconds,
            )
            .with_context(|| format!("steady run {}", run + 1))?;
            r.memory.steady_max = r.memory.steady_max.max(s.rss_max);
            r.steady.push(s);
            service.stop()?;
        }
    }

    if parts.contains(&Part::Burst) && sizes.burst > 0 {
        for run in 0..sizes.burst_runs {
            eprintln!("burst run {} of {}", run + 1, sizes.burst_runs);
            let b = burst_run(sizes, target, &template)
                .with_context(|| format!("burst run {}", run + 1))?;
            r.memory.burst_peak = r.memory.burst_peak.max(b.peak);
            r.memory.after = r.memory.after.max(b.after);
            r.bursts.push(b);
        }
    }

    if parts.contains(&Part::Caldav) {
        eprintln!("caldav");
        r.caldav = Some(
            caldav::run(
                target,
                &redis,
                &template,
                sizes.caldav_interval,
                sizes.caldav_seconds,
            )
            .context("caldav")?,
        );
    }

    if parts.contains(&Part::Large) {
        eprintln!("large state ({} matches)", sizes.large_matches);
        r.large = Some(
            large::run(
                target,
                &redis,
                sizes.large_matches,
                sizes.large_clients,
                Duration::from_secs(sizes.large_seconds),
            )
            .context("large state")?,
        );
    }

    if parts.contains(&Part::Growth) {
        let (points, fit) = growth::run(&sizes.growth).context("growth")?;
        r.growth = points;
        r.fit = fit;
    }
    r.load_end = machine::load_average();
    Ok(r)
}

/// One burst on a fresh Redis and a fresh service, warmed up with the first list.
fn burst_run(
    sizes: &Sizes,
    target: &Target,
    template: &workload::Template,
) -> anyhow::Result<BurstRun> {
    let redis = RedisServer::start();
    let service = start(target, &redis, Setup::default())?;
    service.wait_subscribed()?;
    warm_up(&redis, &service, template)?;
    let first = 1_000;
    let burst = burst::run(&redis, &service, template, first, sizes.burst)?;
    let last = burst::start_text(first + sizes.burst - 1);
    let state = burst::stored_start(&mut service.client(), template.changed_match)?;
    let peak = service.memory()?.hwm;
    std::thread::sleep(sizes.settle);
    let after = service.memory()?.rss;
    service.stop()?;
    Ok(BurstRun {
        burst,
        peak,
        after,
        final_state: (state, last),
    })
}
