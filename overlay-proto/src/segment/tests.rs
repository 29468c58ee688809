//! Fixtures for [`split`]; [`packets`] builds test packets (shared with the coalescer's
//! tests).

mod packets;

pub(crate) use packets::*;

use super::*;
use crate::header::FLAG_CSUM_PARTIAL;
use crate::ip::l4::ACK;
use crate::PeerId;

fn overlay() -> Header {
    Header::ip(PeerId(0x0102_0304_0506_0708), PeerId(0xa1a2_a3a4_a5a6_a7a8))
}

fn tso(gso_type: u8, gso_size: u16) -> VnetHdr {
    VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        gso_type,
        hdr_len: 0xbeef, // never trusted
        gso_size,
        csum_start: 0xbeef,
        csum_offset: 0xbeef,
    }
}

/// 10 bytes of payload, CWR|ACK|PSH|FIN, to be cut into 4 + 4 + 2.
static TSO_INPUT: [u8; 50] = [
    0x45, 0x00, 0x00, 0x32, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x11,
    0x4e, // IPv4: len 50, id 0x1234, DF, TTL 64, TCP, csum
    0x0a, 0x20, 0x01, 0x02, 0x0a, 0x20, 0x02, 0x03, // 10.32.1.2 -> 10.32.2.3
    0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x20,
    0x00, // TCP 40000 -> 5201, seq 0x1000, ack 0x2000
    0x50, 0x99, 0x01, 0xf6, 0x17, 0x69, 0x00,
    0x00, // doff 5, CWR|ACK|PSH|FIN, win 502, pseudo sum, urg
    0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, // payload
];

/// The three datagrams (computed independently of this crate).
static TSO_OUTPUT: [u8; 64 + 64 + 62] = [
    // datagram 0 (first: CWR|ACK)
    0x01, 0x01, 0x10, 0x01, // overlay: v1, Ip, hops 16, CSUM_PARTIAL
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, // src, dst peer ids
    0x45, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x11,
    0x54, // IPv4: len 44, id 0x1234, csum 0x1154
    0x0a, 0x20, 0x01, 0x02, 0x0a, 0x20, 0x02, 0x03, // addresses
    0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x20,
    0x00, // TCP ports, seq 0x1000, ack
    0x50, 0x90, 0x01, 0xf6, 0x17, 0x63, 0x00,
    0x00, // doff 5, flags 0x90, win, pseudo sum for 24 bytes, urg
    0x61, 0x62, 0x63, 0x64, // payload
    // datagram 1 (middle: ACK)
    0x01, 0x01, 0x10, 0x01, // overlay: v1, Ip, hops 16, CSUM_PARTIAL
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, // src, dst peer ids
    0x45, 0x00, 0x00, 0x2c, 0x12, 0x35, 0x40, 0x00, 0x40, 0x06, 0x11,
    0x53, // IPv4: len 44, id 0x1235, csum 0x1153
    0x0a, 0x20, 0x01, 0x02, 0x0a, 0x20, 0x02, 0x03, // addresses
    0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x10, 0x04, 0x00, 0x00, 0x20,
    0x00, // TCP ports, seq 0x1004, ack
    0x50, 0x10, 0x01, 0xf6, 0x17, 0x63, 0x00,
    0x00, // doff 5, flags 0x10, win, pseudo sum for 24 bytes, urg
    0x65, 0x66, 0x67, 0x68, // payload
    // datagram 2 (last: ACK|PSH|FIN)
    0x01, 0x01, 0x10, 0x01, // overlay: v1, Ip, hops 16, CSUM_PARTIAL
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, // src, dst peer ids
    0x45, 0x00, 0x00, 0x2a, 0x12, 0x36, 0x40, 0x00, 0x40, 0x06, 0x11,
    0x54, // IPv4: len 42, id 0x1236, csum 0x1154
    0x0a, 0x20, 0x01, 0x02, 0x0a, 0x20, 0x02, 0x03, // addresses
    0x9c, 0x40, 0x14, 0x51, 0x00, 0x00, 0x10, 0x08, 0x00, 0x00, 0x20,
    0x00, // TCP ports, seq 0x1008, ack
    0x50, 0x19, 0x01, 0xf6, 0x17, 0x61, 0x00,
    0x00, // doff 5, flags 0x19, win, pseudo sum for 22 bytes, urg
    0x69, 0x6a, // payload
];

#[test]
fn test_construct_tcpv4_three_segments_partial() {
    let mut out = [0xeeu8; 256];
    let layout = split(
        &tso(VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN, 4),
        &TSO_INPUT,
        &overlay(),
        &mut out,
    )
    .expect("splits");
    assert_eq!(
        layout,
        SplitLayout {
            count: 3,
            datagram_len: 64,
            total_len: 190
        }
    );
    assert_eq!(layout.last_len(), 62);
    assert_eq!(layout.datagram(2), Some(128..190));
    assert_eq!(layout.datagram(3), None);
    assert_eq!(&out[..190], &TSO_OUTPUT[..]);
    assert!(
        out[190..].iter().all(|&b| b == 0xee),
        "nothing past the layout"
    );
    for i in 0..3 {
        let mut inner = out[layout.datagram(i).expect("in range")][HEADER_LEN..].to_vec();
        complete(&mut inner);
        assert!(
            l4_valid(&inner),
            "segment {i} completes to a valid checksum"
        );
    }
}

#[test]
fn test_construct_tcpv4_three_segments_full_checksums() {
    let mut vnet = tso(VnetHdr::GSO_TCPV4, 4);
    vnet.flags = 0;
    let mut header = overlay();
    header.flags = FLAG_CSUM_PARTIAL; // must be cleared
    let mut out = [0u8; 190];
    let layout = split(&vnet, &TSO_INPUT, &header, &mut out).expect("splits");
    let mut expected = TSO_OUTPUT;
    // Independently computed full checksums; overlay flags clear.
    for (i, c) in [0xf0bdu16, 0xe931, 0x4c8b].into_iter().enumerate() {
        let d = layout.datagram(i).expect("in range").start;
        expected[d + 3] = 0;
        expected[d + 56..d + 58].copy_from_slice(&c.to_be_bytes());
    }
    assert_eq!(out, expected);
}

#[test]
fn tcpv6_split_fixes_payload_length_seq_and_flags() {
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let pkt = Pkt {
        flags: ACK | PSH,
        seq: u32::MAX - 100, // wraps
        ..Pkt::tcp6()
    }
    .build_partial(&payload);
    let mut out = vec![0u8; 4000];
    let layout = split(&tso(VnetHdr::GSO_TCPV6, 1200), &pkt, &overlay(), &mut out).expect("ok");
    let hdrs = 40 + 32;
    assert_eq!(layout.count, 3);
    assert_eq!(layout.datagram_len, HEADER_LEN + hdrs + 1200);
    assert_eq!(layout.last_len(), HEADER_LEN + hdrs + 600);
    for i in 0..3 {
        let d = &out[layout.datagram(i).expect("in range")];
        assert_eq!(Header::parse(d).map(|h| h.flags), Ok(FLAG_CSUM_PARTIAL));
        let inner = &d[HEADER_LEN..];
        let chunk = &payload[i * 1200..(i * 1200 + 1200).min(3000)];
        assert_eq!(&inner[..4], &pkt[..4], "version, class, flow label");
        assert_eq!(be16(inner, 4) as usize, 32 + chunk.len(), "payload length");
        assert_eq!(
            &inner[6..40],
            &pkt[6..40],
            "next header, hop limit, addresses"
        );
        assert_eq!(
            be32(inner, 44),
            (u32::MAX - 100).wrapping_add(1200 * i as u32)
        );
        let flags = if i == 2 { ACK | PSH } else { ACK };
        assert_eq!(inner[40 + 13], flags);
        assert_eq!(&inner[60..72], &TS_OPTION, "options copied");
        assert_eq!(
            be16(inner, 56),
            pseudo(inner),
            "partial checksum for this length"
        );
        assert_eq!(&inner[hdrs..], chunk);
        let mut completed = inner.to_vec();
        complete(&mut completed);
        assert!(l4_valid(&completed));
    }
}

#[test]
fn udp_l4_split_over_ipv4_and_ipv6() {
    for p in [Pkt::udp4(), Pkt::udp6()] {
        let payload: Vec<u8> = (0..2500u32).map(|i| (i * 7) as u8).collect();
        for partial in [true, false] {
            let pkt = p.build_partial(&payload);
            let mut vnet = tso(VnetHdr::GSO_UDP_L4, 1000);
            if !partial {
                vnet.flags = 0;
            }
            let mut out = vec![0u8; 4000];
            let layout = split(&vnet, &pkt, &overlay(), &mut out).expect("ok");
            let ip = if p.v6 { 40 } else { 20 };
            assert_eq!(layout.count, 3);
            assert_eq!(layout.datagram_len, HEADER_LEN + ip + 8 + 1000);
            assert_eq!(layout.total_len, 3 * (HEADER_LEN + ip + 8) + 2500);
            for i in 0..3 {
                let d = &out[layout.datagram(i).expect("in range")];
                let flag = if partial { FLAG_CSUM_PARTIAL } else { 0 };
                assert_eq!(Header::parse(d).map(|h| h.flags), Ok(flag));
                let mut inner = d[HEADER_LEN..].to_vec();
                let chunk = &payload[i * 1000..(i * 1000 + 1000).min(2500)];
                assert_eq!(Headers::parse(&inner).map(|h| h.hdr_len()), Ok(ip + 8));
                assert_eq!(be16(&inner, ip + 4) as usize, 8 + chunk.len(), "UDP length");
                if !p.v6 {
                    assert_eq!(be16(&inner, 4), 0x1234 + i as u16, "IPv4 id");
                    assert_eq!(checksum::sum(&inner[..20]), 0xffff, "IPv4 header checksum");
                }
                assert_eq!(&inner[ip + 8..], chunk);
                if partial {
                    assert_eq!(be16(&inner, ip + 6), pseudo(&inner));
                    complete(&mut inner);
                }
                assert!(l4_valid(&inner));
            }
        }
    }
}

#[test]
fn payload_that_divides_evenly_gives_equal_datagrams() {
    let pkt = Pkt::tcp4().build_partial(&[9u8; 4000]);
    let layout = split_layout(&tso(VnetHdr::GSO_TCPV4, 1000), &pkt).expect("ok");
    assert_eq!(layout.count, 4);
    assert_eq!(layout.last_len(), layout.datagram_len);
    // A payload no larger than gso_size is one datagram with the flags kept.
    let one = Pkt {
        flags: ACK | PSH,
        ..Pkt::tcp4()
    }
    .build_partial(&[1u8; 500]);
    let mut out = vec![0u8; 1000];
    let layout = split(&tso(VnetHdr::GSO_TCPV4, 1000), &one, &overlay(), &mut out).expect("ok");
    assert_eq!(layout.count, 1);
    assert_eq!(layout.total_len, HEADER_LEN + one.len());
    assert_eq!(out[HEADER_LEN + 20 + 13], ACK | PSH);
}

#[test]
fn gso_none_is_copied_with_the_partial_flag_where_the_receiver_finds_it() {
    let pkt = Pkt::tcp4().build_partial(b"hello");
    let vnet = VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        gso_type: VnetHdr::GSO_NONE,
        hdr_len: 52,
        gso_size: 0,
        csum_start: 20,
        csum_offset: 16,
    };
    let mut out = vec![0u8; 200];
    let layout = split(&vnet, &pkt, &overlay(), &mut out).expect("ok");
    assert_eq!(layout.count, 1);
    assert_eq!(layout.total_len, HEADER_LEN + pkt.len());
    assert_eq!(Header::parse(&out).map(|h| h.flags), Ok(FLAG_CSUM_PARTIAL));
    assert_eq!(&out[HEADER_LEN..layout.total_len], &pkt[..]);

    // Without NEEDS_CSUM: copied, flag clear (even if the caller's header had it).
    let full = Pkt::udp6().build(b"world");
    let mut h = overlay();
    h.flags = FLAG_CSUM_PARTIAL;
    let layout = split(&VnetHdr::default(), &full, &h, &mut out).expect("ok");
    assert_eq!(Header::parse(&out).map(|h| h.flags), Ok(0));
    assert_eq!(&out[HEADER_LEN..layout.total_len], &full[..]);

    // A plain packet is not inspected: garbage passes through.
    let layout = split(&VnetHdr::default(), &[1, 2, 3], &overlay(), &mut out).expect("ok");
    assert_eq!(&out[HEADER_LEN..layout.total_len], &[1, 2, 3]);
}

#[test]
fn gso_none_partial_checksum_elsewhere_is_completed_in_the_copy() {
    // UDP behind an IPv6 destination-options header: the receiver would not find the
    // checksum, so split completes it.
    let udp = Pkt::udp6().build_partial(b"payload!");
    let mut pkt = udp[..40].to_vec();
    pkt[6] = 60; // destination options
    pkt.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // next UDP, len 0, PadN
    pkt.extend_from_slice(&udp[40..]);
    let plen = (pkt.len() - 40) as u16;
    pkt[4..6].copy_from_slice(&plen.to_be_bytes());
    let vnet = VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        csum_start: 48,
        csum_offset: 6,
        ..VnetHdr::default()
    };
    let mut out = vec![0u8; 200];
    let layout = split(&vnet, &pkt, &overlay(), &mut out).expect("ok");
    assert_eq!(Header::parse(&out).map(|h| h.flags), Ok(0));
    let inner = &out[HEADER_LEN..layout.total_len];
    assert_eq!(&inner[..54], &pkt[..54]);
    let mut reference = udp.clone();
    complete(&mut reference);
    assert!(l4_valid(&reference));
    assert_eq!(&inner[48..], &reference[40..], "UDP checksum completed");

    // Offsets outside the packet.
    let bad = VnetHdr {
        csum_start: 60,
        ..vnet
    };
    assert_eq!(
        split(&bad, &pkt, &overlay(), &mut out),
        Err(SplitError::ChecksumOutside {
            csum_start: 60,
            csum_offset: bad.csum_offset,
            len: pkt.len()
        })
    );
}

#[test]
fn rejects_inconsistent_packets_as_malformed() {
    let tcp4 = Pkt::tcp4().build_partial(&[0u8; 3000]);
    let tcp6 = Pkt::tcp6().build_partial(&[0u8; 3000]);
    let udp4 = Pkt::udp4().build_partial(&[0u8; 3000]);
    let v4 = tso(VnetHdr::GSO_TCPV4, 1000);
    let v6 = tso(VnetHdr::GSO_TCPV6, 1000);
    let uso = tso(VnetHdr::GSO_UDP_L4, 1000);
    let mut out = vec![0x5au8; 8000];
    let malformed = |vnet: &VnetHdr, pkt: &[u8], out: &mut [u8]| {
        let e = split(vnet, pkt, &overlay(), out).expect_err("malformed");
        assert!(
            !matches!(
                e,
                SplitError::Unsupported(_) | SplitError::BufferTooSmall(_)
            ),
            "{e:?}"
        );
        e
    };
    let bad_headers = |e: IpError| SplitError::Headers(e);
    assert_eq!(
        malformed(&tso(VnetHdr::GSO_TCPV4, 0), &tcp4, &mut out),
        SplitError::ZeroGsoSize
    );
    for len in [0, 1, 19, 20, 39, 51] {
        malformed(&v4, &tcp4[..len], &mut out); // truncated (lengths disagree)
    }
    assert_eq!(
        malformed(&v6, &tcp6[..50], &mut out),
        bad_headers(IpError::LengthMismatch {
            layer: Layer::Ipv6,
            field: tcp6.len(),
            got: 50
        })
    );
    let mut t = tcp4.clone();
    t[32] = 0x40; // data offset 4
    assert_eq!(
        malformed(&v4, &t, &mut out),
        bad_headers(IpError::HeaderLength {
            layer: Layer::Tcp,
            len: 16,
            min: 20
        })
    );
    let mut t = tcp4.clone();
    t[0] = 0x44; // IHL 4
    assert_eq!(
        malformed(&v4, &t, &mut out),
        bad_headers(IpError::HeaderLength {
            layer: Layer::Ipv4,
            len: 16,
            min: 20
        })
    );
    let mismatch = |gso_type, ip, l4| SplitError::GsoTypeMismatch { gso_type, ip, l4 };
    assert_eq!(
        malformed(&v4, &udp4, &mut out),
        mismatch(VnetHdr::GSO_TCPV4, Layer::Ipv4, Layer::Udp)
    );
    assert_eq!(
        malformed(&uso, &tcp4, &mut out),
        mismatch(VnetHdr::GSO_UDP_L4, Layer::Ipv4, Layer::Tcp)
    );
    assert_eq!(
        malformed(&v6, &tcp4, &mut out),
        mismatch(VnetHdr::GSO_TCPV6, Layer::Ipv4, Layer::Tcp)
    );
    let e = malformed(&v4, &tcp6, &mut out);
    assert_eq!(e, mismatch(VnetHdr::GSO_TCPV4, Layer::Ipv6, Layer::Tcp));
    assert_eq!(
        e.to_string(),
        "gso_type 1 does not match a TCP over IPv6 packet"
    );
    let mut icmp = tcp4.clone();
    icmp[9] = 1;
    assert_eq!(
        malformed(&v4, &icmp, &mut out),
        bad_headers(IpError::NotTcpOrUdp { protocol: 1 })
    );
    for frag in [0x2000u16, 0x0001, 0x6000] {
        let f = Pkt {
            frag,
            ..Pkt::tcp4()
        }
        .build_partial(&[0u8; 3000]);
        assert_eq!(malformed(&v4, &f, &mut out), bad_headers(IpError::Fragment));
    }
    let mut ext = tcp6.clone();
    ext[6] = 0; // hop-by-hop options
    assert_eq!(
        malformed(&v6, &ext, &mut out),
        bad_headers(IpError::Ipv6Extension { next_header: 0 })
    );
    let mut long = tcp4.clone();
    long.push(0); // total length disagrees
    let e = malformed(&v4, &long, &mut out);
    assert_eq!(
        e,
        bad_headers(IpError::LengthMismatch {
            layer: Layer::Ipv4,
            field: tcp4.len(),
            got: tcp4.len() + 1
        })
    );
    assert_eq!(
        e.to_string(),
        format!(
            "super-packet headers: IPv4 length field says {} bytes, the packet has {}",
            tcp4.len(),
            tcp4.len() + 1
        )
    );
    let mut long6 = tcp6.clone();
    long6.push(0);
    assert_eq!(
        malformed(&v6, &long6, &mut out),
        bad_headers(IpError::LengthMismatch {
            layer: Layer::Ipv6,
            field: tcp6.len(),
            got: tcp6.len() + 1
        })
    );
    let empty = Pkt::tcp4().build_partial(&[]);
    assert_eq!(malformed(&v4, &empty, &mut out), SplitError::NoPayload);
    assert_eq!(
        malformed(&v4, &[0x70; 60], &mut out),
        bad_headers(IpError::NotIp { version: 7 })
    );
    assert!(out.iter().all(|&b| b == 0x5a), "errors write nothing");
}

#[test]
fn rejects_unsupported_gso_types() {
    let udp4 = Pkt::udp4().build_partial(&[0u8; 3000]);
    let mut out = vec![0u8; 8000];
    for t in [
        VnetHdr::GSO_UDP,
        2,
        6,
        0x7f,
        VnetHdr::GSO_UDP_L4 | VnetHdr::GSO_ECN,
        VnetHdr::GSO_ECN,
    ] {
        assert_eq!(
            split(&tso(t, 1000), &udp4, &overlay(), &mut out),
            Err(SplitError::Unsupported(t))
        );
    }
}

#[test]
fn too_many_segments_and_buffer_too_small_write_nothing() {
    let pkt = Pkt::tcp4().build_partial(&[3u8; 129]);
    let mut out = vec![0x5au8; 65536];
    assert_eq!(
        split(&tso(VnetHdr::GSO_TCPV4, 1), &pkt, &overlay(), &mut out),
        Err(SplitError::TooManySegments(129))
    );
    let pkt = Pkt::tcp4().build_partial(&[3u8; 128]);
    let layout = split_layout(&tso(VnetHdr::GSO_TCPV4, 1), &pkt).expect("128 is allowed");
    assert_eq!(layout.count, MAX_SEGMENTS);
    assert_eq!(
        split(
            &tso(VnetHdr::GSO_TCPV4, 1),
            &pkt,
            &overlay(),
            &mut out[..layout.total_len - 1]
        ),
        Err(SplitError::BufferTooSmall(layout.total_len - 1))
    );
    assert!(out.iter().all(|&b| b == 0x5a));
    assert_eq!(
        split(
            &tso(VnetHdr::GSO_TCPV4, 1),
            &pkt,
            &overlay(),
            &mut out[..layout.total_len]
        ),
        Ok(layout)
    );
    let mut small = [0u8; 10];
    assert_eq!(
        split(&VnetHdr::default(), &pkt, &overlay(), &mut small),
        Err(SplitError::BufferTooSmall(10))
    );
}

#[test]
fn a_64k_tso_packet_exceeds_one_gso_send_and_split_does_not_cap_it() {
    let pkt = Pkt::tcp4().build_partial(&vec![1u8; 65535 - 52]);
    let layout = split_layout(&tso(VnetHdr::GSO_TCPV4, 1400), &pkt).expect("ok");
    assert_eq!(layout.count, 47);
    assert!(layout.total_len > 65507);
    let mut out = vec![0u8; layout.total_len];
    assert_eq!(
        split(&tso(VnetHdr::GSO_TCPV4, 1400), &pkt, &overlay(), &mut out),
        Ok(layout)
    );
}

#[test]
fn max_split_len_is_the_worst_case() {
    // IPv4 with 40 bytes of options, TCP with 40 bytes of options, 128 segments.
    let base = Pkt {
        options: vec![1; 40],
        ..Pkt::tcp4()
    }
    .build_partial(&vec![0u8; 65535 - 80]);
    let mut pkt = base[..20].to_vec();
    pkt[0] = 0x4f;
    pkt.extend_from_slice(&[1; 40]); // NOPs
    pkt.extend_from_slice(&base[20..65535 - 40]);
    pkt[2..4].copy_from_slice(&65535u16.to_be_bytes());
    let gso = (65535 - 120usize).div_ceil(128) as u16;
    let layout = split_layout(&tso(VnetHdr::GSO_TCPV4, gso), &pkt).expect("valid");
    assert_eq!(layout.count, MAX_SEGMENTS);
    assert_eq!(layout.total_len, MAX_SPLIT_LEN);
    assert_eq!(MAX_SPLIT_LEN, 83335);
    // IPv6 (100 bytes of headers at most) needs less.
    let v6 = Pkt {
        options: vec![1; 40],
        ..Pkt::tcp6()
    }
    .build_partial(&vec![0u8; 65535 - 60]);
    let gso = (65535 - 60usize).div_ceil(128) as u16;
    let layout = split_layout(&tso(VnetHdr::GSO_TCPV6, gso), &v6).expect("valid");
    assert_eq!(layout.count, MAX_SEGMENTS);
    assert!(layout.total_len <= MAX_SPLIT_LEN);
}
