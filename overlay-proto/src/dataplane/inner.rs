//! Checks of the inner IP packet: enough to route it and to refuse what the kernel should not
//! see from us; and where its TCP/UDP checksum is when it travels *partial* (only the
//! pseudo-header sum, as the sender's kernel left it for offload; completing one is
//! [`crate::checksum::complete`]). Never panics, whatever the bytes.

use super::DropReason;
use std::net::Ipv4Addr;

/// IPv4 header without options.
const MIN_HEADER: usize = 20;

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

/// IP protocol number of TCP.
pub const TCP: u8 = 6;
/// IP protocol number of UDP.
pub const UDP: u8 = 17;

/// Parses the IPv4 header at the start of `packet`.
///
/// IPv6 is [`DropReason::Unsupported`]; anything else that is not a well-formed IPv4 header
/// (version, IHL ≥ 5, header within the total length, total length within `packet`) is
/// [`DropReason::Malformed`]. Bytes after the total length are allowed (and ignored).
#[inline]
pub fn parse_ipv4(packet: &[u8]) -> Result<Ipv4Info, DropReason> {
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
        header_len,
        protocol: h[9],
        fragment: u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0,
    })
}

/// Where the checksum of an unfragmented TCP or UDP packet is: `(csum_start, csum_offset)` as
/// a virtio-net header gives them (the L4 header, and the checksum field within it). `None`
/// for other protocols, fragments, or an L4 header cut short.
#[inline]
pub fn l4_checksum(ip: &Ipv4Info) -> Option<(u16, u16)> {
    let (offset, min_header) = match ip.protocol {
        TCP => (16, 20),
        UDP => (6, 8),
        _ => return None,
    };
    if ip.fragment || ip.total_len < ip.header_len + min_header {
        return None;
    }
    Some((ip.header_len as u16, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;

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

    /// A UDP packet 10.32.1.1:4000 → 10.32.2.1:5000 carrying `payload`, with its checksum
    /// complete (computed the slow, obvious way) or partial (pseudo-header sum only).
    fn udp(payload: &[u8], partial: bool) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut p = vec![0u8; total];
        p[..20].copy_from_slice(&PING[..20]);
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[9] = UDP;
        p[20..22].copy_from_slice(&4000u16.to_be_bytes());
        p[22..24].copy_from_slice(&5000u16.to_be_bytes());
        let udp_len = (8 + payload.len()) as u16;
        p[24..26].copy_from_slice(&udp_len.to_be_bytes());
        p[28..].copy_from_slice(payload);
        let mut pseudo: u32 = 0;
        for w in p[12..20].chunks(2) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        pseudo += u32::from(UDP) + u32::from(udp_len);
        let mut sum = pseudo;
        if !partial {
            for w in p[20..].chunks(2) {
                sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            }
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let field = if partial { sum as u16 } else { !(sum as u16) };
        let field = if !partial && field == 0 {
            0xffff
        } else {
            field
        };
        p[26..28].copy_from_slice(&field.to_be_bytes());
        p
    }

    #[test]
    fn partial_checksums_are_completed_like_the_kernel_does() {
        for len in [0, 1, 2, 7, 8, 9, 15, 16, 17, 100, 1423, 1424] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut p = udp(&payload, true);
            let ip = parse_ipv4(&p).expect("ipv4");
            assert_eq!(l4_checksum(&ip), Some((20, 6)));
            assert_eq!(checksum::complete(&mut p, 20, 6), Some(()));
            assert_eq!(p, udp(&payload, false), "payload of {len} bytes");
        }
        let mut p = udp(b"x", true);
        let n = p.len();
        assert_eq!(
            checksum::complete(&mut p, n - 1, 0),
            None,
            "field past the end"
        );
        assert_eq!(checksum::complete(&mut p, n + 5, 0), None);
        assert_eq!(checksum::complete(&mut p, 20, usize::MAX), None);
    }

    #[test]
    fn only_whole_tcp_and_udp_packets_have_an_l4_checksum_to_offload() {
        let p = udp(b"abc", true);
        let ip = parse_ipv4(&p).expect("ipv4");
        assert_eq!(l4_checksum(&ip), Some((20, 6)));
        let tcp = Ipv4Info {
            protocol: TCP,
            total_len: 40,
            ..ip
        };
        assert_eq!(l4_checksum(&tcp), Some((20, 16)));
        assert_eq!(
            l4_checksum(&Ipv4Info {
                total_len: 39,
                ..tcp
            }),
            None
        );
        assert_eq!(
            l4_checksum(&Ipv4Info {
                total_len: 27,
                ..ip
            }),
            None
        );
        assert_eq!(l4_checksum(&parse_ipv4(&PING).expect("ping")), None);
        let mut frag = p.clone();
        frag[6] = 0x20; // more fragments
        assert!(parse_ipv4(&frag).expect("ipv4").fragment);
        assert_eq!(l4_checksum(&parse_ipv4(&frag).expect("ipv4")), None);
        let mut frag = p;
        frag[7] = 0x01; // offset 8
        assert_eq!(l4_checksum(&parse_ipv4(&frag).expect("ipv4")), None);
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
        }
    }
}
