#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn snapshot_of(name: &str) -> Snapshot {
    match decode(&fixture(name)).unwrap() {
        Message::Matches(s) => s,
        other => panic!("{name}: expected matches, got {other:?}"),
    }
}

const UTC_18_30: i64 = 1_746_549_000_000; // 2025-05-06 18:30 Europe/Stockholm

#[test]
fn every_match_form_decodes_to_the_same_three_matches() {
    let cases = [
        (
            "processor_match_updates.json",
            MessageForm::ProcessorSchema2,
        ),
        (
            "processor_match_updates_v3.0.json",
            MessageForm::ProcessorV30,
        ),
        (
            "processor_match_updates_v3.1.json",
            MessageForm::ProcessorV31,
        ),
        ("seed_flat.json", MessageForm::Flat),
        ("enhanced_v2.json", MessageForm::Enhanced),
        ("legacy_simplified.json", MessageForm::Enhanced),
    ];
    for (name, form) in cases {
        let s = snapshot_of(name);
        let ids: Vec<i64> = s.matches.iter().map(|m| m.match_id).collect();
        assert_eq!(ids, [6186203, 6186300, 6186400], "{name}");
        assert!(s.rejected.is_empty(), "{name}: {:?}", s.rejected);
        if name != "legacy_simplified.json" {
            assert_eq!(s.form, form, "{name}");
        }
        assert_eq!(s.has_changes, Some(true), "{name}");
        assert_eq!(
            s.matches[0].home_team.as_deref(),
            Some("IFK Göteborg"),
            "{name}"
        );
        assert_eq!(
            s.matches[0].away_team.as_deref(),
            Some("Falkenbergs FF"),
            "{name}"
        );
        assert_eq!(
            s.matches[0].venue.as_deref(),
            Some("Kamratgården 2 hybrid"),
            "{name}"
        );
    }
}

#[test]
fn production_envelope_carries_everything() {
    let s = snapshot_of("processor_match_updates.json");
    assert_eq!(
        s.meta.message_id.as_deref(),
        Some("d23f0824-128b-4f33-8c5c-7fd0a6a3a450")
    );
    assert_eq!(s.meta.source.as_deref(), Some("match-list-processor"));
    assert_eq!(
        s.meta.timestamp.unwrap().to_rfc3339(),
        "2025-05-05T06:30:00.123456+00:00"
    );
    let m = &s.matches[0];
    assert_eq!(m.form, MatchForm::Raw);
    assert_eq!(
        m.kickoff,
        Kickoff::Utc(Utc.timestamp_millis_opt(UTC_18_30).unwrap())
    );
    assert_eq!(m.match_nr.as_deref(), Some("000402010"));
    assert_eq!(m.competition.as_deref(), Some("Ligacupen Elit Västra"));
    assert_eq!(m.coordinates, Some((57.697617, 12.028288)));
    assert_eq!(m.cancelled, Some(false));
    let refs = m.referees.as_ref().unwrap();
    assert_eq!(refs.len(), 3);
    assert_eq!(refs[0].role_short.as_deref(), Some("Dom"));
    assert_eq!(refs[0].referee_number.as_deref(), Some("61318"));
    assert_eq!(refs[0].mobile.as_deref(), Some("0700000000"));
    assert_eq!(refs[0].phone, None, "empty strings mean none");
    assert_eq!(m.team_contacts.as_ref().unwrap().len(), 3);
    assert_eq!(m.raw["matchid"], 6186203);
}

#[test]
fn processed_forms_leave_unknowns_unknown() {
    let s = snapshot_of("enhanced_v2.json");
    let m = &s.matches[0];
    assert_eq!(m.form, MatchForm::Enhanced);
    assert_eq!(m.competition, None, "N/A is unknown");
    assert_eq!(m.team_contacts, None, "an empty list is not carried");
    let refs = m.referees.as_ref().unwrap();
    assert_eq!(refs[2].name, "Alice Andersson");
    assert_eq!(refs[2].role, None);
    let local = NaiveDate::from_ymd_opt(2025, 5, 6)
        .unwrap()
        .and_hms_opt(18, 30, 0)
        .unwrap();
    assert_eq!(m.kickoff, Kickoff::Local(local));

    let l = snapshot_of("legacy_simplified.json");
    assert_eq!(l.matches[1].form, MatchForm::Legacy);
    assert_eq!(l.matches[1].home_team.as_deref(), Some("Example IF"));
    assert_eq!(l.matches[1].away_team.as_deref(), Some("Sample BK"));
    assert_eq!(
        l.matches[1].referees.as_ref().unwrap()[2].name,
        "Bob Johnson"
    );
}

#[test]
fn status_and_alert_are_recognised() {
    match decode(&fixture("processing_status_failed.json")).unwrap() {
        Message::Status(s) => {
            assert_eq!(s.status, "failed");
            assert_eq!(s.details["error_type"], "RuntimeError");
        }
        other => panic!("{other:?}"),
    }
    match decode(&fixture("system_alert.json")).unwrap() {
        Message::Alert(a) => {
            assert_eq!(a.severity, "error");
            assert_eq!(a.alert_type, "processing_error");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bare_list_and_string_ids_work() {
    let s =
        match decode(br#"[{"matchid": "42", "speldatum": "2025-01-02", "avsparkstid": "19:45"}]"#)
            .unwrap()
        {
            Message::Matches(s) => s,
            other => panic!("{other:?}"),
        };
    assert_eq!(s.form, MessageForm::BareList);
    assert_eq!(s.matches[0].match_id, 42);
    let local = NaiveDate::from_ymd_opt(2025, 1, 2)
        .unwrap()
        .and_hms_opt(19, 45, 0)
        .unwrap();
    assert_eq!(s.matches[0].kickoff, Kickoff::Local(local));
}

#[test]
fn a_match_that_cannot_be_placed_in_time_is_rejected_alone() {
    let body = br#"{"matches": [
        {"matchid": 1, "tid": "/Date(1746549000000)/"},
        {"matchid": 2, "lag1namn": "No time"},
        {"matchid": 3, "tid": "yesterday"},
        {"matchid": 4, "tid": "/Date(1746549000000)/", "lag1namn": {"x": 1}},
        {"nothing": true},
        17
    ]}"#;
    let Message::Matches(s) = decode(body).unwrap() else {
        panic!()
    };
    assert_eq!(s.matches.len(), 1);
    assert_eq!(s.matches[0].match_id, 1);
    let reasons: Vec<&str> = s.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(s.rejected[0].match_id, Some(2));
    assert!(
        reasons[0].starts_with("matches[1].speldatum: cannot be placed in time"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("matches[2].tid: expected /Date(milliseconds)/"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("matches[3].lag1namn: expected text, found an object"),
        "{reasons:?}"
    );
    assert!(
        reasons[3].contains("matches[4].matchid: missing"),
        "{reasons:?}"
    );
    assert!(
        reasons[4].contains("expected a match object, found a number"),
        "{reasons:?}"
    );
}

#[test]
fn structural_errors_say_where() {
    assert_eq!(decode(b"  \n").unwrap_err(), DecodeError::Empty);
    let e = decode(b"{\"matches\": [1,").unwrap_err();
    assert!(matches!(e, DecodeError::Json { line: 1, .. }), "{e}");
    let e = decode(br#"{"matches": {"a": 1}}"#).unwrap_err();
    assert_eq!(e.to_string(), "matches: expected a list, found an object");
    let e = decode(br#"{"type": "match_updates", "payload": []}"#).unwrap_err();
    assert_eq!(e.to_string(), "payload: expected an object, found a list");
    let e = decode(br#"{"hello": "world"}"#).unwrap_err();
    assert!(e.to_string().contains("no match list"), "{e}");
    let e = decode(br#"{"type": "heartbeat", "payload": {}}"#).unwrap_err();
    assert_eq!(e, DecodeError::UnsupportedType("heartbeat".into()));
    assert_eq!(
        e.to_string(),
        "unsupported message type (9 characters, not shown): expected match_updates, \
         processing_status or system_alert"
    );
    for foreign in [
        "heartbeat",
        "Anna_Svensson",
        "call 0701234567",
        "+46701234567",
        "<b>x</b>",
        &"x".repeat(65),
    ] {
        let body = serde_json::json!({"type": foreign, "payload": {}}).to_string();
        let e = decode(body.as_bytes()).expect_err("unsupported");
        let text = e.to_string();
        assert!(text.starts_with("unsupported message type ("), "{text}");
        assert!(!text.contains(foreign), "{text}");
    }
    assert!(decode(b"\"text\"").is_err());
    assert!(decode(&[0xff, 0xfe, 0x00]).is_err());
}

#[test]
fn local_dates_far_from_now_are_rejected() {
    let Message::Matches(s) =
        decode(br#"[{"match_id": 1, "teams": "A vs B", "date": "4050-05-06", "time": "18:30"}]"#)
            .unwrap()
    else {
        panic!()
    };
    assert!(s.matches.is_empty());
    assert!(
        s.rejected[0]
            .reason
            .contains("date: not a plausible match date"),
        "{:?}",
        s.rejected
    );
}

#[test]
fn tid_and_timestamps() {
    assert_eq!(
        parse_tid("/Date(1746549000000)/")
            .unwrap()
            .timestamp_millis(),
        UTC_18_30
    );
    assert_eq!(
        parse_tid("/Date(1746549000000+0200)/")
            .unwrap()
            .timestamp_millis(),
        UTC_18_30
    );
    assert!(parse_tid("/Date(99999999999999999)/").is_err());
    assert!(
        parse_tid("/Date(631152000000)/")
            .unwrap_err()
            .contains("2000 to 2099"),
        "1990"
    );
    assert!(parse_tid("/Date(4102444800000)/").is_err(), "2100");
    assert!(parse_tid("/Date()/").is_err());
    assert!(parse_tid("1746549000000").is_err());
    let old = parse_timestamp("2025-05-05T06:30:00").unwrap();
    assert_eq!(old.to_rfc3339(), "2025-05-05T06:30:00+00:00");
    assert!(parse_timestamp("2025-05-05T06:30:00.5+02:00").is_some());
    assert!(parse_timestamp("soon").is_none());
}

fn mutate(bytes: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for &(pos, b) in edits {
        if !out.is_empty() {
            let i = pos % out.len();
            out[i] = b;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_fixtures(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
        cut in any::<usize>(),
    ) {
        let names = ["processor_match_updates.json", "enhanced_v2.json", "legacy_simplified.json",
            "seed_flat.json", "system_alert.json", "processor_match_updates_v3.0.json"];
        let original = fixture(names[which]);
        let mutated = mutate(&original, &edits);
        let _ = decode(&mutated);
        let _ = decode(&mutated[..cut % (mutated.len() + 1)]);
    }
}

fn matches_of(bytes: &[u8]) -> Snapshot {
    match decode(bytes).unwrap() {
        Message::Matches(s) => s,
        other => panic!("expected matches, got {other:?}"),
    }
}

fn small_match(id: i64) -> serde_json::Value {
    serde_json::json!({"matchid": id, "tid": "/Date(1746549000000)/", "lag1namn": "A", "lag2namn": "B"})
}

#[test]
fn a_message_id_or_metadata_over_its_bound_rejects_the_message_with_the_reason() {
    for (id, ok) in [("x".repeat(128), true), ("x".repeat(129), false)] {
        for body in [
            serde_json::json!({"message_id": id, "type": "match_updates", "payload": {"matches": [small_match(1)]}}),
            serde_json::json!({"matches": [small_match(1)], "metadata": {"message_id": id}}),
        ] {
            let got = decode(body.to_string().as_bytes());
            if ok {
                assert!(got.is_ok(), "{got:?}");
            } else {
                assert_eq!(
                    got.unwrap_err().to_string(),
                    "message_id: 129 bytes, more than 128"
                );
            }
        }
    }
    let big = serde_json::json!({"note": "x".repeat(MAX_METADATA_BYTES)});
    let body = serde_json::json!({"type": "match_updates", "payload": {"matches": [small_match(1)], "metadata": big}});
    let e = decode(body.to_string().as_bytes()).unwrap_err().to_string();
    assert!(e.starts_with("payload.metadata: 16"), "{e}");
    assert!(e.ends_with("bytes, more than 16384"), "{e}");
}

#[test]
fn a_match_or_a_text_over_its_bound_is_rejected_alone_and_the_rest_applies() {
    let mut huge = small_match(2);
    huge["extra"] = serde_json::Value::from("y".repeat(MAX_MATCH_BYTES));
    let mut long_name = small_match(3);
    long_name["lag1namn"] = serde_json::Value::from("N".repeat(fields::MAX_TEXT_BYTES + 1));
    let mut longest_ok = small_match(4);
    longest_ok["lag2namn"] = serde_json::Value::from("M".repeat(fields::MAX_TEXT_BYTES));
    for form in ["flat", "envelope", "bare"] {
        let list = serde_json::json!([small_match(1), huge, long_name, longest_ok]);
        let body = match form {
            "flat" => serde_json::json!({"matches": list}),
            "envelope" => {
                serde_json::json!({"type": "match_updates", "payload": {"matches": list}})
            }
            _ => list,
        };
        let s = matches_of(body.to_string().as_bytes());
        let ids: Vec<i64> = s.matches.iter().map(|m| m.match_id).collect();
        assert_eq!(ids, [1, 4], "{form}");
        let reasons: Vec<(Option<i64>, &str)> = s
            .rejected
            .iter()
            .map(|r| (r.match_id, r.reason.as_str()))
            .collect();
        let prefix = if form == "envelope" { "payload." } else { "" };
        assert_eq!(reasons.len(), 2, "{form}: {reasons:?}");
        assert_eq!(reasons[0].0, Some(2));
        assert!(
            reasons[0].1.starts_with(&format!("{prefix}matches[1]: 65"))
                && reasons[0].1.ends_with("bytes, more than 65536"),
            "{form}: {reasons:?}"
        );
        assert_eq!(
            reasons[1],
            (
                Some(3),
                &*format!("{prefix}matches[2].lag1namn: 1025 bytes of text, more than 1024")
            ),
            "{form}"
        );
    }
}
