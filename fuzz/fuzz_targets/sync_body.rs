//! A `/sync` body end to end, without I/O: decode, plan against a state that already holds the
//! production fixture, and render the feed of the planned state. Nothing may panic, and the
//! rendered feed always has one VEVENT per event.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use fogis_calendar_sync::render::ics::{render_calendar, FeedEvent, FeedOptions};
use fogis_calendar_sync::reconcile::{plan, StoredMatch};
use libfuzzer_sys::fuzz_target;

const TZ: chrono_tz::Tz = chrono_tz::Europe::Stockholm;

fn base_state() -> &'static HashMap<i64, StoredMatch> {
    static STATE: OnceLock<HashMap<i64, StoredMatch>> = OnceLock::new();
    STATE.get_or_init(|| {
        let bytes = include_bytes!("../../fixtures/processor_match_updates.json");
        let now = Utc.with_ymd_and_hms(2025, 5, 1, 0, 0, 0).unwrap();
        match fogis_pubsub::decode(bytes) {
            Ok(fogis_pubsub::Message::Matches(s)) => plan(&HashMap::new(), &s, TZ, now)
                .writes()
                .map(|m| (m.record.match_id, m.clone()))
                .collect(),
            _ => HashMap::new(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(fogis_pubsub::Message::Matches(snapshot)) = fogis_pubsub::decode(data) else {
        return;
    };
    let now = Utc.with_ymd_and_hms(2025, 5, 8, 12, 0, 0).unwrap();
    let p = plan(base_state(), &snapshot, TZ, now);
    let events: Vec<FeedEvent> = p
        .writes()
        .filter(|m| m.presence.in_feed())
        .map(|m| FeedEvent {
            match_id: m.record.match_id,
            sequence: m.sequence,
            start: m.record.start,
            end: m.record.start + chrono::Duration::minutes(120),
            summary: m.record.title(),
            location: m.record.venue.clone(),
            geo: m.record.coordinates,
            description: m.record.description(),
            url: Some(m.record.match_url()),
            cancelled: m.record.cancelled,
            created: now,
            last_modified: now,
        })
        .collect();
    let opts = FeedOptions {
        tz: TZ,
        reminder_minutes: Some(2880),
        calendar_name: "fuzz".into(),
        dtstamp: now,
    };
    let text = render_calendar(&events, &opts);
    assert_eq!(text.matches("BEGIN:VEVENT").count(), events.len());
    assert!(text.split("\r\n").all(|l| l.len() <= 75));
});
