#![allow(clippy::unwrap_used)]
use serde_json::json;

use super::*;

fn ev(id: &str, m: i64, status: &str, updated: &str, hash: Option<&str>) -> Value {
    let mut private = json!({"matchId": m.to_string(), "syncTag": "FOGIS_CALENDAR_SYNC"});
    if let Some(h) = hash {
        private["calendarHash"] = json!(h);
    }
    json!({"id": id, "etag": format!("\"{id}-{updated}\""), "status": status,
           "updated": updated, "summary": "A - B",
           "extendedProperties": {"private": private}})
}

#[test]
fn bindings_round_trip() {
    for b in [
        Binding {
            state: State::Body("ab".into()),
            deleted: false,
        },
        Binding {
            state: State::Adopted {
                hash: "cd".into(),
                prefixed: true,
            },
            deleted: true,
        },
        Binding {
            state: State::Unknown,
            deleted: false,
        },
        Binding {
            state: State::Removed,
            deleted: false,
        },
    ] {
        assert_eq!(Binding::decode(&b.encode()), b);
    }
}

#[test]
fn first_adoption_binds_one_event_per_match_and_lists_duplicates() {
    let events = vec![
        ev(
            "python1",
            1,
            "confirmed",
            "2025-01-01T00:00:00.000Z",
            Some("h1"),
        ),
        ev(
            "python2",
            2,
            "confirmed",
            "2025-01-01T00:00:00.000Z",
            Some("h2"),
        ),
        ev(
            "python2b",
            2,
            "confirmed",
            "2025-02-01T00:00:00.000Z",
            Some("h2"),
        ),
        ev(
            "python2c",
            2,
            "cancelled",
            "2025-03-01T00:00:00.000Z",
            Some("h2"),
        ),
        ev(
            "gone3",
            3,
            "cancelled",
            "2025-01-01T00:00:00.000Z",
            Some("h3"),
        ),
        json!({"id": "other", "summary": "dentist"}),
    ];
    let plan = plan(&events, &[]);
    assert_eq!(plan.adopted, 3);
    let bound: Vec<(&str, &str, &str)> = plan
        .bind
        .iter()
        .map(|b| (b.key.as_str(), b.remote_name.as_str(), b.hash.as_str()))
        .collect();
    assert_eq!(
        bound,
        [
            ("1", "python1", "adopted:h1:0"),
            ("2", "python2b", "adopted:h2:0"),
            ("3", "gone3", "deleted:adopted:h3:0"),
        ]
    );
    assert_eq!(plan.duplicates.len(), 1);
    assert_eq!(plan.duplicates[0].id, "python2");
    assert!(plan.unbind.is_empty());
}

#[test]
fn our_id_and_the_bound_event_win() {
    let events = vec![
        ev(
            "fogis7",
            7,
            "confirmed",
            "2025-01-01T00:00:00.000Z",
            Some("h"),
        ),
        ev(
            "newer",
            7,
            "confirmed",
            "2025-06-01T00:00:00.000Z",
            Some("h"),
        ),
    ];
    assert_eq!(plan(&events, &[]).bind[0].remote_name, "fogis7");
    let known = vec![SinkItem {
        key: "7".into(),
        remote_name: "newer".into(),
        etag: Some("\"old\"".into()),
        hash: "body:x".into(),
    }];
    let p = plan(&events, &known);
    assert_eq!(p.adopted, 0);
    assert_eq!(p.bind[0].remote_name, "newer");
    assert_eq!(p.bind[0].hash, "body:x", "what we wrote is remembered");
    assert_eq!(
        p.bind[0].etag.as_deref(),
        Some("\"newer-2025-06-01T00:00:00.000Z\"")
    );
    assert_eq!(p.duplicates[0].id, "fogis7");
}

#[test]
fn deletions_by_others_and_by_us_are_told_apart() {
    let tomb = vec![ev(
        "e",
        5,
        "cancelled",
        "2025-01-01T00:00:00.000Z",
        Some("h"),
    )];
    let ours = |hash: &str| {
        vec![SinkItem {
            key: "5".into(),
            remote_name: "e".into(),
            etag: Some("\"e-2025-01-01T00:00:00.000Z\"".into()),
            hash: hash.into(),
        }]
    };
    assert_eq!(plan(&tomb, &ours("body:x")).bind[0].hash, "deleted:body:x");
    assert!(plan(&tomb, &ours("removed")).bind.is_empty(), "nothing new");
    let live = vec![ev(
        "e",
        5,
        "confirmed",
        "2025-01-01T00:00:00.000Z",
        Some("h"),
    )];
    assert_eq!(plan(&live, &ours("deleted:body:x")).bind[0].hash, "body:x");
    assert_eq!(plan(&live, &ours("removed")).bind[0].hash, "unknown");
    let p = plan(&[], &ours("body:x"));
    assert_eq!(p.unbind, ["5"]);
}
