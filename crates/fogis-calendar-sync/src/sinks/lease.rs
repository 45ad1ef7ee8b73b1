//! The sink lease: two instances, one calendar.
//!
//! Two instances (each its own `DATA_DIR` and state, both consuming every list) may serve one
//! calendar for availability; only the holder of a lease in Redis writes the external sinks
//! (CalDAV, CardDAV, forward, Google). It is the well-known single-instance Redis lock, nothing
//! of our own:
//! - **acquire**: `SET key token NX PX ttl`, with a random token made at start;
//! - **renew**: every [`LeaseConfig::renew_every`] a compare-and-extend script (`PEXPIRE` only
//!   while the value is still our token);
//! - **release**, on a clean shutdown after the sinks stopped: a compare-and-delete script, so
//!   the other instance takes over at its next attempt.
//!
//! Safety: a holder counts its lease valid until the *send* time of its last successful
//! renewal plus the TTL minus a margin ([`LeaseConfig::margin`]). When it cannot renew (Redis
//! down, frozen, partitioned), it stops its sinks at that deadline, before the key can have
//! expired in Redis, so two instances never write at once; every Redis call is bounded by the
//! time left. Once Redis answers again it takes the lease back if it is free, or still its own.
//!
//! Liveness: a holder that dies leaves the key to expire after at most the TTL; the standby
//! tries every [`LeaseConfig::retry_every`], so it takes over within TTL + retry (12 s with the
//! default 10 s TTL), then its sinks adopt what the other wrote ([`crate::sinks::SinkKind::prepare`]
//! with a fresh look) and converge from its own state.
//!
//! The sink workers see the lease as a [`Gate`]: granted with an epoch (a new one per
//! acquisition, so a sink prepares again after every takeover), or not. Without a lease the
//! gate is always open with epoch 0.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fogis_pubsub::RedisUrl;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The prefix of every lease key.
pub const KEY_PREFIX: &str = "fogis:calendar-sync:sink-lease:";
pub use crate::config::DEFAULT_SINK_LEASE_TTL_SECONDS as DEFAULT_TTL_SECONDS;

/// Extend only while the value is still our token.
const EXTEND: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                      return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// Delete only while the value is still our token.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                       return redis.call('DEL', KEYS[1]) else return 0 end";
/// How long a clean shutdown waits for the release.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The lease's key and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub key: String,
    pub ttl: Duration,
}

impl LeaseConfig {
    /// `SINK_LEASE_KEY` when given (`fogis:calendar-sync:sink-lease:<name>`), else a digest of
    /// the configured sinks' targets (no credentials in them): instances configured with the
    /// same sinks share a lease.
    pub fn new(name: Option<&str>, targets: &[String], ttl: Duration) -> LeaseConfig {
        let key = match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => format!("{KEY_PREFIX}{n}"),
            None => {
                let mut t = targets.to_vec();
                t.sort();
                t.dedup();
                let digest = Sha256::digest(t.join("\n").as_bytes());
                format!("{KEY_PREFIX}{}", &hex::encode(digest)[..16])
            }
        };
        LeaseConfig { key, ttl }
    }

    /// A holder renews this often (3 s of 10).
    pub fn renew_every(&self) -> Duration {
        self.ttl * 3 / 10
    }

    /// A standby tries to acquire this often (2 s of 10); a holder whose renewal failed tries
    /// again after half of it.
    pub fn retry_every(&self) -> Duration {
        self.ttl / 5
    }

    /// A holder that cannot renew stops this long before the key could expire (2 s of 10):
    /// room for a write already on its way to land before another instance starts.
    pub fn margin(&self) -> Duration {
        self.ttl / 5
    }
}

/// What this instance is to the sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// No lease configured: this instance writes its sinks.
    Off,
    /// Another instance holds the lease (or Redis cannot be reached): the sinks wait.
    Standby,
    /// This instance holds the lease and writes the sinks.
    Active,
}

/// What `/health` and `/sinks` show of the lease (no token, no credentials).
#[derive(Debug, Clone, Serialize)]
pub struct LeaseStatus {
    pub role: Role,
    /// Since when this instance has had its role.
    pub since: DateTime<Utc>,
    pub key: Option<String>,
    pub ttl_seconds: Option<u64>,
    /// How many times this instance acquired the lease.
    pub acquisitions: u64,
    /// The last Redis error while trying (URL credentials scrubbed); cleared by an answer.
    pub last_error: Option<String>,
}

/// The lease as the rest of the service sees it: a status to show.
#[derive(Debug, Clone)]
pub struct Lease {
    status: Arc<Mutex<LeaseStatus>>,
}

impl Default for Lease {
    fn default() -> Self {
        Lease::off()
    }
}

impl Lease {
    /// No lease: this instance writes its sinks.
    pub fn off() -> Lease {
        Lease {
            status: Arc::new(Mutex::new(LeaseStatus {
                role: Role::Off,
                since: Utc::now(),
                key: None,
                ttl_seconds: None,
                acquisitions: 0,
                last_error: None,
            })),
        }
    }

    /// `fogis_sink_lease_active` (1 while this instance holds it), when a lease is configured.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let role = self.status().role;
        if role == Role::Off {
            return;
        }
        out.push_str("# HELP fogis_sink_lease_active 1 while this instance holds the sink lease and writes the sinks.\n# TYPE fogis_sink_lease_active gauge\n");
        let _ = writeln!(
            out,
            "fogis_sink_lease_active {}",
            u8::from(role == Role::Active)
        );
    }

    pub fn status(&self) -> LeaseStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut LeaseStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn set_role(&self, role: Role) {
        self.update(|s| {
            if s.role != role {
                s.role = role;
                s.since = Utc::now();
            }
            if role == Role::Active {
                s.acquisitions += 1;
            }
        });
    }
}

/// One acquisition: its epoch, and until when it counts (moved on by every renewal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grant {
    epoch: u64,
    until: Instant,
}

/// A sink worker's view of the lease: may it write, and since which acquisition.
#[derive(Debug, Clone)]
pub struct Gate(Option<watch::Receiver<Option<Grant>>>);

impl Gate {
    /// No lease: always granted, epoch 0.
    pub fn open() -> Gate {
        Gate(None)
    }

    /// Waits until this instance may write the sinks, and returns the acquisition's epoch.
    /// Never returns once the lease task is gone (the service is stopping).
    pub async fn granted(&mut self) -> u64 {
        let Some(rx) = &mut self.0 else { return 0 };
        let epoch = rx
            .wait_for(Option::is_some)
            .await
            .map(|g| g.map_or(0, |g| g.epoch));
        match epoch {
            Ok(e) => e,
            Err(_) => std::future::pending().await,
        }
    }

    /// Resolves when the acquisition `epoch` ends (never without a lease).
    pub async fn revoked(&mut self, epoch: u64) {
        let Some(rx) = &mut self.0 else {
            return std::future::pending().await;
        };
        // An error: the lease task is gone, which revokes too.
        let _ = rx.wait_for(|g| g.map(|g| g.epoch) != Some(epoch)).await;
    }

    /// Whether the acquisition `epoch` still counts, by its deadline: checked before every
    /// write, so a process that was paused past its lease writes nothing more when it wakes.
    pub fn valid(&self, epoch: u64) -> bool {
        let Some(rx) = &self.0 else { return true };
        let grant = *rx.borrow();
        grant.is_some_and(|g| g.epoch == epoch && Instant::now() < g.until)
    }
}

/// Starts the lease task on `tracker`: it acquires, renews and, when `shutdown` is cancelled
/// (after the sinks stopped), releases.
pub fn start(
    url: &RedisUrl,
    config: LeaseConfig,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<(Gate, Lease)> {
    let client = url.client()?;
    let (tx, rx) = watch::channel(None);
    let lease = Lease::off();
    lease.update(|s| {
        s.role = Role::Standby;
        s.key = Some(config.key.clone());
        s.ttl_seconds = Some(config.ttl.as_secs());
    });
    tracing::info!(key = %config.key, ttl_seconds = config.ttl.as_secs(), "sink lease enabled: the sinks are written only while this instance holds it");
    let holder = Holder {
        client,
        url: url.clone(),
        config,
        token: uuid::Uuid::new_v4().simple().to_string(),
        conn: None,
        lease: lease.clone(),
        grant: tx,
        failing: false,
    };
    tracker.spawn(holder.run(shutdown));
    Ok((Gate(Some(rx)), lease))
}

/// Why a Redis round trip gave no answer.
#[derive(Debug, thiserror::Error)]
enum Unanswered {
    #[error("Redis did not answer in time")]
    Timeout,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

struct Holder {
    client: redis::Client,
    url: RedisUrl,
    config: LeaseConfig,
    token: String,
    conn: Option<redis::aio::MultiplexedConnection>,
    lease: Lease,
    grant: watch::Sender<Option<Grant>>,
    /// A Redis error was logged and no answer came since.
    failing: bool,
}

impl Holder {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut epoch = 0u64;
        // Until when a held lease counts (None: not held).
        let mut valid_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let next = match valid_until {
                Some(deadline) if now >= deadline => {
                    self.lose("could not renew it in time (Redis unreachable)");
                    valid_until = None;
                    now
                }
                Some(deadline) => {
                    let limit = (deadline - now).min(self.config.renew_every());
                    match self.bounded(limit, Op::Extend).await {
                        Ok(true) => {
                            let until = self.valid_from(now);
                            valid_until = Some(until);
                            self.grant.send_replace(Some(Grant { epoch, until }));
                            now + self.config.renew_every()
                        }
                        Ok(false) => {
                            self.lose("another instance holds it now");
                            valid_until = None;
                            now + self.config.retry_every()
                        }
                        Err(e) => {
                            self.failed(&e);
                            (Instant::now() + self.config.retry_every() / 2).min(deadline)
                        }
                    }
                }
                None => match self.bounded(self.config.retry_every(), Op::Acquire).await {
                    Ok(true) => {
                        epoch += 1;
                        let until = self.valid_from(now);
                        valid_until = Some(until);
                        self.lease.set_role(Role::Active);
                        self.grant.send_replace(Some(Grant { epoch, until }));
                        tracing::info!(key = %self.config.key, "acquired the sink lease: this instance writes the sinks");
                        now + self.config.renew_every()
                    }
                    Ok(false) => now + self.config.retry_every(),
                    Err(e) => {
                        self.failed(&e);
                        now + self.config.retry_every()
                    }
                },
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
            }
        }
        if valid_until.is_some() {
            self.grant.send_replace(None);
            self.lease.set_role(Role::Standby);
            match self.bounded(RELEASE_TIMEOUT, Op::Release).await {
                Ok(_) => tracing::info!(key = %self.config.key, "released the sink lease"),
                Err(e) => {
                    let error = self.url.scrub(&e.to_string());
                    tracing::warn!(%error, "could not release the sink lease: the other instance takes over when it expires");
                }
            }
        }
    }

    /// The deadline a renewal sent at `sent` gives: the key lives until `sent + ttl` at the
    /// earliest, and we stop `margin` before.
    fn valid_from(&self, sent: Instant) -> Instant {
        sent + self.config.ttl.saturating_sub(self.config.margin())
    }

    fn lose(&mut self, why: &str) {
        self.grant.send_replace(None);
        self.lease.set_role(Role::Standby);
        tracing::warn!(key = %self.config.key, "lost the sink lease ({why}): the sinks stop until it is back");
    }

    fn failed(&mut self, e: &Unanswered) {
        self.conn = None;
        let error = self.url.scrub(&e.to_string());
        if !self.failing {
            self.failing = true;
            tracing::warn!(%error, "the sink lease cannot reach Redis; retrying");
        }
        self.lease.update(|s| s.last_error = Some(error));
    }

    /// One operation, given at most `limit`; an answer clears the error.
    async fn bounded(&mut self, limit: Duration, op: Op) -> Result<bool, Unanswered> {
        let answer = match tokio::time::timeout(limit, self.op(op)).await {
            Ok(answer) => answer.map_err(Unanswered::from),
            Err(_) => Err(Unanswered::Timeout),
        };
        if answer.is_ok() && self.failing {
            self.failing = false;
            tracing::info!("the sink lease reaches Redis again");
            self.lease.update(|s| s.last_error = None);
        }
        answer
    }

    async fn op(&mut self, op: Op) -> Result<bool, redis::RedisError> {
        if self.conn.is_none() {
            self.conn = Some(self.client.get_multiplexed_async_connection().await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX);
        let key = &self.config.key;
        match op {
            Op::Acquire => {
                let set: Option<String> = redis::cmd("SET")
                    .arg(key)
                    .arg(&self.token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(conn)
                    .await?;
                if set.is_some() {
                    return Ok(true);
                }
                // Still ours (we stopped in time while Redis was away, and it kept the key).
                Ok(eval(conn, EXTEND, key, &self.token, Some(ttl_ms)).await? == 1)
            }
            Op::Extend => Ok(eval(conn, EXTEND, key, &self.token, Some(ttl_ms)).await? == 1),
            Op::Release => Ok(eval(conn, RELEASE, key, &self.token, None).await? == 1),
        }
    }
}

/// `EVAL script 1 key token [ttl_ms]` (a script of a few lines: sent whole, no script cache).
async fn eval(
    conn: &mut redis::aio::MultiplexedConnection,
    script: &str,
    key: &str,
    token: &str,
    ttl_ms: Option<u64>,
) -> Result<i64, redis::RedisError> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(1).arg(key).arg(token);
    if let Some(ttl) = ttl_ms {
        cmd.arg(ttl);
    }
    cmd.query_async(conn).await
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Acquire,
    Extend,
    Release,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_given_name_or_a_digest_of_the_targets_in_any_order() {
        let ttl = Duration::from_secs(10);
        let a = [
            "http://dav/cal/".to_string(),
            "http://dav/book/".to_string(),
        ];
        let b = [a[1].clone(), a[0].clone()];
        let ka = LeaseConfig::new(None, &a, ttl).key;
        assert_eq!(ka, LeaseConfig::new(None, &b, ttl).key);
        assert!(
            ka.starts_with(KEY_PREFIX) && ka.len() == KEY_PREFIX.len() + 16,
            "{ka}"
        );
        assert_ne!(ka, LeaseConfig::new(None, &a[..1], ttl).key);
        let named = LeaseConfig::new(Some(" referee-1 "), &a, ttl).key;
        assert_eq!(named, format!("{KEY_PREFIX}referee-1"));
        assert_eq!(LeaseConfig::new(Some(""), &a, ttl).key, ka);
    }

    #[test]
    fn a_holder_stops_before_the_key_can_expire_and_a_standby_takes_over_within_15_s() {
        let c = LeaseConfig::new(None, &[], Duration::from_secs(DEFAULT_TTL_SECONDS));
        assert!(
            c.renew_every() * 2 < c.ttl - c.margin(),
            "two renewals fit before the deadline"
        );
        assert!(c.margin() > Duration::ZERO);
        assert!(c.ttl + c.retry_every() <= Duration::from_secs(15));
    }

    #[tokio::test]
    async fn an_open_gate_is_granted_at_once_and_never_revoked() {
        let mut gate = Gate::open();
        assert_eq!(gate.granted().await, 0);
        let revoked = tokio::time::timeout(Duration::from_millis(10), gate.revoked(0)).await;
        assert!(revoked.is_err());
    }

    #[tokio::test]
    async fn a_gate_follows_the_grants_epoch_by_epoch() {
        let (tx, rx) = watch::channel(None);
        let mut gate = Gate(Some(rx));
        let later = Instant::now() + Duration::from_secs(60);
        tx.send_replace(Some(Grant {
            epoch: 1,
            until: later,
        }));
        assert_eq!(gate.granted().await, 1);
        assert!(gate.valid(1) && !gate.valid(2));
        tx.send_replace(None);
        gate.revoked(1).await;
        assert!(!gate.valid(1));
        tx.send_replace(Some(Grant {
            epoch: 2,
            until: later,
        }));
        gate.revoked(1).await; // a new acquisition ends the old one too
        assert_eq!(gate.granted().await, 2);
        // Past its deadline a grant no longer counts, before anyone says so.
        tx.send_replace(Some(Grant {
            epoch: 2,
            until: Instant::now(),
        }));
        assert!(!gate.valid(2));
        drop(tx);
        gate.revoked(2).await;
    }
}
