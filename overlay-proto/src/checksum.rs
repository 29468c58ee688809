//! The internet checksum (RFC 1071) and its pseudo-header and incremental (RFC 1624) forms.
//!
//! Every `u16` here is a value in network order as a number: the bytes `[0x12, 0x34]` are
//! `0x1234`; write one with `to_be_bytes`. A *sum* is the ones' complement sum of 16-bit
//! big-endian words, folded to 16 bits and **not** complemented: that is what the TCP or UDP
//! checksum field holds when the checksum is *partial* (the pseudo-header sum left for
//! offload). The *checksum* written to a header is the complement of the sum over everything
//! it covers with the field itself zeroed.
//!
//! ```text
//! pseudo-header, IPv4 (12 bytes)          pseudo-header, IPv6 (40 bytes)
//! +--------+--------+--------+--------+   +-----------------------------------+
//! |          source address           |   |    source address (16 bytes)      |
//! +--------+--------+--------+--------+   +-----------------------------------+
//! |        destination address        |   |  destination address (16 bytes)   |
//! +--------+--------+--------+--------+   +-----------------------------------+
//! |  zero  | proto  |    L4 length    |   |         L4 length (32 bits)       |
//! +--------+--------+--------+--------+   +--------+--------+--------+--------+
//!                                         |          zero            | proto  |
//!                                         +--------+--------+--------+--------+
//! ```
//! A packet's checksum is valid when `add(pseudo, sum(l4_header_and_payload)) == 0xffff`.
//!
//! [`sum`] reads 4 bytes per step in the host's byte order into a 64-bit accumulator (the
//! ones' complement sum commutes with byte swapping, RFC 1071 §2(B)) and swaps once at the
//! end; it never panics and allocates nothing.

/// Ones' complement sum of `data` as big-endian 16-bit words, an odd last byte padded with
/// a zero byte; folded, not complemented.
///
/// Only the last of several slices summed separately and combined with [`add`] may have an
/// odd length.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    u16::from_be(fold(accumulate_native(data)))
}

/// The internet checksum of `data`: the complement of [`sum`]. Over an IPv4 header with its
/// checksum field zeroed, this is the value to store there.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Ones' complement addition of two sums.
#[inline]
pub fn add(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

/// Folds a 64-bit accumulation of big-endian 16-bit words into a 16-bit sum.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    // At most 16 bits remain after the last step.
    acc as u16
}

/// The sum of the IPv4 pseudo-header for an L4 segment of `len` bytes (header + payload).
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, len: u16) -> u16 {
    let mut addrs = [0u8; 8];
    addrs[..4].copy_from_slice(&src);
    addrs[4..].copy_from_slice(&dst);
    pseudo_header(&addrs, protocol, u32::from(len))
}

/// The sum of the IPv6 pseudo-header for an L4 segment of `len` bytes (header + payload).
#[inline]
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], protocol: u8, len: u32) -> u16 {
    add(add(sum(src), sum(dst)), pseudo_tail(protocol, len))
}

/// The pseudo-header sum from the source and destination addresses as they lie back to back
/// in an IPv4 (`packet[12..20]`) or IPv6 (`packet[8..40]`) header.
#[inline]
pub fn pseudo_header(addrs: &[u8], protocol: u8, len: u32) -> u16 {
    add(sum(addrs), pseudo_tail(protocol, len))
}

/// The protocol and length words of a pseudo-header (the same sum for IPv4 and IPv6).
#[inline]
pub fn pseudo_tail(protocol: u8, len: u32) -> u16 {
    fold(u64::from(protocol) + u64::from(len >> 16) + u64::from(len & 0xffff))
}

/// RFC 1624 (eqn. 3): the checksum `check` of a header after one of its 16-bit words
/// changed from `old` to `new`, without summing the header again.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !add(add(!check, !old), new)
}

/// [`update16`] for a 32-bit word (e.g. a TCP sequence number or an IPv4 address).
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// Whether an L4 segment (`l4`: TCP or UDP header and payload, checksum field included)
/// carries a valid checksum for a pseudo-header sum `pseudo` computed for `l4.len()`.
#[inline]
pub fn is_valid(pseudo: u16, l4: &[u8]) -> bool {
    add(pseudo, sum(l4)) == 0xffff
}

/// Unfolded sum of `data` as host-order 16-bit words (see the module doc).
#[inline]
fn accumulate_native(data: &[u8]) -> u64 {
    // Four independent accumulators of 32-bit words: no carries are lost below 2^32 words,
    // and the loop vectorises.
    let mut acc = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        for (a, w) in acc.iter_mut().zip(b.chunks_exact(4)) {
            *a += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    let mut total = acc[0] + acc[1] + acc[2] + acc[3];
    let mut words = blocks.remainder().chunks_exact(2);
    for w in &mut words {
        total += u64::from(u16::from_ne_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        total += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bit-by-bit reference: big-endian words, end-around carry after every addition.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for w in data.chunks(2) {
            let v = u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
            s += v;
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_vector() {
        // A well-known IPv4 header (Wikipedia, "IPv4 header checksum") with checksum b861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(
            sum(&hdr),
            0xffff,
            "a header with its checksum sums to all ones"
        );
    }

    #[test]
    fn odd_lengths_and_empty() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        // 17 bytes: one full 16-byte block and an odd tail.
        let data: Vec<u8> = (1..=17).collect();
        assert_eq!(sum(&data), reference_sum(&data));
    }

    #[test]
    fn udp_over_ipv4_vector() {
        // UDP 10.0.0.1:1234 -> 10.0.0.2:5678, payload "hi", checksum computed by hand:
        // pseudo 0a00+0001+0a00+0002+0011+000a = 0x141e; header 04d2+162e+000a = 0x1b0a;
        // payload 6869; total 0x141e+0x1b0a+0x6869 = 0x9791 -> checksum 0x686e.
        let pseudo = pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 17, 10);
        assert_eq!(pseudo, 0x141e);
        let mut udp = [0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0a, 0x00, 0x00, b'h', b'i'];
        let c = !add(pseudo, sum(&udp));
        assert_eq!(c, 0x686e);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        assert!(is_valid(pseudo, &udp));
        udp[9] ^= 1;
        assert!(!is_valid(pseudo, &udp));
    }

    #[test]
    fn ipv6_pseudo_header_matches_the_layout() {
        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut ph = Vec::new();
        ph.extend_from_slice(&src);
        ph.extend_from_slice(&dst);
        ph.extend_from_slice(&70_000u32.to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, 6]);
        assert_eq!(pseudo_header_v6(&src, &dst, 6, 70_000), reference_sum(&ph));
        let mut addrs = src.to_vec();
        addrs.extend_from_slice(&dst);
        assert_eq!(pseudo_header(&addrs, 6, 70_000), reference_sum(&ph));
    }

    proptest! {
        #[test]
        fn sum_matches_the_reference(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(sum(&data), reference_sum(&data));
        }

        #[test]
        fn sums_of_even_pieces_combine(data in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..150) {
            let cut = (cut * 2).min(data.len() & !1);
            let (a, b) = data.split_at(cut);
            prop_assert_eq!(add(sum(a), sum(b)), reference_sum(&data));
        }

        #[test]
        fn incremental_update_matches_recomputation(
            mut data in proptest::collection::vec(any::<u8>(), 4..64),
            at in 0usize..30,
            new in any::<u32>(),
        ) {
            let at = (at * 2).min((data.len() - 4) & !1);
            let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            let before = checksum(&data);
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let after = checksum(&data);
            let updated = update32(before, old, new);
            // RFC 1624 may yield the other representation of zero (0x0000 vs 0xffff).
            prop_assert!(updated == after || (updated | after) == 0xffff && (updated & after) == 0);
            let w16 = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&(!w16).to_be_bytes());
            let u = update16(after, w16, !w16);
            let a = checksum(&data);
            prop_assert!(u == a || (u | a) == 0xffff && (u & a) == 0);
        }
    }
}
