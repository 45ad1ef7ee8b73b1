//! Publishing in the processor's format: for the CLI, tests, benches and the subscriber's own
//! round-trip probe.
//!
//! [`Publisher`] keeps one multiplexed connection, made on first use and made again after it
//! breaks, so a publisher created while Redis is down works once Redis is back. [`stamp`] gives a
//! message the identity the subscriber side deduplicates on.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fogis_pubsub::publisher::{stamp_fresh, Publisher};
//!
//! let publisher = Publisher::new("redis://127.0.0.1:6379".parse()?);
//! let mut message = serde_json::json!({"matches": [], "metadata": {"has_changes": true}});
//! let message_id = stamp_fresh(&mut message)?;
//! let receivers = publisher.publish("fogis_matches", serde_json::to_vec(&message)?).await?;
//! println!("{message_id} reached {receivers} subscribers");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::RedisUrl;
use crate::error::{PublishError, StampError};

/// How long connecting, or one `PUBLISH`, may take by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes raw payloads on Redis channels.
pub struct Publisher {
    url: RedisUrl,
    timeout: Duration,
    // A tokio mutex: connecting happens while it is held, so concurrent first publishes share one
    // connection instead of racing to make several.
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher for this Redis. Does not connect yet.
    pub fn new(url: RedisUrl) -> Self {
        Publisher {
            url,
            timeout: DEFAULT_TIMEOUT,
            connection: Mutex::new(None),
        }
    }

    /// Sets how long connecting, or one `PUBLISH`, may take (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Publishes `payload` on `channel` and returns how many subscribers received it.
    ///
    /// A cached connection that turns out to be broken is replaced and the publish tried once
    /// more; a timeout is not retried (the message may have gone out).
    pub async fn publish(
        &self,
        channel: &str,
        payload: impl AsRef<[u8]>,
    ) -> Result<usize, PublishError> {
        let payload = payload.as_ref();
        let (mut conn, fresh) = self.connection().await?;
        match self.publish_on(&mut conn, channel, payload).await {
            Err(Retry::Broken(_)) if !fresh => {
                self.forget().await;
                let (mut conn, _) = self.connection().await?;
                self.publish_on(&mut conn, channel, payload)
                    .await
                    .map_err(|e| e.into_error())
            }
            other => other.map_err(|e| e.into_error()),
        }
    }

    async fn publish_on(
        &self,
        conn: &mut MultiplexedConnection,
        channel: &str,
        payload: &[u8],
    ) -> Result<usize, Retry> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        let publish = cmd.query_async::<usize>(conn);
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Ok(receivers)) => Ok(receivers),
            Ok(Err(e)) => {
                let broken = e.is_connection_dropped() || e.is_io_error() || e.is_timeout();
                let error = PublishError::Redis(self.url.scrub(&e.to_string()));
                if broken {
                    self.forget().await;
                    Err(Retry::Broken(error))
                } else {
                    Err(Retry::Final(error))
                }
            }
            Err(_) => {
                self.forget().await;
                Err(Retry::Final(PublishError::Timeout(self.timeout)))
            }
        }
    }

    /// The cached connection, or a new one; `true` when it is new.
    async fn connection(&self) -> Result<(MultiplexedConnection, bool), PublishError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok((conn.clone(), false));
        }
        let client = self
            .url
            .client()
            .map_err(|e| PublishError::Redis(self.url.scrub(&e.to_string())))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        // The outer timeout also bounds DNS and TLS, whatever the client does internally.
        let conn = tokio::time::timeout(
            self.timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| PublishError::Timeout(self.timeout))?
        .map_err(|e| PublishError::Redis(self.url.scrub(&e.to_string())))?;
        *slot = Some(conn.clone());
        Ok((conn, true))
    }

    async fn forget(&self) {
        *self.connection.lock().await = None;
    }
}

enum Retry {
    /// The connection broke: worth one more try on a fresh connection.
    Broken(PublishError),
    Final(PublishError),
}

impl Retry {
    fn into_error(self) -> PublishError {
        match self {
            Retry::Broken(e) | Retry::Final(e) => e,
        }
    }
}

/// Formats a timestamp the way the processor does: RFC 3339, UTC, microseconds, `Z`
/// (`2025-05-05T06:30:00.123456Z`).
pub fn format_timestamp(timestamp: DateTime<Utc>) -> String {
    timestamp.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Sets `message_id` and `timestamp` on a message. Envelope forms carry them at the top level;
/// the flat form (`{"matches": [...], "metadata": {...}}`, no envelope) inside `metadata`, which
/// is created when missing.
pub fn stamp(
    value: &mut Value,
    message_id: &str,
    timestamp: DateTime<Utc>,
) -> Result<(), StampError> {
    let Value::Object(top) = value else {
        return Err(StampError::NotAnObject(kind(value)));
    };
    let flat = top.contains_key("matches")
        && !top.contains_key("payload")
        && !top.contains_key("message_id");
    let target = if flat {
        let metadata = top
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if metadata.is_null() {
            *metadata = Value::Object(Default::default());
        }
        match metadata {
            Value::Object(m) => m,
            other => return Err(StampError::MetadataNotAnObject(kind(other))),
        }
    } else {
        top
    };
    target.insert("message_id".into(), Value::String(message_id.to_string()));
    target.insert(
        "timestamp".into(),
        Value::String(format_timestamp(timestamp)),
    );
    Ok(())
}

/// [`stamp`] with a fresh UUID v4 and the current time; returns the new `message_id`.
pub fn stamp_fresh(value: &mut Value) -> Result<String, StampError> {
    let message_id = uuid::Uuid::new_v4().to_string();
    stamp(value, &message_id, Utc::now())?;
    Ok(message_id)
}

fn kind(value: &Value) -> &'static str {
    match value {
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
    use chrono::TimeZone;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        Utc.timestamp_opt(1_746_426_600, 123_456_000)
            .single()
            .expect("valid")
    }

    #[test]
    fn envelope_is_stamped_at_the_top() {
        let mut v =
            json!({"message_id": "old", "type": "match_updates", "payload": {"matches": []}});
        stamp(&mut v, "new", at()).expect("object");
        assert_eq!(v["message_id"], "new");
        assert_eq!(v["timestamp"], "2025-05-05T06:30:00.123456Z");
        let decoded = crate::decode(v.to_string().as_bytes()).expect("decodes");
        assert_eq!(decoded.meta().message_id.as_deref(), Some("new"));
    }

    #[test]
    fn flat_form_is_stamped_in_metadata() {
        let mut v = json!({"matches": [], "metadata": {"has_changes": true}});
        stamp(&mut v, "m-1", at()).expect("object");
        assert!(v.get("message_id").is_none());
        assert_eq!(v["metadata"]["message_id"], "m-1");
        assert_eq!(v["metadata"]["has_changes"], true);
        let decoded = crate::decode(v.to_string().as_bytes()).expect("decodes");
        assert_eq!(decoded.meta().message_id.as_deref(), Some("m-1"));

        let mut bare = json!({"matches": []});
        stamp(&mut bare, "m-2", at()).expect("object");
        assert_eq!(bare["metadata"]["message_id"], "m-2");
    }

    #[test]
    fn fresh_ids_differ_and_non_objects_are_refused() {
        let mut a = json!({"payload": {"matches": []}});
        let mut b = a.clone();
        assert_ne!(stamp_fresh(&mut a).ok(), stamp_fresh(&mut b).ok());
        assert_eq!(
            stamp(&mut json!([1]), "x", at()),
            Err(StampError::NotAnObject("a list"))
        );
        assert_eq!(
            stamp(&mut json!({"matches": [], "metadata": 3}), "x", at()),
            Err(StampError::MetadataNotAnObject("a number"))
        );
    }
}
