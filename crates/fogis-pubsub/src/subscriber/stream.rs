//! The stream consumer: reads a Redis stream through a consumer group, at least once.
//!
//! Per connection, in this order:
//!
//! 1. `XGROUP CREATE <key> <group> 0 MKSTREAM` (`BUSYGROUP` means it exists: fine). Start id `0`,
//!    not `$`: a group created after entries were added (first deployment, or a stream deleted
//!    and re-created by the next `XADD`) must read them too; `$` would skip exactly the
//!    snapshots this mode exists to keep. Reading old history costs little, since coalescing
//!    hands only the newest snapshot over.
//! 2. `XREADGROUP GROUP <group> <consumer> COUNT <batch> STREAMS <key> 0`, repeated from the
//!    last id until it runs dry: this consumer's own pending entries, received but never
//!    acknowledged (a crash, a lost reply, a handler that asked to retry).
//! 3. `XAUTOCLAIM <key> <group> <consumer> <claim_idle> <cursor> COUNT <batch>`: entries of
//!    consumers idle longer than `claim_idle`, taken to be dead. Once per connection and every
//!    `claim_every`; a scan continues from its cursor until the cursor is back at `0-0`.
//! 4. `XREADGROUP ... BLOCK <block> COUNT <batch> STREAMS <key> >`: new entries. With
//!    `coalesce`, a full batch is followed by more reads without `BLOCK` until one comes back
//!    short (at most [`DRAIN_LIMIT`] entries), so a backlog is handed over as one snapshot.
//! 5. For what was read: entries without data (trimmed) or that are not snapshots (status,
//!    alerts) and poison (no `payload`, too large, undecodable: to `on_rejected`) are
//!    acknowledged at once. Snapshots go to the handler through the worker: with `coalesce` only
//!    the newest (and only if newer than the last one handled), without it each in order. Once
//!    the handler returned `Applied`, `Duplicate` or `Rejected`: `XACK` of that entry and of the
//!    older snapshots it superseded. `Retry`: nothing is acknowledged, and after a backoff
//!    (`backoff_initial` doubling to `backoff_max`) step 2 reads them again.
//! 6. `XPENDING <key> <group>` for the status, after every step.
//!
//! `NOGROUP` (the stream was deleted or evicted, taking the group with it) re-creates the group
//! as in step 1 and goes on; twice in a row without a read in between counts as a failure.
//! Any other failure drops the connection and reconnects with the same backoff as pub/sub;
//! nothing loops without waiting.
//!
//! At shutdown an entry already with the handler is waited for and acknowledged; one not yet
//! started stays pending for the next start.

mod commands;
mod reply;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::commands::millis;
use self::reply::{Entry, EntryId};
use super::backoff::Backoff;
use super::inbox::StreamJob;
use super::intake::{accept, reject, Accepted};
use super::{HandlerOutcome, MatchUpdate, Shared};
use crate::config::StreamConfig;
use crate::error::RejectReason;
use crate::status::RecordKind;

/// With `coalesce`, at most this many entries are read ahead before one is handed over.
pub(crate) const DRAIN_LIMIT: usize = 10_000;

/// How long the acknowledgement of an entry handled during shutdown may take.
const SHUTDOWN_ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// `block` and `claim_every` are never shorter than this, whatever the configuration says: a
/// zero would turn the reading loop into a busy loop (and a zero `claim_every` would claim
/// forever without reading anything new).
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Why a step stopped.
enum Fail {
    Shutdown,
    /// The stream or the group is gone.
    NoGroup,
    /// The connection is unusable; `answered` when the server refused rather than vanished.
    Lost {
        reason: String,
        answered: bool,
    },
}

/// A snapshot read from the stream, waiting for the handler.
struct Candidate {
    id: String,
    order: Option<EntryId>,
    update: MatchUpdate,
}

pub(crate) async fn run(shared: Arc<Shared>, config: StreamConfig, cancel: CancellationToken) {
    let config = StreamConfig {
        block: config.block.max(MIN_INTERVAL),
        claim_every: config.claim_every.max(MIN_INTERVAL),
        batch: config.batch.max(1),
        ..config
    };
    let backoff = Backoff::new(shared.config.backoff_initial, shared.config.backoff_max);
    let mut consumer = Consumer {
        channel: format!("stream:{}", config.key),
        retry_backoff: Backoff::new(shared.config.backoff_initial, shared.config.backoff_max),
        handled_up_to: None,
        pending_from: None,
        next_claim: Instant::now(),
        claim_cursor: "0-0".into(),
        retry_at: None,
        shared,
        config,
    };
    consumer.run(backoff, &cancel).await;
}

struct Consumer {
    shared: Arc<Shared>,
    config: StreamConfig,
    /// `stream:<key>`: the channel name handler and history see.
    channel: String,
    /// The newest entry handled since the group was created: older snapshots are superseded.
    handled_up_to: Option<EntryId>,
    /// Read own pending entries after this id before anything new (`Some("0")`: all of them).
    pending_from: Option<String>,
    next_claim: Instant,
    claim_cursor: String,
    retry_backoff: Backoff,
    retry_at: Option<Instant>,
}

impl Consumer {
    async fn run(&mut self, mut backoff: Backoff, cancel: &CancellationToken) {
        let connect_timeout = self.shared.config.connect_timeout;
        let mut warned = false;
        while !cancel.is_cancelled() {
            // Cancel safety: dropping a half-made connection just closes it.
            let attempt = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                r = tokio::time::timeout(connect_timeout, self.connect()) => r,
            };
            let (reason, answered) = match attempt {
                Ok(Ok(mut conn)) => {
                    self.set_connected(true);
                    if warned {
                        tracing::info!(stream = %self.config.key, "stream consumer reconnected");
                    }
                    warned = false;
                    match self.session(&mut conn, &mut backoff, cancel).await {
                        Fail::Shutdown => break,
                        Fail::Lost { reason, answered } => (reason, answered),
                        Fail::NoGroup => ("the consumer group vanished twice".into(), true),
                    }
                }
                Ok(Err(Fail::Lost { reason, answered })) => (reason, answered),
                Ok(Err(_)) => ("the consumer group could not be created".into(), true),
                Err(_) => (
                    format!("no answer while connecting within {connect_timeout:?}"),
                    false,
                ),
            };
            self.set_connected(false);
            self.error(&reason, answered);
            let delay = backoff.next_delay();
            // One warning per outage; the retries after it only at debug.
            if warned {
                tracing::debug!(stream = %self.config.key, "stream unavailable, retrying in {delay:.1?}: {reason}");
            } else {
                tracing::warn!(stream = %self.config.key, "stream unavailable, retrying in {delay:.1?}: {reason}");
                warned = true;
            }
            // Cancel safety: both branches are cancel safe.
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.set_connected(false);
        tracing::debug!("stream consumer stopped");
    }

    /// Works one connection until it fails or shutdown.
    async fn session(
        &mut self,
        conn: &mut MultiplexedConnection,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
    ) -> Fail {
        self.pending_from = Some("0".into());
        self.next_claim = Instant::now();
        self.claim_cursor = "0-0".into();
        let mut vanished = false;
        loop {
            if let Some(at) = self.retry_at.take() {
                // Cancel safety: both branches are cancel safe; the deadline was taken out of
                // `retry_at`, and `pending_from` makes the next step read the entries again.
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Fail::Shutdown,
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            let step = if self.pending_from.is_some() {
                self.read_own(conn, cancel).await
            } else if Instant::now() >= self.next_claim {
                self.claim(conn, cancel).await
            } else {
                self.read_new(conn, cancel).await
            };
            match step {
                Ok(()) => {
                    backoff.reset();
                    vanished = false;
                    self.refresh_pending(conn).await;
                }
                Err(Fail::NoGroup) if !vanished => {
                    vanished = true;
                    tracing::warn!(stream = %self.config.key, "the stream or its consumer group is gone (NOGROUP); creating it again");
                    if let Err(fail) = self.create_group(conn).await {
                        return fail;
                    }
                    self.pending_from = Some("0".into());
                }
                Err(fail) => return fail,
            }
        }
    }

    /// Own pending entries, from `pending_from` on.
    async fn read_own(
        &mut self,
        conn: &mut MultiplexedConnection,
        cancel: &CancellationToken,
    ) -> Result<(), Fail> {
        let mut round = Round {
            replay: true,
            ..Round::default()
        };
        loop {
            let from = self.pending_from.clone().unwrap_or_else(|| "0".into());
            let entries = self.xreadgroup(conn, &from, None, cancel).await?;
            let full = entries.len() >= self.config.batch;
            self.pending_from = match entries.last() {
                Some(last) if full => Some(last.id.clone()),
                _ => None,
            };
            let more = self.config.coalesce && full && round.read < DRAIN_LIMIT;
            if !self.take(conn, &mut round, entries, cancel).await? || !more {
                break;
            }
        }
        self.hand_candidate(conn, round, cancel).await
    }

    /// New entries, waiting up to `block` for the first.
    async fn read_new(
        &mut self,
        conn: &mut MultiplexedConnection,
        cancel: &CancellationToken,
    ) -> Result<(), Fail> {
        let mut round = Round::default();
        let mut block = Some(self.config.block);
        loop {
            let entries = self.xreadgroup(conn, ">", block, cancel).await?;
            block = None;
            let full = entries.len() >= self.config.batch;
            let more = self.config.coalesce && full && round.read < DRAIN_LIMIT;
            if !self.take(conn, &mut round, entries, cancel).await? || !more {
                break;
            }
        }
        self.hand_candidate(conn, round, cancel).await
    }

    /// One `XAUTOCLAIM` call; the scan goes on at the next step until the cursor is back at 0.
    async fn claim(
        &mut self,
        conn: &mut MultiplexedConnection,
        cancel: &CancellationToken,
    ) -> Result<(), Fail> {
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.config.key)
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg(millis(self.config.claim_idle))
            .arg(&self.claim_cursor)
            .arg("COUNT")
            .arg(self.config.batch);
        let value = self.query(conn, &cmd, "XAUTOCLAIM", cancel).await?;
        let claimed = reply::autoclaim(value).map_err(|e| self.malformed(e))?;
        if claimed.cursor == "0-0" {
            self.claim_cursor = claimed.cursor;
            self.next_claim = Instant::now() + self.config.claim_every;
        } else {
            self.claim_cursor = claimed.cursor;
        }
        if claimed.deleted > 0 {
            tracing::info!(stream = %self.config.key, "{} pending entries of other consumers were trimmed away", claimed.deleted);
        }
        let n = claimed.entries.len() as u64;
        if n > 0 {
            tracing::info!(stream = %self.config.key, "claimed {n} entries idle longer than {:?}", self.config.claim_idle);
            self.shared.status.stream(|s| s.claimed += n);
        }
        let mut round = Round {
            replay: true,
            ..Round::default()
        };
        if self.take(conn, &mut round, claimed.entries, cancel).await? {
            self.hand_candidate(conn, round, cancel).await?;
        }
        Ok(())
    }

    /// Sorts entries out: acknowledges what needs no handler, keeps the newest snapshot (with
    /// `coalesce`) or hands each snapshot over in order. False when a handler asked to retry
    /// (stop reading; what is left stays pending).
    async fn take(
        &mut self,
        conn: &mut MultiplexedConnection,
        round: &mut Round,
        entries: Vec<Entry>,
        cancel: &CancellationToken,
    ) -> Result<bool, Fail> {
        round.read += entries.len();
        let n = entries.len() as u64;
        self.shared.status.stream(|s| s.delivered += n);
        for entry in entries {
            let Some(candidate) = self.sort(entry, &mut round.done, round.replay) else {
                continue;
            };
            if self.config.coalesce {
                let older = match (candidate.order, self.handled_up_to) {
                    (Some(id), Some(handled)) => id <= handled,
                    _ => false,
                };
                let newer = match &round.candidate {
                    Some(current) => candidate.order >= current.order,
                    None => true,
                };
                if older {
                    round.done.push(candidate.id);
                    round.superseded += 1;
                } else if !newer {
                    // Reads return entries in id order; kept correct should that ever change.
                    round.superseded_by_candidate.push(candidate.id);
                } else if let Some(previous) = round.candidate.replace(candidate) {
                    round.superseded_by_candidate.push(previous.id);
                }
            } else {
                self.ack_done(conn, round).await?;
                if !self.hand(conn, candidate, Vec::new(), cancel).await? {
                    return Ok(false);
                }
            }
            // Decoding a large snapshot takes a while: let other tasks run in between.
            tokio::task::yield_now().await;
        }
        self.ack_done(conn, round).await?;
        Ok(true)
    }

    /// Decodes one entry. Everything that is not a snapshot is recorded and put on `done`.
    fn sort(&self, entry: Entry, done: &mut Vec<String>, replay: bool) -> Option<Candidate> {
        let received_at = Utc::now();
        let channel = self.channel.as_str();
        let status = &self.shared.status;
        let Some(payload) = entry.field("payload") else {
            if entry.fields.is_none() {
                tracing::info!(id = %entry.id, "a pending stream entry was trimmed away; acknowledging it");
                status.stream(|s| s.superseded += 1);
            } else {
                let reason = RejectReason::MissingPayload {
                    id: entry.id.clone(),
                };
                reject(&self.shared, channel, reason, &[], received_at);
                status.stream(|s| s.poison += 1);
            }
            done.push(entry.id);
            return None;
        };
        match accept(&self.shared, channel, payload, received_at) {
            Accepted::Snapshot(snapshot) => Some(Candidate {
                order: EntryId::parse(&entry.id),
                update: MatchUpdate {
                    channel: self.channel.clone(),
                    snapshot,
                    received_at,
                    replay,
                },
                id: entry.id,
            }),
            Accepted::Recorded => {
                done.push(entry.id);
                None
            }
            Accepted::Rejected => {
                tracing::warn!(id = %entry.id, "poison stream entry acknowledged");
                status.stream(|s| s.poison += 1);
                done.push(entry.id);
                None
            }
        }
    }

    /// Hands the round's newest snapshot over (coalescing); it supersedes the others.
    async fn hand_candidate(
        &mut self,
        conn: &mut MultiplexedConnection,
        mut round: Round,
        cancel: &CancellationToken,
    ) -> Result<(), Fail> {
        self.ack_done(conn, &mut round).await?;
        if let Some(candidate) = round.candidate.take() {
            self.hand(conn, candidate, round.superseded_by_candidate, cancel)
                .await?;
        }
        Ok(())
    }

    /// Gives one snapshot to the handler and acknowledges it (with `superseded`) unless the
    /// handler asked to retry. False on retry.
    async fn hand(
        &mut self,
        conn: &mut MultiplexedConnection,
        candidate: Candidate,
        superseded: Vec<String>,
        cancel: &CancellationToken,
    ) -> Result<bool, Fail> {
        let Candidate { id, order, update } = candidate;
        let n = update.snapshot.matches.len();
        tracing::debug!(%id, "stream entry of {n} matches on {}", self.channel);
        let outcome = format!("queued (entry {id}, {n} matches)");
        let seq = self
            .shared
            .status
            .received(&self.channel, RecordKind::Matches, outcome);
        let (reply, mut rx) = oneshot::channel();
        self.shared.inbox.submit(StreamJob { seq, update, reply });
        // Cancel safety: the receiver is polled by reference and survives the branch; at
        // shutdown a job the worker has not started is taken back (the entry stays pending),
        // one it has started is waited for, so that an applied entry is acknowledged.
        let (outcome, stopping) = tokio::select! {
            biased;
            r = &mut rx => (r, false),
            _ = cancel.cancelled() => {
                if self.shared.inbox.withdraw() {
                    return Err(Fail::Shutdown);
                }
                (rx.await, true)
            }
        };
        let Ok(outcome) = outcome else {
            // The worker stopped before calling the handler.
            return Err(Fail::Shutdown);
        };
        if let HandlerOutcome::Retry { .. } = outcome {
            let delay = self.retry_backoff.next_delay();
            tracing::info!(%id, "the handler asked to retry; reading the entry again in {delay:.1?}");
            self.shared.status.stream(|s| s.retried += 1);
            self.retry_at = Some(Instant::now() + delay);
            self.pending_from = Some("0".into());
            return if stopping {
                Err(Fail::Shutdown)
            } else {
                Ok(false)
            };
        }
        self.retry_backoff.reset();
        if order.is_some() && order > self.handled_up_to {
            self.handled_up_to = order;
        }
        let count = superseded.len() as u64;
        let mut ids = superseded;
        ids.push(id);
        if stopping {
            // Best effort: unacknowledged, the entry is delivered again as a duplicate.
            let _ = tokio::time::timeout(SHUTDOWN_ACK_TIMEOUT, self.ack(conn, &ids)).await;
            return Err(Fail::Shutdown);
        }
        self.ack(conn, &ids).await?;
        self.shared.status.stream(|s| s.superseded += count);
        Ok(true)
    }

    /// Acknowledges the entries that needed no handler.
    async fn ack_done(
        &mut self,
        conn: &mut MultiplexedConnection,
        round: &mut Round,
    ) -> Result<(), Fail> {
        if round.done.is_empty() {
            return Ok(());
        }
        let ids = std::mem::take(&mut round.done);
        self.ack(conn, &ids).await?;
        let superseded = std::mem::take(&mut round.superseded);
        self.shared.status.stream(|s| s.superseded += superseded);
        Ok(())
    }
}

/// What one step read, sorted.
#[derive(Default)]
struct Round {
    /// Entries read in this step.
    read: usize,
    /// To acknowledge without the handler.
    done: Vec<String>,
    /// How many of `done` are snapshots older than one already handled.
    superseded: u64,
    /// The newest snapshot so far (coalescing).
    candidate: Option<Candidate>,
    /// Older snapshots of this round, acknowledged with the candidate.
    superseded_by_candidate: Vec<String>,
    /// Entries delivered again (own pending, claimed): see [`MatchUpdate::replay`].
    replay: bool,
}
