//! Errors of the Redis side of the crate, one enum per boundary. Decoding has its own
//! [`DecodeError`](crate::DecodeError).
//!
//! No variant ever carries a Redis password: lower-layer messages are scrubbed with
//! [`RedisUrl::scrub`](crate::RedisUrl::scrub) before they are stored.

use std::time::Duration;

/// The configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The Redis URL is not one the redis crate can connect to (scheme, host, db, TLS support).
    #[error("invalid Redis URL {url}: {reason}")]
    InvalidUrl {
        /// The URL with its password redacted.
        url: String,
        reason: String,
    },
}

/// Publishing a message failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Connecting or the `PUBLISH` itself failed; the message says why (password scrubbed).
    #[error("Redis unavailable: {0}")]
    Redis(String),
    /// Redis did not answer within the time allowed.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// Why [`stamp`](crate::publisher::stamp) cannot stamp a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// Only a JSON object can carry `message_id` / `timestamp`.
    #[error("a message must be a JSON object to be stamped, found {0}")]
    NotAnObject(&'static str),
    /// The flat form's `metadata` exists but is not an object.
    #[error("`metadata` must be an object, found {0}")]
    MetadataNotAnObject(&'static str),
}

/// Why a round-trip probe ([`SubscriberHandle::probe`](crate::SubscriberHandle::probe)) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The integration is switched off in the configuration.
    #[error("the Redis integration is disabled")]
    Disabled,
    /// The subscriber has no live subscribed connection right now.
    #[error("not subscribed to Redis (the subscriber is connecting or Redis is down)")]
    NotSubscribed,
    /// The probe message could not be published.
    #[error("publishing the probe failed: {0}")]
    Unavailable(String),
    /// Redis accepted the probe but nobody (not even this subscriber) was subscribed to it.
    #[error("the probe was published but no subscriber received it")]
    NoReceivers,
    /// The probe was published but did not come back within the time allowed.
    #[error("the probe did not come back within {0:?}")]
    Timeout(Duration),
    /// The subscriber shut down while the probe was in flight.
    #[error("the subscriber is shutting down")]
    ShuttingDown,
}

/// Why a received payload was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// Larger than `max_message_bytes`; not decoded at all.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// Not a message of any known form.
    #[error("undecodable: {0}")]
    Undecodable(#[from] crate::DecodeError),
    /// A stream entry without a `payload` field (not written by a FOGIS publisher).
    #[error("stream entry {id} has no `payload` field")]
    MissingPayload {
        /// The entry's stream id.
        id: String,
    },
}
