//! The state as readers see it: an immutable [`StateView`], swapped whole after each commit.
//!
//! The engine publishes a new view after every commit it makes and whenever it notices that
//! another process (the CLI's `sync FILE`, `held apply`, `purge`) committed to the file. HTTP
//! handlers and sinks read the current view without a lock held across any work and without
//! SQL: `/health` answers while another process holds the state's write lock.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use chrono::Utc;
use serde::Serialize;
use tokio::sync::watch;

use crate::engine::EngineSettings;
use crate::reconcile::{Presence, StoredMatch};
use crate::render::ics::{self, FeedEvent, FeedOptions};

/// What one view holds, counted once when the view is made (after each commit): `/health`,
/// `/metrics` and the status page read these instead of walking every match per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ViewCounts {
    /// Every stored match.
    pub matches: usize,
    pub listed: usize,
    pub withdrawn: usize,
    pub archived: usize,
    /// Events the feed shows (listed and archived).
    pub in_feed: usize,
}

impl ViewCounts {
    /// Counts `matches` (one pass).
    pub fn of<M: std::borrow::Borrow<StoredMatch>>(matches: &[M]) -> ViewCounts {
        let mut c = ViewCounts {
            matches: matches.len(),
            ..ViewCounts::default()
        };
        for m in matches {
            let m = m.borrow();
            match m.presence {
                Presence::Listed => c.listed += 1,
                Presence::Withdrawn => c.withdrawn += 1,
                Presence::Archived => c.archived += 1,
            }
            if m.presence.in_feed() {
                c.in_feed += 1;
            }
        }
        c
    }

    /// Stored matches by presence, in the order `/metrics` lists them.
    pub fn by_presence(&self) -> [(Presence, usize); 3] {
        [
            (Presence::Listed, self.listed),
            (Presence::Withdrawn, self.withdrawn),
            (Presence::Archived, self.archived),
        ]
    }
}

/// One committed state.
#[derive(Debug)]
pub struct StateView {
    /// The persistent state version (`meta.state_version`): bumped in the same transaction as
    /// every change to the stored matches. 0: no list was ever applied.
    pub version: i64,
    /// Bumped whenever the stored matches change, local to this process (the feed's ETag).
    pub generation: u64,
    /// Every stored match, sorted by kick-off then id; shared with the engine's mirror and the
    /// other views (a view costs a pointer per match, not a copy of it).
    pub matches: Vec<Arc<StoredMatch>>,
    /// Lists held by the guard, waiting for an operator.
    pub pending_holds: u64,
    /// `matches` counted, once.
    pub counts: ViewCounts,
    settings: Arc<EngineSettings>,
    /// The rendered feed, made on first use (off the async threads: see [`StateView::feed`]).
    feed: OnceLock<Bytes>,
}

impl StateView {
    pub fn new(
        version: i64,
        generation: u64,
        mut matches: Vec<Arc<StoredMatch>>,
        pending_holds: u64,
        settings: Arc<EngineSettings>,
    ) -> StateView {
        matches.sort_by_key(|m| (m.record.start, m.record.match_id));
        let counts = ViewCounts::of(&matches);
        StateView {
            version,
            generation,
            matches,
            pending_holds,
            counts,
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
        self.matches
            .iter()
            .find(|m| m.record.match_id == match_id)
            .map(|m| &**m)
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

    /// The whole iCalendar feed, rendered once per view; every caller shares its bytes (a
    /// clone is a reference count, never a copy). CPU work: call it off the async threads when
    /// it may not be rendered yet.
    pub fn feed(&self) -> Bytes {
        self.feed
            .get_or_init(|| {
                Bytes::from(ics::render_calendar(
                    &self.feed_events(),
                    &self.feed_options(),
                ))
            })
            .clone()
    }
}

/// The receiving end readers hold: the current view, and a wake-up when it is replaced.
pub type ViewWatch = watch::Receiver<Arc<StateView>>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, TimeZone};
    use fogis_pubsub::{Kickoff, Match, MatchForm, MessageForm, Meta, Snapshot};
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    }

    fn list(n: usize, matches: &[(i64, i64, bool)]) -> Snapshot {
        Snapshot {
            meta: Meta {
                message_id: Some(format!("counts-{n}")),
                ..Meta::default()
            },
            form: MessageForm::BareList,
            matches: matches
                .iter()
                .map(|&(id, days, cancelled)| Match {
                    match_id: id,
                    form: MatchForm::Raw,
                    home_team: Some(format!("Home {id}")),
                    away_team: Some(format!("Away {id}")),
                    kickoff: Kickoff::Utc(now() + Duration::days(days)),
                    // What a held list is decoded from again when an operator applies it.
                    raw: serde_json::json!({
                        "matchid": id,
                        "lag1namn": format!("Home {id}"),
                        "lag2namn": format!("Away {id}"),
                        "tid": format!("/Date({})/", (now() + Duration::days(days)).timestamp_millis()),
                        "installd": cancelled,
                        "domaruppdraglista": [],
                        "kontaktpersoner": [],
                    }),
                    cancelled: Some(cancelled),
                    match_nr: None,
                    venue: None,
                    venue_address: None,
                    coordinates: None,
                    competition: None,
                    postponed: None,
                    interrupted: None,
                    referees: Some(vec![]),
                    team_contacts: Some(vec![]),
                })
                .collect(),
            rejected: vec![],
            has_changes: None,
            metadata: serde_json::Value::Null,
        }
    }

    fn engine_in(dir: &std::path::Path) -> crate::engine::Engine {
        let store = crate::store::Store::open_dir(dir).unwrap();
        let opts = crate::config::StateOpts {
            data_dir: dir.to_path_buf(),
            timezone: chrono_tz::Europe::Stockholm,
            match_duration_minutes: 120,
            reminder_minutes: 0,
            calendar_name: "counts".into(),
            hold_withdraw_share: 0.5,
            hold_min_withdrawals: 2,
            max_matches_per_snapshot: 100,
            user_referee_number: None,
            event_title: crate::render::title::DEFAULT_TEMPLATE.into(),
        };
        crate::engine::Engine::new(store, crate::engine::engine_settings(&opts)).unwrap()
    }

    /// Counted again, the slow way, without [`ViewCounts::of`].
    fn recount(v: &StateView) -> ViewCounts {
        let n = |p: Presence| v.matches.iter().filter(|m| m.presence == p).count();
        ViewCounts {
            matches: v.matches.len(),
            listed: n(Presence::Listed),
            withdrawn: n(Presence::Withdrawn),
            archived: n(Presence::Archived),
            in_feed: v.matches.iter().filter(|m| m.presence.in_feed()).count(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Lists of random matches (past and future, some cancelled, some lists withdrawing
        /// most, some empty and held, some holds then applied by an operator): after every
        /// commit, the counts the view carries are what a recount of its matches finds.
        #[test]
        fn the_counts_a_view_carries_equal_a_recount_after_every_commit(
            history in proptest::collection::vec(
                (
                    proptest::collection::btree_map(1i64..40, (-60i64..60, any::<bool>()), 0..12),
                    any::<bool>(),
                ),
                1..8,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let engine = engine_in(dir.path());
            prop_assert_eq!(engine.view().counts, ViewCounts::default());
            for (i, (matches, confirm)) in history.into_iter().enumerate() {
                let matches: Vec<_> = matches.into_iter().map(|(id, (d, c))| (id, d, c)).collect();
                let _ = engine.apply_at(&list(i, &matches), "test", false, now());
                let newest_hold = engine.holds().unwrap().into_iter().filter(|h| h.state == "pending").map(|h| h.id).max();
                if let (true, Some(id)) = (confirm, newest_hold) {
                    engine.apply_held(id, "operator").unwrap();
                }
                let v = engine.view();
                prop_assert_eq!(v.counts, recount(&v));
                prop_assert_eq!(v.counts.matches, engine.matches().len());
            }
        }
    }

    #[test]
    fn views_share_the_matches_a_commit_did_not_change() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_in(dir.path());
        engine
            .apply_at(
                &list(0, &[(7, 3, false), (8, 4, false)]),
                "test",
                false,
                now(),
            )
            .unwrap();
        let before = engine.view();
        // Match 8 moves a day; match 7 stays as it was.
        engine
            .apply_at(
                &list(1, &[(7, 3, false), (8, 5, false)]),
                "test",
                false,
                now(),
            )
            .unwrap();
        let after = engine.view();
        let of = |v: &StateView, id: i64| {
            v.matches
                .iter()
                .find(|m| m.record.match_id == id)
                .unwrap()
                .clone()
        };
        // One allocation for match 7 in both views (and the engine's mirror), not a copy each.
        assert!(Arc::ptr_eq(&of(&before, 7), &of(&after, 7)));
        assert!(!Arc::ptr_eq(&of(&before, 8), &of(&after, 8)));
        assert_eq!(of(&after, 8).record.start, now() + Duration::days(5));
        assert_eq!(of(&before, 8).record.start, now() + Duration::days(4));
    }

    #[test]
    fn the_feed_is_rendered_once_and_shared_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_in(dir.path());
        engine
            .apply_at(&list(0, &[(7, 3, false)]), "test", false, now())
            .unwrap();
        let (a, b) = (engine.feed(), engine.feed());
        assert!(std::str::from_utf8(&a).unwrap().contains("Home 7"));
        // One buffer: the second call is a reference count on the first render.
        assert_eq!((a.as_ptr(), a.len()), (b.as_ptr(), b.len()));
    }
}
