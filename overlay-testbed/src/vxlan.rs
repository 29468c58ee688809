//! Kernel VXLAN between the nodes of an [`Underlay`], with a pod per node wired the way the
//! overlay's CNI plugin wires pods: the reference data path for benchmarks.
//!
//! Node `i` gets
//! - a VXLAN device `vx0` (VNI 42, UDP 4789, over `eth0`, no learning) with its own VTEP
//!   address `10.200.i.0/32` and a fixed MAC; for every other node `j` a permanent neighbour
//!   entry for `10.200.j.0`, a forwarding entry sending that MAC to node `j`'s underlay
//!   address, and the route `10.200.j.0/24 via 10.200.j.0 dev vx0 onlink` (as flannel does);
//! - a bridge `vxbr0` carrying the gateway `10.200.i.1/24` (fixed MAC, like the CNI bridge);
//! - one pod namespace `<prefix>p<i>` whose `eth0` is a veth with its host end on the bridge,
//!   address `10.200.i.2/24`, default route via the gateway.
//!
//! Every device on the path has the VXLAN device's MTU, which the kernel derives from `eth0`
//! (underlay MTU − 50: outer IPv4, UDP, VXLAN and inner Ethernet headers) — as the agent
//! derives the overlay MTU from the underlay interface. A packet goes pod veth → `vxbr0` →
//! route → `vx0` (encapsulated) → `eth0` → underlay → `eth0` → `vx0` (decapsulated) → route
//! → `vxbr0` → pod veth. Everything lives in this bed's namespaces and is removed on drop.

use crate::netns::Netns;
use crate::pod_wiring::{self, octet};
use crate::underlay::Underlay;
use anyhow::{bail, Context};
use std::net::Ipv4Addr;

/// The VXLAN device on each node.
pub const DEVICE: &str = "vx0";
/// The bridge the pods of each node hang on.
pub const BRIDGE: &str = "vxbr0";
/// The VXLAN network identifier.
pub const VNI: u32 = 42;
/// The VXLAN UDP port (IANA).
pub const UDP_PORT: u16 = 4789;

/// A pod of the VXLAN bed.
#[derive(Debug)]
pub struct VxlanPod {
    /// The pod's namespace.
    pub netns: Netns,
    /// The node it hangs on.
    pub node: usize,
    /// Its address.
    pub ip: Ipv4Addr,
}

/// Nodes on an underlay joined by kernel VXLAN, one pod per node; removed on drop.
#[derive(Debug)]
pub struct VxlanNet {
    /// The pods, pod `i` on node `i` (dropped before the nodes).
    pub pods: Vec<VxlanPod>,
    /// The node namespaces and their underlay.
    pub underlay: Underlay,
    mtu: u32,
}

impl VxlanNet {
    /// Creates a fresh [`Underlay`] of `nodes` nodes named after `prefix`, the VXLAN mesh
    /// between them and a pod on each.
    pub fn new(prefix: &str, nodes: usize) -> anyhow::Result<VxlanNet> {
        if nodes > 250 {
            bail!("at most 250 nodes");
        }
        let underlay = Underlay::new(prefix, nodes)?;
        let mut net = VxlanNet {
            pods: Vec::new(),
            underlay,
            mtu: 0,
        };
        for i in 0..nodes {
            net.add_node(i)?;
        }
        net.mtu = match net.underlay.nodes.first() {
            Some(node) => link_mtu(node, DEVICE)?,
            None => 0,
        };
        for i in 0..nodes {
            net.add_pod(i)?;
        }
        Ok(net)
    }

    /// The MTU of the VXLAN device and of every pod-side device.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Node `i`'s VTEP address (on `vx0`).
    pub fn vtep_addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, octet(i), 0)
    }

    /// Node `i`'s gateway address for its pods (on `vxbr0`).
    pub fn gateway(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, octet(i), 1)
    }

    /// The address of the pod on node `i`.
    pub fn pod_addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, octet(i), 2)
    }

    /// Node `i`'s VXLAN device MAC (locally administered).
    fn vtep_mac(i: usize) -> String {
        format!("02:76:78:00:{:02x}:00", octet(i))
    }

    /// Node `i`'s bridge MAC (locally administered).
    fn bridge_mac(i: usize) -> String {
        format!("02:76:78:00:{:02x}:01", octet(i))
    }

    fn add_node(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.underlay.nodes[i];
        let local = Underlay::node_addr(i).to_string();
        let (vni, port) = (VNI.to_string(), UDP_PORT.to_string());
        node.ip(&[
            "link",
            "add",
            DEVICE,
            "address",
            &Self::vtep_mac(i),
            "type",
            "vxlan",
            "id",
            &vni,
            "dstport",
            &port,
            "local",
            &local,
            "dev",
            "eth0",
            "nolearning",
        ])
        .context("creating the VXLAN device (is the vxlan module available?)")?;
        node.ip(&[
            "addr",
            "add",
            &format!("{}/32", Self::vtep_addr(i)),
            "dev",
            DEVICE,
        ])?;
        node.ip(&["link", "set", DEVICE, "up"])?;
        for j in (0..self.underlay.nodes.len()).filter(|&j| j != i) {
            let vtep = Self::vtep_addr(j).to_string();
            let mac = Self::vtep_mac(j);
            node.ip(&[
                "neigh",
                "replace",
                &vtep,
                "lladdr",
                &mac,
                "dev",
                DEVICE,
                "nud",
                "permanent",
            ])?;
            let remote = Underlay::node_addr(j).to_string();
            run_in(
                node,
                "bridge",
                &["fdb", "replace", &mac, "dev", DEVICE, "dst", &remote],
            )?;
            let subnet = format!("{}/24", Self::vtep_addr(j));
            node.ip(&[
                "route", "add", &subnet, "via", &vtep, "dev", DEVICE, "onlink",
            ])?;
        }
        let mtu = link_mtu(node, DEVICE)?.to_string();
        node.ip(&[
            "link",
            "add",
            BRIDGE,
            "address",
            &Self::bridge_mac(i),
            "mtu",
            &mtu,
            "type",
            "bridge",
        ])?;
        pod_wiring::address_bridge(node, BRIDGE, Self::gateway(i))?;
        Ok(())
    }

    fn add_pod(&mut self, i: usize) -> anyhow::Result<()> {
        let netns = Netns::create(&format!("{}p{i}", self.underlay.prefix()))?;
        let ip = Self::pod_addr(i);
        let (node, host) = (&self.underlay.nodes[i], format!("vxh{i}"));
        pod_wiring::attach_pod(node, BRIDGE, &netns, &host, self.mtu, ip, Self::gateway(i))?;
        self.pods.push(VxlanPod { netns, node: i, ip });
        Ok(())
    }
}

impl Drop for VxlanNet {
    fn drop(&mut self) {
        self.pods.clear();
    }
}

/// The MTU of interface `dev` in `ns`.
pub fn link_mtu(ns: &Netns, dev: &str) -> anyhow::Result<u32> {
    let text = ns.ip(&["-o", "link", "show", "dev", dev])?;
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mtu" {
            if let Some(v) = words.next().and_then(|v| v.parse().ok()) {
                return Ok(v);
            }
        }
    }
    bail!("no MTU for {dev} in {}: {text}", ns.name())
}

/// Runs `program args...` in `ns`; fails with its stderr if it fails.
fn run_in(ns: &Netns, program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = ns.exec(program, args)?;
    if !out.status.success() {
        bail!(
            "{program} {} in {}: {}",
            args.join(" "),
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(no_root, ignore = "needs root")]
    fn pods_reach_each_other_through_vxlan() {
        crate::require_root();
        let net = VxlanNet::new(&crate::unique_prefix("vx"), 2).expect("bed");
        assert_eq!(net.mtu(), 1500 - 50, "derived from the underlay");
        for pod in &net.pods {
            assert_eq!(link_mtu(&pod.netns, "eth0").expect("mtu"), net.mtu());
        }
        let t = crate::traffic::tcp_transfer(
            &net.pods[1].netns,
            net.pods[1].ip,
            &net.pods[0].netns,
            4 << 20,
            std::time::Duration::from_secs(20),
        )
        .expect("transfer");
        assert_eq!(t.received, 4 << 20);
        assert_eq!(t.sent_sha256, t.received_sha256);
        // The traffic really crossed the VXLAN devices.
        let stats = net.underlay.nodes[1]
            .ip(&["-s", "-j", "link", "show", DEVICE])
            .expect("stats");
        let stats: serde_json::Value = serde_json::from_str(&stats).expect("json");
        let rx = stats[0]["stats64"]["rx"]["bytes"]
            .as_u64()
            .expect("rx bytes");
        assert!(rx > 4 << 20, "{DEVICE} on node 1 received {rx} bytes");
        let names: Vec<String> = net
            .pods
            .iter()
            .map(|p| p.netns.name().to_owned())
            .chain(net.underlay.nodes.iter().map(|n| n.name().to_owned()))
            .collect();
        drop(net);
        let list = crate::netns::run("ip", &["netns", "list"]).expect("list");
        for n in names {
            assert!(!list.contains(&n), "{n} removed");
        }
    }
}
