//! Publishing in the processor's format: for the CLI, tests, benches, a Rust match-list-processor
//! and the subscriber's own round-trip probe.
//!
//! [`Publisher`] keeps one multiplexed connection, made on first use and made again after it
//! breaks, so a publisher created while Redis is down works once Redis is back. [`stamp`] gives a
//! message the identity the subscriber side deduplicates on.
//!
//! Two ways to publish:
//!
//! - [`Publisher::publish`]: a bare `PUBLISH`. Whoever is not subscribed right now never sees it.
//! - [`Publisher::publish_snapshot`]: the durable way, for match snapshots. One `MULTI`/`EXEC`
//!   transaction runs, in this order:
//!   1. `SET <latest_key> <payload>`: what a subscriber reads back after a reconnect;
//!   2. `XADD <stream> MAXLEN ~ <max_len> * payload <payload> [message_id <id>]`: the durable
//!      log a consumer group reads at least once;
//!   3. `PUBLISH <channel> <payload>`: the live notification, last.
//!
//!   Because the transaction is atomic, a subscriber that receives the message and a subscriber
//!   that reads the key afterwards see the same snapshot or a newer one; never is the key older
//!   than a message already delivered.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fogis_pubsub::publisher::{stamp_fresh, PublishTargets, Publisher};
//!
//! let publisher = Publisher::new("redis://127.0.0.1:6379".parse()?);
//! let mut message = serde_json::json!({"matches": [], "metadata": {"has_changes": true}});
//! let message_id = stamp_fresh(&mut message)?;
//! let receivers = publisher.publish("fogis_matches", serde_json::to_vec(&message)?).await?;
//! println!("{message_id} reached {receivers} subscribers");
//!
//! let report = publisher
//!     .publish_snapshot(&serde_json::to_vec(&message)?, &PublishTargets::default())
//!     .await?;
//! println!("stream entry {:?}, {} live receivers", report.stream_id, report.receivers);
//! # Ok(())
//! # }
//! ```

mod stamp;

use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError};
use tokio::sync::Mutex;

use crate::config::{RedisUrl, DEFAULT_LATEST_KEY, DEFAULT_STREAM_KEY};
use crate::error::PublishError;

pub use stamp::{format_timestamp, stamp, stamp_fresh};

/// How long connecting, or one command, may take by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel the match-list-processor publishes on in production.
pub const DEFAULT_SNAPSHOT_CHANNEL: &str = "fogis:matches:updates";

/// Approximate length the stream is trimmed to by default.
pub const DEFAULT_STREAM_MAX_LEN: usize = 10_000;

/// Where [`Publisher::publish_snapshot`] puts a snapshot. `Default`: channel
/// `fogis:matches:updates`, key `fogis:matches:latest`, stream `fogis:matches:stream` trimmed to
/// about 10 000 entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishTargets {
    /// The pub/sub channel.
    pub channel: String,
    /// The key holding the newest snapshot (`None`: not written).
    pub latest_key: Option<String>,
    /// The stream the snapshot is appended to (`None`: not written).
    pub stream: Option<StreamTarget>,
}

impl Default for PublishTargets {
    fn default() -> Self {
        PublishTargets {
            channel: DEFAULT_SNAPSHOT_CHANNEL.to_string(),
            latest_key: Some(DEFAULT_LATEST_KEY.to_string()),
            stream: Some(StreamTarget::default()),
        }
    }
}

/// The stream half of [`PublishTargets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    /// The stream key (default `fogis:matches:stream`).
    pub key: String,
    /// `XADD ... MAXLEN ~ <max_len>` (default 10 000): Redis trims whole internal nodes, so the
    /// stream may hold somewhat more. Memory is about `max_len` times the snapshot size. At
    /// least 1.
    pub max_len: usize,
}

impl Default for StreamTarget {
    fn default() -> Self {
        StreamTarget {
            key: DEFAULT_STREAM_KEY.to_string(),
            max_len: DEFAULT_STREAM_MAX_LEN,
        }
    }
}

/// What [`Publisher::publish_snapshot`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// How many pub/sub subscribers received the message.
    pub receivers: usize,
    /// The id of the new stream entry, when a stream was written.
    pub stream_id: Option<String>,
}

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

/// A failed request: the error to show, and whether the server answered (a refusal such as
/// `NOPERM` or `WRONGTYPE`, which no retry cures) or could not be reached.
pub(crate) struct Failure {
    pub(crate) error: PublishError,
    pub(crate) answered: bool,
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

    /// Sets how long connecting, or one command, may take (default 5 s).
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
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH").arg(channel).arg(payload.as_ref());
        let (receivers,): (usize,) = self.query(&pipe).await.map_err(|f| f.error)?;
        Ok(receivers)
    }

    /// Publishes a match snapshot durably: `SET` the latest key, `XADD` to the stream (fields
    /// `payload` and, when the payload carries one, `message_id`) and `PUBLISH` on the channel,
    /// in that order and in one `MULTI`/`EXEC` transaction (see the module docs for why).
    ///
    /// The payload is sent as given; stamp it first ([`stamp_fresh`]) so that every consumer
    /// can tell it apart from a redelivery. A broken cached connection is replaced and the
    /// transaction tried once more (it had not reached Redis); a timeout is not retried.
    pub async fn publish_snapshot(
        &self,
        payload: &[u8],
        targets: &PublishTargets,
    ) -> Result<PublishReport, PublishError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(key) = &targets.latest_key {
            pipe.cmd("SET").arg(key).arg(payload).ignore();
        }
        if let Some(stream) = &targets.stream {
            pipe.cmd("XADD")
                .arg(&stream.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(stream.max_len.max(1))
                .arg("*")
                .arg("payload")
                .arg(payload);
            if let Some(id) = message_id(payload) {
                pipe.arg("message_id").arg(id);
            }
        }
        pipe.cmd("PUBLISH").arg(&targets.channel).arg(payload);
        let report = if targets.stream.is_some() {
            let (id, receivers): (String, usize) = self.query(&pipe).await.map_err(|f| f.error)?;
            PublishReport {
                receivers,
                stream_id: Some(id),
            }
        } else {
            let (receivers,): (usize,) = self.query(&pipe).await.map_err(|f| f.error)?;
            PublishReport {
                receivers,
                stream_id: None,
            }
        };
        Ok(report)
    }

    /// The subscriber's catch-up read: `GET key` and `PUBLISH marker_channel token` in one
    /// transaction. The token's place among the messages the subscriber receives tells which of
    /// them were published before the read and which after.
    pub(crate) async fn read_latest(
        &self,
        key: &str,
        marker_channel: &str,
        token: &str,
    ) -> Result<(Option<Vec<u8>>, usize), Failure> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(key)
            .cmd("PUBLISH")
            .arg(marker_channel)
            .arg(token);
        self.query(&pipe).await
    }

    /// One `PING`: proof that Redis answers (the probe when pub/sub is off).
    pub(crate) async fn ping(&self) -> Result<(), Failure> {
        let mut pipe = redis::pipe();
        pipe.cmd("PING");
        let (_pong,): (String,) = self.query(&pipe).await?;
        Ok(())
    }

    /// Runs a pipeline (or transaction) on the cached connection, replacing a broken one once.
    async fn query<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, Failure> {
        let (mut conn, fresh) = self.connection().await?;
        match self.query_on(&mut conn, pipe).await {
            Err(Retry::Broken(_)) if !fresh => {
                self.forget().await;
                let (mut conn, _) = self.connection().await?;
                self.query_on(&mut conn, pipe)
                    .await
                    .map_err(Retry::into_failure)
            }
            other => other.map_err(Retry::into_failure),
        }
    }

    async fn query_on<T: FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
        pipe: &redis::Pipeline,
    ) -> Result<T, Retry> {
        match tokio::time::timeout(self.timeout, pipe.query_async::<T>(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let error = PublishError::Redis(self.url.scrub(&e.to_string()));
                if broken(&e) {
                    self.forget().await;
                    Err(Retry::Broken(error))
                } else {
                    Err(Retry::Final(Failure {
                        error,
                        answered: true,
                    }))
                }
            }
            Err(_) => {
                self.forget().await;
                Err(Retry::Final(Failure {
                    error: PublishError::Timeout(self.timeout),
                    answered: false,
                }))
            }
        }
    }

    /// The cached connection, or a new one; `true` when it is new.
    async fn connection(&self) -> Result<(MultiplexedConnection, bool), Failure> {
        let unreachable = |error| Failure {
            error,
            answered: false,
        };
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok((conn.clone(), false));
        }
        let client = self
            .url
            .client()
            .map_err(|e| unreachable(PublishError::Redis(self.url.scrub(&e.to_string()))))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        // The outer timeout also bounds DNS and TLS, whatever the client does internally.
        let conn = tokio::time::timeout(
            self.timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| unreachable(PublishError::Timeout(self.timeout)))?
        .map_err(|e| Failure {
            answered: !broken(&e) && !e.is_connection_refusal(),
            error: PublishError::Redis(self.url.scrub(&e.to_string())),
        })?;
        *slot = Some(conn.clone());
        Ok((conn, true))
    }

    async fn forget(&self) {
        *self.connection.lock().await = None;
    }
}

fn broken(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_io_error() || e.is_timeout()
}

/// The `message_id` the subscriber side will read from this payload, if any.
fn message_id(payload: &[u8]) -> Option<String> {
    crate::decode(payload).ok()?.meta().message_id.clone()
}

enum Retry {
    /// The connection broke: worth one more try on a fresh connection.
    Broken(PublishError),
    Final(Failure),
}

impl Retry {
    fn into_failure(self) -> Failure {
        match self {
            Retry::Broken(error) => Failure {
                error,
                answered: false,
            },
            Retry::Final(f) => f,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_read_from_every_form() {
        let envelope =
            br#"{"message_id": "m-1", "type": "match_updates", "payload": {"matches": []}}"#;
        assert_eq!(message_id(envelope).as_deref(), Some("m-1"));
        let flat = br#"{"matches": [], "metadata": {"message_id": "m-2"}}"#;
        assert_eq!(message_id(flat).as_deref(), Some("m-2"));
        assert_eq!(message_id(b"not json"), None);
    }

    #[test]
    fn default_targets_write_key_stream_and_channel() {
        let t = PublishTargets::default();
        assert_eq!(t.channel, "fogis:matches:updates");
        assert_eq!(t.latest_key.as_deref(), Some("fogis:matches:latest"));
        assert_eq!(
            t.stream,
            Some(StreamTarget {
                key: "fogis:matches:stream".into(),
                max_len: 10_000
            })
        );
    }
}
