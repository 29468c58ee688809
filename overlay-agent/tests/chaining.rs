//! End to end, as root: overlay-cni in conflists with the real reference plugins (Debian's
//! containernetworking-plugins), executed the way a runtime executes a list, against a real
//! agent: `portmap` after us forwards a host port to the pod; a plugin before us hands us a
//! `prevResult` we extend.

mod common;

use common::{converge, started_cluster};
use overlay_testbed::conflist::{self, Attachment, Conflist, PluginFailure, Runtime};
use overlay_testbed::traffic::{tcp_hello, tcp_serve_once};
use overlay_testbed::{Cluster, Netns};
use serde_json::{json, Map, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// Where the reference plugins are (scripts/test.sh installs them).
fn plugin_dirs() -> Vec<PathBuf> {
    let ours = conflist::dir_of(Path::new(env!("CARGO_BIN_EXE_overlay-agent")));
    let system = PathBuf::from(conflist::SYSTEM_PLUGIN_DIR);
    assert!(
        system.join("portmap").is_file(),
        "{}/portmap is missing: install the containernetworking-plugins package (scripts/test.sh does)",
        system.display()
    );
    vec![ours, system]
}

fn attachment(c: &Cluster, pod: &Netns, mappings: Value) -> Attachment {
    let mut capability_args = Map::new();
    capability_args.insert("portMappings".into(), mappings);
    Attachment {
        container_id: format!("{}-ctr", c.underlay.prefix()),
        netns: pod.path(),
        ifname: "eth0".into(),
        capability_args,
    }
}

fn nat_rules(node: &Netns) -> String {
    let out = node
        .exec("iptables", &["-t", "nat", "-S"])
        .expect("iptables runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// CHECK of the whole list passes as far as the installed reference plugins allow: the
/// portmap 1.1.1 of Debian 12 fails CHECK of every IPv4-only attachment looking for an IPv6
/// chain it never made (containernetworking/plugins#819, fixed in 1.2.0). A runtime stops at
/// the first failing plugin, and ours comes first: that failure means ours passed.
fn check_passes(rt: &Runtime<'_>, list: &Conflist, att: &Attachment, result: &Value) {
    if let Err(e) = rt.check(list, att, result) {
        let f = failure(&e);
        assert!(
            f.plugin == "portmap" && f.msg().contains("could not check ipv6 dnat"),
            "CHECK: {f}"
        );
    }
}

fn failure(e: &anyhow::Error) -> &PluginFailure {
    e.downcast_ref::<PluginFailure>()
        .unwrap_or_else(|| panic!("not a plugin failure: {e:#}"))
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn portmap_after_overlay_forwards_a_host_port_to_the_pod_and_del_in_reverse_cleans_up() {
    let c = started_cluster("pm", 1);
    let rt = Runtime::new(c.node(0), plugin_dirs());
    converge(&c, Duration::from_secs(15));
    let node_ip = overlay_testbed::Underlay::node_addr(0);
    let outside_ip = Ipv4Addr::new(10, 99, 0, 200);
    let outside = c
        .underlay
        .add_outside_host(outside_ip)
        .expect("outside host");
    let pod = Netns::create(&format!("{}pod", c.underlay.prefix())).expect("pod");
    // portmap (1.1.1 in Debian 12) speaks CNI up to 1.0.0, so the list does too.
    let list = Conflist::new(
        "1.0.0",
        "overlay",
        vec![
            json!({"type": "overlay-cni"}),
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
        ],
    );
    let att = attachment(
        &c,
        &pod,
        json!([{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}]),
    );

    let result = rt
        .add(&list, &att)
        .unwrap_or_else(|e| panic!("ADD: {e:#}\n{}", c.all_logs()));
    // portmap handed our result through: the runtime keeps what we answered.
    let status = c.status(0).expect("status");
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(
        result["interfaces"][1]["sandbox"],
        pod.path().display().to_string()
    );
    assert_eq!(result["ips"][0]["interface"], 1);
    assert_eq!(result["ips"][0]["gateway"], status["address"]);
    let pod_ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .expect("pod address")
        .to_owned();
    let rules = nat_rules(c.node(0));
    assert!(
        rules.contains("--dport 18080") && rules.contains(&format!("{pod_ip}:8080")),
        "portmap's DNAT for the pod address from our result:\n{rules}"
    );

    // A host beyond the node reaches the pod's port at the node's address and host port,
    // and the pod sees the host's own address (DNAT, no SNAT).
    let server = tcp_serve_once(&pod, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080)), WAIT)
        .expect("server in the pod");
    let answer = tcp_hello(&outside, SocketAddr::from((node_ip, 18080)), WAIT)
        .unwrap_or_else(|e| panic!("outside -> {node_ip}:18080: {e:#}\n{rules}"));
    let peer = server.join().expect("server").expect("a connection");
    assert_eq!(peer.ip(), std::net::IpAddr::V4(outside_ip));
    assert_eq!(answer, format!("hello from {peer}"));

    // CHECK runs every plugin with the attachment's result; ours compares the pod with it.
    check_passes(&rt, &list, &att, &result);
    let mut stale = result.clone();
    stale["ips"][0]["address"] = "10.32.255.254/24".into();
    let e = rt
        .check(&list, &att, &stale)
        .expect_err("a result that is not the pod's");
    let f = failure(&e);
    assert_eq!(f.plugin, "overlay-cni");
    assert!(
        f.msg().contains("10.32.255.254/24") && f.msg().contains("holds"),
        "{f}"
    );
    pod.ip(&["route", "del", "default"]).expect("break the pod");
    let e = rt.check(&list, &att, &result).expect_err("route gone");
    assert!(failure(&e).msg().contains("default route"), "{e:#}");
    pod.ip(&[
        "route",
        "add",
        "default",
        "via",
        status["address"].as_str().expect("gw"),
    ])
    .expect("repair the pod");
    check_passes(&rt, &list, &att, &result);

    // DEL in reverse order: portmap's rules, then our interfaces and address.
    let host_veth = result["interfaces"][0]["name"]
        .as_str()
        .expect("host veth")
        .to_owned();
    for round in 0..2 {
        rt.del(&list, &att, Some(&result))
            .unwrap_or_else(|e| panic!("DEL round {round}: {e:#}"));
    }
    let rules = nat_rules(c.node(0));
    assert!(
        !rules.contains("--dport 18080") && !rules.contains(&pod_ip),
        "portmap's rules are gone:\n{rules}"
    );
    assert!(
        c.node(0).ip(&["link", "show", "dev", &host_veth]).is_err(),
        "host veth gone"
    );
    assert!(
        pod.ip(&["link", "show", "dev", "eth0"]).is_err(),
        "pod interface gone"
    );
    let held = c
        .api(
            0,
            "GET",
            &format!("/ipam/allocations/{}/eth0", att.container_id),
            None,
        )
        .expect("api");
    assert_eq!(held.status, 404, "address released");
    let refused = tcp_hello(&outside, SocketAddr::from((node_ip, 18080)), WAIT);
    assert!(refused.is_err(), "the host port forwards nothing any more");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn a_plugin_before_us_hands_us_a_prev_result_that_we_extend() {
    let c = started_cluster("pb", 1);
    let rt = Runtime::new(c.node(0), plugin_dirs());
    converge(&c, Duration::from_secs(15));
    let pod = Netns::create(&format!("{}pod", c.underlay.prefix())).expect("pod");
    // The reference `loopback` plugin first (its result lists `lo` and its addresses),
    // then us, then portmap with no mappings (a pass-through).
    let list = Conflist::new(
        "1.0.0",
        "overlay",
        vec![
            json!({"type": "loopback"}),
            json!({"type": "overlay-cni"}),
            json!({"type": "portmap", "capabilities": {"portMappings": true}}),
        ],
    );
    let att = attachment(&c, &pod, json!([]));
    let result = rt
        .add(&list, &att)
        .unwrap_or_else(|e| panic!("ADD: {e:#}\n{}", c.all_logs()));
    let names: Vec<&str> = result["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(
        names[0], "lo",
        "the earlier plugin's interface is kept: {result}"
    );
    assert_eq!(names.len(), 3, "{result}");
    assert_eq!(names[2], "eth0");
    let ours = result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .find(|ip| ip["address"].as_str().is_some_and(|a| a.starts_with("10.")))
        .unwrap_or_else(|| panic!("our address in {result}"));
    assert_eq!(
        ours["interface"], 2,
        "our address points at eth0 past lo: {result}"
    );
    assert!(
        result["ips"]
            .as_array()
            .expect("ips")
            .iter()
            .any(|ip| ip["address"] == "127.0.0.1/8" && ip["interface"] == 0),
        "loopback's address is kept: {result}"
    );
    check_passes(&rt, &list, &att, &result);
    rt.del(&list, &att, Some(&result))
        .unwrap_or_else(|e| panic!("DEL: {e:#}"));
    let held = c
        .api(
            0,
            "GET",
            &format!("/ipam/allocations/{}/eth0", att.container_id),
            None,
        )
        .expect("api");
    assert_eq!(held.status, 404);
}
