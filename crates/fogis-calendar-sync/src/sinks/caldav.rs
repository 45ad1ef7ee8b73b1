//! The CalDAV calendar sink: one resource per match, holding the same VEVENT the feed shows.
//!
//! Resources are named `fogis-match-{id}.ics`; a resource that already carries our UID under
//! another name (written by an earlier install, or by hand) is adopted instead of duplicated.
//! Creates use `If-None-Match: *`, updates `If-Match` with the stored ETag; a 412 means the
//! resource changed or already exists, so its ETag is re-read and the write repeated (the state
//! is the truth). Withdrawn matches are deleted with `If-Match` (an event someone edited since
//! we wrote it is left in place); cancelled ones are written with `STATUS:CANCELLED`. A server
//! that refuses one event (a 403 naming a precondition) fails that match alone.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;
use crate::ics;
use crate::outbox::{NewWork, OutboxItem, SinkItem};
use crate::sinks::dav::{DavClient, DavError};
use crate::sinks::{blocking, write_over, SinkError, CALDAV};

const CONTENT_TYPE: &str = "text/calendar; charset=utf-8";

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

    /// Creates the calendar when missing, adopts resources carrying our UIDs, and on the first
    /// run queues every stored match.
    pub async fn prepare(&self, engine: &Arc<Engine>) -> Result<(), SinkError> {
        self.client.ensure_calendar(&self.display_name).await?;
        let found = self.client.find_uids().await?;
        let adopted: Vec<SinkItem> = found
            .into_iter()
            .filter_map(|r| {
                let id = r.uid.as_deref().and_then(match_id_of_uid)?;
                Some(SinkItem {
                    key: id.to_string(),
                    remote_name: r.name,
                    etag: r.etag,
                    hash: String::new(),
                })
            })
            .collect();
        let seed: Vec<NewWork> = engine
            .matches()
            .iter()
            .map(|m| NewWork {
                sink: CALDAV,
                key: m.record.match_id.to_string(),
                payload: None,
            })
            .collect();
        blocking(engine, move |s| s.adopt_and_seed(CALDAV, &adopted, &seed)).await?;
        Ok(())
    }

    /// Makes the resource of one match equal to the state.
    pub async fn process(&self, engine: &Arc<Engine>, item: &OutboxItem) -> Result<(), SinkError> {
        let Ok(match_id) = item.key.parse::<i64>() else {
            return Ok(()); // not ours to understand: drop it
        };
        let key = item.key.clone();
        let known = blocking(engine, move |s| s.sink_item(CALDAV, &key)).await?;
        let name = known
            .as_ref()
            .map(|k| k.remote_name.clone())
            .unwrap_or_else(|| resource_name(match_id));
        let stored = engine.stored(match_id);
        let Some(m) = stored.filter(|m| m.presence.in_feed()) else {
            // Withdrawn (or unknown): the event leaves the calendar, only in the version we
            // wrote (If-Match). Deleting what is not there is success (404/410).
            let etag = known.as_ref().and_then(|k| k.etag.clone());
            delete_ours(&self.client, &name, etag.as_deref()).await?;
            let key = item.key.clone();
            blocking(engine, move |s| s.delete_sink_item(CALDAV, &key)).await?;
            return Ok(());
        };
        let hash = format!("{}:{}", m.hash, m.sequence);
        if known.as_ref().is_some_and(|k| k.hash == hash) {
            return Ok(());
        }
        let body = ics::render_single(&engine.event(&m), &engine.feed_options());
        let etag = write_over(
            &self.client,
            &name,
            body,
            CONTENT_TYPE,
            known.as_ref().map(|k| k.etag.clone()),
        )
        .await?;
        let record = SinkItem {
            key: item.key.clone(),
            remote_name: name,
            etag,
            hash,
        };
        blocking(engine, move |s| s.put_sink_item(CALDAV, &record)).await?;
        Ok(())
    }
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
