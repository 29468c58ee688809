//! Control-frame encode and decode of a full gossip of 100 records.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use overlay_benches::full_gossip;
use overlay_proto::codec::{decode_message, encode_message, LEN_PREFIX};
use std::hint::black_box;

const RECORDS: usize = 100;

fn gossip(c: &mut Criterion) {
    let msg = full_gossip(RECORDS);
    let mut frame = Vec::new();
    encode_message(&msg, &mut frame).expect("fits in a frame");
    assert_eq!(decode_message(&frame[LEN_PREFIX..]), Ok(Some(msg.clone())));

    let mut g = c.benchmark_group("codec_full_gossip_100");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    let mut out = Vec::with_capacity(frame.len());
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode_message(black_box(&msg), &mut out)
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| decode_message(black_box(&frame[LEN_PREFIX..])))
    });
    g.finish();
}

criterion_group!(benches, gossip);
criterion_main!(benches);
