//! `fogis-bench`: runs the benchmark suite, prints the table and writes `BENCHMARKS.md`.
//! `scripts/bench` builds what it needs and runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fogis_bench::{machine, micro, report, Part, Sizes, Target};

#[derive(Debug, Parser)]
#[command(about = "Benchmarks fogis-calendar-sync and writes BENCHMARKS.md")]
struct Cli {
    /// The service binary to measure [default: release/fogis-calendar-sync in the target
    /// directory, `CARGO_TARGET_DIR` or `target`].
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where to write the report [default: BENCHMARKS.md; with --only, nothing is written
    /// unless this is given].
    #[arg(long)]
    output: Option<PathBuf>,
    /// Run only these parts (comma-separated) and print them.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Skip the criterion micro-benchmarks.
    #[arg(long)]
    skip_micro: bool,
    /// Skip the growth benchmark.
    #[arg(long)]
    skip_growth: bool,
    /// Tiny sizes (checks the tool, measures nothing worth keeping).
    #[arg(long)]
    smoke: bool,
    /// Cold starts measured (default 11).
    #[arg(long)]
    starts: Option<usize>,
    /// Messages in the burst (default 20,000; 0 skips the burst).
    #[arg(long)]
    burst: Option<u64>,
    /// Burst runs, each on a fresh service and Redis (default 10).
    #[arg(long)]
    runs: Option<usize>,
    /// Steady messages per second (default 200).
    #[arg(long)]
    steady_rate: Option<u64>,
    /// Seconds of one steady run (default 10).
    #[arg(long)]
    steady_seconds: Option<u64>,
    /// Steady runs, each on a fresh service (default 5).
    #[arg(long)]
    steady_runs: Option<usize>,
    /// CalDAV: one changed list every this many milliseconds (default 50).
    #[arg(long)]
    caldav_interval_ms: Option<u64>,
    /// CalDAV: seconds of changes (default 20).
    #[arg(long)]
    caldav_seconds: Option<u64>,
    /// Large state: stored matches (default 50,000).
    #[arg(long)]
    large_matches: Option<usize>,
    /// Large state: parallel `/matches` clients (default 16).
    #[arg(long)]
    large_clients: Option<usize>,
    /// Large state: seconds of load (default 20).
    #[arg(long)]
    large_seconds: Option<u64>,
    /// Wait (up to 10 minutes) until the 1-minute load average is below this before starting.
    #[arg(long, default_value_t = 1.0)]
    quiet_below: f64,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let target_dir = workspace.join(target_dir);
    let binary = match &cli.binary {
        Some(path) => workspace.join(path),
        None => target_dir.join("release/fogis-calendar-sync"),
    };
    anyhow::ensure!(
        binary.exists(),
        "{} does not exist: build it first (scripts/bench does)",
        binary.display()
    );
    let mut sizes = if cli.smoke {
        Sizes::smoke()
    } else {
        Sizes::full()
    };
    let set = |field: &mut u64, value: Option<u64>| *field = value.unwrap_or(*field);
    set(&mut sizes.burst, cli.burst);
    set(&mut sizes.steady_rate, cli.steady_rate);
    set(&mut sizes.steady_seconds, cli.steady_seconds);
    set(&mut sizes.caldav_seconds, cli.caldav_seconds);
    set(&mut sizes.large_seconds, cli.large_seconds);
    sizes.starts = cli.starts.unwrap_or(sizes.starts);
    sizes.burst_runs = cli.runs.unwrap_or(sizes.burst_runs);
    sizes.steady_runs = cli.steady_runs.unwrap_or(sizes.steady_runs);
    sizes.large_matches = cli.large_matches.unwrap_or(sizes.large_matches);
    sizes.large_clients = cli.large_clients.unwrap_or(sizes.large_clients);
    if let Some(ms) = cli.caldav_interval_ms {
        sizes.caldav_interval = Duration::from_millis(ms.max(1));
    }
    let partial = !cli.only.is_empty();
    let parts: Vec<Part> = Part::ALL
        .into_iter()
        .filter(|p| !partial || cli.only.contains(p))
        .filter(|p| !(cli.skip_micro && *p == Part::Micro))
        .filter(|p| !(cli.skip_growth && *p == Part::Growth))
        .filter(|p| !(sizes.burst == 0 && *p == Part::Burst))
        .filter(|p| !(sizes.starts == 0 && *p == Part::Start))
        .collect();
    let output = match (&cli.output, partial) {
        (Some(path), _) => Some(workspace.join(path)),
        (None, false) => Some(workspace.join("BENCHMARKS.md")),
        (None, true) => None,
    };
    eprintln!(
        "waiting for a quiet machine (1-minute load below {})",
        cli.quiet_below
    );
    let load = machine::wait_for_quiet(cli.quiet_below, Duration::from_secs(600));
    eprintln!("load average {load:?}: running {}", sizes.label(&parts));
    let mut results =
        fogis_bench::run(&sizes, &Target::Binary(binary), &parts).context("benchmarks")?;
    if parts.contains(&Part::Micro) {
        eprintln!("running the micro-benchmarks (cargo bench)");
        let home = target_dir.join("criterion");
        results.micro = micro::run(&workspace, &home, cli.smoke)?;
        results.load_end = machine::load_average();
    }
    let mut printed = format!("{}\n{}", report::targets(&results), report::table(&results));
    if !results.bursts.is_empty() {
        printed.push_str(&format!("\n{}", report::burst_table(&results)));
    }
    if !results.steady.is_empty() {
        printed.push_str(&format!("\n{}", report::steady_table(&results)));
    }
    println!("{printed}");
    if let Some(output) = output {
        let previous = std::fs::read_to_string(&output).unwrap_or_default();
        std::fs::write(&output, report::markdown(&results, &previous))
            .with_context(|| format!("writing {}", output.display()))?;
        eprintln!("wrote {}", output.display());
    }
    Ok(())
}
