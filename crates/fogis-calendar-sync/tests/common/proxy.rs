//! A reverse proxy in front of a DAV server that records every request (method, path, `Depth`
//! header), so that a test can count what a sink asked for. It passes every header both ways,
//! `Authorization` and `WWW-Authenticate` included, so Basic and Digest work through it.

use std::sync::{Arc, Mutex};

/// One request the proxy passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub depth: Option<String>,
}

impl Seen {
    /// A request that lists the collection's members or reads items in bulk: a PROPFIND
    /// with `Depth: 1` or a REPORT.
    #[allow(dead_code)] // not every test binary that includes this file asks
    pub fn is_listing(&self) -> bool {
        self.method == "REPORT" || (self.method == "PROPFIND" && self.depth.as_deref() == Some("1"))
    }
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

/// Starts the proxy for `target` (`http://host:port`, no trailing `/`); returns its base URL.
#[allow(clippy::unwrap_used)]
pub async fn recording_proxy(target: String) -> (String, Log) {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;
    let seen: Log = Arc::default();
    let http = reqwest::Client::new();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (http, log, target) = (http.clone(), log.clone(), target.clone());
        async move {
            let (parts, body) = req.into_parts();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            log.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                path: path.to_string(),
                depth: parts
                    .headers
                    .get("depth")
                    .and_then(|d| d.to_str().ok())
                    .map(str::to_owned),
            });
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let mut out = http.request(parts.method.clone(), format!("{target}{path}"));
            for (name, value) in &parts.headers {
                if name != "host" && name != "transfer-encoding" {
                    out = out.header(name, value);
                }
            }
            let resp = out.body(body).send().await.unwrap();
            let mut answer = Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                if name != "transfer-encoding" && name != "content-length" {
                    answer = answer.header(name, value);
                }
            }
            answer
                .body(Body::from(resp.bytes().await.unwrap()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}
