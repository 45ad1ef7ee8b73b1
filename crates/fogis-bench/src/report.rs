//! The results as a table (printed) and as `BENCHMARKS.md`.
//!
//! `BENCHMARKS.md` is written whole by every run, except for what follows the line
//! [`FINDINGS_MARKER`]: the profile findings are written by people and kept across runs.

use std::fmt::Write;
use std::time::Duration;

use crate::{burst, steady, Part, Results};

/// Everything after this line in `BENCHMARKS.md` is kept when the file is rewritten.
pub const FINDINGS_MARKER: &str = "<!-- findings: written by hand, kept by fogis-bench -->";

/// A target and whether it was met.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    /// `None`: not measured in this run.
    pub met: Option<bool>,
}

fn verdict(target: impl Into<String>, measured: String, met: Option<bool>) -> Verdict {
    Verdict {
        target: target.into(),
        measured,
        met,
    }
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

fn rate(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |x| format!("{x:.0} msg/s"))
}

fn percent(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |x| format!("{:.1} %", x * 100.0))
}

/// Minimum, median and maximum (the upper median of an even count).
pub fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    Some((*v.first()?, v[v.len() / 2], *v.last()?))
}

fn spread_text(values: &[f64]) -> String {
    spread(values).map_or("n/a".into(), |(lo, mid, hi)| {
        format!("{} / {} / {}", secs(lo), secs(mid), secs(hi))
    })
}

/// The micro result whose id starts with `id`.
fn micro(r: &Results, id: &str) -> Option<f64> {
    r.micro.iter().find(|m| m.id == id).map(|m| m.median)
}

/// The burst runs the issue asks for: 0 lost and 0 output-buffer kills in 10 of 10.
pub const BURST_RUNS_REQUIRED: usize = 10;
/// The state must equal the last snapshot this soon after the last publish, on every run.
pub const CONVERGE_TARGET: Duration = Duration::from_millis(100);

/// The targets of the issues against this run (only the parts that were measured).
pub fn verdicts(r: &Results) -> Vec<Verdict> {
    let mut v = Vec::new();
    if r.measured(Part::Burst) && !r.bursts.is_empty() {
        let runs = r.bursts.len();
        let clean = r.bursts.iter().filter(|b| b.burst.clean()).count();
        let sum = |f: fn(&burst::BurstResult) -> u64| -> u64 {
            r.bursts.iter().map(|b| f(&b.burst)).sum()
        };
        v.push(verdict(
            format!("burst: 0 output-buffer disconnects and 0 lost, in {BURST_RUNS_REQUIRED} of {BURST_RUNS_REQUIRED} runs"),
            format!(
                "{clean} of {runs} runs ({} lost, {} output-buffer kills, {} reconnects in all)",
                sum(|b| b.lost()),
                sum(|b| b.buffer_kills),
                sum(|b| b.reconnects)
            ),
            Some(clean == runs && runs >= BURST_RUNS_REQUIRED),
        ));
        let converged: Vec<Option<Duration>> = r.bursts.iter().map(|b| b.burst.converged).collect();
        let within = converged
            .iter()
            .filter(|c| c.is_some_and(|d| d <= CONVERGE_TARGET))
            .count();
        let worst = if converged.iter().any(Option::is_none) {
            "never on some".to_string()
        } else {
            converged
                .iter()
                .flatten()
                .max()
                .map_or("n/a".into(), |d| ms(*d))
        };
        v.push(verdict(
            "burst: state = last snapshot ≤ 100 ms after the last publish, every run",
            format!("{within} of {runs} runs (worst {worst})"),
            Some(within == runs),
        ));
        let ratios: Vec<Option<f64>> = r.bursts.iter().map(|b| b.burst.ratio()).collect();
        let fast = ratios
            .iter()
            .filter(|x| x.is_some_and(|x| x >= 0.9))
            .count();
        let lowest = ratios
            .iter()
            .map(|x| x.unwrap_or(0.0))
            .fold(f64::INFINITY, f64::min);
        v.push(verdict(
            "burst drain ≥ 90 % of the raw ceiling, every run",
            format!("{fast} of {runs} runs (lowest {})", percent(Some(lowest))),
            Some(fast == runs),
        ));
        v.push(verdict(
            "RSS ≤ 64 MB at the burst peak (worst run)",
            mb(r.memory.burst_peak),
            Some(r.memory.burst_peak <= 64_000_000),
        ));
    }
    if r.measured(Part::Steady) && !r.steady.is_empty() {
        let runs = r.steady.len();
        let p99: Vec<f64> = r.steady.iter().map(|s| s.commit.p99).collect();
        let met = p99.iter().filter(|x| x.is_finite() && **x <= 1e-3).count();
        let (lo, mid, hi) = spread(&p99).unwrap_or((f64::NAN, f64::NAN, f64::NAN));
        v.push(verdict(
            "steady p99 lag to commit ≤ 1 ms, every run",
            format!(
                "{met} of {runs} runs (median {}, min {}, max {})",
                secs(mid),
                secs(lo),
                secs(hi)
            ),
            Some(met == runs),
        ));
        v.push(verdict(
            "RSS ≤ 20 MB steady",
            mb(r.memory.steady_max),
            Some(r.memory.steady_max <= 20_000_000),
        ));
    }
    if r.measured(Part::Start) && !r.starts.is_empty() {
        let worst_start = r.starts.iter().max().copied().unwrap_or_default();
        v.push(verdict(
            "ready ≤ 100 ms after exec (every start)",
            ms(worst_start),
            Some(worst_start <= Duration::from_millis(100)),
        ));
    }
    if r.measured(Part::Micro) {
        let decode = micro(r, "decode/processor_match_updates");
        v.push(verdict(
            "decode of the 29 KB production message ≤ 100 µs",
            decode.map_or("not run".into(), secs),
            decode.map(|d| d <= 100e-6),
        ));
    }
    if let Some(c) = &r.caldav {
        v.push(verdict(
            "CalDAV: publish → event on Radicale, p99 ≤ 100 ms",
            format!("{} (p50 {})", secs(c.lag.p99), secs(c.lag.p50)),
            Some(c.lag.count > 0 && c.lag.p99 <= 0.1),
        ));
    }
    if let Some(l) = &r.large {
        v.push(verdict(
            format!(
                "{} matches, {} parallel /matches: RSS < 100 MB",
                l.matches, l.clients
            ),
            format!(
                "VmHWM {} (VmRSS at most {} under the load)",
                mb(l.hwm),
                mb(l.rss_max)
            ),
            Some(l.hwm < 100_000_000),
        ));
        v.push(verdict(
            format!(
                "{} matches, {} parallel /matches: /health < 50 ms",
                l.matches, l.clients
            ),
            format!("p99 {} (p50 {})", secs(l.health.p99), secs(l.health.p50)),
            Some(l.health.count > 0 && l.health.p99 < 0.05),
        ));
    }
    v
}

/// The results table (Markdown, also what is printed).
pub fn table(r: &Results) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "| benchmark | result |\n| --- | --- |");
    if let Some(b) = r.bursts.first().map(|b| &b.burst) {
        let _ = writeln!(
            t,
            "| burst: messages × size, runs | {} × {} bytes, {} runs (table below) |",
            b.messages,
            b.message_bytes,
            r.bursts.len()
        );
        let rates = |f: fn(&burst::BurstResult) -> Option<f64>| -> String {
            let v: Vec<f64> = r.bursts.iter().filter_map(|b| f(&b.burst)).collect();
            spread(&v).map_or("n/a".into(), |(lo, mid, hi)| {
                format!("{lo:.0} / {mid:.0} / {hi:.0} msg/s")
            })
        };
        let _ = writeln!(
            t,
            "| burst: publish rate min / median / max | {} |",
            rates(|b| Some(b.publish_rate()))
        );
        let _ = writeln!(
            t,
            "| burst: raw ceiling min / median / max | {} |",
            rates(burst::BurstResult::raw_rate)
        );
        let _ = writeln!(
            t,
            "| burst: service drain min / median / max | {} |",
            rates(burst::BurstResult::service_rate)
        );
        let conv: Vec<f64> = r
            .bursts
            .iter()
            .filter_map(|b| b.burst.converged.map(|d| d.as_secs_f64()))
            .collect();
        let never = r.bursts.len() - conv.len();
        let _ = writeln!(
            t,
            "| burst: last publish → state = last snapshot, min / median / max | {}{} |",
            spread_text(&conv),
            if never > 0 {
                format!(" (never in {never} runs)")
            } else {
                String::new()
            }
        );
    }
    if !r.steady.is_empty() {
        let runs = &r.steady;
        let sent: u64 = runs.iter().map(|s| s.sent).sum();
        let seconds: f64 = runs.iter().map(|s| s.seconds).sum();
        let _ = writeln!(
            t,
            "| steady: messages | {} in {} runs of {:.1} s ({:.0}/s) (table below) |",
            sent,
            runs.len(),
            seconds / runs.len() as f64,
            sent as f64 / seconds.max(1e-9)
        );
        let of = |f: fn(&steady::SteadyResult) -> f64| -> Vec<f64> { runs.iter().map(f).collect() };
        let _ = writeln!(
            t,
            "| steady: lag to commit p50, min / median / max of the runs | {} |",
            spread_text(&of(|s| s.commit.p50))
        );
        let _ = writeln!(
            t,
            "| steady: lag to commit p99, min / median / max of the runs | {} |",
            spread_text(&of(|s| s.commit.p99))
        );
        let _ = writeln!(
            t,
            "| steady: lag to feed p50, min / median / max of the runs | {} |",
            spread_text(&of(|s| s.feed.p50))
        );
        let _ = writeln!(
            t,
            "| steady: lag to feed p99, min / median / max of the runs | {} |",
            spread_text(&of(|s| s.feed.p99))
        );
    }
    let m = &r.memory;
    if !r.steady.is_empty() {
        let _ = writeln!(
            t,
            "| RSS idle / steady (max of the runs) | {} / {} |",
            mb(m.idle),
            mb(m.steady_max)
        );
    }
    if !r.bursts.is_empty() {
        let _ = writeln!(
            t,
            "| RSS burst peak (VmHWM) / after, worst run | {} / {} |",
            mb(m.burst_peak),
            mb(m.after)
        );
    }
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
    if let Some(c) = &r.caldav {
        let _ = writeln!(
            t,
            "| caldav: lists | {} in {:.1} s (one every {} ms) |",
            c.sent,
            c.seconds,
            c.interval.as_millis()
        );
        let _ = writeln!(
            t,
            "| caldav: publish → event on Radicale p50 / p99 / max | {} / {} / {} |",
            secs(c.lag.p50),
            secs(c.lag.p99),
            secs(c.lag.max)
        );
        let _ = writeln!(
            t,
            "| caldav: one poll of the event (the resolution) p50 / p99 | {} / {} ({} polls) |",
            secs(c.poll.p50),
            secs(c.poll.p99),
            c.poll.count
        );
        let _ = writeln!(
            t,
            "| caldav: first list → its event on Radicale (calendar created) | {} |",
            ms(c.first)
        );
    }
    if let Some(l) = &r.large {
        let _ = writeln!(
            t,
            "| large: state | {} matches, built in {} (in process), state.db {} |",
            l.matches,
            secs(l.build.as_secs_f64()),
            mb(l.db_bytes)
        );
        let _ = writeln!(
            t,
            "| large: exec to /health 200 on it | {} |",
            ms(l.ready_after)
        );
        let _ = writeln!(
            t,
            "| large: RSS before the load / max during it / VmHWM | {} / {} / {} |",
            mb(l.rss_before),
            mb(l.rss_max),
            mb(l.hwm)
        );
        let _ = writeln!(
            t,
            "| large: /matches pages of 1,000, {} clients for {:.1} s | {} answered ({:.1}/s), p50 / p99 / max {} / {} / {}, {} errors |",
            l.clients,
            l.seconds,
            l.pages,
            l.pages as f64 / l.seconds.max(1e-9),
            secs(l.page_latency.p50),
            secs(l.page_latency.p99),
            secs(l.page_latency.max),
            l.errors
        );
        let _ = writeln!(
            t,
            "| large: /health under the load p50 / p99 / max | {} / {} / {} ({} requests) |",
            secs(l.health.p50),
            secs(l.health.p99),
            secs(l.health.max),
            l.health.count
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

/// One row per burst run.
pub fn burst_table(r: &Results) -> String {
    let mut t = String::from(
        "| run | publish rate | raw ceiling | service drain | lost | reconnects | output-buffer kills | last publish → state = last snapshot | applied / coalesced | VmHWM |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (k, run) in r.bursts.iter().enumerate() {
        let b = &run.burst;
        let killed = if b.killed.is_empty() {
            String::new()
        } else {
            format!(" ({})", b.killed.join(", "))
        };
        let lost = if b.same_connection {
            b.lost().to_string()
        } else {
            format!("{} (new connection)", b.lost())
        };
        let _ = writeln!(
            t,
            "| {} | {:.0} msg/s | {} | {} ({}) | {lost} | {} | {}{killed} | {} | {} / {} | {} |",
            k + 1,
            b.publish_rate(),
            rate(b.raw_rate()),
            rate(b.service_rate()),
            percent(b.ratio()),
            b.reconnects,
            b.buffer_kills,
            b.converged.map_or("never".into(), ms),
            b.applied,
            b.coalesced,
            mb(run.peak)
        );
    }
    t
}

/// One row per steady run.
pub fn steady_table(r: &Results) -> String {
    let mut t = String::from(
        "| run | messages | lag to commit p50 / p99 / max | histogram p99 bucket | lag to feed p50 / p99 / max | RSS max |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for (k, s) in r.steady.iter().enumerate() {
        let _ = writeln!(
            t,
            "| {} | {} in {:.1} s | {} / {} / {} | ≤ {} | {} / {} / {} | {} |",
            k + 1,
            s.sent,
            s.seconds,
            secs(s.commit.p50),
            secs(s.commit.p99),
            secs(s.commit.max),
            s.commit_p99_bucket.map_or("n/a".into(), secs),
            secs(s.feed.p50),
            secs(s.feed.p99),
            secs(s.feed.max),
            mb(s.rss_max)
        );
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
    let _ = writeln!(out, "Written by `scripts/bench` (`fogis-bench`); every number below comes from one invocation of it on the machine described here (the burst and the steady traffic are repeated on fresh services within it, and every run is shown). Run it again to replace them.\n");
    let skipped: Vec<&str> = Part::ALL
        .iter()
        .filter(|p| !r.measured(**p))
        .map(|p| p.name())
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "Not measured in this invocation: {}.\n",
            skipped.join(", ")
        );
    }
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
    if !r.bursts.is_empty() {
        let _ = writeln!(
            out,
            "### Burst runs\n\nEach on a fresh service and Redis.\n\n{}",
            burst_table(r)
        );
    }
    if !r.steady.is_empty() {
        let _ = writeln!(
            out,
            "### Steady runs\n\nEach on a fresh service.\n\n{}",
            steady_table(r)
        );
    }
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
  "Last publish → state = last snapshot" is from the reply to the last `PUBLISH` (Redis has
  then handed the message to every subscriber) to the first `/matches` that shows the last
  snapshot's kick-off, polled every 2 ms once everything is published, independently of the
  drain (a run that lost messages in the middle can still converge). The burst is repeated
  (`--runs`, default 10), each run on a fresh Redis and a fresh service warmed up with one
  list; a run is clean when nothing was lost, no output buffer was overrun, the subscription
  was never reconnected and every `PUBLISH` reached both subscribers.
- **Steady**: one `PUBLISH` every 5 ms; after each, `/calendar.ics` is polled (with
  `If-None-Match`) until it shows the change. Lag to commit is the service's own measurement
  from the envelope `timestamp` to the commit (`fogis_sync_lag_recent_seconds`, exact quantiles
  of its recent samples); lag to feed is measured by the benchmark from the same instant.
  Repeated (`--steady-runs`, default 5) on fresh services; the spread is the minimum, median
  and maximum of the runs' quantiles.
- **CalDAV**: a local Radicale 3 (Basic authentication, the test suite's), the service with
  `CALDAV_URL` on a calendar there; after the first list, one changed list every 50 ms for
  20 s. After each `PUBLISH` the changed match's resource (`fogis-match-{id}.ics`) is read
  from Radicale with `If-None-Match` until its body carries the new `DTSTART`: the lag is
  `PUBLISH` to that read, what a CalDAV client could see (the service's `/sinks` records when
  a pass ended, not when one list's event was written, so it is not used). The resolution is
  one poll (a `GET` on Radicale, reported). The next list is sent when its slot comes and the
  previous one has been seen on the server (a slow change delays the next).
- **Large state**: a state of 50,000 stored matches (distinct copies of the production match,
  all listed, kick-offs in the future) built in process on the service's engine (one list,
  the per-list cap raised), then the release binary started on it with `API_TOKEN` and
  `FEED_TOKEN` set. 16 clients (keep-alive, the API token as `Authorization: Bearer`) walk
  the `/matches` pages (1,000 matches each) over and over for 20 s while `/health` is asked
  every 10 ms on a connection of its own and `VmRSS` is read every 20 ms; `VmHWM` is the
  peak since exec (the start on the state included; the largest `VmRSS` sample if that is
  larger, as the kernel updates the high-water mark lazily).
- **Memory** is `VmRSS` / `VmHWM` of the service process (`/proc/PID/status`). **Start** is exec
  to the first `/health` 200, polled every 0.5 ms, each start on an empty `DATA_DIR`.
- **Micro**: criterion medians (`crates/fogis-bench/benches/micro.rs`).
- **Growth**: in process, on the service's engine and SQLite state: lists of N copies of the
  production match (distinct ids), every match changed in every measured round; medians.
- **Parts**: `scripts/bench --only burst` (or `start`, `steady`, `caldav`, `large`, `growth`,
  `micro`, comma-separated) runs some parts alone and prints them; it writes a report only
  with `--output FILE`, so that `BENCHMARKS.md` always comes from one whole invocation.
"#;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::resp::RawCount;
    use crate::BurstRun;

    fn run(kills: u64, converged: Option<u64>) -> BurstRun {
        BurstRun {
            burst: burst::BurstResult {
                messages: 100,
                message_bytes: 29_000,
                publish: Duration::from_millis(10),
                raw: RawCount {
                    messages: 100,
                    ..RawCount::default()
                },
                raw_drain: Some(Duration::from_millis(10)),
                service_received: 100 - kills * 10,
                service_drain: Some(Duration::from_millis(10)),
                converged: converged.map(Duration::from_millis),
                short_publishes: 0,
                reconnects: kills,
                same_connection: kills == 0,
                buffer_kills: kills,
                killed: Vec::new(),
                applied: 10,
                coalesced: 90,
            },
            peak: 20_000_000,
            after: 15_000_000,
            final_state: (None, String::new()),
        }
    }

    fn results(bursts: Vec<BurstRun>) -> Results {
        Results {
            parts: vec![Part::Burst],
            bursts,
            ..Results::default()
        }
    }

    fn find<'a>(v: &'a [Verdict], text: &str) -> &'a Verdict {
        v.iter()
            .find(|x| x.target.contains(text))
            .unwrap_or_else(|| panic!("no {text}"))
    }

    #[test]
    fn one_bad_burst_run_in_ten_misses_the_targets_and_says_which() {
        let mut bursts: Vec<BurstRun> = (0..9).map(|_| run(0, Some(20))).collect();
        let r = results(bursts.clone());
        let v = verdicts(&r);
        assert_eq!(
            find(&v, "0 lost").met,
            Some(false),
            "nine clean runs are not ten"
        );
        assert_eq!(find(&v, "state = last snapshot").met, Some(true));

        bursts.push(run(1, None));
        let r = results(bursts);
        let v = verdicts(&r);
        let lost = find(&v, "0 lost");
        assert_eq!(lost.met, Some(false));
        assert!(
            lost.measured.starts_with("9 of 10 runs"),
            "{}",
            lost.measured
        );
        let conv = find(&v, "state = last snapshot");
        assert_eq!(conv.met, Some(false));
        assert!(conv.measured.contains("never"), "{}", conv.measured);
        assert_eq!(burst_table(&r).lines().count(), 12);
        assert!(burst_table(&r).contains("| never |"));
        assert!(!v.iter().any(|x| x.target.contains("steady")));
    }

    #[test]
    fn ten_clean_runs_within_100_ms_meet_the_targets() {
        let r = results((0..10).map(|_| run(0, Some(40))).collect());
        let v = verdicts(&r);
        assert_eq!(find(&v, "0 lost").met, Some(true));
        assert_eq!(find(&v, "state = last snapshot").met, Some(true));
        let slow = results(
            (0..10)
                .map(|k| run(0, Some(if k == 3 { 150 } else { 40 })))
                .collect(),
        );
        let conv = verdicts(&slow);
        let conv = find(&conv, "state = last snapshot");
        assert_eq!(conv.met, Some(false));
        assert!(
            conv.measured.contains("worst 150.0 ms"),
            "{}",
            conv.measured
        );
    }

    #[test]
    fn spread_is_min_median_max_of_the_finite_values() {
        assert_eq!(spread(&[3.0, 1.0, f64::NAN, 2.0]), Some((1.0, 2.0, 3.0)));
        assert_eq!(spread(&[]), None);
    }
}
