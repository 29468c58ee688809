//! Where the TCP/UDP checksum of a packet is when it travels *partial* (only the
//! pseudo-header sum, as the sender's kernel left it for offload), and completing one. The
//! arithmetic is [`crate::checksum`].

use super::{peek, IpError, Ipv4Info, L4};
use crate::checksum::checksum;

/// Where the L4 checksum of a non-fragment TCP or UDP packet is — `(csum_start,
/// csum_offset)` — if it lies inside `packet`. Loose: the length fields are not checked
/// (used to mark a packet "checksum partial" for the kernel, which checks the rest itself).
#[inline]
pub fn csum_location(packet: &[u8]) -> Option<(usize, usize)> {
    let p = peek(packet)?;
    if p.is_fragment() {
        return None;
    }
    let start = p.l4_start?;
    let offset = L4::from_proto(p.protocol?).ok()?.csum_offset();
    (start + offset + 2 <= packet.len()).then_some((start, offset))
}

/// Where the checksum of an unfragmented TCP or UDP packet routed by
/// [`parse_ipv4`](super::parse_ipv4) is: `(csum_start, csum_offset)` as a virtio-net header
/// gives them (the L4 header, and the checksum field within it). An error for other
/// protocols, fragments, or an L4 header cut short by the total length.
#[inline]
pub fn l4_checksum(ip: &Ipv4Info) -> Result<(u16, u16), IpError> {
    let l4 = L4::from_proto(ip.protocol)?;
    if ip.fragment {
        return Err(IpError::Fragment);
    }
    let got = ip.total_len.saturating_sub(ip.header_len);
    if got < l4.min_len() {
        return Err(IpError::Truncated {
            layer: l4.layer(),
            needed: l4.min_len(),
            got,
        });
    }
    // Both fit: the header is at most 60 bytes, the offset 16.
    Ok((ip.header_len as u16, l4.csum_offset() as u16))
}

/// Completes a partial checksum in place, as a NIC or the kernel would for a packet marked
/// "checksum needed": sums from `csum_start` to the end (the field there holds the
/// pseudo-header sum), complements, and stores the result at `csum_start + csum_offset`
/// (a result of 0 is stored as 0xffff, as the kernel does). `None`, writing nothing, if the
/// field is not inside `packet`.
pub fn complete(packet: &mut [u8], csum_start: usize, csum_offset: usize) -> Option<()> {
    let at = csum_start.checked_add(csum_offset)?;
    if at.checked_add(2)? > packet.len() {
        return None;
    }
    let c = match checksum(&packet[csum_start..]) {
        0 => 0xffff,
        c => c,
    };
    packet[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::{parse_ipv4, Layer, PROTO_TCP};

    /// A UDP packet 10.32.1.1:4000 → 10.32.2.1:5000 carrying `payload`, with its checksum
    /// partial (pseudo-header sum only) or complete (computed here the slow, obvious way).
    fn udp(payload: &[u8], partial: bool) -> Vec<u8> {
        let (src, dst) = ([10, 32, 1, 1].into(), [10, 32, 2, 1].into());
        let mut p = overlay_testkit::packet::ipv4_udp_partial(src, dst, 4000, 5000, payload);
        if partial {
            return p;
        }
        let mut sum = u32::from(u16::from_be_bytes([p[26], p[27]]));
        p[26..28].fill(0);
        for w in p[20..].chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let field = match !(sum as u16) {
            0 => 0xffff,
            c => c,
        };
        p[26..28].copy_from_slice(&field.to_be_bytes());
        p
    }

    #[test]
    fn complete_fills_in_a_partial_checksum() {
        // UDP 10.0.0.1:1234 -> 10.0.0.2:5678, "hi", its checksum partial: 0x141e is the
        // pseudo-header sum, 0x686e the full checksum (see `checksum`'s vectors).
        let mut udp = [0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0a, 0x14, 0x1e, b'h', b'i'];
        assert_eq!(complete(&mut udp, 0, 6), Some(()));
        assert_eq!(&udp[6..8], &0x686eu16.to_be_bytes());
        assert_eq!(complete(&mut udp, 0, 9), None);
    }

    #[test]
    fn partial_checksums_are_completed_like_the_kernel_does() {
        for len in [0, 1, 2, 7, 8, 9, 15, 16, 17, 100, 1423, 1424] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut p = udp(&payload, true);
            let ip = parse_ipv4(&p).expect("ipv4");
            assert_eq!(l4_checksum(&ip), Ok((20, 6)));
            assert_eq!(csum_location(&p), Some((20, 6)));
            assert_eq!(complete(&mut p, 20, 6), Some(()));
            assert_eq!(p, udp(&payload, false), "payload of {len} bytes");
        }
        let mut p = udp(b"x", true);
        let n = p.len();
        assert_eq!(complete(&mut p, n - 1, 0), None, "field past the end");
        assert_eq!(complete(&mut p, n + 5, 0), None);
        assert_eq!(complete(&mut p, 20, usize::MAX), None);
        assert_eq!(complete(&mut p, usize::MAX, 9), None);
    }

    #[test]
    fn only_whole_tcp_and_udp_packets_have_an_l4_checksum_to_offload() {
        let p = udp(b"abc", true);
        let ip = parse_ipv4(&p).expect("ipv4");
        let tcp = Ipv4Info {
            protocol: PROTO_TCP,
            total_len: 40,
            ..ip
        };
        assert_eq!(l4_checksum(&tcp), Ok((20, 16)));
        let short = |layer, got| {
            let needed = if layer == Layer::Tcp { 20 } else { 8 };
            Err(IpError::Truncated { layer, needed, got })
        };
        let tcp39 = Ipv4Info {
            total_len: 39,
            ..tcp
        };
        assert_eq!(l4_checksum(&tcp39), short(Layer::Tcp, 19));
        let udp27 = Ipv4Info {
            total_len: 27,
            ..ip
        };
        assert_eq!(l4_checksum(&udp27), short(Layer::Udp, 7));
        let icmp = Ipv4Info { protocol: 1, ..ip };
        assert_eq!(
            l4_checksum(&icmp),
            Err(IpError::NotTcpOrUdp { protocol: 1 })
        );
        let mut frag = p.clone();
        frag[6] = 0x20; // more fragments
        assert_eq!(
            l4_checksum(&parse_ipv4(&frag).expect("ipv4")),
            Err(IpError::Fragment)
        );
        assert_eq!(csum_location(&frag), None);
        let mut frag = p;
        frag[7] = 0x01; // offset 8
        assert_eq!(
            l4_checksum(&parse_ipv4(&frag).expect("ipv4")),
            Err(IpError::Fragment)
        );
    }

    #[test]
    fn the_loose_location_needs_only_the_checksum_field_inside_the_packet() {
        let mut p = udp(b"abc", true);
        p[2] = 0xff; // total length disagrees: not checked
        assert_eq!(csum_location(&p), Some((20, 6)));
        assert_eq!(csum_location(&p[..27]), None, "field cut off");
        assert_eq!(csum_location(&p[..28]), Some((20, 6)));
        let mut v6 = vec![0u8; 60];
        v6[0] = 0x60;
        v6[6] = PROTO_TCP;
        assert_eq!(csum_location(&v6), Some((40, 16)));
        v6[6] = 0; // hop-by-hop options
        assert_eq!(csum_location(&v6), None);
        p[0] = 0x44; // IHL 4
        assert_eq!(csum_location(&p), None);
    }
}
