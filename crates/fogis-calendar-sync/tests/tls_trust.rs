//! Outbound https trusts a private CA named by `SSL_CERT_FILE` or `SSL_CERT_DIR`: the binary's
//! `healthcheck` (its client comes from `outbound::client`, like every sink's: see
//! `outbound::tests::no_client_is_built_elsewhere`) against `openssl s_server` with a
//! certificate of a throwaway CA.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let args = |s: String| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let run = |s: String| {
        let a = args(s);
        openssl(dir, &a.iter().map(String::as_str).collect::<Vec<_>>());
    };
    run(format!(
        "req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=fogis-test-CA"
    ));
    run(format!(
        "req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1"
    ));
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run("x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext".into());
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn https_clients_trust_a_private_ca_from_ssl_cert_file_or_ssl_cert_dir() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: the openssl command is needed (scripts/test installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(dir.path().join("ca.pem"), certs.join("ca.pem")).unwrap();
    openssl(dir.path(), &["rehash", "certs"]);

    let port = test_support::free_port();
    let _server = Reaped(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(port.to_string())
            .args(["-cert", "server.pem", "-key", "server.key"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s_server never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("https://127.0.0.1:{port}");
    let check = |env: &[(&str, &Path)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fogis-calendar-sync"));
        c.env_clear().args(["healthcheck", "--url", &url]);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(
        check(&[]),
        Some(1),
        "a private CA is trusted without being named"
    );
    assert_eq!(
        check(&[("SSL_CERT_FILE", &dir.path().join("ca.pem"))]),
        Some(0)
    );
    assert_eq!(check(&[("SSL_CERT_DIR", &certs)]), Some(0));
}
