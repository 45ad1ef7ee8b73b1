//! The files of DATA_DIR, with the real binary: private whatever the umask, and one `serve`
//! per directory while the CLI keeps working beside it.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{ServiceProcess, SpawnService};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fogis-calendar-sync"));
    c.env_remove("RUST_LOG")
        .env_remove("API_TOKEN")
        .env_remove("FEED_TOKEN")
        .env("REDIS_ENABLED", "false");
    c
}

/// The binary run by a shell with `umask 000`: the loosest the process could inherit.
fn with_open_umask(args: &str, data: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "umask 000 && exec \"{}\" {args}",
            env!("CARGO_BIN_EXE_fogis-calendar-sync")
        ))
        .env_remove("RUST_LOG")
        .env_remove("API_TOKEN")
        .env_remove("FEED_TOKEN")
        .env("REDIS_ENABLED", "false")
        .env("DATA_DIR", data);
    c
}

/// `serve` on `data` as a child process, in the environment of [`bin`].
fn serve(data: &Path) -> SpawnService {
    ServiceProcess::builder()
        .env_remove("RUST_LOG")
        .env_remove("API_TOKEN")
        .env_remove("FEED_TOKEN")
        .env("REDIS_ENABLED", "false")
        .env("DATA_DIR", data)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn assert_private(data: &Path) {
    assert_eq!(mode(data), 0o700, "DATA_DIR");
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn the_state_is_private_whatever_the_umask_and_whatever_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh");
    let file = common::fixture_path("processor_match_updates.json");
    let out = with_open_umask(&format!("sync \"{}\"", file.display()), &fresh)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(fresh.join("state.db").exists());
    assert_private(&fresh);

    // A state from before: world-readable directory and file.
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::copy(fresh.join("state.db"), old.join("state.db")).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(old.join("state.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = with_open_umask("held list", &old).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_private(&old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_state_stops_naming_the_first_and_the_cli_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = serve(&data).umask("000").start().await;
    assert_private(&data);

    let second = bin()
        .arg("serve")
        .env("BIND", format!("127.0.0.1:{}", test_support::free_port()))
        .env("DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!(
            "is in use by another `serve` (pid {}",
            first.pid().unwrap()
        )),
        "{err}"
    );

    // The CLI works beside the running service, and the service sees what it wrote.
    let file = common::fixture_path("processor_match_updates.json");
    let out = bin()
        .arg("sync")
        .arg(&file)
        .env("DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    first
        .wait_json("/health", "still healthy", Duration::from_secs(20), |_| {
            true
        })
        .await;

    // Once the first is gone, a new `serve` takes over.
    drop(first);
    let _again = serve(&data).start().await;
}
