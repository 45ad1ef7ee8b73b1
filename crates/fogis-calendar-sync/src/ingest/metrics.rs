//! Prometheus text-format metrics, kept by hand: a few counters, gauges and one histogram do not
//! need a metrics framework.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the lag histogram's buckets. A snapshot usually commits within a
/// millisecond of its timestamp, hence the fine buckets at the low end.
pub const LAG_BUCKETS: [f64; 19] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How many recent lags [`Recent`] keeps for its exact quantiles.
pub const RECENT_LAGS: usize = 4096;

/// The last [`RECENT_LAGS`] observations, for exact quantiles where the histogram's buckets are
/// too coarse (32 KiB; a quantile sorts a copy, at scrape time only).
#[derive(Debug, Default)]
pub struct Recent {
    samples: Mutex<VecDeque<f64>>,
}

impl Recent {
    pub fn observe(&self, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() == RECENT_LAGS {
            s.pop_front();
        }
        s.push_back(seconds);
    }

    /// The `q` quantiles of the samples kept (nearest rank; 1 is the maximum), and how many
    /// samples there are. `None` when there are none.
    pub fn quantiles(&self, qs: &[f64]) -> (Option<Vec<f64>>, usize) {
        let mut sorted: Vec<f64> = {
            let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
            s.iter().copied().collect()
        };
        if sorted.is_empty() {
            return (None, 0);
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let at = |q: f64| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        (Some(qs.iter().map(|q| at(*q)).collect()), n)
    }
}

/// A cumulative histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// One count per bucket (not cumulative), plus one for +Inf.
    counts: [AtomicU64; LAG_BUCKETS.len() + 1],
    /// Sum in microseconds.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let i = LAG_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LAG_BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The smallest bucket bound below which at least `q` of the observations fall.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= want {
                return Some(LAG_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        None
    }

    pub(crate) fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (i, bound) in LAG_BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[LAG_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// The service's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages by (channel, outcome).
    messages: Mutex<BTreeMap<(String, String), u64>>,
    /// Lag from the envelope's `timestamp` to the state commit.
    pub lag: Histogram,
    /// The same lags, the most recent ones, for exact quantiles.
    pub recent_lag: Recent,
    /// Whether the state could be written the last time a list was applied.
    pub state: crate::ingest::state_health::StateHealth,
}

/// Values read from elsewhere at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    pub redis_enabled: bool,
    pub redis_connected: bool,
    pub reconnects: u64,
    pub coalesced: u64,
    /// Stored matches by presence.
    pub matches: Vec<(&'static str, usize)>,
    /// Lists held by the guard, waiting for confirmation.
    pub held: u64,
}

impl Metrics {
    pub fn count_message(&self, channel: &str, outcome: &str) {
        let mut m = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((channel.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    /// Records the lag of one applied snapshot (histogram and recent samples).
    pub fn observe_lag(&self, seconds: f64) {
        self.lag.observe(seconds);
        self.recent_lag.observe(seconds);
    }

    /// The number of messages counted for `(channel, outcome)`.
    pub fn messages(&self, channel: &str, outcome: &str) -> u64 {
        let m = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(channel.to_string(), outcome.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP fogis_messages_total Match-update messages by channel (http for POST /sync) and outcome.\n");
        out.push_str("# TYPE fogis_messages_total counter\n");
        {
            let m = self.messages.lock().unwrap_or_else(|p| p.into_inner());
            for ((channel, outcome), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "fogis_messages_total{{channel=\"{}\",outcome=\"{}\"}} {n}",
                    label(channel),
                    label(outcome)
                );
            }
        }
        out.push_str("# HELP fogis_redis_enabled Whether the Redis subscriber is enabled.\n# TYPE fogis_redis_enabled gauge\n");
        let _ = writeln!(
            out,
            "fogis_redis_enabled {}",
            u8::from(gauges.redis_enabled)
        );
        out.push_str("# HELP fogis_redis_connected 1 while a live, subscribed Redis connection exists.\n# TYPE fogis_redis_connected gauge\n");
        let _ = writeln!(
            out,
            "fogis_redis_connected {}",
            u8::from(gauges.redis_connected)
        );
        out.push_str("# HELP fogis_redis_reconnects_total Reconnections to Redis since start.\n# TYPE fogis_redis_reconnects_total counter\n");
        let _ = writeln!(out, "fogis_redis_reconnects_total {}", gauges.reconnects);
        out.push_str("# HELP fogis_messages_coalesced_total Snapshots replaced by a newer one before they were applied.\n# TYPE fogis_messages_coalesced_total counter\n");
        let _ = writeln!(out, "fogis_messages_coalesced_total {}", gauges.coalesced);
        out.push_str(
            "# HELP fogis_matches Stored matches by presence.\n# TYPE fogis_matches gauge\n",
        );
        for (presence, n) in &gauges.matches {
            let _ = writeln!(out, "fogis_matches{{presence=\"{presence}\"}} {n}");
        }
        out.push_str("# HELP fogis_held_snapshots Lists held instead of applied, waiting for confirmation.\n# TYPE fogis_held_snapshots gauge\n");
        let _ = writeln!(out, "fogis_held_snapshots {}", gauges.held);
        out.push_str("# HELP fogis_state_writable 0 while lists wait because the state cannot be written (they are retried).\n# TYPE fogis_state_writable gauge\n");
        let _ = writeln!(
            out,
            "fogis_state_writable {}",
            u8::from(self.state.failing().is_none())
        );
        out.push_str("# HELP fogis_state_write_failures_total Attempts to apply a list that failed because the state could not be written.\n# TYPE fogis_state_write_failures_total counter\n");
        let _ = writeln!(
            out,
            "fogis_state_write_failures_total {}",
            self.state.failures()
        );
        out.push_str("# HELP fogis_sync_lag_seconds Time from the message's timestamp to the state commit.\n# TYPE fogis_sync_lag_seconds histogram\n");
        self.lag.render(&mut out, "fogis_sync_lag_seconds");
        self.render_recent(&mut out);
        out
    }

    /// The exact quantiles of the recent lags, as a summary (`NaN` before the first sample, as
    /// Prometheus summaries do); `_sum` and `_count` are the histogram's, over all time.
    fn render_recent(&self, out: &mut String) {
        const NAME: &str = "fogis_sync_lag_recent_seconds";
        let _ = writeln!(out, "# HELP {NAME} Time from the message's timestamp to the state commit: exact quantiles of the last {RECENT_LAGS} applied messages (1 is the maximum).\n# TYPE {NAME} summary");
        let qs = [0.5, 0.99, 1.0];
        let (values, n) = self.recent_lag.quantiles(&qs);
        for (i, q) in qs.iter().enumerate() {
            let v = values.as_ref().map_or(f64::NAN, |v| v[i]);
            let _ = writeln!(out, "{NAME}{{quantile=\"{q}\"}} {v}");
        }
        let sum = self.lag.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{NAME}_sum {sum}\n{NAME}_count {}", self.lag.count());
        let _ = writeln!(out, "# HELP fogis_sync_lag_recent_samples How many recent lags the quantiles are over.\n# TYPE fogis_sync_lag_recent_samples gauge\nfogis_sync_lag_recent_samples {n}");
    }
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.count_message("fogis:matches:updates", "applied");
        m.count_message("fogis:matches:updates", "applied");
        m.count_message("http", "rejected");
        m.observe_lag(0.0004);
        m.observe_lag(0.003);
        m.observe_lag(100.0);
        let text = m.render(&Gauges {
            redis_enabled: true,
            redis_connected: true,
            reconnects: 2,
            coalesced: 1,
            matches: vec![("listed", 3)],
            held: 1,
        });
        assert!(text.contains(
            "fogis_messages_total{channel=\"fogis:matches:updates\",outcome=\"applied\"} 2\n"
        ));
        assert!(text.contains("fogis_messages_total{channel=\"http\",outcome=\"rejected\"} 1\n"));
        assert!(text.contains("fogis_redis_connected 1\n"));
        assert!(text.contains("fogis_redis_reconnects_total 2\n"));
        assert!(text.contains("fogis_sync_lag_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("fogis_sync_lag_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("fogis_sync_lag_seconds_bucket{le=\"60\"} 2\n"));
        assert!(text.contains("fogis_sync_lag_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("fogis_sync_lag_seconds_count 3\n"));
        assert!(text.contains("fogis_matches{presence=\"listed\"} 3\n"));
        assert!(text.contains("fogis_held_snapshots 1\n"));
        assert_eq!(m.lag.quantile_bound(0.5), Some(0.005));
        assert_eq!(m.lag.quantile_bound(1.0), Some(f64::INFINITY));
        assert_eq!(m.messages("http", "rejected"), 1);
        assert!(text.contains("fogis_sync_lag_seconds_bucket{le=\"0.00005\"} 0\n"));
        assert!(text.contains("fogis_sync_lag_recent_seconds{quantile=\"0.5\"} 0.003\n"));
        assert!(text.contains("fogis_sync_lag_recent_seconds{quantile=\"1\"} 100\n"));
        assert!(text.contains("fogis_sync_lag_recent_samples 3\n"));
    }

    #[test]
    fn recent_lags_give_exact_quantiles_over_a_bounded_window() {
        let r = Recent::default();
        assert_eq!(r.quantiles(&[0.5]), (None, 0));
        let empty = Metrics::default().render(&Gauges::default());
        assert!(empty.contains("fogis_sync_lag_recent_seconds{quantile=\"0.99\"} NaN\n"));
        for i in 1..=100 {
            r.observe(f64::from(i) / 1e6);
        }
        let (q, n) = r.quantiles(&[0.5, 0.99, 1.0]);
        assert_eq!(n, 100);
        assert_eq!(q, Some(vec![50e-6, 99e-6, 100e-6]));
        for _ in 0..RECENT_LAGS {
            r.observe(-1.0);
        }
        assert_eq!(r.quantiles(&[1.0]), (Some(vec![0.0]), RECENT_LAGS));
    }
}
