//! A stream's consumer group belongs to one state.
//!
//! The group's position in the stream is the position of the state that consumes it: a second
//! instance with a state of its own in the same group would be handed a different part of the
//! entries, and the two calendars would diverge (see [`crate::ingest::instance`]). The default group
//! is already the state's own; this guards an explicit `REDIS_CONSUMER_GROUP` given to two
//! instances. At start the service writes its state id under
//! `fogis:calendar-sync:group-owner:<stream>:<group>` with `SET NX` (no expiry: the binding lasts
//! as long as the group's position does) and refuses to start when another state's id is there.
//! A restart of the same state finds its own id and goes on.
//!
//! When Redis cannot be reached at start the check is skipped with a warning (the service
//! starts without Redis and connects when it appears).

use std::time::Duration;

use fogis_pubsub::RedisUrl;

/// How long the check may take before it is skipped.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The key holding the id of the state that owns `group` on `stream`.
pub fn owner_key(stream: &str, group: &str) -> String {
    format!("fogis:calendar-sync:group-owner:{stream}:{group}")
}

/// Why the service does not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "consumer group {group:?} on stream {stream:?} belongs to another state (id {owner}; this \
     DATA_DIR's state is {ours}): two instances with their own states in one group would each \
     get part of the lists. Give this instance its own REDIS_CONSUMER_GROUP (or leave it unset: \
     the default is this state's own group), or, if the other state is gone for good, \
     DEL {key} in Redis"
)]
pub struct GroupTaken {
    pub stream: String,
    pub group: String,
    pub owner: String,
    pub ours: String,
    pub key: String,
}

/// Binds `group` on `stream` to the state `state_id`, or says which state has it.
pub async fn claim(
    url: &RedisUrl,
    stream: &str,
    group: &str,
    state_id: &str,
) -> Result<(), GroupTaken> {
    let key = owner_key(stream, group);
    let check = async {
        let client = url.client()?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(state_id)
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            return Ok(None);
        }
        let owner: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        Ok::<_, redis::RedisError>(owner)
    };
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(Some(owner))) if owner != state_id => Err(GroupTaken {
            stream: stream.into(),
            group: group.into(),
            owner,
            ours: state_id.into(),
            key,
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            let error = url.scrub(&e.to_string());
            tracing::warn!(%error, "could not check who owns the stream's consumer group; going on");
            Ok(())
        }
        Err(_) => {
            tracing::warn!("Redis did not answer in time to check who owns the stream's consumer group; going on");
            Ok(())
        }
    }
}
