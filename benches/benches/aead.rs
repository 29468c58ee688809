//! Sealing and opening datagrams of 1400-byte inner packets, one at a time and as one GSO
//! batch of 44, with AES-256-GCM and ChaCha20-Poly1305 (`overlay_proto::seal`). Throughput is
//! in inner-packet bytes. Sealing a batch includes spreading it apart for the per-datagram
//! overhead (one memmove of the batch); opening includes moving each payload down over the
//! nonce (ring's `open_within`).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use overlay_proto::header::{Header, FLAG_CSUM_PARTIAL, HEADER_LEN};
use overlay_proto::seal::{single, Opener, RekeyPolicy, Sealer, Suite, OVERHEAD};
use overlay_proto::segment::SplitLayout;
use overlay_proto::PeerId;
use std::hint::black_box;

const A: PeerId = PeerId(0x0102_0304_0506_0708);
const B: PeerId = PeerId(0xa1a2_a3a4_a5a6_a7a8);
const INNER: usize = 1400;
const SECRET: [u8; 32] = [0x42; 32];

/// `count` plain datagrams of an overlay header and `INNER` bytes each, back to back as
/// `segment::split` lays them out, in a buffer with room for sealing them.
fn plain_batch(count: usize) -> (Vec<u8>, SplitLayout) {
    let mut h = Header::ip(A, B);
    h.flags = FLAG_CSUM_PARTIAL;
    let dl = HEADER_LEN + INNER;
    let mut buf = vec![0u8; count * (dl + OVERHEAD)];
    for i in 0..count {
        let d = &mut buf[i * dl..(i + 1) * dl];
        h.emit(d).expect("room");
        for (j, b) in d[HEADER_LEN..].iter_mut().enumerate() {
            *b = (i + j) as u8;
        }
    }
    let layout = if count == 1 {
        single(dl)
    } else {
        SplitLayout {
            count,
            datagram_len: dl,
            total_len: count * dl,
        }
    };
    (buf, layout)
}

fn aead(c: &mut Criterion) {
    eprintln!("Suite::detect() on this CPU: {}", Suite::detect().name());
    let policy = RekeyPolicy {
        after_packets: u64::MAX,
        after_nanos: u64::MAX,
        grace_nanos: u64::MAX,
    };
    let mut g = c.benchmark_group("aead");
    for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
        for count in [1usize, 44] {
            let (plain, layout) = plain_batch(count);
            let id = format!("{}x{INNER}", count);
            g.throughput(Throughput::Bytes((count * INNER) as u64));

            let mut sealer = Sealer::new(suite, &SECRET, A, B, policy, 0);
            g.bench_function(format!("seal/{}/{id}", suite.name()), |b| {
                b.iter_batched_ref(
                    || plain.clone(),
                    |buf| sealer.seal(0, black_box(buf), layout).expect("seals"),
                    BatchSize::SmallInput,
                )
            });

            let mut sealer = Sealer::new(suite, &SECRET, A, B, policy, 0);
            let mut opener = Opener::new(suite, &SECRET, B, A, policy);
            let sealed_len = HEADER_LEN + INNER + OVERHEAD;
            g.bench_function(format!("open/{}/{id}", suite.name()), |b| {
                b.iter_batched_ref(
                    || {
                        let mut buf = plain.clone();
                        sealer.seal(0, &mut buf, layout).expect("seals");
                        buf
                    },
                    |buf| {
                        for d in buf.chunks_mut(sealed_len) {
                            opener.open(0, black_box(d)).expect("opens");
                        }
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(benches, aead);
criterion_main!(benches);
