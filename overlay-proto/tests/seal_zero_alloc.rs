//! Zero allocations per datagram in `seal`: a counting global allocator counts what this
//! test's thread allocates while it seals and opens GSO batches and single datagrams with
//! both suites, across rekeys (the opener deriving keys ahead and switching epochs).

use overlay_proto::header::{Header, HEADER_LEN};
use overlay_proto::seal::{single, Opener, RekeyPolicy, Sealer, Suite, OVERHEAD};
use overlay_proto::segment::SplitLayout;
use overlay_proto::PeerId;
use overlay_testkit::counting::{allocations_in, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const A: PeerId = PeerId(1);
const B: PeerId = PeerId(2);

#[test]
fn seal_and_open_allocate_nothing() {
    // The counter counts: one allocation while armed is seen.
    let seen = allocations_in(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(16))));
    assert_eq!(seen, 1);

    let count = 44;
    let dl = HEADER_LEN + 1400;
    let mut plain = vec![0u8; count * dl];
    for i in 0..count {
        Header::ip(A, B).emit(&mut plain[i * dl..]).expect("room");
    }
    let batch = SplitLayout {
        count,
        datagram_len: dl,
        total_len: count * dl,
    };
    let mut buf = vec![0u8; count * (dl + OVERHEAD)];
    let policy = RekeyPolicy {
        after_packets: 1000,
        after_nanos: 1_000_000_000,
        grace_nanos: 1_000_000_000,
    };
    for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
        let mut sealer = Sealer::new(suite, &[5; 32], A, B, policy, 0);
        let mut opener = Opener::new(suite, &[5; 32], B, A, policy);
        let mut opened = 0u64;
        let allocations = allocations_in(|| {
            for round in 0..200u64 {
                let now = round * 10_000_000; // 2 s in all: time rekeys too
                buf[..batch.total_len].copy_from_slice(&plain);
                let out = sealer.seal(now, &mut buf, batch).expect("seals");
                for d in buf[..out.total_len].chunks_mut(out.datagram_len) {
                    opener.open(now, d).is_ok().then(|| opened += 1);
                }
                buf[..dl].copy_from_slice(&plain[..dl]);
                let out = sealer.seal(now, &mut buf, single(dl)).expect("seals");
                opener
                    .open(now, &mut buf[..out.total_len])
                    .is_ok()
                    .then(|| opened += 1);
                // Garbage and replays are refused without allocating either.
                let _ = opener.open(now, &mut buf[..out.total_len]);
                let _ = opener.open(now, &mut [0xff; 64]);
            }
        });
        assert_eq!(opened, 200 * 45, "{suite:?}: every datagram opened");
        assert!(
            sealer.epoch() >= 9,
            "{suite:?}: rekeyed ({})",
            sealer.epoch()
        );
        assert_eq!(
            allocations, 0,
            "{suite:?}: allocations while sealing and opening"
        );
    }
}
