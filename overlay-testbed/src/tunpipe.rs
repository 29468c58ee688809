//! Two nodes joined by nothing but a TUN→TUN forwarder in this process, with a pod per node
//! wired as in the [`crate::vxlan`] bed: what copying every packet through TUN devices costs,
//! without a tunnel (a reference row of the benchmark; see docs/measurements.md).
//!
//! Node `i` (namespace `<prefix>n<i>`, forwarding on) gets
//! - a TUN device `tp0` ([`device::open`]: `IFF_TUN | IFF_NO_PI | IFF_VNET_HDR`, checksum and
//!   TSO offloads) with the MTU given to [`TunPipeNet::new`] and txqueuelen [`TXQUEUELEN`],
//!   and the route `10.201.j.0/24 dev tp0` to the other node's pod subnet;
//! - a bridge `tpbr0` carrying the gateway `10.201.i.1/24`;
//! - one pod namespace `<prefix>p<i>` whose `eth0` is a veth with its host end on the bridge,
//!   address `10.201.i.2/24`, default route via the gateway; every device has the same MTU.
//!
//! A packet goes pod veth → `tpbr0` → route → `tp0` → *read by the forwarder, written unchanged
//! (virtio header and all) into the other node's `tp0`* → route → `tpbr0` → pod veth. There is
//! no encapsulation and no UDP: two user/kernel copies per byte where a tunnel has four.
//! The fds are opened inside the node namespaces and keep working from the forwarder threads.
//! Dropping the bed stops and joins the threads, then removes every namespace.

pub mod device;
pub mod forward;

use crate::netns::Netns;
use crate::pod_wiring::{self, octet};
use anyhow::Context;
use forward::{DirectionStats, Forwarder};
use std::net::Ipv4Addr;

/// The TUN device on each node.
pub const DEVICE: &str = "tp0";
/// The bridge the pod of each node hangs on.
pub const BRIDGE: &str = "tpbr0";
/// The TUN devices' transmit queue length (the default 500 drops bursts of super-packets).
pub const TXQUEUELEN: u32 = 10_000;

/// A pod of the TUN bed.
#[derive(Debug)]
pub struct TunPipePod {
    /// The pod's namespace.
    pub netns: Netns,
    /// The node it hangs on.
    pub node: usize,
    /// Its address.
    pub ip: Ipv4Addr,
}

/// Two nodes joined by a TUN→TUN forwarder, a pod per node; removed on drop.
#[derive(Debug)]
pub struct TunPipeNet {
    /// Stopped first on drop.
    forwarder: Option<Forwarder>,
    /// The pods, pod `i` on node `i` (dropped before the nodes).
    pub pods: Vec<TunPipePod>,
    /// The node namespaces.
    pub nodes: Vec<Netns>,
    prefix: String,
    mtu: u32,
}

impl TunPipeNet {
    /// Creates the two nodes named after `prefix`, their TUN devices, bridges, pods and
    /// routes, with `mtu` on every device, and starts the forwarder.
    pub fn new(prefix: &str, mtu: u32) -> anyhow::Result<TunPipeNet> {
        let mut net = TunPipeNet {
            forwarder: None,
            pods: Vec::new(),
            nodes: Vec::new(),
            prefix: prefix.to_owned(),
            mtu,
        };
        let mut fds = Vec::new();
        for i in 0..2 {
            let node = Netns::create(&format!("{prefix}n{i}"))?;
            node.sysctl("net.ipv4.ip_forward", "1")?;
            net.nodes.push(node);
            fds.push(net.add_node(i)?);
        }
        for i in 0..2 {
            net.add_pod(i)?;
        }
        let (Some(b), Some(a)) = (fds.pop(), fds.pop()) else {
            anyhow::bail!("two TUN fds expected");
        };
        net.forwarder = Some(Forwarder::start(a, b).context("starting the forwarder")?);
        Ok(net)
    }

    /// The MTU of the TUN devices and of every pod-side device.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Node `i`'s gateway address for its pod (on `tpbr0`).
    pub fn gateway(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, octet(i), 1)
    }

    /// The address of the pod on node `i`.
    pub fn pod_addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, octet(i), 2)
    }

    /// What the forwarder has done: direction node 0 → node 1, then node 1 → node 0.
    pub fn stats(&self) -> [DirectionStats; 2] {
        self.forwarder
            .as_ref()
            .map(Forwarder::stats)
            .unwrap_or_default()
    }

    /// Node `i`'s TUN device (its fd, opened in the node's namespace), bridge and route.
    fn add_node(&self, i: usize) -> anyhow::Result<std::os::fd::OwnedFd> {
        let node = &self.nodes[i];
        let fd = node
            .run(|| device::open(DEVICE))?
            .with_context(|| format!("creating {DEVICE} in {}", node.name()))?;
        let (mtu, qlen) = (self.mtu.to_string(), TXQUEUELEN.to_string());
        node.ip(&[
            "link",
            "set",
            DEVICE,
            "mtu",
            &mtu,
            "txqueuelen",
            &qlen,
            "up",
        ])?;
        let other = Ipv4Addr::new(10, 201, octet(1 - i), 0);
        node.ip(&["route", "add", &format!("{other}/24"), "dev", DEVICE])?;
        node.ip(&["link", "add", BRIDGE, "mtu", &mtu, "type", "bridge"])?;
        pod_wiring::address_bridge(node, BRIDGE, Self::gateway(i))?;
        Ok(fd)
    }

    fn add_pod(&mut self, i: usize) -> anyhow::Result<()> {
        let netns = Netns::create(&format!("{}p{i}", self.prefix))?;
        let ip = Self::pod_addr(i);
        let (node, host) = (&self.nodes[i], format!("tph{i}"));
        pod_wiring::attach_pod(node, BRIDGE, &netns, &host, self.mtu, ip, Self::gateway(i))?;
        self.pods.push(TunPipePod { netns, node: i, ip });
        Ok(())
    }
}

impl Drop for TunPipeNet {
    fn drop(&mut self) {
        // Threads first (closing the TUN fds removes the devices), then pods, then nodes.
        self.forwarder = None;
        self.pods.clear();
        self.nodes.clear();
    }
}
