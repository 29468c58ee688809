//! TUN → UDP: read a packet or a super-packet, find the peer owning its destination (one
//! lookup per super-packet), give every segment an overlay header and send them to the next
//! hop in as few sends as GSO allows.
//!
//! The read buffer is laid out so that the IP packet always starts at [`HEADER_LEN`]: with a
//! virtio-net header the TUN is read at `HEADER_LEN - VNET_HDR_LEN`. A single packet then
//! gets its overlay header written in front of it in place (over the virtio header, once
//! parsed) and goes out as one datagram; a super-packet is split by
//! [`overlay_proto::segment::split`] into the thread's second buffer.

use super::counters::{Counters, DropReason};
use super::keys::{Clock, Encryption, KeyTable, Sealers};
use super::packet::{self, Ipv4Info};
use super::tun::Tun;
use super::udp::{Outcome, Udp};
use super::wake::Shutdown;
use super::worker::{self, Step};
use super::{FirstError, MAX_PACKET};
use arc_swap::{ArcSwap, Cache};
use overlay_proto::forwarding::{ForwardingTable, Lookup};
use overlay_proto::header::{Header, FLAG_CSUM_PARTIAL, HEADER_LEN};
use overlay_proto::peer::PeerId;
use overlay_proto::seal::{self, OVERHEAD};
use overlay_proto::segment::{self, SplitError, SplitLayout, MAX_SEGMENTS};
use overlay_proto::vnet::{VnetHdr, VNET_HDR_LEN};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

/// Size of the buffer a super-packet is split into: 64 KiB of payload plus, for each of up
/// to 128 segments, an overlay header and the largest IPv4 + TCP headers (60 + 60 bytes).
pub(crate) const SPLIT_BUFFER: usize = 128 << 10;
/// Room after a split batch for sealing it: [`OVERHEAD`] bytes per datagram.
const SEAL_ROOM: usize = MAX_SEGMENTS * OVERHEAD;

/// What to do with a packet read from the TUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxVerdict {
    /// Send `buf[..len]` (header and packet) to `to` as one datagram.
    Single {
        /// The next hop's underlay address.
        to: SocketAddr,
        /// The destination peer.
        dst: PeerId,
        /// Datagram length.
        len: usize,
    },
    /// Send the datagrams laid out in the split buffer to `to`.
    Split {
        /// The next hop's underlay address.
        to: SocketAddr,
        /// The destination peer.
        dst: PeerId,
        /// Where they are.
        layout: SplitLayout,
    },
    /// Drop the packet, counting it under this reason.
    Drop(DropReason),
}

/// Where a packet goes: the destination peer and the next hop's address.
///
/// Non-IPv4 packets and destinations outside the cluster are `Unsupported`; a destination
/// whose block has no owner, whose owner is unreachable, or that is in our own block (the
/// kernel should have delivered it locally) has no route.
#[inline]
pub(crate) fn route(
    table: &ForwardingTable,
    packet: &[u8],
) -> Result<(Ipv4Info, PeerId, SocketAddr), DropReason> {
    let ip = packet::parse_ipv4(packet)?;
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
pub(crate) fn encap(
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
            Err(SplitError::Unsupported(_)) => TxVerdict::Drop(DropReason::Unsupported),
            Err(
                SplitError::Malformed(_)
                | SplitError::TooManySegments(_)
                | SplitError::BufferTooSmall(_),
            ) => TxVerdict::Drop(DropReason::Malformed),
        };
    }
    if partial {
        let (start, offset) = (vnet.csum_start, vnet.csum_offset);
        if packet::l4_checksum(&ip) == Some((start, offset)) {
            header.flags |= FLAG_CSUM_PARTIAL;
        } else if !packet::complete_checksum(
            &mut packet[..ip.total_len],
            usize::from(start),
            usize::from(offset),
        ) {
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

/// TUN → UDP: the tx half of the packet thread ([`super::worker`]). It owns its buffers,
/// its view of the forwarding table and its sealers; [`Tx::step`] moves one read.
pub(crate) struct Tx {
    tun: Arc<Tun>,
    udp: Arc<Udp>,
    counters: Arc<Counters>,
    shutdown: Arc<Shutdown>,
    table: Cache<Arc<ArcSwap<ForwardingTable>>, Arc<ForwardingTable>>,
    /// With `--encrypt`: the keys to seal datagrams with.
    crypto: Option<TxCrypto>,
    /// Where the TUN is read: the IP packet always starts at [`HEADER_LEN`].
    read_at: usize,
    vnet_hdr: bool,
    /// The read buffer, with room to seal a single packet in place.
    buf: Box<[u8]>,
    /// The split buffer, with room to seal a batch in place.
    out: Box<[u8]>,
    first_error: FirstError,
}

/// The tx half's sealing state with `--encrypt`.
struct TxCrypto {
    sealers: Sealers,
    keys: Cache<Arc<ArcSwap<KeyTable>>, Arc<KeyTable>>,
    clock: Clock,
}

impl TxCrypto {
    /// Seals the datagrams `plain` lays out at the start of `buf` for `dst` in place.
    #[inline]
    fn seal(
        &mut self,
        dst: PeerId,
        buf: &mut [u8],
        plain: SplitLayout,
    ) -> Result<SplitLayout, DropReason> {
        let now = self.clock.now();
        let keys = self.keys.load();
        self.sealers.seal(keys, dst, now, buf, plain)
    }
}

impl Tx {
    /// The tx half over `tun` and `udp`, counting into `counters`.
    pub(crate) fn new(
        tun: Arc<Tun>,
        udp: Arc<Udp>,
        table: &Arc<ArcSwap<ForwardingTable>>,
        counters: Arc<Counters>,
        shutdown: Arc<Shutdown>,
        encryption: Option<&Encryption>,
    ) -> Tx {
        let vnet_hdr = tun.features().vnet_hdr;
        Tx {
            read_at: if vnet_hdr {
                HEADER_LEN - VNET_HDR_LEN
            } else {
                HEADER_LEN
            },
            vnet_hdr,
            crypto: encryption.map(|e| TxCrypto {
                sealers: Sealers::new(e.me, e.suite),
                keys: Cache::new(Arc::clone(&e.keys)),
                clock: Clock::new(),
            }),
            table: Cache::new(Arc::clone(table)),
            buf: vec![0u8; HEADER_LEN + MAX_PACKET + OVERHEAD].into_boxed_slice(),
            out: vec![0u8; SPLIT_BUFFER + SEAL_ROOM].into_boxed_slice(),
            first_error: FirstError::default(),
            tun,
            udp,
            counters,
            shutdown,
        }
    }

    /// The TUN device's fd, to wait on.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.tun.as_fd()
    }

    /// Reads one packet or super-packet from the TUN and sends it on (or drops and counts
    /// it). [`Step::Idle`] when there was nothing to read.
    pub(crate) fn step(&mut self) -> Step {
        let read_at = self.read_at;
        let n = match self.tun.read(&mut self.buf[read_at..]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Idle,
            Err(e) if e.kind() == ErrorKind::Interrupted => return Step::Moved,
            Err(e) => {
                self.first_error
                    .log("overlay-dp", "reading the TUN device", &e);
                return worker::back_off(&self.shutdown);
            }
        };
        let (vnet, len) = if self.vnet_hdr {
            match VnetHdr::parse(&self.buf[read_at..read_at + n]) {
                Ok(v) => (Some(v), n - VNET_HDR_LEN),
                Err(_) => {
                    self.counters.dropped(DropReason::Malformed);
                    return Step::Moved;
                }
            }
        } else {
            (None, n)
        };
        let verdict = encap(
            self.table.load(),
            vnet.as_ref(),
            &mut self.buf[..HEADER_LEN + MAX_PACKET],
            len,
            &mut self.out[..SPLIT_BUFFER],
        );
        let outcome = match verdict {
            TxVerdict::Single { to, dst, len } => {
                let sent = match self.crypto.as_mut() {
                    None => Ok(len),
                    Some(c) => c
                        .seal(dst, &mut self.buf, seal::single(len))
                        .map(|l| l.total_len),
                };
                let sent = match sent {
                    Ok(n) => n,
                    Err(reason) => {
                        self.counters.dropped(reason);
                        return Step::Moved;
                    }
                };
                let o = self
                    .udp
                    .send_segments(&self.buf[..sent], sent, to, &self.shutdown);
                (o, dst, len - HEADER_LEN, 1, len)
            }
            TxVerdict::Split { to, dst, layout } => {
                self.counters.super_packet();
                let wire = match self.crypto.as_mut() {
                    None => Ok(layout),
                    Some(c) => c.seal(dst, &mut self.out, layout),
                };
                let wire = match wire {
                    Ok(w) => w,
                    Err(reason) => {
                        self.counters.dropped_n(reason, layout.count);
                        return Step::Moved;
                    }
                };
                let o = self.udp.send_segments(
                    &self.out[..wire.total_len],
                    wire.datagram_len,
                    to,
                    &self.shutdown,
                );
                let inner = layout.total_len - layout.count * HEADER_LEN;
                (o, dst, inner, layout.count, layout.datagram_len)
            }
            TxVerdict::Drop(reason) => {
                self.counters.dropped(reason);
                return Step::Moved;
            }
        };
        let (o, dst, inner_bytes, count, datagram_len) = outcome;
        if self.account(&o, dst, inner_bytes, count, datagram_len) {
            Step::Stop
        } else {
            Step::Moved
        }
    }

    /// Counts what a send did; true if the thread must stop.
    #[inline]
    fn account(
        &mut self,
        o: &Outcome,
        dst: PeerId,
        inner_bytes: usize,
        count: usize,
        datagram_len: usize,
    ) -> bool {
        if o.sent > 0 {
            let bytes = if o.sent == count {
                inner_bytes
            } else {
                o.sent * datagram_len.saturating_sub(HEADER_LEN)
            };
            self.counters.sent(dst, o.sent, bytes);
        }
        if o.gso_sends > 0 {
            self.counters.gso_sends(o.gso_sends);
        }
        for (reason, n) in o.drops() {
            if n > 0 {
                self.counters.dropped_n(reason, n);
            }
        }
        if let Some(e) = &o.error {
            self.first_error.log("overlay-dp", "sending to a peer", e);
        }
        o.stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::test_util::{ipv4_udp, table_of, A, B, C};
    use overlay_proto::header::DEFAULT_HOP_LIMIT;

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
        let mut p = ipv4_udp([10, 32, 1, 1], [10, 32, 2, 7], payload);
        let mut sum: u32 = p[12..20]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        sum += 17 + (8 + payload.len()) as u32;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        p[26..28].copy_from_slice(&(sum as u16).to_be_bytes());
        p
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
