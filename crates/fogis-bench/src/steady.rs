//! Benchmark 2, steady traffic: `rate` messages a second for `seconds`, each a real change.
//!
//! Two lags per message, both from the envelope `timestamp` (stamped just before `PUBLISH`):
//! - **to the commit**, measured by the service itself (`fogis_sync_lag_seconds`, and the exact
//!   quantiles of its recent samples, `fogis_sync_lag_recent_seconds`);
//! - **to the feed**, measured here: after each `PUBLISH`, `/calendar.ics` is polled with
//!   `If-None-Match` (a `304` costs the service almost nothing) until it shows the new kick-off.
//!
//! Publishing follows a fixed schedule; a message whose feed poll overran its slot is sent late,
//! and the achieved rate is reported.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;

use crate::burst::CHANNEL;
use crate::resp::Conn;
use crate::service::{Memory, Service};
use crate::workload::{dtstart, Template};

/// How long one message may take to show in the feed.
const FEED_TIMEOUT: Duration = Duration::from_secs(10);

/// p50, p99 and max of some durations, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quantiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub count: usize,
}

impl Quantiles {
    pub fn of(samples: &mut [f64]) -> Quantiles {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i]
        };
        if samples.is_empty() {
            return Quantiles::default();
        }
        Quantiles {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
            count: samples.len(),
        }
    }
}

/// The outcome of the steady run.
#[derive(Debug, Clone, Default)]
pub struct SteadyResult {
    pub sent: u64,
    pub seconds: f64,
    /// Lag to the commit: the service's exact recent quantiles.
    pub commit: Quantiles,
    /// Lag to the commit: the histogram bucket bound that holds 99 % (over this run only).
    pub commit_p99_bucket: Option<f64>,
    /// Lag to the feed showing the change.
    pub feed: Quantiles,
    /// Largest resident set sampled during the run.
    pub rss_max: u64,
    pub rss_end: Memory,
}

/// Sends messages `first..first + rate * seconds` at `rate` per second.
pub fn run(
    redis_port: u16,
    service: &Service,
    template: &Template,
    first: u64,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<SteadyResult> {
    let mut conn = Conn::open(redis_port)?;
    let mut client = service.client();
    let metrics_before = client.get("/metrics", &[])?.text();
    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut etag = client
        .get("/calendar.ics", &[])?
        .header("etag")
        .unwrap_or_default()
        .to_string();
    let mut feed_lags = Vec::with_capacity(total as usize);
    let mut rss_max = 0;
    let started = Instant::now();
    for k in 0..total {
        let due = started + period * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let i = first + k;
        let stamped = Instant::now();
        let message = template.message(i, Utc::now());
        let receivers = conn.publish(CHANNEL, &message)?;
        if receivers != 1 {
            bail!("message {i} reached {receivers} subscribers, not the service alone");
        }
        let want = dtstart(i);
        loop {
            let r = client.get("/calendar.ics", &[("If-None-Match", &etag)])?;
            if r.status == 200 {
                etag = r.header("etag").unwrap_or_default().to_string();
                if r.text().contains(&want) {
                    feed_lags.push(stamped.elapsed().as_secs_f64());
                    break;
                }
            }
            if stamped.elapsed() > FEED_TIMEOUT {
                bail!("message {i} did not reach the feed within {FEED_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        if k % (rate / 10).max(1) == 0 {
            rss_max = rss_max.max(service.memory()?.rss);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let metrics = client.get("/metrics", &[])?.text();
    let rss_end = service.memory()?;
    Ok(SteadyResult {
        sent: total,
        seconds,
        commit: recent_quantiles(&metrics).context("reading the lag quantiles from /metrics")?,
        commit_p99_bucket: bucket_quantile(&metrics_before, &metrics, 0.99),
        feed: Quantiles::of(&mut feed_lags),
        rss_max: rss_max.max(rss_end.rss),
        rss_end,
    })
}

/// `fogis_sync_lag_recent_seconds{quantile=...}` and `fogis_sync_lag_recent_samples`.
pub fn recent_quantiles(metrics: &str) -> anyhow::Result<Quantiles> {
    let value = |key: &str| -> anyhow::Result<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no {key} in /metrics"))
    };
    Ok(Quantiles {
        p50: value("fogis_sync_lag_recent_seconds{quantile=\"0.5\"}")?,
        p99: value("fogis_sync_lag_recent_seconds{quantile=\"0.99\"}")?,
        max: value("fogis_sync_lag_recent_seconds{quantile=\"1\"}")?,
        count: value("fogis_sync_lag_recent_samples")? as usize,
    })
}

/// The histogram's cumulative buckets as (bound, count).
fn buckets(metrics: &str) -> Vec<(f64, u64)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("fogis_sync_lag_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// The smallest bucket bound holding `q` of the observations made between two scrapes.
pub fn bucket_quantile(before: &str, after: &str, q: f64) -> Option<f64> {
    let (b, a) = (buckets(before), buckets(after));
    let diff: Vec<(f64, u64)> = a
        .iter()
        .map(|(bound, n)| {
            let old = b.iter().find(|(x, _)| x == bound).map_or(0, |(_, c)| *c);
            (*bound, n - old)
        })
        .collect();
    let total = diff.last()?.1;
    let want = (q * total as f64).ceil() as u64;
    diff.iter()
        .find(|(_, n)| *n >= want.max(1))
        .map(|(b, _)| *b)
}
