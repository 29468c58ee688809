//! Raw-byte packet fixtures, built by hand (checksums included) without the crates under
//! test: an IPv4/UDP packet for tests that inject traffic below the kernel's sockets (and
//! its checksum-partial form for the data path's offload tests), and
//! the TCPv4 super-packet with its virtio header that the fast path's tests and benchmarks
//! split and coalesce.

use std::net::Ipv4Addr;

/// An IPv4/UDP packet from `src:sport` to `dst:dport` carrying `payload`: the IPv4 header
/// checksum is set, the UDP checksum is 0 (none, allowed over IPv4).
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = !ones_sum(&p[..20], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// [`ipv4_udp`] with its UDP checksum *partial*, as a kernel leaves it for offload: the
/// checksum field holds the pseudo-header sum (addresses, protocol 17, UDP length), folded
/// and not complemented.
pub fn ipv4_udp_partial(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = ipv4_udp(src, dst, sport, dport, payload);
    let pseudo = ones_sum(&p[12..20], 17 + 8 + payload.len() as u32);
    p[26..28].copy_from_slice(&pseudo.to_be_bytes());
    p
}

/// Headers of [`tso_packet`]: IPv4 (20 bytes) and TCP with timestamps (32 bytes).
pub const TSO_HEADERS_LEN: usize = 52;

/// A TCPv4 super-packet 10.32.1.2:40000 → 10.32.2.3:5201 with timestamps
/// ([`TSO_HEADERS_LEN`] bytes of headers) and `payload` bytes (0, 1, 2, ... wrapping), its
/// checksum partial (the pseudo-header sum), as the TUN returns it with [`TSO_VNET_HDR`].
pub fn tso_packet(payload: usize) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 32, 1, 2, 10, 32, 2, 3,
    ];
    p.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0x10, 0, 0, 0, 0x20, 0, 0x80, 0x10,
    ]);
    p.extend_from_slice(&[0x01, 0xf6, 0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    p.extend((0..payload).map(|i| i as u8));
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    let c = !ones_sum(&p[..20], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    // Pseudo-header: addresses, protocol 6, TCP length; folded, not complemented.
    let pseudo = ones_sum(&p[12..20], 6 + u32::from(total) - 20);
    p[36..38].copy_from_slice(&pseudo.to_be_bytes());
    p
}

/// The `virtio_net_hdr` (host byte order) read with [`tso_packet`]: NEEDS_CSUM, GSO TCPv4,
/// hdr_len 52, gso_size (MSS) 1400, csum_start 20, csum_offset 16.
pub const TSO_VNET_HDR: [u8; 10] = {
    let [h0, h1] = (TSO_HEADERS_LEN as u16).to_ne_bytes();
    let [m0, m1] = 1400u16.to_ne_bytes();
    let [s0, s1] = 20u16.to_ne_bytes();
    let [o0, o1] = 16u16.to_ne_bytes();
    [1, 1, h0, h1, m0, m1, s0, s1, o0, o1]
};

/// Ones' complement sum of `data` as big-endian words plus `extra`, folded, not complemented
/// (RFC 1071). `data` has an even length here.
fn ones_sum(data: &[u8], extra: u32) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>()
        + extra;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_checksum_verifies_and_lengths_add_up() {
        let p = ipv4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, 2, b"abc");
        assert_eq!(p.len(), 31);
        assert_eq!(
            ones_sum(&p[..20], 0),
            0xffff,
            "a valid header sums to all ones"
        );
        assert_eq!(u16::from_be_bytes([p[24], p[25]]), 11);
        assert_eq!(&p[28..], b"abc");
    }

    #[test]
    fn the_partial_udp_checksum_is_the_pseudo_header_sum() {
        let p = ipv4_udp_partial([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, 2, b"abc");
        // 0a00 + 0001 + 0a00 + 0002 + 0011 + 000b = 0x141f
        assert_eq!(u16::from_be_bytes([p[26], p[27]]), 0x141f);
        assert_eq!(
            p[..26],
            ipv4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, 2, b"abc")[..26]
        );
    }

    #[test]
    fn the_tso_packet_has_its_lengths_and_checksums() {
        let p = tso_packet(1000);
        assert_eq!(p.len(), TSO_HEADERS_LEN + 1000);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 1052);
        assert_eq!(ones_sum(&p[..20], 0), 0xffff, "a valid IPv4 header");
        // Completing the partial checksum over the TCP segment gives a valid one.
        let mut done = p.clone();
        let full = !ones_sum(&p[20..], 0);
        done[36..38].copy_from_slice(&full.to_be_bytes());
        let segment = [&done[12..20], &done[20..]].concat();
        assert_eq!(ones_sum(&segment, 6 + 1032), 0xffff, "a valid TCP checksum");
        assert_eq!(TSO_VNET_HDR[..2], [1, 1], "NEEDS_CSUM, GSO_TCPV4");
    }
}
