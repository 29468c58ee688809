//! The fast path allocates nothing per packet: after warm-up, splitting a 64 KiB TSO packet
//! and coalescing 44 segments (and flushing) make zero heap allocations.
//!
//! A counting global allocator counts only on the thread that enables it, so the test
//! harness's own threads cannot interfere; this binary holds this one test all the same.

use overlay_proto::coalesce::{CoalesceConfig, Coalescer};
use overlay_proto::header::{Header, HEADER_LEN};
use overlay_proto::segment::{split, split_layout};
use overlay_proto::vnet::VnetHdr;
use overlay_proto::PeerId;
use overlay_testkit::counting::{allocations_in, Counting};
use overlay_testkit::packet::{tso_packet, TSO_HEADERS_LEN, TSO_VNET_HDR};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn split_and_coalesce_allocate_nothing_after_warm_up() {
    let header = Header::ip(PeerId(1), PeerId(2));
    let vnet = VnetHdr::parse(&TSO_VNET_HDR).expect("10 bytes");

    // Split: a 64 KiB TSO packet, MSS 1400.
    let big = tso_packet(65535 - TSO_HEADERS_LEN);
    let mut out = vec![0u8; split_layout(&vnet, &big).expect("valid").total_len];
    split(&vnet, &big, &header, &mut out).expect("warm-up split");
    let n = allocations_in(|| {
        for _ in 0..10 {
            let layout = split(&vnet, &big, &header, &mut out).expect("split");
            assert_eq!(layout.count, 47);
        }
    });
    assert_eq!(n, 0, "split allocated {n} times");

    // Coalesce: the 44 segments of a 44 × 1400-byte TSO packet, then flush.
    let medium = tso_packet(44 * 1400);
    let layout = split(&vnet, &medium, &header, &mut out).expect("split");
    assert_eq!(layout.count, 44);
    let segments: Vec<&[u8]> = (0..layout.count)
        .map(|i| &out[layout.datagram(i).expect("in range")][HEADER_LEN..])
        .collect();
    let mut coalescer = Coalescer::new(CoalesceConfig {
        tcp: true,
        udp: true,
    });
    let mut frames = 0usize;
    let mut bytes = 0usize;
    let mut write = |f: &[u8]| {
        frames += 1;
        bytes += f.len();
    };
    for s in &segments {
        coalescer.push(s, true, &mut write);
    }
    coalescer.flush(&mut write);
    let n = allocations_in(|| {
        for _ in 0..10 {
            for s in &segments {
                coalescer.push(s, true, &mut write);
            }
            coalescer.flush(&mut write);
        }
    });
    assert_eq!(n, 0, "coalescing allocated {n} times");
    assert_eq!(frames, 11, "one super-packet per round");
    assert_eq!(bytes, 11 * (10 + medium.len()));

    // The counter does count: a deliberate allocation is seen.
    let n = allocations_in(|| drop(std::hint::black_box(vec![0u8; 16])));
    assert_eq!(n, 1);
}
