//! The systemd deployment: the unit's sandbox and command, verified by `systemd-analyze` when it
//! is installed (Debian's `systemd` package), and the environment file's variables and defaults.
#![allow(clippy::unwrap_used)]

mod deploy_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use deploy_support::*;

const UNIT: &str = "deploy/fogis-calendar-sync.service";
const ENV_FILE: &str = "deploy/fogis-calendar-sync.env.example";
const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

/// The unit's `Key=value` lines per section; a key given twice keeps every value.
fn unit() -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in read(UNIT).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not Key=value: {line}"));
        out.entry((section.clone(), k.to_string()))
            .or_default()
            .push(v.to_string());
    }
    out
}

#[test]
fn the_unit_runs_the_service_sandboxed() {
    let unit = unit();
    let get = |k: &str| {
        let v = unit
            .get(&("Service".to_string(), k.to_string()))
            .unwrap_or_else(|| panic!("[Service] has no {k}="));
        v.last().unwrap().clone()
    };
    for (k, v) in [
        ("ExecStart", "/usr/local/bin/fogis-calendar-sync serve"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "fogis-calendar-sync"),
        ("Environment", "DATA_DIR=/var/lib/fogis-calendar-sync"),
        ("EnvironmentFile", "-/etc/fogis-calendar-sync.env"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("Restart", "on-failure"),
        ("MemoryMax", "256M"),
        ("TasksMax", "256"),
    ] {
        assert_eq!(get(k), v, "{k}");
    }
    // The state directory systemd makes is the one DATA_DIR names.
    assert_eq!(
        get("Environment"),
        format!("DATA_DIR=/var/lib/{}", get("StateDirectory"))
    );
    // A start that keeps failing (a corrupt state) ends in "failed", not a restart every 2 s.
    for (k, v) in [("StartLimitIntervalSec", "300"), ("StartLimitBurst", "5")] {
        assert_eq!(unit[&("Unit".to_string(), k.to_string())], [v], "{k}");
    }
    assert_eq!(
        unit[&("Install".to_string(), "WantedBy".to_string())],
        ["multi-user.target"]
    );
    // `serve` is a real subcommand of the binary.
    let help = bin().args(["serve", "--help"]).output().unwrap();
    assert!(help.status.success());
}

#[test]
fn systemd_analyze_accepts_the_unit_and_rates_its_sandbox() {
    if !Path::new(SYSTEMD_ANALYZE).exists() {
        eprintln!(
            "SKIPPED systemd_analyze_accepts_the_unit_and_rates_its_sandbox: {SYSTEMD_ANALYZE} is \
             missing (apt-get install systemd); the_unit_runs_the_service_sandboxed still checks \
             the keys"
        );
        return;
    }
    // verify checks that ExecStart's binary exists: point it at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fogis-calendar-sync.service");
    let text = read(UNIT).replace(
        "/usr/local/bin/fogis-calendar-sync",
        env!("CARGO_BIN_EXE_fogis-calendar-sync"),
    );
    std::fs::write(&path, text).unwrap();
    let verify = Command::new(SYSTEMD_ANALYZE)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains(path.file_name().unwrap().to_str().unwrap()),
        "warnings about the unit: {stderr}"
    );
    // Exposure 0 (locked down) to 100 (none): the unit scores 16; fail if it gets worse than 20.
    let security = Command::new(SYSTEMD_ANALYZE)
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        security.status.success(),
        "the sandbox got weaker: {}",
        String::from_utf8_lossy(&security.stdout)
    );
}

#[test]
fn the_environment_file_lists_every_documented_variable_with_its_default() {
    let text = read(ENV_FILE);
    let vars = commented_variables(&text);
    let defaults = code_defaults();
    for name in readme_names() {
        assert!(vars.contains_key(&name), "{ENV_FILE} does not list {name}");
    }
    for (name, value) in &vars {
        match (name.as_str(), defaults.get(name)) {
            (_, None) => panic!("{ENV_FILE} lists {name}, which the code does not read"),
            // The unit sets it to its StateDirectory.
            ("DATA_DIR", _) => assert_eq!(value, "/var/lib/fogis-calendar-sync"),
            (_, Some(Some(default))) => assert_eq!(value, default, "{name}"),
            // Unset by default: empty or an example.
            (_, Some(None)) => {}
        }
    }
    // Nothing is set by the example itself: every line is a comment or empty.
    for line in text.lines() {
        assert!(line.is_empty() || line.starts_with('#'), "{line}");
    }
}
