//! End to end, as root: pod egress. A two-node cluster with a pod per node and an "outside"
//! host on the underlay that is not part of the cluster and has no route to the pod range.
//! Node 0 masquerades (the default), node 1 runs with `--masquerade false`. Every nft
//! command runs inside a node's namespace.

mod common;

use common::converge;
use overlay_testbed::traffic::{tcp_hello, tcp_serve_once};
use overlay_testbed::{Binaries, Cluster, Netns, Underlay};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 200);
const WAIT: Duration = Duration::from_secs(5);

fn nft(node: &Netns, args: &[&str]) -> String {
    let out = node.exec("nft", args).expect("nft runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has_table(node: &Netns) -> bool {
    nft(node, &["list", "tables"]).contains("table ip overlay-egress")
}

/// Connects from `client` to `server_ip:port` (served in `server`); returns the source
/// address the server saw, or the client's error.
fn seen_from(
    client: &Netns,
    server: &Netns,
    server_ip: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> anyhow::Result<IpAddr> {
    let to = SocketAddr::from((server_ip, port));
    let served = tcp_serve_once(server, to, timeout)?;
    let answer = tcp_hello(client, to, timeout);
    let peer = served
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))?;
    let answer = answer?;
    let peer = peer?;
    assert_eq!(answer, format!("hello from {peer}"), "the reply came back");
    Ok(peer.ip())
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn pod_egress_is_masqueraded_to_the_node_and_pod_to_pod_never() {
    overlay_testbed::require_root();
    let bins = Binaries::next_to(env!("CARGO_BIN_EXE_overlay-agent")).expect("binaries built");
    let mut c = Cluster::new(&overlay_testbed::unique_prefix("eg"), 2, bins).expect("cluster");
    c.start_agent(0).expect("node0");
    c.agent_args = vec!["--masquerade".into(), "false".into()];
    c.start_agent(1).expect("node1");
    c.agent_args.clear();
    converge(&c, Duration::from_secs(15));
    let a = c.add_pod(0).expect("pod on node0");
    let b = c.add_pod(1).expect("pod on node1");
    let outside = c.underlay.add_outside_host(OUTSIDE).expect("outside host");
    let node0 = Underlay::node_addr(0);

    assert!(has_table(c.node(0)), "node0 masquerades");
    let rules = nft(c.node(0), &["list", "table", "ip", "overlay-egress"]);
    let cluster = c.status(0).expect("status")["cluster"]
        .as_str()
        .expect("cluster")
        .to_owned();
    assert!(
        rules.contains(&format!(
            "ip saddr {cluster} ip daddr != {cluster} masquerade"
        )),
        "{rules}"
    );
    assert!(
        !has_table(c.node(1)),
        "--masquerade false: no table on node1"
    );

    // Pod on node0 -> outside: arrives from node0's underlay address, and the answer
    // comes back (the outside host has no route to the pods).
    let seen = seen_from(&c.pods[a].netns, &outside, OUTSIDE, 7001, WAIT)
        .unwrap_or_else(|e| panic!("pod -> outside: {e:#}\n{}", c.all_logs()));
    assert_eq!(seen, IpAddr::V4(node0), "masqueraded to the node's address");

    // Pod on node0 -> pod on node1 leaves node0 through the masquerading table, and
    // arrives with its own address; the other way too.
    let (ip_a, ip_b) = (c.pods[a].ip, c.pods[b].ip);
    let seen = seen_from(&c.pods[a].netns, &c.pods[b].netns, ip_b, 7002, WAIT)
        .unwrap_or_else(|e| panic!("pod a -> pod b: {e:#}\n{}", c.all_logs()));
    assert_eq!(seen, IpAddr::V4(ip_a), "pod to pod is never masqueraded");
    let seen = seen_from(&c.pods[b].netns, &c.pods[a].netns, ip_a, 7003, WAIT)
        .unwrap_or_else(|e| panic!("pod b -> pod a: {e:#}\n{}", c.all_logs()));
    assert_eq!(seen, IpAddr::V4(ip_b), "pod to pod is never masqueraded");

    // Without masquerading (node1), the outside host cannot answer a pod.
    assert!(
        seen_from(
            &c.pods[b].netns,
            &outside,
            OUTSIDE,
            7004,
            Duration::from_secs(2)
        )
        .is_err(),
        "node1 does not masquerade, and the outside host has no route back"
    );

    // A crash leaves the table; the next start replaces it whole (a rule added to the
    // leftover, standing for an older version's, is gone) and egress keeps working.
    c.stop_agent(0, libc::SIGKILL, WAIT).expect("killed");
    assert!(has_table(c.node(0)), "a crash leaves the table");
    let stale = [
        "add",
        "rule",
        "ip",
        "overlay-egress",
        "postrouting",
        "ip",
        "saddr",
        "192.0.2.0/24",
        "counter",
        "masquerade",
    ];
    c.node(0).exec("nft", &stale).expect("nft runs");
    assert!(nft(c.node(0), &["list", "table", "ip", "overlay-egress"]).contains("192.0.2.0/24"));
    c.start_agent(0).expect("restart");
    converge(&c, Duration::from_secs(30));
    let rules = nft(c.node(0), &["list", "table", "ip", "overlay-egress"]);
    assert_eq!(rules.matches("masquerade").count(), 1, "{rules}");
    assert!(!rules.contains("192.0.2.0/24"), "replaced: {rules}");
    let seen = seen_from(&c.pods[a].netns, &outside, OUTSIDE, 7005, WAIT)
        .unwrap_or_else(|e| panic!("pod -> outside after restart: {e:#}\n{}", c.all_logs()));
    assert_eq!(seen, IpAddr::V4(node0));

    // SIGTERM removes it.
    let status = c.stop_agent(0, libc::SIGTERM, WAIT).expect("stopped");
    assert!(status.success(), "{status:?}\n{}", c.log(0));
    assert!(
        !has_table(c.node(0)),
        "the table is gone after SIGTERM: {}",
        nft(c.node(0), &["list", "tables"])
    );
    assert!(
        c.log(0).contains("pod egress masquerade removed"),
        "{}",
        c.log(0)
    );
}
