//! Opening a TUN device the way a fast userspace tunnel does: `IFF_TUN | IFF_NO_PI |
//! IFF_VNET_HDR` (every read and write carries a 10-byte `virtio_net_hdr`), then
//! `TUNSETOFFLOAD` with checksum, TSO4/6 and ECN, so reads return up to 64 KiB super-packets
//! with their checksum left partial.

use anyhow::{bail, Context};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// The size of the `virtio_net_hdr` in front of every packet (the kernel's default).
pub const VNET_HDR_LEN: usize = 10;

/// The offloads turned on: partial checksums, TCP segmentation offload for IPv4 and IPv6,
/// and TSO with ECN.
pub const OFFLOADS: libc::c_uint =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;

/// Creates TUN device `name` in the calling thread's network namespace with the vnet header
/// and [`OFFLOADS`]; the fd is non-blocking and close-on-exec. The device exists as long as
/// the fd is open (it is not persistent); it is down, with the default MTU.
pub fn open(name: &str) -> anyhow::Result<OwnedFd> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        bail!("bad interface name {name:?}");
    }
    let file = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun")?;
    // SAFETY: ifreq is a plain C struct (arrays of integers and a union of integers,
    // sockaddrs and a pointer); all-zero bytes are a valid value of it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as _;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` is a valid, exclusively
    // borrowed ifreq that outlives the call, and the fd is an open /dev/net/tun.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error()).context(format!("TUNSETIFF {name}"));
    }
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned int of TUN_F_* flags),
    // not as a pointer; the fd is an open TUN device.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETOFFLOAD as _,
            libc::c_ulong::from(OFFLOADS),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error()).context(format!("TUNSETOFFLOAD {name}"));
    }
    Ok(OwnedFd::from(file))
}
