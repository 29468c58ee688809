//! The UDP socket of the data path: bound to the listen address, non-blocking, large buffers,
//! and "don't fragment" on every outer packet (`IP_PMTUDISC_DO`): a datagram that does not fit
//! the path MTU fails with `EMSGSIZE` instead of being fragmented.
//!
//! The fast path adds `UDP_SEGMENT` (GSO) and `UDP_GRO` here.

use super::counters::DropReason;
use super::wake::{Shutdown, Wait, WRITABLE};
use super::DatapathError;
use std::io;
use std::net::{SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

/// Outcome of [`Udp::send_waiting`].
#[derive(Debug)]
pub(crate) enum Sent {
    /// The datagram was handed to the kernel.
    Ok,
    /// Shutdown was requested while waiting for buffer space.
    Stop,
    /// The send failed: count it under this reason.
    Failed(DropReason, io::Error),
}

/// Send and receive buffer size requested for the socket.
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;

/// The data-path UDP socket.
#[derive(Debug)]
pub(crate) struct Udp {
    sock: UdpSocket,
    /// The socket is IPv6: IPv4 peers are addressed as v4-mapped addresses.
    v6: bool,
}

impl Udp {
    /// Binds `addr` and configures the socket (see the module docs).
    pub(crate) fn bind(addr: SocketAddr) -> Result<Udp, DatapathError> {
        let sock = UdpSocket::bind(addr).map_err(|error| DatapathError::Bind { addr, error })?;
        let opt_err = |option: &'static str| {
            move |error| DatapathError::SocketOption {
                addr,
                option,
                error,
            }
        };
        sock.set_nonblocking(true).map_err(opt_err("O_NONBLOCK"))?;
        set_buffer(&sock, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF).map_err(opt_err("SO_SNDBUF"))?;
        set_buffer(&sock, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF).map_err(opt_err("SO_RCVBUF"))?;
        let v6 = addr.is_ipv6();
        if v6 {
            set_int(
                &sock,
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DO,
            )
            .map_err(opt_err("IPV6_MTU_DISCOVER"))?;
            // Also for IPv4 peers reached through v4-mapped addresses; a v6-only socket
            // refuses it, which is fine.
            let _ = set_int(
                &sock,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            );
        } else {
            set_int(
                &sock,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            )
            .map_err(opt_err("IP_MTU_DISCOVER"))?;
        }
        Ok(Udp { sock, v6 })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Receives one datagram (non-blocking). The sender of an IPv4 datagram on an IPv6
    /// socket is reported as a plain IPv4 address, as peers are listed in the table.
    #[inline]
    pub(crate) fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.sock.recv_from(buf)?;
        Ok((n, unmap(from)))
    }

    /// Sends one datagram to `to` (non-blocking).
    #[inline]
    pub(crate) fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = match to {
            SocketAddr::V4(v4) if self.v6 => {
                SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            other => other,
        };
        self.sock.send_to(datagram, to)
    }

    /// Sends one datagram, waiting for socket buffer space if it is full (unless shutdown is
    /// requested meanwhile). `EMSGSIZE` (larger than the path MTU, never fragmented) is
    /// [`DropReason::TooBig`]; other errors are [`DropReason::IoError`].
    #[inline]
    pub(crate) fn send_waiting(
        &self,
        datagram: &[u8],
        to: SocketAddr,
        shutdown: &Shutdown,
    ) -> Sent {
        loop {
            match self.send_to(datagram, to) {
                Ok(_) => return Sent::Ok,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if shutdown.wait(self.as_fd(), WRITABLE, -1) == Wait::Stop {
                        return Sent::Stop;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    return Sent::Failed(DropReason::TooBig, e)
                }
                Err(e) => return Sent::Failed(DropReason::IoError, e),
            }
        }
    }
}

impl AsFd for Udp {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// `[::ffff:a.b.c.d]:p` → `a.b.c.d:p`; other addresses unchanged.
#[inline]
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

/// Sets a buffer size with the `*FORCE` option (ignores `net.core.*mem_max`, needs
/// CAP_NET_ADMIN), falling back to the capped option.
fn set_buffer(sock: &UdpSocket, force: libc::c_int, plain: libc::c_int) -> io::Result<()> {
    let size = SOCKET_BUFFER as libc::c_int;
    set_int(sock, libc::SOL_SOCKET, force, size)
        .or_else(|_| set_int(sock, libc::SOL_SOCKET, plain, size))
}

fn set_int(
    sock: &UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads `optlen` bytes from `optval`, which points at a live c_int of
    // exactly that size; the fd is an open socket borrowed for the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn v4_mapped_senders_are_unmapped() {
        let mapped: SocketAddr = "[::ffff:10.99.0.1]:6783".parse().expect("addr");
        assert_eq!(
            unmap(mapped),
            SocketAddr::from((Ipv4Addr::new(10, 99, 0, 1), 6783))
        );
        let v6: SocketAddr = "[fd00::1]:6783".parse().expect("addr");
        assert_eq!(unmap(v6), v6);
    }

    #[test]
    fn loopback_socket_round_trip() {
        let a = Udp::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let b = Udp::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let to = b.local_addr().expect("addr");
        a.send_to(b"hello", to).expect("send");
        let mut buf = [0u8; 16];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let (n, from) = loop {
            match b.recv_from(&mut buf) {
                Ok(r) => break r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "datagram within 5 s");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("recv: {e}"),
            }
        };
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, a.local_addr().expect("addr"));
    }
}
