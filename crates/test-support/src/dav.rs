//! Real DAV servers from PyPI for the tests, each started by the test on a free port with
//! its own storage folder, answering HTTP before `start` returns, killed on drop:
//! - Radicale 3 with an htpasswd file: a CalDAV/CardDAV server that speaks only Basic.
//! - Xandikos: a CalDAV/CardDAV server (no authentication of its own).
//! - WsgiDAV with `accept_basic: false`: a plain WebDAV server that speaks only Digest
//!   (neither Radicale nor Xandikos offers Digest; WsgiDAV is the PyPI server that does).
//! - Xandikos behind lighttpd (Debian's package), which asks for Digest only (`mod_auth` with
//!   the `plain` backend, `method => "digest"`) and passes what it lets through on to Xandikos
//!   (`mod_proxy`): a CalDAV/CardDAV server that speaks only Digest, as Baïkal does by default.
//!   lighttpd is found as `LIGHTTPD`, on the `PATH` or as `/usr/sbin/lighttpd`; scripts/test
//!   installs it.
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
    /// Xandikos behind lighttpd, Digest authentication only.
    XandikosDigest,
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
            Flavour::Xandikos | Flavour::XandikosDigest => Venv {
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
    /// lighttpd, for [`Flavour::XandikosDigest`] (`child` is Xandikos then).
    front: Option<Child>,
}

impl Server {
    pub fn start(flavour: Flavour) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut server = Server {
            flavour,
            port: 0,
            dir,
            child: None,
            front: None,
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
        ["server.log", "lighttpd.out", "lighttpd.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.path().join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self) -> bool {
        if self.flavour != Flavour::XandikosDigest {
            return self.spawn_server(self.port);
        }
        let lighttpd = lighttpd();
        let back = crate::free_port();
        if !self.spawn_server(back) {
            return false;
        }
        let users = self.dir.path().join("digest-users");
        std::fs::write(&users, format!("{USER}:{PASSWORD}\n")).unwrap();
        let path = |p: &Path| p.to_str().expect("a UTF-8 temporary path").to_owned();
        let config = format!(
            concat!(
                "server.port = {port}\n",
                "server.bind = \"127.0.0.1\"\n",
                "server.document-root = \"{dir}\"\n",
                "server.upload-dirs = (\"{dir}\")\n",
                "server.errorlog = \"{dir}/lighttpd.log\"\n",
                "server.modules = (\"mod_auth\", \"mod_authn_file\", \"mod_proxy\")\n",
                "auth.backend = \"plain\"\n",
                "auth.backend.plain.userfile = \"{users}\"\n",
                "auth.require = (\"\" => (\"method\" => \"digest\", \"realm\" => \"fogis-test\", ",
                "\"require\" => \"valid-user\"))\n",
                "proxy.server = (\"\" => ((\"host\" => \"127.0.0.1\", \"port\" => {back})))\n",
            ),
            port = self.port,
            dir = path(self.dir.path()),
            users = path(&users),
            back = back,
        );
        let conf = self.dir.path().join("lighttpd.conf");
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(self.dir.path().join("lighttpd.out")).expect("log file");
        let mut front = Command::new(lighttpd)
            .arg("-D")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting lighttpd");
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_exited)) = front.try_wait() {
                break;
            }
            if answers_http(self.port) {
                self.front = Some(front);
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = front.kill();
        let _ = front.wait();
        self.stop_server();
        false
    }

    fn stop_server(&mut self) {
        for mut child in [self.front.take(), self.child.take()].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server itself (Xandikos, for [`Flavour::XandikosDigest`]) on `port`.
    fn spawn_server(&mut self, port: u16) -> bool {
        let python = python(self.flavour);
        let storage = self.dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port_number = port;
        let port = port.to_string();
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
            Flavour::Xandikos | Flavour::XandikosDigest => {
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
                let config = wsgidav_config(&storage, port_number);
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
            if answers_http(port_number) {
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
        self.stop_server();
    }
}

/// lighttpd: `LIGHTTPD`, else on the `PATH`, else Debian's `/usr/sbin/lighttpd`.
fn lighttpd() -> PathBuf {
    if let Some(path) = std::env::var_os("LIGHTTPD") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("lighttpd"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/lighttpd")])
        .find(|p| p.is_file())
        .expect("lighttpd is needed for the Digest server: scripts/test installs it (apt-get install lighttpd)")
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
