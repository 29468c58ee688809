//! Writes the seed corpora to `fuzz/corpus/<target>/`: small, real encodings made with the
//! crates' own encoders. Run from `fuzz/`: `cargo +nightly run --example gen_corpus`.

use overlay_fuzz::{decap, packet, DST4, TCP, UDP};
use overlay_proto::codec::{encode_hello, encode_message, LEN_PREFIX};
use overlay_proto::dataplane::fixtures::{datagram, A, B};
use overlay_proto::dataplane::trace::{probe_datagram, report_datagram, MAX_TRACE_DATAGRAM};
use overlay_proto::header::{Header, Kind, FLAG_CSUM_PARTIAL, FLAG_SEALED, HEADER_LEN};
use overlay_proto::message::{
    Digest, DigestEntry, Gossip, Heartbeat, Hello, HelloBody, Message, PROTOCOL_MAX, PROTOCOL_MIN,
};
use overlay_proto::topology::{Claim, PeerRecord};
use overlay_proto::trace::{Action, Cause, Probe, Report, MAX_REPORT_LEN};
use overlay_proto::vnet::VnetHdr;
use overlay_proto::{PeerId, PeerName};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV6};
use std::path::Path;

fn name(s: &str) -> PeerName {
    PeerName::new(s).expect("valid name")
}

fn write(target: &str, seed: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(seed), bytes).expect("write seed");
}

fn body(frame: &[u8]) -> Vec<u8> {
    frame[LEN_PREFIX..].to_vec()
}

fn record(n: &str, version: u64, block: Option<&str>, conns: &[&str]) -> PeerRecord {
    PeerRecord {
        name: name(n),
        version,
        instance: 0x1234,
        advertise: SocketAddr::from(([192, 168, 0, 1], 6783)),
        claim: block.map(|b| Claim {
            block: b.parse().expect("cidr"),
            epoch: 2,
        }),
        connections: conns.iter().map(|c| name(c)).collect(),
        left: false,
        identity: None,
    }
}

fn hello(v6: bool) -> Hello {
    Hello {
        proto_min: PROTOCOL_MIN,
        proto_max: PROTOCOL_MAX,
        body: HelloBody {
            name: name("node-1.example"),
            instance: 0xdead_beef,
            advertise: if v6 {
                SocketAddr::V6(SocketAddrV6::new(
                    "fd00::1".parse().expect("ip"),
                    6783,
                    0,
                    0,
                ))
            } else {
                SocketAddr::from(([192, 168, 0, 1], 6783))
            },
            cluster: "10.32.0.0/12".parse().expect("cidr"),
            subnet_prefix: 24,
        },
    }
}

fn messages() -> Vec<(&'static str, Message)> {
    vec![
        (
            "gossip",
            Message::Gossip(Gossip {
                full: true,
                records: vec![
                    record("b", 3, Some("10.32.5.0/24"), &["a", "c"]),
                    record("c", 1, None, &["b"]),
                ],
            }),
        ),
        (
            "gossip-bad-claim",
            Message::Gossip(Gossip {
                full: false,
                records: vec![record("d", 9, Some("10.48.0.0/24"), &["c", "b"])],
            }),
        ),
        ("heartbeat", Message::Heartbeat(Heartbeat { seq: 300 })),
        ("heartbeat-ack", Message::HeartbeatAck(Heartbeat { seq: 1 })),
        ("leave", Message::Leave),
        (
            "digest",
            Message::Digest(Digest {
                entries: vec![
                    DigestEntry {
                        name: name("a"),
                        version: 5,
                        instance: 1,
                    },
                    DigestEntry {
                        name: name("b"),
                        version: 1,
                        instance: 7,
                    },
                ],
            }),
        ),
    ]
}

fn frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(msg, &mut out).expect("fits");
    out
}

fn main() {
    // header
    let mut h = [0u8; HEADER_LEN + 4];
    for (i, kind) in [Kind::Ip, Kind::TraceProbe, Kind::TraceReport]
        .into_iter()
        .enumerate()
    {
        Header {
            kind,
            hop_limit: 16,
            flags: 1,
            src: PeerId(0x0102_0304_0506_0708),
            dst: PeerId(0xa1a2_a3a4_a5a6_a7a8),
        }
        .emit(&mut h)
        .expect("room");
        h[HEADER_LEN..].copy_from_slice(&[0x45, 0, 0, 0x14]);
        write("header", &format!("kind-{}", i + 1), &h);
    }

    // hello
    for v6 in [false, true] {
        let mut out = Vec::new();
        encode_hello(&hello(v6), &mut out);
        let mut b = body(&out);
        write("hello", if v6 { "v6" } else { "v4" }, &b);
        b.extend_from_slice(b"newer fields");
        write("hello", "v4-appended", &b);
    }

    // message, digest, frames, gossip
    let mut stream = Vec::new();
    encode_hello(&hello(false), &mut stream);
    let mut gossip_stream = Vec::new();
    for (seed, msg) in messages() {
        let f = frame(&msg);
        write("message", seed, &body(&f));
        stream.extend_from_slice(&f);
        if seed == "digest" {
            write("digest", seed, &body(&f)[1..]);
        }
        if seed != "leave" {
            let b = body(&f);
            gossip_stream.extend_from_slice(&(b.len() as u16).to_be_bytes());
            gossip_stream.extend_from_slice(&b);
        }
    }
    write("message", "unknown-type", &[0x63, 1, 2, 3]);
    write("digest", "empty", &[0]);
    write("gossip", "all-messages", &gossip_stream);
    // Gossip the node's own name with a higher version (refutation) and a newer record of b.
    let mut g2 = Vec::new();
    for msg in [
        Message::Gossip(Gossip {
            full: false,
            records: vec![record("a", 99, Some("10.32.9.0/24"), &[])],
        }),
        Message::Gossip(Gossip {
            full: true,
            records: vec![record("b", 4, Some("10.32.5.0/24"), &["a"])],
        }),
    ] {
        let b = body(&frame(&msg));
        g2.extend_from_slice(&(b.len() as u16).to_be_bytes());
        g2.extend_from_slice(&b);
    }
    write("gossip", "refute-and-update", &g2);
    let mut s = vec![0];
    s.extend_from_slice(&stream);
    write("frames", "stream-whole", &s);
    // The count byte's high bit: read sealed into Noise records as well.
    for (sealed, tag) in [(0, ""), (0x80, "sealed-")] {
        let mut s = vec![sealed | 3, 5, 64, 1];
        s.extend_from_slice(&stream);
        write("frames", &format!("{tag}stream-chunked"), &s);
        let small = [sealed | 1, 1, 0, 0, 0, 2, b'h', b'i', 0, 0, 0, 99];
        write("frames", &format!("{tag}small-limits"), &small);
    }

    // trace
    let mut b = [0u8; MAX_REPORT_LEN];
    let n = Probe {
        nonce: 42,
        target: Ipv4Addr::new(10, 32, 1, 2),
        first_hop_limit: 16,
    }
    .emit(&mut b)
    .expect("room");
    write("trace", "probe", &b[..n]);
    let reports = [
        (
            "relay-v4",
            Action::Relay {
                next: PeerId(7),
                addr: SocketAddr::from(([192, 168, 0, 2], 6783)),
            },
        ),
        (
            "relay-v6",
            Action::Relay {
                next: PeerId(7),
                addr: "[fd00::2]:6783".parse().expect("addr"),
            },
        ),
        (
            "deliver-bridge",
            Action::Deliver {
                device: "vethabc".into(),
                up: true,
                bridge: Some("ovlbr0".into()),
            },
        ),
        (
            "deliver",
            Action::Deliver {
                device: "ovl0".into(),
                up: false,
                bridge: None,
            },
        ),
        ("drop", Action::Drop(Cause::NoKernelRoute)),
    ];
    for (seed, action) in reports {
        let n = Report {
            nonce: 42,
            hop: 2,
            action,
        }
        .emit(&mut b)
        .expect("room");
        write("trace", seed, &b[..n]);
    }

    // split: mode byte, virtio header, packet
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let split_seeds = [
        ("tcp4-tso", VnetHdr::GSO_TCPV4, false, TCP, 1000u16, true),
        (
            "tcp4-tso-ecn-full",
            VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN,
            false,
            TCP,
            1400,
            false,
        ),
        ("tcp6-tso", VnetHdr::GSO_TCPV6, true, TCP, 1200, true),
        ("udp4-uso", VnetHdr::GSO_UDP_L4, false, UDP, 1000, true),
        ("udp6-uso-full", VnetHdr::GSO_UDP_L4, true, UDP, 700, false),
        ("plain-tcp4-partial", VnetHdr::GSO_NONE, false, TCP, 0, true),
        ("plain-udp6", VnetHdr::GSO_NONE, true, UDP, 0, false),
    ];
    for (seed, gso_type, v6, proto, gso_size, partial) in split_seeds {
        let p = packet(v6, proto, 1_000_000, true, &payload[..2500], partial);
        let ip_len = if v6 { 40 } else { 20 };
        let l4 = if proto == TCP { 20 } else { 8 };
        let vnet = VnetHdr {
            flags: if partial { VnetHdr::NEEDS_CSUM } else { 0 },
            gso_type,
            hdr_len: (ip_len + l4) as u16,
            gso_size,
            csum_start: ip_len as u16,
            csum_offset: if proto == TCP { 16 } else { 6 },
        };
        let mut s = vec![1u8; 11];
        vnet.emit(&mut s[1..]).expect("room");
        s.extend_from_slice(&p);
        write("split", seed, &s);
    }

    // coalesce: config byte, then [flags][len u16][bytes]...
    let rec = |out: &mut Vec<u8>, flags: u8, bytes: &[u8]| {
        out.push(flags);
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    for (seed, v6, proto, partial) in [
        ("tcp4-train", false, TCP, false),
        ("tcp6-train-partial", true, TCP, true),
        ("udp4-train", false, UDP, true),
        ("udp6-train", true, UDP, false),
    ] {
        let mut s = vec![0x1f]; // tcp, udp, 8 slots
        let mut seq = 5000;
        let p = partial as u8;
        for i in 0..4u32 {
            let last = i == 3;
            let len = if last { 300 } else { 600 };
            let pkt = packet(v6, proto, seq, last, &payload[..len], partial);
            rec(&mut s, p, &pkt);
            seq += len as u32;
        }
        // Another flow interleaved, then a derived next segment and a flush.
        let other = packet(!v6, TCP, 1, false, &payload[..100], false);
        rec(&mut s, 2, &other);
        rec(&mut s, 8 | p, &payload[..100]);
        rec(&mut s, 4, &[0x45, 0]);
        write("coalesce", seed, &s);
    }

    // decap: mode byte (receiving node, topology, sealing; see overlay_fuzz::decap), datagram
    let seed = |mode: u8, d: &[u8]| {
        let mut s = vec![mode];
        s.extend_from_slice(d);
        s
    };
    let (b_connected, c_relaying, sealed) = (1, 2 | 4, 8);
    let a_to_b = Header::ip(A.id(), B.id());
    let udp = packet(false, UDP, 0, false, &payload[..100], false);
    write(
        "decap",
        "deliver",
        &seed(b_connected, &datagram(a_to_b, &udp)),
    );
    let tcp = packet(false, TCP, 1, true, &payload[..1000], true);
    let partial = Header {
        flags: FLAG_CSUM_PARTIAL,
        ..a_to_b
    };
    write(
        "decap",
        "deliver-partial",
        &seed(b_connected, &datagram(partial, &tcp)),
    );
    write("decap", "relay", &seed(c_relaying, &datagram(a_to_b, &udp)));
    let last_hop = Header {
        hop_limit: 1,
        ..a_to_b
    };
    write(
        "decap",
        "relay-hop-limit",
        &seed(c_relaying, &datagram(last_hop, &udp)),
    );
    let mut s = seed(
        b_connected | sealed,
        &datagram(
            Header {
                flags: FLAG_SEALED,
                ..a_to_b
            },
            &udp,
        ),
    );
    s.extend_from_slice(&[0xee; decap::TAG]);
    write("decap", "sealed", &s);
    let probe = Probe {
        nonce: 42,
        target: Ipv4Addr::from(DST4),
        first_hop_limit: 16,
    };
    let d = probe_datagram(A.id(), B.id(), &probe);
    write("decap", "probe-relay", &seed(c_relaying, &d));
    write("decap", "probe-final", &seed(b_connected, &d));
    let mut d = [0u8; MAX_TRACE_DATAGRAM];
    let report = Report {
        nonce: 42,
        hop: 1,
        action: Action::Drop(Cause::NoKernelRoute),
    };
    let n = report_datagram(B.id(), A.id(), &report, &mut d).expect("encodes");
    write("decap", "report-forward", &seed(c_relaying, &d[..n]));

    // cni
    let prev = r#"{"cniVersion":"1.1.0","interfaces":[{"name":"vethabc","mac":"02:00:00:00:00:01"},{"name":"eth0","mac":"02:00:00:00:00:02","mtu":1410,"sandbox":"/var/run/netns/p","socketPath":"/x"}],"ips":[{"address":"10.32.1.2/24","gateway":"10.32.1.1","interface":1},{"address":"fd00::2/64","interface":1,"extra":true}],"routes":[{"dst":"0.0.0.0/0","gw":"10.32.1.1","mtu":1400},{"dst":"::/0"}],"dns":{"nameservers":["10.96.0.10"],"domain":"cluster.local","search":["svc"],"options":["ndots:5"]},"custom":{"a":[1,2.5,null]}}"#;
    write("cni_prev_result", "full", prev.as_bytes());
    write("cni_prev_result", "minimal", br#"{"cniVersion":"1.0.0"}"#);
    write(
        "cni_netconf",
        "minimal",
        br#"{"cniVersion":"1.1.0","name":"overlay","type":"overlay-cni"}"#,
    );
    write(
        "cni_netconf",
        "all-fields",
        br#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"overlay-cni","api":"[::1]:6784","mtu":1410,"bridge":"ovlbr0","agentWaitSeconds":30,"ipam":{},"dns":{},"runtimeConfig":{"portMappings":[]}}"#,
    );
    write(
        "cni_netconf",
        "gc",
        br#"{"cniVersion":"1.1.0","name":"overlay","type":"overlay-cni","cni.dev/valid-attachments":[{"containerID":"abc","ifname":"eth0"}],"cni.dev/attachments":[]}"#,
    );
    let chained = format!(
        r#"{{"cniVersion":"1.1.0","name":"overlay","type":"overlay-cni","prevResult":{prev}}}"#
    );
    write("cni_netconf", "prev-result", chained.as_bytes());
}
