//! One `GET {FOGIS_API_CLIENT_URL}/matches`, and what its answer means.
//!
//! The fogis-api-client service answers `200` with a JSON array of raw FOGIS match objects (the
//! objects the processor puts in `payload.matches`), or, in some versions, `{"matchlista": [...]}`;
//! and `500 {"error": "..."}` when FOGIS cannot be reached (PROTOCOL.md section 7). Everything
//! else is a failure of the source: it applies nothing.

use std::time::Duration;

use fogis_pubsub::{Message, Snapshot};
use serde_json::Value;

use crate::mask::mask_pii;

/// How much of an error text from the source goes to the debug log.
const REASON_LIMIT: usize = 200;

/// Why a pull gave no list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The source did not answer (down, refused, timed out) or answered an error status.
    #[error("{0}")]
    Unavailable(String),
    /// The source answered 200 with something that is no match list. The body is kept (up to
    /// the size limit) for the quarantine.
    #[error("{reason}")]
    Invalid { reason: String, body: Vec<u8> },
}

/// A configured source.
#[derive(Debug, Clone)]
pub struct Source {
    /// `{base}/matches`.
    pub matches_url: reqwest::Url,
    /// The base URL without credentials, query or path beyond the host, for display.
    pub shown: String,
    pub client: reqwest::Client,
    pub timeout: Duration,
    /// Largest answer read.
    pub max_bytes: usize,
}

impl Source {
    pub fn new(base: &str, timeout: Duration, max_bytes: usize) -> Result<Source, String> {
        let base = base.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(&format!("{base}/matches"))
            .map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("expected an http:// or https:// URL with a host".into());
        }
        let shown = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        // Like every outbound client: system roots and SSL_CERT_FILE, no redirects followed.
        let client = crate::outbound::client(timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Source {
            matches_url: url,
            shown,
            client,
            timeout,
            max_bytes,
        })
    }

    /// Fetches the list. The error texts hold no URL (it may carry credentials) and none of the
    /// source's words (those go to the debug log, masked and cut to [`REASON_LIMIT`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it drops the request; nothing is applied here.
    pub async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
        let unavailable = |e: reqwest::Error| {
            let what = if e.is_timeout() {
                format!("no answer within {} s", self.timeout.as_secs())
            } else if e.is_connect() {
                "cannot connect to the fogis-api-client service".to_string()
            } else {
                format!("request failed: {}", e.without_url())
            };
            FetchError::Unavailable(what)
        };
        let mut resp = self
            .client
            .get(self.matches_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unavailable)? {
            if body.len() + chunk.len() > self.max_bytes {
                let reason = format!(
                    "the answer is larger than MAX_BODY_BYTES ({} bytes)",
                    self.max_bytes
                );
                return Err(if status.is_success() {
                    FetchError::Invalid { reason, body }
                } else {
                    FetchError::Unavailable(format!("HTTP {}: {reason}", status.as_u16()))
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // The source's own words may quote what FOGIS said (a name, a number): only the
            // status code is kept and shown, the words go to the debug log, masked.
            let said = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(short));
            if let Some(error) = said {
                tracing::debug!(status = status.as_u16(), %error, "the fogis-api-client service's error text");
            }
            return Err(FetchError::Unavailable(format!(
                "HTTP {} from the fogis-api-client service (its text is logged at debug level)",
                status.as_u16()
            )));
        }
        Ok(body)
    }
}

/// The source's words, masked and cut short.
fn short(text: &str) -> String {
    let masked = mask_pii(text);
    match masked.char_indices().nth(REASON_LIMIT) {
        Some((i, _)) => format!("{}...", &masked[..i]),
        None => masked,
    }
}

/// The answer as a snapshot: a bare list, or `{"matchlista": [...]}`. `message_id` names this
/// pull (each pull is a new message: the same list pulled after a live list changed the state
/// must apply again).
pub fn parse(body: &[u8], message_id: String) -> Result<Snapshot, FetchError> {
    let invalid = |reason: String| FetchError::Invalid {
        reason,
        body: body.to_vec(),
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "the answer is not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let list = match value {
        Value::Array(items) => items,
        Value::Object(mut top) => match top.remove("matchlista") {
            Some(Value::Array(items)) => items,
            Some(_) => return Err(invalid("`matchlista` is not a list".into())),
            None => {
                return Err(invalid(
                    "a JSON object with no match list (expected a list or `matchlista`)".into(),
                ))
            }
        },
        other => {
            return Err(invalid(format!(
                "expected a list of matches, found {}",
                kind(&other)
            )))
        }
    };
    match fogis_pubsub::decode_value(Value::Array(list)) {
        Ok(Message::Matches(mut snapshot)) => {
            snapshot.meta.message_id = Some(message_id);
            snapshot.meta.source = Some("fogis-api-client".into());
            Ok(snapshot)
        }
        Ok(_) => Err(invalid("not a match list".into())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(id: i64) -> Value {
        serde_json::json!({"matchid": id, "tid": "/Date(1746549000000)/",
                           "lag1namn": "A", "lag2namn": "B"})
    }

    #[test]
    fn a_bare_list_and_a_wrapped_one_are_the_same_snapshot() {
        let bare = serde_json::to_vec(&vec![raw(1), raw(2)]).unwrap_or_default();
        let wrapped = serde_json::to_vec(&serde_json::json!({"matchlista": [raw(1), raw(2)]}))
            .unwrap_or_default();
        let a = parse(&bare, "pull-a".into()).ok();
        let b = parse(&wrapped, "pull-a".into()).ok();
        assert_eq!(a, b);
        let a = a.map(|s| s.matches.iter().map(|m| m.match_id).collect::<Vec<_>>());
        assert_eq!(a, Some(vec![1, 2]));
    }

    #[test]
    fn what_is_no_list_is_invalid_and_keeps_its_body() {
        for body in [
            &b"<html>oops</html>"[..],
            b"{\"error\": \"x\"}",
            b"{\"matchlista\": {}}",
            b"42",
            b"",
        ] {
            match parse(body, "p".into()) {
                Err(FetchError::Invalid { body: kept, .. }) => assert_eq!(kept, body),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn the_sources_words_are_masked_and_cut_short() {
        let long = format!("call 070-123 45 67 {}", "x".repeat(500));
        let s = short(&long);
        assert!(!s.contains("070-123 45 67"), "{s}");
        assert!(s.chars().count() <= REASON_LIMIT + 3);
    }

    #[test]
    fn only_http_urls_with_a_host_are_sources() {
        let t = Duration::from_secs(1);
        assert!(Source::new("ftp://x", t, 10).is_err());
        assert!(Source::new("not a url", t, 10).is_err());
        let s = Source::new("http://user:pw@api:8080/", t, 10).ok();
        assert_eq!(
            s.as_ref().map(|s| s.shown.as_str()),
            Some("http://api:8080")
        );
        assert_eq!(
            s.map(|s| s.matches_url.to_string()),
            Some("http://user:pw@api:8080/matches".into())
        );
    }
}
