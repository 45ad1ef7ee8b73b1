//! Real DAV servers from PyPI for the tests, each started by the test on a free port with
//! its own storage folder, answering HTTP before `start` returns, killed on drop:
//! - Radicale 3 with an htpasswd file: a CalDAV/CardDAV server that speaks only Basic.
//! - Xandikos: a CalDAV/CardDAV server (no authentication of its own).
//! - WsgiDAV with `accept_basic: false`: a plain WebDAV server that speaks only Digest
//!   (neither Radicale nor Xandikos offers Digest; WsgiDAV is the PyPI server that does).
//!
//! Each runs from a virtualenv under `<workspace>/target/` (`radicale-venv`, `xandikos-venv`,
//! `wsgidav-venv`, as scripts/test makes them), or the Python named by `RADICALE_PYTHON`,
//! `XANDIKOS_PYTHON`, `WSGIDAV_PYTHON`. A missing venv is created on first use (so the first
//! run needs PyPI), in a private directory moved into place with one atomic rename: parallel
//! test processes never see a half-installed venv.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a fresh server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
pub const USER: &str = "user";
pub const PASSWORD: &str = "correct horse";

/// One of the servers above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Radicale, Basic authentication against an htpasswd file.
    Radicale,
    /// Xandikos, with its default calendar and address book.
    Xandikos,
    /// WsgiDAV, Digest authentication only.
    WsgiDavDigest,
}

struct Venv {
    env: &'static str,
    dir: &'static str,
    requirements: &'static [&'static str],
    module: &'static str,
}

impl Flavour {
    fn venv(self) -> Venv {
        match self {
            Flavour::Radicale => Venv {
                env: "RADICALE_PYTHON",
                dir: "radicale-venv",
                requirements: &["radicale>=3,<4"],
                module: "radicale",
            },
            Flavour::Xandikos => Venv {
                env: "XANDIKOS_PYTHON",
                dir: "xandikos-venv",
                requirements: &["xandikos>=0.4,<1"],
                module: "xandikos",
            },
            Flavour::WsgiDavDigest => Venv {
                env: "WSGIDAV_PYTHON",
                dir: "wsgidav-venv",
                requirements: &["wsgidav>=4,<5", "cheroot>=10"],
                module: "wsgidav",
            },
        }
    }
}

#[derive(Debug)]
pub struct Server {
    pub flavour: Flavour,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    pub fn start(flavour: Flavour) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut server = Server {
            flavour,
            port: 0,
            dir,
            child: None,
        };
        // The port is free when picked but could be taken before the server binds it: retry.
        for _ in 0..3 {
            server.port = crate::free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("{flavour:?} did not start:\n{}", server.log());
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn root(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn spawn(&mut self) -> bool {
        let python = python(self.flavour);
        let storage = self.dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port = self.port.to_string();
        let mut command = Command::new(&python);
        match self.flavour {
            Flavour::Radicale => {
                let users = self.dir.path().join("users");
                std::fs::write(&users, format!("{USER}:{PASSWORD}\n")).unwrap();
                command
                    .args(["-m", "radicale", "--config", ""])
                    .args(["--server-hosts", &format!("127.0.0.1:{port}")])
                    .args([
                        "--auth-type",
                        "htpasswd",
                        "--auth-htpasswd-encryption",
                        "plain",
                    ])
                    .arg("--auth-htpasswd-filename")
                    .arg(&users)
                    .args(["--logging-level", "warning"])
                    .arg("--storage-filesystem-folder")
                    .arg(&storage);
            }
            Flavour::Xandikos => {
                command
                    .args([
                        "-m",
                        "xandikos",
                        "serve",
                        "--defaults",
                        "--no-detect-systemd",
                    ])
                    .args(["-l", "127.0.0.1", "-p", &port])
                    .arg("-d")
                    .arg(&storage)
                    .arg("--state-dir")
                    .arg(self.dir.path().join("state"));
            }
            Flavour::WsgiDavDigest => {
                let config = wsgidav_config(&storage, self.port);
                let path = self.dir.path().join("wsgidav.json");
                std::fs::write(&path, config).unwrap();
                command
                    .args(["-m", "wsgidav.server.server_cli", "-c"])
                    .arg(&path);
            }
        }
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        let mut child = command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting the server");
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

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// WsgiDAV's configuration: one share, Digest only, one user.
fn wsgidav_config(root: &Path, port: u16) -> String {
    let root = root
        .to_str()
        .expect("a UTF-8 temporary path")
        .replace('\\', "\\\\");
    format!(
        concat!(
            r#"{{"host": "127.0.0.1", "port": {port}, "verbose": 1,"#,
            r#" "provider_mapping": {{"/": "{root}"}},"#,
            r#" "http_authenticator": {{"accept_basic": false, "accept_digest": true, "default_to_digest": true}},"#,
            r#" "simple_dc": {{"user_mapping": {{"*": {{"{user}": {{"password": "{password}"}}}}}}}}}}"#
        ),
        port = port,
        root = root,
        user = USER,
        password = PASSWORD
    )
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

/// The Python for a flavour, found or installed once per process.
fn python(flavour: Flavour) -> PathBuf {
    static FOUND: Mutex<Option<HashMap<&'static str, PathBuf>>> = Mutex::new(None);
    let venv = flavour.venv();
    // Held while installing: other tests wanting the same venv wait instead of racing.
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    let map = found.get_or_insert_with(HashMap::new);
    if let Some(python) = map.get(venv.dir) {
        return python.clone();
    }
    let python = install(&venv);
    map.insert(venv.dir, python.clone());
    python
}

fn install(venv: &Venv) -> PathBuf {
    if let Some(python) = std::env::var_os(venv.env) {
        let python = PathBuf::from(python);
        assert!(
            imports(&python, venv.module),
            "{} has no {}",
            venv.env,
            venv.module
        );
        return python;
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let dir = target.join(venv.dir);
    let python = dir.join("bin/python");
    if imports(&python, venv.module) {
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
    if dir.exists() {
        // Broken (its base Python went away, say): move it aside atomically, then delete.
        let trash = target.join(format!("{}.broken-{unique}", venv.dir));
        if std::fs::rename(&dir, &trash).is_ok() {
            let _ = std::fs::remove_dir_all(&trash);
        }
    }
    let building = target.join(format!("{}.tmp-{unique}", venv.dir));
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
        .args(venv.requirements));
    // A venv can be moved as long as it is run as `bin/python -m ...`.
    if std::fs::rename(&building, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    assert!(
        imports(&python, venv.module),
        "{} is not importable from {python:?}",
        venv.module
    );
    python
}

fn imports(python: &Path, module: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {module}")])
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
