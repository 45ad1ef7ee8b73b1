//! The old processors' "sync now": a `POST /sync` that carries no match list.
//!
//! Earlier match-list-processor versions told the calendar service to sync by HTTP with no data
//! (PROTOCOL.md section 7): `POST {PHONEBOOK_SYNC_SERVICE_URL}/sync` with no body, and
//! `POST $CALENDAR_SYNC_URL` with `{}`, reading `response.json()["status"]`. The deployed
//! service's old `/sync` also took an optional `{"delete", "username", "password"}`. Such a
//! request changes nothing by itself, so it needs no token; it is rate-limited, and its fields
//! are neither used nor logged.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether `body` is a trigger: empty, white space, `{}`, or an object of the old `/sync`
/// body's keys only. The access layer applies the same rule (one function for both).
pub fn is_trigger(body: &[u8]) -> bool {
    fogis_pubsub::http::auth::is_trigger_body(body)
}

/// A token bucket: `burst` triggers at once, then one every `every`.
#[derive(Debug)]
pub struct RateLimit {
    burst: f64,
    every: Duration,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn new(burst: u32, every: Duration) -> RateLimit {
        RateLimit {
            burst: f64::from(burst),
            every,
            state: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes one token at `now`; `Err(wait)` when none is left.
    pub fn take_at(&self, now: Instant) -> Result<(), Duration> {
        // Held for a few arithmetic operations only.
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, since) = *s;
        let refill = now.saturating_duration_since(since).as_secs_f64() / self.every.as_secs_f64();
        let tokens = (tokens + refill).min(self.burst);
        if tokens >= 1.0 {
            *s = (tokens - 1.0, now);
            Ok(())
        } else {
            *s = (tokens, now);
            Err(self.every.mul_f64(1.0 - tokens))
        }
    }

    pub fn take(&self) -> Result<(), Duration> {
        self.take_at(Instant::now())
    }
}

impl Default for RateLimit {
    /// Five at once, then one every 10 s: the old processors trigger once a cycle (300 s).
    fn default() -> Self {
        RateLimit::new(5, Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn triggers_are_bodies_without_a_match_list() {
        for body in [
            &b""[..],
            b"  \n",
            b"{}",
            b" { } ",
            br#"{"delete": true}"#,
            br#"{"username": "u", "password": "p", "delete": false}"#,
        ] {
            assert!(is_trigger(body), "{:?}", String::from_utf8_lossy(body));
        }
        for body in [
            &br#"{"matches": []}"#[..],
            br#"{"delete": true, "matches": []}"#,
            br#"[]"#,
            b"{",
            b"null",
            br#"{"metadata": {}}"#,
        ] {
            assert!(!is_trigger(body), "{:?}", String::from_utf8_lossy(body));
        }
        let mut big = b"{\"username\": \"".to_vec();
        big.extend(std::iter::repeat_n(
            b'x',
            fogis_pubsub::http::auth::TRIGGER_MAX_BYTES,
        ));
        big.extend(b"\"}");
        assert!(!is_trigger(&big));
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_one_per_period() {
        let limit = RateLimit::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(limit.take_at(t0).is_ok());
        assert!(limit.take_at(t0).is_ok());
        let wait = limit.take_at(t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert!(limit.take_at(t0 + Duration::from_secs(5)).is_err());
        assert!(limit.take_at(t0 + Duration::from_secs(10)).is_ok());
        assert!(limit.take_at(t0 + Duration::from_secs(11)).is_err());
        assert!(limit.take_at(t0 + Duration::from_secs(60)).is_ok());
        assert!(limit.take_at(t0 + Duration::from_secs(60)).is_ok());
        assert!(limit.take_at(t0 + Duration::from_secs(60)).is_err());
    }
}
