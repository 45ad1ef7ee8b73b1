//! Google Contacts people for the phonebook's referees (pure): what we want each contact to
//! carry, how a contact is found, and how ours is merged into one that exists.
//!
//! A contact is found by its FOGIS external id (`FogisId=DomarNr={domarnr}`, type `account`,
//! as the deployed service writes it), then by normalised phone, then by lower-case e-mail; a
//! contact carrying another referee's FOGIS id is never taken for this one.
//!
//! Merging keeps what the user added: our phone, e-mail and address go first unless already
//! there (compared normalised), values we wrote before and FOGIS no longer has are dropped,
//! everything else stays; the name is replaced only while it is still the one we wrote; the
//! external id is added. A contact found by phone or e-mail thus gains the external id.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::render::phonebook::Contact;
use crate::render::vcard::normalize_phone;

/// The group every referee contact is in.
pub const GROUP_NAME: &str = "Referees";
/// The fields an update replaces.
pub const UPDATE_FIELDS: &str = "names,phoneNumbers,emailAddresses,addresses,externalIds";
/// The fields read from Google.
pub const READ_FIELDS: &str =
    "names,phoneNumbers,emailAddresses,addresses,externalIds,memberships,metadata";

/// `FogisId=DomarNr={number}`.
pub fn external_id(number: &str) -> String {
    format!("FogisId=DomarNr={number}")
}

/// What we write for one referee; also kept in `sink_items` to know later what was ours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub given: String,
    pub family: String,
    /// E.164.
    pub phone: Option<String>,
    pub email: Option<String>,
    /// (street, postal code, city).
    pub address: Option<(String, String, String)>,
    pub external: Option<String>,
}

impl Owned {
    pub fn of(c: &Contact) -> Owned {
        let name = c.name.trim();
        let (given, family) = match name.rsplit_once(char::is_whitespace) {
            Some((g, f)) => (g.trim_end().to_string(), f.to_string()),
            None => (name.to_string(), String::new()),
        };
        let address = c.address.as_ref().map(|a| {
            let part = |p: &Option<String>| p.as_deref().unwrap_or("").trim().to_string();
            (part(&a.street), part(&a.postal_code), part(&a.city))
        });
        Owned {
            given,
            family,
            phone: c.mobile.clone(),
            email: c.email.as_deref().map(|e| e.trim().to_string()),
            address: address.filter(|(s, p, c)| !(s.is_empty() && p.is_empty() && c.is_empty())),
            external: c.referee_number.as_deref().map(external_id),
        }
    }

    fn names(&self) -> Value {
        json!([{"givenName": self.given, "familyName": self.family}])
    }

    fn phone_entry(&self) -> Option<Value> {
        self.phone
            .as_ref()
            .map(|p| json!({"value": p, "type": "mobile"}))
    }

    fn email_entry(&self) -> Option<Value> {
        self.email
            .as_ref()
            .map(|e| json!({"value": e, "type": "work"}))
    }

    fn address_entry(&self) -> Option<Value> {
        self.address.as_ref().map(|(street, postal, city)| {
            let formatted = format!("{street}, {postal} {city}");
            json!({"formattedValue": formatted.trim_matches([',', ' ']), "streetAddress": street,
                   "postalCode": postal, "city": city, "type": "home"})
        })
    }

    /// The body of `createContact`.
    pub fn new_person(&self) -> Value {
        let mut p = json!({"names": self.names()});
        let fields = [
            ("phoneNumbers", self.phone_entry()),
            ("emailAddresses", self.email_entry()),
            ("addresses", self.address_entry()),
            (
                "externalIds",
                self.external
                    .as_ref()
                    .map(|x| json!({"value": x, "type": "account"})),
            ),
        ];
        for (field, entry) in fields {
            if let Some(e) = entry {
                p[field] = json!([e]);
            }
        }
        p
    }
}

fn phone_key(v: &Value) -> Option<String> {
    v["value"].as_str().and_then(normalize_phone)
}

fn email_key(v: &Value) -> Option<String> {
    v["value"]
        .as_str()
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
}

fn address_key(v: &Value) -> Option<String> {
    let part = |k: &str| v[k].as_str().unwrap_or("").trim().to_lowercase();
    let key = format!(
        "{}|{}|{}",
        part("streetAddress"),
        part("postalCode"),
        part("city")
    );
    (key != "||").then_some(key)
}

fn owned_address_key(a: &(String, String, String)) -> String {
    format!(
        "{}|{}|{}",
        a.0.to_lowercase(),
        a.1.to_lowercase(),
        a.2.to_lowercase()
    )
}

/// A field's entries without the output-only parts, from the contact's own source only.
fn entries(person: &Value, field: &str) -> Vec<Value> {
    let list = person[field].as_array().cloned().unwrap_or_default();
    list.into_iter()
        .filter(|e| {
            matches!(
                e["metadata"]["source"]["type"].as_str(),
                None | Some("CONTACT")
            )
        })
        .map(|mut e| {
            if let Some(m) = e.as_object_mut() {
                for k in [
                    "metadata",
                    "formattedType",
                    "canonicalForm",
                    "displayNameLastFirst",
                ] {
                    m.remove(k);
                }
            }
            e
        })
        .collect()
}

/// Ours first unless an equal entry is there; theirs kept except what we wrote before.
fn merge_list(
    theirs: Vec<Value>,
    ours: Option<Value>,
    key: impl Fn(&Value) -> Option<String>,
    previous: Option<String>,
) -> Vec<Value> {
    let ours_key = ours.as_ref().and_then(&key);
    let mut out: Vec<Value> = theirs
        .into_iter()
        .filter(|e| {
            let k = key(e);
            k.is_none() || k != previous || k == ours_key
        })
        .collect();
    if let (Some(o), Some(k)) = (ours, &ours_key) {
        if !out.iter().any(|e| key(e).as_ref() == Some(k)) {
            out.insert(0, o);
        }
    }
    out
}

/// The five fields of [`UPDATE_FIELDS`] after merging `ours` into `person`.
pub fn merge(person: &Value, ours: &Owned, previous: Option<&Owned>) -> Value {
    let names = entries(person, "names");
    let is = |n: &Value, o: &Owned| {
        n["givenName"].as_str().unwrap_or("") == o.given
            && n["familyName"].as_str().unwrap_or("") == o.family
    };
    let names = match names.first() {
        None => ours.names(),
        // Still the name we wrote, and FOGIS has another now.
        Some(n) if previous.is_some_and(|p| is(n, p)) && !is(n, ours) => ours.names(),
        Some(_) => Value::Array(names),
    };
    let phones = merge_list(
        entries(person, "phoneNumbers"),
        ours.phone_entry(),
        phone_key,
        previous.and_then(|p| p.phone.clone()),
    );
    let emails = merge_list(
        entries(person, "emailAddresses"),
        ours.email_entry(),
        email_key,
        previous.and_then(|p| p.email.as_deref().map(str::to_lowercase)),
    );
    let addresses = merge_list(
        entries(person, "addresses"),
        ours.address_entry(),
        address_key,
        previous.and_then(|p| p.address.as_ref().map(owned_address_key)),
    );
    let mut externals = entries(person, "externalIds");
    if let Some(x) = &ours.external {
        if !externals
            .iter()
            .any(|e| e["value"].as_str() == Some(x.as_str()))
        {
            externals.push(json!({"value": x, "type": "account"}));
        }
    }
    json!({"names": names, "phoneNumbers": phones, "emailAddresses": emails,
           "addresses": addresses, "externalIds": externals})
}

/// Whether `merged` differs from what `person` has.
pub fn differs(person: &Value, merged: &Value) -> bool {
    UPDATE_FIELDS
        .split(',')
        .any(|f| Value::Array(entries(person, f)) != merged[f])
}

/// How a contact was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    ExternalId,
    Phone,
    Email,
}

/// The listed people, indexed by FOGIS id, phone and e-mail.
#[derive(Debug, Default)]
pub struct Index {
    by_external: HashMap<String, usize>,
    by_phone: HashMap<String, Vec<usize>>,
    by_email: HashMap<String, Vec<usize>>,
    /// The FOGIS ids each person carries.
    fogis_ids: Vec<Vec<String>>,
}

impl Index {
    pub fn build(people: &[Value]) -> Index {
        let mut ix = Index::default();
        for (i, p) in people.iter().enumerate() {
            let mut ids = Vec::new();
            for e in p["externalIds"].as_array().into_iter().flatten() {
                if let Some(v) = e["value"].as_str().filter(|v| v.starts_with("FogisId=")) {
                    ix.by_external.entry(v.to_string()).or_insert(i);
                    ids.push(v.to_string());
                }
            }
            ix.fogis_ids.push(ids);
            for e in p["phoneNumbers"].as_array().into_iter().flatten() {
                if let Some(k) = phone_key(e) {
                    ix.by_phone.entry(k).or_default().push(i);
                }
            }
            for e in p["emailAddresses"].as_array().into_iter().flatten() {
                if let Some(k) = email_key(e) {
                    ix.by_email.entry(k).or_default().push(i);
                }
            }
        }
        ix
    }

    /// The person for `ours`, not one already `taken` this run.
    pub fn find(&self, ours: &Owned, taken: &HashSet<usize>) -> Option<(usize, Found)> {
        if let Some(i) = ours.external.as_ref().and_then(|x| self.by_external.get(x)) {
            if !taken.contains(i) {
                return Some((*i, Found::ExternalId));
            }
        }
        // Someone else's FOGIS id means someone else, whatever phone they share.
        let free = |i: &&usize| {
            !taken.contains(*i)
                && self.fogis_ids[**i]
                    .iter()
                    .all(|x| Some(x) == ours.external.as_ref())
        };
        let phone = ours.phone.as_ref().and_then(|p| self.by_phone.get(p));
        if let Some(i) = phone.and_then(|l| l.iter().find(free)) {
            return Some((*i, Found::Phone));
        }
        let email = ours
            .email
            .as_ref()
            .and_then(|e| self.by_email.get(&e.to_lowercase()));
        email
            .and_then(|l| l.iter().find(free))
            .map(|i| (*i, Found::Email))
    }
}

#[cfg(test)]
#[path = "person_tests.rs"]
mod tests;
