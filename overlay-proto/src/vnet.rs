//! The `virtio_net_hdr` in front of every packet on a TUN device opened with `IFF_VNET_HDR`.
//!
//! ```text
//!  0       1       2       3       4       5       6       7       8       9
//! +-------+-------+-------+-------+-------+-------+-------+-------+-------+-------+
//! | flags |gso_typ|    hdr_len    |   gso_size    |  csum_start   |  csum_offset  |
//! +-------+-------+-------+-------+-------+-------+-------+-------+-------+-------+
//! ```
//! The 16-bit fields are in the host's byte order (the TUN default; little-endian on x86).
//! On read, `gso_type` other than [`VnetHdr::GSO_NONE`] marks a super-packet of up to 64 KiB
//! that must be cut into `gso_size` pieces of payload; `NEEDS_CSUM` means the L4 checksum
//! field holds only the pseudo-header sum and must be completed from `csum_start`, writing at
//! `csum_start + csum_offset`. On write, the same fields tell the kernel what to do.
//! (Being written: see the fast-path issue.)

/// Length of the header.
pub const VNET_HDR_LEN: usize = 10;

/// A parsed `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VnetHdr {
    /// [`VnetHdr::NEEDS_CSUM`], [`VnetHdr::DATA_VALID`].
    pub flags: u8,
    /// One of the `GSO_*` constants, possibly or-ed with [`VnetHdr::GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers (IP + L4) in front of the payload.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the L4 header).
    pub csum_start: u16,
    /// Where, from `csum_start`, the checksum is stored.
    pub csum_offset: u16,
}

/// Why a buffer does not start with a usable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VnetError {
    /// shorter than the header
    #[error("packet of {0} bytes is shorter than the {VNET_HDR_LEN}-byte virtio header")]
    Truncated(usize),
}

impl VnetHdr {
    /// The L4 checksum is partial and must be completed.
    pub const NEEDS_CSUM: u8 = 1;
    /// The checksum was verified.
    pub const DATA_VALID: u8 = 2;
    /// Not a super-packet.
    pub const GSO_NONE: u8 = 0;
    /// TCP over IPv4 super-packet.
    pub const GSO_TCPV4: u8 = 1;
    /// UDP fragmentation offload (legacy, not produced by TUN).
    pub const GSO_UDP: u8 = 3;
    /// TCP over IPv6 super-packet.
    pub const GSO_TCPV6: u8 = 4;
    /// UDP segmentation (USO) super-packet, IPv4 or IPv6.
    pub const GSO_UDP_L4: u8 = 5;
    /// Or-ed into `gso_type`: the TCP super-packet has ECN CWR set.
    pub const GSO_ECN: u8 = 0x80;

    /// Parses the header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<VnetHdr, VnetError> {
        let Some(b) = buf.get(..VNET_HDR_LEN) else {
            return Err(VnetError::Truncated(buf.len()));
        };
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Writes the header into the first [`VNET_HDR_LEN`] bytes of `buf` (nothing if shorter).
    pub fn emit(&self, buf: &mut [u8]) -> Option<()> {
        let b = buf.get_mut(..VNET_HDR_LEN)?;
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        Some(())
    }
}
