//! End to end, as root: garbage at the listen port does not stop the agent or the traffic,
//! and does not grow its memory.

mod common;

use common::{converge, counter, started_cluster, transfer};
use overlay_proto::header::{Header, HEADER_LEN, VERSION};
use overlay_proto::PeerName;
use overlay_testbed::{traffic, Netns, Underlay};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::Duration;

fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends garbage datagrams and crafted truncated headers to `target` from inside `ns`.
fn udp_garbage(ns: &Netns, target: SocketAddr, count: usize) {
    ns.run(move || {
        let s = UdpSocket::bind("0.0.0.0:6783").expect("bind the peer port");
        for i in 0..count {
            let len = i % 1500;
            let mut d = pseudo_random(i as u64, len);
            if i % 3 == 0 && len > 1 {
                d[0] = 1; // right version, then garbage or a truncated header
            }
            let _ = s.send_to(&d, target);
            if i % 200 == 199 {
                // Paced, so the count is the agent's, not the kernel's full socket buffer.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
    .expect("namespace thread");
}

/// Opens garbage, idle and oversized-frame TCP connections to `target` from inside `ns`;
/// returns the idle ones so they stay open.
fn tcp_garbage(ns: &Netns, target: SocketAddr, count: u64) -> Vec<TcpStream> {
    ns.run(move || {
        let mut idle = Vec::new();
        for i in 0..count {
            let Ok(mut s) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                continue;
            };
            match i % 4 {
                0 => {
                    let _ = s.write_all(&pseudo_random(i, 4096));
                }
                1 => {
                    // A frame claiming 4 GiB.
                    let _ = s.write_all(&[0xff, 0xff, 0xff, 0xff, 0x00]);
                }
                2 => {
                    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
                }
                _ => idle.push(s),
            }
        }
        idle
    })
    .expect("namespace thread")
}

/// A minimal IPv4 header (no payload) from `src` to `dst`.
fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p
}

/// Resident memory of node `i`'s agent, in KiB (`VmRSS`).
fn rss_kib(c: &overlay_testbed::Cluster, i: usize) -> u64 {
    let pid = c.agents[i].as_ref().expect("agent running").pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn ip_of(c: &overlay_testbed::Cluster, i: usize) -> Ipv4Addr {
    c.status(i).expect("status")["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("node address")
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn garbage_datagrams_and_connections_do_not_stop_the_agent_or_the_traffic() {
    let mut c = started_cluster("gb", 3);
    converge(&c, Duration::from_secs(15));
    c.add_pod(0).expect("pod on node0");
    c.add_pod(1).expect("pod on node1");
    transfer(&c, 0, 1, 1);
    let target = SocketAddrV4::new(Underlay::node_addr(1), 6783);

    // An outsider on the underlay: a namespace that runs no agent.
    let outsider = Netns::create(&format!("{}x", c.underlay.prefix())).expect("outsider");
    let sw = c.underlay.switch.name().to_owned();
    outsider
        .ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "px", "netns", &sw,
        ])
        .expect("veth");
    c.underlay
        .switch
        .ip(&["link", "set", "px", "master", "br0", "up"])
        .expect("port");
    outsider
        .ip(&["addr", "add", "10.99.0.200/24", "dev", "eth0"])
        .expect("addr");
    outsider.ip(&["link", "set", "eth0", "up"]).expect("up");

    // Crafted datagrams that claim to come from node0's agent (its address and port).
    let (n0, n1) = (
        PeerName::new("node0").expect("name"),
        PeerName::new("node1").expect("name"),
    );
    let header = |version: u8| {
        let mut h = [0u8; HEADER_LEN];
        Header::ip(n0.id(), n1.id()).emit(&mut h).expect("room");
        h[0] = version;
        h.to_vec()
    };
    let mut spoofed = header(VERSION);
    spoofed.extend(ipv4_packet(ip_of(&c, 2), ip_of(&c, 1)));
    // For node2 through node1, with no hop left to spend: node1 must not relay it.
    let n2 = PeerName::new("node2").expect("name");
    let out_of_hops = |hops: u8| {
        let mut d = [0u8; HEADER_LEN];
        Header::ip(n0.id(), n2.id()).emit(&mut d).expect("room");
        Header::set_hop_limit(&mut d, hops).expect("room");
        let mut d = d.to_vec();
        d.extend(ipv4_packet(ip_of(&c, 0), ip_of(&c, 2)));
        d
    };
    let mut forged: Vec<Vec<u8>> = (0..HEADER_LEN)
        .map(|n| header(VERSION)[..n].to_vec())
        .collect();
    forged.push(header(9));
    forged.push(spoofed);
    forged.push(out_of_hops(1));
    forged.push(out_of_hops(0));
    let from_node0 = SocketAddrV4::new(Underlay::node_addr(0), 6783);

    let drops = |c: &overlay_testbed::Cluster, r: &str| counter(c, 1, &["drops", r]);
    let reasons = [
        "not_peer",
        "malformed",
        "bad_version",
        "spoofed",
        "hop_limit",
    ];
    let before: Vec<u64> = reasons.iter().map(|r| drops(&c, r)).collect();
    let rss_before = rss_kib(&c, 1);
    std::thread::scope(|s| {
        let traffic = s.spawn(|| transfer(&c, 0, 1, 32));
        udp_garbage(&outsider, SocketAddr::V4(target), 5000);
        traffic::udp_forged(c.node(0), from_node0, target, forged).expect("forged datagrams");
        let idle_outsider = tcp_garbage(&outsider, SocketAddr::V4(target), 300);
        let idle_peer = tcp_garbage(c.node(0), SocketAddr::V4(target), 60);
        let t = traffic.join().expect("transfer");
        eprintln!("32 MiB under garbage at {:.0} Mbit/s", t.mbit_per_s());
        // Memory with hundreds of garbage and idle connections still open.
        let rss = rss_kib(&c, 1);
        eprintln!(
            "node1's agent: {rss_before} KiB resident before, {rss} KiB under garbage ({} idle connections open)",
            idle_outsider.len() + idle_peer.len()
        );
        assert!(
            rss < rss_before + 16 * 1024,
            "memory grew by more than 16 MiB under garbage: {rss_before} -> {rss} KiB"
        );
        drop((idle_outsider, idle_peer));
    });
    let after: Vec<u64> = reasons.iter().map(|r| drops(&c, r)).collect();
    assert!(
        after[0] >= before[0] + 5000,
        "outsider datagrams counted not_peer: {after:?}"
    );
    assert_eq!(
        after[1],
        before[1] + HEADER_LEN as u64,
        "truncated headers counted malformed"
    );
    assert_eq!(after[2], before[2] + 1, "unknown version counted");
    assert_eq!(after[3], before[3] + 1, "spoofed inner source counted");
    assert_eq!(
        after[4],
        before[4] + 2,
        "datagrams without hops left not relayed"
    );
    assert!(
        c.agents[1].as_mut().expect("agent").is_running(),
        "agent alive"
    );

    // Still one working cluster afterwards.
    converge(&c, Duration::from_secs(15));
    transfer(&c, 1, 0, 4);
    let s = c.status(1).expect("status");
    assert!(s["rejected_connections"].as_u64().is_some(), "{s}");
}
