//! A stored state row (the `record` JSON of the `matches` table) read back: never panics, and
//! what reads back renders and hashes.
#![no_main]

use fogis_calendar_sync::model::MatchRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = serde_json::from_slice::<MatchRecord>(data) {
        let _ = record.content_hash();
        let _ = record.description();
        let _ = record.title();
        let again: MatchRecord = match serde_json::to_vec(&record).map(|b| serde_json::from_slice(&b)) {
            Ok(Ok(r)) => r,
            _ => panic!("a record that was read must write and read back"),
        };
        assert_eq!(again.content_hash(), record.content_hash());
    }
});
