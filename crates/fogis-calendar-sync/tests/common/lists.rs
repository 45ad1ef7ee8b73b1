//! Numbered match lists, for tests that follow which list a service is at: list `i` has
//! match 7000000 kick off `i` minutes after [`BASE_MS`], so `/matches` tells its number.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{eventually, future_snapshot, Service};

/// When match 7000000 of list 0 kicks off (ms since the epoch).
pub const BASE_MS: i64 = 1_900_000_000_000;

/// List `i` with a match for each of `days` (the first is 7000000, at `BASE_MS` + `i` min)
/// and message id `list-<i>`; its envelope timestamp is the caller's to set.
pub fn numbered(i: i64, days: &[i64]) -> Value {
    let mut s = future_snapshot(days, &format!("list-{i}"));
    s["payload"]["matches"][0]["tid"] = json!(format!("/Date({})/", BASE_MS + i * 60_000));
    s
}

/// The number of the list a `/matches` answer shows, `None` when it shows none.
pub fn list_number(matches: &Value) -> Option<i64> {
    let m = matches["matches"]
        .as_array()?
        .iter()
        .find(|m| m["match_id"] == 7_000_000)?;
    let t = chrono::DateTime::parse_from_rfc3339(m["start"].as_str()?).ok()?;
    Some((t.timestamp_millis() - BASE_MS) / 60_000)
}

/// Waits (30 s at most, every 20 ms) until `svc` is at list `want`.
pub async fn wait_for_list(svc: &Service, want: i64) {
    let what = format!("at list {want}");
    eventually(
        &what,
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async {
            let at = list_number(&svc.get_json("/matches").await);
            if at == Some(want) {
                Ok(())
            } else {
                Err(format!("list {at:?}"))
            }
        },
    )
    .await;
}
