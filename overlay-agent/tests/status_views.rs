//! End to end, as root: the status views, `overlay-agent status VIEW`, and connect/forget
//! against live agents in a namespace cluster.

mod common;

use common::{converge, started_cluster};
use overlay_testbed::{wait, Cluster};
use serde_json::{json, Value};
use std::time::Duration;

/// `GET path` on node `i`, as JSON.
fn get(c: &Cluster, i: usize, path: &str) -> Value {
    let r = c.api(i, "GET", path, None).expect("request");
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json().expect("json")
}

/// `overlay-agent <args>` run in node `i`'s namespace; its stdout, which must succeed.
fn cli(c: &Cluster, i: usize, args: &[&str]) -> String {
    let out = c
        .node(i)
        .exec(env!("CARGO_BIN_EXE_overlay-agent"), args)
        .expect("run the CLI");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "overlay-agent {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn every_view_shows_the_live_cluster() {
    let mut c = started_cluster("sv", 3);
    converge(&c, Duration::from_secs(20));
    c.add_pod(0).expect("pod on node0");
    let status = c.status(0).expect("status");
    let subnet = status["subnet"].as_str().expect("subnet").to_owned();

    // peers: the other two, reachable, with a next hop.
    let peers = get(&c, 0, "/status/peers");
    let names: Vec<&str> = peers
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names.len(), 2, "{peers}");
    assert!(peers
        .as_array()
        .expect("array")
        .iter()
        .all(|p| p["reachable"] == true && p["next_hop"].is_string()));

    // connections: node0 dials node1 (its seed); every connection established with an MTU.
    let conns = get(&c, 0, "/status/connections");
    let conns = conns.as_array().expect("array");
    assert!(!conns.is_empty());
    for conn in conns {
        assert_eq!(conn["state"], "established", "{conn}");
        assert_eq!(conn["mtu"], status["mtu"], "{conn}");
        assert_eq!(conn["path"], "udp", "{conn}");
    }
    let node1 = Cluster::node_name(1);
    assert!(conns.iter().any(|c| c["peer"] == node1.as_str()));

    // routes: the cluster route on the TUN, the own block local, the others via a next hop
    // whose underlay address is the one that peer advertises.
    let routes = get(&c, 0, "/status/routes");
    let routes = routes.as_array().expect("array");
    assert_eq!(routes[0]["destination"], status["cluster"]);
    assert_eq!(routes[0]["device"], status["iface"]);
    let own: Vec<&Value> = routes
        .iter()
        .filter(|r| r["destination"] == subnet.as_str())
        .collect();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["local"], true);
    let remote: Vec<&Value> = routes.iter().filter(|r| r["local"] == false).collect();
    assert_eq!(remote.len(), 2, "{routes:?}");
    for r in remote {
        let hop = r["next_hop"].as_str().expect("next hop");
        let hop_address = peers
            .as_array()
            .expect("array")
            .iter()
            .find(|p| p["name"] == hop)
            .map(|p| p["address"].clone())
            .expect("next hop is a peer");
        assert_eq!(r["next_hop_address"], hop_address, "{r}");
    }

    // ipam: three blocks owned, the pod's address allocated here.
    let ipam = get(&c, 0, "/status/ipam");
    assert_eq!(ipam["subnet"], subnet.as_str());
    assert_eq!(ipam["blocks"].as_array().expect("blocks").len(), 3);
    assert_eq!(ipam["allocated"], 1);
    assert_eq!(
        ipam["allocations"][0]["address"],
        json!(c.pods[0].ip.to_string())
    );

    // The CLI prints the same, for a person.
    let text = cli(&c, 0, &["status"]);
    assert!(text.contains("   Connections: "), "{text}");
    assert!(
        text.contains(&format!("        Subnet: {subnet}")),
        "{text}"
    );
    let text = cli(&c, 0, &["status", "connections"]);
    assert!(text.contains(" established "), "{text}");
    let text = cli(&c, 0, &["status", "routes"]);
    assert!(text.starts_with("DESTINATION"), "{text}");
    assert!(text.contains(&subnet), "{text}");
    let text = cli(&c, 0, &["status", "ipam"]);
    assert!(text.contains(" Addresses: 1 of "), "{text}");
    let text = cli(&c, 0, &["status", "peers", "--json"]);
    let parsed: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(parsed.as_array().map(Vec::len), Some(2));
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn connect_and_forget_change_the_targets() {
    let c = started_cluster("cf", 2);
    converge(&c, Duration::from_secs(20));
    // An underlay address where nobody listens: the test's own bridge has no such node.
    let nobody = "10.99.0.250:6783";
    let out = cli(&c, 0, &["connect", nobody]);
    assert_eq!(out, format!("dialing {nobody}\n"));
    let listed = |c: &Cluster| -> Option<Value> {
        get(c, 0, "/status/connections")
            .as_array()
            .expect("array")
            .iter()
            .find(|conn| conn["address"] == nobody)
            .cloned()
    };
    let failed = wait::until(
        "the new target to fail and show its error",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || Ok(listed(&c).filter(|t| t["state"] == "failed" && t["last_error"].is_string())),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
    assert!(failed["retry_in_secs"].is_u64(), "{failed}");
    let text = cli(&c, 0, &["status", "connections"]);
    assert!(text.contains(&format!("-> {nobody}")), "{text}");

    let out = cli(&c, 0, &["forget", nobody]);
    assert_eq!(out, format!("no longer dialing {nobody}\n"));
    assert_eq!(listed(&c), None, "forgotten target still listed");

    // A malformed address is refused with one line and a non-zero exit.
    let out = c
        .node(0)
        .exec(
            env!("CARGO_BIN_EXE_overlay-agent"),
            &["connect", "bad host!"],
        )
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("400"));
}
