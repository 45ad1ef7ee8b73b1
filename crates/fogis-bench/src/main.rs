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
    /// The service binary to measure.
    #[arg(long, default_value = "target/release/fogis-calendar-sync")]
    binary: PathBuf,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
    /// Skip the criterion micro-benchmarks.
    #[arg(long)]
    skip_micro: bool,
    /// Tiny sizes (checks the tool, measures nothing worth keeping).
    #[arg(long)]
    smoke: bool,
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
    let binary = workspace.join(&cli.binary);
    anyhow::ensure!(
        binary.exists(),
        "{} does not exist: build it first (scripts/bench does)",
        binary.display()
    );
    let sizes = if cli.smoke {
        Sizes::smoke()
    } else {
        Sizes::full()
    };
    eprintln!("waiting for a quiet machine (1-minute load below {})", cli.quiet_below);
    let load = machine::wait_for_quiet(cli.quiet_below, Duration::from_secs(600));
    eprintln!("load average {load:?}: running {sizes:?}");
    let mut results = fogis_bench::run(&sizes, &Target::Binary(binary)).context("benchmarks")?;
    if !cli.skip_micro {
        eprintln!("running the micro-benchmarks (cargo bench)");
        let home = workspace.join("target/criterion");
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
