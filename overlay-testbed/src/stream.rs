//! A long, paced TCP stream between namespaces whose every byte is checked, for tests that
//! disturb the path while it runs (agent restarts).
//!
//! The client writes a known pseudo-random byte stream at a steady rate until told to stop;
//! the server compares each byte it receives with the same stream (a corrupted, lost or
//! duplicated byte fails at its offset), hashes both ends (SHA-256), and notes every stall
//! (a pause between two reads longer than [`STALL`]). A reset or any other socket error on
//! either side is reported as an error naming the side and the byte count.

use crate::netns::Netns;
use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A pause between reads longer than this is recorded as a stall.
pub const STALL: Duration = Duration::from_millis(50);
/// Bytes per write.
const CHUNK: usize = 16 << 10;

static NEXT_PORT: AtomicU16 = AtomicU16::new(19_000);

/// A pause in the received stream.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    /// When the last read before the pause returned.
    pub from: Instant,
    /// When the first read after it returned.
    pub to: Instant,
}

/// What a finished stream saw.
#[derive(Debug, Clone)]
pub struct StreamReport {
    /// Bytes written by the client.
    pub sent: u64,
    /// Bytes received (and checked) by the server.
    pub received: u64,
    /// SHA-256 of what was sent.
    pub sent_sha256: [u8; 32],
    /// SHA-256 of what was received.
    pub received_sha256: [u8; 32],
    /// Every pause longer than [`STALL`], in order.
    pub stalls: Vec<Stall>,
}

impl StreamReport {
    /// Time from `t` (e.g. a SIGTERM) until bytes flowed again: to the end of the stall that
    /// was under way at `t` or began within `within` after it; zero when there was none (the
    /// stream never paused longer than [`STALL`]).
    pub fn gap_after(&self, t: Instant, within: Duration) -> Duration {
        self.stalls
            .iter()
            .find(|s| s.to > t && s.from <= t + within)
            .map_or(Duration::ZERO, |s| s.to.saturating_duration_since(t))
    }
}

/// A running stream; [`Stream::finish`] ends it.
#[derive(Debug)]
pub struct Stream {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    stalls: Arc<Mutex<Vec<Stall>>>,
    sender: JoinHandle<anyhow::Result<(u64, [u8; 32])>>,
    receiver: JoinHandle<anyhow::Result<(u64, [u8; 32])>>,
}

/// The byte stream both ends agree on (xorshift64*, one byte at a time from 8-byte words).
struct Pattern {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Pattern {
    fn new() -> Pattern {
        Pattern {
            state: 0x2545_f491_4f6c_dd1d,
            word: [0; 8],
            used: 8,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used == 8 {
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.word = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
        }
    }
}

/// Starts a stream from `client` to `server_ip` (an address of `server`) at about
/// `bytes_per_s`. A read or write that blocks longer than `io_timeout` fails it.
pub fn start(
    server: &Netns,
    server_ip: Ipv4Addr,
    client: &Netns,
    bytes_per_s: u64,
    io_timeout: Duration,
) -> anyhow::Result<Stream> {
    let addr = SocketAddr::from((server_ip, NEXT_PORT.fetch_add(1, Ordering::Relaxed)));
    let listener = server.run(move || TcpListener::bind(addr))??;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let stalls = Arc::new(Mutex::new(Vec::new()));
    let (got, log) = (received.clone(), stalls.clone());
    let receiver = std::thread::spawn(move || receive(&listener, io_timeout, &got, &log));
    let stopped = stop.clone();
    let sender = client.spawn(move || send(addr, bytes_per_s, io_timeout, &stopped))?;
    Ok(Stream {
        stop,
        received,
        stalls,
        sender,
        receiver,
    })
}

impl Stream {
    /// Bytes received and checked so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The stalls so far.
    pub fn stalls(&self) -> Vec<Stall> {
        self.stalls.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// True while neither end has stopped (with an error, or at the end).
    pub fn running(&self) -> bool {
        !self.sender.is_finished() && !self.receiver.is_finished()
    }

    /// Tells the client to stop, waits (up to `timeout`) for the server to read the end, and
    /// returns what both saw, or the first end's error.
    pub fn finish(self, timeout: Duration) -> anyhow::Result<StreamReport> {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        while !(self.sender.is_finished() && self.receiver.is_finished()) {
            if Instant::now() >= deadline {
                bail!(
                    "the stream did not end within {timeout:?} of being told to (received {} bytes)",
                    self.received()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let sent = self
            .sender
            .join()
            .map_err(|_| anyhow::anyhow!("the stream's client panicked"))?;
        let got = self
            .receiver
            .join()
            .map_err(|_| anyhow::anyhow!("the stream's server panicked"))?;
        let ((sent, sent_sha256), (received, received_sha256)) = match (sent, got) {
            (Ok(s), Ok(r)) => (s, r),
            (Err(e), _) => return Err(e.context("the stream's client failed")),
            (_, Err(e)) => return Err(e.context("the stream's server failed")),
        };
        let stalls = self.stalls.lock().map(|s| s.clone()).unwrap_or_default();
        Ok(StreamReport {
            sent,
            received,
            sent_sha256,
            received_sha256,
            stalls,
        })
    }
}

/// Describes a socket error, calling a reset a reset.
fn describe(e: &std::io::Error, side: &str, bytes: u64) -> String {
    match e.kind() {
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            format!("the connection was reset ({e}) after {side} {bytes} bytes")
        }
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("no progress within the I/O timeout after {side} {bytes} bytes")
        }
        _ => format!("{e} after {side} {bytes} bytes"),
    }
}

fn send(
    addr: SocketAddr,
    bytes_per_s: u64,
    io_timeout: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<(u64, [u8; 32])> {
    let mut s = TcpStream::connect_timeout(&addr, io_timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_write_timeout(Some(io_timeout))?;
    let mut pattern = Pattern::new();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    let mut start = Instant::now();
    let mut sent_at_start = 0u64;
    while !stop.load(Ordering::Relaxed) {
        pattern.fill(&mut buf);
        s.write_all(&buf)
            .map_err(|e| anyhow::anyhow!(describe(&e, "sending", sent)))?;
        h.update(&buf);
        sent += CHUNK as u64;
        // Pace: wait until the rate allows the next chunk. After a stall, restart the clock
        // rather than bursting to catch up.
        let due = Duration::from_secs_f64((sent - sent_at_start) as f64 / bytes_per_s as f64);
        let elapsed = start.elapsed();
        if elapsed > due + Duration::from_secs(1) {
            start = Instant::now();
            sent_at_start = sent;
        } else if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| anyhow::anyhow!(describe(&e, "sending", sent)))?;
    // Wait for the server to close: a reset now is still a failure.
    let mut rest = [0u8; 64];
    s.set_read_timeout(Some(io_timeout))?;
    match s.read(&mut rest) {
        Ok(0) => {}
        Ok(_) => bail!("the server sent data"),
        Err(e) => bail!(describe(&e, "sending", sent)),
    }
    Ok((sent, h.finalize().into()))
}

fn receive(
    listener: &TcpListener,
    io_timeout: Duration,
    received: &AtomicU64,
    stalls: &Mutex<Vec<Stall>>,
) -> anyhow::Result<(u64, [u8; 32])> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + io_timeout;
    let (mut s, _) = crate::traffic::accept_until(listener, deadline)
        .with_context(|| format!("no connection within {io_timeout:?}"))?;
    s.set_read_timeout(Some(io_timeout))?;
    let mut pattern = Pattern::new();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut expected = vec![0u8; 1 << 16];
    let mut total = 0u64;
    let mut last = Instant::now();
    loop {
        let n = s
            .read(&mut buf)
            .map_err(|e| anyhow::anyhow!(describe(&e, "receiving", total)))?;
        let now = Instant::now();
        if now.duration_since(last) > STALL && total > 0 {
            if let Ok(mut log) = stalls.lock() {
                log.push(Stall {
                    from: last,
                    to: now,
                });
            }
        }
        last = now;
        if n == 0 {
            break;
        }
        pattern.fill(&mut expected[..n]);
        if let Some(i) = (0..n).find(|&i| buf[i] != expected[i]) {
            bail!(
                "byte {} differs: received {:#04x}, sent {:#04x}",
                total + i as u64,
                buf[i],
                expected[i]
            );
        }
        h.update(&buf[..n]);
        total += n as u64;
        received.store(total, Ordering::Relaxed);
    }
    Ok((total, h.finalize().into()))
}
