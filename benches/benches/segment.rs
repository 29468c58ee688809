//! Splitting a 64 KiB TCPv4 TSO packet (MSS 1400) into 47 overlay datagrams laid out for one
//! UDP GSO send (target: ≤ 3 µs per packet, no allocation).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use overlay_proto::checksum;
use overlay_proto::header::Header;
use overlay_proto::segment::{split, split_layout};
use overlay_proto::vnet::VnetHdr;
use overlay_proto::PeerId;
use overlay_testkit::packet::{tso_packet, TSO_HEADERS_LEN, TSO_VNET_HDR};
use std::hint::black_box;

fn segment(c: &mut Criterion) {
    let header = Header::ip(PeerId(0x0102_0304_0506_0708), PeerId(0xa1a2_a3a4_a5a6_a7a8));
    let packet = tso_packet(65535 - TSO_HEADERS_LEN);
    let partial = VnetHdr::parse(&TSO_VNET_HDR).expect("10 bytes");
    let full = VnetHdr {
        flags: 0,
        ..partial
    };
    let mut out = vec![0u8; split_layout(&partial, &packet).expect("valid").total_len];

    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Bytes(packet.len() as u64));
    // The normal case: the kernel left the checksum partial; split carries it.
    g.bench_function("split_64k_tso_mss1400", |b| {
        b.iter(|| split(black_box(&partial), black_box(&packet), &header, &mut out))
    });
    // Without checksum offload: every segment's TCP checksum computed in full.
    g.bench_function("split_64k_tso_mss1400_full_csum", |b| {
        b.iter(|| split(black_box(&full), black_box(&packet), &header, &mut out))
    });
    g.finish();

    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(packet.len() as u64));
    g.bench_function("sum_64k", |b| b.iter(|| checksum::sum(black_box(&packet))));
    g.finish();
}

criterion_group!(benches, segment);
criterion_main!(benches);
