//! One pending super-packet: its frame buffer, its flow, and the merge rules.
//!
//! ```text
//! buf: | virtio hdr (10, written at emit) | head packet: IP | L4 | payload 1 | payload 2 | ... |
//!                                          <------------------- len ------------------------->
//! ```
//! The head packet's headers stay as they arrived until [`Slot::emit`] fixes lengths and
//! checksums, so a slot holding one packet is written back byte for byte.

use super::{plain_vnet, CoalesceConfig, FRAME_CAPACITY, MAX_PACKET_LEN, MAX_UDP_SEGMENTS};
use crate::checksum;
use crate::ip::l4::{ACK, PSH, TCP_ACK, TCP_DATA_OFF, TCP_FLAGS, TCP_MIN_LEN, TCP_SEQ, TCP_WINDOW};
use crate::ip::l4::{UDP_CSUM, UDP_LENGTH};
use crate::ip::{be16, be32, ipv4, ipv6, peek, put16, Headers, L4};
use crate::vnet::{VnetHdr, VNET_HDR_LEN};

/// A flow: IP version, addresses, protocol and ports. In a pending slot every field is
/// known; a key made from an arbitrary packet ([`FlowKey::loose`]) may lack the protocol or
/// the ports, and then stands for every flow between its addresses. Five words, loaded
/// straight from the packet, so building and comparing keys is cheap.
#[derive(Debug, Clone, Copy, Eq, Default)]
pub(super) struct FlowKey {
    /// Source then destination address as host-order words (IPv4: the first word).
    addrs: [u64; 4],
    /// [`V6`], [`HAS_PROTO`] | protocol << 40, [`HAS_PORTS`] | the 4 port bytes.
    meta: u64,
}

const V6: u64 = 1 << 63;
const HAS_PROTO: u64 = 1 << 48;
const PROTO: u64 = 0xff << 40;
const HAS_PORTS: u64 = 1 << 32;
const PORTS: u64 = 0xffff_ffff;

/// The host-order word at `b[at..at + 8]` (0 if out of range).
#[inline]
fn word(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|w| w.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

impl PartialEq for FlowKey {
    /// Word by word: a vector compare of a key just stored as words stalls on store
    /// forwarding.
    #[inline]
    fn eq(&self, other: &FlowKey) -> bool {
        let (a, b) = (&self.addrs, &other.addrs);
        ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (self.meta ^ other.meta))
            == 0
    }
}

impl FlowKey {
    #[inline]
    fn new(packet: &[u8], v6: bool, proto: Option<u8>, ports_at: Option<usize>) -> FlowKey {
        let addrs = if v6 {
            let a = ipv6::ADDRS.start;
            [
                word(packet, a),
                word(packet, a + 8),
                word(packet, a + 16),
                word(packet, a + 24),
            ]
        } else {
            [word(packet, ipv4::ADDRS.start), 0, 0, 0]
        };
        let mut meta = if v6 { V6 } else { 0 };
        if let Some(p) = proto {
            meta |= HAS_PROTO | u64::from(p) << 40;
        }
        let ports = ports_at.and_then(|at| packet.get(at..at + 4));
        if let Some(&[a, b, c, d]) = ports {
            meta |= HAS_PORTS | u64::from(u32::from_ne_bytes([a, b, c, d]));
        }
        FlowKey { addrs, meta }
    }

    /// The (possibly partial) flow of any packet; `None` if it is not IP at all.
    pub(super) fn loose(packet: &[u8]) -> Option<FlowKey> {
        let p = peek(packet)?;
        // Only the first fragment carries the ports.
        let ports_at = p.l4_start.filter(|_| p.is_first_fragment());
        Some(FlowKey::new(packet, p.v6, p.protocol, ports_at))
    }

    /// Whether a packet with this key may belong to the flow `full`.
    pub(super) fn may_match(&self, full: &FlowKey) -> bool {
        let mut mask = V6;
        if self.meta & HAS_PROTO != 0 {
            mask |= PROTO;
        }
        if self.meta & HAS_PORTS != 0 {
            mask |= PORTS;
        }
        FlowKey {
            meta: self.meta & mask,
            ..*self
        } == FlowKey {
            meta: full.meta & mask,
            ..*full
        }
    }
}

/// A packet that may be coalesced, with what the merge rules need from it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    pub key: FlowKey,
    h: Headers,
    payload: usize,
    /// TCP sequence number (0 for UDP).
    seq: u32,
    psh: bool,
    partial: bool,
}

impl Candidate {
    /// `Some` if `packet` is coalescable (see the module doc of [`super`]).
    #[inline]
    pub(super) fn parse(packet: &[u8], partial: bool, config: CoalesceConfig) -> Option<Self> {
        let h = Headers::parse(packet).ok()?;
        let allowed = match h.l4 {
            L4::Tcp => config.tcp,
            L4::Udp => config.udp,
        };
        // IPv4: no options, and a valid header checksum (it is recomputed on merge).
        if !allowed
            || (!h.v6
                && (h.ip_len != ipv4::MIN_LEN || checksum::sum(&packet[..ipv4::MIN_LEN]) != 0xffff))
        {
            return None;
        }
        let l4 = &packet[h.ip_len..];
        let psh = match h.l4 {
            L4::Tcp => match l4[TCP_FLAGS] {
                ACK => false,
                f if f == ACK | PSH => true,
                _ => return None,
            },
            L4::Udp => {
                if usize::from(be16(l4, UDP_LENGTH)) != l4.len() {
                    return None;
                }
                false
            }
        };
        let payload = packet.len() - h.hdr_len();
        if payload == 0 {
            return None;
        }
        Some(Candidate {
            key: FlowKey::new(packet, h.v6, Some(h.l4.proto()), Some(h.ip_len)),
            h,
            payload,
            seq: be32(l4, TCP_SEQ),
            psh,
            partial,
        })
    }

    /// Nothing can be appended after this packet.
    pub(super) fn closes(&self) -> bool {
        self.psh || self.h.hdr_len() + 2 * self.payload > MAX_PACKET_LEN
    }

    /// Whether the packet's own checksum verifies (always true when it is partial).
    fn checksum_ok(&self, packet: &[u8]) -> bool {
        self.partial || full_checksum_ok(&self.h, packet)
    }
}

/// Whether the full L4 checksum of `packet` verifies (an IPv4 UDP checksum of zero means
/// "none" and passes).
fn full_checksum_ok(h: &Headers, packet: &[u8]) -> bool {
    let Some(l4) = packet.get(h.ip_len..) else {
        return false;
    };
    if !h.v6 && h.l4 == L4::Udp && be16(l4, UDP_CSUM) == 0 {
        return true;
    }
    let pseudo = checksum::pseudo_header(h.addrs(packet), h.l4.proto(), l4.len() as u32);
    checksum::is_valid(pseudo, l4)
}

/// A pending super-packet in a preallocated buffer.
#[derive(Debug)]
pub(super) struct Slot {
    buf: Box<[u8]>,
    /// Bytes of IP packet after the virtio header; 0 when free.
    len: usize,
    pub key: FlowKey,
    /// Larger is younger.
    pub age: u64,
    h: Headers,
    /// Payload length of the first segment.
    gso_size: usize,
    segments: usize,
    next_seq: u32,
    head_partial: bool,
    /// The head's checksum is known good (partial, or verified).
    head_ok: bool,
    psh: bool,
    closed: bool,
}

impl Slot {
    pub(super) fn new() -> Slot {
        Slot {
            buf: vec![0u8; FRAME_CAPACITY].into_boxed_slice(),
            len: 0,
            key: FlowKey::default(),
            age: 0,
            h: Headers {
                v6: false,
                ip_len: 20,
                l4: L4::Tcp,
                l4_len: 20,
            },
            gso_size: 0,
            segments: 0,
            next_seq: 0,
            head_partial: false,
            head_ok: false,
            psh: false,
            closed: false,
        }
    }

    pub(super) fn is_busy(&self) -> bool {
        self.len != 0
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Makes `packet` the head of this (free) slot.
    pub(super) fn start(&mut self, packet: &[u8], c: Candidate, age: u64) {
        self.buf[VNET_HDR_LEN..VNET_HDR_LEN + packet.len()].copy_from_slice(packet);
        self.len = packet.len();
        self.key = c.key;
        self.age = age;
        self.h = c.h;
        self.gso_size = c.payload;
        self.segments = 1;
        self.next_seq = c.seq.wrapping_add(c.payload as u32);
        self.head_partial = c.partial;
        self.head_ok = c.partial;
        self.psh = false;
        self.closed = c.closes();
    }

    /// Appends `packet` (of this slot's flow) if the merge rules allow; `false` leaves the
    /// slot unchanged.
    pub(super) fn try_append(&mut self, packet: &[u8], c: &Candidate) -> bool {
        if self.closed
            || c.h != self.h
            || c.payload > self.gso_size
            || self.len + c.payload > MAX_PACKET_LEN
        {
            return false;
        }
        let head = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + self.len];
        let ip_same = if self.h.v6 {
            // Version, traffic class, flow label; hop limit.
            let hl = ipv6::HOP_LIMIT;
            head[..4] == packet[..4] && head[hl] == packet[hl]
        } else {
            // TOS; DF and reserved flag bits; TTL.
            let (f, ttl) = (ipv4::FRAG, ipv4::TTL);
            head[1] == packet[1] && head[f] >> 5 == packet[f] >> 5 && head[ttl] == packet[ttl]
        };
        if !ip_same {
            return false;
        }
        let ip = self.h.ip_len;
        let fits = match self.h.l4 {
            L4::Tcp => {
                // Contiguity; ack; data offset, reserved bits and window (flags were
                // checked by `Candidate::parse`); options, a word at a time (their length
                // is a multiple of 4, equal in both as `h` is).
                let l4_end = ip + self.h.l4_len;
                c.seq == self.next_seq
                    && be32(head, ip + TCP_ACK) == be32(packet, ip + TCP_ACK)
                    && head[ip + TCP_DATA_OFF] == packet[ip + TCP_DATA_OFF]
                    && be16(head, ip + TCP_WINDOW) == be16(packet, ip + TCP_WINDOW)
                    && words_equal(head, packet, ip + TCP_MIN_LEN, l4_end)
            }
            L4::Udp => self.segments < MAX_UDP_SEGMENTS,
        };
        if !fits || !c.checksum_ok(packet) {
            return false;
        }
        if !self.head_ok {
            if !full_checksum_ok(&self.h, head) {
                return false;
            }
            self.head_ok = true;
        }
        let at = VNET_HDR_LEN + self.len;
        self.buf[at..at + c.payload].copy_from_slice(&packet[self.h.hdr_len()..]);
        self.len += c.payload;
        self.segments += 1;
        self.next_seq = self.next_seq.wrapping_add(c.payload as u32);
        self.psh = c.psh;
        self.closed = c.psh
            || c.payload < self.gso_size
            || self.len + self.gso_size > MAX_PACKET_LEN
            || (self.h.l4 == L4::Udp && self.segments >= MAX_UDP_SEGMENTS);
        true
    }

    /// Writes the frame (fixing the headers if segments were merged) and frees the slot.
    pub(super) fn emit(&mut self, write: &mut impl FnMut(&[u8])) {
        let len = std::mem::take(&mut self.len);
        let (vh, pkt) = self.buf[..VNET_HDR_LEN + len].split_at_mut(VNET_HDR_LEN);
        let vnet = if self.segments <= 1 {
            plain_vnet(pkt, self.head_partial)
        } else {
            merged_fixup(&self.h, self.psh, pkt);
            VnetHdr {
                flags: VnetHdr::NEEDS_CSUM,
                gso_type: match (self.h.l4, self.h.v6) {
                    (L4::Tcp, false) => VnetHdr::GSO_TCPV4,
                    (L4::Tcp, true) => VnetHdr::GSO_TCPV6,
                    (L4::Udp, _) => VnetHdr::GSO_UDP_L4,
                },
                // All ≤ 65535: the packet fits a frame.
                hdr_len: self.h.hdr_len() as u16,
                gso_size: self.gso_size as u16,
                csum_start: self.h.ip_len as u16,
                csum_offset: self.h.l4.csum_offset() as u16,
            }
        };
        vnet.emit(vh);
        write(&self.buf[..VNET_HDR_LEN + len]);
    }
}

/// Whether `a` and `b` agree on the 4-byte words from `from` up to `to`.
#[inline]
fn words_equal(a: &[u8], b: &[u8], from: usize, to: usize) -> bool {
    let mut at = from;
    while at < to {
        if be32(a, at) != be32(b, at) {
            return false;
        }
        at += 4;
    }
    true
}

/// Lengths, IPv4 header checksum, PSH and the partial L4 checksum of a merged packet.
fn merged_fixup(h: &Headers, psh: bool, pkt: &mut [u8]) {
    let ip = h.ip_len;
    let l4_len = pkt.len() - ip;
    if h.v6 {
        put16(pkt, ipv6::PAYLOAD_LEN, l4_len as u16);
    } else {
        put16(pkt, ipv4::TOTAL_LEN, pkt.len() as u16);
        put16(pkt, ipv4::CHECKSUM, 0);
        let c = checksum::checksum(&pkt[..ip]);
        put16(pkt, ipv4::CHECKSUM, c);
    }
    match h.l4 {
        L4::Tcp if psh => pkt[ip + TCP_FLAGS] |= PSH,
        L4::Tcp => {}
        L4::Udp => put16(pkt, ip + UDP_LENGTH, l4_len as u16),
    }
    let pseudo = checksum::pseudo_header(h.addrs(pkt), h.l4.proto(), l4_len as u32);
    put16(pkt, ip + h.l4.csum_offset(), pseudo);
}
