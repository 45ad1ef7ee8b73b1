//! The CalDAV calendar sink: one resource per match, holding the same VEVENT the feed shows.
//!
//! Resources are named `fogis-match-{id}.ics`; a resource that already carries our UID under
//! another name (written by an earlier install, or by hand) is adopted instead of duplicated.
//! Creates use `If-None-Match: *`, updates `If-Match` with the stored ETag; a 412 means the
//! resource changed or already exists, so its ETag is re-read and the write repeated (the state
//! is the truth). Withdrawn matches are deleted, when this sink wrote their event, with
//! `If-Match` (an event someone edited since we wrote it is left in place); cancelled ones are
//! written with `STATUS:CANCELLED`. A server that refuses one event (a 403 naming a
//! precondition) fails that match alone. Each pass plans with [`crate::sinks::plan`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::view::StateView;
use crate::render::ics;
use crate::sinks::content::{self, ADOPTED};
use crate::sinks::dav::{DavClient, DavError};
use crate::sinks::listing::{self, Found, Watch};
use crate::sinks::plan::{self, Step};
use crate::sinks::{known_of, write_over, Planned, SinkContext, SinkError, CALDAV};
use crate::store::ledger::SinkItem;

const CONTENT_TYPE: &str = "text/calendar; charset=utf-8";

/// Writes events to one CalDAV calendar collection.
#[derive(Debug)]
pub struct CalDavSink {
    client: DavClient,
    display_name: String,
    watch: Watch,
}

impl CalDavSink {
    pub fn new(
        url: &str,
        username: Option<String>,
        password: Option<String>,
        timeout: Duration,
        display_name: String,
    ) -> Result<Self, DavError> {
        Ok(CalDavSink {
            client: DavClient::new(url, username, password, timeout)?,
            display_name,
            watch: Watch::default(),
        })
    }

    pub fn target(&self) -> String {
        self.client.collection_url().to_string()
    }

    /// Creates the calendar when missing (once per start).
    ///
    /// `takeover` (a new grant of the sink lease): the other instance of the pair may have
    /// written, rewritten or deleted events since this ledger was written, so the next pass
    /// lists the calendar whatever its change tag says, and what it finds is the pair's own
    /// ([`content::TAKEN`]): rewritten from this state when it differs, deleted when its match
    /// is withdrawn.
    pub async fn prepare(&self, _ctx: &SinkContext, takeover: bool) -> Result<(), SinkError> {
        self.client.ensure_calendar(&self.display_name).await?;
        if takeover {
            self.watch.take_over();
        }
        Ok(())
    }

    /// Before a pass: when the calendar changed since the last pass (or at the start, for a
    /// server without change tags), lists it and records what it learns
    /// ([`listing::reconcile`]): resources carrying our UIDs the ledger does not know where
    /// they are are adopted with the hash of their content lines (after [`ADOPTED`]: found,
    /// not written by us), edited ones likewise, deleted ones forgotten.
    pub async fn refresh(&self, ctx: &SinkContext) -> Result<(), SinkError> {
        if !self.watch.must_list(&self.client, ctx, CALDAV).await? {
            return Ok(());
        }
        let found = self.client.find_uids().await?;
        let names: BTreeSet<String> = found.iter().map(|r| r.name.clone()).collect();
        let ours: Vec<Found> = found
            .into_iter()
            .filter_map(|r| {
                let uid = r.uid?;
                let id = match_id_of_uid(&uid)?;
                Some(Found {
                    key: id.to_string(),
                    uid,
                    name: r.name,
                    etag: r.etag,
                    data: r.data,
                })
            })
            .collect();
        let items = ctx.items(CALDAV).await?;
        let takeover = self.watch.taking_over();
        let learned = listing::reconcile(ours, &names, &items, takeover, |_, d| event_lines(d));
        ctx.learn(CALDAV, learned).await?;
        self.watch.listed();
        Ok(())
    }

    /// After a pass: the calendar's change tag stored for the next one.
    pub async fn settle(&self, ctx: &SinkContext, wrote: bool) -> Result<(), SinkError> {
        self.watch.settle(&self.client, ctx, CALDAV, wrote).await
    }

    /// Plans a pass: every match in the feed wanted (by content hash and sequence), every
    /// withdrawn one gone.
    pub async fn plan(
        &self,
        ctx: &SinkContext,
        view: &StateView,
        waiting: &BTreeSet<String>,
    ) -> Result<Planned<BTreeMap<String, SinkItem>>, SinkError> {
        let items = ctx.items(CALDAV).await?;
        let (wanted, gone) = wanted_of(view);
        let plan = plan_events(view, &wanted, &gone, &items, waiting);
        Ok(Planned { plan, work: items })
    }

    /// Executes one step of [`CalDavSink::plan`].
    pub async fn execute(
        &self,
        ctx: &SinkContext,
        view: &Arc<StateView>,
        items: &BTreeMap<String, SinkItem>,
        step: &Step,
    ) -> Result<(), SinkError> {
        let key = step.key();
        let known = items.get(key);
        match step {
            Step::Delete(_) => {
                let Some(k) = known else { return Ok(()) };
                // Only the version we wrote (If-Match); deleting what is not there is success
                // (404/410), so no need to look first.
                delete_ours(&self.client, &k.remote_name, k.etag.as_deref()).await?;
                ctx.forget(CALDAV, key).await
            }
            Step::Own(_) => {
                // Found as the state wants it: ours now, without a write.
                let (Some(k), Some(m)) = (known, key.parse().ok().and_then(|id| view.get(id)))
                else {
                    return Ok(());
                };
                let record = SinkItem {
                    hash: content_hash(m),
                    ..k.clone()
                };
                ctx.record(CALDAV, record).await
            }
            Step::Put(_) => {
                let Some(m) = key.parse().ok().and_then(|id| view.get(id)) else {
                    return Ok(());
                };
                let name = known
                    .map(|k| k.remote_name.clone())
                    .unwrap_or_else(|| resource_name(m.record.match_id));
                let body = ics::render_single(&view.event(m), &view.feed_options());
                let etag = write_over(
                    &self.client,
                    &name,
                    body,
                    CONTENT_TYPE,
                    known.map(|k| k.etag.clone()),
                )
                .await?;
                let record = SinkItem {
                    key: key.to_string(),
                    remote_name: name,
                    etag,
                    hash: content_hash(m),
                };
                ctx.record(CALDAV, record).await
            }
        }
    }
}

/// What one event's ledger hash is: the match's content hash and its sequence.
fn content_hash(m: &crate::reconcile::StoredMatch) -> String {
    format!("{}:{}", m.hash, m.sequence)
}

/// The plan of one pass (pure): an event found on the server (adopted) counts as equal when
/// its content lines are the ones this install would write ([`event_lines`]), so a fresh install
/// rewrites none of an earlier install's events that is unchanged. An empty hash (adopted by a
/// version that did not read the events) is never equal.
pub fn plan_events(
    view: &StateView,
    wanted: &BTreeMap<String, String>,
    gone: &BTreeSet<String>,
    items: &BTreeMap<String, SinkItem>,
    waiting: &BTreeSet<String>,
) -> plan::Plan {
    let opts = view.feed_options();
    // Only adopted events are rendered here: the others compare by the match's hash.
    let wanted: BTreeMap<String, (String, Option<String>)> = wanted
        .iter()
        .map(|(key, hash)| {
            let lines = items
                .get(key)
                .filter(|i| content::found_lines(&i.hash).is_some())
                .and_then(|_| key.parse().ok())
                .and_then(|id| view.get(id))
                .map(|m| event_lines(&ics::render_single(&view.event(m), &opts)));
            (key.clone(), (hash.clone(), lines))
        })
        .collect();
    let known = known_of(items, |i| {
        !i.hash.is_empty() && !i.hash.starts_with(ADOPTED)
    });
    plan::plan(
        &wanted,
        gone,
        &known,
        view.has_list(),
        waiting,
        |w, k| match content::found_lines(&k.hash) {
            Some(lines) => w.1.as_deref() == Some(lines),
            None => w.0 == k.hash,
        },
    )
}

/// The hash of an event's content lines, without what says when or by which install it was
/// written ([`content::EVENT_STAMPS`]).
pub fn event_lines(body: &str) -> String {
    content::lines_hash(body, content::EVENT_STAMPS)
}

/// The events the state wants (key: match id; value: content hash) and the matches it knows
/// as withdrawn.
pub fn wanted_of(view: &StateView) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut wanted = BTreeMap::new();
    let mut gone = BTreeSet::new();
    for m in &view.matches {
        let key = m.record.match_id.to_string();
        if m.presence.in_feed() {
            wanted.insert(key, content_hash(m));
        } else {
            gone.insert(key);
        }
    }
    (wanted, gone)
}

/// Deletes the item we wrote, only in the version we wrote when its ETag is known. A 412 means
/// someone changed it since: it is theirs now, so it stays, and the caller forgets it.
pub(crate) async fn delete_ours(
    client: &DavClient,
    name: &str,
    etag: Option<&str>,
) -> Result<(), DavError> {
    match client.delete(name, etag).await {
        Err(DavError::PreconditionFailed) => {
            // No item name in the log: a card's name can hold phone digits.
            tracing::info!("an item changed by someone else since it was written is left in place");
            Ok(())
        }
        other => other,
    }
}

/// `fogis-match-{id}.ics`.
pub fn resource_name(match_id: i64) -> String {
    format!("fogis-match-{match_id}.ics")
}

/// The match id in one of our UIDs.
pub fn match_id_of_uid(uid: &str) -> Option<i64> {
    uid.strip_prefix("fogis-match-")?
        .strip_suffix("@fogis-calendar-sync")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_and_names_round_trip() {
        assert_eq!(match_id_of_uid(&ics::uid(6186203)), Some(6186203));
        assert_eq!(match_id_of_uid("someone-else@example.com"), None);
        assert_eq!(resource_name(42), "fogis-match-42.ics");
    }
}
