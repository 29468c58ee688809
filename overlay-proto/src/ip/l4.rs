//! The transport headers the data path looks into: TCP and UDP.
//!
//! ```text
//! TCP:  | sport | dport | seq | ack | off+rsvd | flags | window | csum | urg | options |
//!         0..2    2..4    4..8  8..12 12         13      14..16   16..18 18..20
//! UDP:  | sport | dport | length | csum |
//!         0..2    2..4    4..6     6..8
//! ```

use super::{IpError, Layer};

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// Length of a TCP header without options.
pub const TCP_MIN_LEN: usize = 20;
/// Length of a UDP header.
pub const UDP_LEN: usize = 8;
/// Offset of the sequence number in a TCP header.
pub const TCP_SEQ: usize = 4;
/// Offset of the acknowledgment number in a TCP header.
pub const TCP_ACK: usize = 8;
/// Offset of the data offset (high nibble) in a TCP header.
pub const TCP_DATA_OFF: usize = 12;
/// Offset of the flags byte in a TCP header.
pub const TCP_FLAGS: usize = 13;
/// Offset of the window in a TCP header.
pub const TCP_WINDOW: usize = 14;
/// Offset of the checksum in a TCP header.
pub const TCP_CSUM: usize = 16;
/// Offset of the length in a UDP header.
pub const UDP_LENGTH: usize = 4;
/// Offset of the checksum in a UDP header.
pub const UDP_CSUM: usize = 6;
/// TCP flag FIN.
pub const FIN: u8 = 0x01;
/// TCP flag PSH.
pub const PSH: u8 = 0x08;
/// TCP flag ACK.
pub const ACK: u8 = 0x10;
/// TCP flag CWR.
pub const CWR: u8 = 0x80;

/// The transport protocol of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl L4 {
    /// TCP or UDP from an IP protocol number.
    #[inline]
    pub fn from_proto(protocol: u8) -> Result<L4, IpError> {
        match protocol {
            PROTO_TCP => Ok(L4::Tcp),
            PROTO_UDP => Ok(L4::Udp),
            protocol => Err(IpError::NotTcpOrUdp { protocol }),
        }
    }

    /// The IP protocol number.
    #[inline]
    pub fn proto(self) -> u8 {
        match self {
            L4::Tcp => PROTO_TCP,
            L4::Udp => PROTO_UDP,
        }
    }

    /// Offset of the checksum field from the start of the L4 header.
    #[inline]
    pub fn csum_offset(self) -> usize {
        match self {
            L4::Tcp => TCP_CSUM,
            L4::Udp => UDP_CSUM,
        }
    }

    /// The header's name in errors.
    #[inline]
    pub fn layer(self) -> Layer {
        match self {
            L4::Tcp => Layer::Tcp,
            L4::Udp => Layer::Udp,
        }
    }

    /// The shortest header of this protocol (TCP without options, UDP).
    #[inline]
    pub fn min_len(self) -> usize {
        match self {
            L4::Tcp => TCP_MIN_LEN,
            L4::Udp => UDP_LEN,
        }
    }

    /// The length of the header at the start of `l4` (TCP with its options, UDP 8), checked
    /// to lie inside `l4`.
    #[inline]
    pub fn header_len(self, l4: &[u8]) -> Result<usize, IpError> {
        let (layer, min) = (self.layer(), self.min_len());
        let got = l4.len();
        if got < min {
            return Err(IpError::Truncated {
                layer,
                needed: min,
                got,
            });
        }
        if self == L4::Udp {
            return Ok(UDP_LEN);
        }
        let len = usize::from(l4[TCP_DATA_OFF] >> 4) * 4;
        if len < TCP_MIN_LEN {
            return Err(IpError::HeaderLength {
                layer,
                len,
                min: TCP_MIN_LEN,
            });
        }
        if got < len {
            return Err(IpError::Truncated {
                layer,
                needed: len,
                got,
            });
        }
        Ok(len)
    }
}
