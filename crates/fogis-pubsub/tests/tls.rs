//! `rediss://` end to end: a redis-server with TLS and a throwaway CA. Alone in its test binary
//! because it points the process' trust store (`SSL_CERT_FILE`) at that CA.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use fogis_pubsub::drive;
use test_support::{free_port, RedisServer};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=fogis test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_password_connects_and_round_trips() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: the openssl command is needed to make test certificates");
        return;
    }
    let certs = tempfile::tempdir().expect("tempdir");
    certificates(certs.path());
    // rustls-native-certs (used by the redis crate) reads the trust store from here.
    std::env::set_var("SSL_CERT_FILE", certs.path().join("ca.pem"));

    let tls_port = free_port();
    let file = |name: &str| certs.path().join(name).to_string_lossy().into_owned();
    let redis = RedisServer::options()
        .arg("--tls-port")
        .arg(tls_port.to_string())
        .arg("--tls-cert-file")
        .arg(file("server.pem"))
        .arg("--tls-key-file")
        .arg(file("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(file("ca.pem"))
        .arg("--tls-auth-clients")
        .arg("no")
        .arg("--requirepass")
        .arg("tls-s3cret")
        .start();

    let url = format!("rediss://:tls-s3cret@127.0.0.1:{tls_port}");
    let recorder = Recorder::new();
    let handle = drive(config_for(&url), recorder.clone());
    connected(&handle, Duration::from_secs(10)).await;
    let rtt = handle.probe().await.expect("probe over TLS");
    assert!(rtt < Duration::from_secs(3));

    let publisher = fogis_pubsub::Publisher::new(url.parse().expect("url"));
    publisher
        .publish("fogis_matches", fixture("seed_flat.json"))
        .await
        .expect("published over TLS");
    eventually("the update", Duration::from_secs(10), || {
        recorder.update_count() == 1
    })
    .await;
    assert_eq!(
        format!("{}", handle.config().redis_url),
        format!("rediss://:***@127.0.0.1:{tls_port}")
    );
    drop(redis);
}
