//! No input, however broken, panics the ingest path or changes the state unless it applied.
#![allow(clippy::unwrap_used)]

mod common;

use fogis_calendar_sync::engine::Engine;
use fogis_calendar_sync::{apply_bytes, open_engine};
use proptest::prelude::*;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(&common::state_opts(dir.path())).unwrap();
    apply_bytes(
        &engine,
        &common::fixture("processor_match_updates.json"),
        "test",
    )
    .unwrap();
    (dir, engine)
}

fn mutate(bytes: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for &(pos, b) in edits {
        let i = pos % out.len();
        out[i] = b;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn broken_input_never_panics_and_changes_nothing_unless_applied(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12),
        cut in any::<usize>(),
        random in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let (_dir, engine) = engine();
        let names = ["processor_match_updates.json", "enhanced_v2.json", "legacy_simplified.json",
            "seed_flat.json", "processor_match_updates_v3.1.json"];
        let original = common::fixture(names[which]);
        let mutated = mutate(&original, &edits);
        let truncated = mutated[..cut % (mutated.len() + 1)].to_vec();
        for input in [mutated, truncated, random] {
            let before = engine.matches();
            let generation = engine.generation();
            match apply_bytes(&engine, &input, "proptest") {
                Ok(_) => {}
                Err(_) => {
                    prop_assert_eq!(engine.matches(), before);
                    prop_assert_eq!(engine.generation(), generation);
                }
            }
        }
    }
}
