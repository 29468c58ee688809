//! Coalescing the 44 segments of a 44 × 1400-byte TCPv4 flight into one super-packet and
//! flushing it (target: ≤ 3 µs per super-packet, no allocation).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use overlay_proto::coalesce::{CoalesceConfig, Coalescer};
use overlay_proto::header::{Header, HEADER_LEN};
use overlay_proto::segment::{split, split_layout};
use overlay_proto::vnet::VnetHdr;
use overlay_proto::PeerId;
use overlay_testkit::packet::{tso_packet, TSO_VNET_HDR};
use std::hint::black_box;

/// The 44 inner packets the sender's split produces, with and without checksum offload.
fn segments(partial: bool) -> Vec<Vec<u8>> {
    let header = Header::ip(PeerId(1), PeerId(2));
    let packet = tso_packet(44 * 1400);
    let vnet = VnetHdr {
        flags: if partial { VnetHdr::NEEDS_CSUM } else { 0 },
        ..VnetHdr::parse(&TSO_VNET_HDR).expect("10 bytes")
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
