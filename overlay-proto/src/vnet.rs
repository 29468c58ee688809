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
//! [`crate::segment::split`] consumes the header read with a packet;
//! [`crate::coalesce::Coalescer`] produces the header written with each frame.
//!
//! [`VnetHdr::parse`] and [`VnetHdr::emit`] never panic: they check the length first.

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A TCPv4 super-packet header as read from the TUN on a little-endian host:
    /// NEEDS_CSUM, TCPV4|ECN, hdr_len 52, gso_size 1448, csum_start 20, csum_offset 16.
    #[cfg(target_endian = "little")]
    static FIXTURE: [u8; 12] = [
        0x01, 0x81, // flags, gso_type
        0x34, 0x00, // hdr_len 52
        0xa8, 0x05, // gso_size 1448
        0x14, 0x00, // csum_start 20
        0x10, 0x00, // csum_offset 16
        0x45, 0x00, // start of the IP packet
    ];

    fn fixture_hdr() -> VnetHdr {
        VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN,
            hdr_len: 52,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        }
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn test_deconstruct() {
        assert_eq!(VnetHdr::parse(&FIXTURE), Ok(fixture_hdr()));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn test_construct() {
        let mut buf = [0xffu8; 12];
        buf[VNET_HDR_LEN..].copy_from_slice(&FIXTURE[VNET_HDR_LEN..]);
        fixture_hdr().emit(&mut buf).expect("room for the header");
        assert_eq!(buf, FIXTURE);
    }

    #[test]
    fn an_all_zero_header_is_a_plain_packet() {
        assert_eq!(VnetHdr::parse(&[0u8; VNET_HDR_LEN]), Ok(VnetHdr::default()));
        let mut buf = [0xffu8; VNET_HDR_LEN];
        VnetHdr::default().emit(&mut buf).expect("room");
        assert_eq!(buf, [0u8; VNET_HDR_LEN]);
    }

    #[test]
    fn rejects_truncated_input_and_short_buffers() {
        let bytes = [0u8; VNET_HDR_LEN];
        for len in 0..VNET_HDR_LEN {
            assert_eq!(
                VnetHdr::parse(&bytes[..len]),
                Err(VnetError::Truncated(len))
            );
        }
        let mut short = [0x5au8; VNET_HDR_LEN - 1];
        assert_eq!(fixture_hdr().emit(&mut short), None);
        assert_eq!(short, [0x5a; VNET_HDR_LEN - 1], "nothing written");
    }

    proptest! {
        #[test]
        fn round_trip(flags: u8, gso_type: u8, hdr_len: u16, gso_size: u16, csum_start: u16, csum_offset: u16) {
            let h = VnetHdr { flags, gso_type, hdr_len, gso_size, csum_start, csum_offset };
            let mut buf = [0u8; VNET_HDR_LEN];
            h.emit(&mut buf).expect("room");
            prop_assert_eq!(VnetHdr::parse(&buf), Ok(h));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            let _ = VnetHdr::parse(&bytes);
        }
    }
}
