//! The CardDAV phonebook sink: every other referee the user shares a match with is one vCard
//! ([`crate::sinks::phonebook`]), written to one address book.
//!
//! The phonebook is one outbox key: each run rebuilds it from the state, writes the cards whose
//! content changed (by hash), and deletes the cards of people no longer in it. Cards carrying
//! our UIDs already in the address book are adopted, never duplicated. Because a card lists the
//! *upcoming* shared matches, the phonebook is refreshed at least hourly.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::outbox::{NewWork, OutboxItem, SinkItem};
use crate::sinks::caldav::delete_ours;
use crate::sinks::dav::{DavClient, DavError};
use crate::sinks::phonebook::phonebook;
use crate::sinks::vcard::render_vcard_as;
use crate::sinks::{blocking, write_over, SinkError, CARDDAV, PHONEBOOK_KEY};

const CONTENT_TYPE: &str = "text/vcard; charset=utf-8";

/// Writes cards to one CardDAV address book.
#[derive(Debug)]
pub struct CardDavSink {
    client: DavClient,
    display_name: String,
    user_referee_number: Option<String>,
}

impl CardDavSink {
    pub fn new(
        url: &str,
        username: Option<String>,
        password: Option<String>,
        timeout: Duration,
        display_name: String,
        user_referee_number: Option<String>,
    ) -> Result<Self, DavError> {
        Ok(CardDavSink {
            client: DavClient::new(url, username, password, timeout)?,
            display_name,
            user_referee_number,
        })
    }

    pub fn target(&self) -> String {
        self.client.collection_url().to_string()
    }

    pub async fn prepare(&self, engine: &Arc<Engine>) -> Result<(), SinkError> {
        self.client.ensure_addressbook(&self.display_name).await?;
        let adopted: Vec<SinkItem> = self
            .client
            .find_uids()
            .await?
            .into_iter()
            .filter_map(|r| {
                let uid = r.uid.filter(|u| u.starts_with("fogis-referee-"))?;
                Some(SinkItem {
                    key: uid,
                    remote_name: r.name,
                    etag: r.etag,
                    hash: String::new(),
                })
            })
            .collect();
        blocking(engine, move |s| {
            s.adopt_and_seed(CARDDAV, &adopted, &[phonebook_work()])
        })
        .await?;
        engine.signal_outbox();
        Ok(())
    }

    /// Makes the address book equal to the phonebook of the state.
    pub async fn process(&self, engine: &Arc<Engine>, _item: &OutboxItem) -> Result<(), SinkError> {
        let contacts = phonebook(
            &engine.matches(),
            self.user_referee_number.as_deref(),
            Utc::now(),
        );
        let known = blocking(engine, |s| s.sink_items(CARDDAV)).await?;
        let known: std::collections::HashMap<String, SinkItem> =
            known.into_iter().map(|k| (k.key.clone(), k)).collect();
        let version = self.client.vcard_version();
        // A card the server refuses (a 403 naming a precondition) does not stop the others;
        // the first such refusal is reported once the rest is written.
        let mut refused: Option<SinkError> = None;
        for contact in &contacts {
            let body = render_vcard_as(contact, version);
            let hash = hex(&Sha256::digest(body.as_bytes()));
            let mine = known.get(&contact.uid);
            if mine.is_some_and(|k| k.hash == hash) {
                continue;
            }
            let name = mine
                .map(|k| k.remote_name.clone())
                .unwrap_or_else(|| contact.file_name());
            let known = mine.map(|k| k.etag.clone());
            let etag = match write_over(&self.client, &name, body, CONTENT_TYPE, known).await {
                Ok(etag) => etag,
                Err(e @ DavError::Refused { .. }) => {
                    tracing::warn!(error = %e, "the address book refused a card");
                    refused.get_or_insert(e.into());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let record = SinkItem {
                key: contact.uid.clone(),
                remote_name: name,
                etag,
                hash,
            };
            blocking(engine, move |s| s.put_sink_item(CARDDAV, &record)).await?;
        }
        let wanted: std::collections::HashSet<&str> =
            contacts.iter().map(|c| c.uid.as_str()).collect();
        for (uid, item) in &known {
            if wanted.contains(uid.as_str()) {
                continue;
            }
            delete_ours(&self.client, &item.remote_name, item.etag.as_deref()).await?;
            let uid = uid.clone();
            blocking(engine, move |s| s.delete_sink_item(CARDDAV, &uid)).await?;
        }
        refused.map_or(Ok(()), Err)
    }
}

fn phonebook_work() -> NewWork {
    NewWork {
        sink: CARDDAV,
        key: PHONEBOOK_KEY.into(),
        payload: None,
    }
}

/// Queues a phonebook rebuild when none ran in the last hour (the cards' upcoming matches move
/// with time even when no message arrives).
pub async fn refresh_if_stale(engine: &Arc<Engine>) -> Result<(), SinkError> {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now().timestamp();
    let last = LAST.load(Ordering::Relaxed);
    if last == 0 {
        LAST.store(now, Ordering::Relaxed);
        return Ok(());
    }
    if now - last < 3600 {
        return Ok(());
    }
    LAST.store(now, Ordering::Relaxed);
    blocking(engine, |s| s.enqueue(&[phonebook_work()])).await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
