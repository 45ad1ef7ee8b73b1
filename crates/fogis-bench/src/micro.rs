//! Benchmark 4, the micro-benchmarks: `benches/micro.rs`, run by criterion through
//! `cargo bench`, and read back from the `estimates.json` criterion writes for each of them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// One criterion result.
#[derive(Debug, Clone)]
pub struct MicroResult {
    /// `group/function[/parameter]`.
    pub id: String,
    /// Seconds per iteration.
    pub median: f64,
    pub mean: f64,
    /// Half the width of the 95 % confidence interval of the mean, seconds.
    pub mean_error: f64,
}

/// Runs `cargo bench -p fogis-bench --bench micro` with criterion's output in `home`.
pub fn run(workspace: &Path, home: &Path, quick: bool) -> anyhow::Result<Vec<MicroResult>> {
    // Only this run's results: criterion keeps old ones (and renamed benchmarks) otherwise.
    let _ = std::fs::remove_dir_all(home);
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace)
        .args([
            "bench",
            "--locked",
            "-p",
            "fogis-bench",
            "--bench",
            "micro",
            "--",
        ])
        .env("CRITERION_HOME", home);
    if quick {
        cmd.args(["--warm-up-time", "0.2", "--measurement-time", "0.5"]);
    }
    let status = cmd.status().context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench failed: {status}");
    }
    read(home)
}

/// Every `*/new/estimates.json` under `home`, with its `benchmark.json` for the name.
pub fn read(home: &Path) -> anyhow::Result<Vec<MicroResult>> {
    let mut found = Vec::new();
    walk(home, &mut found)?;
    let mut out = Vec::new();
    for dir in found {
        let bench: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("benchmark.json"))?)?;
        let est: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("estimates.json"))?)?;
        let ns = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) / 1e9;
        let ci = &est["mean"]["confidence_interval"];
        out.push(MicroResult {
            id: bench["full_id"].as_str().unwrap_or("?").to_string(),
            median: ns(&est["median"]["point_estimate"]),
            mean: ns(&est["mean"]["point_estimate"]),
            mean_error: (ns(&ci["upper_bound"]) - ns(&ci["lower_bound"])) / 2.0,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "new") && path.join("estimates.json").exists()
            {
                found.push(path);
            } else {
                walk(&path, found)?;
            }
        }
    }
    Ok(())
}
