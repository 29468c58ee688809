//! Coalescing the 44 segments of a 44 × 1400-byte TCPv4 flight into one super-packet and
//! flushing it (target: ≤ 3 µs per super-packet, no allocation).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use overlay_proto::checksum;
use overlay_proto::coalesce::{CoalesceConfig, Coalescer};
use overlay_proto::header::{Header, HEADER_LEN};
use overlay_proto::segment::{split, split_layout};
use overlay_proto::vnet::VnetHdr;
use overlay_proto::PeerId;
use std::hint::black_box;

/// A TCPv4 super-packet with timestamps (52 bytes of headers) and `payload` bytes, its
/// checksum partial, as the TUN returns it.
fn tso_packet(payload: usize) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 32, 1, 2, 10, 32, 2, 3,
    ];
    p.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0, 0, 0x10, 0, 0, 0, 0x20, 0, 0x80, 0x10,
    ]);
    p.extend_from_slice(&[0x01, 0xf6, 0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    p.extend((0..payload).map(|i| i as u8));
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let ps = checksum::pseudo_header(&p[12..20], 6, u32::from(total) - 20);
    p[36..38].copy_from_slice(&ps.to_be_bytes());
    p
}

/// The 44 inner packets the sender's split produces, with and without checksum offload.
fn segments(partial: bool) -> Vec<Vec<u8>> {
    let header = Header::ip(PeerId(1), PeerId(2));
    let packet = tso_packet(44 * 1400);
    let vnet = VnetHdr {
        flags: if partial { VnetHdr::NEEDS_CSUM } else { 0 },
        gso_type: VnetHdr::GSO_TCPV4,
        hdr_len: 52,
        gso_size: 1400,
        csum_start: 20,
        csum_offset: 16,
    };
    let layout = split_layout(&vnet, &packet).expect("valid");
    let mut out = vec![0u8; layout.total_len];
    split(&vnet, &packet, &header, &mut out).expect("split");
    (0..layout.count)
        .map(|i| out[layout.datagram(i).expect("in range")][HEADER_LEN..].to_vec())
        .collect()
}

fn coalesce(c: &mut Criterion) {
    let mut coalescer = Coalescer::new(CoalesceConfig {
        tcp: true,
        udp: true,
    });
    let mut g = c.benchmark_group("coalesce");
    for (name, partial) in [("44_segments", true), ("44_segments_full_csum", false)] {
        let segs = segments(partial);
        let bytes: usize = segs.iter().map(Vec::len).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut written = 0;
                let mut write = |f: &[u8]| written += black_box(f).len();
                for s in &segs {
                    coalescer.push(black_box(s), partial, &mut write);
                }
                coalescer.flush(&mut write);
                written
            })
        });
    }
    g.finish();
}

criterion_group!(benches, coalesce);
criterion_main!(benches);
