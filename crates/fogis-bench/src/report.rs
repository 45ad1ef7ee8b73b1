//! The results as a table (printed) and as `BENCHMARKS.md`.
//!
//! `BENCHMARKS.md` is written whole by every run, except for what follows the line
//! [`FINDINGS_MARKER`]: the profile findings are written by people and kept across runs.

use std::fmt::Write;
use std::time::Duration;

use crate::Results;

/// Everything after this line in `BENCHMARKS.md` is kept when the file is rewritten.
pub const FINDINGS_MARKER: &str = "<!-- findings: written by hand, kept by fogis-bench -->";

/// A target and whether it was met.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub target: &'static str,
    pub measured: String,
    /// `None`: not measured in this run.
    pub met: Option<bool>,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn secs(s: f64) -> String {
    if !s.is_finite() {
        "n/a".into()
    } else if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn load(l: [f64; 3]) -> String {
    format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])
}

/// The micro result whose id starts with `id`.
fn micro(r: &Results, id: &str) -> Option<f64> {
    r.micro.iter().find(|m| m.id == id).map(|m| m.median)
}

/// The targets of the issue against this run.
pub fn verdicts(r: &Results) -> Vec<Verdict> {
    let mut v = Vec::new();
    if let Some(b) = &r.burst {
        let ratio = b.ratio();
        v.push(Verdict {
            target: "burst drain ≥ 90 % of the raw ceiling",
            measured: ratio.map_or("n/a".into(), |x| format!("{:.1} %", x * 100.0)),
            met: Some(ratio.is_some_and(|x| x >= 0.9)),
        });
        let lost = b.lost() + b.buffer_kills + b.reconnects + b.short_publishes;
        v.push(Verdict {
            target: "burst: zero messages lost",
            measured: format!(
                "{} lost, {} reconnects, {} output-buffer kills",
                b.lost(),
                b.reconnects,
                b.buffer_kills
            ),
            met: Some(lost == 0 && b.same_connection),
        });
    }
    let p99 = r.steady.commit.p99;
    v.push(Verdict {
        target: "steady p99 lag to commit ≤ 1 ms",
        measured: secs(p99),
        met: Some(p99.is_finite() && p99 <= 1e-3),
    });
    v.push(Verdict {
        target: "RSS ≤ 20 MB steady",
        measured: mb(r.memory.steady_max),
        met: Some(r.memory.steady_max <= 20_000_000),
    });
    v.push(Verdict {
        target: "RSS ≤ 64 MB at the burst peak",
        measured: mb(r.memory.burst_peak),
        met: Some(r.memory.burst_peak <= 64_000_000),
    });
    let worst_start = r.starts.iter().max().copied().unwrap_or_default();
    v.push(Verdict {
        target: "ready ≤ 100 ms after exec (every start)",
        measured: ms(worst_start),
        met: Some(!r.starts.is_empty() && worst_start <= Duration::from_millis(100)),
    });
    let decode = micro(r, "decode/processor_match_updates");
    v.push(Verdict {
        target: "decode of the 29 KB production message ≤ 100 µs",
        measured: decode.map_or("not run".into(), secs),
        met: decode.map(|d| d <= 100e-6),
    });
    v
}

/// The results table (Markdown, also what is printed).
pub fn table(r: &Results) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "| benchmark | result |\n| --- | --- |");
    if let Some(b) = &r.burst {
        let rate = |x: Option<f64>| x.map_or("n/a".into(), |x| format!("{x:.0} msg/s"));
        let _ = writeln!(
            t,
            "| burst: messages × size | {} × {} bytes, published in {} |",
            b.messages,
            b.message_bytes,
            ms(b.publish)
        );
        let _ = writeln!(
            t,
            "| burst: raw subscriber (ceiling) | {} ({} of {} received{}) |",
            rate(b.raw_rate()),
            b.raw.messages,
            b.messages,
            if b.raw.closed {
                ", closed by Redis"
            } else {
                ""
            }
        );
        let _ = writeln!(
            t,
            "| burst: service drain | {} ({} received) |",
            rate(b.service_rate()),
            b.service_received
        );
        let _ = writeln!(
            t,
            "| burst: service / ceiling | {} |",
            b.ratio()
                .map_or("n/a".into(), |x| format!("{:.1} %", x * 100.0))
        );
        let killed = if b.killed.is_empty() {
            String::new()
        } else {
            format!(" ({})", b.killed.join(", "))
        };
        let _ = writeln!(t, "| burst: lost | {} not received, {} reconnects, {} output-buffer kills{killed}, same connection: {} |", b.lost(), b.reconnects, b.buffer_kills, if b.same_connection { "yes" } else { "no" });
        let _ = writeln!(
            t,
            "| burst: applied / coalesced | {} / {} |",
            b.applied, b.coalesced
        );
        let _ = writeln!(
            t,
            "| burst: state = last snapshot after | {} from the first publish |",
            b.converged.map_or("never".into(), ms)
        );
    }
    let s = &r.steady;
    let _ = writeln!(
        t,
        "| steady: messages | {} in {:.1} s ({:.0}/s) |",
        s.sent,
        s.seconds,
        s.sent as f64 / s.seconds.max(1e-9)
    );
    let _ = writeln!(
        t,
        "| steady: lag to commit p50 / p99 / max | {} / {} / {} (histogram p99 bucket ≤ {}) |",
        secs(s.commit.p50),
        secs(s.commit.p99),
        secs(s.commit.max),
        s.commit_p99_bucket.map_or("n/a".into(), secs)
    );
    let _ = writeln!(
        t,
        "| steady: lag to feed p50 / p99 / max | {} / {} / {} |",
        secs(s.feed.p50),
        secs(s.feed.p99),
        secs(s.feed.max)
    );
    let m = &r.memory;
    let _ = writeln!(
        t,
        "| RSS idle / steady (max) / burst peak (VmHWM) / after | {} / {} / {} / {} |",
        mb(m.idle),
        mb(m.steady_max),
        mb(m.burst_peak),
        mb(m.after)
    );
    let mut starts = r.starts.clone();
    starts.sort();
    if let (Some(min), Some(max)) = (starts.first(), starts.last()) {
        let _ = writeln!(
            t,
            "| exec to /health 200: min / median / max ({} starts) | {} / {} / {} |",
            starts.len(),
            ms(*min),
            ms(starts[starts.len() / 2]),
            ms(*max)
        );
    }
    for m in &r.micro {
        let _ = writeln!(
            t,
            "| micro: {} | {} (mean {} ± {}) |",
            m.id,
            secs(m.median),
            secs(m.mean),
            secs(m.mean_error)
        );
    }
    for p in &r.growth {
        let _ = writeln!(t, "| growth: {} matches ({} KB) | decode {} + plan and commit {} = {} ({:.1} µs per match) |", p.matches, p.bytes / 1000, secs(p.decode.as_secs_f64()), secs(p.apply.as_secs_f64()), secs(p.total().as_secs_f64()), p.per_match_us());
    }
    if !r.growth.is_empty() {
        let f = r.fit;
        let _ = writeln!(t, "| growth: least-squares line | {} + {} per match; worst residual (≥ 100 matches) {:.0} % |", secs(f.fixed), secs(f.per_match), f.worst_residual * 100.0);
    }
    t
}

/// The targets as a table.
pub fn targets(r: &Results) -> String {
    let mut t = String::from("| target | measured | met |\n| --- | --- | --- |\n");
    for v in verdicts(r) {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(t, "| {} | {} | {met} |", v.target, v.measured);
    }
    t
}

/// The whole `BENCHMARKS.md`, keeping `previous`'s findings section.
pub fn markdown(r: &Results, previous: &str) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(out, "Written by `scripts/bench` (`fogis-bench`); every number below comes from one run of it on the machine described here. Run it again to replace them.\n");
    let _ = writeln!(out, "| machine | |\n| --- | --- |");
    let _ = writeln!(out, "| CPUs (`nproc`) | {} |", m.nproc);
    let _ = writeln!(out, "| CPU model | {} |", m.cpu_model);
    let _ = writeln!(
        out,
        "| RAM | {:.1} GiB |",
        m.ram_bytes as f64 / (1u64 << 30) as f64
    );
    let _ = writeln!(out, "| kernel | {} |", m.kernel);
    let _ = writeln!(out, "| date | {} |", m.date);
    let _ = writeln!(out, "| git commit | `{}` |", m.commit);
    let _ = writeln!(out, "| rustc / redis-server | {} / {} |", m.rustc, m.redis);
    let _ = writeln!(
        out,
        "| load average (1, 5, 15 min) at start | {} |",
        load(r.load_start)
    );
    let _ = writeln!(out, "| load average at end | {} |", load(r.load_end));
    let _ = writeln!(out, "| sizes | {} |\n", r.sizes_label);
    let _ = writeln!(out, "## Targets\n\n{}", targets(r));
    let _ = writeln!(out, "## Results\n\n{}", table(r));
    let _ = writeln!(out, "{}", METHOD.trim());
    let _ = writeln!(out, "\n{FINDINGS_MARKER}");
    match previous.split_once(FINDINGS_MARKER) {
        Some((_, kept)) => out.push_str(kept.trim_start_matches('\n')),
        None => out.push_str("\n## Findings\n\n(none recorded yet)\n"),
    }
    out
}

const METHOD: &str = r#"
## How it is measured

- **Burst**: the production fixture (`fixtures/processor_match_updates.json`) with a fresh
  `message_id`, the envelope `timestamp` of the moment and the first match's `tid` moved by a
  minute per message (so each is a real change), `PUBLISH`ed back to back on one connection
  (pipelined) to `fogis:matches:updates`. The service (release binary, default settings, own
  `DATA_DIR`) and a raw subscriber (a minimal RESP reader that only counts) are both
  subscribed. Drain rate = messages received / time from the first `PUBLISH` to the last one
  received (the service by its `messages_received`, polled every 5 ms). Lost = not received,
  plus reconnections, plus Redis closing a client for its output buffer (its log, `INFO`).
- **Steady**: one `PUBLISH` every 5 ms; after each, `/calendar.ics` is polled (with
  `If-None-Match`) until it shows the change. Lag to commit is the service's own measurement
  from the envelope `timestamp` to the commit (`fogis_sync_lag_recent_seconds`, exact quantiles
  of its recent samples); lag to feed is measured by the benchmark from the same instant.
- **Memory** is `VmRSS` / `VmHWM` of the service process (`/proc/PID/status`). **Start** is exec
  to the first `/health` 200, polled every 0.5 ms, each start on an empty `DATA_DIR`.
- **Micro**: criterion medians (`crates/fogis-bench/benches/micro.rs`).
- **Growth**: in process, on the service's engine and SQLite state: lists of N copies of the
  production match (distinct ids), every match changed in every measured round; medians.
"#;
