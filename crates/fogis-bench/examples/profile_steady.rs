//! The steady path in process, for a profiler: decode the production message and apply it, one
//! match changed each time, `ROUNDS` times (argument 1, default 300), on a fresh state. Run it
//! under `valgrind --tool=callgrind` to see where a snapshot's time goes (BENCHMARKS.md).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use fogis_bench::growth::{decode, engine};
use fogis_bench::workload::Template;

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let template = Template::production().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).unwrap();
    let first = template.message(0, Utc::now());
    engine
        .apply(&decode(&first).unwrap(), "redis:bench", false)
        .unwrap();
    // Argument 2: milliseconds between rounds (default 0), as lists arrive in the steady
    // benchmark (5 ms): caches and CPU clocks cool down in between.
    let gap = Duration::from_millis(
        std::env::args()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
    );
    let (mut decodes, mut applies) = (vec![], vec![]);
    for i in 1..=rounds {
        std::thread::sleep(gap);
        let bytes = template.message(i, Utc::now());
        let started = Instant::now();
        let snapshot = decode(&bytes).unwrap();
        let decoded = Instant::now();
        let applied = engine.apply(&snapshot, "redis:bench", false).unwrap();
        applies.push(decoded.elapsed());
        decodes.push(decoded - started);
        std::hint::black_box(applied);
    }
    decodes.sort();
    applies.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "{rounds} rounds of {} bytes: decode median {:?}, apply median {:?}",
        first.len(),
        median(&decodes),
        median(&applies)
    );
}
