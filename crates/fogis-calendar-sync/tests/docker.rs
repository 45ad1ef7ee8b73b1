//! The Docker deployment, checked without a Docker engine: the Dockerfile's instructions agree
//! with the code and its ENTRYPOINT, CMD and HEALTHCHECK run as written; `.dockerignore` keeps
//! the context to what the build copies; `docker-compose.yml` and the FOGIS stack snippet parse
//! and configure every variable the README documents.
//!
//! The healthcheck command's own behaviour (0 against a service, 1 against none) is tested in
//! `tests/redis_live.rs` (`publish_status_and_healthcheck_commands_work_against_a_running_service`);
//! here it runs with the image's environment against the image's command.
#![allow(clippy::unwrap_used)]

mod deploy_support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deploy_support::*;

/// The Dockerfile's instructions, continuation lines joined: (instruction, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (op, args) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (op.to_ascii_uppercase(), args.trim().to_string())
        })
        .collect()
}

fn one(ins: &[(String, String)], op: &str) -> String {
    let found: Vec<&String> = ins
        .iter()
        .filter(|(o, _)| o == op)
        .map(|(_, a)| a)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {op}: {found:?}");
    found[0].clone()
}

/// An exec-form (JSON array) argument list.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{args} is not exec form: {e}"))
}

/// `KEY=value` pairs (no quoting needed by this Dockerfile).
fn pairs(args: &str) -> BTreeMap<String, String> {
    args.split_whitespace()
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// `key="value with spaces" key2="..."` (LABEL).
fn quoted_pairs(args: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = args.trim();
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').expect("closing quote");
        out.insert(key.trim().to_string(), after[..end].to_string());
        rest = after[end + 1..].trim_start();
    }
    assert!(rest.is_empty(), "unparsed LABEL text: {rest}");
    out
}

#[test]
fn dockerfile_agrees_with_the_code() {
    let ins = dockerfile();
    let defaults = code_defaults();
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(o, _)| o == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(froms[0], "rust:1-bookworm AS build");
    assert!(
        [
            "gcr.io/distroless/cc-debian12:nonroot",
            "debian:bookworm-slim"
        ]
        .contains(&froms[1].as_str()),
        "runtime image {}",
        froms[1]
    );
    let run = one(&ins, "RUN");
    assert!(
        run.contains("cargo build --release --locked --bin fogis-calendar-sync"),
        "{run}"
    );

    let env = pairs(&one(&ins, "ENV"));
    assert_eq!(env["BIND"], "0.0.0.0:9083");
    assert_eq!(env["DATA_DIR"], "/data");
    assert!(
        env.keys().all(|k| defaults.contains_key(k)),
        "unknown ENV: {env:?}"
    );
    // The container listens on the port the code defaults to, and exposes it.
    let default_bind = defaults["BIND"].clone().unwrap();
    assert_eq!(port_of(&env["BIND"]), port_of(&default_bind));
    assert_eq!(one(&ins, "EXPOSE"), port_of(&default_bind).to_string());
    assert_eq!(exec_form(&one(&ins, "VOLUME")), [env["DATA_DIR"].clone()]);
    let user = one(&ins, "USER");
    assert!(
        !["root", "0", "0:0", "root:root"].contains(&user.as_str()),
        "USER {user}"
    );

    let entry = exec_form(&one(&ins, "ENTRYPOINT"));
    assert_eq!(entry, ["/usr/local/bin/fogis-calendar-sync"]);
    assert!(ins
        .iter()
        .any(|(o, a)| o == "COPY" && a.ends_with(&format!(" {}", entry[0]))));
    assert_eq!(exec_form(&one(&ins, "CMD")), ["serve"]);
    let health = one(&ins, "HEALTHCHECK");
    let cmd = &health[health.find("CMD ").expect("HEALTHCHECK CMD") + 4..];
    assert_eq!(exec_form(cmd), [entry[0].as_str(), "healthcheck"]);

    let labels = quoted_pairs(&one(&ins, "LABEL"));
    let label = |k: &str| labels[&format!("org.opencontainers.image.{k}")].clone();
    assert_eq!(label("title"), "fogis-calendar-sync");
    assert_eq!(label("licenses"), env!("CARGO_PKG_LICENSE"));
    assert_eq!(label("version"), "${VERSION}");
    assert_eq!(
        one(&ins, "ARG"),
        format!("VERSION={}", env!("CARGO_PKG_VERSION"))
    );
    for k in ["source", "description", "url", "documentation"] {
        assert!(!label(k).is_empty());
    }
}

/// Whether `.dockerignore` keeps `path` out of the build context (Docker's rules for the
/// patterns this file uses: `*`, names, `**/name`, `**/*.ext`, `!` re-includes; last match wins).
fn ignored(patterns: &[String], path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let matches = |p: &str| {
        if p == "*" {
            return true;
        }
        if let Some(any) = p.strip_prefix("**/") {
            return parts.iter().any(|c| match any.strip_prefix('*') {
                Some(ext) => c.ends_with(ext),
                None => *c == any,
            });
        }
        path == p || path.starts_with(&format!("{p}/"))
    };
    let mut out = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(p) if matches(p) => out = false,
            None if matches(p) => out = true,
            _ => {}
        }
    }
    out
}

#[test]
fn dockerignore_sends_what_the_build_copies_and_nothing_else() {
    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    for out in [
        ".git",
        "target",
        "target/release/x",
        "data",
        "data/state.db",
        "docs",
        "crates/x/target/y",
        "crates/a/b.db",
    ] {
        assert!(ignored(&patterns, out), "{out} is in the build context");
    }
    // Every source the build stage copies from the context, and every file under it.
    for (op, args) in dockerfile()
        .iter()
        .filter(|(o, a)| o == "COPY" && !a.starts_with("--from"))
    {
        let words: Vec<&str> = args.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            assert!(workspace().join(src).exists(), "{op} {src}: no such file");
            assert!(
                !ignored(&patterns, src),
                "{src} is excluded by .dockerignore"
            );
        }
    }
    let mut stack = vec![workspace().join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(workspace())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() && path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if !rel.ends_with(".db") {
                assert!(!ignored(&patterns, &rel), "{rel} is needed by the build");
            }
        }
    }
}

/// A child process killed when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_images_command_and_healthcheck_run_as_written() {
    let ins = dockerfile();
    let mut env = pairs(&one(&ins, "ENV"));
    // The container's environment, on a free port and a scratch /data, without Redis (never
    // the one that may run on this machine).
    let port = test_support::free_port();
    let data = tempfile::tempdir().unwrap();
    env.insert("BIND".into(), format!("0.0.0.0:{port}"));
    env.insert("DATA_DIR".into(), data.path().display().to_string());
    env.insert("REDIS_PUBSUB_ENABLED".into(), "false".into());
    let image_bin = exec_form(&one(&ins, "ENTRYPOINT"))[0].clone();
    let health = one(&ins, "HEALTHCHECK");
    let check_args: Vec<String> =
        exec_form(&health[health.find("CMD ").unwrap() + 4..])[1..].to_vec();
    let log_path = data.path().join("service.log");
    let command = |args: &[String]| {
        assert!(!args.is_empty());
        let mut c = bin();
        c.args(args)
            .envs(&env)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let healthcheck = || command(&check_args).status().unwrap().code();
    assert_eq!(image_bin, "/usr/local/bin/fogis-calendar-sync");

    assert_eq!(healthcheck(), Some(1), "healthy before the service started");
    // The image listens on every interface: without the tokens, `serve` refuses to start and
    // says what to set.
    let refused = command(&exec_form(&one(&ins, "CMD")))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("API_TOKEN and FEED_TOKEN are not set")
            && why.contains("ALLOW_UNAUTHENTICATED=true"),
        "{why}"
    );
    assert!(
        !data.path().join("state.db").exists(),
        "a refused start opened the state"
    );
    // An empty token (what an uncommented `API_TOKEN: ""` gives) is refused too.
    let empty = command(&exec_form(&one(&ins, "CMD")))
        .env("API_TOKEN", "")
        .env("FEED_TOKEN", "feed-token-of-the-image-test")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!empty.status.success());
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("API_TOKEN is empty"),
        "{empty:?}"
    );
    let mut cmd = command(&exec_form(&one(&ins, "CMD")));
    cmd.env("API_TOKEN", "api-token-of-the-image-test")
        .env("FEED_TOKEN", "feed-token-of-the-image-test");
    cmd.stderr(std::fs::File::create(&log_path).unwrap());
    let mut service = Reaped(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while healthcheck() != Some(0) {
        assert!(
            service.0.try_wait().unwrap().is_none(),
            "the service exited: {}",
            log()
        );
        assert!(Instant::now() < deadline, "never healthy: {}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        data.path().join("state.db").exists(),
        "no state in DATA_DIR"
    );

    // `docker stop` sends SIGTERM: the service stops cleanly, then the check fails.
    let pid = service.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = service.0.wait().unwrap();
    assert!(status.success(), "SIGTERM: {status:?}: {}", log());
    assert_eq!(healthcheck(), Some(1));
}

/// Both tokens come from the environment of `docker compose`, which stops with the message
/// when one is unset or empty (`${VAR:?message}`).
fn assert_tokens_required(env: &BTreeMap<String, String>) {
    for name in ["API_TOKEN", "FEED_TOKEN"] {
        let value = &env[name];
        let prefix = format!("${{{name}:?");
        assert!(
            value.starts_with(&prefix) && value.ends_with('}') && value.contains(name),
            "{name}: {value}"
        );
    }
}

/// The service's container: an unwritable image but for a tmpfs on /tmp, no capabilities, no
/// privilege gain, memory and process limits.
fn assert_sandboxed(svc: &yaml_rust2::Yaml) {
    assert_eq!(svc["read_only"].as_bool(), Some(true), "read_only");
    let tmpfs = strings(&svc["tmpfs"]);
    assert!(
        tmpfs.len() == 1 && tmpfs[0].starts_with("/tmp:"),
        "tmpfs {tmpfs:?}"
    );
    assert_eq!(strings(&svc["cap_drop"]), ["ALL"]);
    assert!(svc["cap_add"].is_badvalue(), "no capability added back");
    assert_eq!(strings(&svc["security_opt"]), ["no-new-privileges:true"]);
    assert_eq!(scalar(&svc["mem_limit"]), "256m");
    assert_eq!(svc["pids_limit"].as_i64(), Some(256));
    // The volume holds the state: the only place it writes, besides /tmp.
    let volumes = strings(&svc["volumes"]);
    assert_eq!(volumes.len(), 1, "{volumes:?}");
}

#[test]
fn compose_file_runs_redis_the_service_and_optional_radicale() {
    let doc = yaml("docker-compose.yml");
    let services = &doc["services"];
    let redis = &services["redis"];
    assert_eq!(scalar(&redis["image"]), "redis:7.4-alpine");
    assert_eq!(redis["read_only"].as_bool(), Some(true));
    assert_eq!(strings(&redis["cap_drop"]), ["ALL"]);
    assert_eq!(strings(&redis["security_opt"]), ["no-new-privileges:true"]);
    let cmd = strings(&redis["command"]).join(" ");
    assert!(cmd.contains("--appendonly yes"), "{cmd}");
    assert!(cmd.contains("--maxmemory-policy noeviction"), "{cmd}");
    assert_eq!(
        strings(&redis["healthcheck"]["test"]),
        ["CMD", "redis-cli", "ping"]
    );

    let svc = &services["fogis-calendar-sync"];
    assert_eq!(scalar(&svc["build"]), ".");
    assert_eq!(
        scalar(&svc["depends_on"]["redis"]["condition"]),
        "service_healthy"
    );
    assert_eq!(scalar(&svc["restart"]), "unless-stopped");
    // Published on loopback only; the container itself listens on every interface, so the
    // service demands both tokens, and compose refuses to start without them.
    assert_eq!(strings(&svc["ports"]), ["127.0.0.1:9083:9083"]);
    assert_eq!(strings(&svc["volumes"]), ["calendar-data:/data"]);
    for v in ["calendar-data", "redis-data", "radicale-data"] {
        assert!(doc["volumes"][v].is_null(), "top-level volume {v}");
    }
    let env = environment(svc);
    assert_eq!(env["BIND"], "0.0.0.0:9083");
    assert_eq!(env["DATA_DIR"], "/data");
    assert_eq!(env["REDIS_URL"], "redis://redis:6379");
    assert_tokens_required(&env);
    assert_sandboxed(svc);

    let radicale = &services["radicale"];
    assert_eq!(strings(&radicale["profiles"]), ["radicale"]);
    assert!(scalar(&radicale["image"]).starts_with("tomsquest/docker-radicale"));
    assert_eq!(strings(&radicale["volumes"]), ["radicale-data:/data"]);
    assert_eq!(strings(&radicale["ports"]), ["127.0.0.1:5232:5232"]);
    assert_eq!(strings(&radicale["cap_drop"]), ["ALL"]);
}

#[test]
fn compose_file_names_every_documented_variable_with_its_default() {
    let text = read("docker-compose.yml");
    let env = environment(&yaml("docker-compose.yml")["services"]["fogis-calendar-sync"]);
    let commented = commented_variables(&text);
    let defaults = code_defaults();
    let documented = readme_names();
    for name in &documented {
        assert!(
            env.contains_key(name) || commented.contains_key(name),
            "docker-compose.yml does not name {name} (README's configuration table)"
        );
    }
    for name in env.keys().chain(commented.keys()) {
        assert!(
            documented.contains(name) || defaults.contains_key(name),
            "docker-compose.yml names {name}, which neither the README nor the code knows"
        );
        assert!(
            !(env.contains_key(name) && commented.contains_key(name)),
            "{name} twice"
        );
    }
    // Values are the code's defaults, except where the container needs its own.
    for (name, value) in &env {
        if [
            "BIND",
            "DATA_DIR",
            "REDIS_URL",
            "REDIS_CONSUMER_NAME",
            "API_TOKEN",
            "FEED_TOKEN",
        ]
        .contains(&name.as_str())
        {
            continue;
        }
        assert_eq!(
            Some(value),
            defaults.get(name).cloned().flatten().as_ref(),
            "{name}"
        );
    }
    // A commented-out variable shows its default, or an example when it has none.
    for (name, value) in &commented {
        if let Some(Some(default)) = defaults.get(name) {
            assert_eq!(value, default, "{name}");
        }
    }
}

#[test]
fn fogis_stack_snippet_replaces_the_python_calendar_service() {
    let doc = yaml("deploy/fogis-stack-snippet.yml");
    let svc = &doc["services"]["fogis-calendar-phonebook-sync"];
    assert!(!svc.is_badvalue(), "service fogis-calendar-phonebook-sync");
    let env = environment(svc);
    assert_eq!(env["BIND"], "0.0.0.0:5003");
    assert_eq!(env["REDIS_URL"], "redis://fogis-redis:6379");
    assert_eq!(
        strings(&svc["ports"]),
        [format!("127.0.0.1:9083:{}", port_of(&env["BIND"]))]
    );
    assert_tokens_required(&env);
    assert_sandboxed(svc);
    let volume = strings(&svc["volumes"])[0].clone();
    assert_eq!(volume.split_once(':').unwrap().1, env["DATA_DIR"]);
    assert!(doc["volumes"][volume.split(':').next().unwrap()].is_null());
    let defaults = code_defaults();
    for name in env
        .keys()
        .chain(commented_variables(&read("deploy/fogis-stack-snippet.yml")).keys())
    {
        assert!(defaults.contains_key(name), "unknown variable {name}");
    }
    // The README shows the same block.
    let snippet = read("deploy/fogis-stack-snippet.yml");
    let block = &snippet[snippet.find("services:").unwrap()..];
    assert!(
        read("README.md").contains(block),
        "README's FOGIS snippet differs from the file"
    );
}
