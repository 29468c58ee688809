//! The fast path allocates nothing per packet: after warm-up, splitting a 64 KiB TSO packet
//! and coalescing 44 segments (and flushing) make zero heap allocations.
//!
//! A counting global allocator counts only on the thread that enables it, so the test
//! harness's own threads cannot interfere; this binary holds this one test all the same.

mod counting;

use counting::allocations_in;
use overlay_proto::checksum;
use overlay_proto::coalesce::{CoalesceConfig, Coalescer};
use overlay_proto::header::{Header, HEADER_LEN};
use overlay_proto::segment::{split, split_layout};
use overlay_proto::vnet::VnetHdr;
use overlay_proto::PeerId;

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

fn tso_vnet() -> VnetHdr {
    VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        gso_type: VnetHdr::GSO_TCPV4,
        hdr_len: 52,
        gso_size: 1400,
        csum_start: 20,
        csum_offset: 16,
    }
}

#[test]
fn split_and_coalesce_allocate_nothing_after_warm_up() {
    let header = Header::ip(PeerId(1), PeerId(2));
    let vnet = tso_vnet();

    // Split: a 64 KiB TSO packet, MSS 1400.
    let big = tso_packet(65535 - 52);
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
