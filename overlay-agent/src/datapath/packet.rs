//! Checks of the inner IP packet: enough to route it and to refuse what the kernel should not
//! see from us. Never panics, whatever the bytes.

use super::counters::DropReason;
use std::net::Ipv4Addr;

/// IPv4 header without options.
const MIN_HEADER: usize = 20;

/// What the data path needs from an inner IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ipv4Info {
    /// Source address.
    pub(crate) src: Ipv4Addr,
    /// Destination address.
    pub(crate) dst: Ipv4Addr,
    /// The header's total length: the packet proper, without trailing bytes.
    pub(crate) total_len: usize,
}

/// Parses the IPv4 header at the start of `packet`.
///
/// IPv6 is [`DropReason::Unsupported`]; anything else that is not a well-formed IPv4 header
/// (version, IHL ≥ 5, header within the total length, total length within `packet`) is
/// [`DropReason::Malformed`]. Bytes after the total length are allowed (and ignored).
#[inline]
pub(crate) fn parse_ipv4(packet: &[u8]) -> Result<Ipv4Info, DropReason> {
    let Some(&first) = packet.first() else {
        return Err(DropReason::Malformed);
    };
    match first >> 4 {
        4 => {}
        6 => return Err(DropReason::Unsupported),
        _ => return Err(DropReason::Malformed),
    }
    let Some(h) = packet.get(..MIN_HEADER) else {
        return Err(DropReason::Malformed);
    };
    let header_len = usize::from(first & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if header_len < MIN_HEADER || total_len < header_len || total_len > packet.len() {
        return Err(DropReason::Malformed);
    }
    Ok(Ipv4Info {
        src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
        dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        total_len,
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
                total_len: 28
            })
        );
        // Trailing bytes after the total length are tolerated and cut off.
        let mut padded = PING.to_vec();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_ipv4(&padded).map(|i| i.total_len), Ok(28));
    }

    #[test]
    fn malformed_and_unsupported_are_told_apart() {
        assert_eq!(parse_ipv4(&[]), Err(DropReason::Malformed));
        for len in 1..20 {
            assert_eq!(
                parse_ipv4(&PING[..len]),
                Err(DropReason::Malformed),
                "len {len}"
            );
        }
        // Total length beyond the bytes we have.
        assert_eq!(parse_ipv4(&PING[..27]), Err(DropReason::Malformed));
        let mut p = PING;
        p[0] = 0x44; // IHL 4
        assert_eq!(parse_ipv4(&p), Err(DropReason::Malformed));
        let mut p = PING;
        p[0] = 0x48; // IHL 8 = 32 bytes > total length 28
        assert_eq!(parse_ipv4(&p), Err(DropReason::Malformed));
        let mut p = PING;
        p[3] = 19; // total length below the header
        assert_eq!(parse_ipv4(&p), Err(DropReason::Malformed));
        let mut p = PING;
        p[0] = 0x60;
        assert_eq!(parse_ipv4(&p), Err(DropReason::Unsupported));
        let mut p = PING;
        p[0] = 0x25;
        assert_eq!(parse_ipv4(&p), Err(DropReason::Malformed));
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
        }
    }
}
