//! UDP → TUN or relay: check who sent a datagram and its header; deliver the inner packet if
//! it is for this node, or pass the datagram on towards its destination peer.

use super::counters::{Counters, DropReason};
use super::tun::Tun;
use super::udp::{Sent, Udp};
use super::wake::{Shutdown, Wait, READABLE};
use super::{packet, FirstError, ERROR_BACKOFF_MS, MAX_DATAGRAM};
use arc_swap::{ArcSwap, Cache};
use overlay_proto::forwarding::ForwardingTable;
use overlay_proto::header::{Header, HeaderError, HEADER_LEN};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::Arc;

/// What to do with a received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RxVerdict {
    /// Write `datagram[range]` (the inner packet) to the TUN.
    Deliver(Range<usize>),
    /// Send the datagram, whose hop limit was decremented in place, to `to`.
    Relay {
        /// The next hop's underlay address.
        to: SocketAddr,
    },
    /// Drop it, counting it under this reason.
    Drop(DropReason),
}

/// Decides the fate of `datagram`, received from underlay address `from`.
///
/// In order: the sender must be a current peer (`NotPeer`); the header must parse
/// (`Malformed`, `BadVersion`, `BadKind`). For another peer: the hop limit must allow one more
/// hop (`HopLimit`) and the destination must be reachable (`NoRoute`). For this node: the
/// payload must be a well-formed IPv4 packet (`Malformed`; IPv6 is `Unsupported`), its source
/// inside the originating peer's block (`Spoofed`) and its destination inside ours
/// (`NotLocal`).
#[inline]
pub(crate) fn decap(table: &ForwardingTable, from: &SocketAddr, datagram: &mut [u8]) -> RxVerdict {
    if !table.accepts_sender(from) {
        return RxVerdict::Drop(DropReason::NotPeer);
    }
    let header = match Header::parse(datagram) {
        Ok(h) => h,
        Err(HeaderError::Truncated(_)) => return RxVerdict::Drop(DropReason::Malformed),
        Err(HeaderError::UnknownVersion(_)) => return RxVerdict::Drop(DropReason::BadVersion),
        Err(HeaderError::UnknownKind(_)) => return RxVerdict::Drop(DropReason::BadKind),
    };
    if header.dst != table.me() {
        if header.hop_limit <= 1 {
            return RxVerdict::Drop(DropReason::HopLimit);
        }
        let Some(next) = table.next_hop(header.dst) else {
            return RxVerdict::Drop(DropReason::NoRoute);
        };
        // Cannot fail: the header parsed, so the datagram is longer than it.
        let _ = Header::set_hop_limit(datagram, header.hop_limit - 1);
        return RxVerdict::Relay { to: next.addr };
    }
    let payload = datagram.get(HEADER_LEN..).unwrap_or_default();
    let ip = match packet::parse_ipv4(payload) {
        Ok(ip) => ip,
        Err(reason) => return RxVerdict::Drop(reason),
    };
    if !table.source_allowed(header.src, IpAddr::V4(ip.src)) {
        return RxVerdict::Drop(DropReason::Spoofed);
    }
    if !table.local_block().is_some_and(|b| b.contains(&ip.dst)) {
        return RxVerdict::Drop(DropReason::NotLocal);
    }
    RxVerdict::Deliver(HEADER_LEN..HEADER_LEN + ip.total_len)
}

/// The UDP → TUN (and relay) thread.
#[derive(Debug)]
pub(crate) struct RxThread {
    pub(crate) tun: Arc<Tun>,
    pub(crate) udp: Arc<Udp>,
    pub(crate) table: Arc<ArcSwap<ForwardingTable>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: Arc<Shutdown>,
}

impl RxThread {
    /// Moves datagrams until shutdown is requested.
    pub(crate) fn run(self) {
        let mut buf = vec![0u8; MAX_DATAGRAM].into_boxed_slice();
        let mut table = Cache::new(Arc::clone(&self.table));
        let mut first_error = FirstError::default();
        while !self.shutdown.requested() {
            let (len, from) = match self.udp.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    match self.shutdown.wait(self.udp.as_fd(), READABLE, -1) {
                        Wait::Stop => break,
                        Wait::Ready | Wait::Timeout => continue,
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. ICMP errors queued on the socket; nothing was received.
                    first_error.log("overlay-rx", "receiving from the UDP socket", &e);
                    if self.shutdown.sleep(ERROR_BACKOFF_MS) == Wait::Stop {
                        break;
                    }
                    continue;
                }
            };
            let datagram = &mut buf[..len];
            match decap(table.load(), &from, datagram) {
                RxVerdict::Deliver(range) => {
                    let packet = &datagram[range];
                    match self.tun.write(packet) {
                        Ok(_) => self.counters.delivered(packet.len()),
                        Err(e) => {
                            self.counters.dropped(DropReason::IoError);
                            first_error.log("overlay-rx", "writing to the TUN device", &e);
                        }
                    }
                }
                RxVerdict::Relay { to } => {
                    match self.udp.send_waiting(datagram, to, &self.shutdown) {
                        Sent::Ok => self.counters.relayed(),
                        Sent::Stop => break,
                        Sent::Failed(reason, e) => {
                            self.counters.dropped(reason);
                            first_error.log("overlay-rx", "relaying to a peer", &e);
                        }
                    }
                }
                RxVerdict::Drop(reason) => self.counters.dropped(reason),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::test_util::{datagram, ipv4_udp, table_of, A, B, C};
    use overlay_proto::header::VERSION;

    #[test]
    fn packet_for_this_node_is_delivered_without_header_or_padding() {
        let table = table_of(B, false);
        let packet = ipv4_udp([10, 32, 1, 5], [10, 32, 2, 1], b"payload");
        let mut d = datagram(Header::ip(A.id(), B.id()), &packet);
        d.extend_from_slice(&[0; 3]); // trailing bytes past the IPv4 total length
        let v = decap(&table, &A.underlay(), &mut d);
        assert_eq!(v, RxVerdict::Deliver(HEADER_LEN..HEADER_LEN + packet.len()));
    }

    #[test]
    fn datagram_for_another_peer_is_relayed_with_one_hop_less() {
        let table = table_of(C, true);
        let packet = ipv4_udp([10, 32, 1, 5], [10, 32, 2, 1], b"payload");
        let mut d = datagram(Header::ip(A.id(), B.id()), &packet);
        let v = decap(&table, &A.underlay(), &mut d);
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
            decap(&table_of(C, true), &A.underlay(), &mut d.clone()),
            RxVerdict::Drop(DropReason::HopLimit)
        );
        assert!(matches!(
            decap(&table_of(B, true), &C.underlay(), &mut d),
            RxVerdict::Deliver(_)
        ));
        last_hop.hop_limit = 0;
        let mut d = datagram(last_hop, &packet);
        assert_eq!(
            decap(&table_of(C, true), &A.underlay(), &mut d),
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
                decap(&table, &from, &mut d),
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
        let unknown = overlay_proto::peer::PeerId(42);
        check(
            A.underlay(),
            datagram(Header::ip(A.id(), unknown), &good),
            DropReason::NoRoute,
        );
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
            let _ = decap(&table, &A.underlay(), &mut buf[..len]);
        }
    }
}
