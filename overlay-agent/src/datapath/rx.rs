//! UDP → TUN or relay: check who sent a batch of datagrams (once: a GRO batch has one
//! sender) and each datagram's header; deliver the inner packets that are for this node
//! (coalesced into super-packets where the TUN takes them), and pass the others on towards
//! their destination peer, consecutive ones for the same next hop in one GSO send.
//!
//! A delivered packet is written to the TUN with a virtio header of its own
//! ([`single_vnet_hdr`], written in place over the end of its overlay header: no copy), or
//! handed to the [`Coalescer`]; on a plain TUN a partial checksum is completed first.
//!
//! This is the I/O half: what happens to each datagram is decided by
//! [`overlay_proto::dataplane::decap`] ([`decap_datagram`] returns an [`RxVerdict`]); here
//! are the receive, the TUN writes, the relay sends, the counters, and [`Sealed`], the
//! agent's way of opening sealed datagrams.

use super::counters::Counters;
use super::keys::{Clock, Encryption, KeyTable, Openers};
use super::trace_port::TraceQueue;
use super::tun::Tun;
use super::udp::{Batch, Outcome, Udp};
use super::wake::Shutdown;
use super::worker::{self, Step};
use super::{FirstError, MAX_DATAGRAM};
use arc_swap::{ArcSwap, Cache};
use overlay_proto::coalesce::{CoalesceConfig, Coalescer};
use overlay_proto::dataplane::decap::{decap_datagram, single_vnet_hdr};
use overlay_proto::dataplane::{DropReason, Plain, RxVerdict, Unseal};
use overlay_proto::forwarding::ForwardingTable;
use overlay_proto::ip;
use overlay_proto::peer::PeerId;
use overlay_proto::vnet::{VnetHdr, VNET_HDR_LEN};
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

/// With `--encrypt`: the thread's openers and the key table of this receive batch, to open
/// the sealed datagrams [`decap_datagram`] is given.
pub(crate) struct Sealed<'a> {
    pub(crate) openers: &'a mut Openers,
    pub(crate) keys: &'a KeyTable,
    pub(crate) now: u64,
}

impl Unseal for Sealed<'_> {
    #[inline]
    fn required(&self) -> bool {
        true
    }
    #[inline]
    fn open(&mut self, src: PeerId, d: &mut [u8]) -> Result<usize, DropReason> {
        self.openers.open(self.keys, src, self.now, d)
    }
}

/// What the rx half reads, writes and counts into (shared by its steps).
#[derive(Debug)]
pub(crate) struct RxIo {
    pub(crate) tun: Arc<Tun>,
    pub(crate) udp: Arc<Udp>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: Arc<Shutdown>,
    /// What to coalesce (nothing: one TUN write per packet).
    pub(crate) coalesce: CoalesceConfig,
    /// Where trace datagrams go.
    pub(crate) trace: Arc<TraceQueue>,
}

/// UDP → TUN (and relay): the rx half of the packet thread ([`super::worker`]). It owns its
/// buffer, coalescer, view of the forwarding table and openers; [`Rx::step`] moves one
/// receive.
pub(crate) struct Rx {
    io: RxIo,
    table: Cache<Arc<ArcSwap<ForwardingTable>>, Arc<ForwardingTable>>,
    /// With `--encrypt`: the keys to open datagrams with.
    crypto: Option<RxCrypto>,
    /// Present when the TUN takes super-packets and coalescing is on.
    coalescer: Option<Coalescer>,
    /// Datagrams pushed into the coalescer since its last flush.
    held: usize,
    buf: Box<[u8]>,
    first_error: FirstError,
}

/// The rx half's unsealing state with `--encrypt`.
struct RxCrypto {
    openers: Openers,
    keys: Cache<Arc<ArcSwap<KeyTable>>, Arc<KeyTable>>,
    clock: Clock,
}

/// Writes frames to the TUN, counting them for the batch.
struct TunWriter<'a> {
    tun: &'a Tun,
    vnet_hdr: bool,
    writes: usize,
    coalesced: usize,
    failed: usize,
    error: Option<io::Error>,
}

impl<'a> TunWriter<'a> {
    fn new(tun: &'a Tun) -> Self {
        TunWriter {
            tun,
            vnet_hdr: tun.features().vnet_hdr,
            writes: 0,
            coalesced: 0,
            failed: 0,
            error: None,
        }
    }

    /// Adds what was written to the thread's counters.
    fn count(&self, counters: &Counters, first_error: &mut FirstError) {
        counters.tun_writes(self.writes, self.coalesced);
        if self.failed > 0 {
            counters.dropped_n(DropReason::IoError, self.failed);
        }
        if let Some(e) = &self.error {
            first_error.log("overlay-dp", "writing to the TUN device", e);
        }
    }

    #[inline]
    fn write(&mut self, frame: &[u8]) {
        match self.tun.write(frame) {
            Ok(_) => {
                self.writes += 1;
                if self.vnet_hdr
                    && frame
                        .get(1)
                        .is_some_and(|t| t & !VnetHdr::GSO_ECN != VnetHdr::GSO_NONE)
                {
                    self.coalesced += 1;
                }
            }
            Err(e) => {
                self.failed += 1;
                self.error = Some(e);
            }
        }
    }
}

/// Consecutive relayed datagrams for one next hop: `buf[start..end]`.
#[derive(Debug, Clone, Copy)]
struct RelayRun {
    start: usize,
    end: usize,
    to: SocketAddr,
}

/// Consecutive delivered packets from one peer, counted once.
#[derive(Debug, Clone, Copy)]
struct Tally {
    peer: PeerId,
    packets: usize,
    bytes: usize,
}

/// Most datagrams received between two flushes of the coalescer while more keep arriving:
/// bounds how long a packet may wait in a pending super-packet (a few receives at most).
pub(crate) const FLUSH_AFTER: usize = 128;

impl Rx {
    /// The rx half over `io`, reading the forwarding table from `table`.
    pub(crate) fn new(
        io: RxIo,
        table: &Arc<ArcSwap<ForwardingTable>>,
        encryption: Option<&Encryption>,
    ) -> Rx {
        let coalesce = io.coalesce;
        Rx {
            table: Cache::new(Arc::clone(table)),
            crypto: encryption.map(|e| RxCrypto {
                openers: Openers::new(e.me),
                keys: Cache::new(Arc::clone(&e.keys)),
                clock: Clock::new(),
            }),
            coalescer: (io.tun.features().vnet_hdr && (coalesce.tcp || coalesce.udp))
                .then(|| Coalescer::new(coalesce)),
            held: 0,
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            first_error: FirstError::default(),
            io,
        }
    }

    /// The UDP socket's fd, to wait on.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.io.udp.as_fd()
    }

    /// Receives one batch of datagrams and delivers, relays or drops each.
    /// [`Step::Idle`] when there was nothing to receive and nothing is pending.
    ///
    /// Pending super-packets are flushed when the socket has nothing more to read (so no
    /// packet waits for a later one that is not already queued), or after [`FLUSH_AFTER`]
    /// datagrams. Holding them across receives while more are queued lets segments re-form
    /// whole super-packets across GSO sends and even without GRO.
    pub(crate) fn step(&mut self) -> Step {
        let batch = match self.io.udp.recv_batch(&mut self.buf) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if self.held > 0 {
                    self.flush();
                    // Not idle: more may have come meanwhile, check again before sleeping.
                    return Step::Moved;
                }
                return Step::Idle;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => return Step::Moved,
            Err(e) => {
                // E.g. ICMP errors queued on the socket; nothing was received.
                self.first_error
                    .log("overlay-dp", "receiving from the UDP socket", &e);
                return worker::back_off(&self.io.shutdown);
            }
        };
        let table = self.table.load();
        let stop = match self.crypto.as_mut() {
            None => self.io.batch(
                table,
                &batch,
                &mut self.buf,
                self.coalescer.as_mut(),
                &mut self.first_error,
                &mut Plain,
            ),
            Some(c) => {
                let keys = c.keys.load();
                c.openers.sync(keys);
                let mut sealed = Sealed {
                    openers: &mut c.openers,
                    keys,
                    now: c.clock.now(),
                };
                self.io.batch(
                    table,
                    &batch,
                    &mut self.buf,
                    self.coalescer.as_mut(),
                    &mut self.first_error,
                    &mut sealed,
                )
            }
        };
        if stop {
            return Step::Stop;
        }
        if self.coalescer.is_some() {
            self.held += batch.count();
            if self.held >= FLUSH_AFTER {
                self.flush();
            }
        }
        Step::Moved
    }

    /// Writes every pending super-packet to the TUN now.
    pub(crate) fn flush(&mut self) {
        if self.held == 0 {
            return;
        }
        self.held = 0;
        if let Some(c) = self.coalescer.as_mut() {
            self.io.flush(c, &mut self.first_error);
        }
    }
}

impl RxIo {
    /// Writes every pending super-packet.
    fn flush(&self, coalescer: &mut Coalescer, first_error: &mut FirstError) {
        let mut writer = TunWriter::new(&self.tun);
        coalescer.flush(&mut |f| writer.write(f));
        writer.count(&self.counters, first_error);
    }

    /// Handles one receive; true if the thread must stop.
    #[inline]
    fn batch<U: Unseal>(
        &self,
        table: &ForwardingTable,
        batch: &Batch,
        buf: &mut [u8],
        mut coalescer: Option<&mut Coalescer>,
        first_error: &mut FirstError,
        unseal: &mut U,
    ) -> bool {
        let count = batch.count();
        if count > 1 {
            self.counters.gro_batch();
        }
        if !table.accepts_sender(&batch.from) {
            self.counters.dropped_n(DropReason::NotPeer, count);
            return false;
        }
        let segment = batch.segment.max(1);
        let mut len = batch.len.min(buf.len());
        if batch.truncated {
            // The last datagram was cut off: drop it.
            self.counters.dropped(DropReason::Malformed);
            if count == 1 {
                return false;
            }
            len = (len - 1) / segment * segment;
        }
        let mut writer = TunWriter::new(&self.tun);
        let mut relay: Option<RelayRun> = None;
        let mut tally: Option<Tally> = None;
        let mut stop = false;
        let mut off = 0;
        // At least once: an empty datagram is one (malformed) datagram.
        while !stop {
            let end = (off + segment).min(len);
            match decap_datagram(table, &mut buf[off..end], unseal) {
                RxVerdict::Relay { to } => match &mut relay {
                    Some(run) if run.to == to && run.end == off => run.end = end,
                    _ => {
                        if let Some(run) = relay.take() {
                            stop =
                                self.relay(&buf[run.start..run.end], segment, run.to, first_error);
                        }
                        relay = Some(RelayRun {
                            start: off,
                            end,
                            to,
                        });
                    }
                },
                RxVerdict::Deliver {
                    range,
                    src,
                    partial,
                } => {
                    let packet = off + range.start..off + range.end;
                    match &mut tally {
                        Some(t) if t.peer == src => {
                            t.packets += 1;
                            t.bytes += packet.len();
                        }
                        _ => {
                            if let Some(t) = tally.take() {
                                self.counters.delivered(t.peer, t.packets, t.bytes);
                            }
                            tally = Some(Tally {
                                peer: src,
                                packets: 1,
                                bytes: packet.len(),
                            });
                        }
                    }
                    if let Some(c) = coalescer.as_deref_mut() {
                        c.push(&buf[packet], partial.is_some(), &mut |f| writer.write(f));
                    } else if writer.vnet_hdr {
                        // The virtio header goes over the end of the overlay header, already
                        // parsed: one write, no copy.
                        let frame = packet.start - VNET_HDR_LEN..packet.end;
                        let _ = single_vnet_hdr(partial).emit(&mut buf[frame.clone()]);
                        writer.write(&buf[frame]);
                    } else {
                        if let Some((start, offset)) = partial {
                            // Cannot fail: decap checked the L4 header is inside the packet.
                            let _ = ip::complete(
                                &mut buf[packet.clone()],
                                usize::from(start),
                                usize::from(offset),
                            );
                        }
                        writer.write(&buf[packet]);
                    }
                }
                RxVerdict::Trace => self.trace.offer(&buf[off..end]),
                RxVerdict::Drop(reason) => self.counters.dropped(reason),
            }
            if end == len {
                break;
            }
            off = end;
        }
        if let Some(run) = relay {
            if !stop {
                stop = self.relay(&buf[run.start..run.end], segment, run.to, first_error);
            }
        }
        if let Some(t) = tally {
            self.counters.delivered(t.peer, t.packets, t.bytes);
        }
        writer.count(&self.counters, first_error);
        stop
    }

    /// Relays `datagrams` (each `segment` bytes but the last); true if the thread must stop.
    #[inline]
    fn relay(
        &self,
        datagrams: &[u8],
        segment: usize,
        to: SocketAddr,
        first_error: &mut FirstError,
    ) -> bool {
        let o: Outcome = self
            .udp
            .send_segments(datagrams, segment, to, &self.shutdown);
        if o.sent > 0 {
            self.counters.relayed(o.sent);
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
            first_error.log("overlay-dp", "relaying to a peer", e);
        }
        o.stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_proto::dataplane::decap::decap;
    use overlay_proto::dataplane::fixtures::{datagram, ipv4_udp, table_of, A, B, C};
    use overlay_proto::header::{Header, HEADER_LEN};

    /// `packet` from A to `to`, sealed with the pair secret `[7; 32]`.
    fn sealed_datagram(to: PeerId, packet: &[u8]) -> Vec<u8> {
        use crate::datapath::keys::{KeyTable, PeerKey, Sealers};
        use overlay_proto::seal::{self, Suite};
        let keys = KeyTable {
            version: 1,
            keys: [(
                to,
                PeerKey {
                    generation: 1,
                    secret: [7; 32],
                },
            )]
            .into(),
        };
        let mut d = datagram(Header::ip(A.id(), to), packet);
        let plain = seal::single(d.len());
        d.resize(d.len() + seal::OVERHEAD, 0);
        let mut sealers = Sealers::new(A.id(), Suite::ChaCha20Poly1305);
        let layout = sealers.seal(&keys, to, 0, &mut d, plain).expect("sealed");
        assert_eq!(layout.total_len, d.len());
        d
    }

    #[test]
    fn sealing_is_required_with_encrypt_and_refused_without() {
        use crate::datapath::keys::{KeyTable, Openers, PeerKey};
        let table = table_of(B, false);
        let packet = ipv4_udp([10, 32, 1, 5], [10, 32, 2, 1], b"payload");
        let keys = KeyTable {
            version: 1,
            keys: [(
                A.id(),
                PeerKey {
                    generation: 1,
                    secret: [7; 32],
                },
            )]
            .into(),
        };
        let mut openers = Openers::new(B.id());
        openers.sync(&keys);
        let mut sealed = Sealed {
            openers: &mut openers,
            keys: &keys,
            now: 0,
        };
        // Sealed, with --encrypt: a tampered copy is refused (and moves no replay window),
        // the genuine one opened and delivered as the plain packet.
        let mut d = sealed_datagram(B.id(), &packet);
        let mut replayed = d.clone();
        let mut tampered = d.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            decap_datagram(&table, &mut tampered, &mut sealed),
            RxVerdict::Drop(DropReason::BadTag)
        );
        assert_eq!(
            decap_datagram(&table, &mut d, &mut sealed),
            RxVerdict::Deliver {
                range: HEADER_LEN..HEADER_LEN + packet.len(),
                src: A.id(),
                partial: None
            }
        );
        assert_eq!(&d[HEADER_LEN..HEADER_LEN + packet.len()], &packet[..]);
        // Replayed, not sealed, or from a peer without a key: dropped.
        assert_eq!(
            decap_datagram(&table, &mut replayed, &mut sealed),
            RxVerdict::Drop(DropReason::Replay)
        );
        let mut plain = datagram(Header::ip(A.id(), B.id()), &packet);
        assert_eq!(
            decap_datagram(&table, &mut plain, &mut sealed),
            RxVerdict::Drop(DropReason::Unsealed)
        );
        let mut from_c = sealed_datagram(B.id(), &packet);
        from_c[4..12].copy_from_slice(&C.id().0.to_be_bytes());
        assert_eq!(
            decap_datagram(&table, &mut from_c, &mut sealed),
            RxVerdict::Drop(DropReason::NoKey)
        );
        // Without --encrypt a sealed datagram for this node is refused.
        let mut d = sealed_datagram(B.id(), &packet);
        assert_eq!(
            decap(&table, &A.underlay(), &mut d, &mut Plain),
            RxVerdict::Drop(DropReason::SealedUnexpected)
        );
        // A relay forwards a sealed datagram untouched but for the hop limit, keys or not.
        let relay = table_of(C, true);
        let d = sealed_datagram(B.id(), &packet);
        let mut relayed = d.clone();
        assert_eq!(
            decap_datagram(&relay, &mut relayed, &mut sealed),
            RxVerdict::Relay { to: B.underlay() }
        );
        assert_eq!(relayed[HEADER_LEN..], d[HEADER_LEN..]);
        assert_eq!(relayed[2] + 1, d[2], "one hop less");
    }
}
