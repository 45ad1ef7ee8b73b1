//! # test-support
//!
//! Helpers for integration tests that need real services. The key type is [`RedisServer`]: a
//! throwaway `redis-server` on a free loopback port, with its own temporary directory and no
//! persistence (unless asked for: [`RedisOptions::persistent`]), killed when dropped. Tests can
//! stop it and start it again on the same port and in the same directory, freeze it (`SIGSTOP`)
//! to simulate a half-open connection, and run `redis-cli` against it.
//!
//! It never touches a Redis on the default port 6379: every server gets a port the OS says is
//! free.
//!
//! ```no_run
//! let redis = test_support::RedisServer::start();
//! assert_eq!(redis.cli(&["PING"]), "PONG");
//! println!("connect to {}", redis.url());
//! ```
//!
//! The helpers are blocking (they run `redis-server`, `redis-cli` and `kill`); in async tests use
//! a multi-threaded runtime so that the code under test keeps running meanwhile.

pub mod dav;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a freshly spawned server may take to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The port a system-wide Redis usually listens on; never handed out.
const SYSTEM_REDIS_PORT: u16 = 6379;

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (the OS picked it for a listener
/// that is closed again). Another process can take it in between; [`RedisServer`] retries.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"))
            .port();
        if port != SYSTEM_REDIS_PORT {
            return port;
        }
    }
}

/// Options for [`RedisServer`]: a fixed port and extra `redis-server` arguments.
#[derive(Debug, Default, Clone)]
pub struct RedisOptions {
    port: Option<u16>,
    args: Vec<String>,
}

impl RedisOptions {
    /// Listen on this port instead of a free one (for "Redis appears later" tests).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Append-only persistence with an fsync per write (`--appendonly yes --appendfsync
    /// always`) in the server's own directory: everything a command was answered for survives
    /// [`RedisServer::stop`] (a SIGKILL) and [`RedisServer::start_again`].
    pub fn persistent(self) -> Self {
        self.arg("--appendonly")
            .arg("yes")
            .arg("--appendfsync")
            .arg("always")
    }

    /// One extra `redis-server` argument, e.g. `.arg("--requirepass").arg("secret")`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the server and waits until it answers `PING`.
    pub fn start(self) -> RedisServer {
        RedisServer::start_with(self)
    }
}

/// A `redis-server` child process on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
    // Dropped last: the working directory of the server.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port with default options.
    pub fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default())
    }

    /// Options builder: `RedisServer::options().port(p).arg("--requirepass").arg("pw").start()`.
    pub fn options() -> RedisOptions {
        RedisOptions::default()
    }

    fn start_with(options: RedisOptions) -> RedisServer {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a tempdir: {e}"));
        let mut server = RedisServer {
            port: options.port.unwrap_or(0),
            args: options.args,
            child: None,
            paused: false,
            dir,
        };
        // A free port can be taken by someone else before redis binds it; try a few.
        let attempts = if options.port.is_some() { 1 } else { 5 };
        for attempt in 1..=attempts {
            if options.port.is_none() {
                server.port = free_port();
            }
            match server.spawn() {
                Ok(()) => return server,
                Err(e) if attempt == attempts => panic!("redis-server did not start: {e}"),
                Err(_) => continue,
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// The URL of this server: `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on (kept across [`stop`](Self::stop) / [`start_again`](Self::start_again)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (its log, and its data files when persistent).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id of the running server, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL: connections are closed by the kernel at once) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Starts the server again on the same port, after [`stop`](Self::stop).
    pub fn start_again(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!(
                "redis-server did not start again on port {}: {e}",
                self.port
            );
        }
    }

    /// Freezes the server with SIGSTOP: its sockets stay open but nothing answers, like a
    /// half-open connection or a hung host.
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    /// Thaws a server frozen by [`pause`](Self::pause) (SIGCONT).
    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }

    /// The server's log so far (all runs on this port, oldest first).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Runs `redis-cli -p <port> <args>` and returns its trimmed standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); {}", install_hint()));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn signal(&self, signal: &str) {
        let Some(pid) = self.pid() else {
            panic!("redis-server on port {} is not running", self.port)
        };
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        // The defaults first: extra arguments given later override them.
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    panic!("redis-server is not on PATH; {}", install_hint())
                }
                _ => format!("cannot spawn redis-server: {e}"),
            })?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "redis-server exited with {status} on port {}: {}",
                    self.port,
                    tail(&log)
                ));
            }
            if answers_ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no PONG on port {} within {READY_TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped (paused) process.
        self.stop();
    }
}

fn install_hint() -> &'static str {
    "run the project's test script, scripts/test (see the README): it installs redis-server \
     and redis-cli from Debian's packages when they are missing"
}

/// True when something on the port answers an inline `PING` with `+PONG` (or `-NOAUTH`, which
/// also proves a live server that wants a password).
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(n) => buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"),
        Err(_) => false,
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_adds_aof_arguments_after_the_defaults() {
        let o = RedisOptions::default().persistent();
        assert_eq!(o.args, ["--appendonly", "yes", "--appendfsync", "always"]);
    }

    #[test]
    fn free_port_is_never_the_system_redis_port() {
        for _ in 0..20 {
            assert_ne!(free_port(), SYSTEM_REDIS_PORT);
        }
    }
}
