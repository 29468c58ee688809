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
//! threads wait for it with `poll(2)` (see [`super::wake`]).
//!
//! # Persistence (hitless restarts)
//! The device is made persistent (`TUNSETPERSIST`): when the agent exits (or dies) it stays,
//! with its address, MTU and the cluster route, and the kernel drops what is routed into it
//! until an agent attaches again (TCP retransmits; nothing is reset). `TUNSETIFF` on the
//! existing name re-attaches to it; the kernel takes `IFF_NO_PI`/`IFF_VNET_HDR` from the new
//! open, and the virtio header size, offloads, MTU and queue length are set again, so a
//! device left by any earlier run (or version, or with offloads switched differently) fits.
//! A device of that name that is not a single-queue TUN is refused with a clear error.
//! [`remove`] (`overlay-agent reset`) clears the flag, which deletes the device.

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
/// Size of the virtio-net header the data path reads and writes (`struct virtio_net_hdr`).
const VNET_HDR_LEN: libc::c_int = 10;

/// Transmit queue length set on the device (packets the kernel queues for us to read); the
/// default of 500 drops packets in bursts.
pub(crate) const TXQUEUELEN: u32 = 5000;

/// An open, persistent TUN device (it stays when this is dropped; see the module docs).
#[derive(Debug)]
pub(crate) struct Tun {
    file: File,
    name: String,
    features: TunFeatures,
    reattached: bool,
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

/// True if an interface named `name` exists in the calling thread's namespace.
fn iface_exists(name: &str) -> bool {
    let Ok(c_name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: if_nametoindex reads a NUL-terminated string, which `c_name` is and outlives
    // the call; it has no other effect.
    unsafe { libc::if_nametoindex(c_name.as_ptr()) != 0 }
}

/// Opens `/dev/net/tun` and attaches it to device `name` (`TUNSETIFF` with `flags`),
/// creating the device when it does not exist. Returns the fd and whether the device existed.
fn attach(name: &str, flags: libc::c_short) -> Result<(File, bool), DatapathError> {
    if !valid_ifname(name) {
        return Err(DatapathError::InvalidName {
            iface: name.to_owned(),
        });
    }
    let existed = iface_exists(name);
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
    req.ifr_ifru.ifru_flags = flags;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` is a valid, exclusively
    // borrowed ifreq that outlives the call, and the fd is an open /dev/net/tun.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
    if rc < 0 {
        let error = io::Error::last_os_error();
        let iface = name.to_owned();
        return Err(match error.raw_os_error() {
            // The kernel says EINVAL for a device of this name that is a TAP, a multi-queue
            // TUN, or not a TUN/TAP device at all.
            Some(libc::EINVAL) if existed => DatapathError::TunNotTun { iface },
            Some(libc::EBUSY) if existed => DatapathError::TunBusy { iface },
            _ => DatapathError::TunCreate { iface, error },
        });
    }
    Ok((file, existed))
}

/// What [`remove`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removed {
    /// The TUN device was deleted.
    Deleted,
    /// No interface has that name.
    NotFound,
}

/// Deletes the (persistent) TUN device `name` of the calling thread's namespace: attaches to
/// it and clears its persist flag, so it goes when the fd closes. Refuses a device that is
/// in use (an agent still runs) and any interface that is not a TUN.
pub(crate) fn remove(name: &str) -> Result<Removed, DatapathError> {
    if !valid_ifname(name) {
        return Err(DatapathError::InvalidName {
            iface: name.to_owned(),
        });
    }
    if !iface_exists(name) {
        return Ok(Removed::NotFound);
    }
    let (file, existed) = attach(name, TUN_FLAGS)?;
    let tun = Tun {
        file,
        name: name.to_owned(),
        features: TunFeatures::default(),
        reattached: existed,
    };
    tun.set_persist(false)?;
    drop(tun);
    if existed {
        Ok(Removed::Deleted)
    } else {
        // It vanished between the check and the attach, and the attach created a
        // non-persistent device that went with the fd.
        Ok(Removed::NotFound)
    }
}

impl Tun {
    /// Creates TUN device `name` in the calling thread's network namespace, or re-attaches
    /// to the persistent one a previous run left there, with offloads unless `plain`; makes
    /// it persistent, sets its MTU and raises its transmit queue length. A new device is left
    /// down; a re-attached one keeps its state (up, address, routes).
    pub(crate) fn create(name: &str, mtu: u32, plain: bool) -> Result<Tun, DatapathError> {
        let flags = if plain {
            TUN_FLAGS
        } else {
            TUN_FLAGS | libc::IFF_VNET_HDR as libc::c_short
        };
        let (file, reattached) = attach(name, flags)?;
        let mut tun = Tun {
            file,
            name: name.to_owned(),
            features: TunFeatures::default(),
            reattached,
        };
        if !plain {
            // A device created by another program may have been given another header size;
            // ours is the plain 10-byte header.
            tun.set_vnet_hdr_len(VNET_HDR_LEN)?;
            tun.features = tun.set_offloads()?;
        } else if reattached {
            // Offloads set by an earlier run stay on the device; without a virtio header
            // they would hand us super-packets we cannot recognise.
            tun.clear_offloads()?;
        }
        tun.set_persist(true)?;
        let mtu = libc::c_int::try_from(mtu).map_err(|_| DatapathError::TunConfigure {
            iface: tun.name.clone(),
            what: "MTU",
            error: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        tun.set_int(libc::SIOCSIFMTU, mtu, "MTU")?;
        tun.set_int(libc::SIOCSIFTXQLEN, TXQUEUELEN as libc::c_int, "txqueuelen")?;
        Ok(tun)
    }

    /// True if the device existed before (left by an earlier run) and was re-attached.
    pub(crate) fn reattached(&self) -> bool {
        self.reattached
    }

    /// Sets the size of the virtio-net header (`TUNSETVNETHDRSZ`).
    fn set_vnet_hdr_len(&self, len: libc::c_int) -> Result<(), DatapathError> {
        let mut v = len;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer; `v` is a valid int
        // that outlives the call, and the fd is an open, attached TUN device.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), libc::TUNSETVNETHDRSZ as _, &mut v) };
        self.check(rc, "virtio header size (TUNSETVNETHDRSZ)")
    }

    /// Sets or clears the persist flag (`TUNSETPERSIST`): a persistent device outlives its
    /// last fd.
    fn set_persist(&self, on: bool) -> Result<(), DatapathError> {
        // SAFETY: TUNSETPERSIST takes its argument by value (an unsigned long, 0 or not), not
        // as a pointer; the fd is an open, attached TUN device.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETPERSIST as _,
                libc::c_ulong::from(on),
            )
        };
        self.check(rc, "persist flag (TUNSETPERSIST)")
    }

    /// The error of a failed ioctl (`rc < 0`), with what was being set.
    fn check(&self, rc: libc::c_int, what: &'static str) -> Result<(), DatapathError> {
        if rc < 0 {
            return Err(DatapathError::TunConfigure {
                iface: self.name.clone(),
                what,
                error: io::Error::last_os_error(),
            });
        }
        Ok(())
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

    /// Turns every offload off (`TUNSETOFFLOAD` with no flags).
    fn clear_offloads(&self) -> Result<(), DatapathError> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned int of TUN_F_*
        // flags, here none), not as a pointer; the fd is an open TUN device.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETOFFLOAD as _,
                0 as libc::c_ulong,
            )
        };
        self.check(rc, "offloads (TUNSETOFFLOAD)")
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
