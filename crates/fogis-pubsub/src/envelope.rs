//! Every message form of the FOGIS wire contract, decoded into one [`Message`].
//!
//! The forms (see docs/PROTOCOL.md of the project):
//! - flat `{"matches": [...], "metadata": {...}}` (the integration README's patch);
//! - the processor envelope `{message_id, timestamp, type, payload: {matches, ...}}` in its v3.0,
//!   v3.1 and schema 2.0 variants;
//! - enhanced schema 2.0 (`schema_version` at the top, processed matches);
//! - simplified legacy (processed matches with `teams: "A vs B"`);
//! - a bare JSON list of matches (what people post by hand);
//! - processing status and system alerts, which are recorded and never applied.
//!
//! Structural faults (not JSON, no match list where one must be, wrong container types) fail the
//! whole message with a [`DecodeError`] that says where. A single match that cannot be understood
//! (no id, cannot be placed in time, a field of the wrong type) is set aside in
//! [`Snapshot::rejected`] with a reason, and the rest of the message still applies.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::fields::{self, FieldError, Obj};
use crate::model::{Address, Kickoff, Match, MatchForm, Referee, TeamContact};

/// Why a whole message could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The body is empty or only white space.
    #[error("empty message")]
    Empty,
    /// The bytes are not JSON (or not UTF-8).
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    /// The JSON is valid but its shape is not one of the known forms.
    #[error("{path}: {message}")]
    Shape { path: String, message: String },
    /// A well-formed envelope whose `type` this decoder does not know and which carries no matches.
    /// The value is kept here for the caller, and never in the text: a `type` is the sender's
    /// free text (a phone number, a name, a megabyte of anything), and the text goes to logs
    /// and status pages.
    #[error(
        "unsupported message type ({} characters, not shown): expected match_updates, \
         processing_status or system_alert",
        .0.chars().count()
    )]
    UnsupportedType(String),
}

impl DecodeError {
    fn shape(path: impl Into<String>, message: impl Into<String>) -> Self {
        DecodeError::Shape {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Which form a whole message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageForm {
    /// `{"matches": [...], "metadata": {...}}` at the top level.
    Flat,
    /// Processor envelope with `payload: {matches, metadata}`.
    ProcessorV30,
    /// Processor envelope with `payload: {matches, detailed_changes, metadata}`.
    ProcessorV31,
    /// Processor envelope with `payload.schema_version` (production since processor #87).
    ProcessorSchema2,
    /// Enhanced schema 2.0: `schema_version` at the top level.
    Enhanced,
    /// A bare JSON list of matches.
    BareList,
}

/// Envelope fields common to every form that has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Meta {
    pub message_id: Option<String>,
    pub timestamp: Option<DateTime<Utc>>,
    pub source: Option<String>,
    pub message_type: Option<String>,
}

/// A match that was set aside, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedMatch {
    /// Position in the message's match list.
    pub index: usize,
    /// The match id when it could be read.
    pub match_id: Option<i64>,
    pub reason: String,
}

/// A referee's whole current match list.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub meta: Meta,
    pub form: MessageForm,
    pub matches: Vec<Match>,
    pub rejected: Vec<RejectedMatch>,
    /// `metadata.has_changes`: a hint only; a snapshot that differs from the state applies anyway.
    pub has_changes: Option<bool>,
    /// The message's `metadata` object (or `payload.metadata`), as received.
    pub metadata: Value,
}

/// A processing status (`type: processing_status`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusUpdate {
    pub meta: Meta,
    /// `started`, `completed`, `failed`, or whatever the processor said.
    pub status: String,
    pub details: Value,
}

/// A system alert (`type: system_alert`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemAlert {
    pub meta: Meta,
    pub alert_type: String,
    pub severity: String,
    pub message: String,
    pub details: Value,
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Matches(Snapshot),
    Status(StatusUpdate),
    Alert(SystemAlert),
}

impl Message {
    /// The envelope fields of any message.
    pub fn meta(&self) -> &Meta {
        match self {
            Message::Matches(s) => &s.meta,
            Message::Status(s) => &s.meta,
            Message::Alert(a) => &a.meta,
        }
    }
}

/// Decodes a message from its bytes.
///
/// ```
/// let msg = fogis_pubsub::decode(br#"{"matches": [{"matchid": 1, "tid": "/Date(1746549000000)/",
///     "lag1namn": "A", "lag2namn": "B"}], "metadata": {"has_changes": true}}"#).unwrap();
/// match msg {
///     fogis_pubsub::Message::Matches(snapshot) => assert_eq!(snapshot.matches[0].match_id, 1),
///     _ => unreachable!(),
/// }
/// ```
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    // Match updates in the common forms take the fast path; everything else, and every error,
    // the general one (same results: see the `fast` module).
    if let Some(message) = fast::decode(bytes) {
        return Ok(message);
    }
    decode_general(bytes)
}

/// The general path: the whole message as a `serde_json::Value`, then [`decode_value`].
fn decode_general(bytes: &[u8]) -> Result<Message, DecodeError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| DecodeError::Json {
        line: e.line(),
        column: e.column(),
        message: json_error_message(&e),
    })?;
    decode_value(value)
}

/// serde_json's message without its " at line X column Y" tail (reported separately) and with no
/// echo of the input beyond the error category.
fn json_error_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Decodes a message that is already parsed JSON.
pub fn decode_value(value: Value) -> Result<Message, DecodeError> {
    match value {
        Value::Array(items) => Ok(Message::Matches(snapshot(
            Meta::default(),
            MessageForm::BareList,
            items,
            "",
            None,
            Value::Null,
        )?)),
        Value::Object(top) => decode_object(top),
        other => Err(DecodeError::shape(
            "$",
            format!(
                "expected an object or a list of matches, found {}",
                fields::kind(&other)
            ),
        )),
    }
}

fn decode_object(mut top: Map<String, Value>) -> Result<Message, DecodeError> {
    let meta = Meta {
        message_id: loose_string(&top, "message_id"),
        timestamp: top
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_timestamp),
        source: loose_string(&top, "source"),
        message_type: loose_string(&top, "type"),
    };
    let enhanced = top.get("schema_version").is_some();

    if let Some(payload) = top.remove("payload") {
        let Value::Object(mut payload) = payload else {
            return Err(DecodeError::shape(
                "payload",
                format!("expected an object, found {}", fields::kind(&payload)),
            ));
        };
        match meta.message_type.as_deref() {
            Some("processing_status") if !payload.contains_key("matches") => {
                return Ok(Message::Status(StatusUpdate {
                    status: loose_string(&payload, "status").unwrap_or_default(),
                    details: payload.remove("details").unwrap_or(Value::Null),
                    meta,
                }));
            }
            Some("system_alert") if !payload.contains_key("matches") => {
                return Ok(Message::Alert(SystemAlert {
                    alert_type: loose_string(&payload, "alert_type").unwrap_or_default(),
                    severity: loose_string(&payload, "severity").unwrap_or_default(),
                    message: loose_string(&payload, "message").unwrap_or_default(),
                    details: payload.remove("details").unwrap_or(Value::Null),
                    meta,
                }));
            }
            _ => {}
        }
        let Some(matches) = payload.remove("matches") else {
            return Err(match meta.message_type {
                Some(t) if t != "match_updates" => DecodeError::UnsupportedType(t),
                _ => DecodeError::shape("payload.matches", "missing: a match update needs a list"),
            });
        };
        let Value::Array(items) = matches else {
            return Err(DecodeError::shape(
                "payload.matches",
                format!("expected a list, found {}", fields::kind(&matches)),
            ));
        };
        let form = if enhanced {
            MessageForm::Enhanced
        } else if payload.contains_key("schema_version") {
            MessageForm::ProcessorSchema2
        } else if payload.contains_key("detailed_changes") {
            MessageForm::ProcessorV31
        } else {
            MessageForm::ProcessorV30
        };
        let metadata = payload.remove("metadata").unwrap_or(Value::Null);
        return Ok(Message::Matches(snapshot(
            meta, form, items, "payload.", None, metadata,
        )?));
    }

    if let Some(matches) = top.remove("matches") {
        let Value::Array(items) = matches else {
            return Err(DecodeError::shape(
                "matches",
                format!("expected a list, found {}", fields::kind(&matches)),
            ));
        };
        let metadata = top.remove("metadata").unwrap_or(Value::Null);
        let meta = flat_meta(meta, &metadata);
        let form = if enhanced {
            MessageForm::Enhanced
        } else {
            MessageForm::Flat
        };
        return Ok(Message::Matches(snapshot(
            meta, form, items, "", None, metadata,
        )?));
    }

    Err(match meta.message_type {
        Some(t) if t != "match_updates" => DecodeError::UnsupportedType(t),
        _ => DecodeError::shape(
            "$",
            "no match list: expected `matches`, `payload.matches` or a JSON list",
        ),
    })
}

/// The flat form keeps its envelope-ish fields inside `metadata`: they fill what the top level
/// does not say.
fn flat_meta(mut meta: Meta, metadata: &Value) -> Meta {
    if let Value::Object(m) = metadata {
        meta.message_id = meta.message_id.or_else(|| loose_string(m, "message_id"));
        meta.source = meta.source.or_else(|| loose_string(m, "source"));
        meta.timestamp = meta.timestamp.or_else(|| {
            m.get("timestamp")
                .and_then(Value::as_str)
                .and_then(parse_timestamp)
        });
    }
    meta
}

/// Longest `message_id` accepted, in bytes: ids are stored and shown.
pub const MAX_MESSAGE_ID_BYTES: usize = 128;
/// Largest `metadata` object accepted, as JSON bytes: it is stored with the list.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Largest single match accepted, as JSON bytes: a larger one is rejected alone.
pub const MAX_MATCH_BYTES: usize = 64 * 1024;

/// The length of `v` as compact JSON, without building the text.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

fn snapshot(
    meta: Meta,
    form: MessageForm,
    items: Vec<Value>,
    prefix: &str,
    has_changes: Option<bool>,
    metadata: Value,
) -> Result<Snapshot, DecodeError> {
    if let Some(id) = &meta.message_id {
        if id.len() > MAX_MESSAGE_ID_BYTES {
            return Err(DecodeError::shape(
                "message_id",
                format!("{} bytes, more than {MAX_MESSAGE_ID_BYTES}", id.len()),
            ));
        }
    }
    let metadata_len = json_len(&metadata);
    if metadata_len > MAX_METADATA_BYTES {
        return Err(DecodeError::shape(
            format!("{prefix}metadata"),
            format!("{metadata_len} bytes, more than {MAX_METADATA_BYTES}"),
        ));
    }
    let mut matches = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let id_hint = item.as_object().and_then(|o| {
            o.get("matchid")
                .or_else(|| o.get("match_id"))
                .and_then(|v| fields::as_i64(v).ok())
        });
        let size = json_len(&item);
        if size > MAX_MATCH_BYTES {
            rejected.push(RejectedMatch {
                index,
                match_id: id_hint,
                reason: format!(
                    "{prefix}matches[{index}]: {size} bytes, more than {MAX_MATCH_BYTES}"
                ),
            });
            continue;
        }
        match decode_match(item) {
            Ok(m) => matches.push(m),
            Err(e) => rejected.push(RejectedMatch {
                index,
                match_id: id_hint,
                reason: format!("{prefix}matches[{index}].{e}"),
            }),
        }
    }
    let has_changes = has_changes.or_else(|| metadata.get("has_changes").and_then(Value::as_bool));
    Ok(Snapshot {
        meta,
        form,
        matches,
        rejected,
        has_changes,
        metadata,
    })
}

/// Decodes one match of any form.
pub fn decode_match(item: Value) -> Result<Match, FieldError> {
    let Some(obj) = item.as_object() else {
        return Err(FieldError::new(
            "",
            format!("expected a match object, found {}", fields::kind(&item)),
        ));
    };
    let o = Obj::new(obj);
    let mut m = if obj.contains_key("matchid") {
        decode_raw(o)?
    } else if obj.contains_key("match_id") {
        decode_processed(o)?
    } else {
        return Err(FieldError::new(
            "matchid",
            "missing: no `matchid` or `match_id`",
        ));
    };
    m.raw = item;
    Ok(m)
}

fn decode_raw(o: Obj<'_>) -> Result<Match, FieldError> {
    let match_id = o.id("matchid")?;
    let kickoff = match o.opt_str("tid")? {
        Some(tid) => Kickoff::Utc(parse_tid(&tid).map_err(|e| FieldError::new("tid", e))?),
        None => local_kickoff(&o, "speldatum", "avsparkstid")?,
    };
    let coordinates = match (
        o.opt_f64("anlaggningLatitud")?,
        o.opt_f64("anlaggningLongitud")?,
    ) {
        (Some(lat), Some(lon)) if valid_coordinates(lat, lon) => Some((lat, lon)),
        _ => None,
    };
    let referees = o
        .opt_list("domaruppdraglista")?
        .map(|list| {
            list.iter()
                .enumerate()
                .map(|(i, r)| raw_referee(r).map_err(|e| e.within("domaruppdraglista", i)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let team_contacts = o
        .opt_list("kontaktpersoner")?
        .map(|list| {
            list.iter()
                .enumerate()
                .map(|(i, c)| raw_contact(c).map_err(|e| e.within("kontaktpersoner", i)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(Match {
        match_id,
        form: MatchForm::Raw,
        match_nr: o.opt_str("matchnr")?,
        home_team: o.opt_str("lag1namn")?,
        away_team: o.opt_str("lag2namn")?,
        kickoff,
        venue: o.opt_str("anlaggningnamn")?,
        venue_address: None,
        coordinates,
        competition: o.opt_str("tavlingnamn")?,
        cancelled: o.opt_bool("installd")?,
        postponed: o.opt_bool("uppskjuten")?,
        interrupted: o.opt_bool("avbruten")?,
        referees,
        team_contacts,
        raw: Value::Null,
    })
}

fn raw_referee(v: &Value) -> Result<Referee, FieldError> {
    let o = Obj::of(v)?;
    let name = o
        .opt_str("personnamn")?
        .or(o.opt_str("namn")?)
        .ok_or_else(|| FieldError::new("personnamn", "missing: a referee needs a name"))?;
    let address = Address {
        street: o.opt_str("adress")?,
        postal_code: o.opt_str("postnr")?,
        city: o.opt_str("postort")?,
    };
    Ok(Referee {
        name,
        role: o.opt_str("domarrollnamn")?,
        role_short: o.opt_str("domarrollkortnamn")?,
        referee_number: o.opt_str("domarnr")?,
        referee_id: o.opt_i64("domareid")?,
        mobile: o.opt_str("mobiltelefon")?,
        phone: o.opt_str("telefon")?,
        email: o.opt_str("epostadress")?,
        address: (!address.is_empty()).then_some(address),
    })
}

fn raw_contact(v: &Value) -> Result<TeamContact, FieldError> {
    let o = Obj::of(v)?;
    Ok(TeamContact {
        team: o.opt_str("lagnamn")?,
        name: o.opt_str("personnamn")?.unwrap_or_default(),
        mobile: o.opt_str("mobiltelefon")?,
        phone: o.opt_str("telefon")?,
        email: o.opt_str("epostadress")?,
        reserve: o.opt_bool("reserv")?.unwrap_or(false),
    })
}

/// Enhanced 2.0 and simplified legacy matches. `"N/A"` means unknown.
fn decode_processed(o: Obj<'_>) -> Result<Match, FieldError> {
    let o = o.not_applicable_is_none();
    let match_id = o.id("match_id")?;
    let kickoff = local_kickoff(&o, "date", "time")?;
    let (form, home_team, away_team) = match o.get("teams") {
        Some(Value::String(s)) => {
            let (home, away) = split_teams(s);
            (MatchForm::Legacy, home, away)
        }
        Some(Value::Object(_)) => {
            let teams = o.obj("teams")?;
            let side = |key: &str| -> Result<Option<String>, FieldError> {
                match teams.get(key) {
                    Some(Value::Object(_)) => {
                        teams.obj(key)?.opt_str("name").map_err(|e| e.under(key))
                    }
                    _ => teams.opt_str(key),
                }
            };
            (
                MatchForm::Enhanced,
                side("home").map_err(|e| e.under("teams"))?,
                side("away").map_err(|e| e.under("teams"))?,
            )
        }
        None | Some(Value::Null) => (MatchForm::Enhanced, None, None),
        Some(other) => {
            return Err(FieldError::new(
                "teams",
                format!(
                    "expected an object or \"A vs B\", found {}",
                    fields::kind(other)
                ),
            ))
        }
    };
    let (venue, venue_address, coordinates) = match o.get("venue") {
        Some(Value::Object(_)) => {
            let v = o.obj("venue")?;
            let coords = v.get("coordinates").and_then(|c| {
                let lat = c.get("latitude").or_else(|| c.get("lat"))?.as_f64()?;
                let lon = c.get("longitude").or_else(|| c.get("lon"))?.as_f64()?;
                valid_coordinates(lat, lon).then_some((lat, lon))
            });
            (
                v.opt_str("name").map_err(|e| e.under("venue"))?,
                v.opt_str("address").map_err(|e| e.under("venue"))?,
                coords,
            )
        }
        _ => (o.opt_str("venue")?, None, None),
    };
    let competition = match o.get("series") {
        Some(Value::Object(_)) => o
            .obj("series")?
            .opt_str("name")
            .map_err(|e| e.under("series"))?,
        _ => o.opt_str("series")?,
    };
    let referees = o
        .opt_list("referees")?
        .filter(|l| !l.is_empty())
        .map(|list| {
            list.iter()
                .enumerate()
                .map(|(i, r)| processed_referee(r).map_err(|e| e.within("referees", i)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    // An empty `team_contacts` in these forms means "not carried", not "none".
    let team_contacts = o
        .opt_list("team_contacts")?
        .filter(|l| !l.is_empty())
        .map(|list| {
            list.iter()
                .enumerate()
                .map(|(i, c)| processed_contact(c).map_err(|e| e.within("team_contacts", i)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    // The processor's enhanced formatter writes `match.get("matchstatus", "scheduled")`, and
    // FOGIS has no `matchstatus`: "scheduled" is its default for every match, cancelled or not
    // (PROTOCOL.md section 7), so it says nothing. Only a cancellation is carried.
    let cancelled = match o.opt_str("status")?.as_deref() {
        Some("cancelled" | "canceled" | "installd") => Some(true),
        _ => None,
    };
    Ok(Match {
        match_id,
        form,
        match_nr: o.opt_str("match_nr")?,
        home_team,
        away_team,
        kickoff,
        venue,
        venue_address,
        coordinates,
        competition,
        cancelled,
        postponed: None,
        interrupted: None,
        referees,
        team_contacts,
        raw: Value::Null,
    })
}

fn processed_referee(v: &Value) -> Result<Referee, FieldError> {
    if let Value::String(name) = v {
        return Ok(Referee {
            name: name.trim().to_string(),
            ..Referee::default()
        });
    }
    let o = Obj::of(v)?.not_applicable_is_none();
    let name = o
        .opt_str("name")?
        .ok_or_else(|| FieldError::new("name", "missing: a referee needs a name"))?;
    let (mobile, email, address) = match o.get("contact") {
        Some(Value::Object(_)) => {
            let c = o.obj("contact")?;
            let address = match c.get("address") {
                Some(Value::Object(_)) => {
                    let a = c.obj("address")?;
                    Some(Address {
                        street: a.opt_str("street")?,
                        postal_code: a.opt_str("postal_code")?,
                        city: a.opt_str("city")?,
                    })
                    .filter(|a| !a.is_empty())
                }
                _ => None,
            };
            (c.opt_str("mobile")?, c.opt_str("email")?, address)
        }
        _ => (None, None, None),
    };
    Ok(Referee {
        name,
        role: o.opt_str("role")?,
        role_short: o.opt_str("role_short")?,
        referee_number: o.opt_str("referee_number")?,
        referee_id: o.opt_i64("id")?,
        mobile,
        phone: None,
        email,
        address,
    })
}

fn processed_contact(v: &Value) -> Result<TeamContact, FieldError> {
    let o = Obj::of(v)?.not_applicable_is_none();
    Ok(TeamContact {
        team: o.opt_str("team")?.or(o.opt_str("team_name")?),
        name: o.opt_str("name")?.unwrap_or_default(),
        mobile: o.opt_str("mobile")?,
        phone: o.opt_str("phone")?,
        email: o.opt_str("email")?,
        reserve: o.opt_bool("reserve")?.unwrap_or(false),
    })
}

fn split_teams(s: &str) -> (Option<String>, Option<String>) {
    for sep in [" vs ", " - ", " – "] {
        if let Some((home, away)) = s.split_once(sep) {
            return (nonempty(home), nonempty(away));
        }
    }
    (nonempty(s), None)
}

fn nonempty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s != "N/A").then(|| s.to_string())
}

fn valid_coordinates(lat: f64, lon: f64) -> bool {
    lat.is_finite()
        && lon.is_finite()
        && lat.abs() <= 90.0
        && lon.abs() <= 180.0
        && (lat, lon) != (0.0, 0.0)
}

fn local_kickoff(o: &Obj<'_>, date_key: &str, time_key: &str) -> Result<Kickoff, FieldError> {
    let date = o.opt_str(date_key)?;
    let time = o.opt_str(time_key)?;
    match (date, time) {
        (Some(d), Some(t)) => {
            let date = NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map_err(|_| FieldError::new(date_key, "expected a date YYYY-MM-DD"))?;
            if !PLAUSIBLE_YEARS.contains(&date.year()) {
                return Err(FieldError::new(
                    date_key,
                    "not a plausible match date (2000 to 2099)",
                ));
            }
            let time = NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .or_else(|_| NaiveTime::parse_from_str(t.trim(), "%H:%M:%S"))
                .map_err(|_| FieldError::new(time_key, "expected a time HH:MM"))?;
            Ok(Kickoff::Local(NaiveDateTime::new(date, time)))
        }
        _ => Err(FieldError::new(
            date_key,
            "cannot be placed in time: no `tid` and no date and kick-off time",
        )),
    }
}

/// FOGIS matches are played between 2000 and 2099; a kick-off outside is garbage (and would make
/// a calendar describe a century of time-zone rules). The one rule for both ways of giving one.
const PLAUSIBLE_YEARS: std::ops::Range<i32> = 2000..2100;

/// Parses FOGIS' `/Date(1746543600000)/` (epoch milliseconds, UTC; an optional `+0200` style
/// suffix is informational only and ignored).
pub fn parse_tid(s: &str) -> Result<DateTime<Utc>, String> {
    let inner = s
        .trim()
        .strip_prefix("/Date(")
        .and_then(|r| r.strip_suffix(")/"))
        .ok_or_else(|| "expected /Date(milliseconds)/".to_string())?;
    let digits_end = inner
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '+' || *c == '-')
        .map(|(i, _)| i)
        .unwrap_or(inner.len());
    let ms: i64 = inner[..digits_end]
        .parse()
        .map_err(|_| "expected /Date(milliseconds)/".to_string())?;
    Utc.timestamp_millis_opt(ms)
        .single()
        .filter(|t| PLAUSIBLE_YEARS.contains(&t.year()))
        .ok_or_else(|| format!("{ms} ms is not a plausible match time (2000 to 2099)"))
}

/// Parses an envelope timestamp: RFC 3339, or the older form without zone (taken as UTC) and with
/// or without a fraction.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s.trim(), f).ok())
        .map(|n| n.and_utc())
}

fn loose_string(o: &Map<String, Value>, key: &str) -> Option<String> {
    loose(o.get(key))
}

/// An identifier-ish text field: a non-empty string, or a number as written.
fn loose(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

mod fast;

#[cfg(test)]
mod tests;
