//! The executor: decodes nothing, plans and applies snapshots, one at a time.
//!
//! [`Engine`] owns the [`Store`] and an in-memory mirror of the stored matches (the planner's
//! input), behind one lock: two snapshots never interleave, whether they come from HTTP, Redis
//! or the CLI. Its methods block (SQLite); async callers run them with `spawn_blocking`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use fogis_pubsub::Snapshot;
use serde::Serialize;

use crate::ics::{self, FeedEvent, FeedOptions};
use crate::outbox::NewWork;
use crate::reconcile::{self, Action, Counts, Plan, StoredMatch};
use crate::sinks;
use crate::store::{LogEntry, QuarantineEntry, Store, StoreError};

/// How the engine places and shows events.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub timezone: chrono_tz::Tz,
    pub match_duration: Duration,
    /// `None`: no reminder.
    pub reminder_minutes: Option<u32>,
    pub calendar_name: String,
    /// Which sinks get outbox work.
    pub sinks: SinkFlags,
}

/// The sinks that are configured: their work is written to the outbox with each change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkFlags {
    pub caldav: bool,
    pub carddav: bool,
    pub forward: bool,
}

/// What applying one snapshot did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The message id was applied before: nothing was done.
    pub duplicate: bool,
    pub counts: Counts,
    pub message_id: Option<String>,
    /// Reasons of the rejected matches.
    pub rejections: Vec<String>,
    #[serde(skip)]
    pub plan: Plan,
}

/// Why a snapshot was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Every match of a non-empty list was rejected: applying it would empty the calendar.
    #[error("every match was rejected: {}", .0.join("; "))]
    AllRejected(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Inner {
    store: Store,
    state: HashMap<i64, StoredMatch>,
}

/// The single writer of the state.
pub struct Engine {
    inner: Mutex<Inner>,
    settings: EngineSettings,
    /// Bumped on every committed change; the feed cache is keyed by it.
    generation: AtomicU64,
    feed_cache: Mutex<Option<(u64, Arc<String>)>>,
    /// Bumped whenever outbox work is committed; sink workers wait on it.
    outbox_signal: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("settings", &self.settings)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(store: Store, settings: EngineSettings) -> Result<Engine, StoreError> {
        let state = store.load_matches()?;
        Ok(Engine {
            inner: Mutex::new(Inner { store, state }),
            settings,
            generation: AtomicU64::new(1),
            feed_cache: Mutex::new(None),
            outbox_signal: tokio::sync::watch::Sender::new(0),
        })
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
        let mut inner = self.lock();
        let message_id = snapshot.meta.message_id.clone();
        if let Some(id) = &message_id {
            if inner.store.is_processed(id)? {
                if !dry_run {
                    inner.store.log(&LogEntry {
                        at: now,
                        origin: origin.to_string(),
                        message_id: Some(id.clone()),
                        outcome: "duplicate".into(),
                        counts: None,
                        detail: None,
                    })?;
                }
                return Ok(Applied {
                    duplicate: true,
                    counts: Counts::default(),
                    message_id,
                    rejections: vec![],
                    plan: Plan::default(),
                });
            }
        }
        let plan = reconcile::plan(&inner.state, snapshot, self.settings.timezone, now);
        let rejections: Vec<String> = plan
            .changes
            .iter()
            .filter_map(|c| c.reason.clone())
            .collect();
        if plan.all_rejected() {
            return Err(ApplyError::AllRejected(rejections));
        }
        let counts = plan.counts();
        if !dry_run {
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
                counts: Some(counts),
                detail: (!rejections.is_empty()).then(|| rejections.join("; ")),
            };
            let work = self.outbox_work(&plan, snapshot);
            inner
                .store
                .commit(&writes, &raw, message_id.as_deref(), &log, &work)?;
            if !work.is_empty() {
                self.outbox_signal.send_modify(|g| *g += 1);
            }
            if !writes.is_empty() {
                for next in plan.writes() {
                    inner.state.insert(next.record.match_id, next.clone());
                }
                self.generation.fetch_add(1, Ordering::Release);
            }
        }
        Ok(Applied {
            duplicate: false,
            counts,
            message_id,
            rejections,
            plan,
        })
    }

    /// The sink work a plan causes: events that changed, the phonebook, the forwarded list.
    fn outbox_work(&self, plan: &Plan, snapshot: &Snapshot) -> Vec<NewWork> {
        let flags = self.settings.sinks;
        let changed: Vec<i64> = plan
            .changes
            .iter()
            .filter(|c| {
                matches!(
                    c.action,
                    Action::Create | Action::Update | Action::Cancel | Action::Withdraw
                )
            })
            .filter_map(|c| c.match_id)
            .collect();
        let mut work = Vec::new();
        if changed.is_empty() {
            return work;
        }
        if flags.caldav {
            work.extend(changed.iter().map(|id| NewWork {
                sink: sinks::CALDAV,
                key: id.to_string(),
                payload: None,
            }));
        }
        if flags.carddav {
            work.push(NewWork {
                sink: sinks::CARDDAV,
                key: sinks::PHONEBOOK_KEY.into(),
                payload: None,
            });
        }
        if flags.forward {
            work.push(NewWork {
                sink: sinks::FORWARD,
                key: sinks::SNAPSHOT_KEY.into(),
                payload: Some(sinks::forward::payload(snapshot).to_string()),
            });
        }
        work
    }

    /// Runs `f` on the store under the engine's lock (blocking).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.lock().store)
    }

    /// Wakes whenever outbox work is committed.
    pub fn outbox_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.outbox_signal.subscribe()
    }

    /// Tells sink workers to look at the outbox (after work was enqueued outside a snapshot).
    pub fn signal_outbox(&self) {
        self.outbox_signal.send_modify(|g| *g += 1);
    }

    /// One stored match.
    pub fn stored(&self, match_id: i64) -> Option<StoredMatch> {
        self.lock().state.get(&match_id).cloned()
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

    /// All stored matches, sorted by kick-off.
    pub fn matches(&self) -> Vec<StoredMatch> {
        let inner = self.lock();
        let mut all: Vec<StoredMatch> = inner.state.values().cloned().collect();
        all.sort_by_key(|m| (m.record.start, m.record.match_id));
        all
    }

    pub fn recent_log(&self, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        self.lock().store.recent_log(limit)
    }

    pub fn quarantined(&self, limit: usize) -> Result<Vec<QuarantineEntry>, StoreError> {
        self.lock().store.quarantined(limit)
    }

    /// A change counter: differs whenever the feed may differ.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The events the feed shows.
    pub fn feed_events(&self) -> Vec<FeedEvent> {
        self.matches()
            .into_iter()
            .filter(|m| m.presence.in_feed())
            .map(|m| self.event(&m))
            .collect()
    }

    /// The event of one stored match.
    pub fn event(&self, m: &StoredMatch) -> FeedEvent {
        let r = &m.record;
        FeedEvent {
            match_id: r.match_id,
            sequence: m.sequence,
            start: r.start,
            end: r.start + self.settings.match_duration,
            summary: r.title(),
            location: r.venue.clone(),
            geo: r.coordinates,
            description: r.description(),
            url: Some(r.match_url()),
            cancelled: r.cancelled,
            created: m.created_at,
            last_modified: m.changed_at,
        }
    }

    pub fn feed_options(&self) -> FeedOptions {
        FeedOptions {
            tz: self.settings.timezone,
            reminder_minutes: self.settings.reminder_minutes,
            calendar_name: self.settings.calendar_name.clone(),
            dtstamp: Utc::now(),
        }
    }

    /// The whole iCalendar feed, rendered once per change.
    pub fn feed(&self) -> Arc<String> {
        let generation = self.generation();
        let mut cache = self.feed_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, text)) = cache.as_ref() {
            if *g == generation {
                return text.clone();
            }
        }
        let text = Arc::new(ics::render_calendar(
            &self.feed_events(),
            &self.feed_options(),
        ));
        *cache = Some((generation, text.clone()));
        text
    }
}
