//! TUN → UDP: read a packet or a super-packet, find the peer owning its destination (one
//! lookup per super-packet), give every segment an overlay header and send them to the next
//! hop in as few sends as GSO allows.
//!
//! The read buffer is laid out so that the IP packet always starts at [`HEADER_LEN`]: with a
//! virtio-net header the TUN is read at `HEADER_LEN - VNET_HDR_LEN`. A single packet then
//! gets its overlay header written in front of it in place (over the virtio header, once
//! parsed) and goes out as one datagram; a super-packet is split by
//! [`overlay_proto::segment::split`] into the thread's second buffer.
//!
//! This is the I/O half: where a packet goes and its datagrams are decided by
//! [`overlay_proto::dataplane::encap`] (a [`TxVerdict`]); here are the TUN read, the sealing
//! with `--encrypt`, the UDP sends and the counters.

use super::counters::Counters;
use super::keys::{Clock, Encryption, KeyTable, Sealers};
use super::tun::Tun;
use super::udp::{Outcome, Udp};
use super::wake::Shutdown;
use super::worker::{self, Step};
use super::{FirstError, MAX_PACKET};
use arc_swap::{ArcSwap, Cache};
use overlay_proto::dataplane::encap::{encap, SPLIT_BUFFER};
use overlay_proto::dataplane::{DropReason, TxVerdict};
use overlay_proto::forwarding::ForwardingTable;
use overlay_proto::header::HEADER_LEN;
use overlay_proto::peer::PeerId;
use overlay_proto::seal::{self, OVERHEAD};
use overlay_proto::segment::{SplitLayout, MAX_SEGMENTS};
use overlay_proto::vnet::{VnetHdr, VNET_HDR_LEN};
use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

/// Room after a split batch for sealing it: [`OVERHEAD`] bytes per datagram.
const SEAL_ROOM: usize = MAX_SEGMENTS * OVERHEAD;

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
