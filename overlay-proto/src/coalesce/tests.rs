//! Merging, what is written, order, slots, checksums; [`rules`]: each refusal rule.

mod rules;

use super::*;
use crate::ip::be16;
use crate::segment::tests::{complete, l4_valid, pseudo, Pkt, TS_OPTION};

const BOTH: CoalesceConfig = CoalesceConfig {
    tcp: true,
    udp: true,
};
const TCP_ONLY: CoalesceConfig = CoalesceConfig {
    tcp: true,
    udp: false,
};
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// Collects written frames.
#[derive(Default)]
struct Sink(Vec<Vec<u8>>);

impl Sink {
    fn w(&mut self) -> impl FnMut(&[u8]) + '_ {
        |f: &[u8]| self.0.push(f.to_vec())
    }
    fn vnet(&self, i: usize) -> VnetHdr {
        VnetHdr::parse(&self.0[i]).expect("frame has a virtio header")
    }
    fn packet(&self, i: usize) -> &[u8] {
        &self.0[i][VNET_HDR_LEN..]
    }
}

fn payload(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ salt).collect()
}

/// Segments of `p`'s flow carrying `sizes` bytes each, contiguous from `p.seq`, partial.
fn segments(p: &Pkt, sizes: &[usize]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut all = Vec::new();
    let mut out = Vec::new();
    let mut seq = p.seq;
    for (i, &n) in sizes.iter().enumerate() {
        let data = payload(n, i as u8);
        let id = p.id.wrapping_add(i as u16);
        out.push(
            Pkt {
                seq,
                id,
                ..p.clone()
            }
            .build_partial(&data),
        );
        seq = seq.wrapping_add(n as u32);
        all.extend_from_slice(&data);
    }
    (out, all)
}

fn push_all(c: &mut Coalescer, pkts: &[Vec<u8>], partial: bool, sink: &mut Sink) {
    for p in pkts {
        c.push(p, partial, &mut sink.w());
    }
}

fn plain_partial(start: u16, offset: u16) -> VnetHdr {
    VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        csum_start: start,
        csum_offset: offset,
        ..VnetHdr::default()
    }
}

/// Pushes `a` then `b` (both partial) and flushes: expects them written unmerged, in order.
fn assert_not_merged(a: &[u8], b: &[u8]) {
    let mut c = Coalescer::new(BOTH);
    let mut sink = Sink::default();
    c.push(a, true, &mut sink.w());
    c.push(b, true, &mut sink.w());
    c.flush(&mut sink.w());
    assert_eq!(sink.0.len(), 2, "not merged");
    assert_eq!(sink.packet(0), a, "first unchanged");
    assert_eq!(sink.packet(1), b, "second unchanged");
    for i in 0..2 {
        assert_eq!(sink.vnet(i).gso_type, VnetHdr::GSO_NONE);
    }
}

#[test]
fn merges_contiguous_tcp4_segments_into_the_original_super_packet() {
    let p = Pkt::tcp4();
    let (segs, all) = segments(&p, &[1400, 1400, 600]);
    let mut c = Coalescer::new(TCP_ONLY);
    let mut sink = Sink::default();
    push_all(&mut c, &segs[..2], true, &mut sink);
    assert!(sink.0.is_empty(), "pending until closed or flushed");
    c.push(&segs[2], true, &mut sink.w());
    assert_eq!(sink.0.len(), 1, "the short last segment closes it at once");
    assert_eq!(
        sink.vnet(0),
        VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1400,
            csum_start: 20,
            csum_offset: 16,
        }
    );
    // Same bytes as the super-packet the sender's kernel had: first id, merged lengths,
    // header checksum, and the pseudo-header sum of the merged length.
    assert_eq!(sink.packet(0), &p.build_partial(&all)[..]);
    let mut done = sink.packet(0).to_vec();
    complete(&mut done);
    assert!(l4_valid(&done));
    c.flush(&mut sink.w());
    assert_eq!(sink.0.len(), 1);
    assert_eq!(c.pending(), 0);
}

#[test]
fn merges_tcp6_udp4_udp6() {
    for (p, gso_type, csum_offset) in [
        (Pkt::tcp6(), VnetHdr::GSO_TCPV6, 16),
        (Pkt::udp4(), VnetHdr::GSO_UDP_L4, 6),
        (Pkt::udp6(), VnetHdr::GSO_UDP_L4, 6),
    ] {
        let (segs, all) = segments(&p, &[1000, 1000, 1000]);
        let mut c = Coalescer::new(BOTH);
        let mut sink = Sink::default();
        push_all(&mut c, &segs, true, &mut sink);
        c.flush(&mut sink.w());
        assert_eq!(sink.0.len(), 1, "{p:?}");
        let v = sink.vnet(0);
        let ip = if p.v6 { 40 } else { 20 };
        let l4 = if p.udp { 8 } else { 32 };
        assert_eq!(
            v,
            VnetHdr {
                flags: VnetHdr::NEEDS_CSUM,
                gso_type,
                hdr_len: ip + l4,
                gso_size: 1000,
                csum_start: ip,
                csum_offset,
            }
        );
        assert_eq!(sink.packet(0), &p.build_partial(&all)[..]);
    }
}

#[test]
fn udp_is_merged_only_when_configured() {
    let (segs, _) = segments(&Pkt::udp4(), &[1000, 1000]);
    let mut c = Coalescer::new(TCP_ONLY);
    let mut sink = Sink::default();
    push_all(&mut c, &segs, true, &mut sink);
    assert_eq!(sink.0.len(), 2, "written at once, not held");
    for (i, seg) in segs.iter().enumerate() {
        assert_eq!(sink.vnet(i), plain_partial(20, 6));
        assert_eq!(sink.packet(i), &seg[..]);
    }
    let (segs, _) = segments(&Pkt::tcp4(), &[1000, 1000]);
    let mut c = Coalescer::new(CoalesceConfig {
        tcp: false,
        udp: true,
    });
    let mut sink = Sink::default();
    push_all(&mut c, &segs, true, &mut sink);
    assert_eq!(sink.0.len(), 2);
}

#[test]
fn a_single_packet_is_written_back_unchanged() {
    let p = Pkt::tcp6().build_partial(&payload(700, 1));
    let mut c = Coalescer::new(BOTH);
    let mut sink = Sink::default();
    c.push(&p, true, &mut sink.w());
    c.flush(&mut sink.w());
    assert_eq!(sink.vnet(0), plain_partial(40, 16));
    assert_eq!(sink.packet(0), &p[..]);

    let full = Pkt::tcp4().build(&payload(700, 1));
    let mut sink = Sink::default();
    c.push(&full, false, &mut sink.w());
    c.flush(&mut sink.w());
    assert_eq!(sink.vnet(0), VnetHdr::default(), "full checksum: flags 0");
    assert_eq!(sink.packet(0), &full[..]);
}

#[test]
fn psh_is_allowed_on_the_last_segment_only() {
    let p = Pkt::tcp4();
    let (mut segs, all) = segments(&p, &[1000, 1000, 1000]);
    segs[2] = Pkt {
        seq: p.seq + 2000,
        id: p.id + 2,
        flags: ACK | PSH,
        ..p.clone()
    }
    .build_partial(&payload(1000, 2));
    let mut c = Coalescer::new(BOTH);
    let mut sink = Sink::default();
    push_all(&mut c, &segs, true, &mut sink);
    assert_eq!(sink.0.len(), 1, "PSH closes the super-packet at once");
    let expected = Pkt {
        flags: ACK | PSH,
        ..p.clone()
    }
    .build_partial(&all);
    assert_eq!(sink.packet(0), &expected[..]);

    // PSH on the first: nothing may follow it.
    let a = Pkt {
        flags: ACK | PSH,
        ..p.clone()
    }
    .build_partial(&payload(1000, 0));
    let b = Pkt {
        seq: p.seq + 1000,
        ..p.clone()
    }
    .build_partial(&payload(1000, 1));
    assert_not_merged(&a, &b);
}

#[test]
fn nothing_follows_a_smaller_segment() {
    let (segs, all) = segments(&Pkt::tcp4(), &[1400, 1000, 1000]);
    let mut c = Coalescer::new(BOTH);
    let mut sink = Sink::default();
    push_all(&mut c, &segs, true, &mut sink);
    c.flush(&mut sink.w());
    assert_eq!(sink.0.len(), 2);
    assert_eq!(sink.vnet(0).gso_size, 1400);
    assert_eq!(sink.packet(0).len(), 52 + 2400);
    assert_eq!(&sink.packet(0)[52..], &all[..2400]);
    assert_eq!(sink.vnet(1).gso_type, VnetHdr::GSO_NONE);
    assert_eq!(sink.packet(1), &segs[2][..]);
}

#[test]
fn super_packets_stay_within_65535_bytes() {
    // 52 bytes of headers + 46 × 1400 = 64452; a 47th would make 65852.
    let (segs, all) = segments(&Pkt::tcp4(), &[1400; 50]);
    let mut c = Coalescer::new(BOTH);
    let mut sink = Sink::default();
    push_all(&mut c, &segs, true, &mut sink);
    assert_eq!(sink.0.len(), 1, "full: written at once");
    c.flush(&mut sink.w());
    assert_eq!(sink.0.len(), 2);
    assert_eq!(sink.packet(0).len(), 52 + 46 * 1400);
    assert_eq!(sink.vnet(1).gso_size, 1400);
    assert_eq!(sink.packet(1).len(), 52 + 4 * 1400);
    let mut got = sink.packet(0)[52..].to_vec();
    got.extend_from_slice(&sink.packet(1)[52..]);
    assert_eq!(got, all);
    // The exact limit: 65535 - 52 = 65483 = 11 × 5953.
    let (segs, _) = segments(&Pkt::tcp4(), &[5953; 12]);
    let mut sink = Sink::default();
    push_all(&mut c, &segs[..11], true, &mut sink);
    assert_eq!(sink.0.len(), 1, "full: written at once");
    assert_eq!(sink.packet(0).len(), 65535);
    assert_eq!(be16(sink.packet(0), 2), 65535);
}

#[test]
fn udp_super_packets_hold_at_most_64_datagrams() {
    let (segs, _) = segments(&Pkt::udp6(), &[100; 70]);
    let mut c = Coalescer::new(BOTH);
    let mut sink = Sink::default();
    push_all(&mut c, &segs, true, &mut sink);
    c.flush(&mut sink.w());
    assert_eq!(sink.0.len(), 2);
    assert_eq!(sink.packet(0).len(), 48 + 64 * 100);
    assert_eq!(sink.vnet(1).gso_type, VnetHdr::GSO_UDP_L4);
    assert_eq!(sink.packet(1).len(), 48 + 6 * 100);
}

#[test]
fn full_checksums_are_verified_before_merging() {
    let p = Pkt::tcp4();
    let a = p.build(&payload(1000, 0));
    let b = Pkt {
        seq: p.seq + 1000,
        ..p.clone()
    }
    .build(&payload(1000, 1));
    // Both valid: merged, handed to the kernel as partial.
    let mut c = Coalescer::new(BOTH);
    let mut sink = Sink::default();
    c.push(&a, false, &mut sink.w());
    c.push(&b, false, &mut sink.w());
    c.flush(&mut sink.w());
    assert_eq!(sink.0.len(), 1);
    assert_eq!(sink.vnet(0).flags, VnetHdr::NEEDS_CSUM);
    assert_eq!(be16(sink.packet(0), 36), pseudo(sink.packet(0)));
    // Partial and full mixed: merged.
    let mut a_partial = a.clone();
    crate::segment::tests::make_partial(&mut a_partial);
    let mut sink = Sink::default();
    c.push(&a_partial, true, &mut sink.w());
    c.push(&b, false, &mut sink.w());
    c.flush(&mut sink.w());
    assert_eq!(sink.0.len(), 1);
    // A bad checksum on either: not merged; written unchanged without NEEDS_CSUM, so the
    // kernel drops it.
    let mut bad_b = b.clone();
    bad_b[100] ^= 0xff;
    let mut bad_a = a.clone();
    bad_a[100] ^= 0xff;
    for (x, y, bad) in [(&a, &bad_b, 1), (&bad_a, &b, 0)] {
        let mut sink = Sink::default();
        c.push(x, false, &mut sink.w());
        c.push(y, false, &mut sink.w());
        c.flush(&mut sink.w());
        assert_eq!(sink.0.len(), 2);
        assert_eq!(sink.vnet(bad), VnetHdr::default());
        assert_eq!(sink.packet(0), &x[..]);
        assert_eq!(sink.packet(1), &y[..]);
    }
    // IPv4 UDP without a checksum (zero) counts as valid.
    let mut u = Pkt::udp4();
    let mut x = u.build(&payload(500, 0));
    u.id += 1;
    let mut y = u.build(&payload(500, 1));
    x[26..28].copy_from_slice(&[0, 0]);
    y[26..28].copy_from_slice(&[0, 0]);
    let mut sink = Sink::default();
    c.push(&x, false, &mut sink.w());
    c.push(&y, false, &mut sink.w());
    c.flush(&mut sink.w());
    assert_eq!(sink.0.len(), 1);
}

#[test]
fn uncoalescable_packets_are_written_unchanged() {
    let tcp = Pkt::tcp4().build_partial(&payload(100, 0));
    let mut options = tcp[..20].to_vec();
    options[0] = 0x46;
    options.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    options.extend_from_slice(&tcp[20..]);
    options[2..4].copy_from_slice(&((tcp.len() + 4) as u16).to_be_bytes());
    let mut ip6_ext = Pkt::tcp6().build_partial(&payload(100, 0));
    ip6_ext[6] = 60;
    let mut icmp = Pkt::tcp4().build(&payload(56, 0));
    icmp[9] = 1;
    let mut bad_ip_csum = tcp.clone();
    bad_ip_csum[10] ^= 1;
    let pure_ack = Pkt::tcp4().build_partial(&[]);
    let fragment = Pkt {
        frag: 0x2000,
        ..Pkt::tcp4()
    }
    .build_partial(&payload(100, 0));
    let mut short_total = tcp.clone();
    short_total[3] -= 1;
    for (pkt, vnet) in [
        (&options, plain_partial(24, 16)),
        (&ip6_ext, VnetHdr::default()),
        (&icmp, VnetHdr::default()),
        (&bad_ip_csum, plain_partial(20, 16)),
        (&pure_ack, plain_partial(20, 16)),
        (&fragment, VnetHdr::default()),
        (&short_total, plain_partial(20, 16)),
        (&vec![0x45; 30], VnetHdr::default()),
        (&vec![0xff; 3], VnetHdr::default()),
    ] {
        let mut c = Coalescer::new(BOTH);
        let mut sink = Sink::default();
        c.push(pkt, true, &mut sink.w());
        assert_eq!(sink.0.len(), 1, "written at once: {pkt:02x?}");
        assert_eq!(sink.vnet(0), vnet);
        assert_eq!(sink.packet(0), &pkt[..]);
        assert_eq!(c.pending(), 0);
    }
}

#[test]
fn empty_and_oversized_packets_are_dropped_and_counted() {
    let mut c = Coalescer::new(BOTH);
    let mut sink = Sink::default();
    c.push(&[], true, &mut sink.w());
    c.push(&vec![0x45; 65536], false, &mut sink.w());
    c.push(&vec![0x45; 65535], false, &mut sink.w());
    assert_eq!(c.dropped(), 2);
    assert_eq!(sink.0.len(), 1);
    assert_eq!(sink.0[0].len(), FRAME_CAPACITY);
}

#[test]
fn order_within_a_flow_is_preserved() {
    let p = Pkt::tcp4();
    let (segs, _) = segments(&p, &[1000, 1000]);
    let fin = Pkt {
        seq: p.seq + 2000,
        flags: ACK | 0x01,
        ..p.clone()
    }
    .build_partial(&payload(10, 9));
    let later = Pkt {
        seq: p.seq + 2010,
        ..p.clone()
    }
    .build_partial(&payload(1000, 3));
    let mut c = Coalescer::new(BOTH);
    let mut sink = Sink::default();
    push_all(&mut c, &segs, true, &mut sink);
    c.push(&fin, true, &mut sink.w());
    assert_eq!(
        sink.0.len(),
        2,
        "the pending data is written before the FIN"
    );
    assert_eq!(sink.vnet(0).gso_type, VnetHdr::GSO_TCPV4);
    assert_eq!(sink.packet(1), &fin[..]);
    c.push(&later, true, &mut sink.w());
    c.flush(&mut sink.w());
    assert_eq!(sink.packet(2), &later[..]);

    // A fragment between the same addresses (ports unknown) flushes the flow too.
    let frag = Pkt {
        frag: 0x0010, // offset 128, not the first fragment
        ..p.clone()
    }
    .build(&payload(100, 0));
    let mut sink = Sink::default();
    c.push(&segs[0], true, &mut sink.w());
    c.push(&frag, false, &mut sink.w());
    assert_eq!(sink.0.len(), 2);
    assert_eq!(sink.packet(0), &segs[0][..]);
    assert_eq!(sink.packet(1), &frag[..]);

    // Another flow's packet does not.
    let other = Pkt {
        sport: 1,
        flags: ACK | 0x01,
        ..p.clone()
    }
    .build_partial(&payload(10, 0));
    let mut sink = Sink::default();
    c.push(&segs[0], true, &mut sink.w());
    c.push(&other, true, &mut sink.w());
    assert_eq!(sink.0.len(), 1);
    assert_eq!(c.pending(), 1);
}

#[test]
fn interleaved_flows_are_each_merged() {
    let x = Pkt::tcp4();
    let y = Pkt {
        sport: 40001,
        ..Pkt::tcp4()
    };
    let z = Pkt::udp6();
    let (xs, xall) = segments(&x, &[1000; 3]);
    let (ys, yall) = segments(&y, &[1000; 3]);
    let (zs, zall) = segments(&z, &[500; 3]);
    let mut c = Coalescer::new(BOTH);
    let mut sink = Sink::default();
    for i in 0..3 {
        c.push(&xs[i], true, &mut sink.w());
        c.push(&ys[i], true, &mut sink.w());
        c.push(&zs[i], true, &mut sink.w());
    }
    assert_eq!(c.pending(), 3);
    c.flush(&mut sink.w());
    assert_eq!(sink.0.len(), 3);
    // Flushed oldest first.
    assert_eq!(sink.packet(0), &x.build_partial(&xall)[..]);
    assert_eq!(sink.packet(1), &y.build_partial(&yall)[..]);
    assert_eq!(sink.packet(2), &z.build_partial(&zall)[..]);
}

#[test]
fn when_all_slots_are_busy_the_oldest_is_flushed() {
    let flows: Vec<Pkt> = (0..3)
        .map(|i| Pkt {
            sport: 1000 + i,
            ..Pkt::tcp4()
        })
        .collect();
    let mut c = Coalescer::with_slots(BOTH, 2);
    let mut sink = Sink::default();
    let first: Vec<Vec<u8>> = flows
        .iter()
        .map(|f| f.build_partial(&payload(1000, 0)))
        .collect();
    c.push(&first[0], true, &mut sink.w());
    c.push(&first[1], true, &mut sink.w());
    assert!(sink.0.is_empty());
    c.push(&first[2], true, &mut sink.w());
    assert_eq!(sink.0.len(), 1);
    assert_eq!(sink.packet(0), &first[0][..]);
    assert_eq!(c.pending(), 2);
    assert!(format!("{c:?}").contains("pending: 2"));
}

#[test]
fn the_merged_header_keeps_the_first_segments_fields() {
    let p = Pkt {
        options: TS_OPTION.to_vec(),
        ..Pkt::tcp4()
    };
    let (segs, _) = segments(&p, &[1000, 1000]);
    let mut c = Coalescer::new(BOTH);
    let mut sink = Sink::default();
    push_all(&mut c, &segs, true, &mut sink);
    c.flush(&mut sink.w());
    let m = sink.packet(0);
    assert_eq!(be16(m, 4), p.id, "first IPv4 id");
    assert_eq!(crate::ip::be32(m, 24), p.seq, "first sequence number");
    assert_eq!(
        crate::checksum::sum(&m[..20]),
        0xffff,
        "IPv4 header checksum"
    );
}
