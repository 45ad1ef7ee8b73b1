//! Hostile clients: slow headers, slow bodies, too many connections. The service keeps
//! answering everyone else and cuts the offenders off.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn limited() -> Service {
    Service::start_with(|o| {
        o.http_header_timeout_seconds = 2;
        o.http_request_timeout_seconds = 3;
        o.http_max_connections = 40;
    })
    .await
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut buf)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&buf).to_string()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_cut_off_while_others_are_served() {
    let svc = limited().await;
    let addr = svc.base.trim_start_matches("http://").to_string();
    // 30 clients that trickle their headers and never finish them.
    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..4 {
            for s in slow.iter_mut() {
                let _ = s.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        slow
    });
    // Everyone else is served meanwhile.
    for _ in 0..5 {
        let h = svc.get_json("/health").await;
        assert_eq!(h["status"], "ok");
    }
    let mut slow = trickle.await.unwrap();
    // And the slow ones are closed by the server (header timeout 2 s), not left hanging.
    for s in slow.iter_mut() {
        let answer = read_until_closed(s, Duration::from_secs(10)).await;
        assert!(answer.is_some(), "a slow-loris connection was never closed");
    }
    let h = svc.get_json("/health").await;
    assert_eq!(h["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408_and_changes_nothing() {
    let svc = limited().await;
    let addr = svc.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"matches\": [")
        .await
        .unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(15))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(svc.get_json("/matches").await["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once_and_idle_ones_expire() {
    let svc = limited().await;
    let addr = svc.base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Give the server a moment to take them all (accept is asynchronous).
    let start = Instant::now();
    let mut over = loop {
        let mut extra = TcpStream::connect(&addr).await.unwrap();
        let _ = extra
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let answer = read_until_closed(&mut extra, Duration::from_secs(5)).await;
        if answer.as_deref() == Some("") {
            break extra;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the 41st connection was served: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = over.shutdown().await;
    // The idle ones expire after the header timeout, and the service answers again.
    for s in idle.iter_mut() {
        assert!(read_until_closed(s, Duration::from_secs(10))
            .await
            .is_some());
    }
    drop(idle);
    common::eventually(
        "served again",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            match svc.http.get(svc.url("/health")).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(r.status().to_string()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
}
