//! The pull source: FOGIS's own match list, fetched from the stack's fogis-api-client service,
//! so that an update lost anywhere (a publish while this service or Redis restarted, a change the
//! processor never publishes) comes back by itself.
//!
//! A pull is one `GET {FOGIS_API_CLIENT_URL}/matches` ([`fetch`]), applied as a whole snapshot
//! through the engine like every other list (origin `pull`): the guard holds an empty or
//! mass-withdrawing pulled list like any other. It runs:
//!
//! - at start, every `FOGIS_PULL_INTERVAL_SECONDS` (counted from the previous pull; `0`: never by
//!   time alone);
//! - on events that say something may have been lost ([`Trigger`]): every Redis (re)connect, the
//!   old processors' body-less `POST /sync`, a `processing_status` that reveals a lost publish.
//!   These are merged and run at most one per [`EVENT_GAP`]: never dropped, only delayed;
//! - while the source fails, after a jittered, doubling backoff ([`BACKOFF_MAX`], never longer
//!   than the interval) instead.
//!
//! One pull at a time (one task runs them all). **Never worse than no pull**: a failing source
//! applies nothing and is reported (`/health` `attention`, the status page, `/metrics`, one log
//! line per outage); a pulled list is dropped when a list from another source was applied after
//! the request was sent (it may be older than what pub/sub just delivered); a list equal to the
//! last one pulled, with the state and the holds unchanged since, is not applied again.

mod fetch;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::PullOpts;
use crate::engine::{Applied, ApplyError, ApplyMode, Engine, Outcome};
use crate::ingest::metrics::Histogram;
pub use fetch::{FetchError, Source};

/// The origin of pulled lists in the sync log, the holds and the quarantine.
pub const ORIGIN: &str = crate::reconcile::guard::PULL_ORIGIN;
/// Event-driven pulls run at most once per this.
pub const EVENT_GAP: Duration = Duration::from_secs(10);
/// First retry after a failure.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Longest wait between two attempts while the source fails.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Why a pull runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Start,
    Interval,
    /// Redis (re)connected and resubscribed: pub/sub may have lost something.
    Reconnect,
    /// The old processors' body-less `POST /sync`.
    SyncRequest,
    /// A `processing_status` reported changes that no match list carried.
    LostPublish,
    /// Again, after a failure.
    Retry,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Interval => "interval",
            Trigger::Reconnect => "reconnect",
            Trigger::SyncRequest => "sync request",
            Trigger::LostPublish => "lost publish",
            Trigger::Retry => "retry",
        }
    }
}

/// What one pull did: the label of `fogis_pull_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullResult {
    /// The list changed the calendar.
    Applied,
    /// The list is what the calendar shows already.
    Unchanged,
    /// The guard held the list (or it confirmed a hold: then it is `Applied`).
    Held,
    /// A list from another source was applied while the request was under way: dropped.
    Dropped,
    /// The source did not answer, or answered an error.
    Failed,
    /// The source answered something that is no usable list.
    Invalid,
}

impl PullResult {
    pub const ALL: [PullResult; 6] = [
        PullResult::Applied,
        PullResult::Unchanged,
        PullResult::Held,
        PullResult::Dropped,
        PullResult::Failed,
        PullResult::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PullResult::Applied => "applied",
            PullResult::Unchanged => "unchanged",
            PullResult::Held => "held",
            PullResult::Dropped => "dropped",
            PullResult::Failed => "failed",
            PullResult::Invalid => "invalid",
        }
    }

    /// The source worked (whatever the list then did).
    pub fn ok(self) -> bool {
        !matches!(self, PullResult::Failed | PullResult::Invalid)
    }
}

/// The pull source's state, for `/health`, the status page and tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullStatus {
    pub enabled: bool,
    /// The source, without credentials.
    pub source: Option<String>,
    pub interval_seconds: u64,
    /// When the last pull was sent, and why.
    pub last_pull_at: Option<DateTime<Utc>>,
    pub last_trigger: Option<Trigger>,
    pub last_result: Option<PullResult>,
    /// What it did (counts), or why it failed.
    pub last_detail: Option<String>,
    pub last_duration_seconds: Option<f64>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Failed attempts in a row; 0 while the source works.
    pub consecutive_failures: u64,
    pub failing_since: Option<DateTime<Utc>>,
    /// When the next pull is due, if one is.
    pub next_pull_at: Option<DateTime<Utc>>,
    pub in_progress: bool,
    /// Pulls since start, by result.
    pub totals: BTreeMap<PullResult, u64>,
}

impl PullStatus {
    /// What `/health` should say about the source, if anything (from this one snapshot, so
    /// that it agrees with the status shown next to it).
    pub fn attention(&self) -> Option<String> {
        (self.consecutive_failures > 0).then(|| {
            let since = self.failing_since.map(|t| t.to_rfc3339()).unwrap_or_default();
            format!(
                "the FOGIS pull source fails since {since} ({} attempts): {}; nothing was applied from it, retrying with backoff",
                self.consecutive_failures,
                self.last_detail.as_deref().unwrap_or_default()
            )
        })
    }
}

/// What makes a list pulled again "the same as last time": its bytes, the state it left, the
/// pending holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    body: [u8; 32],
    generation: u64,
    pending_holds: Vec<i64>,
}

struct Inner {
    status: PullStatus,
    /// The earliest event not yet served by a pull sent after it.
    wanted: Option<(Instant, Trigger)>,
    last_start: Option<Instant>,
    /// While failing: when to try again.
    retry_at: Option<Instant>,
    backoff: u32,
    last: Option<Fingerprint>,
    /// The reason of the last invalid answer kept in the quarantine, while the source fails.
    quarantined: Option<String>,
}

struct Shared {
    source: Option<Source>,
    interval: Option<Duration>,
    inner: Mutex<Inner>,
    wake: Notify,
    duration: Histogram,
}

/// The pull source's handle: cheap to clone; disabled when no URL is configured.
#[derive(Clone)]
pub struct Pull(Arc<Shared>);

impl std::fmt::Debug for Pull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pull")
            .field("source", &self.0.source.as_ref().map(|s| &s.shown))
            .field("interval", &self.0.interval)
            .finish_non_exhaustive()
    }
}

impl Pull {
    /// A pull source that never pulls.
    pub fn disabled() -> Pull {
        Pull::build(None, None)
    }

    /// The source the options ask for (disabled without a URL). `max_bytes` bounds an answer.
    pub fn new(opts: &PullOpts, max_bytes: usize) -> anyhow::Result<Pull> {
        let Some(url) = opts.url() else {
            return Ok(Pull::disabled());
        };
        let timeout = Duration::from_secs(opts.fogis_pull_timeout_seconds);
        let source = Source::new(url, timeout, max_bytes)
            .map_err(|e| anyhow::anyhow!("FOGIS_API_CLIENT_URL: {e}"))?;
        let interval =
            Some(Duration::from_secs(opts.fogis_pull_interval_seconds)).filter(|i| !i.is_zero());
        Ok(Pull::build(Some(source), interval))
    }

    fn build(source: Option<Source>, interval: Option<Duration>) -> Pull {
        let status = PullStatus {
            enabled: source.is_some(),
            source: source.as_ref().map(|s| s.shown.clone()),
            interval_seconds: interval.map_or(0, |i| i.as_secs()),
            ..PullStatus::default()
        };
        Pull(Arc::new(Shared {
            source,
            interval,
            inner: Mutex::new(Inner {
                status,
                wanted: None,
                last_start: None,
                retry_at: None,
                backoff: 0,
                last: None,
                quarantined: None,
            }),
            wake: Notify::new(),
            duration: Histogram::default(),
        }))
    }

    pub fn enabled(&self) -> bool {
        self.0.source.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Only field updates happen under the lock: a panic cannot leave it half-done.
        self.0.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a pull soon (see the module docs for when). Never blocks; false when disabled.
    pub fn trigger(&self, why: Trigger) -> bool {
        if !self.enabled() {
            return false;
        }
        {
            let mut inner = self.lock();
            if inner.wanted.is_none() {
                inner.wanted = Some((Instant::now(), why));
            }
        }
        self.0.wake.notify_one();
        true
    }

    pub fn status(&self) -> PullStatus {
        self.lock().status.clone()
    }

    /// What `/health` should say about the source, if anything.
    pub fn attention(&self) -> Option<String> {
        self.status().attention()
    }

    /// The source's metrics, in the Prometheus text format (nothing when disabled).
    pub fn render_metrics(&self, out: &mut String) {
        if !self.enabled() {
            return;
        }
        let s = self.status();
        out.push_str("# HELP fogis_pull_total Pulls of the match list from the fogis-api-client service, by result.\n# TYPE fogis_pull_total counter\n");
        for r in PullResult::ALL {
            let n = s.totals.get(&r).copied().unwrap_or(0);
            let _ = writeln!(out, "fogis_pull_total{{result=\"{}\"}} {n}", r.as_str());
        }
        out.push_str("# HELP fogis_pull_duration_seconds Time a pull took, request and apply.\n# TYPE fogis_pull_duration_seconds histogram\n");
        self.0.duration.render(out, "fogis_pull_duration_seconds");
        out.push_str("# HELP fogis_pull_last_success_timestamp_seconds When the source last answered a usable list (0: never since start).\n# TYPE fogis_pull_last_success_timestamp_seconds gauge\n");
        let last = s.last_success_at.map_or(0, |t| t.timestamp());
        let _ = writeln!(out, "fogis_pull_last_success_timestamp_seconds {last}");
        out.push_str("# HELP fogis_pull_consecutive_failures Failed pulls in a row.\n# TYPE fogis_pull_consecutive_failures gauge\n");
        let _ = writeln!(
            out,
            "fogis_pull_consecutive_failures {}",
            s.consecutive_failures
        );
    }

    /// Starts the pulling task (a first pull at once); it stops at `shutdown`.
    pub fn start(&self, engine: Arc<Engine>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let Some(source) = self.0.source.clone() else {
            return;
        };
        tracing::info!(source = %source.shown, interval_seconds = self.lock().status.interval_seconds, "pulling the match list from the fogis-api-client service");
        self.trigger(Trigger::Start);
        tracker.spawn(self.clone().run(source, engine, shutdown));
    }

    /// When the next pull is due and why; `None`: only an event can start one.
    fn next_due(&self, inner: &Inner) -> Option<(Instant, Trigger)> {
        if let Some(at) = inner.retry_at {
            return Some((at, Trigger::Retry));
        }
        let event = inner.wanted.map(|(at, why)| {
            let gap = inner.last_start.map(|s| s + EVENT_GAP);
            (gap.map_or(at, |g| g.max(at)), why)
        });
        let timed = self.0.interval.map(|i| {
            let at = inner.last_start.map_or_else(Instant::now, |s| s + i);
            (at, Trigger::Interval)
        });
        match (event, timed) {
            (Some(e), Some(t)) => Some(if t.0 < e.0 { t } else { e }),
            (e, t) => e.or(t),
        }
    }

    async fn run(self, source: Source, engine: Arc<Engine>, shutdown: CancellationToken) {
        loop {
            let due = {
                let mut inner = self.lock();
                let due = self.next_due(&inner);
                inner.status.next_pull_at = due.map(|(at, _)| {
                    let wait = at.saturating_duration_since(Instant::now());
                    Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()
                });
                due
            };
            // Cancel safety: all three are cancel safe (a `Notified` chosen by `notify_one`
            // and dropped passes its permit on; the deadline lives outside `select!`).
            let trigger = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = self.0.wake.notified() => continue,
                why = async {
                    match due {
                        Some((at, why)) => {
                            tokio::time::sleep_until(at).await;
                            why
                        }
                        None => std::future::pending().await,
                    }
                } => why,
            };
            let started = Instant::now();
            let sent_at = Utc::now();
            {
                let mut inner = self.lock();
                inner.last_start = Some(started);
                inner.retry_at = None;
                // Every event up to now is served by this pull; later ones want another.
                if inner.wanted.is_some_and(|(at, _)| at <= started) {
                    inner.wanted = None;
                }
                inner.status.in_progress = true;
                inner.status.next_pull_at = None;
                inner.status.last_pull_at = Some(sent_at);
                inner.status.last_trigger = Some(trigger);
            }
            // The fetch is dropped at shutdown; an apply already started finishes on its
            // blocking thread (it is one transaction either way).
            let outcome = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                o = self.pull_once(&source, &engine) => o,
            };
            self.finish(outcome, started, trigger);
        }
    }

    /// One pull: fetch, parse, apply. Never panics on any answer.
    async fn pull_once(&self, source: &Source, engine: &Arc<Engine>) -> (PullResult, String) {
        let live_before = engine.live_applied();
        let body = match source.fetch().await {
            Ok(body) => body,
            Err(e) => return self.failed(engine, e).await,
        };
        let message_id = format!("pull-{}", uuid::Uuid::new_v4());
        let snapshot = match fetch::parse(&body, message_id) {
            Ok(s) => s,
            Err(e) => return self.failed(engine, e).await,
        };
        let digest: [u8; 32] = Sha256::digest(&body).into();
        let last = self.lock().last.clone();
        let for_work = engine.clone();
        let work = move || {
            let engine = for_work;
            let fingerprint = |engine: &Engine| -> Result<Fingerprint, ApplyError> {
                // `matches()` picks up a change another process (the CLI) made.
                let _ = engine.matches();
                let pending_holds = engine
                    .holds()?
                    .into_iter()
                    .filter(|h| h.state == "pending")
                    .map(|h| h.id)
                    .collect();
                Ok(Fingerprint {
                    body: digest,
                    generation: engine.generation(),
                    pending_holds,
                })
            };
            let before = fingerprint(&engine)?;
            if last.as_ref() == Some(&before) {
                return Ok((None, Some(before)));
            }
            let mode = ApplyMode {
                unless_live_since: Some(live_before),
                ..ApplyMode::default()
            };
            let applied = engine.apply_with(&snapshot, ORIGIN, mode, Utc::now())?;
            // The state this pull left, read before the live counter: a live list applied
            // since the pull's own commit makes it no longer "the state this list left", and
            // the next pull of the same list must apply again.
            let after = fingerprint(&engine)?;
            let after = (engine.live_applied() == live_before).then_some(after);
            Ok::<_, ApplyError>((Some(applied), after))
        };
        let result = match tokio::task::spawn_blocking(work).await {
            Ok(r) => r,
            Err(e) => return (PullResult::Failed, format!("applying the list failed: {e}")),
        };
        match result {
            Ok((None, _)) => (
                PullResult::Unchanged,
                "the same list as the last pull".into(),
            ),
            Ok((Some(applied), after)) => {
                let (result, detail) = classify(&applied);
                if result != PullResult::Dropped {
                    self.lock().last = after;
                }
                (result, detail)
            }
            Err(e @ (ApplyError::AllRejected(_) | ApplyError::TooManyMatches { .. })) => {
                let invalid = FetchError::Invalid {
                    reason: e.to_string(),
                    body,
                };
                self.failed(engine, invalid).await
            }
            Err(e) => (
                PullResult::Failed,
                format!("the state could not be written: {e}"),
            ),
        }
    }

    /// A failure of the source. An invalid answer is kept in the quarantine, once per outage
    /// and reason (the retries would only repeat it).
    async fn failed(&self, engine: &Arc<Engine>, e: FetchError) -> (PullResult, String) {
        match e {
            FetchError::Unavailable(reason) => (PullResult::Failed, reason),
            FetchError::Invalid { reason, body } => {
                let new = {
                    let mut inner = self.lock();
                    let new = inner.quarantined.as_deref() != Some(reason.as_str());
                    inner.quarantined = Some(reason.clone());
                    new
                };
                if new {
                    let engine = engine.clone();
                    let why = reason.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        engine.quarantine(ORIGIN, &why, &body);
                    })
                    .await;
                }
                (PullResult::Invalid, reason)
            }
        }
    }

    /// Records a pull's result: status, metrics, backoff, and the log, once per outage.
    fn finish(&self, (result, detail): (PullResult, String), started: Instant, why: Trigger) {
        let took = started.elapsed();
        self.0.duration.observe(took.as_secs_f64());
        let mut inner = self.lock();
        let failures = inner.status.consecutive_failures;
        *inner.status.totals.entry(result).or_default() += 1;
        inner.status.in_progress = false;
        inner.status.last_result = Some(result);
        inner.status.last_detail = Some(detail.clone());
        inner.status.last_duration_seconds = Some(took.as_secs_f64());
        if result.ok() {
            if failures > 0 {
                tracing::info!(
                    failed_attempts = failures,
                    "the FOGIS pull source works again"
                );
            }
            inner.status.consecutive_failures = 0;
            inner.status.failing_since = None;
            inner.status.last_success_at = Some(Utc::now());
            inner.backoff = 0;
            inner.retry_at = None;
            inner.quarantined = None;
            match result {
                PullResult::Applied => {
                    tracing::info!(trigger = why.as_str(), "pulled list applied: {detail}")
                }
                PullResult::Dropped => tracing::info!(trigger = why.as_str(), "{detail}"),
                _ => tracing::debug!(trigger = why.as_str(), result = result.as_str(), "{detail}"),
            }
        } else {
            if failures == 0 {
                tracing::warn!(
                    trigger = why.as_str(),
                    reason = %detail,
                    "the FOGIS pull source fails: nothing applied from it; retrying with backoff (logged once per outage)"
                );
                inner.status.failing_since = Some(Utc::now());
            } else {
                tracing::debug!(reason = %detail, attempts = failures + 1, "the FOGIS pull source still fails");
            }
            inner.status.consecutive_failures += 1;
            let delay = self.backoff(inner.backoff);
            inner.backoff = inner.backoff.saturating_add(1);
            inner.retry_at = Some(Instant::now() + delay);
        }
    }

    /// The wait before retry number `attempt` (0 = the first): doubling from
    /// [`BACKOFF_INITIAL`], capped at [`BACKOFF_MAX`] and at the interval, drawn from
    /// `[delay / 2, delay]`.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .0
            .interval
            .map_or(BACKOFF_MAX, |i| i.min(BACKOFF_MAX))
            .max(BACKOFF_INITIAL);
        let delay = BACKOFF_INITIAL
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(cap);
        let unit =
            f64::from((uuid::Uuid::new_v4().as_u128() & 0xffff_ffff) as u32) / f64::from(u32::MAX);
        delay / 2 + (delay / 2).mul_f64(unit)
    }
}

/// The result and the log words of an applied pull.
fn classify(applied: &Applied) -> (PullResult, String) {
    let c = applied.counts;
    match &applied.outcome {
        Outcome::Stale => {
            return (
                PullResult::Dropped,
                "a list from another source was applied while the pull was under way: the pulled one is dropped".into(),
            )
        }
        Outcome::Held(h) => {
            return (
                PullResult::Held,
                format!("held for confirmation (#{}): {}", h.id, h.reason),
            )
        }
        // Each pull carries a new message id: a duplicate is as good as unchanged.
        Outcome::Duplicate => return (PullResult::Unchanged, "already applied".into()),
        Outcome::Applied => {}
    }
    let summary = format!(
        "created {}, updated {}, cancelled {}, withdrawn {}, archived {}, unchanged {}, rejected {}",
        c.created, c.updated, c.cancelled, c.withdrawn, c.archived, c.unchanged, c.rejected
    );
    let changed = c.created + c.updated + c.cancelled + c.withdrawn + c.archived > 0;
    if changed {
        (PullResult::Applied, summary)
    } else {
        (PullResult::Unchanged, summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(interval: u64) -> Pull {
        let source = Source::new("http://127.0.0.1:9", Duration::from_secs(1), 1024).ok();
        Pull::build(
            source,
            Some(Duration::from_secs(interval)).filter(|i| !i.is_zero()),
        )
    }

    #[test]
    fn backoff_doubles_with_jitter_and_never_exceeds_the_interval_or_the_ceiling() {
        let p = pull(0);
        for attempt in 0..40 {
            let full = BACKOFF_INITIAL
                .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
                .min(BACKOFF_MAX);
            let d = p.backoff(attempt);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?} for {full:?}");
        }
        let short = pull(3);
        assert!((0..40).all(|a| short.backoff(a) <= Duration::from_secs(3)));
    }

    #[test]
    fn events_wait_for_the_gap_after_the_last_pull_and_the_earliest_one_is_kept() {
        let p = pull(0);
        assert!(
            p.next_due(&p.lock()).is_none(),
            "no interval, no event: nothing due"
        );
        let t0 = Instant::now();
        {
            let mut inner = p.lock();
            inner.last_start = Some(t0);
        }
        assert!(p.trigger(Trigger::Reconnect));
        assert!(p.trigger(Trigger::LostPublish));
        let inner = p.lock();
        let (at, why) = p.next_due(&inner).unwrap_or((t0, Trigger::Start));
        assert_eq!(why, Trigger::Reconnect, "merged into the earliest");
        assert_eq!(at, t0 + EVENT_GAP);
    }

    #[test]
    fn the_interval_counts_from_the_last_pull_and_a_failure_retries_first() {
        let p = pull(60);
        let t0 = Instant::now();
        let mut inner = p.lock();
        inner.last_start = Some(t0);
        assert_eq!(
            p.next_due(&inner),
            Some((t0 + Duration::from_secs(60), Trigger::Interval))
        );
        inner.retry_at = Some(t0 + Duration::from_secs(2));
        assert_eq!(
            p.next_due(&inner),
            Some((t0 + Duration::from_secs(2), Trigger::Retry))
        );
    }

    #[test]
    fn a_disabled_source_never_pulls_and_says_nothing() {
        let p = Pull::disabled();
        assert!(!p.trigger(Trigger::SyncRequest));
        assert!(p.attention().is_none());
        let mut out = String::new();
        p.render_metrics(&mut out);
        assert!(out.is_empty());
        assert!(!p.status().enabled);
    }
}
