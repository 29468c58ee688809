//! Chaining: what this plugin does with a `prevResult`.
//!
//! - **ADD** when not first in a conflist: the plugin's own interfaces, address and route are
//!   appended to the `prevResult` (address indices shifted past the interfaces already
//!   there), everything else in it is kept, and the whole is answered in the
//!   configuration's `cniVersion`. First in a conflist (no `prevResult`), the answer is the
//!   plugin's own result, which the runtime hands to the next plugin (e.g. `portmap`).
//! - **CHECK**: the runtime hands back the attachment's final result. The pod interface,
//!   host veth and address this plugin created must be listed in it, and must agree with
//!   what the agent holds; [`expected`] turns that into what [`crate::wiring::check`] then
//!   verifies on the node and in the pod. Routes are checked only when still listed (a
//!   later plugin may have replaced them, which the spec allows).
//! - **DEL** needs nothing from it: the host veth's name and the address's key follow from
//!   CNI_CONTAINERID and CNI_IFNAME.

use crate::error::Error;
use crate::mismatch::{Mismatch, PrevResult};
use crate::result::{CniResult, Interface};
use crate::wiring::host_veth_name;
use ipnet::IpNet;
use overlay_proto::api::Allocation;
use std::net::IpAddr;
use std::path::Path;

/// The ADD answer: `ours` alone, or appended to `prev` (see the module docs).
pub fn add_result(prev: Option<&CniResult>, ours: CniResult) -> CniResult {
    let Some(prev) = prev else { return ours };
    let offset = prev.interfaces.len();
    let mut out = prev.clone();
    out.cni_version = ours.cni_version;
    out.interfaces.extend(ours.interfaces);
    out.ips.extend(ours.ips.into_iter().map(|mut ip| {
        ip.interface = ip.interface.map(|i| i + offset);
        ip
    }));
    out.routes.extend(ours.routes);
    out
}

/// What CHECK verifies, taken from the `prevResult`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expected {
    /// The pod interface's MAC, when the result gives one.
    pub pod_mac: Option<String>,
    /// The host veth's MAC, when the result gives one.
    pub host_mac: Option<String>,
    /// The pod interface's MTU, when the result gives one (1.1.0).
    pub mtu: Option<u32>,
    /// The result still lists the default route via the node address.
    pub default_route: bool,
}

/// Reads what CHECK must verify for pod interface `ifname` of `container_id` in `netns`
/// from `prev`, and checks that it agrees with what the agent holds (`allocation`).
pub fn expected(
    prev: &CniResult,
    container_id: &str,
    ifname: &str,
    netns: &Path,
    allocation: &Allocation,
) -> Result<Expected, Error> {
    let mismatch = |what: PrevResult| Error::Check(Mismatch::PrevResult(what));
    let pod_index = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.as_deref().map(Path::new) == Some(netns))
        .ok_or_else(|| {
            mismatch(PrevResult::NoInterface {
                ifname: ifname.to_owned(),
                netns: netns.to_owned(),
            })
        })?;
    let pod = &prev.interfaces[pod_index];
    let host_name = host_veth_name(container_id, ifname);
    let host = prev
        .interfaces
        .iter()
        .find(|i| i.name == host_name && is_host_side(i))
        .ok_or_else(|| mismatch(PrevResult::NoHostInterface(host_name.clone())))?;

    let held = IpNet::V4(allocation.address);
    let gateway = IpAddr::V4(allocation.gateway);
    let ours: Vec<_> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(pod_index) && ip.address.addr().is_ipv4())
        .collect();
    let Some(ip) = ours.iter().find(|ip| ip.address == held) else {
        return Err(mismatch(PrevResult::Address {
            ifname: ifname.to_owned(),
            listed: ours.iter().map(|ip| ip.address).collect(),
            held,
        }));
    };
    if let Some(other) = ours.iter().find(|ip| ip.address != held) {
        return Err(mismatch(PrevResult::ExtraAddress {
            ifname: ifname.to_owned(),
            other: other.address,
            held,
        }));
    }
    if let Some(listed) = ip.gateway.filter(|g| *g != gateway) {
        return Err(mismatch(PrevResult::Gateway {
            held,
            listed,
            gateway,
        }));
    }
    let default_route = prev.routes.iter().any(|r| {
        r.dst == IpNet::V4(ipnet::Ipv4Net::default()) && r.gw.or(ip.gateway) == Some(gateway)
    });
    Ok(Expected {
        pod_mac: non_empty(&pod.mac),
        host_mac: non_empty(&host.mac),
        mtu: pod.mtu,
        default_route,
    })
}

fn is_host_side(i: &Interface) -> bool {
    i.sandbox.as_deref().is_none_or(str::is_empty)
}

fn non_empty(mac: &str) -> Option<String> {
    (!mac.is_empty()).then(|| mac.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wiring::Wired;
    use serde_json::json;

    const NETNS: &str = "/var/run/netns/pod";

    fn allocation() -> Allocation {
        Allocation {
            address: "10.32.1.2/24".parse().expect("net"),
            gateway: "10.32.1.1".parse().expect("ip"),
            cluster: "10.32.0.0/12".parse().expect("net"),
            mtu: 1410,
        }
    }

    fn ours(version: &str) -> CniResult {
        let wired = Wired {
            host_name: host_veth_name("c1", "eth0"),
            host_mac: "0a:00:00:00:00:01".into(),
            pod_name: "eth0".into(),
            pod_mac: "0a:00:00:00:00:02".into(),
        };
        CniResult::for_pod(version, &wired, &allocation(), Path::new(NETNS), 1410)
    }

    fn result(v: serde_json::Value) -> CniResult {
        serde_json::from_value(v).expect("result")
    }

    fn check_error(prev: &CniResult) -> String {
        match expected(prev, "c1", "eth0", Path::new(NETNS), &allocation()) {
            Err(Error::Check(m)) => m.to_string(),
            other => panic!("expected a check error, got {other:?}"),
        }
    }

    #[test]
    fn first_in_the_chain_answers_its_own_result() {
        assert_eq!(add_result(None, ours("1.1.0")), ours("1.1.0"));
    }

    #[test]
    fn after_another_plugin_the_prev_result_is_kept_and_extended() {
        let prev = result(json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "dummy0", "sandbox": NETNS}],
            "ips": [{"address": "192.168.5.5/24", "interface": 0}],
            "routes": [{"dst": "192.168.0.0/16", "mtu": 1400}],
            "dns": {"nameservers": ["192.168.5.1"]},
            "extension": "kept"
        }));
        let merged = serde_json::to_value(add_result(Some(&prev), ours("1.1.0"))).expect("json");
        assert_eq!(
            merged["cniVersion"], "1.1.0",
            "answered in the configuration's version"
        );
        assert_eq!(merged["interfaces"][0]["name"], "dummy0");
        assert_eq!(
            merged["interfaces"][1]["name"],
            host_veth_name("c1", "eth0")
        );
        assert_eq!(merged["interfaces"][2]["name"], "eth0");
        assert_eq!(merged["ips"][0]["interface"], 0);
        assert_eq!(merged["ips"][1]["address"], "10.32.1.2/24");
        assert_eq!(merged["ips"][1]["interface"], 2, "shifted past dummy0");
        assert_eq!(merged["routes"][0]["mtu"], 1400);
        assert_eq!(merged["routes"][1]["dst"], "0.0.0.0/0");
        assert_eq!(merged["dns"]["nameservers"][0], "192.168.5.1");
        assert_eq!(merged["extension"], "kept");
    }

    #[test]
    fn check_expects_what_add_answered() {
        for version in ["1.0.0", "1.1.0"] {
            let e = expected(
                &ours(version),
                "c1",
                "eth0",
                Path::new(NETNS),
                &allocation(),
            )
            .expect("consistent");
            assert_eq!(e.pod_mac.as_deref(), Some("0a:00:00:00:00:02"));
            assert_eq!(e.host_mac.as_deref(), Some("0a:00:00:00:00:01"));
            assert_eq!(e.mtu, (version == "1.1.0").then_some(1410));
            assert!(e.default_route);
        }
        // After portmap (which passes the result through) and behind another plugin's
        // interface, the same holds.
        let prev = result(json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "dummy0", "sandbox": NETNS}],
        }));
        let chained = add_result(Some(&prev), ours("1.0.0"));
        let e =
            expected(&chained, "c1", "eth0", Path::new(NETNS), &allocation()).expect("consistent");
        assert!(e.default_route);
    }

    #[test]
    fn a_route_taken_out_by_a_later_plugin_is_not_expected() {
        let mut prev = ours("1.0.0");
        prev.routes.clear();
        let e = expected(&prev, "c1", "eth0", Path::new(NETNS), &allocation())
            .expect("still consistent");
        assert!(!e.default_route);
    }

    #[test]
    fn check_fails_when_the_prev_result_does_not_match() {
        let mut other_netns = ours("1.0.0");
        other_netns.interfaces[1].sandbox = Some("/var/run/netns/other".into());
        assert!(check_error(&other_netns).contains("no interface eth0"));

        let mut no_host = ours("1.0.0");
        no_host.interfaces.remove(0);
        no_host.ips[0].interface = Some(0);
        assert!(check_error(&no_host).contains("no host interface"));

        let mut other_address = ours("1.0.0");
        other_address.ips[0].address = "10.32.1.9/24".parse().expect("net");
        let m = check_error(&other_address);
        assert!(
            m.contains("10.32.1.9/24") && m.contains("holds 10.32.1.2/24"),
            "{m}"
        );

        let mut no_address = ours("1.0.0");
        no_address.ips.clear();
        assert!(check_error(&no_address).contains("no IPv4 address"));

        let mut extra_address = ours("1.0.0");
        let mut second = extra_address.ips[0].clone();
        second.address = "10.32.1.7/24".parse().expect("net");
        extra_address.ips.push(second);
        assert!(check_error(&extra_address).contains("10.32.1.7/24 besides"));

        let mut other_gateway = ours("1.0.0");
        other_gateway.ips[0].gateway = Some("10.32.1.254".parse().expect("ip"));
        assert!(check_error(&other_gateway).contains("gateway 10.32.1.254"));
    }
}
