//! The forward sink: after each applied snapshot that changed something, POST
//! `{"matches": [...raw matches...], "metadata": {...}}` to `FORWARD_URL` (for example an
//! existing calendar service's `/manual-sync`), retrying with backoff until it answers 2xx.
//! Only the latest waiting list is kept: every list is whole, so a target that was down gets
//! the final one, not every step.

use std::time::Duration;

use fogis_pubsub::Snapshot;
use serde_json::{json, Value};

use crate::config::Secret;
use crate::outbox::OutboxItem;
use crate::sinks::dav::DavError;
use crate::sinks::SinkError;

/// Posts lists to one URL.
#[derive(Debug)]
pub struct ForwardSink {
    http: reqwest::Client,
    url: String,
    token: Option<Secret>,
}

/// The body forwarded for a snapshot.
pub fn payload(snapshot: &Snapshot) -> Value {
    let mut metadata = match &snapshot.metadata {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    metadata.insert("forwarded_by".into(), json!("fogis-calendar-sync"));
    if let Some(id) = &snapshot.meta.message_id {
        metadata.insert("message_id".into(), json!(id));
    }
    if let Some(t) = snapshot.meta.timestamp {
        metadata.insert("timestamp".into(), json!(t));
    }
    let matches: Vec<&Value> = snapshot.matches.iter().map(|m| &m.raw).collect();
    json!({"matches": matches, "metadata": metadata})
}

impl ForwardSink {
    pub fn new(url: &str, token: Option<Secret>, timeout: Duration) -> Result<Self, DavError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| DavError::Protocol(format!("invalid FORWARD_URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(DavError::Protocol("FORWARD_URL must be http(s)".into()));
        }
        let http = crate::outbound::client(timeout)
            .build()
            .map_err(|e| DavError::Transport(e.to_string()))?;
        Ok(ForwardSink {
            http,
            url: url.to_string(),
            token,
        })
    }

    pub fn target(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(mut u) => {
                let _ = u.set_password(None);
                let _ = u.set_username("");
                u.set_query(None);
                u.to_string()
            }
            Err(_) => "(invalid URL)".into(),
        }
    }

    pub async fn process(&self, item: &OutboxItem) -> Result<(), SinkError> {
        let Some(body) = &item.payload else {
            return Ok(());
        };
        let mut req = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                DavError::Timeout
            } else {
                DavError::Transport(e.without_url().to_string())
            }
        })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(());
        }
        // Never re-posted to another origin: a redirect is an error naming where it pointed.
        if let Some(redirected) = crate::outbound::redirect_error(status, resp.headers()) {
            return Err(SinkError::Remote(format!("forward target {redirected}")));
        }
        // 5xx, 429 and refusals alike are retried with backoff. The remote's body may quote
        // the list it refused: only at debug level, masked; the status says what happened.
        let text = resp.text().await.unwrap_or_default();
        let excerpt: String = text
            .chars()
            .take(200)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        tracing::debug!(status, excerpt = %crate::mask::mask_pii(&excerpt), "forward target's answer");
        Err(match status {
            401 | 403 => DavError::Unauthorized { status }.into(),
            _ => SinkError::Remote(format!("forward target answered {status}")),
        })
    }
}
