//! End to end, as root: `overlay-agent trace` in a three-node cluster — a direct path, a
//! path relayed through the third node after the direct one is blackholed, and an address
//! nobody owns.

mod common;

use common::{converge, started_cluster, transfer};
use overlay_testbed::{wait, Cluster};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::process::Output;
use std::time::Duration;

/// How long a trace waits for reports: generous for a busy machine (a complete trace returns
/// as soon as every hop answered).
const TIMEOUT_MS: &str = "8000";

/// Runs `overlay-agent trace <dst> [args]` inside node `node` (against its local agent).
fn trace_cli(c: &Cluster, node: usize, dst: Ipv4Addr, args: &[&str]) -> Output {
    c.node(node)
        .command(env!("CARGO_BIN_EXE_overlay-agent"))
        .arg("trace")
        .arg(dst.to_string())
        .args(args)
        .output()
        .expect("run overlay-agent trace")
}

/// The JSON trace from node `node` to `dst`, with the exit code.
fn trace_json(c: &Cluster, node: usize, dst: Ipv4Addr) -> (Value, Option<i32>) {
    let out = trace_cli(c, node, dst, &["--json", "--timeout-ms", TIMEOUT_MS]);
    let text = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "trace {dst} from node{node}: {e}: stdout {text:?}, stderr {:?}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.all_logs()
        )
    });
    (json, out.status.code())
}

/// The text trace, printed for the test log (and docs/operations.md, "Tracing a packet").
fn show_trace(c: &Cluster, node: usize, dst: Ipv4Addr) -> String {
    let out = trace_cli(c, node, dst, &["--timeout-ms", TIMEOUT_MS]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("$ overlay-agent trace {dst}   # on node{node}\n{text}");
    text
}

/// The pod's host-side veth (on the node bridge) from its CNI result.
fn host_veth(c: &Cluster, pod: usize) -> String {
    c.pods[pod].result["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter(|i| i.get("sandbox").is_none())
        .filter_map(|i| i["name"].as_str())
        .find(|n| n.len() == 15 && n.starts_with("ovl"))
        .unwrap_or_else(|| panic!("no host veth in {}", c.pods[pod].result))
        .to_owned()
}

/// A node's underlay address with the data port, as its peers' status shows it.
fn underlay(c: &Cluster, from: usize, node: usize) -> String {
    c.peer_status(from, node).expect("status")["address"]
        .as_str()
        .expect("address")
        .to_owned()
}

fn hop(t: &Value, i: usize) -> &Value {
    &t["hops"][i]
}

/// Waits until node `a` routes to node `b` through `via`.
fn wait_route(c: &Cluster, a: usize, b: usize, via: &str) {
    wait::until(
        &format!("node{a} to route to node{b} through {via}"),
        Duration::from_secs(45),
        Duration::from_millis(200),
        || {
            let p = c.peer_status(a, b).map_err(|e| e.to_string())?;
            Ok((p["next_hop"] == via && p["reachable"] == true).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn trace_shows_direct_relayed_and_dropped_paths() {
    let mut c = started_cluster("tr", 3);
    converge(&c, Duration::from_secs(30));
    c.add_pod(0).expect("pod on node0");
    let pod = c.add_pod(2).expect("pod on node2");
    let pod_ip = c.pods[pod].ip;
    let veth = host_veth(&c, pod);
    // Traffic between the pods: node2's neighbour table then knows the pod's MAC address,
    // so its bridge port (the veth) can be named.
    transfer(&c, 0, pod, 1);

    // Seeds are chained (node0 - node1 - node2): wait for the direct connection.
    wait_route(&c, 0, 2, "node2");
    wait_route(&c, 2, 0, "node0");

    // (a) Direct: node0 encapsulates to node2, which delivers to the pod's veth.
    let (t, code) = trace_json(&c, 0, pod_ip);
    assert_eq!(code, Some(0), "{t:#}");
    assert_eq!(t["outcome"], "delivered", "{t:#}");
    assert_eq!(t["owner"], "node2");
    assert_eq!(t["hops"].as_array().map(Vec::len), Some(2), "{t:#}");
    let h0 = hop(&t, 0);
    assert_eq!(h0["node"], "node0");
    assert_eq!(h0["action"], "encapsulate");
    assert_eq!(
        h0["device"], "ovl0",
        "the kernel routes pod addresses into the TUN"
    );
    assert_eq!(h0["to"], "node2");
    assert_eq!(h0["via"], "node2");
    assert_eq!(h0["underlay"].as_str(), Some(underlay(&c, 0, 2).as_str()));
    let h1 = hop(&t, 1);
    assert_eq!(h1["node"], "node2");
    assert_eq!(h1["action"], "deliver");
    assert_eq!(h1["device"].as_str(), Some(veth.as_str()), "{t:#}");
    assert_eq!(h1["device_up"], true);
    assert!(h1["bridge"].is_string(), "{t:#}");
    assert!(h1["rtt_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{t:#}");
    let text = show_trace(&c, 0, pod_ip);
    assert!(text.contains(&format!("deliver to {veth} (up)")), "{text}");

    // The node address of node2 is delivered to its own device, not a pod's.
    let node2_addr: Ipv4Addr = c.status(2).expect("status")["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("node2 address");
    let (t, code) = trace_json(&c, 0, node2_addr);
    assert_eq!(code, Some(0), "{t:#}");
    assert_eq!(t["node_address"], true);
    assert_eq!(hop(&t, 1)["action"], "deliver", "{t:#}");
    assert_ne!(hop(&t, 1)["device"].as_str(), Some(veth.as_str()), "{t:#}");
    show_trace(&c, 0, node2_addr);

    // (c) An address in the cluster range in a block nobody owns: dropped at hop 0.
    let owned: Vec<String> = (0..3)
        .map(|i| {
            c.status(i).expect("status")["subnet"]
                .as_str()
                .expect("subnet")
                .to_owned()
        })
        .collect();
    let unowned = (0..=255u8)
        .map(|x| Ipv4Addr::new(10, 40, x, 9))
        .find(|a| {
            !owned.iter().any(|s| {
                s.starts_with(&format!(
                    "{}.{}.{}.",
                    a.octets()[0],
                    a.octets()[1],
                    a.octets()[2]
                ))
            })
        })
        .expect("a free block");
    let (t, code) = trace_json(&c, 0, unowned);
    assert_eq!(code, Some(3), "dropped: {t:#}");
    assert_eq!(t["outcome"], "dropped");
    assert_eq!(t["hops"].as_array().map(Vec::len), Some(1), "{t:#}");
    assert_eq!(hop(&t, 0)["action"], "drop");
    assert_eq!(
        hop(&t, 0)["reason"],
        "no node owns the block of this address",
        "{t:#}"
    );
    show_trace(&c, 0, unowned);

    // (b) Blackhole the direct path: after re-routing, the probe goes through node1, and
    // node2's report comes back through node1 too.
    c.underlay.blackhole(0, 2).expect("blackhole");
    wait_route(&c, 0, 2, "node1");
    wait_route(&c, 2, 0, "node1");
    // Routes may still settle for a moment: retry (bounded) until the trace is complete.
    let t = wait::until(
        "a complete relayed trace from node0 to the pod on node2",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let (t, code) = trace_json(&c, 0, pod_ip);
            let complete = code == Some(0)
                && t["hops"].as_array().map(Vec::len) == Some(3)
                && hop(&t, 1)["action"] == "relay";
            Ok(complete.then_some(t))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
    let h0 = hop(&t, 0);
    assert_eq!(h0["action"], "encapsulate");
    assert_eq!(h0["to"], "node2");
    assert_eq!(h0["via"], "node1");
    assert_eq!(h0["underlay"].as_str(), Some(underlay(&c, 0, 1).as_str()));
    let h1 = hop(&t, 1);
    assert_eq!(h1["node"], "node1");
    assert_eq!(h1["via"], "node2");
    assert_eq!(h1["underlay"].as_str(), Some(underlay(&c, 1, 2).as_str()));
    let h2 = hop(&t, 2);
    assert_eq!(h2["node"], "node2");
    assert_eq!(h2["action"], "deliver");
    assert_eq!(h2["device"].as_str(), Some(veth.as_str()), "{t:#}");
    assert_eq!(h2["device_up"], true);
    let (r1, r2) = (
        h1["rtt_ms"].as_f64().expect("timed"),
        h2["rtt_ms"].as_f64().expect("timed"),
    );
    assert!(r1 > 0.0 && r2 > 0.0, "{t:#}");
    let text = show_trace(&c, 0, pod_ip);
    assert!(text.contains("relay → node2"), "{text}");

    // Every probe and report crossed node1 as a trace datagram, none was dropped there.
    let s = c.status(1).expect("status");
    assert!(
        s["datapath"]["trace_datagrams"].as_u64() > Some(0),
        "{}",
        s["datapath"]
    );
    assert_eq!(s["datapath"]["trace_dropped"], 0);
}
