//! End to end, as root: `GET /metrics` of real agents in a two-node namespace cluster; the
//! counters move when pod traffic flows and when datagrams are dropped.

mod common;

use common::{converge, started_cluster, transfer};
use overlay_proto::header::{Header, HEADER_LEN, VERSION};
use overlay_proto::PeerName;
use overlay_testbed::{http, traffic, wait, Cluster, Underlay};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

/// The default `--metrics` port.
const METRICS_PORT: u16 = 6782;

/// Node `i`'s `/metrics`, scraped over the underlay from node `from` (the default listen
/// address is 0.0.0.0, so other machines can scrape it).
fn scrape_from(c: &Cluster, from: usize, i: usize) -> String {
    let addr = SocketAddr::from((Underlay::node_addr(i), METRICS_PORT));
    let r = http::request(c.node(from), addr, "GET", "/metrics", None)
        .unwrap_or_else(|e| panic!("scraping node{i}: {e:#}\n{}", c.all_logs()));
    assert_eq!(r.status, 200, "node{i} /metrics: {}", r.body);
    r.body
}

/// Node `i`'s `/metrics`, scraped from inside its own namespace.
fn scrape(c: &Cluster, i: usize) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], METRICS_PORT));
    let r = http::request(c.node(i), addr, "GET", "/metrics", None)
        .unwrap_or_else(|e| panic!("scraping node{i}: {e:#}\n{}", c.all_logs()));
    assert_eq!(r.status, 200, "node{i} /metrics: {}", r.body);
    r.body
}

/// The value of `series` (name and labels exactly as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()?.parse().ok()
    })
}

/// The value of `series`, which must be present.
fn get(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn metrics_move_with_pod_traffic_and_drops() {
    let mut c = started_cluster("mt", 2);
    converge(&c, Duration::from_secs(15));
    c.add_pod(0).expect("pod on node0");
    c.add_pod(1).expect("pod on node1");

    // Connections, peers, IPAM and build info, as soon as the cluster stands.
    let before0 = scrape(&c, 0);
    let before1 = scrape_from(&c, 0, 1);
    assert!(before0.ends_with("# EOF\n"), "{before0}");
    for (text, other) in [(&before0, "node1"), (&before1, "node0")] {
        assert_eq!(
            get(text, r#"overlay_connections{state="established"}"#),
            1.0
        );
        assert_eq!(get(text, "overlay_ready"), 1.0);
        let peer = format!(r#"{{peer="{other}"}}"#);
        assert_eq!(get(text, &format!("overlay_peer_reachable{peer}")), 1.0);
        assert_eq!(get(text, &format!("overlay_peer_hops{peer}")), 1.0);
        assert_eq!(
            get(
                text,
                &format!(r#"overlay_peer_next_hop{{peer="{other}",next_hop="{other}"}}"#)
            ),
            1.0
        );
        let mtu = get(text, &format!("overlay_peer_path_mtu_bytes{peer}"));
        assert!((1200.0..=65535.0).contains(&mtu), "path MTU {mtu}");
        assert_eq!(
            get(text, "overlay_ipam_addresses_allocated"),
            1.0,
            "one pod"
        );
        assert_eq!(get(text, "overlay_ipam_addresses_capacity"), 253.0, "a /24");
        assert!(get(text, r#"overlay_gossip_messages_total{direction="sent"}"#) >= 1.0);
        assert!(get(text, r#"overlay_gossip_bytes_total{direction="sent"}"#) >= 1.0);
        assert!(get(text, r#"overlay_gossip_bytes_total{direction="received"}"#) >= 1.0);
        assert!(
            text.contains(&format!(
                "overlay_build_info{{version=\"{}\"",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }
    // Heartbeats run every second: the RTT of the direct connection shows up.
    wait::until(
        "a heartbeat RTT on node0's connection to node1",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let rtt = value(&scrape(&c, 0), r#"overlay_peer_rtt_seconds{peer="node1"}"#);
            Ok(rtt.filter(|r| *r > 0.0 && *r < 5.0))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));

    // 4 MiB from pod0 (node0) to pod1 (node1).
    const MIB: f64 = (1 << 20) as f64;
    transfer(&c, 0, 1, 4);
    let after0 = scrape(&c, 0);
    let after1 = scrape(&c, 1);
    let grew = |before: &str, after: &str, series: &str| {
        get(after, series) - value(before, series).unwrap_or(0.0)
    };
    let to1 = r#"{peer="node1"}"#;
    let from0 = r#"{peer="node0"}"#;
    let sent = grew(
        &before0,
        &after0,
        &format!("overlay_peer_sent_bytes_total{to1}"),
    );
    assert!(sent >= 4.0 * MIB, "node0 sent {sent} bytes to node1");
    assert!(
        grew(
            &before0,
            &after0,
            &format!("overlay_peer_sent_packets_total{to1}")
        ) > 0.0
    );
    let received = grew(
        &before1,
        &after1,
        &format!("overlay_peer_received_bytes_total{from0}"),
    );
    assert!(
        received >= 4.0 * MIB,
        "node1 received {received} bytes from node0"
    );
    assert!(
        grew(
            &before1,
            &after1,
            &format!("overlay_peer_received_packets_total{from0}")
        ) > 0.0
    );
    // The acknowledgements came back.
    assert!(
        grew(
            &before1,
            &after1,
            &format!("overlay_peer_sent_packets_total{from0}")
        ) > 0.0
    );
    assert!(
        grew(
            &before0,
            &after0,
            &format!("overlay_peer_received_packets_total{to1}")
        ) > 0.0
    );
    assert!(grew(&before0, &after0, "overlay_datapath_sent_bytes_total") >= 4.0 * MIB);
    assert!(grew(&before1, &after1, "overlay_datapath_received_bytes_total") >= 4.0 * MIB);

    // Drops: datagrams from an address that is no peer (node0's address, another port), and
    // truncated overlay headers from node0's agent address.
    let target = SocketAddrV4::new(Underlay::node_addr(1), 6783);
    let not_peer = r#"overlay_datapath_drops_total{reason="not_peer"}"#;
    let malformed = r#"overlay_datapath_drops_total{reason="malformed"}"#;
    let base = scrape(&c, 1);
    c.node(0)
        .run(move || {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            for _ in 0..5 {
                s.send_to(b"not from a peer", target).expect("send");
            }
        })
        .expect("namespace thread");
    let (n0, n1) = (
        PeerName::new("node0").expect("name"),
        PeerName::new("node1").expect("name"),
    );
    let mut header = [0u8; HEADER_LEN];
    Header::ip(n0.id(), n1.id())
        .emit(&mut header)
        .expect("room");
    header[0] = VERSION;
    let truncated: Vec<Vec<u8>> = (1..HEADER_LEN).map(|n| header[..n].to_vec()).collect();
    let sent_truncated = truncated.len() as f64;
    traffic::udp_forged(
        c.node(0),
        SocketAddrV4::new(Underlay::node_addr(0), 6783),
        target,
        truncated,
    )
    .expect("forged datagrams");
    wait::until(
        "node1's not_peer and malformed drop counters to grow",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let now = scrape(&c, 1);
            let (a, b) = (grew(&base, &now, not_peer), grew(&base, &now, malformed));
            if a >= 5.0 && b >= sent_truncated {
                Ok(Some(()))
            } else {
                Err(format!("not_peer +{a}, malformed +{b}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
    // The agent says so in its log, once per 10 s window rather than once per packet.
    wait::until(
        "node1 to warn about the drops in its log",
        Duration::from_secs(25),
        Duration::from_millis(250),
        || {
            let log = c.log(1);
            let warnings: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("the data path dropped"))
                .collect();
            // The two kinds may straddle a window boundary: both named, in one line or two.
            let named = |reason: &str| warnings.iter().any(|w| w.contains(reason));
            if named("not_peer=") && named("malformed=") {
                Ok(Some(()))
            } else {
                Err(format!("drop warnings so far: {warnings:?}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));

    // A lost connection is counted when the peer goes away.
    c.stop_agent(1, libc::SIGTERM, Duration::from_secs(10))
        .expect("node1 stops");
    wait::until(
        "node0 to count the terminated connection",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let now = scrape(&c, 0);
            let ended = get(&now, "overlay_connection_terminations_total");
            let up = get(&now, r#"overlay_connections{state="established"}"#);
            Ok((ended >= 1.0 && up == 0.0).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
}
