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

#[tokio::test]
async fn a_mass_withdrawal_is_applied_when_a_later_message_confirms_it() {
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
    // The same message again is not a confirmation...
    let (status, _) = svc
        .post("/sync", serde_json::to_vec(&one_left).unwrap())
        .await;
    assert_eq!(status, 202);
    assert_eq!(events(&svc).await, 4);
    // ...the same list in a later message is.
    let again = list_with(&[0], &full, "cut-2");
    let (status, body) = svc.post("/sync", serde_json::to_vec(&again).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["withdrawn"], 3);
    assert_eq!(events(&svc).await, 1);
    let held = svc.get_json("/held").await;
    assert_eq!(held["pending"], 0);
    assert!(
        held["held"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["state"] == "confirmed"),
        "{held}"
    );
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
