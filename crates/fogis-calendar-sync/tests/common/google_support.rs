//! Helpers of the Google tests: FOGIS matches with Swedish names, the deployed Python
//! service's events (built by python3 from the same raw JSON, as that service builds them), and
//! a service aimed at the fake.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};

use super::google_fake::GoogleFake;
use crate::common::{fixture_json, Service};

pub const CALENDAR_ID: &str = "fogis-matches@group.calendar.google.com";
pub const USER_REFEREE: &str = "61318";

/// A referee as FOGIS lists them.
pub fn referee(role: &str, name: &str, nr: &str, mobile: &str, email: &str, street: &str) -> Value {
    json!({"domarrollnamn": role, "domarrollkortnamn": role, "personnamn": name, "namn": name,
           "domarnr": nr, "domareid": nr.parse::<i64>().unwrap_or(0), "mobiltelefon": mobile,
           "telefon": "", "telefonarbete": "", "epostadress": email, "adress": street,
           "coadress": "", "postnr": "41101", "postort": "Göteborg", "land": "Sverige"})
}

/// Raw FOGIS match `id`, `days` from now at 17:00 UTC, with Swedish letters everywhere.
pub fn raw_match(id: i64, days: i64, home: &str, away: &str, venue: &str) -> Value {
    let msg = fixture_json("processor_match_updates.json");
    let mut m = msg["payload"]["matches"][0].clone();
    let start = (Utc::now() + chrono::Duration::days(days))
        .date_naive()
        .and_hms_opt(17, 0, 0)
        .unwrap()
        .and_utc();
    m["matchid"] = json!(id);
    m["matchnr"] = json!(format!("00040{id}"));
    m["lag1namn"] = json!(home);
    m["lag2namn"] = json!(away);
    m["anlaggningnamn"] = json!(venue);
    m["tavlingnamn"] = json!("Division 2 Västra Götaland, herrar");
    m["tid"] = json!(format!("/Date({})/", start.timestamp_millis()));
    m["speldatum"] = json!(start.format("%Y-%m-%d").to_string());
    m["domaruppdraglista"] = json!([
        referee(
            "Dom",
            "John Doe",
            USER_REFEREE,
            "0700000000",
            "john.doe@example.com",
            "Example Street 1"
        ),
        referee(
            "AD1",
            "Jane Smith",
            "61438",
            "0701111111",
            "jane.smith@example.com",
            "Example Street 2"
        ),
        referee(
            "AD2",
            "Alice Andersson",
            "62000",
            "0702222222",
            "alice.andersson@example.com",
            "Åvägen 9"
        ),
    ]);
    m
}

/// The usual six: five upcoming, one played 30 days ago (outside the deployed 7-day window).
pub fn six_matches() -> Vec<Value> {
    vec![
        raw_match(
            7100001,
            3,
            "IFK Göteborg",
            "Örgryte IS",
            "Kamratgården 2 hybrid",
        ),
        raw_match(7100002, 10, "Malmö FF", "Åtvidabergs FF", "Eleda Stadion"),
        raw_match(
            7100003,
            17,
            "Östers IF",
            "Ljungskile SK",
            "Visma Arena, Växjö",
        ),
        raw_match(
            7100004,
            24,
            "Jönköpings Södra",
            "Gefle IF",
            "Stadsparksvallen",
        ),
        raw_match(
            7100005,
            31,
            "Västerås SK",
            "Skövde AIK",
            "Hitachi Energy Arena",
        ),
        raw_match(7100006, -30, "Norrby IF", "Utsiktens BK", "Borås Arena"),
    ]
}

/// A production message (processor envelope) carrying `matches`.
pub fn message(matches: &[Value], message_id: &str) -> Value {
    let mut msg = fixture_json("processor_match_updates.json");
    msg["payload"]["matches"] = json!(matches);
    msg["message_id"] = json!(message_id);
    msg
}

/// The deployed service's event bodies for `matches`, built by python3 exactly as it builds
/// them (GOOGLE.md section 2): UTC `isoformat()` times, its description, its calendarHash.
pub fn python_events(matches: &[Value]) -> Vec<Value> {
    const SCRIPT: &str = r#"
import datetime, hashlib, json, sys
def calendar_hash(m):
    data = {"lag1namn": m.get("lag1namn"), "lag2namn": m.get("lag2namn"),
            "anlaggningnamn": m.get("anlaggningnamn"), "tid": m.get("tid"),
            "tavlingnamn": m.get("tavlingnamn"),
            "kontaktpersoner": m.get("kontaktpersoner", []),
            "domaruppdraglista": m.get("domaruppdraglista", [])}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()
def body(m):
    start = datetime.datetime.fromtimestamp(int(m["tid"][6:-2]) / 1000, tz=datetime.timezone.utc)
    end = start + datetime.timedelta(hours=2)
    desc = f"{m['matchnr']}\n{m['tavlingnamn']}\n\n"
    blocks = []
    for r in m.get("domaruppdraglista", []):
        b = f"{r['domarrollkortnamn']}:\n{r['personnamn']}\n"
        if r.get("mobiltelefon"):
            b += f"Mobil: {r['mobiltelefon']}\n"
        if r.get("adress") and r.get("postnr") and r.get("postort"):
            b += f"{r['adress']}, {r['postnr']} {r['postort']}\n"
        blocks.append(b)
    desc += "\n".join(blocks) + "\n\n"
    if m.get("kontaktpersoner"):
        contacts = []
        for c in m["kontaktpersoner"]:
            b = f"{c['lagnamn']}:\nName: {c['personnamn']}\n"
            for label, key in (("Tel", "telefon"), ("Mobil", "mobiltelefon"), ("Email", "epostadress")):
                if c.get(key):
                    b += f"{label}: {c[key]}\n"
            contacts.append(b)
        desc += "Team Contacts:\n" + "\n".join(contacts) + "\n"
    desc += f"Match Details: https://www.svenskfotboll.se/matchfakta/{m['matchid']}/\n"
    return {"summary": f"{m['lag1namn']} - {m['lag2namn']}", "location": m["anlaggningnamn"],
            "start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
            "end": {"dateTime": end.isoformat(), "timeZone": "UTC"},
            "description": desc,
            "extendedProperties": {"private": {"matchId": str(m["matchid"]),
                "syncTag": "FOGIS_CALENDAR_SYNC", "calendarHash": calendar_hash(m)}},
            "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 2880}]}}
print(json.dumps([body(m) for m in json.load(sys.stdin)]))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed to build the deployed service's events");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(matches).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Fills the fake calendar as the deployed service did; returns the event ids by match id.
pub fn prefill(fake: &GoogleFake, matches: &[Value]) -> Vec<(i64, String)> {
    let events = python_events(matches);
    let mut f = fake.lock();
    matches
        .iter()
        .zip(events)
        .map(|(m, e)| {
            (
                m["matchid"].as_i64().unwrap(),
                f.calendar.put(CALENDAR_ID, e),
            )
        })
        .collect()
}

/// Starts the service with the Google sinks aimed at `fake` (token file written fresh or
/// expired), contacts on or off.
pub async fn start_service(fake: &GoogleFake, fresh_token: bool, contacts: bool) -> Service {
    let dir = tempfile::tempdir().unwrap();
    start_service_in(fake, dir, fresh_token, contacts).await
}

pub async fn start_service_in(
    fake: &GoogleFake,
    dir: tempfile::TempDir,
    fresh_token: bool,
    contacts: bool,
) -> Service {
    start_service_with(fake, dir, fresh_token, contacts, |_| {}).await
}

/// [`start_service_in`] with a last word on the options.
pub async fn start_service_with(
    fake: &GoogleFake,
    dir: tempfile::TempDir,
    fresh_token: bool,
    contacts: bool,
    tweak: impl FnOnce(&mut fogis_calendar_sync::config::ServeOpts),
) -> Service {
    let token = dir.path().join("token.json");
    fake.write_token_file(&token, fresh_token);
    let (cal, people, tok) = (fake.calendar_url(), fake.people_url(), fake.token_url());
    Service::start_in(dir, |o| {
        o.google.google_token_file = Some(token);
        o.google.google_calendar_id = CALENDAR_ID.into();
        o.google.google_contacts_enabled = contacts;
        o.google.google_calendar_api_url = cal;
        o.google.google_people_api_url = people;
        o.google.google_token_url = tok;
        o.google.google_retry_base_ms = 20;
        o.state.user_referee_number = Some(USER_REFEREE.into());
        tweak(o);
    })
    .await
}

/// The `/sinks` entry of `name`.
pub async fn sink(svc: &Service, name: &str) -> Value {
    let all = svc.get_json("/sinks").await;
    all["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until every Google sink has nothing pending, succeeded at least once, and waits for
/// nothing.
pub async fn wait_idle(svc: &Service, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let s = svc.get_json("/sinks").await;
        let google: Vec<&Value> = s["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["name"].as_str().unwrap_or("").starts_with("google"))
            .collect();
        if !google.is_empty()
            && google.iter().all(|x| {
                x["pending"] == 0 && x["last_success"].is_string() && x["paused_until"].is_null()
            })
        {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "Google sinks not idle within {limit:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `check` holds for the `/sinks` entry of `name`.
pub async fn wait_sink(
    svc: &Service,
    name: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let s = sink(svc, name).await;
        if check(&s) {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "{name} not as expected within {limit:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
