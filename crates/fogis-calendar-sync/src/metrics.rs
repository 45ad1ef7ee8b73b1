//! Prometheus text-format metrics, kept by hand: a few counters, gauges and one histogram do not
//! need a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the lag histogram's buckets.
pub const LAG_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

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

    fn render(&self, out: &mut String, name: &str) {
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
        out.push_str("# HELP fogis_sync_lag_seconds Time from the message's timestamp to the state commit.\n# TYPE fogis_sync_lag_seconds histogram\n");
        self.lag.render(&mut out, "fogis_sync_lag_seconds");
        out
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
        m.lag.observe(0.0004);
        m.lag.observe(0.003);
        m.lag.observe(100.0);
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
    }
}
