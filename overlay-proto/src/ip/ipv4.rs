//! The IPv4 header, and the data path's route check of an inner packet ([`parse_ipv4`]).
//!
//! ```text
//! | ver=4 IHL | TOS | total length | id | flags+frag off | TTL | proto | csum | src | dst | options |
//!   0           1     2..4           4..6 6..8             8     9       10..12 12..16 16..20
//! ```

use super::{slices, IpError, Layer};
use std::net::Ipv4Addr;

/// Length of an IPv4 header without options.
pub const MIN_LEN: usize = 20;
/// Offset of the total length.
pub const TOTAL_LEN: usize = 2;
/// Offset of the identification.
pub const IDENT: usize = 4;
/// Offset of the flags and fragment offset.
pub const FRAG: usize = 6;
/// Offset of the time to live.
pub const TTL: usize = 8;
/// Offset of the protocol number.
pub const PROTOCOL: usize = 9;
/// Offset of the header checksum.
pub const CHECKSUM: usize = 10;
/// Source then destination address.
pub const ADDRS: std::ops::Range<usize> = 12..20;
/// In the flags and fragment offset word: MF and the offset (set in every fragment).
pub const FRAGMENT_MASK: u16 = 0x3fff;
/// In the flags and fragment offset word: the offset (zero in the first fragment).
pub const OFFSET_MASK: u16 = 0x1fff;

/// What the data path needs from an inner IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Info {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// The header's total length: the packet proper, without trailing bytes.
    pub total_len: usize,
    /// The header's length (with options).
    pub header_len: usize,
    /// The L4 protocol number.
    pub protocol: u8,
    /// The packet is a fragment (more fragments follow, or a non-zero offset).
    pub fragment: bool,
}

/// The route check: parses the IPv4 header at the start of `packet`, enough to route it.
///
/// IPv6 is [`IpError::Ipv6Unsupported`]; anything else must be a well-formed IPv4 header
/// (version, IHL ≥ 5, header within the total length, total length within `packet`). Bytes
/// after the total length are allowed (and ignored); the transport header is not looked at.
#[inline]
pub fn parse_ipv4(packet: &[u8]) -> Result<Ipv4Info, IpError> {
    let Some(&first) = packet.first() else {
        return Err(IpError::Truncated {
            layer: Layer::Ip,
            needed: 1,
            got: 0,
        });
    };
    match first >> 4 {
        4 => {}
        6 => return Err(IpError::Ipv6Unsupported),
        version => return Err(IpError::NotIp { version }),
    }
    let h = slices::ipv4(packet)?;
    let header_len = h.slice().len();
    let total_len = usize::from(h.total_len());
    if total_len < header_len || total_len > packet.len() {
        return Err(IpError::Truncated {
            layer: Layer::Ipv4,
            needed: header_len.max(total_len),
            got: total_len.min(packet.len()),
        });
    }
    Ok(Ipv4Info {
        src: Ipv4Addr::from(h.source()),
        dst: Ipv4Addr::from(h.destination()),
        total_len,
        header_len,
        protocol: h.protocol().0,
        fragment: h.is_fragmenting_payload(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ICMP echo request 10.32.1.1 → 10.32.2.1, 8 bytes of payload.
    const PING: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00,
        0x00, // ver/ihl … proto
        10, 32, 1, 1, // src
        10, 32, 2, 1, // dst
        0x08, 0x00, 0xf7, 0xff, 0x00, 0x00, 0x00, 0x00, // icmp
    ];

    #[test]
    fn well_formed_packet_is_parsed() {
        assert_eq!(
            parse_ipv4(&PING),
            Ok(Ipv4Info {
                src: Ipv4Addr::new(10, 32, 1, 1),
                dst: Ipv4Addr::new(10, 32, 2, 1),
                total_len: 28,
                header_len: 20,
                protocol: 1,
                fragment: false,
            })
        );
        // Trailing bytes after the total length are tolerated and cut off.
        let mut padded = PING.to_vec();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_ipv4(&padded).map(|i| i.total_len), Ok(28));
    }

    #[test]
    fn each_refusal_says_what_failed() {
        let truncated = |layer, needed, got| Err(IpError::Truncated { layer, needed, got });
        assert_eq!(parse_ipv4(&[]), truncated(Layer::Ip, 1, 0));
        for len in 1..20 {
            assert_eq!(
                parse_ipv4(&PING[..len]),
                truncated(Layer::Ipv4, 20, len),
                "len {len}"
            );
        }
        // Total length beyond the bytes we have.
        assert_eq!(parse_ipv4(&PING[..27]), truncated(Layer::Ipv4, 28, 27));
        let mut p = PING;
        p[0] = 0x44; // IHL 4
        let short = IpError::HeaderLength {
            layer: Layer::Ipv4,
            len: 16,
            min: 20,
        };
        assert_eq!(parse_ipv4(&p), Err(short));
        assert_eq!(
            short.to_string(),
            "IPv4 header length 16 below the minimum 20"
        );
        let mut p = PING;
        p[0] = 0x48; // IHL 8 = 32 bytes > total length 28
        assert_eq!(parse_ipv4(&p), truncated(Layer::Ipv4, 32, 28));
        let mut p = PING;
        p[3] = 19; // total length below the header
        assert_eq!(parse_ipv4(&p), truncated(Layer::Ipv4, 20, 19));
        let mut p = PING;
        p[0] = 0x60;
        assert_eq!(parse_ipv4(&p), Err(IpError::Ipv6Unsupported));
        let mut p = PING;
        p[0] = 0x25;
        assert_eq!(parse_ipv4(&p), Err(IpError::NotIp { version: 2 }));
    }

    #[test]
    fn fragments_are_flagged() {
        let mut frag = PING;
        frag[6] = 0x20; // more fragments
        assert!(parse_ipv4(&frag).expect("ipv4").fragment);
        frag[6] = 0;
        frag[7] = 0x01; // offset 8
        assert!(parse_ipv4(&frag).expect("ipv4").fragment);
        frag[6] = 0x40; // DF only
        frag[7] = 0;
        assert!(!parse_ipv4(&frag).expect("ipv4").fragment);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 0x1234_5678;
        let mut buf = [0u8; 64];
        for round in 0..20_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            if round % 2 == 0 {
                buf[0] = 0x45;
            }
            let len = (x as usize) % buf.len();
            let _ = parse_ipv4(&buf[..len]);
            let _ = super::super::Headers::parse(&buf[..len]);
            let _ = super::super::csum_location(&buf[..len]);
        }
    }
}
