//! TUN → UDP: read a packet, find the peer owning its destination, put the overlay header in
//! front of it and send it to the next hop.

use super::counters::{Counters, DropReason};
use super::tun::Tun;
use super::udp::{Sent, Udp};
use super::wake::{Shutdown, Wait, READABLE};
use super::{packet, FirstError, ERROR_BACKOFF_MS, MAX_PACKET};
use arc_swap::{ArcSwap, Cache};
use overlay_proto::forwarding::{ForwardingTable, Lookup};
use overlay_proto::header::{Header, HEADER_LEN};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;

/// What to do with a packet read from the TUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxVerdict {
    /// Send `buf[..len]` (header and packet) to `to`.
    Send {
        /// The next hop's underlay address.
        to: SocketAddr,
        /// Datagram length.
        len: usize,
    },
    /// Drop the packet, counting it under this reason.
    Drop(DropReason),
}

/// Decides where the packet in `buf[HEADER_LEN..HEADER_LEN + len]` goes and, if it is sent,
/// writes the overlay header into `buf[..HEADER_LEN]`.
///
/// Non-IPv4 packets and destinations outside the cluster are `Unsupported`; a destination
/// whose block has no owner, whose owner is unreachable, or that is in our own block (the
/// kernel should have delivered it locally) has no route.
#[inline]
pub(crate) fn encap(table: &ForwardingTable, buf: &mut [u8], len: usize) -> TxVerdict {
    let Some(packet) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return TxVerdict::Drop(DropReason::Malformed);
    };
    let ip = match packet::parse_ipv4(packet) {
        Ok(ip) => ip,
        Err(reason) => return TxVerdict::Drop(reason),
    };
    match table.lookup(ip.dst) {
        Lookup::Remote { dst, next_hop } => {
            // Cannot fail: the packet slice above proved buf is longer than the header.
            let _ = Header::ip(table.me(), dst).emit(buf);
            TxVerdict::Send {
                to: next_hop.addr,
                len: HEADER_LEN + len,
            }
        }
        Lookup::OutsideCluster => TxVerdict::Drop(DropReason::Unsupported),
        Lookup::Local | Lookup::Unreachable | Lookup::NoOwner => {
            TxVerdict::Drop(DropReason::NoRoute)
        }
    }
}

/// The TUN → UDP thread.
#[derive(Debug)]
pub(crate) struct TxThread {
    pub(crate) tun: Arc<Tun>,
    pub(crate) udp: Arc<Udp>,
    pub(crate) table: Arc<ArcSwap<ForwardingTable>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: Arc<Shutdown>,
}

impl TxThread {
    /// Moves packets until shutdown is requested.
    pub(crate) fn run(self) {
        let mut buf = vec![0u8; HEADER_LEN + MAX_PACKET].into_boxed_slice();
        let mut table = Cache::new(Arc::clone(&self.table));
        let mut first_error = FirstError::default();
        while !self.shutdown.requested() {
            let len = match self.tun.read(&mut buf[HEADER_LEN..]) {
                Ok(len) => len,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    match self.shutdown.wait(self.tun.as_fd(), READABLE, -1) {
                        Wait::Stop => break,
                        Wait::Ready | Wait::Timeout => continue,
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    first_error.log("overlay-tx", "reading the TUN device", &e);
                    if self.shutdown.sleep(ERROR_BACKOFF_MS) == Wait::Stop {
                        break;
                    }
                    continue;
                }
            };
            match encap(table.load(), &mut buf, len) {
                TxVerdict::Send { to, len: datagram } => {
                    match self.udp.send_waiting(&buf[..datagram], to, &self.shutdown) {
                        Sent::Ok => self.counters.sent(len),
                        Sent::Stop => break,
                        Sent::Failed(reason, e) => {
                            self.counters.dropped(reason);
                            first_error.log("overlay-tx", "sending to a peer", &e);
                        }
                    }
                }
                TxVerdict::Drop(reason) => self.counters.dropped(reason),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::test_util::{ipv4_udp, table_of, A, B, C};
    use overlay_proto::header::DEFAULT_HOP_LIMIT;

    fn encap_packet(table: &ForwardingTable, packet: &[u8]) -> (TxVerdict, Vec<u8>) {
        let mut buf = vec![0xaa; HEADER_LEN + packet.len()];
        buf[HEADER_LEN..].copy_from_slice(packet);
        let v = encap(table, &mut buf, packet.len());
        (v, buf)
    }

    #[test]
    fn packet_for_a_peer_block_gets_a_header_and_goes_to_the_next_hop() {
        let table = table_of(A, false);
        let packet = ipv4_udp([10, 32, 1, 1], [10, 32, 2, 7], b"hello");
        let (v, buf) = encap_packet(&table, &packet);
        assert_eq!(
            v,
            TxVerdict::Send {
                to: SocketAddr::from(([10, 99, 0, 2], 6783)),
                len: HEADER_LEN + packet.len()
            }
        );
        let h = Header::parse(&buf).expect("header");
        assert_eq!(h, Header::ip(A.id(), B.id()));
        assert_eq!(h.hop_limit, DEFAULT_HOP_LIMIT);
        assert_eq!(&buf[HEADER_LEN..], &packet[..], "packet untouched");
    }

    #[test]
    fn relayed_route_sends_to_the_relay_with_the_final_destination_in_the_header() {
        let table = table_of(A, true);
        let packet = ipv4_udp([10, 32, 1, 1], [10, 32, 2, 7], b"x");
        let (v, buf) = encap_packet(&table, &packet);
        assert!(
            matches!(v, TxVerdict::Send { to, .. } if to == SocketAddr::from(([10, 99, 0, 3], 6783)))
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
                encap_packet(&table, &packet).0,
                TxVerdict::Drop(reason),
                "{dst:?}"
            );
        }
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        assert_eq!(
            encap_packet(&table, &v6).0,
            TxVerdict::Drop(DropReason::Unsupported)
        );
        assert_eq!(
            encap_packet(&table, &[0x45; 10]).0,
            TxVerdict::Drop(DropReason::Malformed)
        );
        // A length past the buffer is refused, not a panic.
        let mut buf = [0u8; HEADER_LEN + 4];
        assert_eq!(
            encap(&table, &mut buf, 5),
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
            encap_packet(&table, &packet).0,
            TxVerdict::Send { .. }
        ));
        assert_eq!(
            encap_packet(&empty, &packet).0,
            TxVerdict::Drop(DropReason::NoRoute)
        );
    }
}
