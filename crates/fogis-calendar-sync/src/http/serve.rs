//! The HTTP listener, with the limits a service reachable from a network needs.
//!
//! `axum::serve` sets no timer, so hyper's header-read timeout never fires there and a
//! slow-loris client (headers trickled a byte at a time, or a kept-alive connection left idle)
//! holds a connection forever. This accept loop serves HTTP/1.1 with:
//! - a header-read timeout (also closes idle keep-alive connections: the timer runs while the
//!   next request's head is awaited);
//! - a whole-request timeout (a body trickled slowly is cut off with 408);
//! - a cap on open connections (beyond it new connections are closed at once, so the ones
//!   being served keep their share of the machine).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Limits of the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time a client has to send a request's headers (and to start the next request on a
    /// kept-alive connection).
    pub header_timeout: Duration,
    /// Time a whole request may take, body included.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl HttpLimits {
    /// The limits `serve` was configured with.
    pub fn of(opts: &crate::config::ServeOpts) -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(opts.http_header_timeout_seconds),
            request_timeout: Duration::from_secs(opts.http_request_timeout_seconds),
            max_connections: opts.http_max_connections,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// Adds the whole-request timeout to `app`.
pub fn with_request_timeout(app: Router, timeout: Duration) -> Router {
    app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(resp) => resp,
                Err(_) => timeout_response(),
            }
        },
    ))
}

fn timeout_response() -> Response {
    (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({"success": false, "error": "request took too long"})),
    )
        .into_response()
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests finish (10 s at most).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: HttpLimits,
) -> std::io::Result<()> {
    let app = with_request_timeout(app, limits.request_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    loop {
        // Cancel safety: `accept` is cancel safe (a connection not yet returned stays queued
        // in the kernel), and `cancelled` only waits.
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!("connection limit reached: closing a new connection");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        let header_timeout = limits.header_timeout;
        tracker.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
                }
            }
            drop(permit);
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await;
    Ok(())
}
