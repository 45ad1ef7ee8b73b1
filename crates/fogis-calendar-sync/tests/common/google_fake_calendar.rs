//! The fake's Calendar v3: events of any number of calendars, with tombstones, ETags, paging
//! and sync tokens as Google documents them.

use std::collections::{BTreeMap, HashMap};

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{calendar_error, json_ok, Shared};

/// The calendar side of the fake.
#[derive(Debug, Default)]
pub struct Calendar {
    /// calendar id (decoded) -> event id -> event.
    pub calendars: HashMap<String, BTreeMap<String, Value>>,
    /// Insertion order of event ids (the listing order without `orderBy`).
    pub order: Vec<String>,
    /// Write requests received (insert, update, patch, delete), whatever their answer.
    pub writes: usize,
    /// Pages hold at most this many items, whatever `maxResults` says.
    pub page_cap: Option<usize>,
    /// The first page of every listing is empty (with a `nextPageToken`).
    pub empty_first_page: bool,
    /// The next insert is applied but answered 503, as if the answer was lost.
    pub lose_next_insert_answer: bool,
    /// Every sync token answers 410 `fullSyncRequired`.
    pub sync_tokens_expired: bool,
    /// Change counter: sync tokens and `updated`.
    pub changes: u64,
    /// Deleted events keep only their id and status in listings ("only `id` guaranteed"), so
    /// a property filter no longer finds them.
    pub bare_tombstones: bool,
}

impl Calendar {
    pub fn events(&self, cid: &str) -> Vec<Value> {
        self.calendars
            .get(cid)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn event(&self, cid: &str, id: &str) -> Option<Value> {
        self.calendars.get(cid)?.get(id).cloned()
    }

    /// Stores `event` as Google would after an insert (no write counted): the test's way to
    /// pre-fill a calendar. Returns the id.
    pub fn put(&mut self, cid: &str, mut event: Value) -> String {
        self.changes += 1;
        let n = self.changes;
        let id = event["id"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| generated_id(n));
        event["id"] = json!(id);
        event["etag"] = json!(format!("\"{}\"", 3_181_161_784_712_000u64 + n));
        event["kind"] = json!("calendar#event");
        if event.get("status").is_none() {
            event["status"] = json!("confirmed");
        }
        let now = stamp(n);
        if event.get("created").is_none() {
            event["created"] = json!(now);
        }
        event["updated"] = json!(now);
        event["iCalUID"] = json!(format!("{id}@google.com"));
        event["_change"] = json!(n);
        if !self.order.contains(&id) {
            self.order.push(id.clone());
        }
        self.calendars
            .entry(cid.to_string())
            .or_default()
            .insert(id.clone(), event);
        id
    }

    /// Changes an event as its owner would in the Google Calendar UI (new ETag).
    pub fn user_edit(&mut self, cid: &str, id: &str, patch: Value) {
        let mut e = self.event(cid, id).unwrap();
        merge_patch(&mut e, &patch);
        self.put(cid, e);
    }
}

/// A server-generated id: base32hex.
fn generated_id(n: u64) -> String {
    format!("{:x}v{:026}", n, n).replace(|c: char| !c.is_ascii_alphanumeric(), "")
}

/// `updated`: strictly increasing with every change.
fn stamp(n: u64) -> String {
    let t = DateTime::from_timestamp(1_767_225_600 + n as i64, 0).unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S.000Z").to_string()
}

fn valid_id(id: &str) -> bool {
    (5..=1024).contains(&id.len()) && id.chars().all(|c| matches!(c, 'a'..='v' | '0'..='9'))
}

fn time_of(v: &Value) -> Option<DateTime<Utc>> {
    if let Some(t) = v["dateTime"].as_str() {
        return DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(v["date"].as_str()?, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc())
}

/// PATCH semantics: objects merged, arrays replaced whole, `null` deletes.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else if v.is_object() && t.get(k).is_some_and(Value::is_object) {
            merge_patch(t.get_mut(k).unwrap(), v);
        } else {
            t.insert(k.clone(), v.clone());
        }
    }
}

/// Output-only fields are the server's; extended property limits applied.
#[allow(clippy::result_large_err)]
fn clean_input(body: &Value) -> Result<Value, Response> {
    let mut b = body.clone();
    let Some(map) = b.as_object_mut() else {
        return Err(calendar_error(400, "parseError", "Parse Error"));
    };
    for k in [
        "etag", "kind", "created", "updated", "iCalUID", "_change", "htmlLink",
    ] {
        map.remove(k);
    }
    if b["reminders"]["overrides"]
        .as_array()
        .is_some_and(|o| o.len() > 5)
    {
        return Err(calendar_error(
            400,
            "invalid",
            "The maximum number of override reminders is 5.",
        ));
    }
    for scope in ["private", "shared"] {
        if let Some(props) = b["extendedProperties"][scope].as_object_mut() {
            let limited: Map<String, Value> = props
                .iter()
                .filter(|(k, _)| k.len() <= 44)
                .map(|(k, v)| {
                    let v = match v.as_str() {
                        Some(s) if s.len() > 1024 => {
                            json!(s.chars().take(1024).collect::<String>())
                        }
                        _ => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect();
            *props = limited;
        }
    }
    Ok(b)
}

fn if_match_fails(headers: &HeaderMap, event: &Value) -> bool {
    headers
        .get("if-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m != "*" && Some(m) != event["etag"].as_str())
}

fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn public(e: &Value) -> Value {
    let mut e = e.clone();
    if let Some(m) = e.as_object_mut() {
        m.remove("_change");
    }
    e
}

pub fn handle(
    state: &Shared,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let rest = path.trim_start_matches("/calendar/v3/calendars/");
    let parts: Vec<&str> = rest.split('/').collect();
    let mut f = state.lock().unwrap_or_else(|p| p.into_inner());
    let cal = &mut f.calendar;
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (method.clone(), parts.as_slice()) {
        (Method::GET, [cid, "events"]) => list(cal, &decode_segment(cid), query),
        (Method::POST, [cid, "events"]) => {
            cal.writes += 1;
            insert(cal, &decode_segment(cid), &body)
        }
        (m, [cid, "events", id]) => {
            let (cid, id) = (decode_segment(cid), decode_segment(id));
            if m != Method::GET {
                cal.writes += 1;
            }
            let Some(current) = cal.event(&cid, &id) else {
                return calendar_error(404, "notFound", "Not Found");
            };
            if m == Method::GET {
                let none_match = headers.get("if-none-match").and_then(|v| v.to_str().ok());
                if none_match.is_some() && none_match == current["etag"].as_str() {
                    return StatusCode::NOT_MODIFIED.into_response();
                }
                return json_ok(public(&current));
            }
            if m == Method::DELETE && current["status"] == "cancelled" {
                return calendar_error(410, "deleted", "Resource has been deleted");
            }
            if if_match_fails(headers, &current) {
                return calendar_error(412, "conditionNotMet", "Precondition Failed");
            }
            match m {
                Method::DELETE => {
                    let mut e = current;
                    e["status"] = json!("cancelled");
                    cal.put(&cid, e);
                    StatusCode::NO_CONTENT.into_response()
                }
                Method::PATCH | Method::PUT => {
                    let input = match clean_input(&body) {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    let mut e = if m == Method::PUT {
                        json!({"id": id, "created": current["created"]})
                    } else {
                        current
                    };
                    merge_patch(&mut e, &input);
                    e["id"] = json!(id);
                    let id = cal.put(&cid, e);
                    json_ok(public(&cal.event(&cid, &id).unwrap()))
                }
                _ => calendar_error(405, "methodNotAllowed", "Method Not Allowed"),
            }
        }
        _ => calendar_error(404, "notFound", "Not Found"),
    }
}

fn insert(cal: &mut super::calendar::Calendar, cid: &str, body: &Value) -> Response {
    let input = match clean_input(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if time_of(&input["start"]).is_none() || time_of(&input["end"]).is_none() {
        return calendar_error(400, "required", "Missing end time.");
    }
    if let Some(id) = input["id"].as_str() {
        if !valid_id(id) {
            return calendar_error(400, "invalid", "Invalid resource id value.");
        }
        if cal.event(cid, id).is_some() {
            // Live or a tombstone: the id is taken.
            return calendar_error(409, "duplicate", "The requested identifier already exists.");
        }
    }
    let id = cal.put(cid, input);
    if std::mem::take(&mut cal.lose_next_insert_answer) {
        return calendar_error(503, "backendError", "Backend Error");
    }
    json_ok(public(&cal.event(cid, &id).unwrap()))
}

fn list(cal: &super::calendar::Calendar, cid: &str, query: &[(String, String)]) -> Response {
    let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
    let sync_token = get("syncToken");
    if sync_token.is_some() {
        let forbidden = [
            "iCalUID",
            "orderBy",
            "privateExtendedProperty",
            "q",
            "sharedExtendedProperty",
            "timeMin",
            "timeMax",
            "updatedMin",
        ];
        if forbidden.iter().any(|k| get(k).is_some()) || get("showDeleted") == Some("false") {
            return calendar_error(
                400,
                "invalid",
                "Sync token cannot be used with other query parameters.",
            );
        }
        if cal.sync_tokens_expired {
            return calendar_error(
                410,
                "fullSyncRequired",
                "Sync token is no longer valid, a full sync is required.",
            );
        }
    }
    let since: u64 = sync_token
        .and_then(|t| t.strip_prefix("s"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let show_deleted = get("showDeleted") == Some("true") || sync_token.is_some();
    let single = get("singleEvents") == Some("true");
    if get("orderBy") == Some("startTime") && !single {
        return calendar_error(
            400,
            "badRequest",
            "The requested ordering is not available for the particular query.",
        );
    }
    let bound =
        |k: &str| get(k).map(|t| DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc)));
    let (tmin, tmax) = match (bound("timeMin").transpose(), bound("timeMax").transpose()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return calendar_error(400, "badRequest", "Bad Request"),
    };
    if let (Some(a), Some(b)) = (tmin, tmax) {
        if a >= b {
            return calendar_error(400, "timeRangeEmpty", "The specified time range is empty.");
        }
    }
    let filters: Vec<(&str, &str)> = query
        .iter()
        .filter(|(q, _)| q == "privateExtendedProperty")
        .filter_map(|(_, p)| p.split_once('='))
        .collect();
    let events = cal.calendars.get(cid);
    let mut items: Vec<&Value> = cal
        .order
        .iter()
        .filter_map(|id| events.and_then(|e| e.get(id)))
        .filter(|e| show_deleted || e["status"] != "cancelled")
        .filter(|e| e["_change"].as_u64().unwrap_or(0) > since)
        .filter(|e| !(cal.bare_tombstones && e["status"] == "cancelled" && !filters.is_empty()))
        .filter(|e| {
            filters
                .iter()
                .all(|(k, v)| e["extendedProperties"]["private"][*k].as_str() == Some(*v))
        })
        .filter(|e| tmin.is_none_or(|t| time_of(&e["end"]).is_some_and(|end| end > t)))
        .filter(|e| tmax.is_none_or(|t| time_of(&e["start"]).is_some_and(|start| start < t)))
        .collect();
    if get("orderBy") == Some("startTime") {
        items.sort_by_key(|e| time_of(&e["start"]));
    }
    let max: usize = get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(250)
        .clamp(1, 2500);
    let size = cal.page_cap.map_or(max, |c| c.min(max));
    let (offset, empty) = match get("pageToken") {
        None if cal.empty_first_page => (0, true),
        None => (0, false),
        Some(t) => match t.strip_prefix("o").and_then(|o| o.parse::<usize>().ok()) {
            Some(o) => (o, false),
            None => return calendar_error(400, "invalid", "Invalid page token."),
        },
    };
    let page: Vec<Value> = if empty {
        vec![]
    } else {
        items
            .iter()
            .skip(offset)
            .take(size)
            .map(
                |e| match cal.bare_tombstones && e["status"] == "cancelled" {
                    true => json!({"id": e["id"], "status": "cancelled", "etag": e["etag"]}),
                    false => public(e),
                },
            )
            .collect()
    };
    let mut out = json!({"kind": "calendar#events", "items": page});
    if empty {
        out["nextPageToken"] = json!("o0");
    } else if offset + size < items.len() {
        out["nextPageToken"] = json!(format!("o{}", offset + size));
    } else {
        out["nextSyncToken"] = json!(format!("s{}", cal.changes));
    }
    json_ok(out)
}
