//! End to end, as root: a cluster larger than the agents' active view. Real agents in
//! namespaces keep only a few control connections each, yet every agent reaches every other,
//! and pods on two agents that are not neighbours exchange traffic relayed along the control
//! graph, intact.

mod common;

use common::{converge, counter, transfer};
use overlay_testbed::{wait, Binaries, Cluster};
use serde_json::Value;
use std::time::Duration;

/// Agents in the cluster.
const NODES: usize = 8;
/// Each agent prefers two peers and holds at most five connections.
const VIEW: [&str; 4] = ["--active-view", "2", "--max-connections", "5"];
const MAX_CONNECTIONS: usize = 5;

/// (node, peer) pairs where `peer` is reached through another agent, from every status.
fn relayed_pairs(statuses: &[Value]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for (i, s) in statuses.iter().enumerate() {
        for p in s["peers"].as_array().into_iter().flatten() {
            let hops = p["hops"].as_u64().unwrap_or(0);
            let name = p["name"].as_str().unwrap_or("");
            let j = name.trim_start_matches("node").parse::<usize>().ok();
            if let (true, Some(j)) = (hops >= 2, j) {
                pairs.push((i, j));
            }
        }
    }
    pairs
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn agents_keep_a_bounded_view_and_pods_of_non_neighbours_talk_through_relays() {
    overlay_testbed::require_root();
    let bins = Binaries::next_to(env!("CARGO_BIN_EXE_overlay-agent")).expect("binaries built");
    let mut c = Cluster::new(&overlay_testbed::unique_prefix("av"), NODES, bins).expect("cluster");
    c.agent_args = VIEW.iter().map(|s| (*s).to_owned()).collect();
    c.start_all().expect("agents start");
    let took = converge(&c, Duration::from_secs(60));
    eprintln!(
        "{NODES} agents with a view of 2 converged in {:.1} s",
        took.as_secs_f64()
    );

    // Once the connections made only to join are released (5 s grace), every agent holds at
    // most MAX_CONNECTIONS, and some pairs are not neighbours.
    let statuses = wait::until(
        "every agent within its room and some pairs relayed",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let statuses: Vec<Value> = (0..NODES)
                .map(|i| c.status(i).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?;
            let most = statuses
                .iter()
                .map(|s| s["connections"].as_array().map_or(0, Vec::len))
                .max()
                .unwrap_or(0);
            if most > MAX_CONNECTIONS {
                return Err(format!("an agent holds {most} connections"));
            }
            if relayed_pairs(&statuses).is_empty() {
                return Err("every pair is connected directly".into());
            }
            Ok(Some(statuses))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
    converge(&c, Duration::from_secs(30));

    let (a, b) = relayed_pairs(&statuses)[0];
    eprintln!("node{a} reaches node{b} through another agent");
    c.add_pod(a).expect("pod on a");
    c.add_pod(b).expect("pod on b");
    let relayed_before: u64 = (0..NODES)
        .map(|i| counter(&c, i, &["relayed_packets"]))
        .sum();
    transfer(&c, 0, 1, 16);
    transfer(&c, 1, 0, 16);
    let relayed: u64 = (0..NODES)
        .map(|i| counter(&c, i, &["relayed_packets"]))
        .sum::<u64>()
        - relayed_before;
    assert!(
        relayed > 1000,
        "16 MiB each way between non-neighbours, yet only {relayed} packets relayed"
    );
    for i in 0..NODES {
        for reason in ["malformed", "spoofed", "not_peer", "hop_limit"] {
            assert_eq!(counter(&c, i, &["drops", reason]), 0, "node{i} {reason}");
        }
    }
}
