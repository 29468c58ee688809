//! The UDP socket of the data path: bound to the listen address, non-blocking, large buffers,
//! "don't fragment" on every outer packet (`IP_PMTUDISC_DO`: a datagram that does not fit the
//! path MTU fails with `EMSGSIZE` instead of being fragmented), and the two UDP offloads:
//!
//! - **GSO** ([`Udp::send_segments`]): datagrams of equal size laid out back to back (the last
//!   may be shorter) go to the kernel in one `sendmsg` with a `UDP_SEGMENT` control message
//!   (at most [`MAX_GSO_BYTES`] and [`MAX_GSO_SEGMENTS`] per call, so a long run takes several
//!   calls). If the kernel refuses (`EIO`: the device cannot checksum; `EINVAL`) and the same
//!   datagrams then go out one by one, GSO is switched off for the rest of the run (or, if the
//!   call carried more than 64 segments, the limit drops to the 64 of older kernels first).
//! - **GRO** ([`Udp::recv_batch`]): with `UDP_GRO` on, one `recvmsg` returns several
//!   datagrams of one sender back to back, all [`Batch::segment`] bytes long except the last
//!   (the size comes in a `UDP_GRO` control message).
//!
//! Every `unsafe` block here is a plain libc call over buffers borrowed for its duration.

use super::offloads::Disabled;
use super::wake::{Shutdown, Wait, WRITABLE};
use super::DatapathError;
use overlay_proto::dataplane::DropReason;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Send and receive buffer size requested for the socket.
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;
/// Most bytes one GSO send may carry (the largest UDP payload over IPv4).
pub(crate) const MAX_GSO_BYTES: usize = 65507;
/// Most datagrams one GSO send may carry (`UDP_MAX_SEGMENTS` of Linux ≥ 6.9).
pub(crate) const MAX_GSO_SEGMENTS: usize = 128;
/// `UDP_MAX_SEGMENTS` of older kernels.
const OLD_MAX_GSO_SEGMENTS: usize = 64;

/// What one receive returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batch {
    /// Bytes received: one datagram, or several back to back (GRO).
    pub(crate) len: usize,
    /// Length of every datagram in the batch but the last (which may be shorter); `len` when
    /// the batch is one datagram.
    pub(crate) segment: usize,
    /// The sender (IPv4 senders on an IPv6 socket unmapped, as peers are listed).
    pub(crate) from: SocketAddr,
    /// The buffer was too small and the end of the batch was cut off.
    pub(crate) truncated: bool,
}

impl Batch {
    /// Number of datagrams in the batch (an empty datagram is one).
    pub(crate) fn count(&self) -> usize {
        self.len.div_ceil(self.segment.max(1)).max(1)
    }
}

/// What [`Udp::send_segments`] did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Datagrams handed to the kernel.
    pub(crate) sent: usize,
    /// `sendmsg` calls that carried several datagrams (GSO).
    pub(crate) gso_sends: usize,
    /// Datagrams larger than the path MTU (`EMSGSIZE`): [`DropReason::TooBig`].
    pub(crate) too_big: usize,
    /// Datagrams lost to other send errors: [`DropReason::IoError`].
    pub(crate) io_errors: usize,
    /// The last error, for the log.
    pub(crate) error: Option<io::Error>,
    /// Shutdown was requested while waiting for buffer space; the rest was not sent.
    pub(crate) stop: bool,
}

impl Outcome {
    fn failed(&mut self, datagrams: usize, error: io::Error) {
        if error.raw_os_error() == Some(libc::EMSGSIZE) {
            self.too_big += datagrams;
        } else {
            self.io_errors += datagrams;
        }
        self.error = Some(error);
    }

    /// The drop reasons and counts of the datagrams that were not sent.
    pub(crate) fn drops(&self) -> [(DropReason, usize); 2] {
        [
            (DropReason::TooBig, self.too_big),
            (DropReason::IoError, self.io_errors),
        ]
    }
}

/// Why one `sendmsg` did not happen.
#[derive(Debug)]
enum SendError {
    Stop,
    Os(io::Error),
}

/// The data-path UDP socket.
#[derive(Debug)]
pub(crate) struct Udp {
    sock: UdpSocket,
    /// The socket is IPv6: IPv4 peers are addressed as v4-mapped addresses.
    v6: bool,
    /// `UDP_GRO` is on.
    gro: bool,
    /// GSO sends are used (until the kernel refuses one).
    gso: AtomicBool,
    /// Most segments per GSO send.
    max_segments: AtomicUsize,
}

impl Udp {
    /// Binds `addr` and configures the socket (see the module docs). GSO and GRO are used
    /// unless `disabled` says otherwise; a kernel without `UDP_GRO` just gets no GRO.
    pub(crate) fn bind(addr: SocketAddr, disabled: &Disabled) -> Result<Udp, DatapathError> {
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
        let gro = !disabled.udp_gro
            && match set_int(&sock, libc::SOL_UDP, libc::UDP_GRO, 1) {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%addr, %error, "UDP_GRO refused: one datagram per receive");
                    false
                }
            };
        Ok(Udp {
            sock,
            v6,
            gro,
            gso: AtomicBool::new(!disabled.udp_gso),
            max_segments: AtomicUsize::new(MAX_GSO_SEGMENTS),
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// True if receives may return several datagrams.
    pub(crate) fn gro(&self) -> bool {
        self.gro
    }

    /// True if sends carry several datagrams (until the kernel refuses one).
    pub(crate) fn gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Receives one datagram or one GRO batch into `buf` (non-blocking).
    #[inline]
    pub(crate) fn recv_batch(&self, buf: &mut [u8]) -> io::Result<Batch> {
        let mut name = MaybeUninit::<libc::sockaddr_storage>::zeroed();
        let mut control = Control([0; CONTROL_LEN]);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is a plain C struct; all-zero is a valid (empty) value of it.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = name.as_mut_ptr().cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = CONTROL_LEN as _;
        // SAFETY: every pointer in `msg` (name, iovec over `buf`, control) points at live,
        // exclusively borrowed memory of the stated length for the duration of the call; the
        // fd is an open socket.
        let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = n as usize;
        let mut segment = len;
        // SAFETY: `msg` was filled by a successful recvmsg: msg_control/msg_controllen
        // describe the control messages the kernel wrote into `control`, which is still
        // alive; the CMSG_* macros only walk within that range.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                    let size =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                    if size > 0 {
                        segment = (size as usize).min(len);
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        // SAFETY: recvmsg succeeded, so it wrote a sender address of `msg_namelen` bytes
        // (a UDP socket always reports one) into the zero-initialised storage.
        let from = unsafe { from_sockaddr(name.assume_init_ref(), msg.msg_namelen) };
        let from = from.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
        Ok(Batch {
            len,
            segment: segment.max(1),
            from,
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        })
    }

    /// Sends one datagram to `to` (non-blocking).
    pub(crate) fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = match to {
            SocketAddr::V4(v4) if self.v6 => {
                SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            other => other,
        };
        self.sock.send_to(datagram, to)
    }

    /// Sends the datagrams laid out back to back in `data`, each `segment` bytes long except
    /// the last, to `to`: with GSO in as few calls as the limits allow, else one by one.
    /// Waits for socket buffer space when it is full (unless shutdown is requested).
    pub(crate) fn send_segments(
        &self,
        data: &[u8],
        segment: usize,
        to: SocketAddr,
        shutdown: &Shutdown,
    ) -> Outcome {
        let mut out = Outcome::default();
        let addr = RawAddr::new(to, self.v6);
        let segment = if segment == 0 { data.len() } else { segment };
        let mut rest = data;
        while !rest.is_empty() && !out.stop {
            let left = rest.len().div_ceil(segment);
            let per_call = if self.gso() && segment <= usize::from(u16::MAX) {
                self.max_segments
                    .load(Ordering::Relaxed)
                    .min(MAX_GSO_BYTES / segment)
            } else {
                1
            };
            if left < 2 || per_call < 2 {
                let (one, tail) = rest.split_at(segment.min(rest.len()));
                rest = tail;
                self.send_one(one, &addr, shutdown, &mut out);
                continue;
            }
            let n = left.min(per_call);
            let (chunk, tail) = rest.split_at((n * segment).min(rest.len()));
            rest = tail;
            match self.send_waiting(chunk, Some(segment as u16), &addr, shutdown) {
                Ok(()) => {
                    out.sent += n;
                    out.gso_sends += 1;
                }
                Err(SendError::Stop) => out.stop = true,
                Err(SendError::Os(error))
                    if matches!(error.raw_os_error(), Some(libc::EIO | libc::EINVAL)) =>
                {
                    let before = out.sent;
                    for one in chunk.chunks(segment) {
                        if out.stop {
                            break;
                        }
                        self.send_one(one, &addr, shutdown, &mut out);
                    }
                    if out.sent - before == n {
                        // The datagrams are fine one by one: GSO itself is refused.
                        self.gso_refused(n, &error);
                    }
                }
                Err(SendError::Os(error)) => out.failed(n, error),
            }
        }
        out
    }

    /// Sends one datagram, counting it in `out`.
    fn send_one(&self, datagram: &[u8], addr: &RawAddr, shutdown: &Shutdown, out: &mut Outcome) {
        match self.send_waiting(datagram, None, addr, shutdown) {
            Ok(()) => out.sent += 1,
            Err(SendError::Stop) => out.stop = true,
            Err(SendError::Os(error)) => out.failed(1, error),
        }
    }

    /// The kernel refused a GSO send of `segments` datagrams that it accepts one by one.
    #[cold]
    fn gso_refused(&self, segments: usize, error: &io::Error) {
        if segments > OLD_MAX_GSO_SEGMENTS
            && self
                .max_segments
                .swap(OLD_MAX_GSO_SEGMENTS, Ordering::Relaxed)
                > OLD_MAX_GSO_SEGMENTS
        {
            tracing::info!(%error, "UDP GSO of {segments} segments refused: at most {OLD_MAX_GSO_SEGMENTS} per send from now on");
        } else if self.gso.swap(false, Ordering::Relaxed) {
            tracing::warn!(%error, "UDP GSO refused by the kernel: sending datagram by datagram from now on");
        }
    }

    /// One `sendmsg` (with a `UDP_SEGMENT` of `segment` if given), waiting for buffer space.
    #[inline]
    fn send_waiting(
        &self,
        data: &[u8],
        segment: Option<u16>,
        addr: &RawAddr,
        shutdown: &Shutdown,
    ) -> Result<(), SendError> {
        loop {
            match self.sendmsg(data, segment, addr) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if shutdown.wait(self.as_fd(), WRITABLE, -1) == Wait::Stop {
                        return Err(SendError::Stop);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SendError::Os(e)),
            }
        }
    }

    #[inline]
    fn sendmsg(&self, data: &[u8], segment: Option<u16>, addr: &RawAddr) -> io::Result<()> {
        let mut control = Control([0; CONTROL_LEN]);
        let mut iov = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is a plain C struct; all-zero is a valid (empty) value of it.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&addr.storage as *const libc::sockaddr_storage)
            .cast_mut()
            .cast();
        msg.msg_namelen = addr.len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(segment) = segment {
            msg.msg_control = control.0.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE is a pure size computation.
            msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
            // SAFETY: msg_control points at `control`, aligned for cmsghdr and larger than
            // CMSG_SPACE(2), so the first header and its 2 data bytes lie inside it.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
            }
        }
        // SAFETY: every pointer in `msg` (destination address, iovec over `data` which the
        // kernel only reads, control) points at live memory of the stated length for the
        // duration of the call; the fd is an open socket.
        let rc = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Disables the UDP checksum on sends, which makes the kernel refuse GSO (`EINVAL`):
    /// the fallback can then be tested on any machine.
    #[cfg(test)]
    pub(crate) fn break_gso_for_test(&self) {
        set_int(&self.sock, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).expect("SO_NO_CHECK");
    }
}

impl AsFd for Udp {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Room for the control messages we send or expect (one `UDP_SEGMENT` or `UDP_GRO`).
const CONTROL_LEN: usize = 64;

/// A control-message buffer aligned for `cmsghdr`.
#[repr(C, align(8))]
struct Control([u8; CONTROL_LEN]);

/// A destination address in the kernel's format.
struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    /// `to` as a `sockaddr_in` or `sockaddr_in6` (IPv4 as v4-mapped on an IPv6 socket).
    fn new(to: SocketAddr, v6_socket: bool) -> RawAddr {
        // SAFETY: sockaddr_storage is a plain C struct; all-zero is a valid value of it.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let v6 = match to {
            SocketAddr::V4(v4) if !v6_socket => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe {
                    std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin)
                };
                return RawAddr {
                    storage,
                    len: size_of::<libc::sockaddr_in>() as libc::socklen_t,
                };
            }
            SocketAddr::V4(v4) => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
            SocketAddr::V6(v6) => v6,
        };
        let sin6 = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: v6.port().to_be(),
            sin6_flowinfo: v6.flowinfo().to_be(),
            sin6_addr: libc::in6_addr {
                s6_addr: v6.ip().octets(),
            },
            sin6_scope_id: v6.scope_id(),
        };
        // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
        unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
        RawAddr {
            storage,
            len: size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        }
    }
}

/// The address in `storage` (IPv4-mapped IPv6 addresses as plain IPv4), if it is IPv4 or IPv6.
///
/// # Safety
/// `storage` must hold a socket address of `len` bytes as the kernel writes them.
unsafe fn from_sockaddr(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    let ptr = (storage as *const libc::sockaddr_storage).cast::<u8>();
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says sockaddr_in and `len` covers it; storage is aligned.
            let sin = unsafe { &*ptr.cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says sockaddr_in6 and `len` covers it; storage is aligned.
            let sin6 = unsafe { &*ptr.cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    u32::from_be(sin6.sin6_flowinfo),
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
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
            size_of::<libc::c_int>() as libc::socklen_t,
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
    use std::time::{Duration, Instant};

    fn bind(disabled: Disabled) -> Udp {
        Udp::bind("127.0.0.1:0".parse().expect("addr"), &disabled).expect("bind")
    }

    /// Receives batches until `want` datagrams arrived (bounded), returning them.
    fn recv_datagrams(sock: &Udp, want: usize) -> (Vec<Vec<u8>>, Vec<Batch>) {
        let mut buf = vec![0u8; 1 << 16];
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut datagrams, mut batches) = (Vec::new(), Vec::new());
        while datagrams.len() < want {
            match sock.recv_batch(&mut buf) {
                Ok(b) => {
                    assert!(!b.truncated);
                    datagrams.extend(buf[..b.len].chunks(b.segment).map(<[u8]>::to_vec));
                    batches.push(b);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "{want} datagrams within 5 s, got {}",
                        datagrams.len()
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        (datagrams, batches)
    }

    /// `count` datagrams of `segment` bytes (the last `last` bytes), each filled with its index.
    fn layout(count: usize, segment: usize, last: usize) -> Vec<u8> {
        let mut data = Vec::new();
        for i in 0..count {
            let len = if i + 1 == count { last } else { segment };
            data.extend(std::iter::repeat_n(i as u8, len));
        }
        data
    }

    fn check(datagrams: &[Vec<u8>], count: usize, segment: usize, last: usize) {
        assert_eq!(datagrams.len(), count);
        for (i, d) in datagrams.iter().enumerate() {
            let len = if i + 1 == count { last } else { segment };
            assert_eq!(d.len(), len, "datagram {i}");
            assert!(d.iter().all(|&b| b == i as u8), "datagram {i} intact");
        }
    }

    #[test]
    fn v4_mapped_senders_are_unmapped() {
        let mapped: SocketAddr = "[::ffff:10.99.0.1]:6783".parse().expect("addr");
        let raw = RawAddr::new(mapped, true);
        // SAFETY: RawAddr::new wrote a sockaddr_in6 of raw.len bytes.
        let back = unsafe { from_sockaddr(&raw.storage, raw.len) };
        assert_eq!(
            back,
            Some(SocketAddr::from((Ipv4Addr::new(10, 99, 0, 1), 6783)))
        );
        let v6: SocketAddr = "[fd00::1]:6783".parse().expect("addr");
        let raw = RawAddr::new(v6, true);
        // SAFETY: as above.
        assert_eq!(unsafe { from_sockaddr(&raw.storage, raw.len) }, Some(v6));
        let v4: SocketAddr = "10.1.2.3:99".parse().expect("addr");
        let raw = RawAddr::new(v4, false);
        // SAFETY: RawAddr::new wrote a sockaddr_in of raw.len bytes.
        assert_eq!(unsafe { from_sockaddr(&raw.storage, raw.len) }, Some(v4));
    }

    #[test]
    fn loopback_socket_round_trip() {
        let a = bind(Disabled::default());
        let b = bind(Disabled::default());
        a.send_to(b"hello", b.local_addr().expect("addr"))
            .expect("send");
        let (datagrams, batches) = recv_datagrams(&b, 1);
        assert_eq!(datagrams, vec![b"hello".to_vec()]);
        assert_eq!(batches[0].from, a.local_addr().expect("addr"));
        assert_eq!(batches[0].count(), 1);
    }

    #[test]
    fn gso_send_arrives_as_separate_datagrams_without_gro() {
        let a = bind(Disabled::default());
        let b = bind(Disabled {
            udp_gro: true,
            ..Disabled::default()
        });
        assert!(!b.gro());
        let shutdown = Shutdown::new().expect("eventfd");
        let data = layout(10, 1000, 321);
        let out = a.send_segments(&data, 1000, b.local_addr().expect("addr"), &shutdown);
        assert_eq!((out.sent, out.gso_sends, out.io_errors), (10, 1, 0));
        let (datagrams, batches) = recv_datagrams(&b, 10);
        check(&datagrams, 10, 1000, 321);
        assert!(batches.iter().all(|b| b.count() == 1));
    }

    #[test]
    fn gro_receives_a_gso_send_as_one_batch() {
        let a = bind(Disabled::default());
        let b = bind(Disabled::default());
        assert!(b.gro());
        let shutdown = Shutdown::new().expect("eventfd");
        let data = layout(20, 1400, 1400);
        let out = a.send_segments(&data, 1400, b.local_addr().expect("addr"), &shutdown);
        assert_eq!((out.sent, out.gso_sends), (20, 1));
        let (datagrams, batches) = recv_datagrams(&b, 20);
        check(&datagrams, 20, 1400, 1400);
        assert!(batches.len() < 20, "GRO batched: {batches:?}");
        assert!(batches.iter().all(|x| x.segment == 1400 || x.count() == 1));
    }

    #[test]
    fn long_runs_are_cut_at_the_gso_limits() {
        let a = bind(Disabled::default());
        let b = bind(Disabled::default());
        let shutdown = Shutdown::new().expect("eventfd");
        // 100 × 1000 bytes: more than 65507 bytes per call.
        let data = layout(100, 1000, 10);
        let out = a.send_segments(&data, 1000, b.local_addr().expect("addr"), &shutdown);
        assert_eq!((out.sent, out.gso_sends), (100, 2));
        check(&recv_datagrams(&b, 100).0, 100, 1000, 10);
        // 300 × 100 bytes: more than 128 segments per call.
        let data = layout(300, 100, 100);
        let out = a.send_segments(&data, 100, b.local_addr().expect("addr"), &shutdown);
        assert_eq!((out.sent, out.gso_sends), (300, 3));
        check(&recv_datagrams(&b, 300).0, 300, 100, 100);
    }

    #[test]
    fn refused_gso_falls_back_to_one_datagram_per_send_for_good() {
        let a = bind(Disabled::default());
        let b = bind(Disabled::default());
        a.break_gso_for_test();
        let shutdown = Shutdown::new().expect("eventfd");
        let data = layout(5, 500, 500);
        let out = a.send_segments(&data, 500, b.local_addr().expect("addr"), &shutdown);
        assert_eq!((out.sent, out.gso_sends, out.io_errors), (5, 0, 0));
        assert!(!a.gso(), "GSO switched off");
        check(&recv_datagrams(&b, 5).0, 5, 500, 500);
        let out = a.send_segments(&data, 500, b.local_addr().expect("addr"), &shutdown);
        assert_eq!((out.sent, out.gso_sends), (5, 0));
        check(&recv_datagrams(&b, 5).0, 5, 500, 500);
    }

    #[test]
    fn switched_off_gso_sends_one_by_one() {
        let a = bind(Disabled {
            udp_gso: true,
            ..Disabled::default()
        });
        let b = bind(Disabled::default());
        let shutdown = Shutdown::new().expect("eventfd");
        let data = layout(7, 300, 3);
        let out = a.send_segments(&data, 300, b.local_addr().expect("addr"), &shutdown);
        assert_eq!((out.sent, out.gso_sends), (7, 0));
        check(&recv_datagrams(&b, 7).0, 7, 300, 3);
    }
}
