//! Forms that carry less never erase: a list re-sent in the processor's enhanced 2.0 or simplified
//! legacy form after the raw form changes nothing stored. The converters below write what the
//! processor's formatters write (PROTOCOL.md sections 2.C, 2.D and 7), defaults included: the
//! enhanced `status` is `match.get("matchstatus", "scheduled")` and FOGIS has no `matchstatus`,
//! so every match says "scheduled"; roles FOGIS lacks are "N/A"; team contacts may be `[]`.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use fogis_calendar_sync::engine::{Engine, Outcome};
use fogis_pubsub::Message;
use proptest::prelude::*;
use serde_json::{json, Value};

const TZ: chrono_tz::Tz = chrono_tz::Europe::Stockholm;

fn snapshot(v: &Value) -> fogis_pubsub::Snapshot {
    match fogis_pubsub::decode(&serde_json::to_vec(v).unwrap()).unwrap() {
        Message::Matches(s) => s,
        other => panic!("not a match list: {other:?}"),
    }
}

/// The processor envelope around `matches`.
fn envelope(matches: Vec<Value>, id: &str) -> Value {
    json!({
        "message_id": id,
        "timestamp": "2026-01-01T10:00:00.000000Z",
        "source": "match-list-processor",
        "version": "1.0",
        "type": "match_updates",
        "payload": {"matches": matches, "schema_version": "2.0",
                    "metadata": {"has_changes": true}},
    })
}

/// The enhanced 2.0 message of raw FOGIS matches, as the processor's formatter writes it.
fn enhanced(raw: &[Value], id: &str) -> Value {
    let matches: Vec<Value> = raw
        .iter()
        .map(|m| {
            let referees: Vec<Value> = m["domaruppdraglista"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    json!({
                        "name": r["personnamn"],
                        "role": r.get("domarrollnamn").cloned().unwrap_or(json!("N/A")),
                        "contact": {
                            "mobile": r["mobiltelefon"],
                            "email": r["epostadress"],
                            "address": {"street": r["adress"], "postal_code": r["postnr"],
                                        "city": r["postort"]},
                        },
                    })
                })
                .collect();
            json!({
                "match_id": m["matchid"],
                "teams": {"home": {"name": m["lag1namn"], "id": 1, "logo_id": 1},
                          "away": {"name": m["lag2namn"], "id": 2, "logo_id": 2}},
                "date": m["speldatum"],
                "time": m["avsparkstid"],
                "venue": {"name": m["anlaggningnamn"], "address": ""},
                "referees": referees,
                "team_contacts": [],
                "series": {"name": m["tavlingnamn"], "level": "N/A"},
                "status": "scheduled",
            })
        })
        .collect();
    let mut v = envelope(matches, id);
    v["schema_version"] = json!("2.0");
    v
}

/// The simplified legacy message: teams as "A vs B", referees as names.
fn legacy(raw: &[Value], id: &str) -> Value {
    let matches: Vec<Value> = raw
        .iter()
        .map(|m| {
            let names: Vec<Value> = m["domaruppdraglista"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["personnamn"].clone())
                .collect();
            json!({
                "match_id": m["matchid"],
                "teams": format!("{} vs {}", m["lag1namn"].as_str().unwrap(),
                                 m["lag2namn"].as_str().unwrap()),
                "date": m["speldatum"],
                "time": m["avsparkstid"],
                "venue": m["anlaggningnamn"],
                "referees": names,
            })
        })
        .collect();
    envelope(matches, id)
}

/// One raw FOGIS match from the production fixture's first, re-dated and varied.
#[allow(clippy::too_many_arguments)]
fn raw_match(
    template: &Value,
    id: i64,
    start: DateTime<Utc>,
    home: &str,
    cancelled: bool,
    postponed: bool,
    referees: usize,
    phone_digit: u8,
) -> Value {
    let mut m = template.clone();
    let local = start.with_timezone(&TZ);
    m["matchid"] = json!(id);
    m["matchnr"] = json!(format!("nr{id}"));
    m["lag1namn"] = json!(home);
    m["lag2namn"] = json!(format!("Borta {id}"));
    m["tid"] = json!(tid(start));
    m["speldatum"] = json!(local.format("%Y-%m-%d").to_string());
    m["avsparkstid"] = json!(local.format("%H:%M").to_string());
    m["installd"] = json!(cancelled);
    m["uppskjuten"] = json!(postponed);
    let list = m["domaruppdraglista"].as_array_mut().unwrap();
    list.truncate(referees.max(1));
    for (i, r) in list.iter_mut().enumerate() {
        r["mobiltelefon"] = json!(format!("070{phone_digit}00000{i}"));
    }
    m
}

/// Every stored match: its record, hash, sequence and presence.
fn stored(engine: &Engine) -> Vec<Value> {
    engine
        .matches()
        .iter()
        .map(|m| {
            json!({"record": m.record, "hash": m.hash, "sequence": m.sequence,
                   "presence": m.presence})
        })
        .collect()
}

fn arb_list(template: Value) -> impl Strategy<Value = Vec<Value>> {
    let start = Utc.with_ymd_and_hms(2030, 3, 1, 0, 0, 0).unwrap();
    proptest::collection::btree_map(
        1i64..40,
        (
            0i64..400,
            11u32..21,
            0usize..4,
            any::<bool>(),
            any::<bool>(),
            1usize..4,
            0u8..9,
        ),
        1..8,
    )
    .prop_map(move |matches| {
        matches
            .into_iter()
            .map(
                |(id, (day, hour, team, cancelled, postponed, refs, digit))| {
                    let at = start + Duration::days(day) + Duration::hours(i64::from(hour));
                    let home = ["IFK Göteborg", "Malmö FF", "Åtvidabergs FF", "Örebro SK"][team];
                    raw_match(
                        &template,
                        7_100_000 + id,
                        at,
                        home,
                        cancelled,
                        postponed,
                        refs,
                        digit,
                    )
                },
            )
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_list_resent_in_a_lossy_form_changes_nothing(list in arb_list(
        fixture_json("processor_match_updates.json")["payload"]["matches"][0].clone()
    )) {
        let dir = tempfile::tempdir().unwrap();
        let engine = fogis_calendar_sync::open_engine(&state_opts(dir.path())).unwrap();
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap();
        let first = engine
            .apply_at(&snapshot(&envelope(list.clone(), "raw")), "test", false, now)
            .unwrap();
        prop_assert_eq!(first.outcome, Outcome::Applied);
        prop_assert_eq!(first.counts.created as usize, list.len());
        let before = stored(&engine);
        let feed_before = engine.feed_events();
        for (form, message) in [("enhanced", enhanced(&list, "enh")), ("legacy", legacy(&list, "leg"))] {
            let again = engine.apply_at(&snapshot(&message), "test", false, now).unwrap();
            prop_assert_eq!(&again.outcome, &Outcome::Applied, "{}", form);
            prop_assert_eq!(again.counts.unchanged as usize, list.len(), "{}: {:?}", form, again.counts);
            prop_assert_eq!(&stored(&engine), &before, "{}", form);
        }
        let feed_after = engine.feed_events();
        prop_assert_eq!(
            feed_after.iter().map(|e| (&e.summary, e.sequence, e.cancelled)).collect::<Vec<_>>(),
            feed_before.iter().map(|e| (&e.summary, e.sequence, e.cancelled)).collect::<Vec<_>>()
        );
    }
}

/// The shape: an unchanged list in the enhanced form after a cancellation, on the
/// channel the processor's multi-version path uses, through the HTTP API.
#[tokio::test]
async fn an_unchanged_enhanced_list_after_a_cancellation_keeps_the_match_cancelled() {
    let svc = Service::start().await;
    let mut raw = future_snapshot(&[10, 20], "raw");
    raw["payload"]["matches"][1]["installd"] = json!(true);
    let (status, body) = svc.post("/sync", serde_json::to_vec(&raw).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let cancelled_before = event(&parse_feed(&svc.feed().await), 7_000_001).clone();
    assert_eq!(cancelled_before.props["STATUS"], "CANCELLED");

    let list = raw["payload"]["matches"].as_array().unwrap().clone();
    // The raw fixture's speldatum/avsparkstid are the template's: make them agree with tid.
    let list: Vec<Value> = list
        .into_iter()
        .map(|mut m| {
            let t = m["tid"].as_str().unwrap();
            let ms: i64 = t[6..t.len() - 2].parse().unwrap();
            let local = DateTime::from_timestamp_millis(ms)
                .unwrap()
                .with_timezone(&TZ);
            m["speldatum"] = json!(local.format("%Y-%m-%d").to_string());
            m["avsparkstid"] = json!(local.format("%H:%M").to_string());
            m
        })
        .collect();
    let (status, body) = svc
        .post(
            "/sync",
            serde_json::to_vec(&enhanced(&list, "enh-1")).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unchanged"], 2, "{body}");
    assert_eq!(body["updated"], 0, "{body}");
    let after = event(&parse_feed(&svc.feed().await), 7_000_001).clone();
    assert_eq!(after.props["STATUS"], "CANCELLED");
    assert_eq!(after.props["SEQUENCE"], cancelled_before.props["SEQUENCE"]);
}
