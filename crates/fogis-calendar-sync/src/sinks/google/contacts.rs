//! The Google Contacts sink (People API): every other referee the user shares a match with
//! ([`phonebook`]) is one contact in the group "Referees".
//!
//! A pass plans the phonebook of the state against the ledger ([`crate::sinks::plan`]); when
//! any referee differs from what was last written, one run: one paged `connections.list` (never one per referee), the
//! group found over all its pages or created, then for each referee the contact found by FOGIS
//! id, phone or e-mail ([`person::Index`]) is updated by `updateContact` with its ETag when our
//! fields differ (a stale ETag, 400 `failedPrecondition`, is re-read and retried once), or a
//! contact is created; new members are added to the group in one `members:modify`. Mutations are
//! sent one at a time, as Google asks. Contacts are never deleted: a withdrawn match does not
//! make its referees strangers, and the user may have added to them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};

use super::api::{Api, Reply};
use super::person::{self, Found, Index, Owned, GROUP_NAME};
use crate::engine::view::StateView;
use crate::render::phonebook::{phonebook, Contact};
use crate::sinks::plan::{self, Step};
use crate::sinks::{known_of, Planned, SinkContext, SinkError, GOOGLE_CONTACTS, PHONEBOOK_KEY};
use crate::store::ledger::SinkItem;

const MAX_PAGES: usize = 1000;

/// Keeps the referees in the user's Google Contacts.
#[derive(Debug)]
pub struct ContactsSink {
    api: Api,
    base: String,
    user_referee_number: Option<String>,
    group: tokio::sync::Mutex<Option<String>>,
    notice: Arc<Mutex<Option<String>>>,
    /// A run succeeded since the start: the first one runs even for an empty phonebook, to
    /// find (or make) the group and show that the account can be reached.
    ran: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Tally {
    created: usize,
    updated: usize,
    linked: usize,
}

impl ContactsSink {
    pub fn new(api: Api, base: &str, user_referee_number: Option<String>) -> Self {
        ContactsSink {
            api,
            base: base.trim_end_matches('/').to_string(),
            user_referee_number,
            group: tokio::sync::Mutex::new(None),
            notice: Arc::default(),
            ran: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn target(&self) -> String {
        format!("Google Contacts (group {GROUP_NAME})")
    }

    pub fn notice(&self) -> Option<String> {
        self.notice
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Plans a pass: one run of the whole phonebook ([`PHONEBOOK_KEY`]) when any referee's
    /// fields differ from what the ledger says was written. Never a delete.
    pub async fn plan(
        &self,
        ctx: &SinkContext,
        view: &StateView,
        waiting: &BTreeSet<String>,
    ) -> Result<Planned<Vec<Contact>>, SinkError> {
        let contacts = phonebook(
            &view.matches,
            self.user_referee_number.as_deref(),
            Utc::now(),
        );
        let items = ctx.items(GOOGLE_CONTACTS).await?;
        let wanted: BTreeMap<String, String> = contacts
            .iter()
            .map(|c| {
                let hash = serde_json::to_string(&Owned::of(c)).unwrap_or_default();
                (c.uid.clone(), hash)
            })
            .collect();
        let known = known_of(&items, |_| true);
        let differs = !plan::plan(
            &wanted,
            &BTreeSet::new(),
            &known,
            true,
            &BTreeSet::new(),
            |w, k| *w == k.hash,
        )
        .steps
        .is_empty()
            || !self.ran.load(std::sync::atomic::Ordering::Relaxed);
        let mut plan = plan::Plan::default();
        if differs {
            if waiting.contains(PHONEBOOK_KEY) {
                plan.deferred = 1;
            } else {
                plan.steps.push(Step::Put(PHONEBOOK_KEY.into()));
            }
        }
        Ok(Planned {
            plan,
            work: contacts,
        })
    }

    /// Executes the one step of [`ContactsSink::plan`].
    pub async fn execute(
        &self,
        ctx: &SinkContext,
        contacts: &[Contact],
        _step: &Step,
    ) -> Result<(), SinkError> {
        self.process(ctx, contacts).await?;
        self.ran.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Follows `nextPageToken` until the last page; `field` holds each page's items.
    async fn list(
        &self,
        url: &str,
        query: &[(&str, String)],
        field: &str,
    ) -> Result<Vec<Value>, SinkError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = query.to_vec();
            if let Some(p) = page.take() {
                q.push(("pageToken", p));
            }
            let r = self.api.call(Method::GET, url, &q, None, None).await?;
            if !r.ok() {
                return Err(r.unexpected("listing Google Contacts"));
            }
            out.extend(r.body[field].as_array().into_iter().flatten().cloned());
            match r.body["nextPageToken"].as_str() {
                Some(next) => page = Some(next.to_string()),
                None => return Ok(out),
            }
        }
        Err(SinkError::Remote(
            "Google Contacts: the listing does not end".into(),
        ))
    }

    /// The "Referees" group: found over every page, or created.
    async fn group(&self) -> Result<String, SinkError> {
        let mut cached = self.group.lock().await;
        if let Some(g) = cached.as_ref() {
            return Ok(g.clone());
        }
        let url = format!("{}/contactGroups", self.base);
        for attempt in 0..2 {
            let groups = self
                .list(&url, &[("pageSize", "1000".into())], "contactGroups")
                .await?;
            let found = groups.iter().find(|g| {
                g["name"].as_str() == Some(GROUP_NAME)
                    && g["groupType"].as_str().unwrap_or("USER_CONTACT_GROUP")
                        == "USER_CONTACT_GROUP"
            });
            if let Some(name) = found.and_then(|g| g["resourceName"].as_str()) {
                *cached = Some(name.to_string());
                return Ok(name.to_string());
            }
            let body = json!({"contactGroup": {"name": GROUP_NAME}});
            let r = self
                .api
                .call(Method::POST, &url, &[], Some(&body), None)
                .await?;
            match (r.status, r.body["resourceName"].as_str()) {
                (200..=299, Some(name)) => {
                    *cached = Some(name.to_string());
                    return Ok(name.to_string());
                }
                (409, _) if attempt == 0 => continue, // created meanwhile: list again
                _ => return Err(r.unexpected("creating the contact group")),
            }
        }
        Err(SinkError::Remote(
            "the contact group could not be found or created".into(),
        ))
    }

    /// Makes Google Contacts hold the phonebook of the state.
    async fn process(&self, ctx: &SinkContext, contacts: &[Contact]) -> Result<(), SinkError> {
        let people = self
            .list(
                &format!("{}/people/me/connections", self.base),
                &[
                    ("personFields", person::READ_FIELDS.into()),
                    ("pageSize", "1000".into()),
                ],
                "connections",
            )
            .await?;
        let group = self.group().await?;
        let index = Index::build(&people);
        let known: HashMap<String, SinkItem> =
            ctx.items(GOOGLE_CONTACTS).await?.into_iter().collect();
        let mut taken = HashSet::new();
        let mut add = Vec::new();
        let mut tally = Tally::default();
        for c in contacts {
            let ours = Owned::of(c);
            let mine = known.get(&c.uid);
            let previous: Option<Owned> = mine.and_then(|k| serde_json::from_str(&k.hash).ok());
            let (name, etag) = match index.find(&ours, &taken) {
                Some((i, how)) => {
                    taken.insert(i);
                    let p = &people[i];
                    let name = p["resourceName"].as_str().unwrap_or_default().to_string();
                    let mut etag = p["etag"].as_str().map(String::from);
                    let merged = person::merge(p, &ours, previous.as_ref());
                    if person::differs(p, &merged) {
                        etag = self.update(&name, p, &ours, previous.as_ref()).await?;
                        tally.updated += 1;
                    }
                    if how != Found::ExternalId {
                        tally.linked += 1;
                    }
                    if !is_member(p, &group) {
                        add.push(name.clone());
                    }
                    (name, etag)
                }
                None => {
                    let (name, etag) = self.create(&ours).await?;
                    tally.created += 1;
                    add.push(name.clone());
                    (name, etag)
                }
            };
            let record = SinkItem {
                key: c.uid.clone(),
                remote_name: name,
                etag,
                hash: serde_json::to_string(&ours).unwrap_or_default(),
            };
            if mine != Some(&record) {
                ctx.record(GOOGLE_CONTACTS, record).await?;
            }
        }
        for chunk in add.chunks(1000) {
            let url = format!("{}/{group}/members:modify", self.base);
            let body = json!({"resourceNamesToAdd": chunk});
            let r = self
                .api
                .call(Method::POST, &url, &[], Some(&body), None)
                .await?;
            if r.status == 404 {
                *self.group.lock().await = None; // the group was deleted: find or make it again
                return Err(SinkError::Remote("the contact group disappeared".into()));
            }
            if !r.ok() {
                return Err(r.unexpected("adding contacts to the group"));
            }
        }
        let report = format!(
            "{} referees: {} created, {} updated, {} linked by phone or e-mail",
            contacts.len(),
            tally.created,
            tally.updated,
            tally.linked
        );
        if tally.created + tally.updated > 0 {
            tracing::info!(sink = GOOGLE_CONTACTS, "{report}");
        }
        *self.notice.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
        Ok(())
    }

    async fn create(&self, ours: &Owned) -> Result<(String, Option<String>), SinkError> {
        let url = format!("{}/people:createContact", self.base);
        let query = [("personFields", "names,metadata".to_string())];
        let r = self
            .api
            .call(Method::POST, &url, &query, Some(&ours.new_person()), None)
            .await?;
        match (r.ok(), r.body["resourceName"].as_str()) {
            (true, Some(name)) => Ok((name.to_string(), r.etag())),
            _ => Err(r.unexpected("creating a contact")),
        }
    }

    /// `updateContact` with the person's ETag; a stale one is re-read and merged again once.
    async fn update(
        &self,
        name: &str,
        listed: &Value,
        ours: &Owned,
        previous: Option<&Owned>,
    ) -> Result<Option<String>, SinkError> {
        let url = format!("{}/{name}:updateContact", self.base);
        let query = [
            ("updatePersonFields", person::UPDATE_FIELDS.to_string()),
            ("personFields", person::READ_FIELDS.to_string()),
        ];
        let mut current = listed.clone();
        for attempt in 0..2 {
            let mut body = person::merge(&current, ours, previous);
            body["etag"] = current["etag"].clone();
            let sources: Vec<&Value> = current["metadata"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["type"] == "CONTACT")
                .collect();
            body["metadata"] = json!({"sources": sources});
            let r = self
                .api
                .call(Method::PATCH, &url, &query, Some(&body), None)
                .await?;
            if r.ok() {
                return Ok(r.etag());
            }
            if !stale(&r) || attempt > 0 {
                return Err(r.unexpected("updating a contact"));
            }
            let fresh = format!("{}/{name}", self.base);
            let query = [("personFields", person::READ_FIELDS.to_string())];
            let r = self
                .api
                .call(Method::GET, &fresh, &query, None, None)
                .await?;
            if !r.ok() {
                return Err(r.unexpected("re-reading a contact"));
            }
            current = r.body;
        }
        Err(SinkError::Remote(
            "the contact changed again while it was updated".into(),
        ))
    }
}

fn stale(r: &Reply) -> bool {
    r.status == 400
        && matches!(
            r.reason.as_str(),
            "FAILED_PRECONDITION" | "failedPrecondition"
        )
}

fn is_member(p: &Value, group: &str) -> bool {
    p["memberships"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["contactGroupMembership"]["contactGroupResourceName"].as_str() == Some(group))
}
