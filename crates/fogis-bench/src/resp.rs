//! Just enough of the Redis protocol (RESP2) for the benchmarks, over a plain `TcpStream`:
//!
//! - [`RawSubscriber`]: `SUBSCRIBE` one channel, then only count messages and bytes. It parses
//!   nothing but the `*N`/`$N` headers and skips every payload by its length: the least work a
//!   subscriber can do, so its drain rate is the machine's ceiling for the burst.
//! - [`publish_pipelined`]: every `PUBLISH` written back to back while a second thread reads the
//!   replies (the receiver counts), so neither side waits for the other.
//! - [`Conn`]: one command at a time, for the paced publisher of the steady benchmark.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What the raw subscriber saw.
#[derive(Debug, Clone, Default)]
pub struct RawCount {
    pub messages: u64,
    pub bytes: u64,
    /// When the read that completed the first and the last message returned.
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Redis closed the connection (it cuts off a subscriber whose output buffer is too big).
    pub closed: bool,
}

/// A subscriber that counts; see the module docs.
#[derive(Debug)]
pub struct RawSubscriber {
    thread: std::thread::JoinHandle<std::io::Result<RawCount>>,
}

impl RawSubscriber {
    /// Subscribes (the confirmation has arrived when this returns) and counts on a thread until
    /// `expect` messages arrived, nothing arrived for `idle`, or Redis closed the connection.
    pub fn start(port: u16, channel: &str, expect: u64, idle: Duration) -> std::io::Result<Self> {
        let mut stream = connect(port)?;
        stream.write_all(&command(&[b"SUBSCRIBE", channel.as_bytes()]))?;
        // The confirmation: *3 $9 subscribe $len channel :1
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        for _ in 0..6 {
            line.clear();
            reader.read_line(&mut line)?;
        }
        if !line.starts_with(":1") {
            return Err(std::io::Error::other(format!(
                "SUBSCRIBE answered {line:?}"
            )));
        }
        // Anything the BufReader read past the confirmation would be lost: nothing is published
        // before `start` returns, so there is nothing.
        stream.set_read_timeout(Some(idle))?;
        let thread = std::thread::spawn(move || count(stream, expect));
        Ok(RawSubscriber { thread })
    }

    pub fn join(self) -> std::io::Result<RawCount> {
        self.thread
            .join()
            .map_err(|_| std::io::Error::other("the raw subscriber panicked"))?
    }
}

fn count(mut stream: TcpStream, expect: u64) -> std::io::Result<RawCount> {
    let mut out = RawCount::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut line: Vec<u8> = Vec::with_capacity(32);
    // Bytes of the current bulk string still to skip (its trailing CRLF included).
    let mut skip: usize = 0;
    // Bulk strings still to come in the current message (3: "message", channel, payload).
    let mut bulks_left: u32 = 0;
    while out.messages < expect {
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                out.closed = true;
                break;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        };
        out.bytes += n as u64;
        let before = out.messages;
        let mut i = 0;
        while i < n {
            if skip > 0 {
                let take = skip.min(n - i);
                skip -= take;
                i += take;
                if skip == 0 && bulks_left > 0 {
                    bulks_left -= 1;
                    if bulks_left == 0 {
                        out.messages += 1;
                    }
                }
                continue;
            }
            let b = buf[i];
            i += 1;
            if b != b'\n' {
                line.push(b);
                continue;
            }
            // A header line: `*N` or `$N` (with its '\r').
            let text = std::str::from_utf8(&line[1..line.len().saturating_sub(1)]).unwrap_or("");
            let value: i64 = text.parse().unwrap_or(-1);
            match line.first() {
                Some(b'*') => bulks_left = value.max(0) as u32,
                Some(b'$') if value >= 0 => skip = value as usize + 2,
                _ => {}
            }
            line.clear();
        }
        if out.messages > before {
            let now = Instant::now();
            out.first.get_or_insert(now);
            out.last = Some(now);
        }
    }
    Ok(out)
}

/// What [`publish_pipelined`] did.
#[derive(Debug, Clone)]
pub struct Published {
    pub messages: u64,
    pub bytes: u64,
    pub started: Instant,
    /// The last command was written.
    pub written: Instant,
    /// The last reply was read.
    pub acked: Instant,
    /// Replies that counted fewer receivers than expected.
    pub short: u64,
}

/// Publishes `n` messages made by `make` on `channel`, pipelined.
pub fn publish_pipelined(
    port: u16,
    channel: &str,
    n: u64,
    receivers: u64,
    mut make: impl FnMut(u64) -> Vec<u8>,
) -> std::io::Result<Published> {
    let stream = connect(port)?;
    let replies = stream.try_clone()?;
    let reader = std::thread::spawn(move || -> std::io::Result<(u64, Instant)> {
        let mut reader = BufReader::with_capacity(1 << 16, replies);
        let mut line = String::new();
        let mut short = 0;
        for _ in 0..n {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("Redis closed the publisher"));
            }
            let got: u64 = line.trim().trim_start_matches(':').parse().unwrap_or(0);
            if got < receivers {
                short += 1;
            }
        }
        Ok((short, Instant::now()))
    });
    let started = Instant::now();
    let mut writer = BufWriter::with_capacity(1 << 18, stream);
    let mut bytes = 0;
    for i in 0..n {
        let payload = make(i);
        bytes += payload.len() as u64;
        writer.write_all(&command(&[b"PUBLISH", channel.as_bytes(), &payload]))?;
    }
    writer.flush()?;
    let written = Instant::now();
    let (short, acked) = reader
        .join()
        .map_err(|_| std::io::Error::other("the reply reader panicked"))??;
    Ok(Published {
        messages: n,
        bytes,
        started,
        written,
        acked,
        short,
    })
}

/// A connection for one command at a time.
#[derive(Debug)]
pub struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16) -> std::io::Result<Conn> {
        let writer = connect(port)?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(Conn { writer, reader })
    }

    /// `PUBLISH`; returns the number of receivers.
    pub fn publish(&mut self, channel: &str, payload: &[u8]) -> std::io::Result<u64> {
        self.writer
            .write_all(&command(&[b"PUBLISH", channel.as_bytes(), payload]))?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        line.trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("PUBLISH answered {line:?}")))
    }
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A command as a RESP array of bulk strings.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(args.iter().map(|a| a.len() + 16).sum::<usize>() + 16);
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}
