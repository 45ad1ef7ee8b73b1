//! Capped, jittered exponential backoff between connection attempts.
//!
//! The un-jittered delay doubles from `initial` up to `max`; the actual delay is drawn from
//! `[delay / 2, delay]` ("equal jitter"), so many instances restarted together do not reconnect
//! in lockstep, and the ceiling is never exceeded. A floor keeps a misconfigured zero delay from
//! turning an outage into a busy loop.

use std::time::Duration;

/// No delay between attempts is ever shorter than this.
const FLOOR: Duration = Duration::from_millis(10);
/// Nor longer: an absurd configured ceiling cannot make the arithmetic overflow.
const CEILING: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.clamp(FLOOR, CEILING);
        Backoff {
            initial,
            max: max.clamp(initial, CEILING),
            attempt: 0,
        }
    }

    /// The delay before the next attempt; each call doubles the next one, up to the ceiling.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        // Stop counting once the ceiling is reached so the shift cannot overflow.
        if ceiling < self.max {
            self.attempt += 1;
        }
        let half = ceiling / 2;
        half.saturating_add(half.mul_f64(random_unit()))
            .clamp(FLOOR, self.max)
    }

    /// Back to the initial delay (after a successful connection or an explicit restart).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A number in `[0, 1]`. UUID v4 is 122 bits from the OS random source: plenty for jitter, and
/// it spares a dependency on `rand`.
fn random_unit() -> f64 {
    let bits = (uuid::Uuid::new_v4().as_u128() & u128::from(u32::MAX)) as u32;
    f64::from(bits) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_stays_under_the_ceiling() {
        let initial = Duration::from_millis(250);
        let max = Duration::from_secs(30);
        let mut b = Backoff::new(initial, max);
        let mut ceiling = initial;
        for _ in 0..200 {
            let d = b.next_delay();
            assert!(d <= max, "{d:?} exceeds the ceiling");
            assert!(
                d <= ceiling && d >= ceiling / 2,
                "{d:?} outside [{ceiling:?}/2, {ceiling:?}]"
            );
            ceiling = (ceiling * 2).min(max);
        }
        b.reset();
        assert!(b.next_delay() <= initial);
    }

    #[test]
    fn zero_and_inverted_settings_never_busy_loop() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        for _ in 0..10 {
            assert!(b.next_delay() >= FLOOR);
        }
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert!(b.next_delay() <= Duration::from_secs(2));
        let mut b = Backoff::new(Duration::MAX, Duration::MAX);
        for _ in 0..70 {
            assert!(b.next_delay() <= CEILING);
        }
    }

    #[test]
    fn jitter_varies() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 1);
    }
}
