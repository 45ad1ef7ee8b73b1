//! The reading task: connect, subscribe, read, hand off; reconnect forever.
//!
//! Liveness: a subscribed connection is silent when nothing is published, so silence alone
//! proves nothing. After `ping_interval` without traffic the task sends `PING` on the subscribed
//! connection itself (Redis answers it in subscribed mode); no answer within `ping_timeout`
//! means the connection is dead or half-open (a frozen server, a vanished host, a NAT that
//! dropped the flow) and it is abandoned. Worst case a dead connection is noticed after
//! `ping_interval + ping_timeout` (7 s with the defaults).
//!
//! The redis crate's pub/sub driver reads the socket on its own task into an unbounded channel,
//! so the server-side output buffer drains at network speed; this task keeps that channel short
//! by doing nothing slow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use redis::{Msg, RedisError};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::{MatchUpdate, RejectedPayload, Shared, REJECTED_RAW_LIMIT};
use crate::envelope::Message;
use crate::error::RejectReason;
use crate::status::RecordKind;

/// Pings are never sent more often than this, whatever the configuration says.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(100);
/// Nor less often: also keeps `now + interval` far from overflowing.
const MAX_PING_INTERVAL: Duration = Duration::from_secs(3600);

/// Why a subscribed session ended.
enum SessionEnd {
    Shutdown,
    Restart,
    /// The connection is gone; the text says why.
    Lost {
        reason: String,
    },
}

/// An outage in progress: when it started and whether it has been reported at warn level.
struct Outage {
    since: Instant,
    warned: bool,
}

pub(crate) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let config = &shared.config;
    let url = &config.redis_url;
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    let mut channels = shared.status.lock().channels.clone();
    channels.push(shared.probe_channel.clone());
    let mut ever_subscribed = false;
    let mut outage = Some(Outage {
        since: Instant::now(),
        warned: false,
    });

    while !cancel.is_cancelled() {
        // Cancel safety: dropping a half-made connection just closes it.
        let attempt = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(config.connect_timeout, connect(&shared, &channels)) => r,
        };
        let error = match attempt {
            Ok(Ok((sink, stream))) => {
                let reconnect = ever_subscribed;
                ever_subscribed = true;
                shared.status.subscribed(reconnect);
                backoff.reset();
                match outage.take() {
                    Some(o) if reconnect => {
                        tracing::info!(url = %url, "reconnected after {:.1?}", o.since.elapsed())
                    }
                    _ => tracing::info!(url = %url, "connected to Redis"),
                }
                tracing::info!("subscribed to {} channels", channels.len());
                shared.inbox.connected(reconnect);
                // A restart asked for while connecting is answered by this fresh connection;
                // its stored permit must not tear the connection down again at once.
                let _ = shared.restart.notified().now_or_never();

                let end = session(&shared, sink, stream, &cancel).await;
                shared.status.disconnected();
                match end {
                    SessionEnd::Shutdown => break,
                    SessionEnd::Restart => {
                        tracing::info!("restart requested; reconnecting to Redis");
                        continue;
                    }
                    SessionEnd::Lost { reason } => {
                        tracing::warn!("lost the Redis connection: {reason}");
                        outage = Some(Outage {
                            since: Instant::now(),
                            warned: false,
                        });
                        shared.status.error(reason.clone(), false);
                        reason
                    }
                }
            }
            Ok(Err(e)) => {
                let reason = url.scrub(&e.to_string());
                shared.status.error(reason.clone(), server_answered(&e));
                shared.status.disconnected();
                reason
            }
            Err(_) => {
                let reason = format!(
                    "no answer while connecting and subscribing within {:?}",
                    config.connect_timeout
                );
                shared.status.error(reason.clone(), false);
                shared.status.disconnected();
                reason
            }
        };

        let delay = backoff.next_delay();
        let current = outage.get_or_insert_with(|| Outage {
            since: Instant::now(),
            warned: false,
        });
        // One warning per outage; the retries after it only at debug, so logs do not flood.
        if current.warned {
            tracing::debug!(url = %url, "Redis unavailable, retrying in {delay:.1?}: {error}");
        } else {
            tracing::warn!(url = %url, "Redis unavailable, retrying in {delay:.1?}: {error}");
            current.warned = true;
        }
        // Cancel safety: all three are cancel safe; a restart permit consumed here means
        // "retry now", which is what the loop does next.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = shared.restart.notified() => backoff.reset(),
            _ = tokio::time::sleep(delay) => {}
        }
    }
    shared.status.disconnected();
    tracing::debug!("Redis reader stopped");
}

/// Opens a pub/sub connection and subscribes every channel (one `SUBSCRIBE`, all confirmations
/// awaited).
async fn connect(
    shared: &Shared,
    channels: &[String],
) -> Result<(PubSubSink, PubSubStream), RedisError> {
    let client = shared.config.redis_url.client()?;
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    sink.subscribe(channels).await?;
    Ok((sink, stream))
}

/// True when the error came from a server that answered (bad password, missing ACL permission),
/// false when Redis could not be reached at all.
fn server_answered(e: &RedisError) -> bool {
    !(e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout())
}

type Ping = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<Result<redis::Value, RedisError>, tokio::time::error::Elapsed>,
            > + Send,
    >,
>;

/// Reads one subscribed connection until it ends.
async fn session(
    shared: &Shared,
    sink: PubSubSink,
    mut stream: PubSubStream,
    cancel: &CancellationToken,
) -> SessionEnd {
    let interval = shared
        .config
        .ping_interval
        .clamp(MIN_PING_INTERVAL, MAX_PING_INTERVAL);
    let ping_timeout = shared.config.ping_timeout;
    let mut idle_until = tokio::time::Instant::now() + interval;
    // The ping in flight lives outside `select!` so that a message arriving meanwhile does not
    // drop (and so forget) it.
    let mut ping: Option<Ping> = None;

    loop {
        // Cancel safety of every branch: `cancelled()` and `notified()` hold no data (a
        // `notify_one` permit is passed on if its future is dropped); `stream.next()` is an mpsc
        // receive, which loses nothing when dropped; `sleep_until` is recreated from the same
        // deadline; the ping future is only borrowed.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return SessionEnd::Shutdown,
            _ = shared.restart.notified() => return SessionEnd::Restart,
            msg = stream.next() => match msg {
                Some(msg) => {
                    intake(shared, &msg);
                    if ping.is_none() {
                        idle_until = tokio::time::Instant::now() + interval;
                    }
                    // Decoding a large snapshot takes a while; give the redis crate's socket
                    // driver a turn after each one so that, even on a busy or single-threaded
                    // runtime, the socket keeps draining and Redis' output buffer stays small.
                    tokio::task::yield_now().await;
                }
                None => {
                    return SessionEnd::Lost {
                        reason: "connection closed".into(),
                    }
                }
            },
            reply = async {
                match ping.as_mut() {
                    Some(p) => p.await,
                    None => std::future::pending().await,
                }
            }, if ping.is_some() => {
                ping = None;
                match reply {
                    Ok(Ok(_)) => {
                        idle_until = tokio::time::Instant::now() + interval;
                    }
                    Ok(Err(e)) => {
                        return SessionEnd::Lost {
                            reason: format!("PING failed: {}", shared.config.redis_url.scrub(&e.to_string())),
                        }
                    }
                    Err(_) => {
                        return SessionEnd::Lost {
                            reason: format!("no reply to PING within {ping_timeout:?}"),
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(idle_until), if ping.is_none() => {
                let mut sink = sink.clone();
                ping = Some(Box::pin(async move {
                    tokio::time::timeout(ping_timeout, sink.ping::<redis::Value>()).await
                }));
            }
        }
    }
}

/// Handles one received message. Runs on the reading task: only counting, size-checking,
/// decoding and handing off; never logs payload contents.
fn intake(shared: &Shared, msg: &Msg) {
    let channel = msg.get_channel_name();
    let payload = msg.get_payload_bytes();
    if channel == shared.probe_channel {
        shared.probe_returned(payload);
        return;
    }
    let received_at = Utc::now();
    let limit = shared.config.max_message_bytes;
    let decoded = if payload.len() > limit {
        Err(RejectReason::TooLarge {
            size: payload.len(),
            limit,
        })
    } else {
        crate::decode(payload).map_err(RejectReason::from)
    };
    let status = &shared.status;
    match decoded {
        Ok(Message::Matches(snapshot)) => {
            let n = snapshot.matches.len();
            tracing::info!("received {n} matches on {channel}");
            let outcome = format!("queued ({n} matches)");
            let seq = status.received(channel, RecordKind::Matches, outcome);
            let update = MatchUpdate {
                channel: channel.to_string(),
                snapshot,
                received_at,
            };
            if let Some(replaced) = shared.inbox.put(seq, update) {
                let mut s = status.lock();
                s.messages_coalesced += 1;
                let text = "coalesced: superseded by a newer snapshot".to_string();
                crate::status::StatusCell::set_outcome(&mut s, replaced, text);
            }
        }
        Ok(Message::Status(update)) => {
            tracing::info!(channel, status = %update.status, "processing status");
            status.received(
                channel,
                RecordKind::Status,
                format!("status: {}", update.status),
            );
            let mut s = status.lock();
            s.status_messages += 1;
            s.last_status = Some(update);
        }
        Ok(Message::Alert(alert)) => {
            tracing::warn!(
                channel,
                severity = %alert.severity,
                alert_type = %alert.alert_type,
                "system alert"
            );
            let outcome = format!("alert: {} ({})", alert.alert_type, alert.severity);
            status.received(channel, RecordKind::Alert, outcome);
            let mut s = status.lock();
            s.alert_messages += 1;
            s.last_alert = Some(alert);
        }
        Err(reason) => {
            tracing::warn!(channel, size = payload.len(), "rejected message: {reason}");
            status.received(channel, RecordKind::Rejected, reason.to_string());
            status.lock().messages_rejected += 1;
            shared.inbox.rejected(RejectedPayload {
                channel: channel.to_string(),
                error: reason,
                raw: payload[..payload.len().min(REJECTED_RAW_LIMIT)].to_vec(),
                size: payload.len(),
                received_at,
            });
        }
    }
}
