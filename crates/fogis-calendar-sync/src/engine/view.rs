//! The state as readers see it: an immutable [`StateView`], swapped whole after each commit.
//!
//! The engine publishes a new view after every commit it makes and whenever it notices that
//! another process (the CLI's `sync FILE`, `held apply`, `purge`) committed to the file. HTTP
//! handlers and sinks read the current view without a lock held across any work and without
//! SQL: `/health` answers while another process holds the state's write lock.

use std::sync::{Arc, OnceLock};

use chrono::Utc;
use tokio::sync::watch;

use crate::engine::EngineSettings;
use crate::reconcile::StoredMatch;
use crate::render::ics::{self, FeedEvent, FeedOptions};

/// One committed state.
#[derive(Debug)]
pub struct StateView {
    /// The persistent state version (`meta.state_version`): bumped in the same transaction as
    /// every change to the stored matches. 0: no list was ever applied.
    pub version: i64,
    /// Bumped whenever the stored matches change, local to this process (the feed's ETag).
    pub generation: u64,
    /// Every stored match, sorted by kick-off then id.
    pub matches: Vec<StoredMatch>,
    /// Lists held by the guard, waiting for an operator.
    pub pending_holds: u64,
    settings: Arc<EngineSettings>,
    /// The rendered feed, made on first use (off the async threads: see [`StateView::feed`]).
    feed: OnceLock<Arc<String>>,
}

impl StateView {
    pub fn new(
        version: i64,
        generation: u64,
        mut matches: Vec<StoredMatch>,
        pending_holds: u64,
        settings: Arc<EngineSettings>,
    ) -> StateView {
        matches.sort_by_key(|m| (m.record.start, m.record.match_id));
        StateView {
            version,
            generation,
            matches,
            pending_holds,
            settings,
            feed: OnceLock::new(),
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Whether a list was ever applied to this state (sinks delete nothing before).
    pub fn has_list(&self) -> bool {
        self.version > 0
    }

    /// One stored match.
    pub fn get(&self, match_id: i64) -> Option<&StoredMatch> {
        self.matches.iter().find(|m| m.record.match_id == match_id)
    }

    /// The event of one stored match.
    pub fn event(&self, m: &StoredMatch) -> FeedEvent {
        let r = &m.record;
        FeedEvent {
            match_id: r.match_id,
            sequence: m.sequence,
            start: r.start,
            end: r.start + self.settings.match_duration,
            summary: self.settings.title.render(r),
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

    /// The events the feed shows.
    pub fn feed_events(&self) -> Vec<FeedEvent> {
        self.matches
            .iter()
            .filter(|m| m.presence.in_feed())
            .map(|m| self.event(m))
            .collect()
    }

    /// The whole iCalendar feed, rendered once per view. CPU work: call it off the async
    /// threads when it may not be rendered yet.
    pub fn feed(&self) -> Arc<String> {
        self.feed
            .get_or_init(|| {
                Arc::new(ics::render_calendar(
                    &self.feed_events(),
                    &self.feed_options(),
                ))
            })
            .clone()
    }
}

/// The receiving end readers hold: the current view, and a wake-up when it is replaced.
pub type ViewWatch = watch::Receiver<Arc<StateView>>;
