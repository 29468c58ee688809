//! UDP → TUN or relay: the fate of a received datagram ([`decap_datagram`]), how a sealed
//! one is opened ([`Unseal`]), and the virtio header of a packet written to the TUN alone
//! ([`single_vnet_hdr`]).

use super::relay::relay;
use super::trace::MAX_TRACE_DATAGRAM;
use super::{DropReason, RxVerdict};
use crate::forwarding::ForwardingTable;
use crate::header::{Header, Kind, FLAG_CSUM_PARTIAL, HEADER_LEN};
use crate::ip::{l4_checksum, parse_ipv4};
use crate::peer::PeerId;
use crate::vnet::VnetHdr;
use std::net::{IpAddr, SocketAddr};

/// Decides the fate of `datagram`, received from underlay address `from`: the sender must be
/// a current peer (`NotPeer`), then as [`decap_datagram`]. (The agent checks the sender once
/// per receive batch, all of whose datagrams have one sender, and calls [`decap_datagram`]
/// per datagram.)
#[inline]
pub fn decap<U: Unseal>(
    table: &ForwardingTable,
    from: &SocketAddr,
    datagram: &mut [u8],
    unseal: &mut U,
) -> RxVerdict {
    if !table.accepts_sender(from) {
        return RxVerdict::Drop(DropReason::NotPeer);
    }
    decap_datagram(table, datagram, unseal)
}

/// How datagrams addressed to this node are unsealed: [`Plain`] without `--encrypt`; with
/// it, the agent's openers over its key table.
pub trait Unseal {
    /// Whether data datagrams must be sealed (`--encrypt`).
    fn required(&self) -> bool;
    /// Opens the sealed datagram `d` from `src` in place: the plain datagram's length (at most
    /// `d.len()`; a longer one is taken as `Malformed`), or why it is dropped.
    fn open(&mut self, src: PeerId, d: &mut [u8]) -> Result<usize, DropReason>;
}

/// Without `--encrypt`: nothing is sealed, and a sealed datagram cannot be opened.
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl Unseal for Plain {
    #[inline]
    fn required(&self) -> bool {
        false
    }
    #[inline]
    fn open(&mut self, _src: PeerId, _d: &mut [u8]) -> Result<usize, DropReason> {
        Err(DropReason::SealedUnexpected)
    }
}

/// Decides the fate of `datagram` from an accepted sender.
///
/// In order: the header must parse (`Malformed`, `BadVersion`, `BadKind`). A trace datagram
/// (any kind but Ip) of at most [`MAX_TRACE_DATAGRAM`] bytes goes to the trace task, which
/// relays or answers it (longer ones are `Malformed`). For another peer: the hop limit must
/// allow one more hop (`HopLimit`) and the destination must be reachable (`NoRoute`), as
/// [`relay`] decides. For this node: the payload must be a well-formed IPv4 packet
/// (`Malformed`; IPv6 is `Unsupported`), its source inside the originating peer's block
/// (`Spoofed`), its destination inside ours (`NotLocal`), and if it is flagged
/// checksum-partial it must be an unfragmented TCP or UDP packet (`Malformed`).
///
/// Sealing (`unseal`): a relay forwards sealed datagrams as they are (it only decrements the
/// hop limit, which the tag does not cover). For this node, before anything else, a sealed
/// datagram is opened in place (each failure its own reason: `NoKey`, `Replay`, `BadTag`,
/// ...; without `--encrypt` it is `SealedUnexpected`), and with `--encrypt` an unsealed one
/// is dropped (`Unsealed`). Trace datagrams carry no pod data and stay unsealed.
#[inline]
pub fn decap_datagram<U: Unseal>(
    table: &ForwardingTable,
    datagram: &mut [u8],
    unseal: &mut U,
) -> RxVerdict {
    let header = match Header::parse(datagram) {
        Ok(h) => h,
        Err(e) => return RxVerdict::Drop(e.into()),
    };
    if header.kind != Kind::Ip {
        return trace_verdict(datagram.len());
    }
    if header.dst != table.me() {
        return match relay(table, &header, datagram) {
            Ok(next) => RxVerdict::Relay { to: next.addr },
            Err(reason) => RxVerdict::Drop(reason),
        };
    }
    let datagram = if header.is_sealed() {
        match unseal.open(header.src, datagram) {
            Ok(n) => match datagram.get(..n) {
                Some(plain) => plain,
                None => return RxVerdict::Drop(DropReason::Malformed),
            },
            Err(reason) => return RxVerdict::Drop(reason),
        }
    } else if unseal.required() {
        return RxVerdict::Drop(DropReason::Unsealed);
    } else {
        &datagram[..]
    };
    let payload = datagram.get(HEADER_LEN..).unwrap_or_default();
    let ip = match parse_ipv4(payload) {
        Ok(ip) => ip,
        Err(e) => return RxVerdict::Drop(e.into()),
    };
    if !table.source_allowed(header.src, IpAddr::V4(ip.src)) {
        return RxVerdict::Drop(DropReason::Spoofed);
    }
    if !table.local_block().is_some_and(|b| b.contains(&ip.dst)) {
        return RxVerdict::Drop(DropReason::NotLocal);
    }
    let partial = if header.flags & FLAG_CSUM_PARTIAL != 0 {
        match l4_checksum(&ip) {
            Ok(at) => Some(at),
            Err(e) => return RxVerdict::Drop(e.into()),
        }
    } else {
        None
    };
    RxVerdict::Deliver {
        range: HEADER_LEN..HEADER_LEN + ip.total_len,
        src: header.src,
        partial,
    }
}

/// Out of line: the Ip path only pays the kind comparison.
#[cold]
#[inline(never)]
fn trace_verdict(len: usize) -> RxVerdict {
    if len <= MAX_TRACE_DATAGRAM {
        RxVerdict::Trace
    } else {
        RxVerdict::Drop(DropReason::Malformed)
    }
}

/// The virtio header of a single (not coalesced) packet written to the TUN.
#[inline]
pub fn single_vnet_hdr(partial: Option<(u16, u16)>) -> VnetHdr {
    match partial {
        Some((csum_start, csum_offset)) => VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            csum_start,
            csum_offset,
            ..VnetHdr::default()
        },
        None => VnetHdr::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fixtures::{datagram, ipv4_udp, table_of, A, B, C};
    use crate::dataplane::trace::MAX_TRACE_DATAGRAM;
    use crate::header::VERSION;
    use crate::peer::PeerId;
    use std::net::SocketAddr;

    fn decap_plain(table: &ForwardingTable, from: &SocketAddr, d: &mut [u8]) -> RxVerdict {
        decap(table, from, d, &mut Plain)
    }

    #[test]
    fn packet_for_this_node_is_delivered_without_header_or_padding() {
        let table = table_of(B, false);
        let packet = ipv4_udp([10, 32, 1, 5], [10, 32, 2, 1], b"payload");
        let mut d = datagram(Header::ip(A.id(), B.id()), &packet);
        d.extend_from_slice(&[0; 3]); // trailing bytes past the IPv4 total length
        let v = decap_plain(&table, &A.underlay(), &mut d);
        assert_eq!(
            v,
            RxVerdict::Deliver {
                range: HEADER_LEN..HEADER_LEN + packet.len(),
                src: A.id(),
                partial: None
            }
        );
    }

    #[test]
    fn a_partial_checksum_is_passed_on_for_whole_tcp_and_udp_packets_only() {
        let table = table_of(B, false);
        let mut h = Header::ip(A.id(), B.id());
        h.flags = FLAG_CSUM_PARTIAL;
        let udp = ipv4_udp([10, 32, 1, 5], [10, 32, 2, 1], b"payload");
        assert_eq!(
            decap_plain(&table, &A.underlay(), &mut datagram(h, &udp)),
            RxVerdict::Deliver {
                range: HEADER_LEN..HEADER_LEN + udp.len(),
                src: A.id(),
                partial: Some((20, 6))
            }
        );
        let mut icmp = udp.clone();
        icmp[9] = 1;
        assert_eq!(
            decap_plain(&table, &A.underlay(), &mut datagram(h, &icmp)),
            RxVerdict::Drop(DropReason::Malformed)
        );
        let mut fragment = udp;
        fragment[6] = 0x20;
        assert_eq!(
            decap_plain(&table, &A.underlay(), &mut datagram(h, &fragment)),
            RxVerdict::Drop(DropReason::Malformed)
        );
        assert_eq!(single_vnet_hdr(None), VnetHdr::default());
        assert_eq!(
            single_vnet_hdr(Some((20, 16))),
            VnetHdr {
                flags: VnetHdr::NEEDS_CSUM,
                csum_start: 20,
                csum_offset: 16,
                ..VnetHdr::default()
            }
        );
    }

    #[test]
    fn datagram_for_another_peer_is_relayed_with_one_hop_less() {
        let table = table_of(C, true);
        let packet = ipv4_udp([10, 32, 1, 5], [10, 32, 2, 1], b"payload");
        let mut d = datagram(Header::ip(A.id(), B.id()), &packet);
        let v = decap_plain(&table, &A.underlay(), &mut d);
        assert_eq!(v, RxVerdict::Relay { to: B.underlay() });
        let h = Header::parse(&d).expect("header");
        assert_eq!(h.hop_limit, Header::ip(A.id(), B.id()).hop_limit - 1);
        assert_eq!(&d[HEADER_LEN..], &packet[..], "payload untouched");
    }

    #[test]
    fn hop_limit_one_is_not_relayed_but_is_delivered_at_the_destination() {
        let packet = ipv4_udp([10, 32, 1, 5], [10, 32, 2, 1], b"x");
        let mut last_hop = Header::ip(A.id(), B.id());
        last_hop.hop_limit = 1;
        let mut d = datagram(last_hop, &packet);
        assert_eq!(
            decap_plain(&table_of(C, true), &A.underlay(), &mut d.clone()),
            RxVerdict::Drop(DropReason::HopLimit)
        );
        assert!(matches!(
            decap_plain(&table_of(B, true), &C.underlay(), &mut d),
            RxVerdict::Deliver { .. }
        ));
        last_hop.hop_limit = 0;
        let mut d = datagram(last_hop, &packet);
        assert_eq!(
            decap_plain(&table_of(C, true), &A.underlay(), &mut d),
            RxVerdict::Drop(DropReason::HopLimit)
        );
    }

    #[test]
    fn every_rejection_has_its_reason() {
        let table = table_of(B, false);
        let good = ipv4_udp([10, 32, 1, 5], [10, 32, 2, 1], b"x");
        let h = Header::ip(A.id(), B.id());
        let check = |from: SocketAddr, mut d: Vec<u8>, want: DropReason| {
            assert_eq!(
                decap_plain(&table, &from, &mut d),
                RxVerdict::Drop(want),
                "{want:?}"
            );
        };
        // Unknown sender: a non-peer address, or a peer's address on another port.
        check(
            "10.99.0.9:6783".parse().expect("addr"),
            datagram(h, &good),
            DropReason::NotPeer,
        );
        check(
            "10.99.0.1:6784".parse().expect("addr"),
            datagram(h, &good),
            DropReason::NotPeer,
        );
        // Header problems.
        for len in 0..HEADER_LEN {
            check(
                A.underlay(),
                datagram(h, &good)[..len].to_vec(),
                DropReason::Malformed,
            );
        }
        let mut d = datagram(h, &good);
        d[0] = VERSION + 1;
        check(A.underlay(), d, DropReason::BadVersion);
        let mut d = datagram(h, &good);
        d[1] = 0xee;
        check(A.underlay(), d, DropReason::BadKind);
        // Inner packet problems.
        check(A.underlay(), datagram(h, &[]), DropReason::Malformed);
        check(
            A.underlay(),
            datagram(h, &good[..good.len() - 1]),
            DropReason::Malformed,
        );
        let mut v6 = vec![0u8; 48];
        v6[0] = 0x60;
        check(A.underlay(), datagram(h, &v6), DropReason::Unsupported);
        // Inner source outside A's block (C's block, B's own block).
        let spoofed = ipv4_udp([10, 32, 3, 5], [10, 32, 2, 1], b"x");
        check(A.underlay(), datagram(h, &spoofed), DropReason::Spoofed);
        let spoofed = ipv4_udp([10, 32, 2, 9], [10, 32, 2, 1], b"x");
        check(A.underlay(), datagram(h, &spoofed), DropReason::Spoofed);
        // Claiming to come from B itself.
        check(
            A.underlay(),
            datagram(Header::ip(B.id(), B.id()), &good),
            DropReason::Spoofed,
        );
        // Destination outside our block.
        let elsewhere = ipv4_udp([10, 32, 1, 5], [10, 32, 3, 1], b"x");
        check(A.underlay(), datagram(h, &elsewhere), DropReason::NotLocal);
        // Relay to a peer nobody can reach.
        let unknown = PeerId(42);
        check(
            A.underlay(),
            datagram(Header::ip(A.id(), unknown), &good),
            DropReason::NoRoute,
        );
    }

    #[test]
    fn trace_datagrams_take_the_trace_branch_whoever_they_are_for() {
        let table = table_of(C, true);
        for kind in [Kind::TraceProbe, Kind::TraceReport] {
            for dst in [B.id(), C.id(), PeerId(42)] {
                let h = Header {
                    kind,
                    hop_limit: 1,
                    ..Header::ip(A.id(), dst)
                };
                let mut d = datagram(h, &[0u8; 16]);
                let before = d.clone();
                assert_eq!(decap_plain(&table, &A.underlay(), &mut d), RxVerdict::Trace);
                assert_eq!(d, before, "left for the trace task as received");
                let mut big = datagram(h, &[0u8; MAX_TRACE_DATAGRAM]);
                assert_eq!(
                    decap_plain(&table, &A.underlay(), &mut big),
                    RxVerdict::Drop(DropReason::Malformed)
                );
                // Only from peers.
                assert_eq!(
                    decap_plain(&table, &"10.99.0.9:6783".parse().expect("addr"), &mut d),
                    RxVerdict::Drop(DropReason::NotPeer)
                );
            }
        }
    }

    /// Opens by dropping the last `TAG` bytes, or refuses with `refuse`.
    struct Fake {
        required: bool,
        refuse: Option<DropReason>,
    }

    const TAG: usize = 4;

    impl Unseal for Fake {
        fn required(&self) -> bool {
            self.required
        }
        fn open(&mut self, _src: PeerId, d: &mut [u8]) -> Result<usize, DropReason> {
            self.refuse.map_or(Ok(d.len() - TAG), Err)
        }
    }

    #[test]
    fn sealed_datagrams_are_opened_for_this_node_and_relayed_untouched() {
        use crate::header::FLAG_SEALED;
        let packet = ipv4_udp([10, 32, 1, 5], [10, 32, 2, 1], b"payload");
        let mut h = Header::ip(A.id(), B.id());
        h.flags = FLAG_SEALED;
        let mut sealed = datagram(h, &packet);
        sealed.extend_from_slice(&[0xee; TAG]);
        let mut open = Fake {
            required: true,
            refuse: None,
        };
        let table = table_of(B, false);
        assert_eq!(
            decap_datagram(&table, &mut sealed.clone(), &mut open),
            RxVerdict::Deliver {
                range: HEADER_LEN..HEADER_LEN + packet.len(),
                src: A.id(),
                partial: None
            }
        );
        let mut refuse = Fake {
            required: true,
            refuse: Some(DropReason::BadTag),
        };
        assert_eq!(
            decap_datagram(&table, &mut sealed.clone(), &mut refuse),
            RxVerdict::Drop(DropReason::BadTag)
        );
        assert_eq!(
            decap_plain(&table, &A.underlay(), &mut sealed.clone()),
            RxVerdict::Drop(DropReason::SealedUnexpected)
        );
        let mut plain = datagram(Header::ip(A.id(), B.id()), &packet);
        assert_eq!(
            decap_datagram(&table, &mut plain, &mut open),
            RxVerdict::Drop(DropReason::Unsealed)
        );
        // A relay needs no key: only the hop limit changes.
        let mut relayed = sealed.clone();
        assert_eq!(
            decap_datagram(&table_of(C, true), &mut relayed, &mut refuse),
            RxVerdict::Relay { to: B.underlay() }
        );
        assert_eq!(relayed[2] + 1, sealed[2]);
        assert_eq!(relayed[3..], sealed[3..]);
    }

    #[test]
    fn garbage_from_a_peer_never_panics() {
        let table = table_of(B, false);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = [0u8; 96];
        for round in 0..20_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if round % 2 == 0 {
                let _ =
                    Header::ip(A.id(), if round % 4 == 0 { B.id() } else { C.id() }).emit(&mut buf);
                buf[HEADER_LEN] = 0x45;
            }
            let len = (x as usize) % buf.len();
            let _ = decap_plain(&table, &A.underlay(), &mut buf[..len]);
        }
    }
}
