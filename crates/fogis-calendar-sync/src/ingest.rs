//! Ingest: where lists come from. Redis pub/sub and streams ([`redis`]), the FOGIS pull source
//! ([`pull`]), and the decoding of one body into an applied snapshot ([`apply_bytes`]), shared by
//! all of them and by the HTTP API and the CLI.

pub mod group_owner;
pub mod instance;
pub mod metrics;
pub mod pull;
pub mod redis;
pub mod state_health;
