//! Test traffic between namespaces: checksummed TCP transfers, UDP echoes, and one-line TCP
//! exchanges that report the source address the server saw (NAT checks).

use crate::netns::Netns;
use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

static NEXT_PORT: AtomicU16 = AtomicU16::new(17_000);

fn port() -> u16 {
    NEXT_PORT.fetch_add(1, Ordering::Relaxed)
}

/// Result of a checksummed transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes the receiver got.
    pub received: u64,
    /// SHA-256 of what the sender sent.
    pub sent_sha256: [u8; 32],
    /// SHA-256 of what the receiver got.
    pub received_sha256: [u8; 32],
    /// Time from connect to the receiver seeing the end.
    pub elapsed: Duration,
}

impl Transfer {
    /// Throughput in Mbit/s.
    pub fn mbit_per_s(&self) -> f64 {
        self.received as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so corruption cannot hide in zeros.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let v = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Sends `bytes` of pseudo-random data over TCP from `client` to `server_ip` (an address of
/// `server`), hashing both ends. Fails if anything takes longer than `timeout`.
pub fn tcp_transfer(
    server: &Netns,
    server_ip: Ipv4Addr,
    client: &Netns,
    bytes: u64,
    timeout: Duration,
) -> anyhow::Result<Transfer> {
    let addr = SocketAddr::from((server_ip, port()));
    let listener = server.run(move || TcpListener::bind(addr))??;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    let receiver = std::thread::spawn(move || -> anyhow::Result<(u64, [u8; 32])> {
        let (mut s, _) = accept_until(&listener, deadline)
            .with_context(|| format!("no connection to {addr} within {timeout:?}"))?;
        s.set_read_timeout(Some(timeout))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf).context("receiving")?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            total += n as u64;
            if Instant::now() >= deadline {
                bail!("transfer to {addr} not finished within {timeout:?} ({total} bytes)");
            }
        }
        Ok((total, h.finalize().into()))
    });
    let start = Instant::now();
    let sent = client.run(move || -> anyhow::Result<[u8; 32]> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_write_timeout(Some(timeout))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut left = bytes;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64))?;
            fill(&mut buf[..n], &mut state);
            s.write_all(&buf[..n])
                .with_context(|| format!("sending to {addr}"))?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(h.finalize().into())
    })??;
    let (received, received_sha256) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    Ok(Transfer {
        received,
        sent_sha256: sent,
        received_sha256,
        elapsed: start.elapsed(),
    })
}

/// Echoes UDP datagrams of each size in `sizes` from `client` to `server_ip` and back.
/// Each size is tried up to three times (UDP may drop); fails naming the first size that
/// never came back intact.
pub fn udp_echo(
    server: &Netns,
    server_ip: Ipv4Addr,
    client: &Netns,
    sizes: &[usize],
) -> anyhow::Result<()> {
    let addr = SocketAddr::from((server_ip, port()));
    let sock = server.run(move || UdpSocket::bind(addr))??;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let echo = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    let sizes = sizes.to_vec();
    let result = client.run(move || -> anyhow::Result<()> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut state = 7u64;
        let mut out = vec![0u8; 1 << 16];
        let mut back = vec![0u8; 1 << 16];
        for size in sizes {
            fill(&mut out[..size], &mut state);
            let ok = (0..3).any(|_| {
                if s.send_to(&out[..size], addr).is_err() {
                    return false;
                }
                matches!(s.recv_from(&mut back), Ok((n, _)) if n == size && back[..n] == out[..size])
            });
            if !ok {
                bail!("UDP datagram of {size} bytes to {addr} did not come back intact");
            }
        }
        Ok(())
    })?;
    stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
    result
}

/// True if a TCP connection from `client` to `ip:port` succeeds within `timeout`.
pub fn tcp_connects(client: &Netns, addr: SocketAddr, timeout: Duration) -> anyhow::Result<bool> {
    client.run(move || TcpStream::connect_timeout(&addr, timeout).is_ok())
}

/// Sends UDP datagrams with a forged source address and port from inside `ns`, through a raw
/// socket (the source port may be one an agent has bound). The UDP checksum is left zero
/// ("none" in IPv4).
pub fn udp_forged(
    ns: &Netns,
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    payloads: Vec<Vec<u8>>,
) -> anyhow::Result<()> {
    ns.run(move || -> anyhow::Result<()> {
        // SAFETY: socket() with constant arguments; the fd is owned by `_guard` below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP) };
        if fd < 0 {
            bail!("raw socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd is a valid descriptor we own; OwnedFd closes it once.
        let _guard = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: sockaddr_in is plain data; zeroed is a valid value.
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as libc::sa_family_t;
        to.sin_addr.s_addr = u32::from(*dst.ip()).to_be();
        // The kernel fills the IP header from the socket; bind it to the forged source address.
        let mut from = to;
        from.sin_addr.s_addr = u32::from(*src.ip()).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `from` is a valid sockaddr_in of `len` bytes.
        if unsafe { libc::bind(fd, (&raw const from).cast(), len) } != 0 {
            bail!(
                "bind raw socket to {src}: {}",
                std::io::Error::last_os_error()
            );
        }
        for payload in payloads {
            let total = 8 + payload.len();
            let mut d = Vec::with_capacity(total);
            d.extend_from_slice(&src.port().to_be_bytes());
            d.extend_from_slice(&dst.port().to_be_bytes());
            d.extend_from_slice(&u16::try_from(total)?.to_be_bytes());
            d.extend_from_slice(&[0, 0]);
            d.extend_from_slice(&payload);
            // SAFETY: d is a valid buffer of d.len() bytes; `to` a valid sockaddr_in.
            let n = unsafe {
                libc::sendto(
                    fd,
                    d.as_ptr().cast(),
                    d.len(),
                    0,
                    (&raw const to).cast(),
                    len,
                )
            };
            if n < 0 {
                bail!("sendto {dst}: {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    })?
}

/// Serves one TCP connection at `addr` inside `server`: reads a line and answers
/// `<line> from <peer>`. The handle returns the peer address the server saw (what tells
/// whether the client's address was translated on the way), or an error when no
/// connection came within `timeout`.
/// The first connection `listener` (non-blocking) accepts before `deadline`, made blocking.
pub(crate) fn accept_until(
    listener: &TcpListener,
    deadline: Instant,
) -> anyhow::Result<(TcpStream, SocketAddr)> {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false)?;
                return Ok((stream, peer));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    bail!("timed out");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub fn tcp_serve_once(
    server: &Netns,
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<SocketAddr>>> {
    let listener = server
        .run(move || TcpListener::bind(addr))?
        .with_context(|| format!("binding {addr} in {}", server.name()))?;
    listener.set_nonblocking(true)?;
    Ok(std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        let (stream, peer) = accept_until(&listener, deadline)
            .with_context(|| format!("no connection to {addr} within {timeout:?}"))?;
        stream.set_read_timeout(Some(timeout))?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut line)?;
        (&stream).write_all(format!("{} from {peer}\n", line.trim()).as_bytes())?;
        Ok(peer)
    }))
}

/// Connects from `client` to `to` (giving up after `timeout`), sends `hello`, returns the
/// answer line of a [`tcp_serve_once`] server: `hello from <the address it saw>`.
pub fn tcp_hello(client: &Netns, to: SocketAddr, timeout: Duration) -> anyhow::Result<String> {
    client.run(move || -> anyhow::Result<String> {
        let s = TcpStream::connect_timeout(&to, timeout)
            .with_context(|| format!("connecting to {to}"))?;
        s.set_read_timeout(Some(timeout))?;
        (&s).write_all(b"hello\n")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&s), &mut line)?;
        Ok(line.trim().to_owned())
    })?
}
