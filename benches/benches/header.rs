//! Overlay header emit and parse, once per datagram (target: ≤ 20 ns per datagram).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use overlay_proto::header::{Header, HEADER_LEN};
use overlay_proto::PeerId;
use std::hint::black_box;

fn header(c: &mut Criterion) {
    let h = Header::ip(PeerId(0x0102_0304_0506_0708), PeerId(0xa1a2_a3a4_a5a6_a7a8));
    // A datagram: header then a 1400-byte payload.
    let mut datagram = vec![0u8; HEADER_LEN + 1400];
    h.emit(&mut datagram).expect("room for the header");

    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Elements(1));
    g.bench_function("emit", |b| {
        b.iter(|| black_box(&h).emit(black_box(&mut datagram[..])))
    });
    g.bench_function("parse", |b| {
        b.iter(|| Header::parse(black_box(&datagram[..])))
    });
    g.bench_function("emit_parse", |b| {
        b.iter(|| {
            black_box(&h).emit(&mut datagram[..]);
            Header::parse(black_box(&datagram[..]))
        })
    });
    g.finish();
}

criterion_group!(benches, header);
criterion_main!(benches);
