//! End to end, as root: three nodes (network namespaces on an underlay bridge), a real agent in
//! each, pods attached with the real CNI plugin, real traffic.

mod common;

use common::{converge, counter, started_cluster, transfer};
use overlay_testbed::wait;
use std::time::Duration;

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn three_nodes_converge_and_pods_on_every_node_move_64_mib_intact() {
    let mut c = started_cluster("cl", 3);
    let took = converge(&c, Duration::from_secs(15));
    eprintln!(
        "3 agents with chained seeds converged in {:.2} s",
        took.as_secs_f64()
    );

    // Every node has its own block, and its node address is the first host of it.
    let mut subnets = Vec::new();
    for i in 0..3 {
        let s = c.status(i).expect("status");
        let subnet = s["subnet"].as_str().expect("subnet").to_owned();
        let first_host = subnet.trim_end_matches("0/24").to_owned() + "1";
        assert_eq!(s["address"].as_str(), Some(first_host.as_str()), "{s}");
        subnets.push(subnet);
    }
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 3, "unique blocks");

    for node in 0..3 {
        c.add_pod(node).expect("pod attached");
    }
    // The CNI result follows the contract: the pod interface, its address and gateway.
    let r = &c.pods[0].result;
    assert_eq!(r["cniVersion"], "1.0.0");
    let pod_if = r["ips"][0]["interface"].as_u64().expect("ips[0].interface") as usize;
    assert_eq!(r["interfaces"][pod_if]["name"], "eth0");
    assert_eq!(
        r["interfaces"][pod_if]["sandbox"].as_str(),
        Some(c.pods[0].netns.path().to_str().expect("utf-8"))
    );
    let gw = r["ips"][0]["gateway"].as_str().expect("gateway");
    assert_eq!(Some(gw), c.status(0).expect("status")["address"].as_str());

    // A ring of 64 MiB transfers, all at once: every node sends and receives.
    std::thread::scope(|scope| {
        let ring: Vec<_> = [(0usize, 1usize), (1, 2), (2, 0)]
            .into_iter()
            .map(|(from, to)| {
                let c = &c;
                (from, to, scope.spawn(move || transfer(c, from, to, 64)))
            })
            .collect();
        for (from, to, h) in ring {
            let t = h.join().expect("transfer thread");
            eprintln!(
                "pod{from} -> pod{to}: 64 MiB at {:.0} Mbit/s",
                t.mbit_per_s()
            );
        }
    });
    // Nothing was dropped for being malformed or spoofed along the way.
    for i in 0..3 {
        for reason in ["malformed", "spoofed", "not_peer", "hop_limit"] {
            assert_eq!(counter(&c, i, &["drops", reason]), 0, "node{i} {reason}");
        }
        assert!(counter(&c, i, &["rx_packets"]) > 1000, "node{i} received");
    }
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn a_blackholed_direct_path_is_relayed_through_the_third_node() {
    let mut c = started_cluster("rl", 3);
    converge(&c, Duration::from_secs(15));
    for node in 0..3 {
        c.add_pod(node).expect("pod attached");
    }
    transfer(&c, 0, 2, 1);
    c.underlay.blackhole(0, 2).expect("blackhole");
    // The control connection 0-2 dies (heartbeats), routes move to node1.
    let blackholed = std::time::Instant::now();
    wait::until(
        "node0 to route to node2 through node1",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let p = c.peer_status(0, 2).map_err(|e| e.to_string())?;
            Ok(
                (p["next_hop"] == "node1" && p["hops"] == 2 && p["reachable"] == true)
                    .then_some(()),
            )
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
    eprintln!(
        "re-routed through node1 {:.1} s after the blackhole",
        blackholed.elapsed().as_secs_f64()
    );
    let back = c.peer_status(2, 0).expect("status");
    assert_eq!(back["next_hop"], "node1", "and back: {back}");
    let relayed_before = counter(&c, 1, &["relayed_packets"]);
    transfer(&c, 0, 2, 16);
    transfer(&c, 2, 0, 4);
    let relayed = counter(&c, 1, &["relayed_packets"]) - relayed_before;
    // Every data segment of both transfers (20 MiB in segments below 1500 bytes) went via node1.
    assert!(
        relayed > (20 << 20) / 1500,
        "node1 relayed {relayed} datagrams"
    );

    // Healing brings the direct path back.
    c.underlay.heal(0, 2).expect("heal");
    wait::until(
        "node0 to route to node2 directly again",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let p = c.peer_status(0, 2).map_err(|e| e.to_string())?;
            Ok((p["next_hop"] == "node2" && p["hops"] == 1).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
    transfer(&c, 0, 2, 1);
}
