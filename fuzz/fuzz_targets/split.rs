//! The splitter (TUN → network): the input is a virtio header and the packet read with it.
//! `split` never panics; it agrees with `split_layout`; it writes nothing past the layout;
//! every datagram starts with the caller's overlay header (with FLAG_CSUM_PARTIAL per the
//! plan) and is no longer than the first. A plain packet is carried as is (or with its
//! checksum completed). A super-packet's segments are each well-formed — lengths, IPv4
//! header checksum, L4 checksum (full, or the pseudo-header sum when partial), TCP sequence
//! numbers — carry at most gso_size bytes (the MSS), and their payloads concatenate to the
//! original payload.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_fuzz::{be16, be32, fix_up, grow, ip_checksum_ok, l4_checksum_ok, layout, pseudo, TCP};
use overlay_proto::header::{Header, Kind, FLAG_CSUM_PARTIAL, HEADER_LEN};
use overlay_proto::segment::{split, split_layout, MAX_SEGMENTS, MAX_SPLIT_LEN};
use overlay_proto::vnet::{VnetHdr, VNET_HDR_LEN};
use overlay_proto::PeerId;

const SENTINEL: u8 = 0xa5;

fuzz_target!(|data: &[u8]| {
    // Byte 0: bit 0 = fix the packet's lengths and checksums first (reaches deep paths);
    // bits 1-2: grow the packet to 20000, 65535 or 65575 bytes (the largest TSO packets).
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(vnet) = VnetHdr::parse(rest) else {
        return;
    };
    let mut packet = rest[VNET_HDR_LEN..].to_vec();
    match (mode >> 1) & 3 {
        0 => {}
        n => grow(&mut packet, [0, 20000, 65535, 65575][usize::from(n)]),
    }
    if mode & 1 == 1 {
        fix_up(&mut packet, vnet.flags & VnetHdr::NEEDS_CSUM != 0);
    }
    let header = Header {
        kind: Kind::Ip,
        hop_limit: 16,
        flags: mode & 0xf8 | FLAG_CSUM_PARTIAL * (mode >> 7),
        src: PeerId(1),
        dst: PeerId(2),
    };
    let mut out = vec![SENTINEL; MAX_SPLIT_LEN + 64];
    let planned = split_layout(&vnet, &packet);
    let result = split(&vnet, &packet, &header, &mut out);
    if packet.len() + HEADER_LEN <= MAX_SPLIT_LEN {
        assert_eq!(planned, result, "split_layout agrees with split");
    }
    let Ok(lay) = result else {
        assert!(
            out.iter().all(|&b| b == SENTINEL),
            "nothing written on error"
        );
        return;
    };
    assert!(
        out[lay.total_len..].iter().all(|&b| b == SENTINEL),
        "nothing written past the layout"
    );
    assert!(lay.count >= 1 && lay.count <= MAX_SEGMENTS);
    // (An empty plain packet gives a bare overlay header: nothing to send, and a receiver drops it.)
    assert!(lay.last_len() <= lay.datagram_len && lay.last_len() >= HEADER_LEN);
    assert_eq!(
        lay.datagram(lay.count - 1).map(|r| r.end),
        Some(lay.total_len)
    );
    let datagrams: Vec<&[u8]> = (0..lay.count)
        .map(|i| &out[lay.datagram(i).expect("in range")])
        .collect();
    let needs_csum = vnet.flags & VnetHdr::NEEDS_CSUM != 0;
    let mut partial = None;
    for d in &datagrams {
        let h = Header::parse(d).expect("overlay header");
        assert_eq!(
            Header {
                flags: header.flags,
                ..h
            },
            header
        );
        assert_eq!(
            h.flags & !FLAG_CSUM_PARTIAL,
            header.flags & !FLAG_CSUM_PARTIAL
        );
        let p = h.flags & FLAG_CSUM_PARTIAL != 0;
        assert_eq!(*partial.get_or_insert(p), p, "same flag on every datagram");
    }
    let partial = partial.expect("one datagram");

    if vnet.gso_type == VnetHdr::GSO_NONE {
        assert_eq!(lay.count, 1);
        let inner = &datagrams[0][HEADER_LEN..];
        assert_eq!(inner.len(), packet.len());
        if !needs_csum {
            assert!(!partial);
            assert_eq!(inner, &packet[..]);
        } else {
            let at = usize::from(vnet.csum_start) + usize::from(vnet.csum_offset);
            assert_eq!(&inner[..at], &packet[..at]);
            assert_eq!(&inner[at + 2..], &packet[at + 2..]);
            if partial {
                assert_eq!(inner, &packet[..]);
            }
        }
        return;
    }

    // A super-packet: read it independently.
    let l = layout(&packet).expect("split accepted the headers");
    let hdrs = l.hdrs();
    let gso = usize::from(vnet.gso_size);
    assert!(gso > 0);
    assert_eq!(partial, needs_csum);
    let first_seq = be32(&packet, l.ip_len + 4);
    let mut payload = Vec::new();
    for (i, d) in datagrams.iter().enumerate() {
        let p = &d[HEADER_LEN..];
        let sl = layout(p).expect("segment headers");
        assert_eq!(sl, l, "same headers as the super-packet");
        let chunk = &p[hdrs..];
        assert!(
            !chunk.is_empty() && chunk.len() <= gso,
            "segment payload within gso_size"
        );
        if i + 1 < datagrams.len() {
            assert_eq!(chunk.len(), gso);
        }
        payload.extend_from_slice(chunk);
        if l.v6 {
            assert_eq!(usize::from(be16(p, 4)), p.len() - 40);
        } else {
            assert_eq!(usize::from(be16(p, 2)), p.len());
            assert!(ip_checksum_ok(&l, p), "IPv4 header checksum of segment {i}");
            assert_eq!(&p[12..20], &packet[12..20]);
        }
        assert_eq!(l.addrs(p), l.addrs(&packet));
        assert_eq!(
            &p[l.ip_len..l.ip_len + 4],
            &packet[l.ip_len..l.ip_len + 4],
            "ports"
        );
        if l.proto == TCP {
            assert_eq!(
                be32(p, l.ip_len + 4),
                first_seq.wrapping_add((i * gso) as u32)
            );
        } else {
            assert_eq!(
                usize::from(be16(p, l.ip_len + 4)),
                p.len() - l.ip_len,
                "UDP length"
            );
        }
        let csum = be16(p, l.ip_len + l.csum_offset());
        if partial {
            assert_eq!(
                csum,
                pseudo(&l, p),
                "partial checksum is the pseudo-header sum"
            );
        } else {
            assert!(l4_checksum_ok(&l, p), "full checksum of segment {i}");
        }
    }
    assert_eq!(
        payload,
        &packet[hdrs..],
        "payloads concatenate to the original"
    );
});
