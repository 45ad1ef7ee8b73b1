//! The reading task: connect, subscribe, read, hand off; reconnect forever.
//!
//! Liveness: a subscribed connection is silent when nothing is published, so silence alone
//! proves nothing. After `ping_interval` without traffic the task sends `PING` on the subscribed
//! connection itself (Redis answers it in subscribed mode); no answer within `ping_timeout`
//! means the connection is dead or half-open (a frozen server, a vanished host, a NAT that
//! dropped the flow) and it is abandoned. Worst case a dead connection is noticed after
//! `ping_interval + ping_timeout` (7 s with the defaults).
//!
//! The connection is read by [`super::conn`] (RESP framing without parsing or copying payloads,
//! large reads), so the server-side output buffer drains at network speed; this task keeps up
//! by doing nothing slow: a large payload on a match channel is counted, recorded and put in the
//! coalescing slot as it is (a slice of the read buffer: no copy, no parsing), and the worker
//! decodes only the survivor.
//! Measured on a 2-core machine, a reader that decoded every 29 KB message drained a pipelined
//! burst at a third of the rate of a bare RESP reader, and the backlog took the process to
//! 500 MB; see BENCHMARKS.md.
//!
//! Catch-up (see the [parent module](super) for why this order): after `SUBSCRIBE` is confirmed,
//! one transaction on the probe publisher's connection reads `latest_key` and publishes a marker
//! on the private probe channel. Live messages are read meanwhile (a marker that arrives before
//! the transaction's own reply is kept until the reply is in). When the marker comes back, the
//! key's snapshot is handed over unless a live snapshot came first. A marker that does not come back after
//! `ping_timeout` of silence means the subscription is broken: the connection is abandoned like
//! one that stopped answering `PING`. A Redis that refuses the read (`NOPERM`, `WRONGTYPE`) is reported
//! and the session goes on without catch-up, since reconnecting would not change the answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::conn::{Conn, ConnError, Frame};
use super::intake::{intake, intake_raw, RAW_MIN};
use super::Shared;

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
            Ok(Ok(conn)) => {
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
                // The integration README's wording: runbooks and alerts grep for it.
                tracing::info!(
                    channels = channels.len(),
                    "📡 Subscribed to match updates from match-list-processor"
                );
                shared.inbox.connected(reconnect);
                // A cycle begun before this connection may have lost its list while nobody
                // listened; the (re)connect event already says so.
                super::intake::cycle_reset(&shared);
                // A restart asked for while connecting is answered by this fresh connection;
                // its stored permit must not tear the connection down again at once.
                let _ = shared.restart.notified().now_or_never();

                let end = session(&shared, conn, &cancel).await;
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
                let reason = url.scrub(&e.reason);
                shared.status.error(reason.clone(), e.answered);
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
        // The warning is the integration README's line (runbooks grep for it); the service
        // goes on over HTTP and keeps retrying.
        if current.warned {
            tracing::debug!(url = %url, retry_in = ?delay, %error, "Redis unavailable, retrying");
        } else {
            tracing::warn!(
                url = %url,
                retry_in = ?delay,
                %error,
                "⚠️ Redis not available - calendar service will use HTTP endpoints only"
            );
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
async fn connect(shared: &Shared, channels: &[String]) -> Result<Conn, ConnError> {
    let client = shared.config.redis_url.client().map_err(|e| ConnError {
        reason: e.to_string(),
        answered: false,
    })?;
    Conn::subscribe(&client, channels).await
}

/// True for a configured match channel (the reader hands its payloads off undecoded).
fn is_match_channel(shared: &Shared, channel: &str) -> bool {
    shared.config.match_channels.iter().any(|c| c == channel)
}

/// A catch-up read whose marker has not come back yet.
struct CatchUp {
    key: String,
    token: String,
    /// The key's value when it was read.
    value: Option<Vec<u8>>,
    /// A live snapshot arrived before the marker: it is at least as new as `value`.
    overtaken: bool,
    deadline: tokio::time::Instant,
}

impl CatchUp {
    /// The marker is back: hand the key's snapshot over, unless a live one came first.
    fn finish(self, shared: &Shared) {
        if self.overtaken {
            tracing::debug!(key = %self.key, "catch-up not needed: a live snapshot came first");
            return;
        }
        let Some(value) = self.value else {
            tracing::debug!(key = %self.key, "catch-up: the key is empty");
            return;
        };
        let channel = format!("{}{}", super::CATCH_UP_PREFIX, self.key);
        if intake(shared, &channel, &value) {
            shared.status.lock().catch_ups += 1;
        }
    }
}

/// How every catch-up marker starts.
const CATCH_UP_TOKEN: &str = "catch-up:";

/// A catch-up read in flight.
type CatchUpStart<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<CatchUp>, SessionEnd>> + Send + 'a>,
>;

/// Reads the latest key and publishes the marker (one transaction).
async fn start_catch_up(shared: &Shared, key: &str) -> Result<Option<CatchUp>, SessionEnd> {
    let token = format!("{CATCH_UP_TOKEN}{}", uuid::Uuid::new_v4());
    let read = shared
        .publisher
        .read_latest(key, &shared.probe_channel, &token)
        .await;
    match read {
        Ok((value, receivers)) if receivers > 0 => Ok(Some(CatchUp {
            key: key.to_string(),
            token,
            value,
            overtaken: false,
            deadline: tokio::time::Instant::now() + shared.config.ping_timeout,
        })),
        Ok(_) => Err(SessionEnd::Lost {
            reason: "the catch-up marker reached no subscriber: the subscription is gone".into(),
        }),
        Err(f) if f.answered => {
            let reason = format!("catch-up read of {key} refused: {}", f.error);
            tracing::warn!("{reason}; going on without catch-up");
            shared.status.error(reason, true);
            Ok(None)
        }
        Err(f) => Err(SessionEnd::Lost {
            reason: format!("catch-up read of {key} failed: {}", f.error),
        }),
    }
}

/// Reads one subscribed connection until it ends.
async fn session(shared: &Shared, mut conn: Conn, cancel: &CancellationToken) -> SessionEnd {
    // The catch-up read runs while the connection is read: a burst under way keeps draining,
    // and Redis never holds our messages back while the transaction is out.
    let mut catch_up: Option<CatchUp> = None;
    // Cancel safety: a transaction dropped in flight changes nothing (the key stays, a marker
    // nobody waits for is ignored).
    let mut starting: Option<CatchUpStart<'_>> = shared
        .config
        .latest_key
        .as_deref()
        .map(|key| Box::pin(start_catch_up(shared, key)) as CatchUpStart<'_>);
    // While the read is out: a snapshot arrived (it overtakes the key), and a marker that came
    // back before the transaction's reply did.
    let mut overtaken_early = false;
    let mut early_marker: Option<bytes::Bytes> = None;
    let marker_deadline = |c: &Option<CatchUp>| c.as_ref().map(|c| c.deadline);
    let interval = shared
        .config
        .ping_interval
        .clamp(MIN_PING_INTERVAL, MAX_PING_INTERVAL);
    let ping_timeout = shared.config.ping_timeout;
    let mut idle_until = tokio::time::Instant::now() + interval;
    // When a `PING` is out: the time its answer is due by.
    let mut pong_due: Option<tokio::time::Instant> = None;

    loop {
        let marker_due = marker_deadline(&catch_up);
        // Cancel safety of every branch: `cancelled()` and `notified()` hold no data (a
        // `notify_one` permit is passed on if its future is dropped); `next_frame()` keeps what
        // it read in its buffer and takes a frame only whole; the `sleep_until`s are recreated
        // from deadlines kept outside `select!`; the catch-up read is kept outside it and only
        // borrowed.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return SessionEnd::Shutdown,
            _ = shared.restart.notified() => return SessionEnd::Restart,
            // Before the frames: under a burst the connection always has one ready, and the
            // read must still make progress.
            started = async {
                match starting.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            }, if starting.is_some() => {
                starting = None;
                match started {
                    Ok(Some(mut c)) => {
                        c.overtaken |= overtaken_early;
                        if early_marker.take().is_some_and(|m| m == c.token.as_bytes()) {
                            c.finish(shared);
                        } else {
                            catch_up = Some(c);
                        }
                    }
                    Ok(None) => {}
                    Err(end) => return end,
                }
            }
            frame = conn.next_frame() => match frame {
                Ok(Frame::Message(msg)) => {
                    let (channel, payload) = (msg.channel.as_str(), &msg.payload[..]);
                    // The marker is behind whatever arrived first: while messages keep coming,
                    // the connection is alive and the marker not late.
                    if let Some(c) = catch_up.as_mut() {
                        c.deadline = tokio::time::Instant::now() + shared.config.ping_timeout;
                    }
                    if channel == shared.probe_channel && starting.is_some() && payload.starts_with(CATCH_UP_TOKEN.as_bytes()) {
                        early_marker = Some(msg.payload.clone());
                    } else if channel == shared.probe_channel {
                        let marker = catch_up.as_ref().is_some_and(|c| c.token.as_bytes() == payload);
                        match catch_up.take() {
                            Some(c) if marker => c.finish(shared),
                            other => {
                                catch_up = other;
                                shared.probe_returned(payload);
                            }
                        }
                    } else if catch_up.is_none()
                        && starting.is_none()
                        && payload.len() >= RAW_MIN
                        && is_match_channel(shared, channel)
                    {
                        // The fast path: handed off raw (a slice of the read buffer, not a
                        // copy), decoded by the worker if it survives.
                        intake_raw(shared, msg);
                    } else {
                        // Status channels, small payloads, and match channels while the catch-up
                        // marker is out (whether a snapshot arrived decides it): decoded here.
                        if intake(shared, channel, payload) {
                            if let Some(c) = catch_up.as_mut() {
                                c.overtaken = true;
                            } else if starting.is_some() {
                                overtaken_early = true;
                            }
                        }
                        // Decoding takes a while; give other tasks a turn on a busy or
                        // single-threaded runtime.
                        tokio::task::yield_now().await;
                    }
                    if pong_due.is_none() {
                        idle_until = tokio::time::Instant::now() + interval;
                    }
                }
                Ok(Frame::Pong) => {
                    pong_due = None;
                    idle_until = tokio::time::Instant::now() + interval;
                }
                Ok(Frame::Other) => {}
                Err(e) => {
                    return SessionEnd::Lost {
                        reason: shared.config.redis_url.scrub(&e.reason),
                    }
                }
            },
            _ = async {
                match pong_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            }, if pong_due.is_some() => {
                return SessionEnd::Lost {
                    reason: format!("no reply to PING within {ping_timeout:?}"),
                };
            }
            _ = async {
                match marker_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            }, if marker_due.is_some() => {
                return SessionEnd::Lost {
                    reason: format!(
                        "the catch-up marker did not come back within {:?}",
                        shared.config.ping_timeout
                    ),
                };
            }
            _ = tokio::time::sleep_until(idle_until), if pong_due.is_none() => {
                let sent = tokio::time::timeout(ping_timeout, conn.send_ping()).await;
                match sent {
                    Ok(Ok(())) => pong_due = Some(tokio::time::Instant::now() + ping_timeout),
                    Ok(Err(e)) => {
                        return SessionEnd::Lost {
                            reason: format!("PING failed: {}", shared.config.redis_url.scrub(&e.reason)),
                        }
                    }
                    Err(_) => {
                        return SessionEnd::Lost {
                            reason: format!("no reply to PING within {ping_timeout:?}"),
                        }
                    }
                }
            }
        }
    }
}
