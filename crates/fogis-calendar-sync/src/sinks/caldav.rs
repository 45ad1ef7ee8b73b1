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
use crate::sinks::dav::{DavClient, DavError};
use crate::sinks::plan::{self, Step};
use crate::sinks::{known_of, write_over, Planned, SinkContext, SinkError, CALDAV};
use crate::store::ledger::SinkItem;

const CONTENT_TYPE: &str = "text/calendar; charset=utf-8";
/// The ledger hash of an event found at a takeover under the sink lease: owned (the pair wrote
/// it), equal to no wanted content.
pub const TAKEN_OVER: &str = "taken-over";

/// Writes events to one CalDAV calendar collection.
#[derive(Debug)]
pub struct CalDavSink {
    client: DavClient,
    display_name: String,
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
        })
    }

    pub fn target(&self) -> String {
        self.client.collection_url().to_string()
    }

    /// Creates the calendar when missing and adopts resources carrying our UIDs (recorded with
    /// an empty hash: found, not written by us).
    ///
    /// `fresh_look` (a takeover under the sink lease): the other instance of the pair may have
    /// written, rewritten or deleted events since this ledger was written. Records of events no
    /// longer there are forgotten (so a wanted one is created again), and an event not as the
    /// ledger left it (another name or ETag) is recorded as [`TAKEN_OVER`]: the pair's own, so
    /// it is rewritten from this state when wanted and deleted when its match is withdrawn.
    pub async fn prepare(&self, ctx: &SinkContext, fresh_look: bool) -> Result<(), SinkError> {
        self.client.ensure_calendar(&self.display_name).await?;
        let found: Vec<SinkItem> = self
            .client
            .find_uids()
            .await?
            .into_iter()
            .filter_map(|r| {
                let id = r.uid.as_deref().and_then(match_id_of_uid)?;
                Some(SinkItem {
                    key: id.to_string(),
                    remote_name: r.name,
                    etag: r.etag,
                    hash: if fresh_look {
                        TAKEN_OVER.into()
                    } else {
                        String::new()
                    },
                })
            })
            .collect();
        ctx.ledger(move |s| {
            if fresh_look {
                let there: BTreeSet<&str> = found.iter().map(|f| f.key.as_str()).collect();
                for mine in s.sink_items(CALDAV)? {
                    if !there.contains(mine.key.as_str()) {
                        s.delete_sink_item(CALDAV, &mine.key)?;
                    }
                }
            }
            for item in &found {
                match s.sink_item(CALDAV, &item.key)? {
                    // Still where we left it: our record (ETag, hash) stands.
                    Some(mine)
                        if mine.remote_name == item.remote_name
                            && (!fresh_look || mine.etag == item.etag) => {}
                    _ => s.put_sink_item(CALDAV, item)?,
                }
            }
            Ok(())
        })
        .await
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
        let known = known_of(&items, |i| !i.hash.is_empty());
        let plan = plan::plan(&wanted, &gone, &known, view.has_list(), waiting, |w, k| {
            *w == k.hash
        });
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
            Step::Own(_) => Ok(()), // an empty hash is never equal: nothing is owned unwritten
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
