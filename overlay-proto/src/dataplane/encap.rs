//! TUN → UDP: where an inner packet goes ([`route`]) and its datagrams ([`encap`]): a single
//! packet gets its overlay header written in front of it in place, a super-packet is split
//! by [`segment::split`] into the caller's second buffer.

use super::{DropReason, TxVerdict};
use crate::forwarding::{ForwardingTable, Lookup};
use crate::header::{Header, FLAG_CSUM_PARTIAL, HEADER_LEN};
use crate::ip::{self, l4_checksum, parse_ipv4, Ipv4Info};
use crate::peer::PeerId;
use crate::segment::{self, SplitError};
use crate::vnet::VnetHdr;
use std::net::SocketAddr;

/// Size of the buffer a super-packet is split into: 64 KiB of payload plus, for each of up
/// to 128 segments, an overlay header and the largest IPv4 + TCP headers (60 + 60 bytes).
pub const SPLIT_BUFFER: usize = 128 << 10;

/// Where a packet goes: the destination peer and the next hop's address.
///
/// The packet must pass [`ip::parse_ipv4`] (its error counted as the [`DropReason`] it maps
/// to). Non-IPv4 packets and destinations outside the cluster are `Unsupported`; a destination
/// whose block has no owner, whose owner is unreachable, or that is in our own block (the
/// kernel should have delivered it locally) has no route.
#[inline]
pub fn route(
    table: &ForwardingTable,
    packet: &[u8],
) -> Result<(Ipv4Info, PeerId, SocketAddr), DropReason> {
    let ip = parse_ipv4(packet)?;
    match table.lookup(ip.dst) {
        Lookup::Remote { dst, next_hop } => Ok((ip, dst, next_hop.addr)),
        Lookup::OutsideCluster => Err(DropReason::Unsupported),
        Lookup::Local | Lookup::Unreachable | Lookup::NoOwner => Err(DropReason::NoRoute),
    }
}

/// Decides where the packet in `buf[HEADER_LEN..HEADER_LEN + len]` goes, with its virtio
/// header if the TUN has them, and prepares the datagrams: a single packet gets its header in
/// `buf[..HEADER_LEN]`, a super-packet is split into `out`.
///
/// A partial checksum (`NEEDS_CSUM`) travels as [`FLAG_CSUM_PARTIAL`] when it is the plain
/// TCP/UDP one the receiver can describe to its kernel again; any other is completed here.
#[inline]
pub fn encap(
    table: &ForwardingTable,
    vnet: Option<&VnetHdr>,
    buf: &mut [u8],
    len: usize,
    out: &mut [u8],
) -> TxVerdict {
    let Some(packet) = buf.get_mut(HEADER_LEN..HEADER_LEN + len) else {
        return TxVerdict::Drop(DropReason::Malformed);
    };
    let (ip, dst, to) = match route(table, packet) {
        Ok(r) => r,
        Err(reason) => return TxVerdict::Drop(reason),
    };
    let mut header = Header::ip(table.me(), dst);
    let vnet = vnet.copied().unwrap_or_default();
    let partial = vnet.flags & VnetHdr::NEEDS_CSUM != 0;
    if vnet.gso_type & !VnetHdr::GSO_ECN != VnetHdr::GSO_NONE {
        if partial {
            header.flags |= FLAG_CSUM_PARTIAL;
        }
        return match segment::split(&vnet, &packet[..ip.total_len], &header, out) {
            Ok(layout) => TxVerdict::Split { to, dst, layout },
            Err(SplitError::Headers(e)) => TxVerdict::Drop(e.into()),
            Err(SplitError::Unsupported(_)) => TxVerdict::Drop(DropReason::Unsupported),
            Err(
                SplitError::ZeroGsoSize
                | SplitError::GsoTypeMismatch { .. }
                | SplitError::NoPayload
                | SplitError::ChecksumOutside { .. }
                | SplitError::TooManySegments(_)
                | SplitError::BufferTooSmall(_),
            ) => TxVerdict::Drop(DropReason::Malformed),
        };
    }
    if partial {
        let (start, offset) = (vnet.csum_start, vnet.csum_offset);
        if l4_checksum(&ip) == Ok((start, offset)) {
            header.flags |= FLAG_CSUM_PARTIAL;
        } else if ip::complete(
            &mut packet[..ip.total_len],
            usize::from(start),
            usize::from(offset),
        )
        .is_none()
        {
            return TxVerdict::Drop(DropReason::Malformed);
        }
    }
    // Cannot fail: the packet slice above proved buf is longer than the header.
    let _ = header.emit(buf);
    TxVerdict::Single {
        to,
        dst,
        len: HEADER_LEN + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fixtures::{ipv4_udp, table_of, A, B, C};
    use crate::header::DEFAULT_HOP_LIMIT;

    fn encap_packet(
        table: &ForwardingTable,
        vnet: Option<&VnetHdr>,
        packet: &[u8],
    ) -> (TxVerdict, Vec<u8>) {
        let mut buf = vec![0xaa; HEADER_LEN + packet.len()];
        buf[HEADER_LEN..].copy_from_slice(packet);
        let mut out = vec![0u8; SPLIT_BUFFER];
        let v = encap(table, vnet, &mut buf, packet.len(), &mut out);
        (v, buf)
    }

    /// `ipv4_udp` with a partial checksum: the pseudo-header sum in the checksum field.
    fn partial_udp(payload: &[u8]) -> Vec<u8> {
        overlay_testkit::packet::ipv4_udp_partial(
            [10, 32, 1, 1].into(),
            [10, 32, 2, 7].into(),
            4000,
            5000,
            payload,
        )
    }

    #[test]
    fn packet_for_a_peer_block_gets_a_header_and_goes_to_the_next_hop() {
        let table = table_of(A, false);
        let packet = ipv4_udp([10, 32, 1, 1], [10, 32, 2, 7], b"hello");
        for vnet in [None, Some(VnetHdr::default())] {
            let (v, buf) = encap_packet(&table, vnet.as_ref(), &packet);
            assert_eq!(
                v,
                TxVerdict::Single {
                    to: SocketAddr::from(([10, 99, 0, 2], 6783)),
                    dst: B.id(),
                    len: HEADER_LEN + packet.len()
                }
            );
            let h = Header::parse(&buf).expect("header");
            assert_eq!(h, Header::ip(A.id(), B.id()));
            assert_eq!(h.hop_limit, DEFAULT_HOP_LIMIT);
            assert_eq!(&buf[HEADER_LEN..], &packet[..], "packet untouched");
        }
    }

    #[test]
    fn a_plain_partial_checksum_travels_as_a_flag_and_others_are_completed() {
        let table = table_of(A, false);
        let packet = partial_udp(b"some payload");
        let partial = VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        let (v, buf) = encap_packet(&table, Some(&partial), &packet);
        assert!(matches!(v, TxVerdict::Single { .. }), "{v:?}");
        assert_eq!(Header::parse(&buf).map(|h| h.flags), Ok(FLAG_CSUM_PARTIAL));
        assert_eq!(&buf[HEADER_LEN..], &packet[..], "left partial");

        // A checksum at an unusual place (here: the UDP length field, offset 4) is completed
        // and the flag stays clear.
        let odd = VnetHdr {
            csum_offset: 4,
            ..partial
        };
        let (v, buf) = encap_packet(&table, Some(&odd), &packet);
        assert!(matches!(v, TxVerdict::Single { .. }), "{v:?}");
        assert_eq!(Header::parse(&buf).map(|h| h.flags), Ok(0));
        assert_ne!(&buf[HEADER_LEN + 24..HEADER_LEN + 26], &packet[24..26]);

        // A checksum field outside the packet is malformed.
        let outside = VnetHdr {
            csum_start: 2000,
            ..partial
        };
        assert_eq!(
            encap_packet(&table, Some(&outside), &packet).0,
            TxVerdict::Drop(DropReason::Malformed)
        );
    }

    #[test]
    fn relayed_route_sends_to_the_relay_with_the_final_destination_in_the_header() {
        let table = table_of(A, true);
        let packet = ipv4_udp([10, 32, 1, 1], [10, 32, 2, 7], b"x");
        let (v, buf) = encap_packet(&table, None, &packet);
        assert!(
            matches!(v, TxVerdict::Single { to, .. } if to == SocketAddr::from(([10, 99, 0, 3], 6783)))
        );
        assert_eq!(Header::parse(&buf).map(|h| h.dst), Ok(B.id()));
    }

    #[test]
    fn unroutable_and_foreign_packets_are_dropped_with_their_reason() {
        let table = table_of(A, false);
        let cases: [([u8; 4], DropReason); 4] = [
            ([10, 32, 1, 9], DropReason::NoRoute),       // our own block
            ([10, 32, 9, 1], DropReason::NoRoute),       // block nobody owns
            ([192, 168, 1, 1], DropReason::Unsupported), // outside the cluster
            ([10, 48, 0, 1], DropReason::Unsupported),
        ];
        for (dst, reason) in cases {
            let packet = ipv4_udp([10, 32, 1, 1], dst, b"x");
            assert_eq!(
                encap_packet(&table, None, &packet).0,
                TxVerdict::Drop(reason),
                "{dst:?}"
            );
        }
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        assert_eq!(
            encap_packet(&table, None, &v6).0,
            TxVerdict::Drop(DropReason::Unsupported)
        );
        assert_eq!(
            encap_packet(&table, None, &[0x45; 10]).0,
            TxVerdict::Drop(DropReason::Malformed)
        );
        // A length past the buffer is refused, not a panic.
        let mut buf = [0u8; HEADER_LEN + 4];
        assert_eq!(
            encap(&table, None, &mut buf, 5, &mut []),
            TxVerdict::Drop(DropReason::Malformed)
        );
    }

    #[test]
    fn unreachable_owner_has_no_route() {
        let table = table_of(C, false);
        // C's table in the direct topology reaches everyone; an empty table reaches no one.
        let empty = ForwardingTable::empty(C.id(), "10.32.0.0/12".parse().expect("net"), 24);
        let packet = ipv4_udp([10, 32, 3, 1], [10, 32, 1, 1], b"x");
        assert!(matches!(
            encap_packet(&table, None, &packet).0,
            TxVerdict::Single { .. }
        ));
        assert_eq!(
            encap_packet(&empty, None, &packet).0,
            TxVerdict::Drop(DropReason::NoRoute)
        );
    }
}
