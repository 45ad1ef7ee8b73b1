//! One HTTP client for both Google APIs: bearer token, client-side rate limit, and Google's
//! error handling in one place.
//!
//! - **401**: the token is refreshed once and the request repeated; a second 401 is a refusal.
//! - **403 `rateLimitExceeded`/`userRateLimitExceeded`, 429 (incl. People's
//!   `RESOURCE_EXHAUSTED`), 5xx and transport errors**: truncated exponential backoff with
//!   jitter, `min(base·2ⁿ + random(0..base), 32·base)`, at most [`TRIES`] attempts, honouring
//!   `Retry-After`; then the sink's own backoff takes over.
//! - **403 `quotaExceeded`** (Calendar's abuse limits): the sink pauses for an hour and says so.
//! - Everything else (400, 404, 409, 410, 412, …) is returned to the caller as a [`Reply`]:
//!   those answers mean something for the item at hand.
//!
//! Requests wait for the [`Limiter`] first: never more than its budget in any 60 s window.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use super::token::TokenSource;
use crate::sinks::SinkError;

/// Attempts of one request before the sink backs off as a whole.
pub const TRIES: u32 = 6;
/// How long a `quotaExceeded` pauses the sink.
pub const QUOTA_PAUSE: Duration = Duration::from_secs(3600);

/// A sliding-window limiter: at most `limit` acquisitions in any `window`.
#[derive(Debug)]
pub struct Limiter {
    limit: usize,
    window: Duration,
    sent: tokio::sync::Mutex<VecDeque<Instant>>,
}

impl Limiter {
    pub fn per_minute(limit: usize) -> Limiter {
        Limiter::new(limit, Duration::from_secs(60))
    }

    pub fn new(limit: usize, window: Duration) -> Limiter {
        Limiter {
            limit: limit.max(1),
            window,
            sent: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until one more request fits the window, and counts it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = Instant::now();
                while sent.front().is_some_and(|t| now - *t >= self.window) {
                    sent.pop_front();
                }
                if sent.len() < self.limit {
                    sent.push_back(now);
                    return;
                }
                match sent.front() {
                    Some(first) => *first + self.window - now,
                    None => Duration::ZERO,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A non-success answer the caller must interpret, or a success.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// `error.errors[0].reason` (Calendar), else `error.status` (google.rpc), else "".
    pub reason: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn etag(&self) -> Option<String> {
        self.body
            .get("etag")
            .and_then(Value::as_str)
            .map(String::from)
    }

    /// An answer the caller did not expect: a 4xx refuses this item, anything else is an outage.
    pub fn unexpected(&self, what: &str) -> SinkError {
        let message = self.body["error"]["message"].as_str().unwrap_or("");
        let text = format!("{what}: {} {} {message}", self.status, self.reason);
        if (400..500).contains(&self.status) {
            SinkError::Refused(text.trim_end().to_string())
        } else {
            SinkError::Remote(text.trim_end().to_string())
        }
    }
}

fn reason_of(body: &Value) -> String {
    let e = &body["error"];
    e["errors"][0]["reason"]
        .as_str()
        .or_else(|| e["status"].as_str())
        .or_else(|| e["details"][0]["reason"].as_str())
        .or_else(|| e.as_str())
        .unwrap_or("")
        .to_string()
}

/// The truncated exponential backoff before attempt `n + 1` (n from 0).
pub fn backoff(base: Duration, n: u32) -> Duration {
    let step = base.saturating_mul(1 << n.min(10));
    let jitter_ms =
        (uuid::Uuid::new_v4().as_u128() % u128::from(base.as_millis().max(1) as u64)) as u64;
    (step + Duration::from_millis(jitter_ms)).min(base.saturating_mul(32))
}

/// An authorised client of one Google API.
#[derive(Debug, Clone)]
pub struct Api {
    pub(crate) http: reqwest::Client,
    token: Arc<TokenSource>,
    limiter: Arc<Limiter>,
    retry_base: Duration,
    /// "Google Calendar" or "Google People", for messages.
    service: &'static str,
}

impl Api {
    pub fn new(
        http: reqwest::Client,
        token: Arc<TokenSource>,
        limiter: Arc<Limiter>,
        retry_base: Duration,
        service: &'static str,
    ) -> Api {
        Api {
            http,
            token,
            limiter,
            retry_base,
            service,
        }
    }

    /// Sends one request, with the handling described in the module doc.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, SinkError> {
        let service = self.service;
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            self.limiter.acquire().await;
            // Cached until it nears expiry; after a 401 this is the refreshed one.
            let token = self.token.access_token().await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(&token)
                .query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            if let Some(etag) = if_match {
                req = req.header(reqwest::header::IF_MATCH, etag);
            }
            let (status, retry_after, body) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if let Some(r) = crate::outbound::redirect_error(status, resp.headers()) {
                        return Err(SinkError::Remote(format!("{service} {r}")));
                    }
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match resp.bytes().await {
                        Ok(bytes) => (
                            status,
                            retry_after,
                            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        ),
                        Err(e) => (0, None, Value::String(e.to_string())),
                    }
                }
                Err(e) => (0, None, Value::String(e.to_string())),
            };
            let reason = reason_of(&body);
            let transient = match (status, reason.as_str()) {
                (0, _) | (429, _) | (500..=599, _) => true,
                (403, "rateLimitExceeded" | "userRateLimitExceeded") => true,
                (403, "quotaExceeded" | "dailyLimitExceeded") => {
                    return Err(SinkError::Paused {
                        reason: format!(
                            "{service} usage limits exceeded (403 {reason}): paused for {} minutes",
                            QUOTA_PAUSE.as_secs() / 60
                        ),
                        wait: QUOTA_PAUSE,
                    });
                }
                (401, _) if !refreshed => {
                    refreshed = true;
                    self.token.refresh_rejected(&token).await?;
                    continue;
                }
                (401, _) => {
                    return Err(SinkError::Auth(format!(
                        "{service} refused a freshly refreshed token (401 {reason})"
                    )));
                }
                (403, _) => {
                    let message = body["error"]["message"].as_str().unwrap_or("");
                    return Err(SinkError::Auth(format!(
                        "{service} refused access (403 {reason}): {message}"
                    )));
                }
                _ => false,
            };
            if !transient {
                return Ok(Reply {
                    status,
                    body,
                    reason,
                });
            }
            attempt += 1;
            let what = match status {
                0 => body.as_str().unwrap_or("no answer").to_string(),
                _ => format!("{status} {reason}"),
            };
            if attempt >= TRIES {
                return Err(SinkError::Remote(format!(
                    "{service}: {what} ({attempt} attempts)"
                )));
            }
            let wait = backoff(self.retry_base, attempt - 1)
                .max(retry_after.unwrap_or_default().min(self.retry_base * 64));
            tracing::debug!(service, %what, "retrying in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters), so
/// `a@group.calendar.google.com` becomes `a%40group.calendar.google.com`.
pub fn path_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED_KEPT).to_string()
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded.
const UNRESERVED_KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_truncated() {
        let base = Duration::from_millis(1000);
        for n in 0..12 {
            let d = backoff(base, n);
            let floor = (base * (1 << n.min(10))).min(base * 32);
            assert!(d >= floor.min(base * 32) && d <= base * 32, "{n}: {d:?}");
            if n < 5 {
                assert!(d < floor + base, "{n}: {d:?}");
            }
        }
    }

    #[test]
    fn calendar_ids_are_percent_encoded() {
        assert_eq!(
            path_segment("abc@group.calendar.google.com"),
            "abc%40group.calendar.google.com"
        );
        assert_eq!(path_segment("primary"), "primary");
        // As CPython's `urllib.parse.quote(s, safe="-._~")`.
        assert_eq!(
            path_segment("a b/é~-._!*'()@:+%"),
            "a%20b%2F%C3%A9~-._%21%2A%27%28%29%40%3A%2B%25"
        );
    }

    #[tokio::test]
    async fn the_limiter_never_exceeds_its_budget_in_a_window() {
        let window = Duration::from_millis(200);
        let limiter = Limiter::new(5, window);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..12 {
            limiter.acquire().await;
            times.push(Instant::now() - start);
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times
                .iter()
                .filter(|u| **u >= *t && **u - *t < window)
                .count();
            assert!(in_window <= 5, "{i}: {in_window} in one window");
        }
        assert!(times[4] < window, "the first five pass at once");
        assert!(times[5] >= window);
        assert!(times[10] >= window * 2);
    }

    #[test]
    fn reasons_from_both_error_shapes() {
        let calendar = serde_json::json!({"error": {"errors": [{"domain": "usageLimits",
            "reason": "rateLimitExceeded", "message": "Rate Limit Exceeded"}], "code": 403}});
        assert_eq!(reason_of(&calendar), "rateLimitExceeded");
        let rpc = serde_json::json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}});
        assert_eq!(reason_of(&rpc), "RESOURCE_EXHAUSTED");
        assert_eq!(reason_of(&Value::Null), "");
    }
}
