//! The fast path answers exactly as the general path, or not at all.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::super::{decode, decode_general};

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    std::fs::read(path).expect("fixture")
}

/// The match updates in the envelope and flat forms: the fast path takes them.
const FAST: [&str; 6] = [
    "processor_match_updates.json",
    "processor_match_updates_v3.0.json",
    "processor_match_updates_v3.1.json",
    "enhanced_v2.json",
    "legacy_simplified.json",
    "seed_flat.json",
];

#[test]
fn the_fast_path_takes_the_match_updates_and_agrees_on_every_fixture() {
    for name in FAST {
        let bytes = fixture(name);
        assert!(
            super::decode(&bytes).is_some(),
            "{name} takes the fast path"
        );
        assert_eq!(decode(&bytes), decode_general(&bytes), "{name}");
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    for entry in std::fs::read_dir(dir).expect("fixtures") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("fixture");
        assert_eq!(decode(&bytes), decode_general(&bytes));
    }
}

#[test]
fn odd_shapes_are_left_to_the_general_path() {
    let cases = [
        r#"{"payload": null, "matches": []}"#,
        r#"{"payload": {"matches": null}}"#,
        r#"{"payload": {"matches": [], "matches": []}}"#,
        r#"{"payload": {"matches": []}, "payload": {"matches": [{"matchid": 1}]}}"#,
        r#"{"type": "processing_status", "payload": {"status": "started"}}"#,
        r#"{"type": "processing_status", "payload": {"matches": []}}"#,
        r#"{"type": "system_alert", "payload": {"alert_type": "x"}}"#,
        r#"{"type": "something_else", "payload": {}}"#,
        r#"{"matches": {"a": 1}}"#,
        r#"{"payload": [], "matches": []}"#,
        r#"[{"matchid": 1, "tid": "/Date(1746549000000)/"}]"#,
        r#"{"matches": [], "metadata": {"message_id": 7, "timestamp": "2025-05-05T06:30:00"}}"#,
        r#"{"schema_version": null, "matches": []}"#,
        r#"{"payload": {"matches": [], "detailed_changes": null}}"#,
        r#"{"matches": []} trailing"#,
    ];
    for case in cases {
        assert_eq!(
            decode(case.as_bytes()),
            decode_general(case.as_bytes()),
            "{case}"
        );
    }
}

/// A value of another kind for a field.
fn replacement(kind: usize) -> Option<Value> {
    match kind {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!(42)),
        3 => Some(json!("")),
        4 => Some(json!("2025-05-05T06:30:00Z")),
        5 => Some(json!([])),
        6 => Some(json!({})),
        _ => Some(json!([{"matchid": 5, "tid": "/Date(1746549000000)/"}])),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any field of the envelope removed or given a value of another kind: same answer.
    #[test]
    fn the_paths_agree_on_reshaped_messages(
        which in 0usize..FAST.len(),
        edits in proptest::collection::vec((0usize..14, 0usize..8), 1..4),
        pretty in any::<bool>(),
    ) {
        let mut value: Value = serde_json::from_slice(&fixture(FAST[which])).expect("json");
        let keys = ["message_id", "timestamp", "source", "type", "schema_version", "payload",
            "matches", "metadata"];
        let payload_keys = ["matches", "metadata", "schema_version", "detailed_changes",
            "status", "extra"];
        for (field, kind) in edits {
            let new = replacement(kind);
            let target = if field < keys.len() {
                value.as_object_mut().map(|o| (o, keys[field]))
            } else {
                value.get_mut("payload").and_then(Value::as_object_mut)
                    .map(|o| (o, payload_keys[field - keys.len()]))
            };
            if let Some((object, key)) = target {
                match new {
                    Some(v) => { object.insert(key.to_string(), v); }
                    None => { object.remove(key); }
                }
            }
        }
        let bytes = if pretty {
            serde_json::to_vec_pretty(&value).expect("json")
        } else {
            serde_json::to_vec(&value).expect("json")
        };
        prop_assert_eq!(decode(&bytes), decode_general(&bytes));
    }
}
