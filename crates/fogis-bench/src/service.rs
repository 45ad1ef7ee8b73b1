//! The service under test: the release binary as a child process (what the benchmark measures),
//! or the library in-process (what the smoke test uses, so that CI needs no release build).
//! Either way it has its own `DATA_DIR`, listens on a free loopback port and subscribes to the
//! benchmark's Redis.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::http::{get_once, Client};

/// How long a service may take to answer `/health`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the service runs.
#[derive(Debug)]
enum Running {
    Process(Child),
    InProcess {
        shutdown: CancellationToken,
        thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    },
}

/// A running service; stopped when dropped.
#[derive(Debug)]
pub struct Service {
    pub addr: SocketAddr,
    pub pid: u32,
    /// From exec (or the call to `run`) to the first `/health` 200.
    pub ready_after: Duration,
    running: Running,
    /// The state directory (and the log of a child process).
    pub dir: tempfile::TempDir,
}

/// What a service starts with beyond the defaults.
#[derive(Debug, Default)]
pub struct Setup {
    /// The state directory to start on (a prepared state); an empty one when `None`.
    pub dir: Option<tempfile::TempDir>,
    /// More command-line flags, e.g. `["--caldav-url", URL]`.
    pub flags: Vec<String>,
}

impl Setup {
    /// `name value` pairs as flags.
    pub fn flags<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> Setup {
        Setup {
            dir: None,
            flags: pairs
                .into_iter()
                .flat_map(|(name, value)| [name.to_string(), value])
                .collect(),
        }
    }
}

/// The service's settings as command-line flags (the same for both ways of running it); no
/// Redis (`None`) runs it HTTP only.
fn flags(dir: &Path, addr: SocketAddr, redis_url: Option<&str>, extra: &[String]) -> Vec<String> {
    let mut flags = vec![
        "--data-dir".to_string(),
        dir.display().to_string(),
        "--bind".to_string(),
        addr.to_string(),
    ];
    match redis_url {
        Some(url) => flags.extend(["--redis-url".to_string(), url.to_string()]),
        None => flags.extend(["--redis-pubsub-enabled".to_string(), "false".to_string()]),
    }
    flags.extend(extra.iter().cloned());
    flags
}

impl Service {
    /// Runs `binary serve` as a child process, logging to `service.log` in its directory.
    pub fn spawn(binary: &Path, redis_url: &str, setup: Setup) -> anyhow::Result<Service> {
        let dir = match setup.dir {
            Some(dir) => dir,
            None => tempfile::tempdir()?,
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, test_support::free_port()));
        let log = std::fs::File::create(dir.path().join("service.log"))?;
        let started = Instant::now();
        let child = Command::new(binary)
            .arg("serve")
            .args(flags(dir.path(), addr, Some(redis_url), &setup.flags))
            // The defaults otherwise: log level info, pretty logs, all nine channels.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let mut service = Service {
            addr,
            pid,
            ready_after: Duration::ZERO,
            running: Running::Process(child),
            dir,
        };
        service.ready_after = service.wait_ready(started)?;
        Ok(service)
    }

    /// Runs the library's `run` on a thread with its own runtime (two workers, like the binary
    /// on this machine), listening on port 0; `redis_url` `None` runs it HTTP only.
    pub fn in_process(redis_url: Option<&str>, setup: Setup) -> anyhow::Result<Service> {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            opts: fogis_calendar_sync::config::ServeOpts,
        }
        let dir = match setup.dir {
            Some(dir) => dir,
            None => tempfile::tempdir()?,
        };
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let mut args = vec!["fogis-calendar-sync".to_string()];
        args.extend(flags(dir.path(), addr, redis_url, &setup.flags));
        let opts = Wrapper::try_parse_from(args)?.opts;
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                fogis_calendar_sync::run(opts, listener, token).await
            })
        });
        let mut service = Service {
            addr,
            pid: std::process::id(),
            ready_after: Duration::ZERO,
            running: Running::InProcess {
                shutdown,
                thread: Some(thread),
            },
            dir,
        };
        service.ready_after = service.wait_ready(started)?;
        Ok(service)
    }

    /// Polls `/health` every 500 µs until it answers 200.
    fn wait_ready(&mut self, started: Instant) -> anyhow::Result<Duration> {
        loop {
            if let Ok(r) = get_once(self.addr, "/health", Duration::from_secs(2)) {
                if r.status == 200 {
                    return Ok(started.elapsed());
                }
            }
            if let Running::Process(child) = &mut self.running {
                if let Some(status) = child.try_wait()? {
                    bail!("the service exited with {status}: {}", self.log_tail());
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!("no /health within {READY_TIMEOUT:?}: {}", self.log_tail());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// A keep-alive client for this service.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// Waits until the subscriber is connected and subscribed.
    pub fn wait_subscribed(&self) -> anyhow::Result<()> {
        let mut client = self.client();
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            let stats = client.get("/redis-stats", &[])?.json()?;
            if stats["subscribed"] == true {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(anyhow!(
            "the service did not subscribe: {}",
            self.log_tail()
        ))
    }

    /// `VmRSS` and `VmHWM` (peak) in bytes.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .ok_or_else(|| anyhow!("no {name} in /proc/{}/status", self.pid))?;
            let kb: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()?;
            Ok(kb * 1024)
        };
        Ok(Memory {
            rss: field("VmRSS:")?,
            hwm: field("VmHWM:")?,
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("service.log")
    }

    /// The last lines of a child process's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the service (SIGTERM for a process) and waits for it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> anyhow::Result<()> {
        match &mut self.running {
            Running::Process(child) => {
                if child.try_wait()?.is_none() {
                    let _ = Command::new("kill")
                        .arg("-TERM")
                        .arg(child.id().to_string())
                        .status();
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while child.try_wait()?.is_none() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    if child.try_wait()?.is_none() {
                        child.kill()?;
                        child.wait()?;
                    }
                }
            }
            Running::InProcess { shutdown, thread } => {
                shutdown.cancel();
                if let Some(t) = thread.take() {
                    t.join()
                        .map_err(|_| anyhow!("the in-process service panicked"))??;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Resident memory of the service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss: u64,
    /// The peak resident set since start (`VmHWM`).
    pub hwm: u64,
}
