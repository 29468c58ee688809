//! The coalescer (network → TUN). The input is a configuration byte and a sequence of
//! packets, each `[flags][len: u16 BE][bytes]`; flags bit 0: arrived csum_partial, bit 1:
//! fix lengths and checksums first, bit 2: flush after it, bit 3: make it the next segment of
//! the previous packet (same headers, sequence number advanced, these bytes as payload), bit
//! 4: grow it to 256 × the declared length (large packets from short inputs).
//!
//! `push`/`flush` never panic, and every frame written is checked against the inputs:
//! - a plain frame (GSO_NONE) is an input byte for byte; NEEDS_CSUM only if that input
//!   arrived partial, with the checksum field inside the packet;
//! - a merged frame is a valid packet (lengths, IPv4 header checksum, the L4 field holding the
//!   pseudo-header sum, virtio fields matching its headers, ≤ 65535 bytes, UDP ≤ 64
//!   segments) whose payload, cut in gso_size pieces, is exactly the payloads of inputs of
//!   its flow, each with the same headers (TCP: consecutive sequence numbers, same ack,
//!   window and options), each with a verifying checksum unless it arrived partial;
//! - within a flow (addresses, protocol, ports), frames come out in input order;
//! - after the final flush every non-empty input has been written exactly once.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_fuzz::{
    be16, be32, fix_up, grow, ip_checksum_ok, l4_checksum_ok, layout, pseudo, put16, Layout, TCP,
    UDP,
};
use overlay_proto::coalesce::{CoalesceConfig, Coalescer, MAX_PACKET_LEN, MAX_UDP_SEGMENTS};
use overlay_proto::vnet::{VnetHdr, VNET_HDR_LEN};

/// The flow of a packet when its ports are known (mirrors what the coalescer can know).
fn flow(p: &[u8]) -> Option<(bool, Vec<u8>, u8, [u8; 4])> {
    let first = *p.first()?;
    let (v6, addrs, proto, at) = match first >> 4 {
        4 if p.len() >= 20 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 || be16(p, 6) & 0x1fff != 0 {
                return None;
            }
            (false, &p[12..20], p[9], ihl)
        }
        6 if p.len() >= 40 => {
            if matches!(
                p[6],
                0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
            ) {
                return None;
            }
            (true, &p[8..40], p[6], 40)
        }
        _ => return None,
    };
    let ports: [u8; 4] = p.get(at..at + 4)?.try_into().ok()?;
    Some((v6, addrs.to_vec(), proto, ports))
}

struct Input {
    bytes: Vec<u8>,
    partial: bool,
    written: bool,
}

/// The earliest input not yet written that is of `p`'s flow (if known) or equal to `p`.
fn next_of_flow(inputs: &[Input], p: &[u8]) -> usize {
    let key = flow(p);
    inputs
        .iter()
        .position(|i| {
            !i.written
                && if key.is_some() {
                    flow(&i.bytes) == key
                } else {
                    i.bytes == p
                }
        })
        .unwrap_or_else(|| panic!("frame {p:02x?} matches no pending input"))
}

fn check_frame(inputs: &mut [Input], frame: &[u8]) {
    let vnet = VnetHdr::parse(frame).expect("frames start with a virtio header");
    let pkt = &frame[VNET_HDR_LEN..];
    assert!(!pkt.is_empty() && pkt.len() <= MAX_PACKET_LEN);
    if vnet.gso_type == VnetHdr::GSO_NONE {
        let j = next_of_flow(inputs, pkt);
        assert_eq!(
            inputs[j].bytes, pkt,
            "plain frame is the next input of its flow"
        );
        if vnet != VnetHdr::default() {
            assert!(inputs[j].partial, "NEEDS_CSUM only for a partial input");
            assert_eq!(vnet.flags, VnetHdr::NEEDS_CSUM);
            let at = usize::from(vnet.csum_start) + usize::from(vnet.csum_offset);
            assert!(at + 2 <= pkt.len());
        }
        inputs[j].written = true;
        return;
    }
    let l: Layout = layout(pkt).expect("merged frame has headers");
    let hdrs = l.hdrs();
    let gso = usize::from(vnet.gso_size);
    let want_type = match (l.proto, l.v6) {
        (TCP, false) => VnetHdr::GSO_TCPV4,
        (TCP, true) => VnetHdr::GSO_TCPV6,
        _ => VnetHdr::GSO_UDP_L4,
    };
    assert_eq!(
        vnet,
        VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            gso_type: want_type,
            hdr_len: hdrs as u16,
            gso_size: vnet.gso_size,
            csum_start: l.ip_len as u16,
            csum_offset: l.csum_offset() as u16,
        }
    );
    assert!(gso > 0);
    if l.v6 {
        assert_eq!(usize::from(be16(pkt, 4)), pkt.len() - 40);
    } else {
        assert_eq!(usize::from(be16(pkt, 2)), pkt.len());
        assert!(ip_checksum_ok(&l, pkt), "merged IPv4 header checksum");
    }
    if l.proto == UDP {
        assert_eq!(usize::from(be16(pkt, l.ip_len + 4)), pkt.len() - l.ip_len);
    }
    assert_eq!(
        be16(pkt, l.ip_len + l.csum_offset()),
        pseudo(&l, pkt),
        "partial L4 checksum"
    );
    let chunks: Vec<&[u8]> = pkt[hdrs..].chunks(gso).collect();
    assert!(chunks.len() >= 2, "a merged frame holds several segments");
    if l.proto == UDP {
        assert!(chunks.len() <= MAX_UDP_SEGMENTS);
    }
    let seq = be32(pkt, l.ip_len + 4);
    for (k, chunk) in chunks.iter().enumerate() {
        let j = next_of_flow(inputs, pkt);
        let input = &inputs[j];
        let q = &input.bytes;
        assert_eq!(layout(q), Some(l), "segment {k}: same header layout");
        assert_eq!(&q[hdrs..], *chunk, "segment {k}: payload");
        assert!(
            input.partial || l4_checksum_ok(&l, q),
            "segment {k}: bad checksum merged"
        );
        if l.proto == TCP {
            let t = l.ip_len;
            assert_eq!(
                be32(q, t + 4),
                seq.wrapping_add((k * gso) as u32),
                "segment {k}: seq"
            );
            assert_eq!(&q[t + 8..t + 13], &pkt[t + 8..t + 13], "ack, offset");
            assert_eq!(&q[t + 14..t + 16], &pkt[t + 14..t + 16], "window");
            assert_eq!(&q[t + 20..hdrs], &pkt[t + 20..hdrs], "options");
        }
        if l.v6 {
            assert_eq!(&q[..4], &pkt[..4]);
            assert_eq!(q[7], pkt[7]);
        } else {
            assert_eq!((q[1], q[8]), (pkt[1], pkt[8]), "TOS, TTL");
        }
        inputs[j].written = true;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let config = CoalesceConfig {
        tcp: cfg & 1 != 0,
        udp: cfg & 2 != 0,
    };
    let mut c = Coalescer::with_slots(config, usize::from(cfg >> 2 & 7) + 1);
    let mut inputs: Vec<Input> = Vec::new();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut prev: Vec<u8> = Vec::new();
    while let Some((&[flags, hi, lo], tail)) = rest.split_first_chunk::<3>() {
        let len = usize::from(u16::from_be_bytes([hi, lo])).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let partial = flags & 1 != 0;
        let mut p = bytes.to_vec();
        if flags & 16 != 0 {
            // Stand for a large packet: grow to 256 × the declared length (capped at 65535).
            let want = (usize::from(u16::from_be_bytes([hi, lo])) * 256).min(MAX_PACKET_LEN);
            grow(&mut p, want);
        }
        if flags & 8 != 0 {
            if let Some(l) = layout(&prev) {
                let mut next = prev[..l.hdrs()].to_vec();
                if l.proto == TCP {
                    let seq =
                        be32(&prev, l.ip_len + 4).wrapping_add((prev.len() - l.hdrs()) as u32);
                    next[l.ip_len + 4..l.ip_len + 8].copy_from_slice(&seq.to_be_bytes());
                    put16(&mut next, l.ip_len + 12, be16(&prev, l.ip_len + 12));
                }
                next.extend_from_slice(&p);
                next.truncate(MAX_PACKET_LEN);
                p = next;
                fix_up(&mut p, partial);
            }
        } else if flags & 2 != 0 {
            fix_up(&mut p, partial);
        }
        c.push(&p, partial, &mut |f: &[u8]| frames.push(f.to_vec()));
        if !p.is_empty() {
            inputs.push(Input {
                bytes: p.clone(),
                partial,
                written: false,
            });
        }
        prev = p;
        for f in frames.drain(..) {
            check_frame(&mut inputs, &f);
        }
        if flags & 4 != 0 {
            c.flush(&mut |f: &[u8]| frames.push(f.to_vec()));
            assert_eq!(c.pending(), 0);
        }
        for f in frames.drain(..) {
            check_frame(&mut inputs, &f);
        }
    }
    c.flush(&mut |f: &[u8]| frames.push(f.to_vec()));
    for f in frames.drain(..) {
        check_frame(&mut inputs, &f);
    }
    assert_eq!(c.pending(), 0);
    assert!(inputs.iter().all(|i| i.written), "every input written once");
});
