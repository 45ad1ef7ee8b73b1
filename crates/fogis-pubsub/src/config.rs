//! Subscriber configuration: where Redis is, which channels to listen on, and the timings that
//! decide how fast a dead connection is noticed and how politely we retry.
//!
//! [`RedisUrl`] keeps the connection string, which may carry a password, and never shows that
//! password: its `Debug` and `Display` print `redis://user:***@host:port/db`.
//!
//! Two ways in, both on by default except the stream: pub/sub (`pubsub`, at most once, plus the
//! catch-up of `latest_key` on every (re)subscription) and a Redis stream read through a
//! consumer group ([`StreamConfig`], at least once). See the [`subscriber`](crate::subscriber)
//! module for what each guarantees.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::ConfigError;

/// Every match-update channel name in use in the FOGIS stack (docs/PROTOCOL.md section 1).
pub const DEFAULT_MATCH_CHANNELS: [&str; 6] = [
    "fogis_matches",
    "fogis:matches:updates",
    "fogis:matches:updates:v2",
    "fogis:matches:updates:v1",
    "match_updates_v2",
    "match_updates_v1",
];

/// Every processing-status and system-alert channel name in use (docs/PROTOCOL.md section 1).
pub const DEFAULT_STATUS_CHANNELS: [&str; 3] = [
    "fogis_status",
    "fogis:processor:status",
    "fogis:system:alerts",
];

/// The Redis of a developer laptop.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The key holding the newest snapshot, written by
/// [`Publisher::publish_snapshot`](crate::Publisher::publish_snapshot) and read back on every
/// (re)subscription.
pub const DEFAULT_LATEST_KEY: &str = "fogis:matches:latest";

/// The stream every snapshot is appended to by
/// [`Publisher::publish_snapshot`](crate::Publisher::publish_snapshot).
pub const DEFAULT_STREAM_KEY: &str = "fogis:matches:stream";

/// The consumer group of this service on the stream.
pub const DEFAULT_STREAM_GROUP: &str = "calendar-sync";

/// A Redis connection URL (`redis://`, `rediss://`, `redis+unix://`, with optional ACL user and
/// password), validated by the redis crate's own parser. Its `Debug` and `Display` redact the
/// password; [`expose`](RedisUrl::expose) gives the real string to the code that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Validates a URL the way the redis crate will read it, without connecting.
    pub fn new(url: impl Into<String>) -> Result<Self, ConfigError> {
        let url = url.into();
        let url = url.trim().to_string();
        redis::Client::open(url.as_str()).map_err(|e| ConfigError::InvalidUrl {
            url: redact(&url),
            reason: scrub(&e.to_string(), &url),
        })?;
        Ok(RedisUrl(url))
    }

    /// The URL with any password replaced by `***` (also `?pass=` of unix-socket URLs).
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }

    /// The URL as given, password included. Only for handing to a Redis client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of this URL's password (raw and percent-decoded) in `text`, so
    /// that error messages from lower layers can be shown and logged.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.0)
    }

    /// A client for this URL, with the TLS crypto provider installed for `rediss://` (so that
    /// an application's own commands on the same Redis cannot panic for want of one).
    pub fn client(&self) -> Result<redis::Client, redis::RedisError> {
        if self.0.starts_with("rediss:") || self.0.starts_with("valkeys:") {
            ensure_crypto_provider();
        }
        redis::Client::open(self.0.as_str())
    }
}

impl Default for RedisUrl {
    fn default() -> Self {
        RedisUrl(DEFAULT_REDIS_URL.to_string())
    }
}

impl FromStr for RedisUrl {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RedisUrl::new(s)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Everything the subscriber needs. `Default` listens on every channel name of the protocol at
/// the laptop Redis with the timings documented on each field.
#[derive(Debug, Clone)]
pub struct SubscriberConfig {
    pub redis_url: RedisUrl,
    /// Channels carrying match snapshots: handed to the sync handler.
    pub match_channels: Vec<String>,
    /// Channels carrying processing status and system alerts: recorded, never handed over.
    pub status_channels: Vec<String>,
    /// When false nothing connects and the status says so.
    pub enabled: bool,
    /// First delay before reconnecting (250 ms); doubles per failed attempt.
    pub backoff_initial: Duration,
    /// Ceiling of the reconnect delay (30 s); the delay never exceeds it, jitter included.
    pub backoff_max: Duration,
    /// Send `PING` on the subscribed connection after this much silence (3 s).
    pub ping_interval: Duration,
    /// A `PING` unanswered for this long means the connection is dead (4 s).
    pub ping_timeout: Duration,
    /// Time allowed to connect, authenticate and subscribe (5 s); a frozen server that accepts
    /// TCP but never answers is given up after it.
    pub connect_timeout: Duration,
    /// Payloads larger than this (4 MiB) are rejected without being decoded.
    pub max_message_bytes: usize,
    /// Subscribe to the pub/sub channels (default true). False with `stream` set reads the
    /// stream only: then the status' `connected` follows the stream consumer, the probe is a
    /// `PING`, and `on_connected` is never called (the stream needs no catch-up).
    pub pubsub: bool,
    /// After every successful (re)subscription, read this key (default
    /// [`DEFAULT_LATEST_KEY`]) and hand its snapshot over as if it had arrived on channel
    /// `catch-up:<key>`: what was published while we were away is not lost. `None` switches the
    /// catch-up off. Only meaningful with `pubsub`, and only if every publisher writes the key
    /// (a stale key written once by hand would be handed over as if it were current).
    pub latest_key: Option<String>,
    /// Also read the durable stream through a consumer group (default `None`: off).
    pub stream: Option<StreamConfig>,
    /// During a burst (at least [`BURST_ARRIVALS`] pub/sub lists arrived while the handler was
    /// busy with the previous one), the worker waits this long (20 ms) before it takes the
    /// newest. The lists arriving meanwhile replace each other in the slot and would never be
    /// handled anyway; the pause leaves the CPU to the reading task, so that it keeps up with
    /// what Redis sends and Redis never closes the connection for its output buffer. Lists
    /// arriving one at a time are never delayed. Zero switches the pause off.
    pub burst_pause: Duration,
}

/// See [`SubscriberConfig::burst_pause`].
pub const BURST_ARRIVALS: u64 = 3;

impl Default for SubscriberConfig {
    fn default() -> Self {
        SubscriberConfig {
            redis_url: RedisUrl::default(),
            match_channels: DEFAULT_MATCH_CHANNELS.map(String::from).to_vec(),
            status_channels: DEFAULT_STATUS_CHANNELS.map(String::from).to_vec(),
            enabled: true,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            ping_interval: Duration::from_secs(3),
            ping_timeout: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(5),
            max_message_bytes: 4 * 1024 * 1024,
            pubsub: true,
            latest_key: Some(DEFAULT_LATEST_KEY.to_string()),
            stream: None,
            burst_pause: Duration::from_millis(20),
        }
    }
}

impl SubscriberConfig {
    /// The default configuration aimed at another Redis.
    pub fn with_url(redis_url: RedisUrl) -> Self {
        SubscriberConfig {
            redis_url,
            ..SubscriberConfig::default()
        }
    }
}

/// Reading the durable stream through a consumer group (at least once). `Default` gives the
/// values documented on each field.
///
/// Every snapshot is a whole match list, so `coalesce` (on by default) hands only the newest of
/// what has piled up to the handler and acknowledges the older entries once it returned. Run one
/// consumer per group for that; with several consumers in one group entries are shared out
/// between them and no order holds across consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// The stream (default [`DEFAULT_STREAM_KEY`]).
    pub key: String,
    /// The consumer group (default [`DEFAULT_STREAM_GROUP`]). Created at id `0` with
    /// `MKSTREAM` when missing, so entries added before the group existed are read too.
    pub group: String,
    /// This consumer's name in the group (default [`default_consumer_name`]: the host name).
    /// Keep it stable across restarts: entries received but not acknowledged before a crash are
    /// re-read by the consumer of the same name at once, by others only after `claim_idle`.
    pub consumer: String,
    /// How long one `XREADGROUP` waits for new entries (5 s); also bounds how late a dead
    /// connection is noticed (after `block + ping_timeout`).
    pub block: Duration,
    /// Entries per read (100).
    pub batch: usize,
    /// Pending entries of other consumers idle longer than this (60 s) are claimed
    /// (`XAUTOCLAIM`): their consumer is taken to be dead.
    pub claim_idle: Duration,
    /// How often to look for such entries (30 s); also once at every (re)connection.
    pub claim_every: Duration,
    /// Hand only the newest snapshot of what was read together (true); false hands every entry
    /// in order.
    pub coalesce: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            key: DEFAULT_STREAM_KEY.to_string(),
            group: DEFAULT_STREAM_GROUP.to_string(),
            consumer: default_consumer_name(),
            block: Duration::from_secs(5),
            batch: 100,
            claim_idle: Duration::from_secs(60),
            claim_every: Duration::from_secs(30),
            coalesce: true,
        }
    }
}

/// The host name (`$HOSTNAME`, else `/etc/hostname`), or a random UUID when neither is there.
///
/// In a container the host name is the container id unless the deployment sets one: a new name
/// after every re-creation means the old consumer's unacknowledged entries wait `claim_idle`
/// before they are claimed. Set [`StreamConfig::consumer`] to a fixed name there.
pub fn default_consumer_name() -> String {
    let from_env = std::env::var("HOSTNAME").ok();
    let from_file = || std::fs::read_to_string("/etc/hostname").ok();
    from_env
        .filter(|h| !h.trim().is_empty())
        .or_else(|| from_file().filter(|h| !h.trim().is_empty()))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// rustls needs a process-wide crypto provider and panics when it cannot pick one (none, or
/// more than one, enabled in the build). Installing ring when nothing is installed yet keeps a
/// `rediss://` connection from panicking; an application's own choice, made earlier, wins.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one in between: just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Where the password sits in a URL: the byte range of the userinfo password, if any.
fn password_range(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    // The userinfo ends at the *last* '@' (a raw '@' inside a password is common in practice).
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some((authority_start + colon + 1, authority_start + at))
}

fn redact(url: &str) -> String {
    let mut out = match password_range(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_string(),
    };
    // Unix-socket URLs carry the password as a query parameter.
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key == "pass" || key == "password" => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// The secrets of `url` as they may appear in text: the raw password, its percent-decoded form
/// and a `pass=` query value.
fn secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some((start, end)) = password_range(url) {
        found.push(url[start..end].to_string());
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some(("pass" | "password", value)) = pair.split_once('=') {
                found.push(value.to_string());
            }
        }
    }
    if let Ok(client) = redis::Client::open(url) {
        if let Some(p) = client.get_connection_info().redis_settings().password() {
            found.push(p.to_string());
        }
    }
    found.retain(|s| !s.is_empty());
    // Longest first, so that a password containing another one is replaced whole.
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found
}

fn scrub(text: &str, url: &str) -> String {
    let mut out = text.to_string();
    for secret in secrets(url) {
        out = out.replace(&secret, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_but_keeps_user_host_port_db() {
        let url = RedisUrl::new("redis://alice:s3cr%40t@redis.example:6380/2").expect("valid");
        assert_eq!(url.redacted(), "redis://alice:***@redis.example:6380/2");
        assert_eq!(format!("{url}"), "redis://alice:***@redis.example:6380/2");
        assert!(!format!("{url:?}").contains("s3cr"));
        assert_eq!(url.expose(), "redis://alice:s3cr%40t@redis.example:6380/2");
    }

    #[test]
    fn password_only_tls_and_unix_forms() {
        let url = RedisUrl::new("rediss://:pw@host:6379").expect("valid");
        assert_eq!(url.redacted(), "rediss://:***@host:6379");
        let url = RedisUrl::new("redis://user@host").expect("valid");
        assert_eq!(url.redacted(), "redis://user@host");
        let url = RedisUrl::new("redis+unix:///run/redis.sock?db=1&pass=hunter2").expect("valid");
        assert_eq!(url.redacted(), "redis+unix:///run/redis.sock?db=1&pass=***");
    }

    #[test]
    fn raw_at_sign_in_password_is_redacted_whole() {
        let url = "redis://u:p@ss@host:1";
        assert_eq!(redact(url), "redis://u:***@host:1");
    }

    #[test]
    fn scrub_removes_raw_and_decoded_password() {
        let url = RedisUrl::new("redis://bob:p%40ssw0rd@host").expect("valid");
        let text = "auth failed for p@ssw0rd (p%40ssw0rd)";
        assert_eq!(url.scrub(text), "auth failed for *** (***)");
    }

    #[test]
    fn invalid_url_is_an_error_without_password() {
        let err = RedisUrl::new("http://user:topsecret@host").expect_err("not redis");
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }

    #[test]
    fn defaults_list_every_protocol_channel() {
        let c = SubscriberConfig::default();
        assert_eq!(c.match_channels.len(), 6);
        assert_eq!(c.status_channels.len(), 3);
        assert_eq!(c.redis_url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(c.backoff_max, Duration::from_secs(30));
        assert_eq!(c.max_message_bytes, 4 << 20);
        assert!(c.enabled && c.pubsub);
        assert_eq!(c.latest_key.as_deref(), Some("fogis:matches:latest"));
        assert!(c.stream.is_none());
    }

    #[test]
    fn stream_defaults() {
        let s = StreamConfig::default();
        assert_eq!(s.key, "fogis:matches:stream");
        assert_eq!(s.group, "calendar-sync");
        assert!(!s.consumer.trim().is_empty());
        assert_eq!(s.consumer, s.consumer.trim());
        assert_eq!(s.block, Duration::from_secs(5));
        assert_eq!(s.batch, 100);
        assert_eq!(s.claim_idle, Duration::from_secs(60));
        assert_eq!(s.claim_every, Duration::from_secs(30));
        assert!(s.coalesce);
    }
}
