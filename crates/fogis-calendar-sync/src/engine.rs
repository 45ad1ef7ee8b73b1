//! The executor: decodes nothing, plans and applies snapshots, one at a time.
//!
//! [`Engine`] owns the [`Store`] and an in-memory mirror of the stored matches (the planner's
//! input), behind one lock: two snapshots never interleave, whether they come from HTTP, Redis
//! or the CLI. Its methods that take `&self` and touch the store block (SQLite); async callers
//! run them with `spawn_blocking`.
//!
//! A commit records that the state changed (the persistent state version, see
//! [`Store::state_version`]) and nothing about who consumes it: sinks reconcile the state
//! against their own ledgers ([`crate::sinks`]). After each commit, and when [`Engine::refresh`]
//! notices another process's commit, the engine publishes a new [`StateView`], which readers
//! take without a lock or SQL ([`Engine::view`], [`Engine::watch`]).

pub mod checkpoint;
pub mod retention;
pub mod view;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use fogis_pubsub::Snapshot;
use serde::Serialize;

use crate::engine::view::{StateView, ViewWatch};
use crate::model::People;
use crate::reconcile::{self, Counts, Plan, Presence, StoredMatch};
use crate::render::ics::{FeedEvent, FeedOptions};
use crate::store::holds::Resolution;
use crate::store::{CommitExtra, LogEntry, QuarantineEntry, Store, StoreError};

/// Opens the state and builds the engine. It knows no sink: every sink, of this process or a
/// later one, reconciles what it commits.
pub fn open_engine(opts: &crate::config::StateOpts) -> anyhow::Result<Engine> {
    use anyhow::Context;
    let store = Store::open_dir(&opts.data_dir)
        .with_context(|| format!("opening the state in {}", opts.data_dir.display()))?;
    Ok(Engine::new(store, engine_settings(opts))?)
}

pub fn engine_settings(opts: &crate::config::StateOpts) -> EngineSettings {
    EngineSettings {
        timezone: opts.timezone,
        match_duration: Duration::minutes(i64::from(opts.match_duration_minutes)),
        reminder_minutes: (opts.reminder_minutes > 0).then_some(opts.reminder_minutes),
        calendar_name: opts.calendar_name.clone(),
        hold: crate::reconcile::guard::HoldPolicy {
            withdraw_share: opts.hold_withdraw_share.clamp(0.0, 1.0),
            min_withdrawals: opts.hold_min_withdrawals,
        },
        max_matches: opts.max_matches_per_snapshot,
        title: crate::render::title::TitleTemplate::new(
            &opts.event_title,
            opts.user_referee_number.as_deref(),
        ),
    }
}

/// How the engine places and shows events.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub timezone: chrono_tz::Tz,
    pub match_duration: Duration,
    /// `None`: no reminder.
    pub reminder_minutes: Option<u32>,
    pub calendar_name: String,
    /// The guard against emptying the calendar.
    pub hold: crate::reconcile::guard::HoldPolicy,
    /// Largest list accepted.
    pub max_matches: usize,
    /// `EVENT_TITLE`.
    pub title: crate::render::title::TitleTemplate,
}

/// What became of one snapshot that was not refused: decided once, in
/// [`Engine::apply_with`]; every caller (HTTP status, metric label, log line, stream ack)
/// matches on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Committed (possibly changing nothing: the same list under a new id).
    Applied,
    /// The message id was applied before: nothing was done.
    Duplicate,
    /// A catch-up copy older than the list last applied: skipped.
    Stale,
    /// Kept back by the guard (see [`crate::store::holds`]); the counts say what it would do.
    Held(HeldInfo),
}

impl Outcome {
    /// One word for metrics, logs and the sync log.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::Held(_) => "held",
        }
    }
}

/// What applying one snapshot did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub outcome: Outcome,
    pub counts: Counts,
    pub message_id: Option<String>,
    /// Reasons of the rejected matches.
    pub rejections: Vec<String>,
    #[serde(skip)]
    pub plan: Plan,
}

impl Applied {
    /// The hold, when the list was held.
    pub fn held(&self) -> Option<&HeldInfo> {
        match &self.outcome {
            Outcome::Held(h) => Some(h),
            _ => None,
        }
    }
}

/// A list kept back by the guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldInfo {
    pub id: i64,
    pub reason: String,
}

/// How [`Engine::apply_with`] applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyMode {
    /// Plan only.
    pub dry_run: bool,
    /// Skip the guard against emptying the calendar: an operator applies this held list.
    pub operator_applies: Option<i64>,
    /// The list is a copy read by another path than the live one (the catch-up key read on a
    /// reconnect): skipped as stale when its envelope timestamp is older than that of the list
    /// applied last. Live pub/sub lists and stream entries are never skipped for their
    /// timestamp: they arrive in publish order, and the publisher's clock may step back.
    pub catch_up: bool,
    /// A pulled list ([`crate::ingest::pull`]): skipped as stale when a list from another source was
    /// applied since [`Engine::live_applied`] said this (the pull may be older than that one).
    pub unless_live_since: Option<u64>,
}

/// The `meta` key of the envelope timestamp of the list applied last.
const LAST_APPLIED_TIMESTAMP: &str = "last_redis_timestamp";
/// The `meta` key of the last list that changed the state, as received (see [`last_list`]).
pub const LAST_LIST: &str = "last_list";

/// Why a snapshot was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Every match of a non-empty list was rejected: applying it would empty the calendar.
    #[error("every match was rejected: {}", .0.join("; "))]
    AllRejected(Vec<String>),
    /// More matches than `MAX_MATCHES_PER_SNAPSHOT`.
    #[error("the list has {size} matches, more than MAX_MATCHES_PER_SNAPSHOT ({limit})")]
    TooManyMatches { size: usize, limit: usize },
    #[error("no pending held list #{0}")]
    NoSuchHold(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Inner {
    store: Store,
    /// The mirror of the stored matches. Each match is shared with every view that shows it
    /// (one allocation per match, not one per view and one for the mirror).
    state: HashMap<i64, Arc<StoredMatch>>,
    /// `data_version` when the file was last looked at for other processes' commits.
    data_version: i64,
    /// The state version `state` equals.
    state_version: i64,
    /// Pending holds when the view was last published.
    pending_holds: u64,
    /// Bumped whenever the mirror changes (the feed's ETag); local to this process.
    generation: u64,
    /// The one copy of each person the mirror's matches name.
    people: People,
}

/// The single writer of the state.
pub struct Engine {
    inner: Mutex<Inner>,
    settings: Arc<EngineSettings>,
    /// The current view of the state; replaced after each commit.
    view: tokio::sync::watch::Sender<Arc<StateView>>,
    /// Lists applied from sources other than the pull (under the lock, after their commit).
    live_applied: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("settings", &self.settings)
            .field("version", &self.view.borrow().version)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(store: Store, settings: EngineSettings) -> Result<Engine, StoreError> {
        let mut people = People::default();
        let state = shared(store.load_matches(|m| people.share(&mut m.record))?);
        let data_version = store.data_version()?;
        let state_version = store.state_version()?;
        let pending_holds = store.pending_holds()?;
        let settings = Arc::new(settings);
        let inner = Inner {
            store,
            state,
            data_version,
            state_version,
            pending_holds,
            generation: 1,
            people,
        };
        let view = tokio::sync::watch::Sender::new(view_of(&inner, &settings));
        Ok(Engine {
            inner: Mutex::new(inner),
            settings,
            view,
            live_applied: AtomicU64::new(0),
        })
    }

    /// The current view of the state: no lock held, no SQL.
    pub fn view(&self) -> Arc<StateView> {
        self.view.borrow().clone()
    }

    /// The current view, and a wake-up whenever it is replaced.
    pub fn watch(&self) -> ViewWatch {
        self.view.subscribe()
    }

    /// Publishes the view of `inner` (after a commit, or another process's commit was seen).
    fn publish(&self, inner: &Inner) {
        self.view.send_replace(view_of(inner, &self.settings));
    }

    /// Looks for another process's commit (the CLI next to a running service) and publishes
    /// the state it made. Blocking (SQLite): the service polls it on a blocking thread.
    pub fn refresh(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.reload_if_changed(&mut inner)
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half-written: the store commits
        // whole transactions and the mirror is replaced only after a commit. So a poisoned lock
        // is safe to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plans `snapshot` and, unless `dry_run`, applies it in one transaction.
    pub fn apply(
        &self,
        snapshot: &Snapshot,
        origin: &str,
        dry_run: bool,
    ) -> Result<Applied, ApplyError> {
        self.apply_at(snapshot, origin, dry_run, Utc::now())
    }

    /// [`Engine::apply`] with an explicit clock (tests).
    pub fn apply_at(
        &self,
        snapshot: &Snapshot,
        origin: &str,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<Applied, ApplyError> {
        let mode = ApplyMode {
            dry_run,
            ..ApplyMode::default()
        };
        self.apply_with(snapshot, origin, mode, now)
    }

    /// The one place a snapshot is applied: duplicate check, plan, the guard against emptying
    /// the calendar (unless an operator applies a held list), commit.
    pub fn apply_with(
        &self,
        snapshot: &Snapshot,
        origin: &str,
        mode: ApplyMode,
        now: DateTime<Utc>,
    ) -> Result<Applied, ApplyError> {
        let size = snapshot.matches.len() + snapshot.rejected.len();
        if size > self.settings.max_matches {
            return Err(ApplyError::TooManyMatches {
                size,
                limit: self.settings.max_matches,
            });
        }
        let mut inner = self.lock();
        // One transaction for everything below, reads included: the checks see the state the
        // writes are made against, and another writer (the CLI) cannot commit in between. One
        // transaction instead of four also halves the file-lock system calls of a snapshot
        // (BENCHMARKS.md, steady lag). A dry run only reads.
        inner.store.begin(!mode.dry_run)?;
        let result = self.apply_in_transaction(&mut inner, snapshot, origin, mode, now);
        let keep = result.is_ok() && !mode.dry_run;
        inner.store.end(keep)?;
        let applied = result?;
        // The mirror and the view follow the file only once the transaction is committed.
        if keep && applied.outcome != Outcome::Duplicate {
            if applied.outcome == Outcome::Applied {
                let writes: Vec<&StoredMatch> = applied.plan.writes().collect();
                if !writes.is_empty() {
                    for next in writes {
                        let mut next = next.clone();
                        inner.people.share(&mut next.record);
                        inner.state.insert(next.record.match_id, Arc::new(next));
                    }
                    // The commit bumped it (Store::commit), under the lock taken above.
                    inner.state_version += 1;
                    inner.generation += 1;
                }
            }
            // A held list, or the holds a list resolved, change what the view shows too. The
            // list is committed: a failure to count them must not report it as failed.
            match inner.store.pending_holds() {
                Ok(n) => inner.pending_holds = n,
                Err(e) => tracing::error!(error = %e, "could not count the held lists"),
            }
            self.publish(&inner);
        }
        // Still under the lock: a pull applying after this sees it.
        if keep
            && applied.outcome == Outcome::Applied
            && origin != crate::reconcile::guard::PULL_ORIGIN
        {
            self.live_applied.fetch_add(1, Ordering::AcqRel);
        }
        Ok(applied)
    }

    /// How many lists from sources other than the pull were applied (see
    /// [`ApplyMode::unless_live_since`]).
    pub fn live_applied(&self) -> u64 {
        self.live_applied.load(Ordering::Acquire)
    }

    /// [`Engine::apply_with`] inside its transaction: nothing here commits, and the mirror is
    /// left alone (it is reloaded here only when another connection changed the file).
    fn apply_in_transaction(
        &self,
        inner: &mut Inner,
        snapshot: &Snapshot,
        origin: &str,
        mode: ApplyMode,
        now: DateTime<Utc>,
    ) -> Result<Applied, ApplyError> {
        self.reload_if_changed(inner)?;
        let message_id = snapshot.meta.message_id.clone();
        let mut applied = Applied {
            outcome: Outcome::Applied,
            counts: Counts::default(),
            message_id: message_id.clone(),
            rejections: vec![],
            plan: Plan::default(),
        };
        if let Some(id) = &message_id {
            if inner.store.is_processed(id)? {
                if !mode.dry_run {
                    inner.store.log(&LogEntry {
                        at: now,
                        origin: origin.to_string(),
                        message_id: Some(id.clone()),
                        outcome: "duplicate".into(),
                        counts: None,
                        detail: None,
                    })?;
                }
                applied.outcome = Outcome::Duplicate;
                return Ok(applied);
            }
        }
        if mode
            .unless_live_since
            .is_some_and(|since| self.live_applied() != since)
        {
            if !mode.dry_run {
                inner.store.log(&LogEntry {
                    at: now,
                    origin: origin.to_string(),
                    message_id: message_id.clone(),
                    outcome: "stale".into(),
                    counts: None,
                    detail: Some(
                        "a list from another source was applied while it was fetched".into(),
                    ),
                })?;
            }
            tracing::info!(%origin, "a list from another source was applied while this one was fetched: dropped");
            applied.outcome = Outcome::Stale;
            return Ok(applied);
        }
        let sent_at = snapshot.meta.timestamp;
        if let Some(sent) = sent_at.filter(|_| mode.catch_up) {
            let last = inner
                .store
                .get_meta(LAST_APPLIED_TIMESTAMP)?
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok());
            if let Some(last) = last.filter(|last| sent < *last) {
                if !mode.dry_run {
                    inner.store.log(&LogEntry {
                        at: now,
                        origin: origin.to_string(),
                        message_id: message_id.clone(),
                        outcome: "stale".into(),
                        counts: None,
                        detail: Some(format!(
                            "sent {sent}, older than the list applied last (sent {last})"
                        )),
                    })?;
                }
                tracing::info!(%origin, message_id = ?message_id, sent = %sent, last_applied = %last, "stale list skipped: older than the list applied last");
                applied.outcome = Outcome::Stale;
                return Ok(applied);
            }
        }
        let plan = reconcile::plan(&inner.state, snapshot, self.settings.timezone, now);
        applied.rejections = plan
            .changes
            .iter()
            .filter_map(|c| c.reason.clone())
            .collect();
        if plan.all_rejected() {
            return Err(ApplyError::AllRejected(applied.rejections));
        }
        applied.counts = plan.counts();
        let mut resolution = Resolution {
            by: origin,
            hold: None,
            only_from: (origin == crate::reconcile::guard::PULL_ORIGIN).then_some(origin),
        };
        if let Some(id) = mode.operator_applies {
            resolution.hold = Some((id, "applied"));
        } else {
            let future = inner
                .state
                .values()
                .filter(|m| m.presence == Presence::Listed && m.record.start > now)
                .count();
            if let Some(reason) =
                self.settings
                    .hold
                    .check(snapshot, future, applied.counts.withdrawn)
            {
                if let Some(id) = inner.store.confirming_hold(snapshot, origin)? {
                    resolution.hold = Some((id, "confirmed"));
                    tracing::warn!(%origin, held_id = id, %reason, "a held list was confirmed by an independent source (FOGIS itself): applying it");
                } else {
                    let info = self.hold(inner, snapshot, origin, mode, now, &applied, reason)?;
                    applied.outcome = Outcome::Held(info);
                    applied.plan = plan;
                    return Ok(applied);
                }
            }
        }
        if !mode.dry_run {
            let writes: Vec<&StoredMatch> = plan.writes().collect();
            let raw: HashMap<i64, &serde_json::Value> = snapshot
                .matches
                .iter()
                .map(|m| (m.match_id, &m.raw))
                .collect();
            let log = LogEntry {
                at: now,
                origin: origin.to_string(),
                message_id: message_id.clone(),
                outcome: "applied".into(),
                counts: Some(applied.counts),
                detail: (!applied.rejections.is_empty()).then(|| applied.rejections.join("; ")),
            };
            // The list's timestamp, the list that changed the state and the holds it resolves
            // go in the same transaction.
            let mut meta: Vec<(&str, String)> = sent_at
                .map(|sent| (LAST_APPLIED_TIMESTAMP, sent.to_rfc3339()))
                .into_iter()
                .collect();
            if !writes.is_empty() {
                meta.push((LAST_LIST, last_list_text(snapshot)));
            }
            let extra = CommitExtra {
                meta,
                resolve_holds: Some(resolution),
            };
            inner
                .store
                .commit(&writes, &raw, message_id.as_deref(), &log, &extra)?;
        }
        applied.plan = plan;
        Ok(applied)
    }

    /// Keeps `snapshot` back; a repeat of a pending list is folded into its hold (repetition
    /// is no evidence, and a broken producer repeats every cycle).
    #[allow(clippy::too_many_arguments)]
    fn hold(
        &self,
        inner: &mut Inner,
        snapshot: &Snapshot,
        origin: &str,
        mode: ApplyMode,
        now: DateTime<Utc>,
        applied: &Applied,
        reason: String,
    ) -> Result<HeldInfo, ApplyError> {
        if mode.dry_run {
            return Ok(HeldInfo { id: 0, reason });
        }
        let repeat = inner
            .store
            .pending_hold_of(snapshot)?
            .filter(|(_, held_origin)| !crate::reconcile::guard::independent(origin, held_origin));
        let id = match repeat {
            Some((id, _)) => {
                inner.store.count_repeat(id)?;
                id
            }
            None => inner.store.hold(origin, snapshot, &reason)?,
        };
        inner.store.log(&LogEntry {
            at: now,
            origin: origin.to_string(),
            message_id: applied.message_id.clone(),
            outcome: "held".into(),
            counts: Some(applied.counts),
            detail: Some(reason.clone()),
        })?;
        if repeat.is_some() {
            tracing::warn!(%origin, held_id = id, %reason, "the held list came again: still held (a repeat is no confirmation)");
        } else {
            tracing::warn!(%origin, held_id = id, %reason, "list held, not applied: apply it with POST /held/{id}/apply or `fogis-calendar-sync held apply {id}`");
        }
        Ok(HeldInfo { id, reason })
    }

    /// Applies a held list on an operator's word.
    pub fn apply_held(&self, id: i64, origin: &str) -> Result<Applied, ApplyError> {
        let body = self
            .fresh()?
            .store
            .held_body(id)?
            .ok_or(ApplyError::NoSuchHold(id))?;
        let snapshot = match fogis_pubsub::decode(body.as_bytes()) {
            Ok(fogis_pubsub::Message::Matches(s)) => s,
            _ => return Err(ApplyError::NoSuchHold(id)),
        };
        let mode = ApplyMode {
            operator_applies: Some(id),
            ..ApplyMode::default()
        };
        let applied = self.apply_with(&snapshot, origin, mode, Utc::now())?;
        Ok(applied)
    }

    /// Drops a held list.
    pub fn discard_held(&self, id: i64) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let done = inner.store.resolve_hold(id, "discarded", "operator")?;
        inner.pending_holds = inner.store.pending_holds()?;
        self.publish(&inner);
        Ok(done)
    }

    /// The newest holds, pending first.
    pub fn holds(&self) -> Result<Vec<crate::store::holds::Held>, StoreError> {
        self.lock().store.holds(50)
    }

    /// Pending holds, as the current view shows them.
    pub fn pending_holds(&self) -> u64 {
        self.view.borrow().pending_holds
    }

    /// The lock, with the mirror reloaded when another process (the CLI) wrote to the file.
    fn fresh(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let mut inner = self.lock();
        self.reload_if_changed(&mut inner)?;
        Ok(inner)
    }

    /// Reloads the mirror when another connection (the CLI) committed a change to the file
    /// since it was last looked at, and publishes the view. The engine's own commits do not
    /// change `data_version`; the sinks' ledger writes do, but leave the state version alone.
    fn reload_if_changed(&self, inner: &mut Inner) -> Result<(), StoreError> {
        let version = inner.store.data_version()?;
        if version == inner.data_version {
            return Ok(());
        }
        inner.data_version = version;
        let state_version = inner.store.state_version()?;
        let pending_holds = inner.store.pending_holds()?;
        let moved = state_version != inner.state_version;
        if moved {
            let mut people = People::default();
            inner.state = shared(inner.store.load_matches(|m| people.share(&mut m.record))?);
            inner.people = people;
            inner.state_version = state_version;
            inner.generation += 1;
        }
        if moved || pending_holds != inner.pending_holds {
            inner.pending_holds = pending_holds;
            self.publish(inner);
        }
        Ok(())
    }

    /// Runs `f` on the store under the engine's lock (blocking).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.lock().store)
    }

    /// One stored match, as the current view shows it.
    pub fn stored(&self, match_id: i64) -> Option<StoredMatch> {
        self.view().get(match_id).cloned()
    }

    /// Keeps a rejected input for inspection. Never fails the caller: a failure is logged.
    pub fn quarantine(&self, origin: &str, reason: &str, raw: &[u8]) {
        let mut inner = self.lock();
        if let Err(e) = inner.store.quarantine(origin, reason, raw, raw.len()) {
            tracing::error!(error = %e, "could not keep a rejected input in the quarantine");
        }
        let entry = LogEntry {
            at: Utc::now(),
            origin: origin.to_string(),
            message_id: None,
            outcome: "rejected".into(),
            counts: None,
            detail: Some(reason.to_string()),
        };
        if let Err(e) = inner.store.log(&entry) {
            tracing::error!(error = %e, "could not write the sync log");
        }
    }

    /// All stored matches, sorted by kick-off, as the current view shows them (no lock, no
    /// SQL: another process's commit shows once [`Engine::refresh`] saw it).
    pub fn matches(&self) -> Vec<StoredMatch> {
        self.view().matches.iter().map(|m| (**m).clone()).collect()
    }

    pub fn recent_log(&self, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        self.lock().store.recent_log(limit)
    }

    pub fn quarantined(&self, limit: usize) -> Result<Vec<QuarantineEntry>, StoreError> {
        self.lock().store.quarantined(limit)
    }

    /// A change counter: differs whenever the feed may differ.
    pub fn generation(&self) -> u64 {
        self.view.borrow().generation
    }

    /// The events the feed shows.
    pub fn feed_events(&self) -> Vec<FeedEvent> {
        self.view().feed_events()
    }

    /// The event of one stored match.
    pub fn event(&self, m: &StoredMatch) -> FeedEvent {
        self.view().event(m)
    }

    pub fn feed_options(&self) -> FeedOptions {
        self.view().feed_options()
    }

    /// The whole iCalendar feed, rendered once per view (CPU work: off the async threads).
    pub fn feed(&self) -> axum::body::Bytes {
        self.view().feed()
    }
}

/// The loaded matches, each in its own shared allocation.
fn shared(loaded: HashMap<i64, StoredMatch>) -> HashMap<i64, Arc<StoredMatch>> {
    loaded
        .into_iter()
        .map(|(id, m)| (id, Arc::new(m)))
        .collect()
}

fn view_of(inner: &Inner, settings: &Arc<EngineSettings>) -> Arc<StateView> {
    Arc::new(StateView::new(
        inner.state_version,
        inner.generation,
        inner.state.values().cloned().collect(),
        inner.pending_holds,
        settings.clone(),
    ))
}

/// The last list that changed the state, as received: its accepted matches' raw JSON, its
/// metadata and envelope. Part of the state (what the matches came from), kept whole because a
/// consumer that repeats the list (the forward sink) needs it whole.
///
/// [`last_list_text`] writes the same text without building this value.
pub fn last_list(snapshot: &Snapshot) -> serde_json::Value {
    let matches: Vec<&serde_json::Value> = snapshot.matches.iter().map(|m| &m.raw).collect();
    serde_json::json!({
        "matches": matches,
        "metadata": snapshot.metadata,
        "message_id": snapshot.meta.message_id,
        "timestamp": snapshot.meta.timestamp,
    })
}

/// [`last_list`] as JSON text, serialised from the snapshot as it is (the fields in the same,
/// alphabetical, order): no copy of every match's raw JSON first. Per applied list this was a
/// fifth of the steady path's instructions (BENCHMARKS.md, the steady profile).
pub fn last_list_text(snapshot: &Snapshot) -> String {
    #[derive(Serialize)]
    struct LastList<'a> {
        matches: Vec<&'a serde_json::Value>,
        message_id: &'a Option<String>,
        metadata: &'a serde_json::Value,
        timestamp: &'a Option<DateTime<Utc>>,
    }
    let list = LastList {
        matches: snapshot.matches.iter().map(|m| &m.raw).collect(),
        message_id: &snapshot.meta.message_id,
        metadata: &snapshot.metadata,
        timestamp: &snapshot.meta.timestamp,
    };
    // Values and timestamps always serialise; should that ever change, the slow way says the
    // same.
    serde_json::to_string(&list).unwrap_or_else(|_| last_list(snapshot).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_list_text_is_the_last_list_value_written_out() {
        for fixture in [
            &include_bytes!("../../../fixtures/processor_match_updates.json")[..],
            include_bytes!("../../../fixtures/enhanced_v2.json"),
            include_bytes!("../../../fixtures/seed_flat.json"),
        ] {
            let fogis_pubsub::Message::Matches(snapshot) =
                fogis_pubsub::decode(fixture).expect("a fixture decodes")
            else {
                panic!("a match list fixture");
            };
            assert!(!snapshot.matches.is_empty());
            assert_eq!(last_list_text(&snapshot), last_list(&snapshot).to_string());
        }
    }
}
