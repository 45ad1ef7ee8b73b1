//! Configuration: parsed once, from CLI flags and environment variables (flags win), into typed
//! values. Every option has a default that runs on a laptop with nothing else set up.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

pub mod google;

/// The event title when `EVENT_TITLE` is not set.
/// The sink lease's default time to live, in seconds (`SINK_LEASE_TTL_SECONDS`).
pub const DEFAULT_SINK_LEASE_TTL_SECONDS: u64 = 10;

/// The event title when `EVENT_TITLE` is not set.
pub const DEFAULT_EVENT_TITLE: &str = "{home} - {away}";

/// A secret that never shows itself in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Options shared by every subcommand that touches the state.
#[derive(Debug, Clone, Args)]
pub struct StateOpts {
    /// Directory for the SQLite state (`state.db`).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Time zone the events are shown in (IANA name).
    #[arg(long, env = "TIMEZONE", default_value = "Europe/Stockholm")]
    pub timezone: chrono_tz::Tz,
    /// Length of a match event in minutes.
    #[arg(long, env = "MATCH_DURATION_MINUTES", default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub match_duration_minutes: u32,
    /// Reminder before kick-off in minutes (0 = no reminder).
    #[arg(long, env = "REMINDER_MINUTES", default_value_t = 2880,
          value_parser = clap::value_parser!(u32).range(0..=40320))]
    pub reminder_minutes: u32,
    /// Name of the calendar shown by calendar apps.
    #[arg(long, env = "CALENDAR_NAME", default_value = "FOGIS matches")]
    pub calendar_name: String,
    /// Hold (do not apply) a list that would withdraw more than this share of the future
    /// matches at once, until it is confirmed.
    #[arg(long, env = "HOLD_WITHDRAW_SHARE", default_value_t = 0.5)]
    pub hold_withdraw_share: f64,
    /// ...and at least this many of them (one reassigned match is normal).
    #[arg(long, env = "HOLD_MIN_WITHDRAWALS", default_value_t = 2)]
    pub hold_min_withdrawals: u32,
    /// Largest list accepted (matches per message).
    #[arg(long, env = "MAX_MATCHES_PER_SNAPSHOT", default_value_t = 5000)]
    pub max_matches_per_snapshot: usize,
    /// The user's own FOGIS referee number (`domarnr`): left out of the phonebook, and the
    /// referee whose role `{role}` in EVENT_TITLE names.
    #[arg(long, env = "USER_REFEREE_NUMBER")]
    pub user_referee_number: Option<String>,
    /// The event title: `{home}`, `{away}`, `{role}` (your own role, e.g. `Dom`, `AD1`; needs
    /// USER_REFEREE_NUMBER) and `{competition}` are filled in. A cancelled match's title starts
    /// with `INSTÄLLD: `, a postponed one's with `UPPSKJUTEN: `.
    #[arg(long, env = "EVENT_TITLE", default_value = DEFAULT_EVENT_TITLE)]
    pub event_title: String,
}

/// Redis options shared by `serve` and `publish`.
#[derive(Debug, Clone, Args)]
pub struct RedisOpts {
    /// Redis to subscribe to (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Subscribe to Redis pub/sub (`false`: HTTP only).
    #[arg(long, env = "REDIS_PUBSUB_ENABLED", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub redis_pubsub_enabled: bool,
    /// The calendar service's name for the same switch; both must be on.
    #[arg(long, env = "REDIS_ENABLED", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub redis_enabled: bool,
    /// Channels carrying match updates (comma list).
    #[arg(
        long,
        env = "REDIS_MATCH_CHANNELS",
        value_delimiter = ',',
        default_value = "fogis_matches,fogis:matches:updates,fogis:matches:updates:v2,fogis:matches:updates:v1,match_updates_v2,match_updates_v1"
    )]
    pub redis_match_channels: Vec<String>,
    /// Channels carrying processing status and system alerts (comma list).
    #[arg(
        long,
        env = "REDIS_STATUS_CHANNELS",
        value_delimiter = ',',
        default_value = "fogis_status,fogis:processor:status,fogis:system:alerts"
    )]
    pub redis_status_channels: Vec<String>,
    /// Longest wait between two reconnection attempts, in seconds (1 to 30). The default keeps
    /// the service back within 5 s of Redis' return; an attempt costs nothing.
    #[arg(long, env = "REDIS_RECONNECT_MAX_SECONDS", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=30))]
    pub redis_reconnect_max_seconds: u64,
    /// Largest accepted Redis message in bytes; larger ones are counted and quarantined.
    #[arg(long, env = "REDIS_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub redis_max_message_bytes: usize,
    #[command(flatten)]
    pub durable: DurableOpts,
    /// Consumer group of the stream (default: `calendar-sync-<state id>`, this state's own, so
    /// that every instance gets every list). Never give one group to two instances with their
    /// own states: each would be handed a different part of the lists.
    #[arg(long, env = "REDIS_CONSUMER_GROUP")]
    pub redis_consumer_group: Option<String>,
    /// This instance's consumer name in the group (default: the host name). Keep it stable:
    /// entries received but not acknowledged before a crash go back to the same name at once.
    #[arg(long, env = "REDIS_CONSUMER_NAME")]
    pub redis_consumer_name: Option<String>,
    /// Pending entries of a consumer silent this long are claimed by another.
    #[arg(long, env = "REDIS_STREAM_CLAIM_IDLE_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub redis_stream_claim_idle_seconds: u64,
}

/// Where snapshots are kept in Redis besides the channel: shared by `serve` and `publish`.
#[derive(Debug, Clone, Args)]
pub struct DurableOpts {
    /// Key holding the latest snapshot, read on every (re)connect to catch up (empty: off).
    #[arg(long, env = "REDIS_LATEST_KEY", default_value = "fogis:matches:latest")]
    pub redis_latest_key: String,
    /// Redis stream of snapshots; when set, the service consumes it with acknowledgements
    /// (at least once) and `publish` appends to it.
    #[arg(long, env = "REDIS_STREAM")]
    pub redis_stream: Option<String>,
    /// Approximate length the stream is trimmed to when publishing.
    #[arg(long, env = "REDIS_STREAM_MAXLEN", default_value_t = 10_000)]
    pub redis_stream_maxlen: usize,
}

impl DurableOpts {
    pub fn latest_key(&self) -> Option<String> {
        Some(self.redis_latest_key.trim().to_string()).filter(|k| !k.is_empty())
    }

    pub fn stream(&self) -> Option<String> {
        self.redis_stream
            .as_ref()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
    }
}

impl RedisOpts {
    /// Whether anything reads from Redis: pub/sub, or a stream.
    pub fn enabled(&self) -> bool {
        self.redis_enabled && (self.redis_pubsub_enabled || self.durable.stream().is_some())
    }

    fn channels(list: &[String]) -> Vec<String> {
        list.iter()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    }

    /// `REDIS_CONSUMER_GROUP` when set and not blank.
    pub fn consumer_group(&self) -> Option<&str> {
        self.redis_consumer_group
            .as_deref()
            .map(str::trim)
            .filter(|g| !g.is_empty())
    }

    /// The library's subscriber configuration.
    pub fn subscriber_config(
        &self,
    ) -> Result<fogis_pubsub::SubscriberConfig, fogis_pubsub::ConfigError> {
        Ok(fogis_pubsub::SubscriberConfig {
            redis_url: fogis_pubsub::RedisUrl::new(self.redis_url.clone())?,
            match_channels: Self::channels(&self.redis_match_channels),
            status_channels: Self::channels(&self.redis_status_channels),
            enabled: self.enabled(),
            max_message_bytes: self.redis_max_message_bytes,
            backoff_max: std::time::Duration::from_secs(self.redis_reconnect_max_seconds),
            pubsub: self.redis_pubsub_enabled,
            latest_key: self.durable.latest_key(),
            stream: self.durable.stream().map(|key| fogis_pubsub::StreamConfig {
                key,
                group: self
                    .consumer_group()
                    .unwrap_or(fogis_pubsub::config::DEFAULT_STREAM_GROUP)
                    .to_string(),
                consumer: self
                    .redis_consumer_name
                    .clone()
                    .unwrap_or_else(fogis_pubsub::config::default_consumer_name),
                claim_idle: std::time::Duration::from_secs(self.redis_stream_claim_idle_seconds),
                ..fogis_pubsub::StreamConfig::default()
            }),
            ..fogis_pubsub::SubscriberConfig::default()
        })
    }
}

/// Sinks: where else the calendar and the phonebook go.
#[derive(Debug, Clone, Args)]
pub struct SinkOpts {
    /// CalDAV calendar collection to keep equal to the feed (created when missing), or a
    /// server root to discover the calendar named CALENDAR_NAME from.
    #[arg(long, env = "CALDAV_URL")]
    pub caldav_url: Option<String>,
    #[arg(long, env = "CALDAV_USERNAME")]
    pub caldav_username: Option<String>,
    #[arg(long, env = "CALDAV_PASSWORD", hide_env_values = true)]
    pub caldav_password: Option<Secret>,
    /// CardDAV address book for the other referees (created when missing), or a server root
    /// to discover the address book "<CALENDAR_NAME> – referees" from (one named "FOGIS
    /// referees", as earlier versions created it, is used when found).
    #[arg(long, env = "CARDDAV_URL")]
    pub carddav_url: Option<String>,
    #[arg(long, env = "CARDDAV_USERNAME")]
    pub carddav_username: Option<String>,
    #[arg(long, env = "CARDDAV_PASSWORD", hide_env_values = true)]
    pub carddav_password: Option<Secret>,
    /// POST every changed list to this URL (e.g. another service's /manual-sync).
    #[arg(long, env = "FORWARD_URL")]
    pub forward_url: Option<String>,
    /// Bearer token sent to FORWARD_URL.
    #[arg(long, env = "FORWARD_TOKEN", hide_env_values = true)]
    pub forward_token: Option<Secret>,
    /// Timeout of one request to a sink, in seconds.
    #[arg(long, env = "SINK_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub sink_timeout_seconds: u64,
    /// Write the sinks only while this instance holds a lease in Redis (REDIS_URL): for two
    /// instances, each with its own DATA_DIR, serving one calendar. Off: the sinks are always
    /// written, Redis or not.
    #[arg(long, env = "SINK_LEASE", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub sink_lease: bool,
    /// The lease's name (key `fogis:calendar-sync:sink-lease:<name>`); default: a digest of the
    /// configured sinks' targets. Setting it turns the lease on.
    #[arg(long, env = "SINK_LEASE_KEY")]
    pub sink_lease_key: Option<String>,
    /// The lease's time to live: a standby takes over within 1.2 times this after the holder
    /// dies; the holder renews every 0.3 times it.
    #[arg(long, env = "SINK_LEASE_TTL_SECONDS", default_value_t = DEFAULT_SINK_LEASE_TTL_SECONDS,
          value_parser = clap::value_parser!(u64).range(2..=300))]
    pub sink_lease_ttl_seconds: u64,
}

impl SinkOpts {
    /// Whether the sinks are written only under the lease.
    pub fn lease_enabled(&self) -> bool {
        self.sink_lease
            || self
                .sink_lease_key
                .as_deref()
                .is_some_and(|k| !k.trim().is_empty())
    }

    pub fn none() -> Self {
        SinkOpts {
            caldav_url: None,
            caldav_username: None,
            caldav_password: None,
            carddav_url: None,
            carddav_username: None,
            carddav_password: None,
            forward_url: None,
            forward_token: None,
            sink_timeout_seconds: 30,
            sink_lease: false,
            sink_lease_key: None,
            sink_lease_ttl_seconds: DEFAULT_SINK_LEASE_TTL_SECONDS,
        }
    }
}

/// Options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeOpts {
    #[command(flatten)]
    pub state: StateOpts,
    #[command(flatten)]
    pub redis: RedisOpts,
    #[command(flatten)]
    pub sinks: SinkOpts,
    #[command(flatten)]
    pub google: google::GoogleOpts,
    #[command(flatten)]
    pub pull: PullOpts,
    /// Address the HTTP API listens on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:9083")]
    pub bind: SocketAddr,
    /// Bearer token (`Authorization: Bearer ...`, at least 16 characters) required on POST
    /// routes, and accepted on every route that shows personal data.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,
    /// Token (at least 16 characters, not API_TOKEN) for calendar and phonebook apps, as
    /// `?token=`: required, once a token is set, by every route that shows personal data.
    #[arg(long, env = "FEED_TOKEN", hide_env_values = true)]
    pub feed_token: Option<Secret>,
    /// Listen beyond loopback without both tokens: anyone who reaches the port reads the
    /// personal data (and, without API_TOKEN, changes the calendar).
    #[arg(long, env = "ALLOW_UNAUTHENTICATED", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_unauthenticated: bool,
    /// Days an archived match (played, no longer in the lists) is kept after its kick-off;
    /// the running service removes older ones every 6 hours (0: keep them forever).
    #[arg(long, env = "ARCHIVE_RETENTION_DAYS", default_value_t = 400)]
    pub archive_retention_days: u32,
    /// Most archived matches kept, the latest by kick-off; older ones are removed with the
    /// retention (0: no cap).
    #[arg(long, env = "MAX_ARCHIVED_MATCHES", default_value_t = 10_000)]
    pub max_archived_matches: usize,
    /// Largest accepted HTTP body in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Seconds a client has to send a request's headers (also closes idle connections).
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_header_timeout_seconds: u64,
    /// Seconds a whole request may take, body included.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_request_timeout_seconds: u64,
    /// HTTP connections served at once; more are closed on arrival.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 256)]
    pub http_max_connections: usize,
}

/// Options of the pull source.
#[derive(Debug, Clone, Args)]
pub struct PullOpts {
    /// The stack's fogis-api-client service (`http://fogis-api-client-service:8080`): the
    /// referee's list is pulled from its `GET /matches` (unset or empty: no pulls).
    #[arg(long, env = "FOGIS_API_CLIENT_URL")]
    pub fogis_api_client_url: Option<String>,
    /// Seconds between two pulls (0: only at start and on the events that may lose updates).
    #[arg(long, env = "FOGIS_PULL_INTERVAL_SECONDS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub fogis_pull_interval_seconds: u64,
    /// Seconds one pull may take.
    #[arg(long, env = "FOGIS_PULL_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub fogis_pull_timeout_seconds: u64,
}

impl PullOpts {
    pub fn none() -> Self {
        PullOpts {
            fogis_api_client_url: None,
            fogis_pull_interval_seconds: 1800,
            fogis_pull_timeout_seconds: 30,
        }
    }

    /// The configured URL, if any.
    pub fn url(&self) -> Option<&str> {
        self.fogis_api_client_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }
}
