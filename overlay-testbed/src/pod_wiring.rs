//! The pod wiring the kernel-device beds share ([`crate::vxlan`], [`crate::tunpipe`]): on
//! each node a bridge holding the pods' gateway address, and behind it a pod namespace with
//! a veth, its address and a default route through the gateway.

use crate::Netns;
use std::net::Ipv4Addr;

/// Node `i`'s third address octet (nodes are numbered from 0; saturates past 255).
pub(crate) fn octet(i: usize) -> u8 {
    u8::try_from(i).unwrap_or(u8::MAX)
}

/// Brings up the bridge `bridge` (created by the caller, with its MTU) on `node` with
/// `gateway`/24, the address pods route through.
pub(crate) fn address_bridge(node: &Netns, bridge: &str, gateway: Ipv4Addr) -> anyhow::Result<()> {
    node.ip(&["addr", "add", &format!("{gateway}/24"), "dev", bridge])?;
    node.ip(&["link", "set", bridge, "up"])?;
    Ok(())
}

/// Wires the pod namespace `pod` to `bridge` on `node`: a veth `host` (node side, on the
/// bridge) ↔ `eth0` (pod side) of `mtu`, the pod address `ip`/24 and a default route via
/// `gateway`.
pub(crate) fn attach_pod(
    node: &Netns,
    bridge: &str,
    pod: &Netns,
    host: &str,
    mtu: u32,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
) -> anyhow::Result<()> {
    let mtu = mtu.to_string();
    node.ip(&[
        "link",
        "add",
        host,
        "mtu",
        &mtu,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "mtu",
        &mtu,
        "netns",
        pod.name(),
    ])?;
    node.ip(&["link", "set", host, "master", bridge, "up"])?;
    pod.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
    pod.ip(&["link", "set", "eth0", "up"])?;
    pod.ip(&["route", "add", "default", "via", &gateway.to_string()])?;
    Ok(())
}
