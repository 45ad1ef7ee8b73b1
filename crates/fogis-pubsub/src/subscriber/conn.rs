//! The subscribed connection: `SUBSCRIBE`, then messages read straight off the socket.
//!
//! A burst of 20,000 lists of 29 KB arrives at up to 700 MB/s, and Redis closes a RESP2
//! subscriber whose output buffer passes 32 MB: the reader must drain the socket as fast as
//! Redis writes it. The redis crate's pub/sub driver parses every reply into an owned value
//! (a copy of each payload), reads in small pieces and hands each message through a channel
//! of its own; on a 2-core machine that lost the connection in most bursts above ~18,000
//! messages a second (BENCHMARKS.md). Over plain TCP and Unix sockets this module speaks the
//! few RESP2 frames a subscriber sees itself: it reads into a large buffer, finds each frame by
//! its length headers and hands the payload on as a slice of that buffer ([`Bytes`]): no parse
//! of the payload, no copy, one read call for many messages.
//!
//! `rediss://` keeps the redis crate's connection (its TLS set-up, roots and options); there
//! each payload is copied once into [`Bytes`].
//!
//! `PING` on a subscribed RESP2 connection is answered with the array `pong ""`, in order with
//! the messages; [`Conn::send_ping`] writes one and the reply comes back from
//! [`Conn::next_frame`] as [`Frame::Pong`]. The session keeps the deadline.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::ConnectionAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Read buffer grown by this much when it runs short: many production-size messages per read.
const READ_CHUNK: usize = 256 * 1024;
/// No bulk string from Redis is longer (its own `proto-max-bulk-len` default): a longer header
/// is a protocol error, not a reason to allocate.
const MAX_BULK: usize = 512 * 1024 * 1024;
/// Elements in an array frame; a subscriber's frames have two or three.
const MAX_ARRAY: usize = 64;

/// One pub/sub message.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) channel: String,
    pub(crate) payload: Bytes,
}

/// What a subscribed connection delivers.
#[derive(Debug)]
pub(crate) enum Frame {
    Message(Message),
    /// The answer to [`Conn::send_ping`].
    Pong,
    /// Anything else a subscriber may see (a `subscribe` confirmation, ...): ignored.
    Other,
}

/// Why connecting or reading failed.
#[derive(Debug)]
pub(crate) struct ConnError {
    pub(crate) reason: String,
    /// The server answered (a refused password, a missing ACL permission): retrying soon will
    /// not help, and the status says so.
    pub(crate) answered: bool,
}

impl ConnError {
    fn io(e: std::io::Error) -> Self {
        ConnError {
            reason: e.to_string(),
            answered: false,
        }
    }

    fn lost(reason: impl Into<String>) -> Self {
        ConnError {
            reason: reason.into(),
            answered: false,
        }
    }

    fn redis(e: redis::RedisError) -> Self {
        let answered = !(e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_timeout());
        ConnError {
            reason: e.to_string(),
            answered,
        }
    }
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A subscribed connection.
pub(crate) enum Conn {
    /// Plain TCP or a Unix socket, read by this module.
    Raw {
        read: Reader,
        write: Writer,
        buf: BytesMut,
    },
    /// TLS, through the redis crate.
    Crate {
        sink: PubSubSink,
        stream: PubSubStream,
        pongs: mpsc::UnboundedReceiver<Result<(), String>>,
        pong_tx: mpsc::UnboundedSender<Result<(), String>>,
    },
}

impl Conn {
    /// Connects to `client`'s address, authenticates and subscribes every channel; returns once
    /// every subscription is confirmed.
    pub(crate) async fn subscribe(
        client: &redis::Client,
        channels: &[String],
    ) -> Result<Conn, ConnError> {
        let info = client.get_connection_info();
        let settings = info.redis_settings();
        let (read, write): (Reader, Writer) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(ConnError::io)?;
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(ConnError::io)?;
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            }
            _ => return Conn::through_crate(client, channels).await,
        };
        let mut conn = Conn::Raw {
            read,
            write,
            buf: BytesMut::with_capacity(READ_CHUNK),
        };
        conn.handshake(settings.username(), settings.password(), channels)
            .await?;
        Ok(conn)
    }

    async fn through_crate(client: &redis::Client, channels: &[String]) -> Result<Conn, ConnError> {
        let (mut sink, stream) = client
            .get_async_pubsub()
            .await
            .map_err(ConnError::redis)?
            .split();
        sink.subscribe(channels).await.map_err(ConnError::redis)?;
        let (pong_tx, pongs) = mpsc::unbounded_channel();
        Ok(Conn::Crate {
            sink,
            stream,
            pongs,
            pong_tx,
        })
    }

    /// `AUTH` (when the URL has a password) and `SUBSCRIBE`, written at once, then their answers.
    async fn handshake(
        &mut self,
        username: Option<&str>,
        password: Option<&str>,
        channels: &[String],
    ) -> Result<(), ConnError> {
        let mut out = Vec::new();
        if let Some(password) = password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = username {
                auth.push(user.as_bytes());
            }
            auth.push(password.as_bytes());
            command(&mut out, &auth);
        }
        let mut subscribe: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        subscribe.extend(channels.iter().map(|c| c.as_bytes()));
        command(&mut out, &subscribe);
        self.write_all(&out).await?;
        if password.is_some() {
            match self.next_resp().await? {
                Resp::Simple(_) => {}
                Resp::Error(e) => {
                    return Err(ConnError {
                        reason: format!("AUTH refused: {e}"),
                        answered: true,
                    })
                }
                other => {
                    return Err(ConnError::lost(format!(
                        "unexpected answer to AUTH: {other:?}"
                    )))
                }
            }
        }
        let mut confirmed = 0;
        while confirmed < channels.len() {
            match self.next_resp().await? {
                Resp::Array(items) if is_kind(&items, b"subscribe") => confirmed += 1,
                Resp::Error(e) => {
                    return Err(ConnError {
                        reason: format!("SUBSCRIBE refused: {e}"),
                        answered: true,
                    })
                }
                // Nothing else comes before the confirmations: Redis runs one command at a time
                // and writes every confirmation of a SUBSCRIBE before any message.
                _ => {}
            }
        }
        Ok(())
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        match self {
            Conn::Raw { write, .. } => {
                write.write_all(bytes).await.map_err(ConnError::io)?;
                write.flush().await.map_err(ConnError::io)
            }
            // Not called: the redis crate writes its own commands on a TLS connection.
            Conn::Crate { .. } => Ok(()),
        }
    }

    /// Writes a `PING`; its answer comes back as [`Frame::Pong`].
    pub(crate) async fn send_ping(&mut self) -> Result<(), ConnError> {
        match self {
            Conn::Raw { .. } => self.write_all(b"*1\r\n$4\r\nPING\r\n").await,
            Conn::Crate { sink, pong_tx, .. } => {
                let mut sink = sink.clone();
                let tx = pong_tx.clone();
                tokio::spawn(async move {
                    let reply = sink.ping::<redis::Value>().await;
                    let _ = tx.send(reply.map(|_| ()).map_err(|e| e.to_string()));
                });
                Ok(())
            }
        }
    }

    /// The next frame. Cancel safe: bytes read stay in the buffer, a frame is taken from it
    /// only whole.
    pub(crate) async fn next_frame(&mut self) -> Result<Frame, ConnError> {
        if let Conn::Crate { stream, pongs, .. } = self {
            return tokio::select! {
                biased;
                pong = pongs.recv() => match pong {
                    Some(Ok(())) => Ok(Frame::Pong),
                    Some(Err(e)) => Err(ConnError::lost(format!("PING failed: {e}"))),
                    None => Err(ConnError::lost("connection closed")),
                },
                msg = stream.next() => match msg {
                    Some(msg) => Ok(Frame::Message(Message {
                        channel: msg.get_channel_name().to_string(),
                        payload: Bytes::copy_from_slice(msg.get_payload_bytes()),
                    })),
                    None => Err(ConnError::lost("connection closed")),
                },
            };
        }
        match self.next_resp().await? {
            Resp::Array(mut items) if is_kind(&items, b"message") && items.len() == 3 => {
                let payload = match items.pop() {
                    Some(Resp::Bulk(Some(b))) => b,
                    _ => return Err(ConnError::lost("a message frame without a payload")),
                };
                let channel = match items.pop() {
                    Some(Resp::Bulk(Some(b))) => String::from_utf8_lossy(&b).into_owned(),
                    _ => return Err(ConnError::lost("a message frame without a channel")),
                };
                Ok(Frame::Message(Message { channel, payload }))
            }
            Resp::Array(items) if is_kind(&items, b"pong") => Ok(Frame::Pong),
            Resp::Simple(s) if s.eq_ignore_ascii_case(b"PONG") => Ok(Frame::Pong),
            Resp::Error(e) => Err(ConnError {
                reason: format!("Redis answered an error: {e}"),
                answered: true,
            }),
            _ => Ok(Frame::Other),
        }
    }

    /// The next whole RESP value from the socket (raw connections only).
    async fn next_resp(&mut self) -> Result<Resp, ConnError> {
        let Conn::Raw { read, buf, .. } = self else {
            return Err(ConnError::lost("not a raw connection"));
        };
        loop {
            match parse(buf)? {
                Parsed::Done(resp) => return Ok(resp),
                Parsed::Incomplete { needed } => {
                    let want = needed.saturating_sub(buf.len()).max(READ_CHUNK / 4);
                    if buf.capacity() - buf.len() < want {
                        buf.reserve(want.max(READ_CHUNK));
                    }
                }
            }
            let n = read.read_buf(buf).await.map_err(ConnError::io)?;
            if n == 0 {
                return Err(ConnError::lost("connection closed"));
            }
        }
    }
}

/// Appends one command as a RESP array of bulk strings.
fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// True when `items` is an array whose first element is the bulk string `kind` (any case).
fn is_kind(items: &[Resp], kind: &[u8]) -> bool {
    matches!(items.first(), Some(Resp::Bulk(Some(b))) if b.eq_ignore_ascii_case(kind))
}

/// The RESP2 values a subscriber sees.
#[derive(Debug, PartialEq)]
pub(crate) enum Resp {
    Simple(Bytes),
    Error(String),
    Int(i64),
    Bulk(Option<Bytes>),
    Array(Vec<Resp>),
}

/// What [`parse`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed {
    Done(Resp),
    /// Not a whole value yet: at least `needed` bytes in all are wanted (a hint for the read).
    Incomplete {
        needed: usize,
    },
}

/// Takes one whole value off the front of `buf`, bulk strings as slices of it (no copy).
pub(crate) fn parse(buf: &mut BytesMut) -> Result<Parsed, ConnError> {
    let mut spans = Vec::new();
    match scan(buf, 0, &mut spans, 0)? {
        Scan::Incomplete(needed) => Ok(Parsed::Incomplete { needed }),
        Scan::Done(end) => {
            let frame = buf.split_to(end).freeze();
            let mut spans = spans.into_iter();
            Ok(Parsed::Done(build(&frame, &mut spans)))
        }
    }
}

/// Where each value lies in the buffer, in order (arrays before their elements).
#[derive(Debug)]
enum Span {
    Simple(usize, usize),
    Error(usize, usize),
    Int(i64),
    Bulk(Option<(usize, usize)>),
    Array(usize),
}

enum Scan {
    /// The value ends at this offset.
    Done(usize),
    Incomplete(usize),
}

/// The end of the line starting at `at` (the offset of its `\r`), if the line is whole.
fn line_end(buf: &[u8], at: usize) -> Option<usize> {
    let rest = buf.get(at..)?;
    rest.windows(2).position(|w| w == b"\r\n").map(|i| at + i)
}

fn number(line: &[u8]) -> Result<i64, ConnError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| ConnError::lost("a malformed length or integer from Redis"))
}

/// A `$` or `*` length: `None` for the null value (-1), an error past `max`.
fn length(line: &[u8], max: usize, what: &str) -> Result<Option<usize>, ConnError> {
    let n = number(line)?;
    if n < 0 {
        return Ok(None);
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > max {
        return Err(ConnError::lost(format!("{n} {what} announced by Redis")));
    }
    Ok(Some(n))
}

fn scan(buf: &[u8], at: usize, spans: &mut Vec<Span>, depth: usize) -> Result<Scan, ConnError> {
    if depth > 4 {
        return Err(ConnError::lost("RESP nested too deep"));
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(Scan::Incomplete(at + 1));
    };
    let Some(eol) = line_end(buf, at + 1) else {
        return Ok(Scan::Incomplete(buf.len() + 1));
    };
    let line = &buf[at + 1..eol];
    let next = eol + 2;
    match kind {
        b'+' => {
            spans.push(Span::Simple(at + 1, eol));
            Ok(Scan::Done(next))
        }
        b'-' => {
            spans.push(Span::Error(at + 1, eol));
            Ok(Scan::Done(next))
        }
        b':' => {
            spans.push(Span::Int(number(line)?));
            Ok(Scan::Done(next))
        }
        b'$' => {
            let Some(len) = length(line, MAX_BULK, "bytes in a bulk string")? else {
                spans.push(Span::Bulk(None));
                return Ok(Scan::Done(next));
            };
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(Scan::Incomplete(end + 2));
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ConnError::lost("a bulk string not ended by CRLF"));
            }
            spans.push(Span::Bulk(Some((next, end))));
            Ok(Scan::Done(end + 2))
        }
        b'*' => {
            let Some(n) = length(line, MAX_ARRAY, "elements in an array")? else {
                spans.push(Span::Bulk(None));
                return Ok(Scan::Done(next));
            };
            spans.push(Span::Array(n));
            let mut pos = next;
            for _ in 0..n {
                match scan(buf, pos, spans, depth + 1)? {
                    Scan::Done(end) => pos = end,
                    incomplete => return Ok(incomplete),
                }
            }
            Ok(Scan::Done(pos))
        }
        other => Err(ConnError::lost(format!(
            "an unknown RESP type byte {other:#04x} from Redis"
        ))),
    }
}

fn build(frame: &Bytes, spans: &mut std::vec::IntoIter<Span>) -> Resp {
    match spans.next() {
        Some(Span::Simple(a, b)) => Resp::Simple(frame.slice(a..b)),
        Some(Span::Error(a, b)) => {
            Resp::Error(String::from_utf8_lossy(&frame.slice(a..b)).into_owned())
        }
        Some(Span::Int(i)) => Resp::Int(i),
        Some(Span::Bulk(range)) => Resp::Bulk(range.map(|(a, b)| frame.slice(a..b))),
        Some(Span::Array(n)) => Resp::Array((0..n).map(|_| build(frame, spans)).collect()),
        // `scan` recorded every value it passed.
        None => Resp::Bulk(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(channel: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n",
            channel.len(),
            payload.len()
        )
        .into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn a_message_is_found_whole_and_its_payload_is_a_slice_of_the_buffer() {
        let payload = vec![b'x'; 30_000];
        let mut wire = message("fogis:matches:updates", &payload);
        wire.extend(message("c", b"{}"));
        let mut buf = BytesMut::from(&wire[..]);
        let start = buf.as_ptr() as usize;
        let Parsed::Done(Resp::Array(items)) = parse(&mut buf).expect("parses") else {
            panic!("a whole frame")
        };
        let Resp::Bulk(Some(p)) = &items[2] else {
            panic!("a payload")
        };
        assert_eq!(&p[..], &payload[..]);
        // No copy: the payload points into the buffer that was read.
        let at = p.as_ptr() as usize;
        assert!(at > start && at < start + wire.len());
        assert_eq!(
            items[1],
            Resp::Bulk(Some(Bytes::from_static(b"fogis:matches:updates")))
        );
        // The second frame is still there, whole.
        let Parsed::Done(Resp::Array(items)) = parse(&mut buf).expect("parses") else {
            panic!("the second frame")
        };
        assert_eq!(items[2], Resp::Bulk(Some(Bytes::from_static(b"{}"))));
        assert!(buf.is_empty());
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete_and_takes_nothing() {
        let wire = message("ch", b"{\"matches\":[]}");
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            match parse(&mut buf).expect("parses") {
                Parsed::Incomplete { needed } => assert!(needed > cut, "cut {cut}"),
                done => panic!("cut {cut}: {done:?}"),
            }
            assert_eq!(buf.len(), cut, "nothing taken at cut {cut}");
        }
        let mut buf = BytesMut::from(&wire[..]);
        assert!(matches!(parse(&mut buf).expect("parses"), Parsed::Done(_)));
    }

    #[test]
    fn pong_errors_integers_and_confirmations_are_read() {
        let mut buf = BytesMut::from(
            &b"*2\r\n$4\r\npong\r\n$0\r\n\r\n-NOPERM no\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n+OK\r\n$-1\r\n"[..],
        );
        let mut all = vec![];
        while let Parsed::Done(r) = parse(&mut buf).expect("parses") {
            all.push(r);
        }
        assert_eq!(all.len(), 5);
        assert!(matches!(&all[0], Resp::Array(i) if is_kind(i, b"pong")));
        assert_eq!(all[1], Resp::Error("NOPERM no".into()));
        assert!(
            matches!(&all[2], Resp::Array(i) if is_kind(i, b"subscribe") && i[2] == Resp::Int(1))
        );
        assert_eq!(all[3], Resp::Simple(Bytes::from_static(b"OK")));
        assert_eq!(all[4], Resp::Bulk(None));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic_or_an_allocation() {
        for bad in [
            &b"?what\r\n"[..],
            b"$abc\r\n",
            b"$99999999999999\r\n",
            b"*100000\r\n",
            b"$3\r\nabcXY",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(parse(&mut buf).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = vec![];
        command(&mut out, &[b"AUTH", b"u", b"p w"]);
        assert_eq!(out, b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$3\r\np w\r\n");
    }
}
