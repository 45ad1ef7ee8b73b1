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
//!   coalesce). Every (re)connection is reported, because pub/sub loses what is published while
//!   nobody listens.
//! - **Status** ([`SubscriberStatus`]): connection state and counters, cheap to read, served by
//!   the axum routes of [`http::router`].
//! - **Publisher** ([`publisher::Publisher`], [`publisher::stamp`]): publishing in the
//!   processor's format.
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
//! let app = axum::Router::new().merge(http::router(handle.clone()));
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

pub use config::{RedisUrl, SubscriberConfig};
pub use envelope::{
    decode, decode_value, DecodeError, Message, MessageForm, Meta, RejectedMatch, Snapshot,
    StatusUpdate, SystemAlert,
};
pub use error::{ConfigError, ProbeError, PublishError, RejectReason, StampError};
pub use model::{Address, Kickoff, Match, MatchForm, Referee, TeamContact};
pub use publisher::Publisher;
pub use status::{MessageRecord, RecordKind, SubscriberStatus};
pub use subscriber::{
    drive, subscribe_to_match_updates, BoxFuture, HandlerOutcome, MatchUpdate, RejectedPayload,
    SubscriberHandle, SyncTarget,
};
