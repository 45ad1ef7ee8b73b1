//! The forward sink: after each applied list that changed something, POST
//! `{"matches": [...raw matches...], "metadata": {...}}` to `FORWARD_URL` (for example an
//! existing calendar service's `/manual-sync`), retrying with backoff until it answers 2xx.
//! What it needs is the list itself, which the state keeps (the last list that changed it,
//! [`crate::engine::LAST_LIST`]); its ledger remembers the hash of the body last taken. Every
//! list is whole, so a target that was down gets the final one, not every step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fogis_pubsub::Snapshot;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::engine::view::StateView;
use crate::sinks::dav::DavError;
use crate::sinks::plan::{self, Known, Step};
use crate::sinks::{Planned, SinkContext, SinkError, FORWARD, SNAPSHOT_KEY};
use crate::store::ledger::SinkItem;

/// Posts lists to one URL.
#[derive(Debug)]
pub struct ForwardSink {
    http: reqwest::Client,
    url: String,
    token: Option<Secret>,
}

/// The body forwarded for a snapshot.
pub fn payload(snapshot: &Snapshot) -> Value {
    payload_of_list(&crate::engine::last_list(snapshot))
}

/// The body forwarded for a list as the state keeps it ([`crate::engine::last_list`]).
pub fn payload_of_list(list: &Value) -> Value {
    let mut metadata = match &list["metadata"] {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    metadata.insert("forwarded_by".into(), json!("fogis-calendar-sync"));
    if let Some(id) = list["message_id"].as_str() {
        metadata.insert("message_id".into(), json!(id));
    }
    if !list["timestamp"].is_null() {
        metadata.insert("timestamp".into(), list["timestamp"].clone());
    }
    let matches = match &list["matches"] {
        Value::Array(m) => Value::Array(m.clone()),
        _ => json!([]),
    };
    json!({"matches": matches, "metadata": metadata})
}

/// The body to forward, if any, and its hash.
#[derive(Debug)]
pub struct Work {
    body: Option<(String, String)>,
    known: Option<SinkItem>,
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

    /// Plans a pass: the last list, unless the ledger says it was taken.
    pub async fn plan(
        &self,
        ctx: &SinkContext,
        view: &StateView,
        waiting: &BTreeSet<String>,
    ) -> Result<Planned<Work>, SinkError> {
        let has_list = view.has_list();
        let (list, known) = ctx
            .ledger(move |s| {
                let list = if has_list {
                    s.get_meta(crate::engine::LAST_LIST)?
                } else {
                    None
                };
                Ok((list, s.sink_item(FORWARD, SNAPSHOT_KEY)?))
            })
            .await?;
        let body = list
            .and_then(|l| serde_json::from_str::<Value>(&l).ok())
            .map(|l| {
                let body = payload_of_list(&l).to_string();
                let hash = hex::encode(Sha256::digest(body.as_bytes()));
                (body, hash)
            });
        let wanted: BTreeMap<String, String> = body
            .iter()
            .map(|(_, h)| (SNAPSHOT_KEY.to_string(), h.clone()))
            .collect();
        let ledger: BTreeMap<String, Known> = known
            .iter()
            .map(|k| {
                let known = Known {
                    hash: k.hash.clone(),
                    owned: true,
                };
                (k.key.clone(), known)
            })
            .collect();
        // Nothing is ever deleted: a list, once taken, is the target's.
        let plan = plan::plan(
            &wanted,
            &BTreeSet::new(),
            &ledger,
            has_list,
            waiting,
            |w, k| *w == k.hash,
        );
        Ok(Planned {
            plan,
            work: Work { body, known },
        })
    }

    /// Executes one step of [`ForwardSink::plan`].
    pub async fn execute(
        &self,
        ctx: &SinkContext,
        work: &Work,
        step: &Step,
    ) -> Result<(), SinkError> {
        let (Step::Put(_), Some((body, hash))) = (step, &work.body) else {
            return Ok(());
        };
        self.post(body).await?;
        let record = SinkItem {
            key: SNAPSHOT_KEY.into(),
            remote_name: self.target(),
            etag: None,
            hash: hash.clone(),
        };
        if work.known.as_ref() != Some(&record) {
            ctx.record(FORWARD, record).await?;
        }
        Ok(())
    }

    async fn post(&self, body: &str) -> Result<(), SinkError> {
        let mut req = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
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
