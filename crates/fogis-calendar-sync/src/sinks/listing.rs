//! When a DAV sink lists its collection, and what it learns from the listing (the decisions
//! pure, [`Watch`] the little a sink keeps between passes).
//!
//! A listing (PROPFIND Depth 1, then multiget of every item) is how a sink adopts items that
//! already carry our UIDs and sees what someone else changed. It is skipped while the
//! collection's change tag (RFC 6578 `sync-token`, else Apple's `getctag`), read with one
//! PROPFIND Depth 0 before each pass, equals the one stored in the ledger's `meta` after the
//! last pass ([`must_list`]). A server that offers neither is listed once per start, as before
//! change tags were used.
//!
//! The tag stored after a pass that wrote is read after its last write, so a change someone
//! else makes between that write and that read (milliseconds) is taken for ours and seen at
//! the next change of the collection instead.
//!
//! What a listing tells ([`reconcile`]): an item of ours where the ledger has it, with its
//! ETag, stands; one found elsewhere, new or with another ETag (someone edited it) is recorded
//! as found ([`ADOPTED`] and the hash of its lines), so the plan rewrites it only if it differs
//! from what the state wants and never deletes it; one the ledger knows but the listing lacks
//! was deleted by someone else and is forgotten, so the plan writes it again if the state
//! still wants it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::sinks::content::{ADOPTED, TAKEN};
use crate::sinks::dav::DavClient;
use crate::sinks::{SinkContext, SinkError};
use crate::store::ledger::SinkItem;

/// What one DAV sink keeps between passes to decide on listings.
#[derive(Debug, Default)]
pub struct Watch {
    /// Listed since the start (what a server without change tags goes by).
    listed: AtomicBool,
    /// The tag read before this pass, if the server has one.
    before: Mutex<Option<String>>,
    /// A takeover under the sink lease: the next pass lists, and what it finds is the pair's.
    takeover: AtomicBool,
}

impl Watch {
    /// Reads the collection's tag and tells whether this pass must list ([`must_list`]).
    pub async fn must_list(
        &self,
        client: &DavClient,
        ctx: &SinkContext,
        sink: &'static str,
    ) -> Result<bool, SinkError> {
        let tag = current(client).await?;
        let stored = ctx.ledger(move |s| s.get_meta(&tag_key(sink))).await?;
        let listed = self.listed.load(Ordering::Relaxed);
        let must = self.taking_over() || must_list(tag.as_deref(), stored.as_deref(), listed);
        *self.before.lock().unwrap_or_else(|p| p.into_inner()) = tag;
        Ok(must)
    }

    /// The listing of this pass is in the ledger.
    pub fn listed(&self) {
        self.listed.store(true, Ordering::Relaxed);
        self.takeover.store(false, Ordering::Relaxed);
    }

    /// A new grant of the sink lease: the next pass lists whatever the tag says.
    pub fn take_over(&self) {
        self.takeover.store(true, Ordering::Relaxed);
    }

    /// Whether the next listing is a takeover's.
    pub fn taking_over(&self) -> bool {
        self.takeover.load(Ordering::Relaxed)
    }

    /// After a pass: stores the collection's tag, read again if the pass wrote (our own
    /// writes change it), else the one read before the pass. A tag that cannot be read is not
    /// stored (the next pass lists); a ledger that cannot be written is the state's problem.
    pub async fn settle(
        &self,
        client: &DavClient,
        ctx: &SinkContext,
        sink: &'static str,
        wrote: bool,
    ) -> Result<(), SinkError> {
        let tag = if wrote {
            match current(client).await {
                Ok(tag) => tag,
                Err(e) => {
                    tracing::debug!(sink, error = %e, "change tag not read after the pass");
                    return Ok(());
                }
            }
        } else {
            self.before
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        let Some(tag) = tag else { return Ok(()) };
        ctx.ledger(move |s| s.set_meta(&tag_key(sink), &tag)).await
    }
}

/// The collection's tag as stored ([`stored_tag`]).
async fn current(client: &DavClient) -> Result<Option<String>, SinkError> {
    let tag = client.change_tag().await?;
    Ok(tag.map(|t| stored_tag(client.collection_url(), &t)))
}

/// The `meta` key under which `sink`'s change tag is stored.
pub fn tag_key(sink: &str) -> String {
    format!("dav_change_tag.{sink}")
}

/// What is stored for a collection's tag: the collection's URL with it, so that a tag of
/// another collection (a changed `CALDAV_URL`) never matches.
pub fn stored_tag(collection: &str, tag: &str) -> String {
    format!("{collection} {tag}")
}

/// Whether a pass lists the collection: when its tag differs from the stored one, or, for a
/// server with neither tag, when it was not listed since the start.
pub fn must_list(current: Option<&str>, stored: Option<&str>, listed_since_start: bool) -> bool {
    match current {
        Some(tag) => stored != Some(tag),
        None => !listed_since_start,
    }
}

/// One item of ours the listing found: its ledger key, UID, resource name, ETag and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub key: String,
    pub uid: String,
    pub name: String,
    pub etag: Option<String>,
    pub data: Option<String>,
}

/// What a listing changes in the ledger: records to write, keys to forget.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Learned {
    pub record: Vec<SinkItem>,
    pub forget: Vec<String>,
}

/// Compares a complete listing (`found`: the items of ours; `names`: every item's name) with
/// the ledger; `lines` gives the sink's hash of an item's text (after [`ADOPTED`]; see
/// [`crate::sinks::content::lines_hash`]).
///
/// `takeover` (a new grant of the sink lease): the other instance of the pair wrote what is
/// there, so what is found is recorded after [`TAKEN`] (the pair's own: rewritten when it
/// differs, deleted when unwanted), an ETag the ledger cannot confirm counts as changed, and
/// records of found-not-written items become the pair's too.
pub fn reconcile(
    found: Vec<Found>,
    names: &BTreeSet<String>,
    items: &BTreeMap<String, SinkItem>,
    takeover: bool,
    lines: impl Fn(&Found, &str) -> String,
) -> Learned {
    let prefix = if takeover { TAKEN } else { ADOPTED };
    let mut learned = Learned::default();
    let mut settled: BTreeSet<String> = BTreeSet::new();
    // Where the ledger has an item first: a twin elsewhere does not move it.
    let (at_home, elsewhere): (Vec<Found>, Vec<Found>) = found
        .into_iter()
        .partition(|f| items.get(&f.key).is_some_and(|k| k.remote_name == f.name));
    for f in at_home.into_iter().chain(elsewhere) {
        if !settled.insert(f.key.clone()) {
            continue;
        }
        if let Some(mine) = items.get(&f.key) {
            // An unknown ETag on either side tells nothing: the record stands.
            // At a takeover, only an ETag known on both sides and equal does.
            let same_etag = match (&mine.etag, &f.etag) {
                (Some(a), Some(b)) => a == b,
                _ => !takeover,
            };
            if mine.remote_name == f.name && same_etag {
                if takeover {
                    if let Some(lines) = mine.hash.strip_prefix(ADOPTED) {
                        learned.record.push(SinkItem {
                            hash: format!("{TAKEN}{lines}"),
                            ..mine.clone()
                        });
                    }
                }
                continue;
            }
        }
        let hash = f
            .data
            .as_deref()
            .map(|d| format!("{prefix}{}", lines(&f, d)))
            .unwrap_or_default();
        learned.record.push(SinkItem {
            key: f.key,
            remote_name: f.name,
            etag: f.etag,
            hash,
        });
    }
    for (key, mine) in items {
        if !settled.contains(key) && !names.contains(&mine.remote_name) {
            learned.forget.push(key.clone());
        }
    }
    learned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, name: &str, etag: &str) -> (String, SinkItem) {
        (
            key.into(),
            SinkItem {
                key: key.into(),
                remote_name: name.into(),
                etag: Some(etag.into()),
                hash: "ours".into(),
            },
        )
    }

    fn found(key: &str, name: &str, etag: &str, data: &str) -> Found {
        Found {
            key: key.into(),
            uid: format!("uid-{key}"),
            name: name.into(),
            etag: Some(etag.into()),
            data: Some(data.into()),
        }
    }

    #[test]
    fn a_tag_unchanged_since_the_last_pass_skips_the_listing() {
        assert!(!must_list(Some("u t1"), Some("u t1"), false));
        assert!(must_list(Some("u t2"), Some("u t1"), true), "changed");
        assert!(must_list(Some("u t1"), None, true), "never stored");
        // Neither sync-token nor getctag: once per start.
        assert!(must_list(None, Some("u t1"), false));
        assert!(!must_list(None, Some("u t1"), true));
        assert_ne!(stored_tag("http://a/", "t"), stored_tag("http://b/", "t"));
    }

    #[test]
    fn a_listing_adopts_sees_edits_and_deletions_and_leaves_the_rest() {
        let items: BTreeMap<_, _> = [
            item("1", "a.ics", "e1"),
            item("2", "b.ics", "e2"),
            item("3", "c.ics", "e3"),
        ]
        .into();
        let names: BTreeSet<String> = ["a.ics", "b.ics", "x.ics", "y.ics"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let learned = reconcile(
            vec![
                found("1", "a.ics", "e1", "A"),     // as we left it
                found("2", "b.ics", "e2-new", "B"), // edited by someone
                found("4", "x.ics", "e4", "D"),     // ours, not in the ledger
                found("1", "y.ics", "e5", "A2"),    // a twin of 1 elsewhere
            ],
            &names,
            &items,
            false,
            |_, d| format!("h({d})"),
        );
        let recorded: Vec<(&str, &str, &str)> = learned
            .record
            .iter()
            .map(|i| (i.key.as_str(), i.remote_name.as_str(), i.hash.as_str()))
            .collect();
        assert_eq!(
            recorded,
            [
                ("2", "b.ics", "adopted:h(B)"),
                ("4", "x.ics", "adopted:h(D)")
            ]
        );
        // 3 is gone from the server: forgotten, so that it is written again if wanted.
        assert_eq!(learned.forget, ["3"]);
    }

    #[test]
    fn at_a_takeover_what_is_found_is_the_pairs_own() {
        let mut adopted = item("2", "b.ics", "e2");
        adopted.1.hash = format!("{ADOPTED}h(B)");
        let items: BTreeMap<_, _> =
            [item("1", "a.ics", "e1"), adopted, item("3", "c.ics", "e3")].into();
        let names: BTreeSet<String> = ["a.ics", "b.ics", "x.ics"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut unknown_etag = found("1", "a.ics", "e1", "A");
        unknown_etag.etag = None;
        let learned = reconcile(
            vec![
                unknown_etag,                   // the ledger cannot confirm it: read again
                found("2", "b.ics", "e2", "B"), // found before, now the pair's
                found("4", "x.ics", "e4", "D"), // the other instance wrote it
            ],
            &names,
            &items,
            true,
            |_, d| format!("h({d})"),
        );
        let recorded: Vec<(&str, &str)> = learned
            .record
            .iter()
            .map(|i| (i.key.as_str(), i.hash.as_str()))
            .collect();
        assert_eq!(
            recorded,
            [
                ("1", "taken:h(A)"),
                ("2", "taken:h(B)"),
                ("4", "taken:h(D)")
            ]
        );
        assert_eq!(learned.forget, ["3"], "deleted by the other instance");
    }
}
