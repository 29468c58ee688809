//! Reading an inner packet's headers with `overlay_proto::ip`, once per packet: the strict
//! check of split and coalesce, the route check of encap and decap, and the checksum
//! location of a packet written alone (target: a few ns each, no allocation).

use criterion::{criterion_group, criterion_main, Criterion};
use overlay_proto::ip::{csum_location, parse_ipv4, Headers};
use overlay_testkit::packet::tso_packet;
use std::hint::black_box;

fn ip(c: &mut Criterion) {
    // One 1400-byte TCPv4 segment with timestamps, as split produces and coalesce reads.
    let packet = tso_packet(1400);
    let mut g = c.benchmark_group("ip");
    g.bench_function("headers_parse_tcp4", |b| {
        b.iter(|| Headers::parse(black_box(&packet)))
    });
    g.bench_function("parse_ipv4", |b| b.iter(|| parse_ipv4(black_box(&packet))));
    g.bench_function("csum_location", |b| {
        b.iter(|| csum_location(black_box(&packet)))
    });
    g.finish();
}

criterion_group!(benches, ip);
criterion_main!(benches);
