//! The TUN device: creation (`TUNSETIFF`), MTU and queue length. All TUN ioctls live here.
//!
//! The device is opened with `IFF_TUN | IFF_NO_PI`: every read returns exactly one IP packet
//! and every write injects one, with no packet-information prefix. The fd is non-blocking; the
//! packet threads wait for it with `poll(2)` (see [`super::wake`]). The device exists as long
//! as the fd is open (it is not made persistent).
//!
//! The fast path adds `IFF_VNET_HDR` to [`TUN_FLAGS`] and a `TUNSETOFFLOAD` call after
//! `TUNSETIFF`; reads and writes then carry a 10-byte virtio-net header in front of each packet.

use super::DatapathError;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;

/// Flags passed to `TUNSETIFF`.
const TUN_FLAGS: libc::c_short = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;

/// Transmit queue length set on the device (packets the kernel queues for us to read); the
/// default of 500 drops packets in bursts.
pub(crate) const TXQUEUELEN: u32 = 5000;

/// An open TUN device, removed when dropped.
#[derive(Debug)]
pub(crate) struct Tun {
    file: File,
    name: String,
}

/// True if the kernel would accept `name` as an interface name (`dev_valid_name`).
pub(crate) fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

/// An `ifreq` naming `name` (already validated), with a zeroed union.
fn ifreq_for(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is a plain C struct (arrays of integers and a union of integers, sockaddrs
    // and a pointer); all-zero bytes are a valid value of it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

impl Tun {
    /// Creates (or attaches to) TUN device `name` in the calling thread's network namespace,
    /// sets its MTU and raises its transmit queue length. The device is left down.
    pub(crate) fn create(name: &str, mtu: u32) -> Result<Tun, DatapathError> {
        if !valid_ifname(name) {
            return Err(DatapathError::InvalidName {
                iface: name.to_owned(),
            });
        }
        let file = File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|error| DatapathError::TunOpen {
                iface: name.to_owned(),
                error,
            })?;
        let mut req = ifreq_for(name);
        req.ifr_ifru.ifru_flags = TUN_FLAGS;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` is a valid, exclusively
        // borrowed ifreq that outlives the call, and the fd is an open /dev/net/tun.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
        if rc < 0 {
            return Err(DatapathError::TunCreate {
                iface: name.to_owned(),
                error: io::Error::last_os_error(),
            });
        }
        let tun = Tun {
            file,
            name: name.to_owned(),
        };
        let mtu = libc::c_int::try_from(mtu).map_err(|_| DatapathError::TunConfigure {
            iface: tun.name.clone(),
            what: "MTU",
            error: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        tun.set_int(libc::SIOCSIFMTU, mtu, "MTU")?;
        tun.set_int(libc::SIOCSIFTXQLEN, TXQUEUELEN as libc::c_int, "txqueuelen")?;
        Ok(tun)
    }

    /// Sets an integer interface attribute through a socket ioctl (`SIOCSIF*`).
    fn set_int(
        &self,
        request: libc::c_ulong,
        value: libc::c_int,
        what: &'static str,
    ) -> Result<(), DatapathError> {
        let err = |error| DatapathError::TunConfigure {
            iface: self.name.clone(),
            what,
            error,
        };
        // Interface ioctls go through any socket of the namespace the device lives in; an
        // unbound Unix datagram socket has no other effect.
        let sock = UnixDatagram::unbound().map_err(err)?;
        let mut req = ifreq_for(&self.name);
        // `ifr_mtu` and `ifr_qlen` are both the `int` member of the union (ifr_qlen is
        // `ifr_ifru.ifru_ivalue`, the same storage as `ifru_mtu`).
        req.ifr_ifru.ifru_mtu = value;
        // SAFETY: SIOCSIFMTU and SIOCSIFTXQLEN read one `struct ifreq`; `req` is a valid
        // ifreq that outlives the call, and the fd is an open socket.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, &mut req) };
        if rc < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// The device name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet into `buf` (non-blocking: `WouldBlock` when none is queued).
    #[inline]
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one packet.
    #[inline]
    pub(crate) fn write(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_like_the_kernel_does() {
        assert!(valid_ifname("ovl0"));
        assert!(valid_ifname("a23456789012345"));
        assert!(!valid_ifname("a234567890123456"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("."));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("a b"));
        assert!(!valid_ifname("a:1"));
    }
}
