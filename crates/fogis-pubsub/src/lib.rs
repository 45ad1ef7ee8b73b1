//! # fogis-pubsub
//!
//! The FOGIS match-update integration, usable by any Rust service. Key concepts:
//!
//! - **Messages** ([`decode`], [`Message`]): every form the match-list-processor (and the tools
//!   around it) put on the wire becomes one [`Message`]. A match update is a [`Snapshot`]: the
//!   referee's *whole* current match list, normalised into [`Match`] values.
//! - **Subscriber** ([`subscribe_to_match_updates`], [`drive`], [`SubscriberHandle`]): a Redis
//!   pub/sub reader that reconnects forever, notices a dead connection within seconds, reads fast
//!   and hands the newest snapshot to your handler on a separate task (older unprocessed ones
//!   coalesce). Every (re)connection is reported, and followed by a catch-up of the latest
//!   snapshot, because pub/sub loses what is published while nobody listens.
//! - **Stream consumer** ([`StreamConfig`]): optionally, alongside or instead of pub/sub, a Redis
//!   stream read through a consumer group, each entry acknowledged only after your handler
//!   returned for it.
//! - **Status** ([`SubscriberStatus`], [`StreamStatus`]): connection state and counters, cheap to
//!   read, served by the axum routes of [`http::router`].
//! - **Publisher** ([`Publisher`], [`publisher::stamp`]): publishing in the processor's format;
//!   [`Publisher::publish_snapshot`] writes the latest key, the stream and the channel in one
//!   transaction.
//!
//! ## Delivery guarantees
//!
//! | mode | guarantee | what the application must do |
//! | --- | --- | --- |
//! | pub/sub (default) | **at most once**, plus the **latest snapshot on every (re)connect** (`latest_key`) | skip duplicates (same `message_id` or content) |
//! | stream ([`SubscriberConfig::stream`]) | **at least once**: acknowledged after the handler returned | apply idempotently; answer [`HandlerOutcome::Retry`] when it cannot commit now |
//!
//! Since every snapshot is the whole match list, "the latest snapshot" is all a consumer ever
//! needs: pub/sub with catch-up loses no *state*, only intermediate snapshots that were
//! superseded anyway. The stream adds durability across a crash of this service between
//! receiving and committing, and works even when the publisher does not write the latest key.
//! Both rely on Redis keeping its data: enable persistence (AOF or RDB) so that the key, the
//! stream and the consumer group survive a Redis restart, and use `maxmemory-policy noeviction`
//! so that neither is ever evicted. Details in the [`subscriber`] module.
//!
//! This crate carries no calendar code; it decodes and moves messages.
//!
//! ```
//! let bytes = br#"{"message_id": "m-1", "type": "match_updates",
//!   "payload": {"matches": [{"match_id": 7, "teams": "A vs B", "date": "2025-05-06",
//!   "time": "18:30", "venue": "Vallen", "referees": ["Ann"]}]}}"#;
//! let fogis_pubsub::Message::Matches(snapshot) = fogis_pubsub::decode(bytes).unwrap() else {
//!     panic!("a match update")
//! };
//! assert_eq!(snapshot.meta.message_id.as_deref(), Some("m-1"));
//! assert_eq!(snapshot.matches[0].home_team.as_deref(), Some("A"));
//! ```
//!
//! Publishing a snapshot durably, and consuming the stream:
//!
//! ```no_run
//! use fogis_pubsub::publisher::{stamp_fresh, PublishTargets};
//! use fogis_pubsub::{drive, HandlerOutcome, Publisher, StreamConfig, SubscriberConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let url: fogis_pubsub::RedisUrl = "redis://fogis-redis:6379".parse()?;
//! let mut message = serde_json::json!({"type": "match_updates", "payload": {"matches": []}});
//! stamp_fresh(&mut message)?;
//! let report = Publisher::new(url.clone())
//!     .publish_snapshot(&serde_json::to_vec(&message)?, &PublishTargets::default())
//!     .await?;
//! println!("entry {:?}", report.stream_id);
//!
//! let config = SubscriberConfig {
//!     stream: Some(StreamConfig {
//!         consumer: "calendar-sync-1".into(),
//!         ..StreamConfig::default()
//!     }),
//!     ..SubscriberConfig::with_url(url)
//! };
//! let handle = fogis_pubsub::subscribe_to_match_updates(config, |update| async move {
//!     // Commit to the database here; on a transient failure answer Retry.
//!     HandlerOutcome::Applied { summary: format!("{} matches", update.snapshot.matches.len()) }
//! });
//! # handle.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! Subscribing, with the status routes merged into an app:
//!
//! ```no_run
//! use fogis_pubsub::{http, subscribe_to_match_updates, HandlerOutcome, SubscriberConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = SubscriberConfig::with_url("redis://fogis-redis:6379".parse()?);
//! let handle = subscribe_to_match_updates(config, |update| async move {
//!     let n = update.snapshot.matches.len();
//!     HandlerOutcome::Applied { summary: format!("{n} matches from {}", update.channel) }
//! });
//! // The POST routes need this token; /redis-stats needs it (or the read token).
//! let policy = http::auth::AccessPolicy::new(Some(std::env::var("API_TOKEN")?), None)?;
//! let app = axum::Router::new().merge(http::router(handle.clone(), policy));
//! # let _ = app;
//! handle.shutdown();
//! handle.await;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod envelope;
pub mod error;
pub mod fields;
pub mod http;
pub mod model;
pub mod publisher;
pub mod status;
pub mod subscriber;

pub use config::{RedisUrl, StreamConfig, SubscriberConfig, BURST_ARRIVALS};
pub use envelope::{
    decode, decode_value, DecodeError, Message, MessageForm, Meta, RejectedMatch, Snapshot,
    StatusUpdate, SystemAlert,
};
pub use error::{ConfigError, ProbeError, PublishError, RejectReason, StampError};
pub use model::{Address, Kickoff, Match, MatchForm, Referee, TeamContact};
pub use publisher::{PublishReport, PublishTargets, Publisher, StreamTarget};
pub use status::{
    AlertKind, AlertSeverity, AlertSummary, MessageRecord, ProcessingState, RecordKind,
    StatusSummary, StreamStatus, SubscriberStatus,
};
pub use subscriber::{
    drive, subscribe_to_match_updates, BoxFuture, HandlerOutcome, MatchUpdate, RejectedPayload,
    SubscriberHandle, SyncTarget, CATCH_UP_PREFIX,
};
