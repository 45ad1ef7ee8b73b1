//! Benchmark 5, growth: what one snapshot costs as the list grows (1 to 10,000 matches), in
//! process, on the engine the service uses: decode the bytes, then plan and commit (one SQLite
//! transaction, as in the service). Every measured snapshot changes every match (the lists
//! alternate between two kick-off shifts), the worst case; the first, which creates them, is not
//! measured.
//!
//! Linearity: a least-squares line `a + b * n` through the totals, and each size's distance from
//! it. A linear cost has a small fixed part `a`, a per-match part `b` and small residuals.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Parser;
use fogis_calendar_sync::engine::Engine;
use fogis_pubsub::{Message, Snapshot};

use crate::workload::list;

/// One size's cost.
#[derive(Debug, Clone, Copy)]
pub struct GrowthPoint {
    pub matches: usize,
    pub bytes: usize,
    pub rounds: usize,
    /// Medians per snapshot.
    pub decode: Duration,
    pub apply: Duration,
}

impl GrowthPoint {
    pub fn total(&self) -> Duration {
        self.decode + self.apply
    }

    /// Microseconds per match.
    pub fn per_match_us(&self) -> f64 {
        self.total().as_secs_f64() * 1e6 / self.matches as f64
    }
}

/// A least-squares line through (matches, total seconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fit {
    /// Fixed cost per snapshot, seconds.
    pub fixed: f64,
    /// Cost per match, seconds.
    pub per_match: f64,
    /// The largest |measured - fitted| / measured among the sizes of 100 matches and more.
    pub worst_residual: f64,
}

/// An engine on a fresh state directory that accepts lists of any size.
pub fn engine(dir: &std::path::Path) -> anyhow::Result<Engine> {
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        state: fogis_calendar_sync::config::StateOpts,
    }
    let args = [
        "bench",
        "--data-dir",
        &dir.display().to_string(),
        "--max-matches-per-snapshot",
        "1000000",
    ];
    let opts = Wrapper::try_parse_from(args)?.state;
    fogis_calendar_sync::open_engine(&opts)
}

/// Decodes a match update.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Snapshot> {
    match fogis_pubsub::decode(bytes)? {
        Message::Matches(s) => Ok(s),
        _ => Err(anyhow!("not a match update")),
    }
}

/// Measures one size: `rounds` all-changed snapshots after the creating one.
pub fn measure(matches: usize, rounds: usize) -> anyhow::Result<GrowthPoint> {
    let dir = tempfile::tempdir()?;
    let engine = engine(dir.path())?;
    let lists = [list(matches, 0)?, list(matches, 1)?];
    let first = decode(&lists[0])?;
    engine.apply(&first, "bench", false)?;
    let (mut decodes, mut applies) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let bytes = &lists[(round + 1) % 2];
        let t = Instant::now();
        let mut snapshot = decode(bytes)?;
        decodes.push(t.elapsed());
        // A fresh id, so that it is not a duplicate of the same bytes two rounds ago.
        snapshot.meta.message_id = Some(uuid::Uuid::new_v4().to_string());
        let t = Instant::now();
        let applied = engine.apply(&snapshot, "bench", false)?;
        applies.push(t.elapsed());
        if applied.counts.updated as usize != matches {
            return Err(anyhow!(
                "round {round} updated {:?}, not {matches}",
                applied.counts
            ));
        }
    }
    Ok(GrowthPoint {
        matches,
        bytes: lists[0].len(),
        rounds,
        decode: median(&mut decodes),
        apply: median(&mut applies),
    })
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Measures every size, with fewer rounds for the big ones.
pub fn run(sizes: &[usize]) -> anyhow::Result<(Vec<GrowthPoint>, Fit)> {
    let mut points = Vec::new();
    for &n in sizes {
        let rounds = (20_000 / n.max(1)).clamp(5, 200);
        points.push(measure(n, rounds).with_context(|| format!("{n} matches"))?);
    }
    Ok((points.clone(), fit(&points)))
}

/// Least squares through the points.
pub fn fit(points: &[GrowthPoint]) -> Fit {
    let xs: Vec<f64> = points.iter().map(|p| p.matches as f64).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.total().as_secs_f64()).collect();
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return Fit::default();
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let per_match = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let fixed = my - per_match * mx;
    let worst_residual = xs
        .iter()
        .zip(&ys)
        .filter(|(x, _)| **x >= 100.0)
        .map(|(x, y)| ((y - (fixed + per_match * x)) / y).abs())
        .fold(0.0, f64::max);
    Fit {
        fixed,
        per_match,
        worst_residual,
    }
}
