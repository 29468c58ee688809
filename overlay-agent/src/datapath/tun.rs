//! The TUN device: creation (`TUNSETIFF`), offloads (`TUNSETOFFLOAD`), MTU and queue length.
//! All TUN ioctls live here.
//!
//! The device is opened with `IFF_TUN | IFF_NO_PI`, plus `IFF_VNET_HDR` unless offloads are
//! switched off. With it, every read and write carries a 10-byte virtio-net header
//! ([`overlay_proto::vnet`]) in front of the IP packet, and `TUNSETOFFLOAD` lets the kernel
//! hand us (and take from us) 64 KiB TCP super-packets with partial checksums (`TUN_F_CSUM`,
//! `TUN_F_TSO4/6`, `TUN_F_TSO_ECN`), and UDP ones (`TUN_F_USO4/6`) where the kernel knows
//! them (Linux ≥ 6.2: we retry without them when refused). Without it, every read returns
//! exactly one IP packet and every write injects one. The fd is non-blocking; the packet
//! threads wait for it with `poll(2)` (see [`super::wake`]). The device exists as long as the
//! fd is open (it is not made persistent).

use super::DatapathError;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;

/// Flags passed to `TUNSETIFF` for a plain TUN.
const TUN_FLAGS: libc::c_short = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
/// Offloads asked for with `TUNSETOFFLOAD` (USO is dropped if the kernel refuses it).
const OFFLOADS: libc::c_uint = libc::TUN_F_CSUM
    | libc::TUN_F_TSO4
    | libc::TUN_F_TSO6
    | libc::TUN_F_TSO_ECN
    | libc::TUN_F_USO4
    | libc::TUN_F_USO6;
const USO: libc::c_uint = libc::TUN_F_USO4 | libc::TUN_F_USO6;

/// Transmit queue length set on the device (packets the kernel queues for us to read); the
/// default of 500 drops packets in bursts.
pub(crate) const TXQUEUELEN: u32 = 5000;

/// An open TUN device, removed when dropped.
#[derive(Debug)]
pub(crate) struct Tun {
    file: File,
    name: String,
    features: TunFeatures,
}

/// What the device was opened with and the kernel accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TunFeatures {
    /// Reads and writes carry a virtio-net header.
    pub(crate) vnet_hdr: bool,
    /// TCP super-packets (TSO4/6, ECN) and partial checksums.
    pub(crate) tso: bool,
    /// UDP super-packets (USO4/6).
    pub(crate) uso: bool,
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
    /// with offloads unless `plain`, sets its MTU and raises its transmit queue length. The
    /// device is left down.
    pub(crate) fn create(name: &str, mtu: u32, plain: bool) -> Result<Tun, DatapathError> {
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
        req.ifr_ifru.ifru_flags = if plain {
            TUN_FLAGS
        } else {
            TUN_FLAGS | libc::IFF_VNET_HDR as libc::c_short
        };
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` is a valid, exclusively
        // borrowed ifreq that outlives the call, and the fd is an open /dev/net/tun.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
        if rc < 0 {
            return Err(DatapathError::TunCreate {
                iface: name.to_owned(),
                error: io::Error::last_os_error(),
            });
        }
        let mut tun = Tun {
            file,
            name: name.to_owned(),
            features: TunFeatures::default(),
        };
        if !plain {
            tun.features = tun.set_offloads()?;
        }
        let mtu = libc::c_int::try_from(mtu).map_err(|_| DatapathError::TunConfigure {
            iface: tun.name.clone(),
            what: "MTU",
            error: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        tun.set_int(libc::SIOCSIFMTU, mtu, "MTU")?;
        tun.set_int(libc::SIOCSIFTXQLEN, TXQUEUELEN as libc::c_int, "txqueuelen")?;
        Ok(tun)
    }

    /// Turns on [`OFFLOADS`], without USO if the kernel refuses it.
    fn set_offloads(&self) -> Result<TunFeatures, DatapathError> {
        let set = |flags: libc::c_uint| {
            // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned int of TUN_F_*
            // flags), not as a pointer; the fd is an open TUN device.
            let rc = unsafe {
                libc::ioctl(
                    self.file.as_raw_fd(),
                    libc::TUNSETOFFLOAD as _,
                    libc::c_ulong::from(flags),
                )
            };
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        let mut features = TunFeatures {
            vnet_hdr: true,
            tso: true,
            uso: true,
        };
        if set(OFFLOADS).is_err() {
            // Kernels before 6.2 know no USO and refuse the whole call with EINVAL.
            features.uso = false;
            set(OFFLOADS & !USO).map_err(|error| DatapathError::TunConfigure {
                iface: self.name.clone(),
                what: "offloads (TUNSETOFFLOAD)",
                error,
            })?;
        }
        Ok(features)
    }

    /// What the device was opened with and the kernel accepted.
    pub(crate) fn features(&self) -> TunFeatures {
        self.features
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

    /// Reads one packet into `buf`, after its virtio-net header if the device has one
    /// (non-blocking: `WouldBlock` when none is queued).
    #[inline]
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one packet (after its virtio-net header if the device has one).
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
