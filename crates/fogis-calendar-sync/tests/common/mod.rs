//! Helpers shared by the integration tests: a service started in-process on port 0, fixtures,
//! and an iCalendar reader built on a real parser.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fogis_calendar_sync::config::{LogFormat, RedisOpts, Secret, ServeOpts, SinkOpts, StateOpts};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Polls `probe` every `every` until it answers `Ok`, and returns that answer. After `limit` it
/// fails the test with `what` and the last `Err` (what the probe saw instead). The one polling
/// loop of the integration tests.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) => assert!(
                start.elapsed() < limit,
                "not {what} within {limit:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(every).await;
    }
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

pub fn state_opts(dir: &Path) -> StateOpts {
    StateOpts {
        data_dir: dir.to_path_buf(),
        timezone: chrono_tz::Europe::Stockholm,
        match_duration_minutes: 120,
        reminder_minutes: 2880,
        calendar_name: "FOGIS matches".into(),
        hold_withdraw_share: 0.5,
        hold_min_withdrawals: 2,
        max_matches_per_snapshot: 5000,
        user_referee_number: None,
        event_title: fogis_calendar_sync::render::title::DEFAULT_TEMPLATE.into(),
    }
}

/// Redis options aimed at `url`; disabled when `None`.
pub fn redis_opts(url: Option<&str>) -> RedisOpts {
    RedisOpts {
        redis_url: url.unwrap_or("redis://127.0.0.1:1").to_string(),
        redis_pubsub_enabled: url.is_some(),
        redis_enabled: true,
        redis_match_channels: fogis_pubsub::config::DEFAULT_MATCH_CHANNELS
            .map(String::from)
            .to_vec(),
        redis_status_channels: fogis_pubsub::config::DEFAULT_STATUS_CHANNELS
            .map(String::from)
            .to_vec(),
        redis_max_message_bytes: 4 * 1024 * 1024,
        redis_reconnect_max_seconds: 4,
        durable: fogis_calendar_sync::config::DurableOpts {
            redis_latest_key: "fogis:matches:latest".into(),
            redis_stream: None,
            redis_stream_maxlen: 10_000,
        },
        redis_consumer_group: None,
        redis_consumer_name: Some("test".into()),
        redis_stream_claim_idle_seconds: 60,
    }
}

pub fn serve_opts(dir: &Path) -> ServeOpts {
    ServeOpts {
        state: state_opts(dir),
        redis: redis_opts(None),
        sinks: SinkOpts::none(),
        google: fogis_calendar_sync::config::google::GoogleOpts::none(),
        pull: fogis_calendar_sync::ingest::pull::PullOpts::none(),
        bind: "127.0.0.1:0".parse().unwrap(),
        api_token: None,
        feed_token: None,
        allow_unauthenticated: false,
        archive_retention_days: 400,
        max_archived_matches: 10_000,
        max_body_bytes: 4 * 1024 * 1024,
        log_format: LogFormat::Pretty,
        http_header_timeout_seconds: 10,
        http_request_timeout_seconds: 30,
        http_max_connections: 256,
    }
}

/// A service running in this process on a free port; stopped on drop.
pub struct Service {
    pub base: String,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub http: reqwest::Client,
}

impl Service {
    pub async fn start() -> Service {
        Service::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServeOpts)) -> Service {
        let dir = tempfile::tempdir().unwrap();
        Service::start_in(dir, tweak).await
    }

    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut ServeOpts)) -> Service {
        let mut opts = serve_opts(dir.path());
        tweak(&mut opts);
        let listener = tokio::net::TcpListener::bind(opts.bind).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(fogis_calendar_sync::run(opts, listener, shutdown.clone()));
        Service {
            base,
            dir,
            shutdown,
            task: Some(task),
            http: reqwest::Client::new(),
        }
    }

    /// Stops the service and waits for it; returns the data directory for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let text = self.get_text(path).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    /// The body of a GET of `path` as text (`/metrics`, `/contacts.vcf`, ...).
    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until `/redis-status` says connected.
    pub async fn wait_redis_connected(&self, limit: Duration) -> Value {
        self.wait_json("/redis-status", "connected to Redis", limit, |s| {
            s["redis_status"]["connected"] == true
        })
        .await
    }

    /// GETs `path` every 20 ms until `pred` holds on its JSON answer, and returns that answer
    /// (see [`eventually`]).
    pub async fn wait_json(
        &self,
        path: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(what, limit, Duration::from_millis(20), || async {
            let v = self.get_json(path).await;
            if pred(&v) {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        })
        .await
    }

    pub async fn feed(&self) -> String {
        let resp = self
            .http
            .get(self.url("/calendar.ics"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.text().await.unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// One VEVENT as read back by the `icalendar` parser.
#[derive(Debug, Clone, Default)]
pub struct ParsedEvent {
    pub uid: String,
    pub props: std::collections::BTreeMap<String, String>,
    pub dtstart_tzid: Option<String>,
    pub alarm_trigger: Option<String>,
}

/// Parses a feed with the real `icalendar` parser; text values come back unescaped.
pub fn parse_feed(text: &str) -> Vec<ParsedEvent> {
    let unfolded = icalendar::parser::unfold(text);
    let cal = icalendar::parser::read_calendar(&unfolded).unwrap();
    let mut events = Vec::new();
    for c in &cal.components {
        if c.name != "VEVENT" {
            continue;
        }
        let mut ev = ParsedEvent::default();
        for p in &c.properties {
            let name = p.name.to_string();
            let value = p.val.to_string();
            if name == "DTSTART" {
                ev.dtstart_tzid = p
                    .params
                    .iter()
                    .find(|x| x.key == "TZID")
                    .and_then(|x| x.val.as_ref().map(|v| v.to_string()));
            }
            ev.props.insert(name, value);
        }
        for sub in &c.components {
            if sub.name == "VALARM" {
                ev.alarm_trigger = sub
                    .properties
                    .iter()
                    .find(|p| p.name == "TRIGGER")
                    .map(|p| p.val.to_string());
            }
        }
        ev.uid = ev.props.get("UID").cloned().unwrap_or_default();
        events.push(ev);
    }
    events
}

pub fn event(events: &[ParsedEvent], match_id: i64) -> &ParsedEvent {
    let uid = fogis_calendar_sync::render::ics::uid(match_id);
    events
        .iter()
        .find(|e| e.uid == uid)
        .unwrap_or_else(|| panic!("no event {uid}"))
}

/// `/Date(ms)/` for an instant.
pub fn tid(t: DateTime<Utc>) -> String {
    format!("/Date({})/", t.timestamp_millis())
}

/// The production fixture's matches, re-dated to `days` days from now (one per entry), with a
/// fresh message id.
pub fn future_snapshot(days: &[i64], message_id: &str) -> Value {
    let mut msg = fixture_json("processor_match_updates.json");
    let template = msg["payload"]["matches"][0].clone();
    let now = Utc::now();
    let matches: Vec<Value> = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut m = template.clone();
            m["matchid"] = Value::from(7_000_000 + i as i64);
            m["matchnr"] = Value::from(format!("9000{i}"));
            m["lag1namn"] = Value::from(format!("Home {i}"));
            m["lag2namn"] = Value::from(format!("Away {i}"));
            let start = (now + chrono::Duration::days(*d))
                .date_naive()
                .and_hms_opt(16, 0, 0)
                .unwrap()
                .and_utc();
            m["tid"] = Value::from(tid(start));
            m
        })
        .collect();
    msg["payload"]["matches"] = Value::Array(matches);
    msg["message_id"] = Value::from(message_id);
    msg
}

pub fn secret(s: &str) -> Option<Secret> {
    Some(Secret::new(s))
}

/// The service binary as a child process, with its log (stderr) in a file of its own: for
/// tests that kill it for real (SIGKILL), restart it on the same data directory, or run two
/// side by side. Killed on drop.
pub struct ServiceProcess {
    child: Option<std::process::Child>,
    pub base: String,
    log: tempfile::NamedTempFile,
    http: reqwest::Client,
}

/// How to start a [`ServiceProcess`]: `serve` with `BIND` on a port (a free one unless
/// [`port`](Self::port) says), `RUST_LOG=info` and `NO_COLOR=1` unless overridden or removed,
/// then the test's own variables.
pub struct SpawnService {
    port: Option<u16>,
    env: Vec<(String, std::ffi::OsString)>,
    removed: Vec<String>,
    umask: Option<String>,
}

impl SpawnService {
    /// Sets `key` in the child's environment (after the defaults: it overrides them).
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env
            .push((key.to_string(), value.as_ref().to_os_string()));
        self
    }

    /// Sets each of `env`.
    pub fn envs(self, env: &[(&str, String)]) -> Self {
        env.iter().fold(self, |b, (k, v)| b.env(k, v))
    }

    /// Removes `key` from the child's environment (the test's own and the defaults).
    pub fn env_remove(mut self, key: &str) -> Self {
        self.removed.push(key.to_string());
        self
    }

    /// Binds this port: the same one across restarts.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Runs the binary from `sh -c "umask MASK && exec ..."`: the process inherits that umask
    /// (and keeps the shell's pid).
    pub fn umask(mut self, mask: &str) -> Self {
        self.umask = Some(mask.to_string());
        self
    }

    /// Starts it and returns at once, whether it serves yet or not.
    pub fn start_now(self) -> ServiceProcess {
        let bin = env!("CARGO_BIN_EXE_fogis-calendar-sync");
        let port = self.port.unwrap_or_else(test_support::free_port);
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = match &self.umask {
            Some(mask) => {
                let mut c = std::process::Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {mask} && exec \"{bin}\" serve"));
                c
            }
            None => {
                let mut c = std::process::Command::new(bin);
                c.arg("serve");
                c
            }
        };
        cmd.env("BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for k in &self.removed {
            cmd.env_remove(k);
        }
        ServiceProcess {
            child: Some(cmd.spawn().unwrap()),
            base: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::new(),
        }
    }

    /// Starts it and waits until `/health` answers.
    pub async fn start(self) -> ServiceProcess {
        let svc = self.start_now();
        eventually(
            "answering /health",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || async {
                match svc.get_json("/health").await {
                    Some(_) => Ok(()),
                    None => Err(svc.log()),
                }
            },
        )
        .await;
        svc
    }
}

impl ServiceProcess {
    /// A [`SpawnService`] with nothing set yet.
    pub fn builder() -> SpawnService {
        SpawnService {
            port: None,
            env: Vec::new(),
            removed: Vec::new(),
            umask: None,
        }
    }

    /// Starts `serve` with `env` (plus `BIND` on a free port and `RUST_LOG=info` unless given)
    /// and waits until `/health` answers.
    pub async fn spawn(env: &[(&str, String)]) -> ServiceProcess {
        ServiceProcess::builder().envs(env).start().await
    }

    /// SIGKILL: no shutdown, nothing released.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id (`None` once killed).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log.path()).unwrap_or_default()).into_owned()
    }

    /// Waits (20 s at most, every 20 ms) until the log holds `needle`; returns the log.
    pub async fn wait_log(&self, needle: &str) -> String {
        eventually(
            needle,
            Duration::from_secs(20),
            Duration::from_millis(20),
            || async {
                let text = self.log();
                if text.contains(needle) {
                    Ok(text)
                } else {
                    Err(text)
                }
            },
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The JSON answer to a GET of `path`, `None` when there is none.
    pub async fn get_json(&self, path: &str) -> Option<Value> {
        let resp = self.http.get(self.url(path)).send().await;
        resp.ok()?.json().await.ok()
    }

    /// The body of a GET of `path` as text; fails the test when there is no answer.
    pub async fn get_text(&self, path: &str) -> String {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        resp.text().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> u16 {
        let resp = self.http.post(self.url(path)).body(body);
        resp.send().await.map_or(0, |r| r.status().as_u16())
    }

    /// GETs `path` every 20 ms until `pred` holds on its JSON answer (see [`eventually`]).
    pub async fn wait_json(
        &self,
        path: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(what, limit, Duration::from_millis(20), || async {
            match self.get_json(path).await {
                Some(v) if pred(&v) => Ok(v),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
