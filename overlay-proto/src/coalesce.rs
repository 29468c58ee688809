//! Receive-side coalescing (GRO in userspace): consecutive segments of one TCP (or UDP) flow
//! are merged into one super-packet with a virtio header, so the TUN is written once per
//! super-packet instead of once per segment.
//!
//! ```text
//! push: | IPv4 | TCP seq=s   | 1400 B |   | IPv4 | TCP seq=s+1400 | 1400 B |   | IPv4 | TCP seq=s+2800 | 600 B |
//! out:  | virtio {NEEDS_CSUM, TCPV4, gso_size 1400, hdr_len 40, csum 20+16} | IPv4 | TCP seq=s | 3400 B |
//! ```
//! # What is merged
//! A packet joins the pending super-packet of its flow (same IP version, addresses, protocol
//! and ports) when all of these hold — the rules of the Linux GRO selftest and of
//! wireguard-go's `tun/offload_linux.go`:
//! - both are coalescable: IPv4 without options, not a fragment, valid header checksum, or
//!   IPv6 with TCP/UDP as next header (no extension headers); the length fields agree with
//!   the packet; at least one byte of payload; TCP flags exactly ACK or ACK|PSH; TCP only
//!   when [`CoalesceConfig::tcp`], UDP only when [`CoalesceConfig::udp`];
//! - same TOS, TTL and DF/reserved flag bits (IPv4) or same traffic class, flow label and
//!   hop limit (IPv6). IPv4 identifications are not compared (incrementing or fixed are both
//!   fine, as in wireguard-go): the super-packet keeps the first one;
//! - TCP: same header length and identical options, same acknowledgment number and window
//!   (as the kernel's GRO; a later ACK or window update is never hidden inside an older
//!   header), the sequence number continues the pending data exactly, and the pending data
//!   does not end with PSH;
//! - the payload is no longer than the first segment's (`gso_size`); a shorter one is the
//!   last: after it the super-packet is closed;
//! - the merged IP packet stays ≤ 65535 bytes; UDP: ≤ 64 segments (the kernel's
//!   `UDP_GRO_CNT_MAX`). A super-packet with no room left for another `gso_size` segment
//!   counts as full;
//! - checksums: a packet that arrived `csum_partial` is trusted (its payload was protected
//!   by the outer UDP checksum); one with a full checksum joins only if that checksum
//!   verifies, since the merged packet is handed to the kernel as "checksum needed".
//!
//! A super-packet that can no longer grow (closed by a short or PSH segment, or full) is
//! written at once; the others when [`Coalescer::flush`] is called, when their slot is
//! needed, or when a packet of their flow arrives that cannot join them.
//!
//! # What is written
//! Frames are [`VNET_HDR_LEN`] + IP packet:
//! - merged (≥ 2 segments): `NEEDS_CSUM`, `gso_type` TCPV4/TCPV6/UDP_L4, `gso_size` = first
//!   payload length, `hdr_len` = IP + L4 header, `csum_start` = IP header length,
//!   `csum_offset` 16 (TCP) or 6 (UDP); IPv4 total length and header checksum, IPv6 payload
//!   length, UDP length fixed; PSH set if the last segment had it; the L4 checksum field
//!   holds the pseudo-header sum of the merged length (folded, not complemented);
//! - anything else, unchanged: `GSO_NONE`, and `NEEDS_CSUM` with `csum_start`/`csum_offset`
//!   if it arrived `csum_partial` and is a non-fragment TCP/UDP packet whose checksum field
//!   lies inside it; otherwise an all-zero header (the kernel verifies checksums itself).
//!
//! Order within a flow is preserved: a packet of a flow with a pending super-packet that
//! cannot join it flushes it first (a packet whose ports are unknown, e.g. a fragment,
//! flushes every pending super-packet between the same addresses).
//!
//! Garbage never panics: every packet of 1..=65535 bytes is written (unchanged if it is not
//! a well-formed coalescable packet, and the kernel drops what is not IP); empty packets and
//! packets longer than 65535 bytes cannot be TUN frames and are dropped, counted in
//! [`Coalescer::dropped`]. Buffers are allocated once, in [`Coalescer::new`]; `push` and
//! `flush` allocate nothing.

mod slot;
#[cfg(test)]
mod tests;

use crate::vnet::{VnetHdr, VNET_HDR_LEN};
use slot::{Candidate, FlowKey, Slot};

/// Largest IP packet a frame may carry.
pub const MAX_PACKET_LEN: usize = 65535;
/// Size of each preallocated frame buffer: virtio header plus the largest IP packet.
pub const FRAME_CAPACITY: usize = VNET_HDR_LEN + MAX_PACKET_LEN;
/// Pending super-packets (one per flow) kept by [`Coalescer::new`].
pub const DEFAULT_SLOTS: usize = 8;
/// Most UDP datagrams merged into one super-packet (the kernel's `UDP_GRO_CNT_MAX`).
pub const MAX_UDP_SEGMENTS: usize = 64;

/// Which protocols may be coalesced (UDP only when the TUN accepted USO offloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceConfig {
    /// Coalesce TCP segments (needs TUN TSO offloads).
    pub tcp: bool,
    /// Coalesce UDP datagrams (needs TUN USO offloads).
    pub udp: bool,
}

/// Pending super-packets, in buffers allocated once at creation.
pub struct Coalescer {
    config: CoalesceConfig,
    slots: Box<[Slot]>,
    /// Frame buffer for packets written without coalescing.
    scratch: Box<[u8]>,
    /// Age stamp for the next pending super-packet (oldest is flushed first).
    clock: u64,
    dropped: u64,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("config", &self.config)
            .field("slots", &self.slots.len())
            .field("pending", &self.pending())
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl Coalescer {
    /// A coalescer with its buffers allocated ([`DEFAULT_SLOTS`] pending flows).
    pub fn new(config: CoalesceConfig) -> Self {
        Self::with_slots(config, DEFAULT_SLOTS)
    }

    /// A coalescer keeping up to `slots` (at least 1) flows pending, each in its own
    /// [`FRAME_CAPACITY`]-byte buffer, all allocated here.
    pub fn with_slots(config: CoalesceConfig, slots: usize) -> Self {
        Coalescer {
            config,
            slots: (0..slots.max(1)).map(|_| Slot::new()).collect(),
            scratch: vec![0u8; FRAME_CAPACITY].into_boxed_slice(),
            clock: 0,
            dropped: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> CoalesceConfig {
        self.config
    }

    /// Number of pending super-packets (flows with data not yet written).
    pub fn pending(&self) -> usize {
        self.slots.iter().filter(|s| s.is_busy()).count()
    }

    /// Packets dropped since creation because they cannot be a TUN frame (empty, or longer
    /// than [`MAX_PACKET_LEN`]).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Adds one received inner IP packet. `csum_partial` is its overlay header's
    /// [`FLAG_CSUM_PARTIAL`](crate::header::FLAG_CSUM_PARTIAL). Pending super-packets that can
    /// no longer grow are handed to `write` as TUN frames (virtio header + IP packet).
    pub fn push(&mut self, packet: &[u8], csum_partial: bool, write: &mut impl FnMut(&[u8])) {
        if packet.is_empty() || packet.len() > MAX_PACKET_LEN {
            self.dropped += 1;
            return;
        }
        let Some(c) = Candidate::parse(packet, csum_partial, self.config) else {
            self.flush_matching(&FlowKey::loose(packet), write);
            self.write_plain(packet, csum_partial, write);
            return;
        };
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.is_busy() && s.key == c.key)
        {
            if self.slots[i].try_append(packet, &c) {
                if self.slots[i].is_closed() {
                    self.slots[i].emit(write);
                }
                return;
            }
            self.slots[i].emit(write);
        }
        if c.closes() {
            // Nothing can follow it: no need to hold it.
            self.write_plain(packet, csum_partial, write);
            return;
        }
        let i = self.free_slot(write);
        self.clock += 1;
        self.slots[i].start(packet, c, self.clock);
    }

    /// Hands every pending super-packet to `write`; call at the end of each receive batch.
    pub fn flush(&mut self, write: &mut impl FnMut(&[u8])) {
        while let Some(i) = self.oldest(|_| true) {
            self.slots[i].emit(write);
        }
    }

    /// A free slot, flushing the oldest pending super-packet if there is none.
    fn free_slot(&mut self, write: &mut impl FnMut(&[u8])) -> usize {
        if let Some(i) = self.slots.iter().position(|s| !s.is_busy()) {
            return i;
        }
        let i = self.oldest(|_| true).unwrap_or(0);
        self.slots[i].emit(write);
        i
    }

    /// The busy slot with the smallest age stamp among those `pred` accepts.
    fn oldest(&self, pred: impl Fn(&Slot) -> bool) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_busy() && pred(s))
            .min_by_key(|(_, s)| s.age)
            .map(|(i, _)| i)
    }

    /// Flushes, oldest first, the pending super-packets of the flow(s) `key` may belong to.
    fn flush_matching(&mut self, key: &Option<FlowKey>, write: &mut impl FnMut(&[u8])) {
        let Some(key) = key else { return };
        while let Some(i) = self.oldest(|s| key.may_match(&s.key)) {
            self.slots[i].emit(write);
        }
    }

    /// Writes `packet` unchanged with a plain virtio header (see the module doc).
    fn write_plain(&mut self, packet: &[u8], csum_partial: bool, write: &mut impl FnMut(&[u8])) {
        let frame = &mut self.scratch[..VNET_HDR_LEN + packet.len()];
        plain_vnet(packet, csum_partial).emit(frame);
        frame[VNET_HDR_LEN..].copy_from_slice(packet);
        write(frame);
    }
}

/// The virtio header of a packet written as is.
fn plain_vnet(packet: &[u8], csum_partial: bool) -> VnetHdr {
    match crate::ip::csum_location(packet) {
        Some((start, offset)) if csum_partial => VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            gso_type: VnetHdr::GSO_NONE,
            hdr_len: 0,
            gso_size: 0,
            csum_start: start as u16,
            csum_offset: offset as u16,
        },
        _ => VnetHdr::default(),
    }
}
