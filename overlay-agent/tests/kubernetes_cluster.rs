//! Real agents built with the `k8s` feature, run with `--kubernetes` and no `--peer` in node
//! namespaces, against a fake Kubernetes API server on a host of the underlay (their
//! kubeconfig points at it): they find each other from the Nodes' InternalIPs alone, take their
//! podCIDRs as blocks (pods on two nodes get addresses from them and move 4 MiB each way),
//! advertise their InternalIPs and clear their Nodes' NetworkUnavailable;
//! a Node added to the watch is dialed before its agent even runs, and a deleted Node's
//! address stops being dialed.
#![cfg(feature = "k8s")]

mod common;
mod fake_kube;

use fake_kube::FakeApi;
use overlay_testbed::{wait, Binaries, Cluster, Underlay};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::time::Duration;

/// The fake API server's address on the underlay (a host that is no node).
const API_HOST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 200);

/// Node `i` as the API would show it: InternalIP = its underlay address, podCIDR
/// 10.32.(10+i).0/24, registered with NetworkUnavailable=True.
fn node_object(i: usize) -> Value {
    json!({
        "metadata": {
            "name": Cluster::node_name(i),
            "uid": format!("00000000-0000-4000-8000-00000000000{i}"),
            "resourceVersion": format!("{}", 100 + i),
            "creationTimestamp": format!("2025-03-04T09:0{i}:00Z"),
        },
        "spec": {
            "podCIDR": format!("10.32.{}.0/24", 10 + i),
            "podCIDRs": [format!("10.32.{}.0/24", 10 + i)],
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": Underlay::node_addr(i).to_string()},
                {"type": "Hostname", "address": Cluster::node_name(i)},
            ],
            "conditions": [
                {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated",
                 "message": "Node created without a route",
                 "lastTransitionTime": "2025-03-04T09:00:00Z"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status",
                 "lastHeartbeatTime": "2025-03-04T09:00:00Z",
                 "lastTransitionTime": "2025-03-04T09:00:00Z"},
            ],
        },
    })
}

/// Node `i`'s dial target at `addr`, if any, from its status.
fn target(c: &Cluster, i: usize, addr: &str) -> Result<Option<Value>, String> {
    let s = c.status(i).map_err(|e| e.to_string())?;
    Ok(s["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["address"] == addr))
        .cloned())
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn agents_discover_each_other_take_pod_cidrs_and_clear_network_unavailable() {
    overlay_testbed::require_root();
    let bins = Binaries::next_to(env!("CARGO_BIN_EXE_overlay-agent")).expect("binaries built");
    let mut c = Cluster::new(&overlay_testbed::unique_prefix("k8s"), 4, bins).expect("cluster");
    c.seeds = vec![Vec::new(); 4];
    let api_host = c.underlay.add_outside_host(API_HOST).expect("API host");

    // The fake API server listens inside the API host's namespace.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = std::thread::scope(|s| {
        s.spawn(|| {
            api_host.enter_current_thread().expect("enter the API host");
            std::net::TcpListener::bind((API_HOST, 6443)).expect("bind")
        })
        .join()
        .expect("bind thread")
    });
    listener.set_nonblocking(true).expect("nonblocking");
    let fake = FakeApi::new(json!({
        "kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "103"},
        "items": [node_object(0), node_object(1), node_object(2)],
    }));
    let url = {
        let _enter = runtime.enter();
        fake.serve(tokio::net::TcpListener::from_std(listener).expect("listener"))
    };
    let kubeconfig = c.workdir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .expect("kubeconfig");
    c.agent_env.push((
        "KUBECONFIG".into(),
        Some(kubeconfig.to_string_lossy().into()),
    ));
    c.agent_args.push("--kubernetes".into());

    for i in 0..3 {
        c.start_agent(i).expect("agent starts");
    }
    common::converge(&c, Duration::from_secs(30));
    for i in 0..3 {
        let s = c.status(i).expect("status");
        assert_eq!(s["subnet"], format!("10.32.{}.0/24", 10 + i), "podCIDR");
        assert_eq!(
            s["advertise"],
            format!("{}:6783", Underlay::node_addr(i)),
            "InternalIP"
        );
    }
    // Pods get addresses from the podCIDRs and talk across nodes.
    for node in [0, 2] {
        c.add_pod(node).expect("pod");
    }
    assert!(
        "10.32.10.0/24"
            .parse::<ipnet::Ipv4Net>()
            .expect("cidr")
            .contains(&c.pods[0].ip),
        "{}",
        c.pods[0].ip
    );
    common::transfer(&c, 0, 1, 4);
    common::transfer(&c, 1, 0, 4);

    let patches = runtime.block_on(fake.wait_patches(3, 20));
    let mut patched: Vec<&str> = patches.iter().map(|p| p.path.as_str()).collect();
    patched.sort_unstable();
    assert_eq!(
        patched,
        [
            "/api/v1/nodes/node0/status",
            "/api/v1/nodes/node1/status",
            "/api/v1/nodes/node2/status"
        ]
    );
    for p in &patches {
        assert_eq!(
            p.content_type.as_deref(),
            Some("application/strategic-merge-patch+json")
        );
        let cond = &p.body["status"]["conditions"][0];
        assert_eq!(
            (&cond["type"], &cond["status"]),
            (&json!("NetworkUnavailable"), &json!("False"))
        );
        assert_eq!(cond["reason"], "OverlayIsUp");
    }

    // A Node joins: the agents dial its InternalIP at once, before its agent runs.
    runtime.block_on(fake.wait_watchers(3));
    fake.apply("ADDED", node_object(3));
    let joiner = format!("{}:6783", Underlay::node_addr(3));
    wait::until(
        "node0 to dial the new Node",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            Ok(target(&c, 0, &joiner)?
                .filter(|t| t["seed"] == true)
                .map(|_| ()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
    c.start_agent(3).expect("agent starts");
    common::converge(&c, Duration::from_secs(30));
    let s = c.status(3).expect("status");
    assert_eq!(s["subnet"], "10.32.13.0/24");
    runtime.block_on(fake.wait_patches(4, 20));

    // The Node goes: its agent leaves; the address stays a target (given by Kubernetes) until
    // the Node is deleted, then nobody dials it any more.
    c.stop_agent(3, libc::SIGTERM, Duration::from_secs(5))
        .expect("node3 stops");
    wait::until(
        "node0 to see node3 leave",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || {
            let p = c.peer_status(0, 3).map_err(|e| e.to_string())?;
            Ok((p["left"] == true || p["reachable"] == false).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        target(&c, 0, &joiner).expect("status").is_some(),
        "still a target while its Node exists"
    );
    fake.apply("DELETED", node_object(3));
    for i in 0..3 {
        wait::until(
            "the deleted Node's address to be dropped",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || Ok(target(&c, i, &joiner)?.is_none().then_some(())),
        )
        .unwrap_or_else(|e| panic!("node{i}: {e}\n{}", c.all_logs()));
    }
    drop(runtime);
}
