//! The CardDAV phonebook sink: every other referee the user shares a match with is one vCard
//! ([`crate::sinks::phonebook`]), written to one address book.
//!
//! Each pass builds the phonebook from the view of the state and plans it against the ledger
//! ([`crate::sinks::plan`]): cards whose content changed (by hash) are written, cards of people
//! no longer in it deleted, if this sink wrote them. Cards carrying our UIDs already in the
//! address book (an earlier install's, a lost `DATA_DIR`) are adopted, never duplicated: their
//! content is read once and compared line by line, so a fresh install rewrites none that is
//! already as it would write it, and deletes none it did not write. Because a card lists the
//! *upcoming* shared matches, a pass runs at least hourly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::outbox::SinkItem;
use crate::sinks::caldav::delete_ours;
use crate::sinks::content::{self, ADOPTED};
use crate::sinks::dav::{DavClient, DavError};
use crate::sinks::phonebook::phonebook;
use crate::sinks::plan::{self, Step};
use crate::sinks::vcard::render_vcard_as;
use crate::sinks::{hex, known_of, write_over, Planned, SinkContext, SinkError, CARDDAV};
use crate::view::StateView;
use fogis_dav::VcardVersion;

const CONTENT_TYPE: &str = "text/vcard; charset=utf-8";

/// Writes cards to one CardDAV address book.
#[derive(Debug)]
pub struct CardDavSink {
    client: DavClient,
    display_name: String,
    user_referee_number: Option<String>,
}

/// One card the state wants.
#[derive(Debug, Clone)]
pub struct WantedCard {
    pub body: String,
    pub file_name: String,
    /// SHA-256 of `body`.
    pub hash: String,
    /// [`lines_hash`] of `body`.
    pub lines: String,
}

/// What a pass needs to execute its steps.
#[derive(Debug)]
pub struct Work {
    wanted: BTreeMap<String, WantedCard>,
    items: BTreeMap<String, SinkItem>,
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

    /// Creates the address book when missing and adopts the cards carrying our UIDs that the
    /// ledger does not know where they are: each is read once, to compare its content later.
    pub async fn prepare(&self, ctx: &SinkContext) -> Result<(), SinkError> {
        self.client.ensure_addressbook(&self.display_name).await?;
        let found = self.client.find_uids().await?;
        let items = ctx.items(CARDDAV).await?;
        let mut adopted = Vec::new();
        for r in found {
            let Some(uid) = r.uid.filter(|u| u.starts_with("fogis-referee-")) else {
                continue;
            };
            if items.get(&uid).is_some_and(|k| k.remote_name == r.name) {
                continue; // still where we left it: our record stands
            }
            let Some((body, etag)) = self.client.get(&r.name).await? else {
                continue; // gone meanwhile
            };
            adopted.push(SinkItem {
                key: uid,
                remote_name: r.name,
                etag: etag.or(r.etag),
                hash: format!("{ADOPTED}{}", lines_hash(&body)),
            });
        }
        if adopted.is_empty() {
            return Ok(());
        }
        tracing::info!(
            sink = CARDDAV,
            cards = adopted.len(),
            "adopted referee cards already in the address book"
        );
        ctx.ledger(move |s| {
            for item in &adopted {
                s.put_sink_item(CARDDAV, item)?;
            }
            Ok(())
        })
        .await
    }

    /// Plans a pass: the phonebook of the state against the ledger.
    pub async fn plan(
        &self,
        ctx: &SinkContext,
        view: &StateView,
        waiting: &BTreeSet<String>,
    ) -> Result<Planned<Work>, SinkError> {
        let items = ctx.items(CARDDAV).await?;
        let wanted = wanted_cards(
            view,
            self.user_referee_number.as_deref(),
            self.client.vcard_version(),
        );
        let plan = plan_cards(&wanted, &items, view.has_list(), waiting);
        Ok(Planned {
            plan,
            work: Work { wanted, items },
        })
    }

    /// Executes one step of [`CardDavSink::plan`].
    pub async fn execute(
        &self,
        ctx: &SinkContext,
        work: &Work,
        step: &Step,
    ) -> Result<(), SinkError> {
        let key = step.key();
        let known = work.items.get(key);
        match step {
            Step::Delete(_) => {
                let Some(k) = known else { return Ok(()) };
                // Only the version we wrote (If-Match): a card someone edited stays.
                delete_ours(&self.client, &k.remote_name, k.etag.as_deref()).await?;
                ctx.forget(CARDDAV, key).await
            }
            Step::Own(_) => {
                let (Some(k), Some(w)) = (known, work.wanted.get(key)) else {
                    return Ok(());
                };
                let record = SinkItem {
                    hash: w.hash.clone(),
                    ..k.clone()
                };
                ctx.record(CARDDAV, record).await
            }
            Step::Put(_) => {
                let Some(w) = work.wanted.get(key) else {
                    return Ok(());
                };
                let name = known
                    .map(|k| k.remote_name.clone())
                    .unwrap_or_else(|| w.file_name.clone());
                let etag = write_over(
                    &self.client,
                    &name,
                    w.body.clone(),
                    CONTENT_TYPE,
                    known.map(|k| k.etag.clone()),
                )
                .await?;
                let record = SinkItem {
                    key: key.to_string(),
                    remote_name: name,
                    etag,
                    hash: w.hash.clone(),
                };
                ctx.record(CARDDAV, record).await
            }
        }
    }
}

/// The cards the phonebook of `view` holds, by UID, in the vCard version the address book
/// takes.
pub fn wanted_cards(
    view: &StateView,
    user: Option<&str>,
    version: VcardVersion,
) -> BTreeMap<String, WantedCard> {
    phonebook(&view.matches, user, Utc::now())
        .into_iter()
        .map(|c| {
            let body = render_vcard_as(&c, version);
            let card = WantedCard {
                hash: hex(&Sha256::digest(body.as_bytes())),
                lines: lines_hash(&body),
                file_name: c.file_name(),
                body,
            };
            (c.uid, card)
        })
        .collect()
}

/// The plan of one pass (pure): adopted cards count as equal when their lines are.
pub fn plan_cards(
    wanted: &BTreeMap<String, WantedCard>,
    items: &BTreeMap<String, SinkItem>,
    has_list: bool,
    waiting: &BTreeSet<String>,
) -> plan::Plan {
    // An empty hash: adopted by a version before the card's lines were read; not ours either.
    let known = known_of(items, |i| {
        !i.hash.is_empty() && !i.hash.starts_with(ADOPTED)
    });
    // Every card the ledger knows and the phonebook no longer holds must go.
    let gone: BTreeSet<String> = items
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .cloned()
        .collect();
    plan::plan(wanted, &gone, &known, has_list, waiting, |w, k| {
        match k.hash.strip_prefix(ADOPTED) {
            Some(lines) => lines == w.lines,
            None => k.hash == w.hash,
        }
    })
}

/// A hash of a vCard's content lines without `REV` ([`content::lines_hash`]): the same for a
/// card a server stored with other line endings, folding or property order (Radicale sorts
/// them), or one an earlier install wrote from the same data.
pub fn lines_hash(body: &str) -> String {
    content::lines_hash(body, content::VCARD_STAMPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(body: &str) -> WantedCard {
        WantedCard {
            body: body.into(),
            file_name: "x.vcf".into(),
            hash: hex(&Sha256::digest(body.as_bytes())),
            lines: lines_hash(body),
        }
    }

    fn item(key: &str, hash: String) -> (String, SinkItem) {
        (
            key.to_string(),
            SinkItem {
                key: key.into(),
                remote_name: format!("{key}.vcf"),
                etag: None,
                hash,
            },
        )
    }

    #[test]
    fn lines_hash_ignores_line_endings_folding_and_order() {
        let a = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Anna Berg\r\nTEL:+4670\r\nEND:VCARD\r\n";
        let b = "BEGIN:VCARD\nFN:Anna\n  Berg\nVERSION:4.0\nTEL:+4670\nEND:VCARD\n";
        assert_eq!(lines_hash(a), lines_hash(b));
        assert_ne!(lines_hash(a), lines_hash(&a.replace("+4670", "+4671")));
        let stamped = a.replace("FN:", "REV:20261203T143354Z\r\nFN:");
        assert_eq!(lines_hash(a), lines_hash(&stamped), "REV is not content");
    }

    #[test]
    fn adopted_cards_equal_to_ours_are_taken_over_without_a_write() {
        let body = "BEGIN:VCARD\r\nFN:A\r\nEND:VCARD\r\n";
        let wanted: BTreeMap<_, _> = [("fogis-referee-1".to_string(), card(body))].into();
        let stored = body.replace("\r\n", "\n");
        let items: BTreeMap<_, _> = [
            item(
                "fogis-referee-1",
                format!("{ADOPTED}{}", lines_hash(&stored)),
            ),
            item("fogis-referee-2", format!("{ADOPTED}whatever")),
            item("fogis-referee-3", String::new()),
        ]
        .into();
        let p = plan_cards(&wanted, &items, true, &BTreeSet::new());
        // Cards 2 and 3 were found, not written by us, and the phonebook no longer holds them:
        // kept.
        assert_eq!(p.steps, vec![Step::Own("fogis-referee-1".into())]);
    }

    #[test]
    fn before_the_first_list_no_card_is_deleted() {
        let items: BTreeMap<_, _> = [item("fogis-referee-1", "ours".into())].into();
        let p = plan_cards(&BTreeMap::new(), &items, false, &BTreeSet::new());
        assert!(p.steps.is_empty());
        let p = plan_cards(&BTreeMap::new(), &items, true, &BTreeSet::new());
        assert_eq!(p.steps, vec![Step::Delete("fogis-referee-1".into())]);
    }
}
