//! The Redis side of the stream consumer: one method per command, errors sorted into
//! [`Fail`], and the status updates that go with the connection.

use std::time::Duration;

use chrono::Utc;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError};
use tokio_util::sync::CancellationToken;

use super::reply::{self, Entry, EntryId};
use super::{Consumer, Fail};

impl Consumer {
    /// A dedicated connection (a blocked `XREADGROUP` holds it) and the group.
    pub(super) async fn connect(&mut self) -> Result<MultiplexedConnection, Fail> {
        let url = &self.shared.config.redis_url;
        let lost = |e: RedisError| Fail::Lost {
            answered: answered(&e),
            reason: url.scrub(&e.to_string()),
        };
        let client = url.client().map_err(lost)?;
        // A blocked read answers within `block`; one that takes `ping_timeout` longer than that
        // is on a dead connection.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.shared.config.connect_timeout))
            .set_response_timeout(Some(self.config.block + self.shared.config.ping_timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(lost)?;
        self.create_group(&mut conn).await?;
        Ok(conn)
    }

    /// `XGROUP CREATE key group 0 MKSTREAM`; an existing group is fine.
    pub(super) async fn create_group(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), Fail> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.config.key)
            .arg(&self.config.group)
            .arg("0")
            .arg("MKSTREAM");
        match cmd.query_async::<()>(conn).await {
            Ok(()) => {
                tracing::info!(stream = %self.config.key, group = %self.config.group, "created the consumer group");
                // A new group means a new history: ids from before say nothing about it.
                self.handled_up_to = None;
                self.shared.status.stream(|s| s.groups_created += 1);
                Ok(())
            }
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(self.fail("XGROUP CREATE", e)),
        }
    }

    /// `XACK key group id...`, in chunks.
    pub(super) async fn ack(
        &self,
        conn: &mut MultiplexedConnection,
        ids: &[String],
    ) -> Result<(), Fail> {
        for chunk in ids.chunks(1000) {
            let mut cmd = redis::cmd("XACK");
            cmd.arg(&self.config.key).arg(&self.config.group).arg(chunk);
            let acked: u64 = cmd
                .query_async(conn)
                .await
                .map_err(|e| self.fail("XACK", e))?;
            let newest = chunk.iter().max_by_key(|id| EntryId::parse(id)).cloned();
            self.shared.status.stream(|s| {
                s.acked += acked;
                if newest.is_some() {
                    s.last_id = newest;
                }
            });
        }
        Ok(())
    }

    pub(super) async fn xreadgroup(
        &self,
        conn: &mut MultiplexedConnection,
        from: &str,
        block: Option<Duration>,
        cancel: &CancellationToken,
    ) -> Result<Vec<Entry>, Fail> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg("COUNT")
            .arg(self.config.batch);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(millis(block));
        }
        cmd.arg("STREAMS").arg(&self.config.key).arg(from);
        let value = self.query(conn, &cmd, "XREADGROUP", cancel).await?;
        reply::read(value).map_err(|e| self.malformed(e))
    }

    /// Runs one command against shutdown.
    pub(super) async fn query(
        &self,
        conn: &mut MultiplexedConnection,
        cmd: &redis::Cmd,
        what: &str,
        cancel: &CancellationToken,
    ) -> Result<redis::Value, Fail> {
        // Cancel safety: a read abandoned here may have been delivered by Redis: its entries
        // are then pending for this consumer and are read again at the next start (step 2).
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Fail::Shutdown),
            r = cmd.query_async::<redis::Value>(conn) => r.map_err(|e| self.fail(what, e)),
        }
    }

    /// `XPENDING key group` into the status; failures are left to the next read to report.
    pub(super) async fn refresh_pending(&self, conn: &mut MultiplexedConnection) {
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&self.config.key).arg(&self.config.group);
        if let Ok(value) = cmd.query_async::<redis::Value>(conn).await {
            let pending = reply::pending_count(&value);
            self.shared.status.stream(|s| s.pending = pending);
        }
    }

    pub(super) fn fail(&self, what: &str, e: RedisError) -> Fail {
        // `UNBLOCKED`: a blocked read whose stream was deleted under it.
        if matches!(e.code(), Some("NOGROUP" | "UNBLOCKED")) {
            return Fail::NoGroup;
        }
        Fail::Lost {
            answered: answered(&e),
            reason: format!(
                "{what} failed: {}",
                self.shared.config.redis_url.scrub(&e.to_string())
            ),
        }
    }

    pub(super) fn malformed(&self, e: reply::Malformed) -> Fail {
        Fail::Lost {
            reason: e.to_string(),
            answered: true,
        }
    }

    pub(super) fn set_connected(&self, up: bool) {
        let status = &self.shared.status;
        status.stream(|s| s.connected = up);
        // Without pub/sub the stream is the connection the status reports.
        if !self.shared.config.pubsub {
            if up {
                let mut s = status.lock();
                s.connected = true;
                s.redis_available = true;
                if s.connected_since.is_none() {
                    s.connected_since = Some(Utc::now());
                }
                s.disconnected_since = None;
            } else {
                status.disconnected();
            }
        }
    }

    pub(super) fn error(&self, reason: &str, answered: bool) {
        let now = Utc::now();
        self.shared.status.stream(|s| {
            s.last_error = Some(reason.to_string());
            s.last_error_at = Some(now);
        });
        if !self.shared.config.pubsub {
            self.shared.status.error(reason.to_string(), answered);
        }
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// True when the server answered (a refusal), false when it could not be reached.
fn answered(e: &RedisError) -> bool {
    !(e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout())
}
