//! The TUN→TUN forwarder bed carries pings and TCP between its pods, through the forwarder
//! (the only path between the nodes), and leaves nothing behind. Needs root.

use overlay_testbed::tunpipe::{TunPipeNet, DEVICE};
use overlay_testbed::{iperf, netns, require_root, traffic, unique_prefix, vxlan};
use std::time::Duration;

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn pods_reach_each_other_through_the_forwarder() {
    require_root();
    let net = TunPipeNet::new(&unique_prefix("tpt"), 1450).expect("bed");
    assert_eq!(net.mtu(), 1450);
    for (i, pod) in net.pods.iter().enumerate() {
        assert_eq!(vxlan::link_mtu(&pod.netns, "eth0").expect("pod mtu"), 1450);
        assert_eq!(
            vxlan::link_mtu(&net.nodes[i], DEVICE).expect("tun mtu"),
            1450
        );
    }

    let rtt = iperf::rtt(&net.pods[0].netns, net.pods[1].ip, 5, 0.05).expect("ping");
    assert_eq!(rtt.received, rtt.sent, "{rtt:?}");
    let after_ping = net.stats();
    assert!(
        after_ping[0].packets >= 5 && after_ping[1].packets >= 5,
        "echo requests and replies went through the forwarder: {after_ping:?}"
    );

    let bytes = 16u64 << 20;
    let t = traffic::tcp_transfer(
        &net.pods[1].netns,
        net.pods[1].ip,
        &net.pods[0].netns,
        bytes,
        Duration::from_secs(30),
    )
    .expect("transfer");
    assert_eq!(t.received, bytes);
    assert_eq!(t.sent_sha256, t.received_sha256);
    let s = net.stats();
    let forwarded = s[0].bytes - after_ping[0].bytes;
    assert!(
        forwarded > bytes,
        "the data crossed the forwarder node 0 → node 1: {forwarded} bytes, {s:?}"
    );
    assert!(
        s[1].packets > after_ping[1].packets,
        "ACKs came back: {s:?}"
    );
    assert_eq!((s[0].errors, s[1].errors), (0, 0), "{s:?}");
    eprintln!(
        "16 MiB in {:?} ({:.0} Mbit/s), {} reads forwarded 0→1 ({:.0} bytes each on average)",
        t.elapsed,
        t.mbit_per_s(),
        s[0].packets - after_ping[0].packets,
        forwarded as f64 / (s[0].packets - after_ping[0].packets) as f64
    );

    let names: Vec<String> = net
        .pods
        .iter()
        .map(|p| p.netns.name().to_owned())
        .chain(net.nodes.iter().map(|n| n.name().to_owned()))
        .collect();
    let started = std::time::Instant::now();
    drop(net);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the forwarder threads stop promptly"
    );
    let list = netns::run("ip", &["netns", "list"]).expect("list");
    for n in names {
        assert!(!list.contains(&n), "{n} removed");
    }
}
