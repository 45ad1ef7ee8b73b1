#![allow(clippy::unwrap_used)]

use super::*;
use chrono::{Duration, TimeZone};
use fogis_pubsub::{Kickoff, Match, MatchForm, MessageForm, Meta, Referee, RejectedMatch};
use proptest::prelude::*;

const TZ: chrono_tz::Tz = chrono_tz::Europe::Stockholm;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

fn m(id: i64, days_from_now: i64) -> Match {
    Match {
        match_id: id,
        form: MatchForm::Raw,
        match_nr: Some(format!("nr{id}")),
        home_team: Some(format!("Home {id}")),
        away_team: Some(format!("Away {id}")),
        kickoff: Kickoff::Utc(now() + Duration::days(days_from_now)),
        venue: Some("Vallen".into()),
        venue_address: None,
        coordinates: None,
        competition: Some("Div 4".into()),
        cancelled: Some(false),
        postponed: Some(false),
        interrupted: Some(false),
        referees: Some(vec![Referee {
            name: "Ref".into(),
            role_short: Some("Dom".into()),
            ..Default::default()
        }]),
        team_contacts: Some(vec![]),
        raw: serde_json::Value::Null,
    }
}

fn snap(matches: Vec<Match>) -> Snapshot {
    Snapshot {
        meta: Meta::default(),
        form: MessageForm::BareList,
        matches,
        rejected: vec![],
        has_changes: None,
        metadata: serde_json::Value::Null,
    }
}

/// Applies a plan the way the executor does.
fn apply(state: &mut HashMap<i64, StoredMatch>, plan: &Plan) {
    for next in plan.writes() {
        state.insert(next.record.match_id, next.clone());
    }
}

fn run(state: &mut HashMap<i64, StoredMatch>, s: &Snapshot) -> Counts {
    let p = plan(state, s, TZ, now());
    apply(state, &p);
    p.counts()
}

#[test]
fn create_then_the_same_snapshot_changes_nothing() {
    let mut state = HashMap::new();
    let s = snap(vec![m(1, 3), m(2, 10), m(3, -5)]);
    let c = run(&mut state, &s);
    assert_eq!((c.created, c.unchanged), (3, 0));
    let again = plan(&state, &s, TZ, now());
    assert_eq!(
        again.counts(),
        Counts {
            unchanged: 3,
            ..Counts::default()
        }
    );
    assert_eq!(again.writes().count(), 0);
    assert!(state.values().all(|s| s.sequence == 0));
}

#[test]
fn moved_referee_change_cancel_and_withdraw_are_each_detected() {
    let mut state = HashMap::new();
    run(
        &mut state,
        &snap(vec![m(1, 3), m(2, 10), m(3, 20), m(4, -5), m(5, 7)]),
    );

    let mut moved = m(1, 3);
    moved.kickoff = Kickoff::Utc(now() + Duration::days(3) + Duration::minutes(90));
    let mut reref = m(2, 10);
    reref.referees = Some(vec![Referee {
        name: "Other".into(),
        role_short: Some("Dom".into()),
        ..Default::default()
    }]);
    let mut cancelled = m(3, 20);
    cancelled.cancelled = Some(true);
    // 4 (past) and 5 (future) are gone.
    let p = plan(&state, &snap(vec![moved, reref, cancelled]), TZ, now());
    let by_id: HashMap<i64, Action> = p
        .changes
        .iter()
        .map(|c| (c.match_id.unwrap(), c.action))
        .collect();
    assert_eq!(by_id[&1], Action::Update);
    assert_eq!(by_id[&2], Action::Update);
    assert_eq!(by_id[&3], Action::Cancel);
    assert_eq!(by_id[&4], Action::Archive);
    assert_eq!(by_id[&5], Action::Withdraw);
    apply(&mut state, &p);
    assert_eq!(state[&1].sequence, 1);
    assert_eq!(state[&3].sequence, 1);
    assert!(state[&3].record.cancelled);
    assert_eq!(state[&4].presence, Presence::Archived);
    assert_eq!(
        state[&4].sequence, 0,
        "a past match that leaves the list keeps its event as is"
    );
    assert_eq!(state[&5].presence, Presence::Withdrawn);
    assert_eq!(state[&5].sequence, 1);

    // A withdrawn match that comes back is created again with a higher sequence.
    let back = plan(&state, &snap(vec![m(5, 7)]), TZ, now());
    let c = back.changes.iter().find(|c| c.match_id == Some(5)).unwrap();
    assert_eq!(c.action, Action::Create);
    assert_eq!(c.next.as_ref().unwrap().sequence, 2);
}

#[test]
fn rejected_matches_are_not_withdrawn() {
    let mut state = HashMap::new();
    run(&mut state, &snap(vec![m(1, 3), m(2, 4)]));
    let mut s = snap(vec![m(1, 3)]);
    s.rejected.push(RejectedMatch {
        index: 1,
        match_id: Some(2),
        reason: "matches[1].tid: bad".into(),
    });
    let p = plan(&state, &s, TZ, now());
    assert_eq!(
        p.counts(),
        Counts {
            unchanged: 1,
            rejected: 1,
            ..Counts::default()
        }
    );
    assert!(!p.all_rejected());

    let mut all_bad = snap(vec![]);
    all_bad.rejected.push(RejectedMatch {
        index: 0,
        match_id: None,
        reason: "x".into(),
    });
    assert!(plan(&state, &all_bad, TZ, now()).all_rejected());
}

#[test]
fn duplicate_ids_in_one_list_keep_the_first() {
    let mut second = m(1, 3);
    second.venue = Some("Other".into());
    let p = plan(
        &HashMap::<i64, StoredMatch>::new(),
        &snap(vec![m(1, 3), second]),
        TZ,
        now(),
    );
    assert_eq!(
        p.counts(),
        Counts {
            created: 1,
            rejected: 1,
            ..Counts::default()
        }
    );
    assert_eq!(
        p.writes().next().unwrap().record.venue.as_deref(),
        Some("Vallen")
    );
}

#[test]
fn an_equal_record_keeps_its_stored_hash_and_a_changed_one_is_hashed() {
    let mut state = HashMap::new();
    run(&mut state, &snap(vec![m(1, 3), m(2, 4)]));
    let stored_hash = state[&1].hash.clone();
    assert_eq!(stored_hash, state[&1].record.content_hash());

    // Unchanged: the plan writes nothing, so the hash it used is the stored one.
    let p = plan(&state, &snap(vec![m(1, 3), m(2, 4)]), TZ, now());
    assert_eq!(p.counts().unchanged, 2);
    assert_eq!(p.writes().count(), 0);

    // Changed: the written record carries the hash of its own content.
    let mut moved = m(1, 3);
    moved.kickoff = Kickoff::Utc(now() + Duration::days(5));
    let p = plan(&state, &snap(vec![moved, m(2, 4)]), TZ, now());
    assert_eq!(p.counts().updated, 1);
    let written: Vec<&StoredMatch> = p.writes().collect();
    assert_eq!(written.len(), 1);
    assert_ne!(written[0].hash, stored_hash);
    assert_eq!(written[0].hash, written[0].record.content_hash());
}

#[test]
fn uncancel_is_an_update() {
    let mut state = HashMap::new();
    let mut c = m(1, 3);
    c.cancelled = Some(true);
    run(&mut state, &snap(vec![c]));
    let p = plan(&state, &snap(vec![m(1, 3)]), TZ, now());
    assert_eq!(p.changes[0].action, Action::Update);
}

fn arb_match() -> impl Strategy<Value = Match> {
    (1i64..12, -30i64..30, any::<bool>(), 0u8..3).prop_map(|(id, days, cancelled, venue)| {
        let mut x = m(id, days);
        x.cancelled = Some(cancelled);
        x.venue = Some(format!("V{venue}"));
        x
    })
}

fn dedup(list: Vec<Match>) -> Vec<Match> {
    let mut seen = HashSet::new();
    list.into_iter()
        .filter(|x| seen.insert(x.match_id))
        .collect()
}

proptest! {
    #[test]
    fn twice_equals_once(history in proptest::collection::vec(proptest::collection::vec(arb_match(), 0..8), 1..5)) {
        let mut state = HashMap::new();
        for list in history {
            let s = snap(dedup(list));
            run(&mut state, &s);
            let before = state.clone();
            let again = plan(&state, &s, TZ, now());
            prop_assert_eq!(again.writes().count(), 0);
            apply(&mut state, &again);
            prop_assert_eq!(&state, &before);
        }
    }

    #[test]
    fn order_of_the_list_does_not_matter(
        first in proptest::collection::vec(arb_match(), 0..8),
        second in proptest::collection::vec(arb_match(), 0..8),
        seed in any::<u64>(),
    ) {
        let first = dedup(first);
        let second = dedup(second);
        let mut shuffled = second.clone();
        let n = shuffled.len();
        if n > 1 {
            let mut x = seed;
            for i in (1..n).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
        }
        let mut a = HashMap::new();
        run(&mut a, &snap(first.clone()));
        let mut b = a.clone();
        let ca = run(&mut a, &snap(second));
        let cb = run(&mut b, &snap(shuffled));
        prop_assert_eq!(ca, cb);
        prop_assert_eq!(a, b);
    }
}
