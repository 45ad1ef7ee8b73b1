//! The `sync` subcommand, run as a user would.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fogis-calendar-sync"));
    c.env_remove("RUST_LOG");
    c
}

#[test]
fn sync_dry_run_then_for_real_then_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::fixture_path("processor_match_updates.json");
    let out = bin()
        .args(["sync", "--dry-run"])
        .arg(&file)
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("plan (dry run, nothing written):"),
        "{text}"
    );
    assert_eq!(
        text.matches("created").count(),
        4,
        "3 lines and the JSON: {text}"
    );

    let out = bin()
        .arg("sync")
        .arg(&file)
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("applied:"), "{text}");
    assert!(
        text.contains("created    6186203 IFK Göteborg - Falkenbergs FF (2025-05-06 16:30 UTC)"),
        "{text}"
    );
    assert!(text.contains("\"created\":3"), "{text}");

    let out = bin()
        .arg("sync")
        .arg(&file)
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("duplicate:"), "{text}");

    let out = bin()
        .arg("sync")
        .arg(common::fixture_path("enhanced_v2.json"))
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"unchanged\":3"), "{text}");
    assert!(text.contains("\"created\":0"), "{text}");
}

#[test]
fn sync_rejects_bad_files_with_a_reason_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{\"matches\": 3}").unwrap();
    let out = bin()
        .arg("sync")
        .arg(&bad)
        .env("DATA_DIR", dir.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("rejected: matches: expected a list, found a number"),
        "{err}"
    );
}

#[test]
fn help_is_there_for_every_subcommand() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["sync", "--help"],
    ] {
        let out = bin().args(&args).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("Usage: fogis-calendar-sync"),
            "{args:?}: {text}"
        );
    }
    let out = bin().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for var in [
        "DATA_DIR",
        "BIND",
        "API_TOKEN",
        "FEED_TOKEN",
        "MAX_BODY_BYTES",
        "TIMEZONE",
        "REMINDER_MINUTES",
        "LOG_FORMAT",
    ] {
        assert!(text.contains(var), "{var} not documented in serve --help");
    }
}

#[test]
fn purge_removes_personal_data_from_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = common::fixture_path("processor_match_updates.json");
    let out = bin()
        .arg("sync")
        .arg(&file)
        .env("DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(out.status.success());
    // A rejected input with personal data lands in the quarantine.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, br#"{"matches": [{"matchid": 1, "lag1namn": "x", "note": "call 0701234567 or eve@example.org"}]}"#).unwrap();
    let out = bin()
        .arg("sync")
        .arg(&bad)
        .env("DATA_DIR", &data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let db = || {
        let mut bytes = std::fs::read(data.join("state.db")).unwrap();
        bytes.extend(std::fs::read(data.join("state.db-wal")).unwrap_or_default());
        bytes
    };
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    let out = bin()
        .args(["purge"])
        .env("DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(!out.status.success(), "purge without a scope refuses");

    let out = bin()
        .args(["purge", "--inputs"])
        .env("DATA_DIR", &data)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("purged 0 matches, 1 quarantined inputs"),
        "{text}"
    );
    assert!(!contains(&db(), "eve@example.org"));
    assert!(contains(&db(), "john.doe@example.com"), "matches are kept");

    let out = bin()
        .args(["purge", "--older-than-days", "30"])
        .env("DATA_DIR", &data)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("purged 3 matches"), "{text}");
    assert!(!contains(&db(), "john.doe@example.com"));
    assert!(!contains(&db(), "0700000000"));
}
