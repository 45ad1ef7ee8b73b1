//! `fogis-bench`: runs the benchmark suite, prints the table and writes `BENCHMARKS.md`.
//! `scripts/bench` builds what it needs and runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fogis_bench::{machine, micro, report, Sizes, Target};

#[derive(Debug, Parser)]
#[command(about = "Benchmarks fogis-calendar-sync and writes BENCHMARKS.md")]
struct Cli {
    /// The service binary to measure [default: release/fogis-calendar-sync in the target
    /// directory, `CARGO_TARGET_DIR` or `target`].
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
    /// Skip the criterion micro-benchmarks.
    #[arg(long)]
    skip_micro: bool,
    /// Skip the growth benchmark.
    #[arg(long)]
    skip_growth: bool,
    /// Tiny sizes (checks the tool, measures nothing worth keeping).
    #[arg(long)]
    smoke: bool,
    /// Extra cold starts measured before the main one (default 10).
    #[arg(long)]
    starts: Option<usize>,
    /// Messages in the burst (default 20,000; 0 skips the burst).
    #[arg(long)]
    burst: Option<u64>,
    /// Steady messages per second (default 200) and seconds (default 10).
    #[arg(long)]
    steady_rate: Option<u64>,
    #[arg(long)]
    steady_seconds: Option<u64>,
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
    sizes.burst = cli.burst.unwrap_or(sizes.burst);
    sizes.starts = cli.starts.unwrap_or(sizes.starts);
    sizes.steady_rate = cli.steady_rate.unwrap_or(sizes.steady_rate);
    sizes.steady_seconds = cli.steady_seconds.unwrap_or(sizes.steady_seconds);
    if cli.skip_growth {
        sizes.growth.clear();
    }
    eprintln!(
        "waiting for a quiet machine (1-minute load below {})",
        cli.quiet_below
    );
    let load = machine::wait_for_quiet(cli.quiet_below, Duration::from_secs(600));
    eprintln!("load average {load:?}: running {sizes:?}");
    let mut results = fogis_bench::run(&sizes, &Target::Binary(binary)).context("benchmarks")?;
    if !cli.skip_micro {
        eprintln!("running the micro-benchmarks (cargo bench)");
        let home = target_dir.join("criterion");
        results.micro = micro::run(&workspace, &home, cli.smoke)?;
        results.load_end = machine::load_average();
    }
    let table = report::table(&results);
    println!("{table}\n{}", report::targets(&results));
    let output = workspace.join(&cli.output);
    let previous = std::fs::read_to_string(&output).unwrap_or_default();
    std::fs::write(&output, report::markdown(&results, &previous))
        .with_context(|| format!("writing {}", output.display()))?;
    eprintln!("wrote {}", output.display());
    Ok(())
}
