//! A real Radicale (CalDAV/CardDAV server) for the DAV tests, started by the test itself.
//!
//! Radicale is a Python package. The harness uses the Python named by `RADICALE_PYTHON`, else
//! `<workspace>/target/radicale-venv/bin/python`, and creates that virtualenv the first time
//! (`python3 -m venv` + `pip install radicale`, so the first run needs PyPI). Tests run in
//! parallel threads and maybe parallel processes (nextest), so the venv is built in a private
//! directory and moved into place with one atomic rename: whoever renames first wins, the
//! others throw their copy away, and nobody ever sees a half-installed venv.
//!
//! Each server gets a fresh storage folder and a free port, answers HTTP before `start`
//! returns, and is killed on drop. `stop` and `start_again` restart it on the same port and
//! folder, to test a server that goes away and comes back.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a fresh server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The Radicale major version the tests were written against.
const REQUIREMENT: &str = "radicale>=3,<4";

pub struct Radicale {
    python: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Radicale {
    /// Starts a server on a free port with empty storage. Panics (failing the test) when
    /// Radicale cannot be installed or started, with its log in the message.
    pub fn start() -> Radicale {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut server = Radicale {
            python: python().to_path_buf(),
            port: 0,
            dir,
            child: None,
        };
        // The port is free when picked but could be taken before Radicale binds it: retry.
        for _ in 0..3 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("Radicale did not start:\n{}", server.log());
    }

    /// Kills the server; its storage stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and storage folder.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        assert!(
            self.spawn(),
            "Radicale did not start again:\n{}",
            self.log()
        );
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A collection of the principal `user`, e.g. `{url}/user/calendar/`. Radicale (auth type
    /// `none`) creates the principal on the first request that carries Basic credentials.
    pub fn collection_url(&self, name: &str) -> String {
        format!("{}/user/{name}/", self.url())
    }

    /// What the server logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("radicale.log")).unwrap_or_default()
    }

    fn spawn(&mut self) -> bool {
        let storage = self.dir.path().join("collections");
        let log = std::fs::File::create(self.dir.path().join("radicale.log")).expect("log file");
        let mut child = Command::new(&self.python)
            .args(["-m", "radicale", "--config", ""])
            .args(["--server-hosts", &format!("127.0.0.1:{}", self.port)])
            .args(["--auth-type", "none", "--logging-level", "warning"])
            .arg("--storage-filesystem-folder")
            .arg(&storage)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting Radicale");
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_exited)) = child.try_wait() {
                return false;
            }
            if answers_http(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding port 0");
    listener.local_addr().expect("local address").port()
}

/// True when something on the port answers a GET with an HTTP status line.
fn answers_http(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    let mut head = [0u8; 5];
    stream.write_all(request).is_ok() && stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// The Python to run Radicale with, found or installed once per process.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(python) = std::env::var_os("RADICALE_PYTHON") {
            let python = PathBuf::from(python);
            assert!(has_radicale(&python), "RADICALE_PYTHON has no radicale");
            return python;
        }
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
        let venv = target.join("radicale-venv");
        let python = venv.join("bin/python");
        if has_radicale(&python) {
            return python;
        }
        std::fs::create_dir_all(&target).expect("creating target/");
        let unique = format!(
            "{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        if venv.exists() {
            // Broken (its base Python went away, say): move it aside atomically, then delete.
            let trash = target.join(format!("radicale-venv.broken-{unique}"));
            if std::fs::rename(&venv, &trash).is_ok() {
                let _ = std::fs::remove_dir_all(&trash);
            }
        }
        let building = target.join(format!("radicale-venv.tmp-{unique}"));
        let base = std::env::var("PYTHON3").unwrap_or_else(|_| "python3".into());
        run(Command::new(base).arg("-m").arg("venv").arg(&building));
        run(Command::new(building.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(REQUIREMENT));
        // A venv can be moved as long as it is run as `bin/python -m ...` (scripts in bin/
        // keep the old path in their #! line, and are not used).
        if std::fs::rename(&building, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&building);
        }
        assert!(
            has_radicale(&python),
            "radicale is not importable from {python:?}"
        );
        python
    })
}

fn has_radicale(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import radicale"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(command: &mut Command) {
    let out = command.output().expect("running an installer");
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
