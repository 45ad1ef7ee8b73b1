//! Every outbound HTTP client (CalDAV, CardDAV, forward, Google, the CLI's calls to a running
//! service) is built here, so that all of them:
//! - trust the system's roots and `SSL_CERT_FILE` / `SSL_CERT_DIR` (reqwest's
//!   `rustls-tls-native-roots`, through `rustls-native-certs`) besides the compiled-in ones: a
//!   Nextcloud or Xandikos behind a private CA or a self-signed certificate can be used;
//! - follow no redirect: a 3xx is an answer, turned into an error naming the location
//!   ([`redirect_error`]), so credentials and lists never go to an origin nobody configured;
//! - say who they are (`User-Agent`).
//!
//! [`warn_plain_http`] warns at start about credentials sent in clear to another machine.

use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION};

/// A client builder with the policy above and `timeout` for connecting and for each request.
pub fn client(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fogis-calendar-sync/", env!("CARGO_PKG_VERSION")))
}

/// `Some("redirected (301) to https://...: not followed")` for a 3xx answer.
pub fn redirect_error(status: u16, headers: &HeaderMap) -> Option<String> {
    if !(300..400).contains(&status) {
        return None;
    }
    let location = headers
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(|l| l.chars().take(200).filter(|c| !c.is_control()).collect())
        .unwrap_or_else(|| "no location".to_string());
    Some(format!("redirected ({status}) to {location}: not followed"))
}

/// Warns when `url` is plain `http://` to a host other than this machine and carries
/// credentials (a password or a token): anyone on the path reads them.
pub fn warn_plain_http(var: &str, url: &str, credentials: bool) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let credentials = credentials || parsed.password().is_some();
    let host = parsed.host_str().unwrap_or("").trim_matches(['[', ']']);
    let loopback = host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let risky = parsed.scheme() == "http" && credentials && !loopback;
    if risky {
        tracing::warn!(
            variable = var,
            host = parsed.host_str().unwrap_or(""),
            "credentials go over plain http:// to another machine: anyone on the way can read them; use https://"
        );
    }
    risky
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plain_http_with_credentials_to_another_machine_is_flagged() {
        assert!(warn_plain_http(
            "CALDAV_URL",
            "http://dav.example.org/c/",
            true
        ));
        assert!(warn_plain_http(
            "CALDAV_URL",
            "http://u:p@192.168.1.5/c/",
            false
        ));
        assert!(!warn_plain_http(
            "CALDAV_URL",
            "https://dav.example.org/c/",
            true
        ));
        assert!(!warn_plain_http(
            "CALDAV_URL",
            "http://127.0.0.1:5232/c/",
            true
        ));
        assert!(!warn_plain_http(
            "CALDAV_URL",
            "http://localhost:5232/c/",
            true
        ));
        assert!(!warn_plain_http("CALDAV_URL", "http://[::1]:5232/c/", true));
        assert!(!warn_plain_http(
            "FORWARD_URL",
            "http://other:5003/sync",
            false
        ));
    }

    #[tokio::test]
    async fn redirects_are_answers_not_followed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let elsewhere = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { "elsewhere" }
        });
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_url = format!("http://{}/stolen", other.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(other, elsewhere).await });
        let to = other_url.clone();
        let redirecting = axum::Router::new().fallback(move || {
            let to = to.clone();
            async move {
                (
                    axum::http::StatusCode::TEMPORARY_REDIRECT,
                    [(axum::http::header::LOCATION, to)],
                )
            }
        });
        let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sync", first.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(first, redirecting).await });

        let http = client(Duration::from_secs(5)).build().unwrap();
        let resp = http.post(&url).body("a list").send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 307);
        assert_eq!(
            redirect_error(307, resp.headers()).unwrap(),
            format!("redirected (307) to {other_url}: not followed")
        );
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
        assert_eq!(redirect_error(200, resp.headers()), None);
    }

    /// Every client of the crate comes from [`client`]: no other builder in the sources.
    #[test]
    fn no_client_is_built_elsewhere() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![src];
        let mut offenders = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("outbound.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if text.contains("reqwest::Client::builder()")
                        || text.contains("reqwest::Client::new()")
                        || text.contains("ClientBuilder::new()")
                    {
                        offenders.push(path.display().to_string());
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "clients built outside outbound.rs: {offenders:?}"
        );
    }
}
