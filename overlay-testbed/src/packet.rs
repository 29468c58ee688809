//! Hand-built packets for tests that inject traffic below the kernel's sockets.

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
    let mut sum: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_checksum_verifies_and_lengths_add_up() {
        let p = ipv4_udp([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, 2, b"abc");
        assert_eq!(p.len(), 31);
        let mut sum: u32 = p[..20]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff, "a valid header sums to all ones");
        assert_eq!(u16::from_be_bytes([p[24], p[25]]), 11);
        assert_eq!(&p[28..], b"abc");
    }
}
