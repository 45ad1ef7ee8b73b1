//! The fake's People v1: contacts with ETags (a stale one is `400 FAILED_PRECONDITION`), lagging
//! reads, paged connections with sync tokens and deletions, contact groups (30 a page by
//! default, 409 on a duplicate name), search that ignores external ids until warmed up, batch
//! limits, and a switch that fails mutations sent concurrently.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{json_ok, rpc_error, Shared};

/// The contacts side of the fake.
#[derive(Debug, Default)]
pub struct People {
    /// resourceName -> person (the truth).
    pub persons: BTreeMap<String, Value>,
    /// resourceName -> change number of deleted contacts.
    pub deleted: BTreeMap<String, u64>,
    /// What listings and searches see when `lagging` (writes show up "minutes" later).
    pub visible: Option<BTreeMap<String, Value>>,
    /// In creation order (the listing order).
    pub groups: Vec<Value>,
    /// `connections.list` requests, and those that were the first page of a full sync.
    pub list_calls: usize,
    pub full_sync_first_pages: usize,
    /// The first page of the next N full syncs answers 429 (its separate quota).
    pub first_page_429: usize,
    pub sync_tokens_expired: bool,
    pub warmed_up: bool,
    /// Mutations received (create, update, delete, group changes).
    pub writes: usize,
    pub fail_concurrent_writes: bool,
    pub in_flight: usize,
    pub concurrent_failures: usize,
    pub changes: u64,
    /// Pages of connections and groups hold at most this many items.
    pub page_cap: Option<usize>,
}

impl People {
    /// Adds a contact as if made in Google Contacts; returns its resource name.
    pub fn add(&mut self, mut person: Value) -> String {
        self.changes += 1;
        let n = self.changes;
        let name = format!("people/c{}", 7_000_000_000u64 + n);
        person["resourceName"] = json!(name);
        if person.get("memberships").is_none() {
            person["memberships"] = json!([membership("contactGroups/myContacts")]);
        }
        self.store(&name, person);
        name
    }

    /// Writes `person` under `name` with a fresh ETag.
    fn store(&mut self, name: &str, mut person: Value) {
        self.changes += 1;
        let etag = format!("%EgUBAgMuNxo{}", self.changes);
        person["etag"] = json!(etag);
        let id = name.trim_start_matches("people/").to_string();
        person["metadata"] = json!({"sources": [{"type": "CONTACT", "id": id, "etag": etag}],
                                     "objectType": "PERSON"});
        person["_change"] = json!(self.changes);
        for n in person["names"].as_array_mut().into_iter().flatten() {
            let given = n["givenName"].as_str().unwrap_or("").to_string();
            let family = n["familyName"].as_str().unwrap_or("").to_string();
            n["displayName"] = json!(format!("{given} {family}").trim().to_string());
        }
        self.persons.insert(name.to_string(), person);
    }

    /// Listings and searches see the state of now until [`People::catch_up`].
    pub fn lag(&mut self) {
        self.visible = Some(self.persons.clone());
    }

    pub fn catch_up(&mut self) {
        self.visible = None;
    }

    pub fn group_named(&self, name: &str) -> Option<String> {
        self.groups
            .iter()
            .find(|g| g["name"] == name)
            .map(|g| g["resourceName"].as_str().unwrap().to_string())
    }

    pub fn group(&self, rn: &str) -> Option<&Value> {
        self.groups.iter().find(|g| g["resourceName"] == rn)
    }

    pub fn add_group(&mut self, name: &str) -> String {
        self.changes += 1;
        let rn = format!("contactGroups/{:x}", 0x5a00_0000u64 + self.changes);
        self.groups.push(json!({"resourceName": rn, "name": name,
            "groupType": "USER_CONTACT_GROUP", "etag": format!("g{}", self.changes)}));
        rn
    }

    /// Changes a contact as its owner would in Google Contacts (new ETag).
    pub fn user_edit(&mut self, name: &str, patch: Value) {
        let mut p = self.persons[name].clone();
        for (k, v) in patch.as_object().unwrap() {
            p[k] = v.clone();
        }
        self.store(name, p);
    }

    pub fn members(&self, group: &str) -> Vec<String> {
        self.persons
            .iter()
            .filter(|(_, p)| {
                p["memberships"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["contactGroupMembership"]["contactGroupResourceName"] == group)
            })
            .map(|(n, _)| n.clone())
            .collect()
    }
}

pub fn membership(group: &str) -> Value {
    json!({"contactGroupMembership": {"contactGroupId": group.trim_start_matches("contactGroups/"),
                                      "contactGroupResourceName": group}})
}

pub fn seed_system_groups(p: &mut People) {
    for (id, name) in [
        ("myContacts", "myContacts"),
        ("starred", "starred"),
        ("friends", "Friends"),
        ("family", "Family"),
        ("coworkers", "Coworkers"),
        ("chatBuddies", "chatBuddies"),
    ] {
        let rn = format!("contactGroups/{id}");
        p.groups
            .push(json!({"resourceName": rn, "name": name, "groupType": "SYSTEM_CONTACT_GROUP"}));
    }
}

fn fields(person: &Value, mask: &str) -> Value {
    let mut out = json!({"resourceName": person["resourceName"], "etag": person["etag"]});
    for f in mask.split(',').map(str::trim) {
        if let Some(v) = person.get(f) {
            out[f] = v.clone();
        }
    }
    out
}

fn get<'a>(query: &'a [(String, String)], k: &str) -> Option<&'a str> {
    query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str())
}

pub async fn handle(
    state: &Shared,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Response {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let rest = path.trim_start_matches("/v1/");
    let mutation = *method != Method::GET;
    if mutation {
        // Mutations take a while; one arriving while another runs fails when the switch is on.
        let clash = {
            let mut f = state.lock().unwrap();
            f.people.writes += 1;
            f.people.in_flight += 1;
            f.people.fail_concurrent_writes && f.people.in_flight > 1
        };
        tokio::time::sleep(Duration::from_millis(15)).await;
        let mut f = state.lock().unwrap();
        f.people.in_flight -= 1;
        if clash {
            f.people.concurrent_failures += 1;
            return rpc_error(
                409,
                "ABORTED",
                "The operation was aborted: concurrent mutation.",
            );
        }
    }
    let mut f = state.lock().unwrap();
    let p = &mut f.people;
    match (method.clone(), rest) {
        (Method::GET, "people/me/connections") => connections(p, query),
        (Method::GET, "people:searchContacts") => search(p, query),
        (Method::GET, "contactGroups") => {
            let size: usize = get(query, "pageSize")
                .and_then(|s| s.parse().ok())
                .unwrap_or(30);
            if !(1..=1000).contains(&size) {
                return rpc_error(400, "INVALID_ARGUMENT", "pageSize must be 1-1000");
            }
            let size = p.page_cap.map_or(size, |c| c.min(size));
            let offset: usize = get(query, "pageToken")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let all: Vec<&Value> = p.groups.iter().collect();
            let page: Vec<&&Value> = all.iter().skip(offset).take(size).collect();
            let mut out = json!({"contactGroups": page, "totalItems": all.len()});
            if offset + size < all.len() {
                out["nextPageToken"] = json!((offset + size).to_string());
            }
            json_ok(out)
        }
        (Method::POST, "contactGroups") => {
            let Some(name) = body["contactGroup"]["name"].as_str() else {
                return rpc_error(400, "INVALID_ARGUMENT", "contactGroup.name is required");
            };
            if p.groups
                .iter()
                .any(|g| g["name"] == name && g["groupType"] == "USER_CONTACT_GROUP")
            {
                return rpc_error(409, "ALREADY_EXISTS", "Contact group name already exists.");
            }
            let rn = p.add_group(name);
            json_ok(p.group(&rn).unwrap().clone())
        }
        (Method::POST, "people:createContact") => {
            for single in ["names", "birthdays", "genders", "biographies"] {
                if body[single].as_array().is_some_and(|a| a.len() > 1) {
                    return rpc_error(
                        400,
                        "INVALID_ARGUMENT",
                        "singleton field has more than one value",
                    );
                }
            }
            let rn = p.add(body);
            json_ok(fields(
                &p.persons[&rn],
                get(query, "personFields").unwrap_or("names,metadata"),
            ))
        }
        (Method::POST, "people:batchCreateContacts") => {
            let contacts = body["contacts"].as_array().cloned().unwrap_or_default();
            if contacts.len() > 200 {
                return rpc_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Too many contacts in the batch (max 200).",
                );
            }
            let created: Vec<Value> = contacts
                .into_iter()
                .map(|c| {
                    let rn = p.add(c["contactPerson"].clone());
                    json!({"person": fields(&p.persons[&rn], get(query, "readMask").unwrap_or("names"))})
                })
                .collect();
            json_ok(json!({"createdPeople": created}))
        }
        (Method::POST, "people:batchUpdateContacts") => {
            if body["contacts"].as_object().is_some_and(|c| c.len() > 200) {
                return rpc_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Too many contacts in the batch (max 200).",
                );
            }
            rpc_error(501, "UNIMPLEMENTED", "not faked")
        }
        (Method::GET, name) if name.starts_with("people/c") => {
            let Some(mask) = get(query, "personFields") else {
                return rpc_error(400, "INVALID_ARGUMENT", "personFields mask is required");
            };
            match p.persons.get(name) {
                Some(person) => json_ok(fields(person, mask)),
                None => rpc_error(404, "NOT_FOUND", "Requested entity was not found."),
            }
        }
        (Method::PATCH, r) if r.ends_with(":updateContact") => {
            let name = r.trim_end_matches(":updateContact");
            let Some(mask) = get(query, "updatePersonFields") else {
                return rpc_error(
                    400,
                    "INVALID_ARGUMENT",
                    "updatePersonFields mask is required.",
                );
            };
            let Some(current) = p.persons.get(name).cloned() else {
                return rpc_error(404, "NOT_FOUND", "Requested entity was not found.");
            };
            let sent = body["etag"]
                .as_str()
                .or_else(|| body["metadata"]["sources"][0]["etag"].as_str());
            if sent != current["etag"].as_str() {
                return rpc_error(400, "FAILED_PRECONDITION",
                    "Request person.etag is different than the current person.etag. Clear local cache and get the latest person.");
            }
            let mut next = current;
            for f in mask.split(',') {
                match body.get(f) {
                    Some(v) => next[f] = v.clone(),
                    None => {
                        next.as_object_mut().unwrap().remove(f);
                    }
                }
            }
            p.store(name, next);
            json_ok(fields(
                &p.persons[name],
                get(query, "personFields").unwrap_or("names"),
            ))
        }
        (Method::DELETE, r) if r.ends_with(":deleteContact") => {
            let name = r.trim_end_matches(":deleteContact");
            if p.persons.remove(name).is_none() {
                return rpc_error(404, "NOT_FOUND", "Requested entity was not found.");
            }
            p.changes += 1;
            let n = p.changes;
            p.deleted.insert(name.to_string(), n);
            json_ok(json!({}))
        }
        (Method::POST, r) if r.ends_with("/members:modify") => {
            let group = r.trim_end_matches("/members:modify").to_string();
            let Some(g) = p.group(&group) else {
                return rpc_error(404, "NOT_FOUND", "Requested entity was not found.");
            };
            if g["groupType"] == "SYSTEM_CONTACT_GROUP"
                && !group.ends_with("/myContacts")
                && !group.ends_with("/starred")
            {
                return rpc_error(
                    400,
                    "FAILED_PRECONDITION",
                    "Cannot add contacts to this system group.",
                );
            }
            let add: Vec<String> = body["resourceNamesToAdd"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            if add.len() > 1000 {
                return rpc_error(400, "INVALID_ARGUMENT", "At most 1000 resource names.");
            }
            let mut missing = Vec::new();
            for name in add {
                match p.persons.get(&name).cloned() {
                    Some(mut person) => {
                        let list = person["memberships"].as_array_mut().unwrap();
                        if !list.iter().any(|m| {
                            m["contactGroupMembership"]["contactGroupResourceName"]
                                == group.as_str()
                        }) {
                            list.push(membership(&group));
                        }
                        p.store(&name, person);
                    }
                    None => missing.push(name),
                }
            }
            json_ok(if missing.is_empty() {
                json!({})
            } else {
                json!({"notFoundResourceNames": missing})
            })
        }
        _ => rpc_error(404, "NOT_FOUND", "Method not found."),
    }
}

fn connections(p: &mut People, query: &[(String, String)]) -> Response {
    p.list_calls += 1;
    let Some(mask) = get(query, "personFields") else {
        return rpc_error(
            400,
            "INVALID_ARGUMENT",
            "personFields mask is required. Please specify one or more valid paths.",
        );
    };
    let size: usize = get(query, "pageSize")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    if !(1..=1000).contains(&size) {
        return rpc_error(400, "INVALID_ARGUMENT", "pageSize must be 1-1000");
    }
    let size = p.page_cap.map_or(size, |c| c.min(size));
    let sync = get(query, "syncToken");
    let page_token = get(query, "pageToken");
    if sync.is_none() && page_token.is_none() {
        p.full_sync_first_pages += 1;
        if p.first_page_429 > 0 {
            p.first_page_429 -= 1;
            return rpc_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Full sync requests'.",
            );
        }
    }
    if sync.is_some() && p.sync_tokens_expired {
        let body = json!({"error": {"code": 410, "status": "FAILED_PRECONDITION", "message": "Sync token is expired.",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "EXPIRED_SYNC_TOKEN"}]}});
        return (axum::http::StatusCode::GONE, axum::Json(body)).into_response();
    }
    let since: u64 = sync.and_then(|t| t.parse().ok()).unwrap_or(0);
    let view = p.visible.as_ref().unwrap_or(&p.persons);
    let mut all: Vec<Value> = view
        .values()
        .filter(|q| q["_change"].as_u64().unwrap_or(0) > since)
        .map(|q| fields(q, mask))
        .collect();
    if sync.is_some() {
        for (name, n) in &p.deleted {
            if *n > since {
                all.push(json!({"resourceName": name, "metadata": {"deleted": true}}));
            }
        }
    }
    let offset: usize = page_token.and_then(|t| t.parse().ok()).unwrap_or(0);
    let page: Vec<&Value> = all.iter().skip(offset).take(size).collect();
    let mut out = json!({"connections": page, "totalPeople": all.len(), "totalItems": all.len()});
    if offset + size < all.len() {
        out["nextPageToken"] = json!((offset + size).to_string());
    } else if get(query, "requestSyncToken") == Some("true") || sync.is_some() {
        out["nextSyncToken"] = json!(p.changes.to_string());
    }
    json_ok(out)
}

fn search(p: &mut People, query: &[(String, String)]) -> Response {
    if get(query, "readMask").is_none() {
        return rpc_error(400, "INVALID_ARGUMENT", "readMask is required");
    }
    if get(query, "pageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .is_some_and(|s| s > 30)
    {
        return rpc_error(400, "INVALID_ARGUMENT", "pageSize must be at most 30");
    }
    let q = get(query, "query").unwrap_or("").to_lowercase();
    if q.is_empty() {
        p.warmed_up = true;
        return json_ok(json!({}));
    }
    if !p.warmed_up {
        return json_ok(json!({})); // the cache is cold: nothing found yet
    }
    let view = p.visible.as_ref().unwrap_or(&p.persons);
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let hits: Vec<Value> = view
        .values()
        .filter(|person| {
            let names = person["names"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|n| {
                    ["givenName", "familyName", "displayName"]
                        .map(|k| n[k].as_str().unwrap_or("").to_lowercase())
                });
            let emails = person["emailAddresses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["value"].as_str().unwrap_or("").to_lowercase());
            let phones: Vec<String> = person["phoneNumbers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| digits(e["value"].as_str().unwrap_or("")))
                .collect();
            let mut words = names.chain(emails);
            words.any(|w| w.split_whitespace().any(|x| x.starts_with(&q)))
                || (!digits(&q).is_empty() && phones.iter().any(|ph| ph.starts_with(&digits(&q))))
        })
        .map(|person| json!({"person": fields(person, get(query, "readMask").unwrap_or("names"))}))
        .collect();
    json_ok(json!({"results": hits}))
}
