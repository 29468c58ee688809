//! End to end, as root: the CNI 1.1.0 commands (GC, STATUS) and the pod MTU, with the real
//! plugin run the way a runtime runs a conflist, against a real agent.

mod common;

use common::{converge, started_cluster};
use overlay_testbed::conflist::{self, Attachment, Conflist, PluginFailure, Runtime};
use overlay_testbed::{wait, Binaries, Cluster, Netns};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::time::Duration;

fn list() -> Conflist {
    Conflist::new("1.1.0", "overlay", vec![json!({"type": "overlay-cni"})])
}

fn runtime(c: &Cluster) -> Runtime<'_> {
    let ours = conflist::dir_of(Path::new(env!("CARGO_BIN_EXE_overlay-agent")));
    Runtime::new(c.node(0), vec![ours])
}

fn attachment(container_id: &str, pod: &Netns) -> Attachment {
    Attachment {
        container_id: container_id.to_owned(),
        netns: pod.path(),
        ifname: "eth0".into(),
        capability_args: Map::new(),
    }
}

fn failure(e: &anyhow::Error) -> &PluginFailure {
    e.downcast_ref::<PluginFailure>()
        .unwrap_or_else(|| panic!("not a plugin failure: {e:#}"))
}

fn held(c: &Cluster, id: &str) -> u16 {
    c.api(0, "GET", &format!("/ipam/allocations/{id}/eth0"), None)
        .expect("api")
        .status
}

fn link_exists(ns: &Netns, name: &str) -> bool {
    ns.ip(&["link", "show", "dev", name]).is_ok()
}

fn cluster_without_agents(tag: &str) -> Cluster {
    overlay_testbed::require_root();
    let bins = Binaries::next_to(env!("CARGO_BIN_EXE_overlay-agent")).expect("binaries built");
    Cluster::new(&overlay_testbed::unique_prefix(tag), 1, bins).expect("cluster")
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn status_succeeds_exactly_while_the_agent_is_ready() {
    let mut c = cluster_without_agents("st");
    let code = |c: &Cluster| match runtime(c).status(&list()) {
        Ok(()) => 0,
        Err(e) => failure(&e).code().unwrap_or_else(|| panic!("{e:#}")),
    };
    assert_eq!(code(&c), 50, "no agent: the plugin is not available");
    c.start_agent(0).expect("agent");
    let took = wait::until(
        "STATUS to succeed",
        Duration::from_secs(15),
        Duration::from_millis(50),
        || Ok((code(&c) == 0).then_some(())),
    );
    took.unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
    let ready = c.api(0, "GET", "/readyz", None).expect("readyz");
    assert_eq!(ready.status, 200, "STATUS succeeded, so the agent is ready");
    let status = c
        .stop_agent(0, libc::SIGTERM, Duration::from_secs(5))
        .expect("stopped");
    assert!(status.success());
    assert_eq!(code(&c), 50, "agent gone: not available again");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn gc_releases_every_attachment_the_runtime_no_longer_knows() {
    let c = started_cluster("gc", 1);
    converge(&c, Duration::from_secs(15));
    let rt = runtime(&c);
    let list = list();
    let prefix = c.underlay.prefix().to_owned();
    let pods: Vec<Netns> = (0..4)
        .map(|k| Netns::create(&format!("{prefix}g{k}")).expect("pod"))
        .collect();
    let ids: Vec<String> = (0..4).map(|k| format!("{prefix}-c{k}")).collect();
    let atts: Vec<Attachment> = ids
        .iter()
        .zip(&pods)
        .map(|(id, pod)| attachment(id, pod))
        .collect();
    let results: Vec<Value> = atts
        .iter()
        .map(|a| {
            rt.add(&list, a)
                .unwrap_or_else(|e| panic!("ADD {}: {e:#}\n{}", a.container_id, c.all_logs()))
        })
        .collect();
    let host = |k: usize| {
        results[k]["interfaces"][0]["name"]
            .as_str()
            .expect("host veth")
            .to_owned()
    };
    // Pod 3's address is gone from the agent (say its state was lost) but its veth is not.
    let released = c
        .api(
            0,
            "DELETE",
            &format!("/ipam/allocations/{}/eth0", ids[3]),
            None,
        )
        .expect("api");
    assert_eq!(released.status, 204);
    // A veth of ours not on the bridge yet (an ADD in progress) is left alone.
    let in_flight = overlay_cni::wiring::host_veth_name("in-flight", "eth0");
    c.node(0)
        .ip(&[
            "link", "add", &in_flight, "type", "veth", "peer", "name", "ifl-peer",
        ])
        .expect("veth");

    rt.gc(&list, &[(ids[0].as_str(), "eth0")])
        .unwrap_or_else(|e| panic!("GC: {e:#}\n{}", c.all_logs()));

    assert_eq!(
        held(&c, &ids[0]),
        200,
        "the valid attachment keeps its address"
    );
    assert!(link_exists(c.node(0), &host(0)) && link_exists(&pods[0], "eth0"));
    rt.check(&list, &atts[0], &results[0])
        .unwrap_or_else(|e| panic!("the valid attachment still checks: {e:#}"));
    for k in 1..3 {
        assert_eq!(held(&c, &ids[k]), 404, "c{k} released");
        assert!(
            !link_exists(c.node(0), &host(k)),
            "c{k}'s host veth deleted"
        );
        assert!(
            !link_exists(&pods[k], "eth0"),
            "c{k}'s pod end went with it"
        );
    }
    assert!(
        !link_exists(c.node(0), &host(3)),
        "a leftover veth of no valid attachment is deleted"
    );
    assert!(
        link_exists(c.node(0), &in_flight),
        "not on the bridge: kept"
    );
    let list_body = c
        .api(0, "GET", "/ipam/allocations", None)
        .expect("api")
        .json()
        .expect("json");
    assert_eq!(
        list_body["allocations"].as_array().map(Vec::len),
        Some(1),
        "{list_body}"
    );

    // GC is idempotent, and released addresses are handed out again.
    rt.gc(&list, &[(ids[0].as_str(), "eth0")])
        .unwrap_or_else(|e| panic!("GC again: {e:#}"));
    let again = rt
        .add(&list, &atts[1])
        .unwrap_or_else(|e| panic!("ADD again: {e:#}"));
    assert_eq!(again["ips"][0]["address"], results[1]["ips"][0]["address"]);
    // An empty list releases everything.
    rt.gc(&list, &[])
        .unwrap_or_else(|e| panic!("GC all: {e:#}"));
    for id in &ids[..2] {
        assert_eq!(held(&c, id), 404, "{id}");
    }
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn the_pod_mtu_follows_the_overlay_mtu() {
    let mut c = cluster_without_agents("mt");
    // A 1400-byte underlay: the overlay MTU is 1400 - 20 - 8 - 20 = 1352.
    c.node(0)
        .ip(&["link", "set", "eth0", "mtu", "1400"])
        .expect("underlay mtu");
    c.start_agent(0).expect("agent");
    converge(&c, Duration::from_secs(15));
    let mtu = c.status(0).expect("status")["mtu"].as_u64().expect("mtu");
    assert_eq!(mtu, 1352);
    let pod = Netns::create(&format!("{}pod", c.underlay.prefix())).expect("pod");
    let rt = runtime(&c);
    let result = rt
        .add(&list(), &attachment("mtu-pod", &pod))
        .unwrap_or_else(|e| panic!("ADD: {e:#}\n{}", c.all_logs()));
    // A 1.1.0 result reports it, and every device of the pod's path has it.
    assert_eq!(result["interfaces"][0]["mtu"], mtu);
    assert_eq!(result["interfaces"][1]["mtu"], mtu);
    let eth0 = pod.ip(&["link", "show", "dev", "eth0"]).expect("eth0");
    assert!(eth0.contains(&format!("mtu {mtu} ")), "{eth0}");
    let host = result["interfaces"][0]["name"].as_str().expect("host");
    for dev in [host, "ovlbr0", "ovl0"] {
        let link = c.node(0).ip(&["link", "show", "dev", dev]).expect("device");
        assert!(link.contains(&format!("mtu {mtu} ")), "{dev}: {link}");
    }
    rt.check(&list(), &attachment("mtu-pod", &pod), &result)
        .unwrap_or_else(|e| panic!("CHECK: {e:#}"));
    pod.ip(&["link", "set", "eth0", "mtu", "1300"])
        .expect("change it");
    let e = rt
        .check(&list(), &attachment("mtu-pod", &pod), &result)
        .expect_err("MTU differs from the result");
    assert!(failure(&e).msg().contains("MTU 1300"), "{e:#}");
}
