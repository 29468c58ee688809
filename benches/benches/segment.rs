//! Splitting a 64 KiB TCPv4 TSO packet (MSS 1400) into 47 overlay datagrams laid out for one
//! UDP GSO send (target: ≤ 3 µs per packet, no allocation).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use overlay_proto::checksum;
use overlay_proto::header::Header;
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

fn segment(c: &mut Criterion) {
    let header = Header::ip(PeerId(0x0102_0304_0506_0708), PeerId(0xa1a2_a3a4_a5a6_a7a8));
    let packet = tso_packet(65535 - 52);
    let partial = VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        gso_type: VnetHdr::GSO_TCPV4,
        hdr_len: 52,
        gso_size: 1400,
        csum_start: 20,
        csum_offset: 16,
    };
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
