//! The guard against emptying a calendar, and the operator's way to confirm.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};

async fn events(svc: &Service) -> usize {
    parse_feed(&svc.feed().await).len()
}

fn list_with(ids: &[usize], base: &Value, message_id: &str) -> Value {
    let mut v = base.clone();
    let all = base["payload"]["matches"].as_array().unwrap();
    v["payload"]["matches"] = Value::Array(ids.iter().map(|&i| all[i].clone()).collect());
    v["message_id"] = json!(message_id);
    v
}

/// A message decoded as the service decodes it.
fn decode(v: &Value) -> fogis_pubsub::Snapshot {
    match fogis_pubsub::decode(&serde_json::to_vec(v).unwrap()).unwrap() {
        fogis_pubsub::Message::Matches(s) => s,
        other => panic!("{other:?}"),
    }
}

/// What the fogis-api-client service answers to `GET /matches`: the bare list, no id.
fn pulled(ids: &[usize], base: &Value) -> Value {
    let all = base["payload"]["matches"].as_array().unwrap();
    Value::Array(ids.iter().map(|&i| all[i].clone()).collect())
}

#[tokio::test]
async fn an_empty_list_is_held_until_an_operator_confirms_it() {
    let svc = Service::start().await;
    let full = future_snapshot(&[5, 6, 7], "full");
    svc.post("/sync", serde_json::to_vec(&full).unwrap()).await;
    assert_eq!(events(&svc).await, 3);

    let empty = list_with(&[], &full, "empty-1");
    let (status, body) = svc.post("/sync", serde_json::to_vec(&empty).unwrap()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["applied"], false);
    assert!(body["held"]["reason"]
        .as_str()
        .unwrap()
        .contains("the list is empty while the calendar holds 3 future matches"));
    assert_eq!(events(&svc).await, 3, "the calendar is intact");
    let health = svc.get_json("/health").await;
    assert_eq!(health["held_snapshots"], 1);
    assert!(
        health["attention"][0].as_str().unwrap().contains("held"),
        "{health}"
    );
    let metrics = svc.get_text("/metrics").await;
    assert!(metrics.contains("fogis_held_snapshots 1"));

    let held = svc.get_json("/held").await;
    assert_eq!(held["pending"], 1);
    let id = held["held"][0]["id"].as_i64().unwrap();
    let (status, body) = svc.post(&format!("/held/{id}/apply"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["withdrawn"], 3);
    assert_eq!(events(&svc).await, 0);
    assert_eq!(svc.get_json("/held").await["pending"], 0);
    let (status, _) = svc.post(&format!("/held/{id}/apply"), "").await;
    assert_eq!(status, 404, "a hold is applied once");
}

/// A released processor sent `payload.matches: []` with `has_changes: true` on every change
/// cycle, under a new `message_id` each time (PROTOCOL.md section 7): the second empty list is no
/// confirmation of the first, nor is the hundredth.
#[tokio::test]
async fn the_empty_list_producer_never_empties_the_calendar() {
    let svc = Service::start().await;
    let full = future_snapshot(&[5, 6, 7], "full");
    svc.post("/sync", serde_json::to_vec(&full).unwrap()).await;
    let mut first_id = None;
    for cycle in 0..3 {
        let mut empty = list_with(&[], &full, &format!("broken-{cycle}"));
        empty["payload"]["metadata"]["has_changes"] = json!(true);
        let (status, body) = svc.post("/sync", serde_json::to_vec(&empty).unwrap()).await;
        assert_eq!(status, 202, "cycle {cycle}: {body}");
        assert_eq!(body["outcome"], "held", "{body}");
        assert_eq!(body["applied"], false);
        let id = body["held"]["id"].as_i64().unwrap();
        // A repeat is folded into the first hold, not piled up.
        assert_eq!(*first_id.get_or_insert(id), id);
        assert_eq!(
            events(&svc).await,
            3,
            "cycle {cycle}: the calendar is intact"
        );
    }
    let held = svc.get_json("/held").await;
    assert_eq!(held["pending"], 1, "{held}");
    assert_eq!(held["held"][0]["repeats"], 2, "{held}");
    let metrics = svc.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"fogis_messages_total{channel="http",outcome="held"} 3"#),
        "{metrics}"
    );
}

/// The processor publishes only on change: a list that arrives twice is a broken or repeating
/// producer, never FOGIS confirming a mass withdrawal.
#[tokio::test]
async fn a_mass_withdrawal_sent_twice_stays_held_until_an_operator_applies_it() {
    let svc = Service::start().await;
    let full = future_snapshot(&[5, 6, 7, 8], "full");
    svc.post("/sync", serde_json::to_vec(&full).unwrap()).await;
    let one_left = list_with(&[0], &full, "cut-1");
    let (status, body) = svc
        .post("/sync", serde_json::to_vec(&one_left).unwrap())
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(body["held"]["reason"]
        .as_str()
        .unwrap()
        .contains("withdraw 3 of 4 future matches"));
    // The same list in a later message, from the same or another publisher, is no evidence.
    for (n, path) in [(2, "/sync"), (3, "/manual-sync")] {
        let again = list_with(&[0], &full, &format!("cut-{n}"));
        let (status, body) = svc.post(path, serde_json::to_vec(&again).unwrap()).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(events(&svc).await, 4);
    }
    let held = svc.get_json("/held").await;
    assert_eq!(held["pending"], 1, "{held}");
    let id = held["held"][0]["id"].as_i64().unwrap();
    let (status, body) = svc.post(&format!("/held/{id}/apply"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["withdrawn"], 3);
    assert_eq!(events(&svc).await, 1);
    let held = svc.get_json("/held").await;
    assert_eq!(held["held"][0]["state"], "applied", "{held}");
    assert_eq!(held["held"][0]["resolved_by"], "operator", "{held}");
}

/// Independent evidence: a list fetched from FOGIS itself (origin `pull`) that agrees with a
/// held list applies it; an empty one never does.
#[test]
fn a_list_from_fogis_itself_confirms_a_held_withdrawal_but_never_an_empty_list() {
    use fogis_calendar_sync::engine::Outcome;
    use fogis_calendar_sync::reconcile::guard::PULL_ORIGIN;
    let dir = tempfile::tempdir().unwrap();
    let engine = fogis_calendar_sync::open_engine(&state_opts(dir.path())).unwrap();
    let full = future_snapshot(&[5, 6, 7, 8], "full");
    engine.apply(&decode(&full), "http", false).unwrap();

    let empty = engine
        .apply(&decode(&list_with(&[], &full, "e1")), "redis:x", false)
        .unwrap();
    assert!(matches!(empty.outcome, Outcome::Held(_)), "{empty:?}");
    let pulled_empty = engine
        .apply(&decode(&pulled(&[], &full)), PULL_ORIGIN, false)
        .unwrap();
    assert!(
        matches!(pulled_empty.outcome, Outcome::Held(_)),
        "an empty list needs an operator, whoever agrees: {pulled_empty:?}"
    );
    assert_eq!(
        engine.pending_holds(),
        2,
        "the pulled list is held on its own"
    );

    // A pulled list that disagrees (another match left) applies nothing...
    let cut = list_with(&[0], &full, "cut-1");
    let held = engine.apply(&decode(&cut), "redis:x", false).unwrap();
    assert!(matches!(held.outcome, Outcome::Held(_)));
    let other = engine
        .apply(&decode(&pulled(&[1], &full)), PULL_ORIGIN, false)
        .unwrap();
    assert!(matches!(other.outcome, Outcome::Held(_)), "{other:?}");
    let listed = |e: &fogis_calendar_sync::engine::Engine| {
        e.matches().iter().filter(|m| m.presence.in_feed()).count()
    };
    assert_eq!(listed(&engine), 4);
    // ...one that agrees applies it, and the hold says who confirmed it.
    let agree = engine
        .apply(&decode(&pulled(&[0], &full)), PULL_ORIGIN, false)
        .unwrap();
    assert_eq!(agree.outcome, Outcome::Applied, "{agree:?}");
    assert_eq!(agree.counts.withdrawn, 3);
    assert_eq!(listed(&engine), 1);
    let holds = engine.holds().unwrap();
    assert_eq!(holds.iter().filter(|h| h.state == "pending").count(), 0);
    let confirmed: Vec<_> = holds.iter().filter(|h| h.state == "confirmed").collect();
    assert_eq!(confirmed.len(), 1, "{holds:?}");
    assert_eq!(confirmed[0].origin, "redis:x");
    assert_eq!(confirmed[0].resolved_by.as_deref(), Some(PULL_ORIGIN));
    assert_eq!(
        holds.iter().filter(|h| h.state == "superseded").count(),
        3,
        "the other holds are superseded: {holds:?}"
    );
}

/// The other way round: a processor list that agrees with a list held from a pull.
#[test]
fn a_processor_list_confirms_a_held_pulled_withdrawal() {
    use fogis_calendar_sync::engine::Outcome;
    use fogis_calendar_sync::reconcile::guard::PULL_ORIGIN;
    let dir = tempfile::tempdir().unwrap();
    let engine = fogis_calendar_sync::open_engine(&state_opts(dir.path())).unwrap();
    let full = future_snapshot(&[5, 6, 7, 8], "full");
    engine.apply(&decode(&full), "http", false).unwrap();
    let from_pull = engine
        .apply(&decode(&pulled(&[2], &full)), PULL_ORIGIN, false)
        .unwrap();
    assert!(matches!(from_pull.outcome, Outcome::Held(_)));
    // A second pull of the same list is a repeat, not evidence.
    let again = engine
        .apply(&decode(&pulled(&[2], &full)), PULL_ORIGIN, false)
        .unwrap();
    assert!(matches!(again.outcome, Outcome::Held(_)));
    let published = engine
        .apply(
            &decode(&list_with(&[2], &full, "from-processor")),
            "redis:fogis:matches:updates",
            false,
        )
        .unwrap();
    assert_eq!(published.outcome, Outcome::Applied, "{published:?}");
    assert_eq!(published.counts.withdrawn, 3);
}

#[tokio::test]
async fn a_normal_list_supersedes_a_hold_and_small_withdrawals_pass() {
    let svc = Service::start().await;
    let full = future_snapshot(&[5, 6, 7, 8], "full");
    svc.post("/sync", serde_json::to_vec(&full).unwrap()).await;
    let (status, _) = svc
        .post(
            "/sync",
            serde_json::to_vec(&list_with(&[], &full, "e")).unwrap(),
        )
        .await;
    assert_eq!(status, 202);
    // One match withdrawn of four: normal life, applied.
    let (status, body) = svc
        .post(
            "/sync",
            serde_json::to_vec(&list_with(&[0, 1, 2], &full, "n")).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["withdrawn"], 1);
    let held = svc.get_json("/held").await;
    assert_eq!(held["pending"], 0);
    assert_eq!(held["held"][0]["state"], "superseded");
}

#[tokio::test]
async fn too_many_matches_are_refused() {
    let svc = Service::start_with(|o| o.state.max_matches_per_snapshot = 3).await;
    let (status, body) = svc
        .post(
            "/sync",
            serde_json::to_vec(&future_snapshot(&[1, 2, 3, 4], "big")).unwrap(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("more than MAX_MATCHES_PER_SNAPSHOT (3)"),
        "{body}"
    );
    assert_eq!(svc.get_json("/matches").await["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_next_to_a_running_service_and_the_held_commands() {
    let svc = Service::start().await;
    let full = future_snapshot(&[5, 6, 7], "full");
    svc.post("/sync", serde_json::to_vec(&full).unwrap()).await;
    let dir = svc.dir.path().to_path_buf();
    let file = dir.join("empty.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&list_with(&[], &full, "cli-empty")).unwrap(),
    )
    .unwrap();
    let run = |args: Vec<String>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_fogis-calendar-sync"))
                .args(&args)
                .env("DATA_DIR", &dir)
                .env_remove("RUST_LOG")
                .output()
                .unwrap()
        })
    };
    let out = run(vec!["sync".into(), file.to_str().unwrap().into()])
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("held, not applied (#1): the list is empty"),
        "{text}"
    );
    let out = run(vec!["held".into(), "list".into()]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("#1    pending"), "{text}");
    // The running service sees the hold the CLI made (it looks for other processes' commits
    // every REFRESH_POLL, so within a second)...
    let limit = std::time::Duration::from_secs(10);
    svc.wait_json("/health", "the CLI's hold seen", limit, |h| {
        h["held_snapshots"] == 1
    })
    .await;
    let out = run(vec!["held".into(), "apply".into(), "1".into()])
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // ...and the state the CLI wrote: its view follows when the file changed under it.
    svc.wait_json("/matches", "the CLI's held apply seen", limit, |m| {
        m["matches"][0]["presence"] == "withdrawn"
    })
    .await;
    assert_eq!(events(&svc).await, 0);
}
