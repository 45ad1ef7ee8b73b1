//! The CardDAV phonebook sink: every other referee the user shares a match with is one vCard
//! ([`crate::render::phonebook`]), written to one address book.
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

use crate::engine::view::StateView;
use crate::render::phonebook::phonebook;
use crate::render::vcard::{card_uid, is_card_uid_of, render_vcard_in, UidForm};
use crate::sinks::caldav::delete_ours;
use crate::sinks::content::{self, ADOPTED};
use crate::sinks::dav::{DavClient, DavError};
use crate::sinks::listing::{self, Found, Watch};
use crate::sinks::plan::{self, Step};
use crate::sinks::{known_of, write_over, Planned, SinkContext, SinkError, CARDDAV};
use crate::store::ledger::SinkItem;
use fogis_dav::VcardVersion;

const CONTENT_TYPE: &str = "text/vcard; charset=utf-8";
/// What earlier versions named the address book they created by discovery: found and used
/// before a new one is created, so an upgrade keeps writing to the same book.
pub const EARLIER_BOOK_NAME: &str = "FOGIS referees";

/// The display name of the address book the sink finds or creates by discovery:
/// `<CALENDAR_NAME> – referees` (`FOGIS matches – referees` by default).
pub fn book_name(calendar_name: &str) -> String {
    format!("{} – referees", calendar_name.trim())
}

/// Writes cards to one CardDAV address book.
#[derive(Debug)]
pub struct CardDavSink {
    client: DavClient,
    display_name: String,
    user_referee_number: Option<String>,
    watch: Watch,
}

/// One card the state wants, rendered with its UID in each form ([`UidForm`]): a card already
/// in the address book keeps its form, a new one takes the form of the book's version.
#[derive(Debug, Clone)]
pub struct WantedCard {
    pub file_name: String,
    pub key_form: Rendered,
    pub uri_form: Rendered,
    /// The form of a card not written yet.
    pub new_form: UidForm,
}

/// One rendering of a card.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub body: String,
    /// SHA-256 of `body`.
    pub hash: String,
    /// [`lines_hash`] of `body`.
    pub lines: String,
}

impl Rendered {
    pub fn of(body: String) -> Rendered {
        Rendered {
            hash: hex::encode(Sha256::digest(body.as_bytes())),
            lines: lines_hash(&body),
            body,
        }
    }
}

impl WantedCard {
    pub fn in_form(&self, form: UidForm) -> &Rendered {
        match form {
            UidForm::Key => &self.key_form,
            UidForm::Uri => &self.uri_form,
        }
    }
}

/// What a ledger hash says of a card: found (adopted) or written, the form of its UID, and the
/// hash itself. Written cards are `{sha}` (the key form: every earlier version's) or
/// `uri:{sha}`; found ones the same after [`ADOPTED`], with the hash of their lines.
fn parse_hash(hash: &str) -> (bool, UidForm, &str) {
    let (adopted, rest) = match content::found_lines(hash) {
        Some(rest) => (true, rest),
        None => (false, hash),
    };
    match rest.strip_prefix(URI_FORM) {
        Some(rest) => (adopted, UidForm::Uri, rest),
        None => (adopted, UidForm::Key, rest),
    }
}

/// The ledger hash of a card in `form` (see [`parse_hash`]).
fn form_hash(form: UidForm, hash: &str) -> String {
    match form {
        UidForm::Key => hash.to_owned(),
        UidForm::Uri => format!("{URI_FORM}{hash}"),
    }
}

/// The form a card the ledger knows has, or a new card's.
fn form_for(known: Option<&SinkItem>, w: &WantedCard) -> UidForm {
    known.map_or(w.new_form, |k| parse_hash(&k.hash).1)
}

/// Marks a ledger hash whose card carries the URI UID.
const URI_FORM: &str = "uri:";

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
            watch: Watch::default(),
        })
    }

    pub fn target(&self) -> String {
        self.client.collection_url().to_string()
    }

    /// Creates the address book when missing (once per start).
    ///
    /// `takeover` (a new grant of the sink lease): the other instance of the pair may have
    /// written or deleted cards since this ledger was written, so the next pass lists the
    /// address book whatever its change tag says, and what it finds is the pair's own
    /// ([`content::TAKEN`]).
    pub async fn prepare(&self, _ctx: &SinkContext, takeover: bool) -> Result<(), SinkError> {
        self.client
            .ensure_addressbook_or(&self.display_name, &[EARLIER_BOOK_NAME])
            .await?;
        if takeover {
            self.watch.take_over();
        }
        Ok(())
    }

    /// Before a pass: when the address book changed since the last pass (or at the start, for
    /// a server without change tags), lists it and records what it learns
    /// ([`listing::reconcile`]): our cards ([`key_of_found`], or the URI UID of a key the state
    /// or the ledger knows, under any name) that the ledger does not know as they are are
    /// adopted with the hash of their lines, to compare later; deleted ones are forgotten.
    pub async fn refresh(&self, ctx: &SinkContext) -> Result<(), SinkError> {
        if !self.watch.must_list(&self.client, ctx, CARDDAV).await? {
            return Ok(());
        }
        let found = self.client.find_uids().await?;
        let items = ctx.items(CARDDAV).await?;
        let view = ctx.view();
        let keys = wanted_cards(&view, self.user_referee_number.as_deref(), VcardVersion::V4)
            .into_keys()
            .chain(items.keys().cloned());
        let by_uid: BTreeMap<String, String> = keys.map(|k| (card_uid(&k), k)).collect();
        let names: BTreeSet<String> = found.iter().map(|r| r.name.clone()).collect();
        let ours: Vec<Found> = found
            .into_iter()
            .filter_map(|r| {
                let uid = r.uid?;
                let key = key_of_found(&r.name, &uid).or_else(|| by_uid.get(&uid).cloned())?;
                Some(Found {
                    key,
                    uid,
                    name: r.name,
                    etag: r.etag,
                    data: r.data,
                })
            })
            .collect();
        let takeover = self.watch.taking_over();
        let learned = listing::reconcile(ours, &names, &items, takeover, |f, d| {
            form_hash(UidForm::of(&f.uid), &lines_hash(d))
        });
        ctx.learn(CARDDAV, learned).await?;
        self.watch.listed();
        Ok(())
    }

    /// After a pass: the address book's change tag stored for the next one.
    pub async fn settle(&self, ctx: &SinkContext, wrote: bool) -> Result<(), SinkError> {
        self.watch.settle(&self.client, ctx, CARDDAV, wrote).await
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
                let form = form_for(known, w);
                let record = SinkItem {
                    hash: form_hash(form, &w.in_form(form).hash),
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
                let form = form_for(known, w);
                let card = w.in_form(form);
                let etag = write_over(
                    &self.client,
                    &name,
                    card.body.clone(),
                    CONTENT_TYPE,
                    known.map(|k| k.etag.clone()),
                )
                .await?;
                let record = SinkItem {
                    key: key.to_string(),
                    remote_name: name,
                    etag,
                    hash: form_hash(form, &card.hash),
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
            let card = WantedCard {
                key_form: Rendered::of(render_vcard_in(&c, version, UidForm::Key)),
                uri_form: Rendered::of(render_vcard_in(&c, version, UidForm::Uri)),
                new_form: UidForm::new_in(version),
                file_name: c.file_name(),
            };
            (c.uid, card)
        })
        .collect()
}

/// The key (`fogis-referee-61318`) of a card found in the address book as `name` with `uid`, if
/// it is one of ours: a UID that is the key itself (vCard 3.0, and every card written before
/// vCard 4.0 UIDs were URIs), or the URI UID of the key its resource name carries
/// (`fogis-referee-61318.vcf`, [`card_uid`]), whichever vCard version wrote it.
pub fn key_of_found(name: &str, uid: &str) -> Option<String> {
    if uid.starts_with("fogis-referee-") {
        return Some(uid.to_owned());
    }
    let key = name.strip_suffix(".vcf")?;
    (key.starts_with("fogis-referee-") && is_card_uid_of(uid, key)).then(|| key.to_owned())
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
        let (adopted, form, hash) = parse_hash(&k.hash);
        let card = w.in_form(form);
        if adopted {
            hash == card.lines
        } else {
            hash == card.hash
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

    /// A wanted card whose key-form body is `body` (its UID line, if any, `UID:fogis-referee-1`).
    fn card(body: &str, new_form: UidForm) -> WantedCard {
        let uri = body.replace(
            "UID:fogis-referee-1\r\n",
            &format!("UID:{}\r\n", card_uid("fogis-referee-1")),
        );
        WantedCard {
            file_name: "x.vcf".into(),
            key_form: Rendered::of(body.into()),
            uri_form: Rendered::of(uri),
            new_form,
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
        let wanted: BTreeMap<_, _> =
            [("fogis-referee-1".to_string(), card(body, UidForm::Key))].into();
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
    fn our_cards_are_known_by_their_old_uid_or_by_name_and_uri_uid() {
        let key = "fogis-referee-61318";
        // An older version's card (or a vCard 3.0 one), under any name.
        assert_eq!(key_of_found("x.vcf", key).as_deref(), Some(key));
        // A vCard 4.0 one: our name and the URI UID of that name's key.
        let uid = card_uid(key);
        assert_eq!(
            key_of_found("fogis-referee-61318.vcf", &uid).as_deref(),
            Some(key)
        );
        // Someone else's card under our name, or our UID under another key's name.
        assert_eq!(key_of_found("fogis-referee-61318.vcf", "urn:uuid:1"), None);
        assert_eq!(key_of_found("fogis-referee-1.vcf", &uid), None);
        assert_eq!(key_of_found("anna.vcf", "anna@example.se"), None);
    }

    #[test]
    fn a_card_keeps_the_uid_form_it_has_and_a_new_one_takes_its_versions() {
        let body = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:fogis-referee-1\r\nFN:A\r\nEND:VCARD\r\n";
        let w = card(body, UidForm::Uri);
        let wanted: BTreeMap<_, _> = [("fogis-referee-1".to_string(), w.clone())].into();
        // An older version wrote it with the key as UID: equal as it is, not rewritten.
        let old = format!("{ADOPTED}{}", lines_hash(body));
        let items: BTreeMap<_, _> = [item("fogis-referee-1", old)].into();
        let p = plan_cards(&wanted, &items, true, &BTreeSet::new());
        assert_eq!(p.steps, vec![Step::Own("fogis-referee-1".into())]);
        assert_eq!(form_for(items.get("fogis-referee-1"), &w), UidForm::Key);
        // Our own key-form record (every earlier version's ledger): equal.
        let items: BTreeMap<_, _> = [item("fogis-referee-1", w.key_form.hash.clone())].into();
        assert!(plan_cards(&wanted, &items, true, &BTreeSet::new())
            .steps
            .is_empty());
        // Found with the URI UID: compared in that form.
        let found = format!("{ADOPTED}{}", form_hash(UidForm::Uri, &w.uri_form.lines));
        let items: BTreeMap<_, _> = [item("fogis-referee-1", found)].into();
        let p = plan_cards(&wanted, &items, true, &BTreeSet::new());
        assert_eq!(p.steps, vec![Step::Own("fogis-referee-1".into())]);
        assert_eq!(form_for(items.get("fogis-referee-1"), &w), UidForm::Uri);
        // New: written, in the form of the book's version.
        let p = plan_cards(&wanted, &BTreeMap::new(), true, &BTreeSet::new());
        assert_eq!(p.steps, vec![Step::Put("fogis-referee-1".into())]);
        assert_eq!(form_for(None, &w), UidForm::Uri);
        assert_eq!(
            parse_hash(&form_hash(UidForm::Uri, "h")),
            (false, UidForm::Uri, "h")
        );
        assert_eq!(parse_hash("h"), (false, UidForm::Key, "h"));
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
