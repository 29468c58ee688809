//! The wiring functions, run as root inside a node namespace the test creates, against pod
//! namespaces it creates (no agent: fixed allocations).

mod common;

use common::{allocation, echo_server, talk};
use overlay_cni::chain::Expected;
use overlay_cni::wiring::{self, host_veth_name, Attachment};
use overlay_testbed::{require_root, unique_prefix, Netns};
use std::net::SocketAddr;

struct Bed {
    node: Netns,
    pods: Vec<Netns>,
}

fn bed(tag: &str, pods: usize) -> Bed {
    let p = unique_prefix(tag);
    let node = Netns::create(&format!("{p}n")).expect("node namespace");
    let pods = (0..pods)
        .map(|i| Netns::create(&format!("{p}p{i}")).expect("pod namespace"))
        .collect();
    Bed { node, pods }
}

fn attachment(pod: &Netns, id: &str) -> Attachment {
    Attachment {
        container_id: id.to_owned(),
        ifname: "eth0".to_owned(),
        netns: pod.path(),
        bridge: "ovlbr0".to_owned(),
    }
}

fn wire(node: &Netns, att: &Attachment, host: u8) -> Result<wiring::Wired, overlay_cni::Error> {
    let att = att.clone();
    node.run(move || wiring::wire(&att, &allocation(host), 1400))
        .expect("thread")
}

fn unwire(
    node: &Netns,
    id: &str,
    netns: Option<std::path::PathBuf>,
) -> Result<(), overlay_cni::Error> {
    let id = id.to_owned();
    node.run(move || wiring::unwire(&id, "eth0", netns.as_deref()))
        .expect("thread")
}

fn link_exists(ns: &Netns, name: &str) -> bool {
    ns.ip(&["link", "show", "dev", name]).is_ok()
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn two_pods_on_one_node_reach_each_other_and_the_gateway() {
    require_root();
    let b = bed("cw", 2);
    let a0 = attachment(&b.pods[0], "pod-a");
    let a1 = attachment(&b.pods[1], "pod-b");
    let w0 = wire(&b.node, &a0, 2).expect("wire pod a");
    let w1 = wire(&b.node, &a1, 3).expect("wire pod b");

    // The node side: bridge with the node address and MTU, host veths on it with hairpin.
    let br = b
        .node
        .ip(&["-d", "addr", "show", "dev", "ovlbr0"])
        .expect("bridge");
    assert!(br.contains("inet 10.32.1.1/24"), "{br}");
    assert!(br.contains("mtu 1400"), "{br}");
    assert!(br.contains("link/ether 0a:58:0a:20:01:01"), "{br}");
    for w in [&w0, &w1] {
        let host = b
            .node
            .ip(&["-d", "link", "show", "dev", &w.host_name])
            .expect("host veth");
        assert!(host.contains("master ovlbr0"), "{host}");
        assert!(host.contains("hairpin on"), "{host}");
        assert!(host.contains("mtu 1400"), "{host}");
        assert!(host.contains(&w.host_mac), "{host}");
        assert!(host.contains(",UP"), "{host}");
    }
    assert_eq!(w0.host_name, host_veth_name("pod-a", "eth0"));

    // The pod side: interface, address, MTU, default route; loopback up.
    for (pod, w, addr) in [
        (&b.pods[0], &w0, "10.32.1.2/24"),
        (&b.pods[1], &w1, "10.32.1.3/24"),
    ] {
        let eth = pod.ip(&["addr", "show", "dev", "eth0"]).expect("pod eth0");
        assert!(eth.contains(&format!("inet {addr}")), "{eth}");
        assert!(eth.contains("mtu 1400"), "{eth}");
        assert!(eth.contains(&w.pod_mac), "{eth}");
        assert_eq!(w.pod_name, "eth0");
        let routes = pod.ip(&["route", "show", "default"]).expect("routes");
        assert!(
            routes.contains("default via 10.32.1.1 dev eth0"),
            "{routes}"
        );
        let lo = pod.ip(&["link", "show", "dev", "lo"]).expect("lo");
        assert!(lo.contains("UP"), "{lo}");
    }

    // Traffic: pod to pod both ways, and each pod to the node's bridge address.
    let p1: SocketAddr = "10.32.1.3:7101".parse().expect("addr");
    let server = echo_server(&b.pods[1], p1);
    assert_eq!(
        talk(&b.pods[0], p1, "a to b").expect("pod a reaches pod b"),
        "a to b"
    );
    server.join().expect("server");
    let p0: SocketAddr = "10.32.1.2:7102".parse().expect("addr");
    let server = echo_server(&b.pods[0], p0);
    assert_eq!(
        talk(&b.pods[1], p0, "b to a").expect("pod b reaches pod a"),
        "b to a"
    );
    server.join().expect("server");
    for (i, pod) in b.pods.iter().enumerate() {
        let gw: SocketAddr = format!("10.32.1.1:{}", 7200 + i).parse().expect("addr");
        let server = echo_server(&b.node, gw);
        assert_eq!(
            talk(pod, gw, "to gw").expect("pod reaches the gateway"),
            "to gw"
        );
        server.join().expect("server");
    }

    // CHECK agrees with what ADD reported; a different MAC or MTU in the result, or a
    // missing route the result still lists, is named; after unwiring, what is missing.
    let expected = Expected {
        pod_mac: Some(w0.pod_mac.clone()),
        host_mac: Some(w0.host_mac.clone()),
        mtu: Some(1400),
        default_route: true,
    };
    let check = |expect: Expected| {
        let (c0, alloc0) = (a0.clone(), allocation(2));
        b.node
            .run(move || wiring::check(&c0, &alloc0, &expect))
            .expect("thread")
    };
    check(expected.clone()).expect("check passes on a wired pod");
    let e = check(Expected {
        mtu: Some(1500),
        ..expected.clone()
    })
    .expect_err("MTU differs");
    assert!(e.to_string().contains("MTU 1400"), "{e}");
    let e = check(Expected {
        pod_mac: Some("0a:00:00:00:00:99".into()),
        ..expected.clone()
    })
    .expect_err("MAC differs");
    assert!(e.to_string().contains("0a:00:00:00:00:99"), "{e}");
    b.pods[0]
        .ip(&["route", "del", "default"])
        .expect("remove the route");
    let e = check(expected.clone()).expect_err("route listed but gone");
    assert!(e.to_string().contains("default route"), "{e}");
    check(Expected {
        default_route: false,
        ..expected.clone()
    })
    .expect("a route the result no longer lists is not checked");
    unwire(&b.node, "pod-a", Some(b.pods[0].path())).expect("unwire");
    let e = check(expected).expect_err("check fails after unwire");
    assert!(e.to_string().contains(&w0.host_name), "{e}");
    assert!(!link_exists(&b.pods[0], "eth0"), "pod a is detached");
    // The other pod still reaches the gateway at once: the bridge kept its MAC.
    let server = echo_server(&b.node, "10.32.1.1:7300".parse().expect("addr"));
    assert_eq!(
        talk(&b.pods[1], "10.32.1.1:7300".parse().expect("addr"), "still").expect("pod b"),
        "still"
    );
    server.join().expect("server");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn unwire_is_idempotent_and_removes_the_host_veth() {
    require_root();
    let mut b = bed("cu", 1);
    let att = attachment(&b.pods[0], "pod-u");
    let w = wire(&b.node, &att, 2).expect("wire");
    assert!(link_exists(&b.node, &w.host_name));
    assert!(link_exists(&b.pods[0], "eth0"));

    unwire(&b.node, "pod-u", Some(b.pods[0].path())).expect("first unwire");
    assert!(!link_exists(&b.node, &w.host_name), "host veth removed");
    assert!(!link_exists(&b.pods[0], "eth0"), "pod end removed with it");
    unwire(&b.node, "pod-u", Some(b.pods[0].path())).expect("second unwire");
    unwire(&b.node, "pod-u", None).expect("unwire without a netns");

    // Wire again, then the pod namespace disappears before DEL: still fine, veth gone.
    let w = wire(&b.node, &att, 2).expect("wire again");
    let path = b.pods[0].path();
    b.pods.clear();
    unwire(&b.node, "pod-u", Some(path.clone())).expect("unwire with the namespace gone");
    assert!(!link_exists(&b.node, &w.host_name));
    unwire(&b.node, "pod-u", Some(path)).expect("and again");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn unwire_removes_the_pod_end_when_the_host_end_is_gone() {
    require_root();
    let b = bed("ce", 1);
    // A veth in the pod whose peer is not named like ours (as after a host-side rename).
    b.pods[0]
        .ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
        ])
        .expect("veth");
    unwire(&b.node, "pod-e", Some(b.pods[0].path())).expect("unwire");
    assert!(!link_exists(&b.pods[0], "eth0"));
    // A non-veth CNI_IFNAME (someone else's) is left alone.
    b.pods[0]
        .ip(&["link", "add", "eth0", "type", "bridge"])
        .expect("bridge");
    unwire(&b.node, "pod-e", Some(b.pods[0].path())).expect("unwire");
    assert!(link_exists(&b.pods[0], "eth0"));
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn a_stale_bridge_address_is_replaced() {
    require_root();
    let b = bed("cs", 1);
    b.node
        .ip(&["link", "add", "ovlbr0", "type", "bridge"])
        .expect("bridge");
    b.node
        .ip(&["addr", "add", "10.32.9.1/24", "dev", "ovlbr0"])
        .expect("old address");
    wire(&b.node, &attachment(&b.pods[0], "pod-s"), 2).expect("wire");
    let br = b
        .node
        .ip(&["addr", "show", "dev", "ovlbr0"])
        .expect("bridge");
    assert!(br.contains("inet 10.32.1.1/24"), "{br}");
    assert!(!br.contains("10.32.9.1"), "{br}");
    assert!(br.contains("link/ether 0a:58:0a:20:01:01"), "{br}");
    assert!(br.contains("UP"), "{br}");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn a_bridge_name_taken_by_another_device_is_refused() {
    require_root();
    let b = bed("cd", 1);
    b.node
        .ip(&[
            "link", "add", "ovlbr0", "type", "veth", "peer", "name", "x0",
        ])
        .expect("veth");
    let e = wire(&b.node, &attachment(&b.pods[0], "pod-d"), 2).expect_err("not a bridge");
    assert!(e.to_string().contains("not a bridge"), "{e}");
    assert!(!link_exists(&b.pods[0], "eth0"));
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn concurrent_wiring_on_a_new_bridge_succeeds() {
    require_root();
    let b = bed("cc", 6);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(b.pods.len()));
    let handles: Vec<_> = b
        .pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            let att = attachment(pod, &format!("pod-c{i}"));
            let barrier = barrier.clone();
            let host = u8::try_from(i + 2).expect("small");
            b.node
                .spawn(move || {
                    barrier.wait();
                    wiring::wire(&att, &allocation(host), 1400)
                })
                .expect("thread")
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        h.join()
            .expect("no panic")
            .unwrap_or_else(|e| panic!("pod {i}: {e}"));
    }
    let ports = b
        .node
        .ip(&["link", "show", "master", "ovlbr0"])
        .expect("ports");
    assert_eq!(ports.matches(": ovl").count(), b.pods.len(), "{ports}");
    let br = b
        .node
        .ip(&["addr", "show", "dev", "ovlbr0"])
        .expect("bridge");
    assert_eq!(br.matches("inet ").count(), 1, "{br}");
    let last: SocketAddr = format!("10.32.1.{}:7400", b.pods.len() + 1)
        .parse()
        .expect("addr");
    let server = echo_server(&b.pods[b.pods.len() - 1], last);
    assert_eq!(
        talk(&b.pods[0], last, "first to last").expect("reach"),
        "first to last"
    );
    server.join().expect("server");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn a_failed_wiring_leaves_no_host_veth() {
    require_root();
    let b = bed("cf", 1);
    b.pods[0]
        .ip(&["link", "add", "eth0", "type", "bridge"])
        .expect("bridge");
    let att = attachment(&b.pods[0], "pod-f");
    let e = wire(&b.node, &att, 2).expect_err("eth0 is taken");
    assert!(e.to_string().contains("already exists"), "{e}");
    assert!(!link_exists(&b.node, &host_veth_name("pod-f", "eth0")));

    // A failure after the veth exists (the pod already has a default route) is undone too.
    b.pods[0].ip(&["link", "del", "eth0"]).expect("del bridge");
    b.pods[0]
        .ip(&["link", "add", "up0", "type", "bridge"])
        .expect("bridge");
    b.pods[0].ip(&["link", "set", "up0", "up"]).expect("up");
    b.pods[0]
        .ip(&["route", "add", "default", "dev", "up0"])
        .expect("route");
    let e = wire(&b.node, &att, 2).expect_err("default route taken");
    assert!(e.to_string().contains("default route"), "{e}");
    assert!(!link_exists(&b.node, &host_veth_name("pod-f", "eth0")));
    assert!(!link_exists(&b.pods[0], "eth0"));
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn wiring_the_node_namespace_itself_is_refused() {
    require_root();
    let b = bed("ci", 0);
    let att = Attachment {
        container_id: "pod-i".into(),
        ifname: "eth9".into(),
        netns: b.node.path(),
        bridge: "ovlbr0".into(),
    };
    let e = wire(&b.node, &att, 2).expect_err("own namespace");
    assert!(e.to_string().contains("node's own namespace"), "{e}");
    assert!(!link_exists(&b.node, "eth9"));
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn a_reused_address_is_reachable_at_once() {
    require_root();
    // The node and pod c cache pod a's MAC; pod b gets the same address right after pod a
    // leaves. The node must forget the old MAC and pod c must learn the new one from pod b's
    // gratuitous ARP, or both keep sending to a dead MAC for half a minute. Pod c also keeps
    // the bridge's carrier up (a bridge losing its last port flushes its neighbour entries,
    // which would hide the problem).
    let b = bed("cr", 3);
    wire(&b.node, &attachment(&b.pods[2], "pod-r3"), 9).expect("wire pod c");
    wire(&b.node, &attachment(&b.pods[0], "pod-r1"), 2).expect("wire pod a");
    let to = |port: u16| SocketAddr::from(([10, 32, 1, 2], port));
    for (who, what, port) in [(&b.node, "node", 7501), (&b.pods[2], "pod c", 7502)] {
        let to = to(port);
        let server = echo_server(&b.pods[0], to);
        let back = talk(who, to, what).unwrap_or_else(|e| panic!("{what} reaches pod a: {e}"));
        assert_eq!(back, what);
        server.join().expect("server");
    }
    unwire(&b.node, "pod-r1", Some(b.pods[0].path())).expect("unwire");

    let w = wire(&b.node, &attachment(&b.pods[1], "pod-r2"), 2).expect("wire pod b");
    let neigh = b.node.ip(&["neigh", "show", "10.32.1.2"]).expect("neigh");
    assert!(
        !neigh.contains("lladdr") || neigh.contains(&w.pod_mac),
        "node forgot the old MAC: {neigh}"
    );
    let neigh = b.pods[2]
        .ip(&["neigh", "show", "10.32.1.2"])
        .expect("neigh");
    assert!(
        neigh.contains(&w.pod_mac),
        "pod c learned the new MAC from the announcement: {neigh}"
    );
    for (who, what, port) in [(&b.node, "node", 7503), (&b.pods[2], "pod c", 7504)] {
        let to = to(port);
        let server = echo_server(&b.pods[1], to);
        let back = talk(who, to, what).unwrap_or_else(|e| panic!("{what} reaches pod b: {e}"));
        assert_eq!(back, what);
        server.join().expect("server");
    }
}
