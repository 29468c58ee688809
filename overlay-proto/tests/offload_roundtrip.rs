//! Split on the sending agent, coalesce on the receiving one: the receiver's TUN gets the
//! super-packet the sender's TUN gave, with the same virtio GSO parameters, and every
//! partial checksum completes to a valid one. Garbage never panics either function.

use overlay_proto::checksum;
use overlay_proto::coalesce::{CoalesceConfig, Coalescer, FRAME_CAPACITY};
use overlay_proto::header::{Header, FLAG_CSUM_PARTIAL, HEADER_LEN};
use overlay_proto::segment::{split, split_layout, SplitError, MAX_SEGMENTS};
use overlay_proto::vnet::{VnetHdr, VNET_HDR_LEN};
use overlay_proto::PeerId;
use proptest::prelude::*;

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const BOTH: CoalesceConfig = CoalesceConfig {
    tcp: true,
    udp: true,
};

/// A TCP or UDP packet over IPv4 or IPv6 with valid checksums (the L4 one full, or partial:
/// the pseudo-header sum, as a kernel using checksum offload leaves it).
#[derive(Debug, Clone)]
struct Spec {
    v6: bool,
    udp: bool,
    options: bool,
    flags: u8,
    sport: u16,
    seq: u32,
}

impl Spec {
    fn ip_len(&self) -> usize {
        if self.v6 {
            40
        } else {
            20
        }
    }
    fn l4_len(&self) -> usize {
        match (self.udp, self.options) {
            (true, _) => 8,
            (false, true) => 32,
            (false, false) => 20,
        }
    }
    fn csum_at(&self) -> usize {
        self.ip_len() + if self.udp { 6 } else { 16 }
    }

    fn build(&self, payload: &[u8], partial: bool) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&443u16.to_be_bytes());
        if self.udp {
            l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        } else {
            l4.extend_from_slice(&self.seq.to_be_bytes());
            l4.extend_from_slice(&0x0bad_f00du32.to_be_bytes());
            l4.extend_from_slice(&[(self.l4_len() / 4 * 16) as u8, self.flags, 0x10, 0x00]);
            l4.extend_from_slice(&[0, 0, 0, 0]);
            if self.options {
                l4.extend_from_slice(&[1, 1, 8, 10, 0, 1, 2, 3, 4, 5, 6, 7]);
            }
        }
        l4.extend_from_slice(payload);
        let proto = if self.udp { 17 } else { 6 };
        let mut p = Vec::new();
        if self.v6 {
            p.extend_from_slice(&[0x60, 0x01, 0x23, 0x45]);
            p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            p.extend_from_slice(&[proto, 64]);
            p.extend_from_slice(&[0xfd; 16]);
            p.extend_from_slice(&[0xfe; 16]);
        } else {
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[
                0xab, 0xcd, 0x40, 0, 64, proto, 0, 0, 10, 32, 0, 2, 10, 33, 0, 2,
            ]);
            let c = checksum::checksum(&p);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        p.extend_from_slice(&l4);
        let ps = pseudo(&p);
        let at = self.csum_at();
        let value = if partial {
            ps
        } else {
            !checksum::add(ps, checksum::sum(&p[self.ip_len()..]))
        };
        p[at..at + 2].copy_from_slice(&value.to_be_bytes());
        p
    }
}

fn ip_len(p: &[u8]) -> usize {
    if p[0] >> 4 == 6 {
        40
    } else {
        usize::from(p[0] & 15) * 4
    }
}

fn pseudo(p: &[u8]) -> u16 {
    let ip = ip_len(p);
    let (addrs, proto) = if ip == 40 {
        (&p[8..40], p[6])
    } else {
        (&p[12..20], p[9])
    };
    checksum::pseudo_header(addrs, proto, (p.len() - ip) as u32)
}

/// Completes a partial checksum at `start + offset` and checks the result verifies.
fn completes_to_valid(p: &[u8], start: usize, offset: usize) -> bool {
    let mut p = p.to_vec();
    let c = !checksum::sum(&p[start..]);
    p[start + offset..start + offset + 2].copy_from_slice(&c.to_be_bytes());
    checksum::is_valid(pseudo(&p), &p[ip_len(&p)..])
}

fn overlay() -> Header {
    Header::ip(PeerId(1), PeerId(2))
}

/// The datagrams of one split, each: (inner packet, csum_partial flag).
fn split_all(vnet: &VnetHdr, packet: &[u8]) -> Vec<(Vec<u8>, bool)> {
    let layout = split_layout(vnet, packet).expect("valid super-packet");
    let mut out = vec![0u8; layout.total_len];
    assert_eq!(split(vnet, packet, &overlay(), &mut out), Ok(layout));
    (0..layout.count)
        .map(|i| {
            let d = &out[layout.datagram(i).expect("in range")];
            let h = Header::parse(d).expect("overlay header");
            (d[HEADER_LEN..].to_vec(), h.flags & FLAG_CSUM_PARTIAL != 0)
        })
        .collect()
}

fn coalesce_all(c: &mut Coalescer, packets: &[(Vec<u8>, bool)]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut write = |f: &[u8]| frames.push(f.to_vec());
    for (p, partial) in packets {
        c.push(p, *partial, &mut write);
    }
    c.flush(&mut write);
    frames
}

/// A super-packet that split and coalesce both accept whole: gso_size, segment count
/// within the limits, total ≤ 65535.
fn super_packet() -> impl Strategy<Value = (Spec, usize, usize, bool, bool)> {
    (
        any::<(bool, bool, bool, bool, bool, bool)>(),
        1usize..=1500,
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u32>(),
    )
        .prop_map(
            |((v6, udp, options, psh, partial, ecn), gso, c, l, sport, seq)| {
                let spec = Spec {
                    v6,
                    udp,
                    options,
                    flags: if psh { ACK | PSH } else { ACK },
                    sport,
                    seq,
                };
                let hdrs = spec.ip_len() + spec.l4_len();
                let cap = if udp { 64 } else { MAX_SEGMENTS };
                let max_count = ((65535 - hdrs) / gso).min(cap);
                let count = 1 + c as usize % max_count;
                let payload_len = (count - 1) * gso + 1 + l as usize % gso;
                (spec, gso, payload_len, partial, ecn)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn split_then_coalesce_gives_back_the_super_packet(
        (spec, gso, payload_len, partial, ecn) in super_packet(),
        salt: u8,
    ) {
        let payload: Vec<u8> = (0..payload_len).map(|i| (i as u8).wrapping_mul(13) ^ salt).collect();
        let original = spec.build(&payload, partial);
        let gso_type = match (spec.udp, spec.v6) {
            (true, _) => VnetHdr::GSO_UDP_L4,
            (false, false) => VnetHdr::GSO_TCPV4,
            (false, true) => VnetHdr::GSO_TCPV6,
        };
        let vnet = VnetHdr {
            flags: if partial { VnetHdr::NEEDS_CSUM } else { 0 },
            gso_type: if ecn && !spec.udp { gso_type | VnetHdr::GSO_ECN } else { gso_type },
            hdr_len: 0,
            gso_size: gso as u16,
            csum_start: spec.ip_len() as u16,
            csum_offset: (spec.csum_at() - spec.ip_len()) as u16,
        };
        let datagrams = split_all(&vnet, &original);
        let count = payload_len.div_ceil(gso);
        prop_assert_eq!(datagrams.len(), count);
        for (inner, flag) in &datagrams {
            prop_assert_eq!(*flag, partial);
            let ok = if partial {
                completes_to_valid(inner, spec.ip_len(), spec.csum_at() - spec.ip_len())
            } else {
                checksum::is_valid(pseudo(inner), &inner[spec.ip_len()..])
            };
            prop_assert!(ok, "segment checksum");
        }

        let mut c = Coalescer::new(BOTH);
        let frames = coalesce_all(&mut c, &datagrams);
        prop_assert_eq!(frames.len(), 1);
        let got = VnetHdr::parse(&frames[0]).expect("virtio header");
        let packet = &frames[0][VNET_HDR_LEN..];
        if count >= 2 {
            prop_assert_eq!(got, VnetHdr {
                flags: VnetHdr::NEEDS_CSUM,
                gso_type,
                hdr_len: (spec.ip_len() + spec.l4_len()) as u16,
                gso_size: gso as u16,
                csum_start: vnet.csum_start,
                csum_offset: vnet.csum_offset,
            });
            // The sender's super-packet, byte for byte, with its checksum partial.
            prop_assert_eq!(packet, &spec.build(&payload, true)[..]);
        } else if partial {
            prop_assert_eq!(got.gso_type, VnetHdr::GSO_NONE);
            prop_assert_eq!(got.flags, VnetHdr::NEEDS_CSUM);
            prop_assert_eq!(packet, &original[..]);
        } else {
            prop_assert_eq!(got, VnetHdr::default());
            prop_assert_eq!(packet, &original[..]);
        }
        if got.flags & VnetHdr::NEEDS_CSUM != 0 {
            prop_assert!(completes_to_valid(packet, got.csum_start.into(), got.csum_offset.into()));
        } else {
            prop_assert!(checksum::is_valid(pseudo(packet), &packet[spec.ip_len()..]));
        }
        if !spec.v6 {
            prop_assert_eq!(checksum::sum(&packet[..20]), 0xffff, "IPv4 header checksum");
        }
    }

    /// Two flows' segments in any interleaving: each flow's bytes come out complete and in
    /// order, whatever the segment sizes.
    #[test]
    fn interleaved_flows_keep_their_byte_streams(
        sizes_a in proptest::collection::vec(1usize..1500, 1..40),
        sizes_b in proptest::collection::vec(1usize..1500, 1..40),
        order in proptest::collection::vec(any::<bool>(), 80),
        slots in 1usize..4,
    ) {
        let flows = [
            Spec { v6: false, udp: false, options: true, flags: ACK, sport: 1, seq: u32::MAX - 5000 },
            Spec { v6: true, udp: false, options: false, flags: ACK, sport: 2, seq: 77 },
        ];
        let mut streams = [Vec::new(), Vec::new()];
        let mut queues: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        for (f, sizes) in [&sizes_a, &sizes_b].into_iter().enumerate() {
            let mut seq = flows[f].seq;
            for (i, &n) in sizes.iter().enumerate() {
                let data: Vec<u8> = (0..n).map(|j| (j + i * 7 + f) as u8).collect();
                let spec = Spec { seq, ..flows[f].clone() };
                queues[f].push(spec.build(&data, true));
                seq = seq.wrapping_add(n as u32);
                streams[f].extend_from_slice(&data);
            }
            queues[f].reverse();
        }
        let mut c = Coalescer::with_slots(BOTH, slots);
        let mut got = [Vec::new(), Vec::new()];
        let mut write = |frame: &[u8]| {
            let p = &frame[VNET_HDR_LEN..];
            let f = if p[0] >> 4 == 6 { 1 } else { 0 };
            let hdrs = flows[f].ip_len() + flows[f].l4_len();
            got[f].extend_from_slice(&p[hdrs..]);
        };
        let mut turn = order.iter().cycle();
        while !(queues[0].is_empty() && queues[1].is_empty()) {
            let f = usize::from(*turn.next().unwrap_or(&false));
            let f = if queues[f].is_empty() { 1 - f } else { f };
            if let Some(p) = queues[f].pop() {
                c.push(&p, true, &mut write);
            }
        }
        c.flush(&mut write);
        prop_assert_eq!(&got[0], &streams[0]);
        prop_assert_eq!(&got[1], &streams[1]);
    }

    #[test]
    fn garbage_into_split_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        flags: u8, gso_type in prop_oneof![Just(0u8), Just(1), Just(4), Just(5), Just(0x81), any::<u8>()],
        hdr_len: u16, gso_size in prop_oneof![0u16..64, any::<u16>()], csum_start in 0u16..80, csum_offset in 0u16..40,
    ) {
        let vnet = VnetHdr { flags, gso_type, hdr_len, gso_size, csum_start, csum_offset };
        let mut out = vec![0u8; 8192];
        match split(&vnet, &bytes, &overlay(), &mut out) {
            Ok(layout) => prop_assert!(layout.total_len <= out.len()),
            Err(SplitError::BufferTooSmall(n)) => prop_assert_eq!(n, out.len()),
            Err(_) => {}
        }
    }

    #[test]
    fn mutated_super_packets_into_split_never_panic(
        (spec, gso, payload_len, partial, _ecn) in super_packet(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut p = spec.build(&vec![0x42; payload_len.min(5000)], partial);
        for (at, x) in flips {
            let n = p.len().min(spec.ip_len() + spec.l4_len());
            p[at % n] ^= x;
        }
        p.truncate(cut % (p.len() + 1));
        let vnet = VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            gso_type: if spec.udp { VnetHdr::GSO_UDP_L4 } else if spec.v6 { VnetHdr::GSO_TCPV6 } else { VnetHdr::GSO_TCPV4 },
            gso_size: gso as u16,
            ..VnetHdr::default()
        };
        let mut out = vec![0u8; 80_000];
        let _ = split(&vnet, &p, &overlay(), &mut out);
    }

    #[test]
    fn garbage_into_push_never_panics_and_is_written(
        packets in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 1..200), any::<bool>()), 1..20),
    ) {
        let mut c = Coalescer::with_slots(BOTH, 2);
        let mut frames = 0;
        for (p, partial) in &packets {
            c.push(p, *partial, &mut |f: &[u8]| {
                assert!(f.len() > VNET_HDR_LEN && f.len() <= FRAME_CAPACITY);
                frames += 1;
            });
        }
        c.flush(&mut |_: &[u8]| frames += 1);
        prop_assert_eq!(frames, packets.len(), "garbage is written unchanged, never merged");
    }

    #[test]
    fn mutated_segments_into_push_never_panic(
        (spec, gso, payload_len, partial, _ecn) in super_packet(),
        flips in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 1..8),
        cuts in proptest::collection::vec((any::<usize>(), any::<usize>()), 0..3),
    ) {
        let payload = vec![7u8; payload_len.min(20_000)];
        let vnet = VnetHdr {
            flags: if partial { VnetHdr::NEEDS_CSUM } else { 0 },
            gso_type: if spec.udp { VnetHdr::GSO_UDP_L4 } else if spec.v6 { VnetHdr::GSO_TCPV6 } else { VnetHdr::GSO_TCPV4 },
            gso_size: gso as u16,
            ..VnetHdr::default()
        };
        let mut datagrams = split_all(&vnet, &spec.build(&payload, partial));
        let n = datagrams.len();
        for (which, at, x) in flips {
            let d = &mut datagrams[which % n].0;
            let hdrs = d.len().min(spec.ip_len() + spec.l4_len());
            d[at % hdrs] ^= x;
        }
        for (which, len) in cuts {
            let d = &mut datagrams[which % n].0;
            let keep = 1 + len % d.len();
            d.truncate(keep);
        }
        let mut c = Coalescer::with_slots(BOTH, 2);
        let frames = coalesce_all(&mut c, &datagrams);
        prop_assert!(!frames.is_empty());
        prop_assert!(frames.len() <= datagrams.len());
    }
}
