//! The Google Calendar sink: one event per match, adopting what the deployed service wrote.
//!
//! `prepare` (each start) lists the whole calendar ([`adopt`]), binds every event to its match,
//! deletes extra events of one match and reports how many. Each pass plans every match of the
//! state against the ledger ([`crate::sinks::plan`]) and makes each event that differs equal to
//! the state: unchanged bodies are never written (an adopted event counts as unchanged
//! when its `calendarHash` equals the deployed service's hash of the raw match); changes are a
//! PATCH of the fields we own with `If-Match` (412: re-read, re-apply); new events are inserted
//! under [`event_id`] (409: the id exists, perhaps as a tombstone: revived by a PATCH); withdrawn
//! matches, and cancelled ones under `GOOGLE_CANCELLED=delete`, are deleted (410: already gone).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::Value;

use super::adopt::{self, Binding, State};
use super::api::{path_segment, Api, Reply};
use super::event::{self, event_id, Desired};
use crate::config::google::CancelledPolicy;
use crate::engine::view::StateView;
use crate::reconcile::StoredMatch;
use crate::sinks::plan::{self, Known, Step};
use crate::sinks::{Planned, SinkContext, SinkError, GOOGLE_CALENDAR};
use crate::store::ledger::SinkItem;

/// Most pages one listing reads (2500 events each): a guard against a looping page token.
const MAX_PAGES: usize = 400;

/// Writes the matches into one Google calendar.
#[derive(Debug)]
pub struct CalendarSink {
    api: Api,
    calendar_id: String,
    /// `{api}/calendars/{id}/events`
    events_url: String,
    cancelled: CancelledPolicy,
    notice: Arc<Mutex<Option<String>>>,
    /// Prepared under the sink lease: events found carrying a `matchId` are the pair's own
    /// (the other instance wrote them), so one of a withdrawn match is deleted.
    shared: std::sync::atomic::AtomicBool,
}

impl CalendarSink {
    pub fn new(api: Api, base: &str, calendar_id: &str, cancelled: CancelledPolicy) -> Self {
        CalendarSink {
            api,
            calendar_id: calendar_id.to_string(),
            events_url: format!(
                "{}/calendars/{}/events",
                base.trim_end_matches('/'),
                path_segment(calendar_id)
            ),
            cancelled,
            notice: Arc::default(),
            shared: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn target(&self) -> String {
        format!("Google Calendar {}", self.calendar_id)
    }

    /// The last adoption report.
    pub fn notice(&self) -> Option<String> {
        self.notice
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn event_url(&self, id: &str) -> String {
        format!("{}/{}", self.events_url, path_segment(id))
    }

    /// Every event the deployed service or we wrote: all pages, deleted ones included.
    async fn list_all(&self) -> Result<Vec<Value>, SinkError> {
        let mut events = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                (
                    "privateExtendedProperty",
                    format!("syncTag={}", event::SYNC_TAG),
                ),
                ("showDeleted", "true".to_string()),
                ("maxResults", "2500".to_string()),
            ];
            if let Some(p) = page.take() {
                query.push(("pageToken", p));
            }
            let r = self
                .api
                .call(Method::GET, &self.events_url, &query, None, None)
                .await?;
            if r.status == 404 {
                return Err(SinkError::Auth(format!(
                    "Google Calendar {}: not found, or not shared with this account",
                    self.calendar_id
                )));
            }
            if !r.ok() {
                return Err(r.unexpected("listing the calendar"));
            }
            if let Some(items) = r.body["items"].as_array() {
                events.extend(items.iter().cloned());
            }
            match r.body["nextPageToken"].as_str() {
                Some(next) => page = Some(next.to_string()),
                None => return Ok(events),
            }
        }
        Err(SinkError::Remote(
            "Google Calendar: the listing does not end".into(),
        ))
    }

    /// Adopts the calendar's events and removes duplicates (see the module doc).
    pub async fn prepare(&self, ctx: &SinkContext, shared: bool) -> Result<(), SinkError> {
        self.shared
            .store(shared, std::sync::atomic::Ordering::Relaxed);
        let events = self.list_all().await?;
        let known = ctx.ledger(|s| s.sink_items(GOOGLE_CALENDAR)).await?;
        let plan = adopt::plan(&events, &known);
        let mut removed = 0;
        for d in &plan.duplicates {
            self.delete(&d.id, d.etag.as_deref()).await?;
            removed += 1;
        }
        let (bind, unbind) = (plan.bind.clone(), plan.unbind.clone());
        ctx.ledger(move |s| {
            for item in &bind {
                s.put_sink_item(GOOGLE_CALENDAR, item)?;
            }
            for key in &unbind {
                s.delete_sink_item(GOOGLE_CALENDAR, key)?;
            }
            Ok(())
        })
        .await?;
        let report = format!(
            "calendar listed: {} events, {} newly bound, {removed} duplicate events removed",
            events.len(),
            plan.adopted
        );
        if plan.adopted > 0 || removed > 0 {
            tracing::info!(
                sink = GOOGLE_CALENDAR,
                adopted = plan.adopted,
                duplicates_removed = removed,
                "{report}"
            );
        }
        *self.notice.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
        Ok(())
    }

    /// Plans a pass: every match the state keeps in the calendar wanted as its [`Desired`]
    /// event, every other match it knows gone. A match the state does not know is not ours to
    /// touch.
    pub async fn plan(
        &self,
        ctx: &SinkContext,
        view: &StateView,
        waiting: &BTreeSet<String>,
    ) -> Result<Planned<Work>, SinkError> {
        let (items, raw) = ctx
            .ledger(|s| Ok((s.sink_items(GOOGLE_CALENDAR)?, s.raw_matches()?)))
            .await?;
        let items: BTreeMap<String, SinkItem> =
            items.into_iter().map(|i| (i.key.clone(), i)).collect();
        let mut wanted = BTreeMap::new();
        let mut gone = BTreeSet::new();
        // Listed, but cancelled under GOOGLE_CANCELLED=delete: whoever wrote the event, the
        // policy removes it.
        let mut policy = BTreeSet::new();
        for m in &view.matches {
            let key = m.record.match_id.to_string();
            if self.keeps(m) {
                let raw = raw.get(&m.record.match_id).map(String::as_str);
                wanted.insert(key, event::desired(view, m, raw));
            } else {
                if m.presence.in_feed() {
                    policy.insert(key.clone());
                }
                gone.insert(key);
            }
        }
        let known: BTreeMap<String, Known> = items
            .iter()
            .map(|(k, i)| {
                let owned = match Binding::decode(&i.hash).state {
                    State::Body(_) => true,
                    State::Removed => false,
                    State::Adopted { .. } | State::Unknown => {
                        policy.contains(k) || self.shared.load(std::sync::atomic::Ordering::Relaxed)
                    }
                };
                let known = Known {
                    hash: i.hash.clone(),
                    owned,
                };
                (k.clone(), known)
            })
            .collect();
        let plan = plan::plan(&wanted, &gone, &known, view.has_list(), waiting, |d, k| {
            unchanged(d, &Binding::decode(&k.hash))
        });
        Ok(Planned {
            plan,
            work: Work { wanted, items },
        })
    }

    fn keeps(&self, m: &StoredMatch) -> bool {
        m.presence.in_feed() && !(m.record.cancelled && self.cancelled == CancelledPolicy::Delete)
    }

    /// Executes one step of [`CalendarSink::plan`].
    pub async fn execute(
        &self,
        ctx: &SinkContext,
        view: &StateView,
        work: &Work,
        step: &Step,
    ) -> Result<(), SinkError> {
        let key = step.key();
        let known = work.items.get(key).cloned();
        match step {
            Step::Delete(_) => self.remove(ctx, known).await,
            Step::Own(_) => {
                // Unchanged (and, if someone deleted it, left deleted until the match changes).
                let (Some(k), Some(d)) = (known, work.wanted.get(key)) else {
                    return Ok(());
                };
                let record = Binding {
                    state: State::Body(d.hash.clone()),
                    ..Binding::decode(&k.hash)
                };
                self.save(ctx, key, &k.remote_name, k.etag.clone(), &record)
                    .await
            }
            Step::Put(_) => {
                let (Some(m), Some(d)) = (
                    key.parse().ok().and_then(|id| view.get(id)),
                    work.wanted.get(key),
                ) else {
                    return Ok(());
                };
                self.upsert(ctx, m, d, known).await
            }
        }
    }

    async fn upsert(
        &self,
        ctx: &SinkContext,
        m: &StoredMatch,
        d: &Desired,
        known: Option<SinkItem>,
    ) -> Result<(), SinkError> {
        let key = m.record.match_id.to_string();
        if let Some(k) = &known {
            if let Some(etag) = self.patch(&k.remote_name, k.etag.as_deref(), d).await? {
                let record = Binding {
                    state: State::Body(d.hash.clone()),
                    deleted: false,
                };
                return self.save(ctx, &key, &k.remote_name, etag, &record).await;
            }
            // Gone for good (no tombstone either): insert anew.
        }
        let id = event_id(m.record.match_id);
        let r = self
            .api
            .call(
                Method::POST,
                &self.events_url,
                &[],
                Some(&event::insert_body(d, &id)),
                None,
            )
            .await?;
        let (id, etag) = match r.status {
            200..=299 => (r.body["id"].as_str().unwrap_or(&id).to_string(), r.etag()),
            409 => {
                // Our id exists: a repeated insert, or the tombstone of an event deleted
                // earlier. Either way: make it ours again.
                match self.patch(&id, None, d).await? {
                    Some(etag) => (id, etag),
                    None => return Err(r.unexpected("inserting the event (409, then not found)")),
                }
            }
            _ => return Err(r.unexpected("inserting the event")),
        };
        let record = Binding {
            state: State::Body(d.hash.clone()),
            deleted: false,
        };
        self.save(ctx, &key, &id, etag, &record).await
    }

    /// PATCHes our fields onto event `id` (`If-Match` when `etag`); 412: re-read, re-apply once.
    /// `Ok(None)`: the event does not exist at all.
    async fn patch(
        &self,
        id: &str,
        etag: Option<&str>,
        d: &Desired,
    ) -> Result<Option<Option<String>>, SinkError> {
        let url = self.event_url(id);
        let body = event::patch_body(d);
        let mut etag = etag.map(String::from);
        for attempt in 0..2 {
            let r = self
                .api
                .call(Method::PATCH, &url, &[], Some(&body), etag.as_deref())
                .await?;
            match r.status {
                200..=299 => return Ok(Some(r.etag())),
                404 | 410 => return Ok(None),
                412 if attempt == 0 => match self.get(id).await? {
                    Some(current) => etag = current.etag(),
                    None => return Ok(None),
                },
                _ => return Err(r.unexpected("updating the event")),
            }
        }
        Err(SinkError::Remote(
            "the event changed again while it was updated".into(),
        ))
    }

    async fn get(&self, id: &str) -> Result<Option<Reply>, SinkError> {
        let r = self
            .api
            .call(Method::GET, &self.event_url(id), &[], None, None)
            .await?;
        match r.status {
            200..=299 => Ok(Some(r)),
            404 | 410 => Ok(None),
            _ => Err(r.unexpected("reading the event")),
        }
    }

    /// Deletes event `id`; already deleted (410) or missing (404) is success. 412: re-read; a
    /// live event is deleted with its new ETag.
    async fn delete(&self, id: &str, etag: Option<&str>) -> Result<(), SinkError> {
        let url = self.event_url(id);
        let mut etag = etag.map(String::from);
        for attempt in 0..2 {
            let r = self
                .api
                .call(Method::DELETE, &url, &[], None, etag.as_deref())
                .await?;
            match r.status {
                200..=299 | 404 | 410 => return Ok(()),
                412 if attempt == 0 => match self.get(id).await? {
                    Some(current) if current.body["status"] != "cancelled" => {
                        etag = current.etag();
                    }
                    _ => return Ok(()),
                },
                _ => return Err(r.unexpected("deleting the event")),
            }
        }
        Err(SinkError::Remote(
            "the event changed again while it was deleted".into(),
        ))
    }

    async fn remove(&self, ctx: &SinkContext, known: Option<SinkItem>) -> Result<(), SinkError> {
        let Some(k) = known else {
            return Ok(()); // never written
        };
        let b = Binding::decode(&k.hash);
        if b.state == State::Removed {
            return Ok(());
        }
        if !b.deleted {
            self.delete(&k.remote_name, k.etag.as_deref()).await?;
        }
        let record = Binding {
            state: State::Removed,
            deleted: false,
        };
        self.save(ctx, &k.key, &k.remote_name, None, &record).await
    }

    async fn save(
        &self,
        ctx: &SinkContext,
        key: &str,
        id: &str,
        etag: Option<String>,
        binding: &Binding,
    ) -> Result<(), SinkError> {
        let item = SinkItem {
            key: key.to_string(),
            remote_name: id.to_string(),
            etag,
            hash: binding.encode(),
        };
        ctx.record(GOOGLE_CALENDAR, item).await
    }
}

/// What a pass needs to execute its steps.
#[derive(Debug)]
pub struct Work {
    wanted: BTreeMap<String, Desired>,
    items: BTreeMap<String, SinkItem>,
}

/// Whether the event a binding records is already `d`: a body we wrote (its hash), or an
/// adopted event whose `calendarHash` and title prefix say the same match in the same state.
pub fn unchanged(d: &Desired, b: &Binding) -> bool {
    match &b.state {
        State::Body(h) => *h == d.hash,
        State::Adopted { hash, prefixed } => *hash == d.calendar_hash && *prefixed == d.cancelled,
        State::Unknown | State::Removed => false,
    }
}
