//! End to end, as root: the CNI plugin against a real agent.

mod common;

use common::{converge, started_cluster, transfer};
use overlay_testbed::cluster::run_cni;
use overlay_testbed::{Cluster, Netns};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The default netconf with `result` as prevResult (what a runtime hands CHECK and DEL).
fn with_prev(result: &serde_json::Value) -> String {
    let mut conf: serde_json::Value = serde_json::from_str(&Cluster::netconf()).expect("netconf");
    conf["prevResult"] = result.clone();
    conf.to_string()
}

fn pod_ip(result: &serde_json::Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {result}"))
        .to_owned()
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn concurrent_adds_get_unique_addresses_and_del_is_idempotent_and_releases() {
    let c = started_cluster("ca", 1);
    converge(&c, Duration::from_secs(15));
    let block = c.status(0).expect("status")["subnet"]
        .as_str()
        .expect("subnet")
        .to_owned();
    let prefix = c.underlay.prefix().to_owned();
    let pods: Vec<Netns> = (0..12)
        .map(|k| Netns::create(&format!("{prefix}q{k}")).expect("pod netns"))
        .collect();
    let results: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(k, ns)| {
                let c = &c;
                s.spawn(move || {
                    let (ok, r) = c
                        .cni(0, "ADD", &format!("c{k}"), &ns.path(), &Cluster::netconf())
                        .expect("cni runs");
                    assert!(ok, "ADD c{k}: {r}");
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let addrs: BTreeSet<String> = results.iter().map(pod_ip).collect();
    assert_eq!(addrs.len(), 12, "12 distinct addresses: {addrs:?}");
    let net = block.trim_end_matches("0/24");
    assert!(
        addrs
            .iter()
            .all(|a| a.starts_with(net) && a.ends_with("/24")),
        "{addrs:?} in {block}"
    );

    for (k, ns) in pods.iter().enumerate() {
        let (ok, r) = c
            .cni(
                0,
                "CHECK",
                &format!("c{k}"),
                &ns.path(),
                &with_prev(&results[k]),
            )
            .expect("cni");
        assert!(ok, "CHECK c{k}: {r}");
    }
    for (k, ns) in pods.iter().enumerate() {
        for round in 0..2 {
            let (ok, r) = c
                .cni(0, "DEL", &format!("c{k}"), &ns.path(), &Cluster::netconf())
                .expect("cni");
            assert!(ok, "DEL c{k} (round {round}) is idempotent: {r}");
        }
        let held = c
            .api(0, "GET", &format!("/ipam/allocations/c{k}/eth0"), None)
            .expect("api");
        assert_eq!(held.status, 404, "c{k} released");
    }
    // Released addresses are handed out again, lowest first.
    let (ok, r) = c
        .cni(0, "ADD", "again", &pods[0].path(), &Cluster::netconf())
        .expect("cni");
    assert!(ok, "{r}");
    assert_eq!(pod_ip(&r), format!("{net}2/24"));
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn an_add_during_an_agent_restart_waits_and_addresses_survive_the_restart() {
    let mut c = started_cluster("ar", 2);
    converge(&c, Duration::from_secs(15));
    let first = c.add_pod(0).expect("pod");
    c.add_pod(1).expect("pod on node1");
    let before = pod_ip(&c.pods[first].result);

    let status = c
        .stop_agent(0, libc::SIGTERM, Duration::from_secs(5))
        .expect("stopped");
    assert!(status.success());
    let late = Netns::create(&format!("{}late", c.underlay.prefix())).expect("netns");
    let started = Instant::now();
    let cmd = c.cni_command(0, "ADD", "late", &late.path());
    let add = std::thread::spawn(move || run_cni(cmd, &Cluster::netconf()));
    // The agent comes back while the plugin waits for it.
    std::thread::sleep(Duration::from_secs(2));
    c.start_agent(0).expect("restart");
    let (ok, r) = add.join().expect("ADD thread").expect("cni runs");
    assert!(ok, "ADD waited for the agent: {r}\n{}", c.log(0));
    let waited = started.elapsed();
    eprintln!(
        "ADD during the restart succeeded after {:.1} s",
        waited.as_secs_f64()
    );
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(30));

    // The block and the earlier pod's address survived the restart; the new pod got another.
    let held = c
        .api(
            0,
            "GET",
            &format!("/ipam/allocations/{}/eth0", c.pods[first].container_id),
            None,
        )
        .expect("api");
    assert_eq!(held.status, 200, "{}", held.body);
    assert_eq!(
        held.json().expect("json")["address"].as_str(),
        Some(before.as_str())
    );
    assert_ne!(pod_ip(&r), before);
    assert_eq!(
        pod_ip(&r).rsplit_once('.').map(|x| x.0),
        before.rsplit_once('.').map(|x| x.0),
        "same block"
    );
    converge(&c, Duration::from_secs(30));
    transfer(&c, 1, first, 2);
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn add_check_del_follow_the_cni_contract() {
    let mut c = started_cluster("cc", 1);
    converge(&c, Duration::from_secs(15));
    let status = c.status(0).expect("status");
    let gateway = status["address"].as_str().expect("address").to_owned();
    let mtu = status["mtu"].as_u64().expect("mtu");
    let k = c.add_pod(0).expect("pod");
    let pod = &c.pods[k];
    let r = &pod.result;
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["ips"][0]["gateway"], gateway.as_str());
    assert_eq!(r["ips"][0]["interface"], 1);
    assert_eq!(
        r["routes"],
        serde_json::json!([{"dst": "0.0.0.0/0", "gw": gateway}])
    );
    assert_eq!(r["dns"], serde_json::json!({}));
    let host = r["interfaces"][0]["name"]
        .as_str()
        .expect("host veth")
        .to_owned();
    assert_eq!(
        host,
        overlay_cni::wiring::host_veth_name(&pod.container_id, "eth0")
    );
    assert!(r["interfaces"][0].get("sandbox").is_none());
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(
        r["interfaces"][1]["sandbox"],
        pod.netns.path().display().to_string()
    );
    let eth0 = pod
        .netns
        .ip(&["addr", "show", "dev", "eth0"])
        .expect("eth0 in the pod");
    let pod_mac = r["interfaces"][1]["mac"].as_str().expect("mac");
    assert!(
        eth0.contains(pod_mac) && eth0.contains(&pod_ip(r)),
        "{eth0}"
    );
    assert!(
        eth0.contains(&format!("mtu {mtu}")),
        "the agent's overlay MTU: {eth0}"
    );
    let route = pod.netns.ip(&["route", "show", "default"]).expect("routes");
    assert!(route.contains(&format!("via {gateway}")), "{route}");

    let (id, path) = (pod.container_id.clone(), pod.netns.path());
    let checked = with_prev(r);
    let run = |c: &Cluster, cmd: &str| {
        let conf = if cmd == "DEL" {
            Cluster::netconf()
        } else {
            checked.clone()
        };
        c.cni(0, cmd, &id, &path, &conf).expect("cni runs")
    };
    let (ok, out) = run(&c, "CHECK");
    assert!(
        ok && out.is_null(),
        "CHECK prints nothing on success: {out}"
    );
    // CHECK compares with the result the runtime hands back, which it must hand back.
    let (ok, out) = c
        .cni(0, "CHECK", &id, &path, &Cluster::netconf())
        .expect("cni runs");
    assert!(!ok && out["code"] == 7, "CHECK without prevResult: {out}");
    let mut other = r.clone();
    other["interfaces"][1]["mac"] = "0a:00:00:00:00:99".into();
    let (ok, out) = c
        .cni(0, "CHECK", &id, &path, &with_prev(&other))
        .expect("cni runs");
    assert!(
        !ok && out["msg"]
            .as_str()
            .unwrap_or("")
            .contains("0a:00:00:00:00:99"),
        "CHECK of a result the pod does not match: {out}"
    );
    c.pods[k]
        .netns
        .ip(&["route", "del", "default"])
        .expect("break the pod");
    let (ok, out) = run(&c, "CHECK");
    assert!(!ok && out["code"].as_u64().is_some(), "{out}");
    assert!(
        out["msg"].as_str().unwrap_or("").contains("default route"),
        "{out}"
    );

    for round in 0..2 {
        let (ok, out) = run(&c, "DEL");
        assert!(ok, "DEL round {round}: {out}");
    }
    assert!(
        c.node(0).ip(&["link", "show", "dev", &host]).is_err(),
        "host veth gone"
    );
    let held = c
        .api(0, "GET", &format!("/ipam/allocations/{id}/eth0"), None)
        .expect("api");
    assert_eq!(held.status, 404, "address released");
    let (ok, out) = run(&c, "CHECK");
    assert!(!ok, "CHECK after DEL fails: {out}");

    // DEL of a pod whose namespace is gone.
    c.pods.clear();
    let (ok, out) = run(&c, "DEL");
    assert!(ok, "DEL with the namespace gone: {out}");
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn a_failed_add_releases_its_address() {
    let c = started_cluster("fa", 1);
    converge(&c, Duration::from_secs(15));
    let pod = Netns::create(&format!("{}bad", c.underlay.prefix())).expect("pod");
    pod.ip(&["link", "add", "eth0", "type", "bridge"])
        .expect("eth0 taken");
    let (ok, out) = c
        .cni(0, "ADD", "taken", &pod.path(), &Cluster::netconf())
        .expect("cni");
    assert!(!ok, "{out}");
    assert!(
        out["msg"].as_str().unwrap_or("").contains("already exists"),
        "{out}"
    );
    let held = c
        .api(0, "GET", "/ipam/allocations/taken/eth0", None)
        .expect("api");
    assert_eq!(held.status, 404, "address released after the failed ADD");
    // A namespace that does not exist takes no address at all.
    let missing = std::path::Path::new("/var/run/netns/overlay-no-such-netns");
    let (ok, out) = c
        .cni(0, "ADD", "missing", missing, &Cluster::netconf())
        .expect("cni");
    assert!(!ok && out["code"] == 3, "{out}");
    let held = c
        .api(0, "GET", "/ipam/allocations/missing/eth0", None)
        .expect("api");
    assert_eq!(held.status, 404);
}
