//! The classic recipe: a bridge on the node carrying the node address, a veth pair with one
//! end on the bridge and the other in the pod as CNI_IFNAME, the pod address, interfaces up,
//! the default route via the node address.
//!
//! Node-side work happens in the calling thread's namespace (the node's); pod-side work on
//! a thread inside the pod's namespace ([`PodNetns::run`]). Every step tolerates a
//! concurrent plugin doing the same to the shared bridge.

use crate::chain::Expected;
use crate::error::Error;
use crate::mismatch::Mismatch;
use crate::netlink::{DefaultRoute, Link, Netlink};
use crate::netns::PodNetns;
use ipnet::Ipv4Net;
use overlay_proto::api::Allocation;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest wait for a new veth end to become able to send (the kernel activates it
/// asynchronously, usually within milliseconds).
const READY_WAIT: Duration = Duration::from_secs(2);

/// Where one pod interface goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME: the interface name inside the pod.
    pub ifname: String,
    /// CNI_NETNS: the pod's namespace.
    pub netns: PathBuf,
    /// The node bridge.
    pub bridge: String,
}

/// What [`wire`] created (for the CNI result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wired {
    /// Host end of the veth pair, on the bridge.
    pub host_name: String,
    /// Its MAC.
    pub host_mac: String,
    /// Pod end (CNI_IFNAME).
    pub pod_name: String,
    /// Its MAC.
    pub pod_mac: String,
}

/// Wiring that went wrong in a way netlink did not report ([`Error::Wiring`]).
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// CNI_IFNAME is taken in the pod's namespace
    #[error("interface {ifname} already exists in {netns:?}")]
    PodInterfaceExists {
        /// CNI_IFNAME.
        ifname: String,
        /// The pod's namespace.
        netns: PathBuf,
    },
    /// the host veth was gone right after it was created
    #[error("veth {0} vanished right after creation")]
    VethVanished(String),
    /// the bridge was gone right after it was created
    #[error("bridge {0} vanished right after creation")]
    BridgeVanished(String),
    /// the bridge's name is taken by a device of another kind
    #[error("{name} exists but is a {kind} device, not a bridge")]
    NotABridge {
        /// The bridge's name.
        name: String,
        /// The device's kind ("plain" without one).
        kind: String,
    },
    /// the pod end of the veth is not in the pod's namespace
    #[error("{0} did not arrive in the pod's namespace")]
    NotInPod(String),
    /// the pod has a default route already (another interface plugin came first)
    #[error("the pod already has a default route")]
    DefaultRouteExists,
    /// the thread entering the pod's namespace panicked
    #[error("the thread working inside {0:?} panicked")]
    NetnsThreadPanicked(PathBuf),
}

/// The host end's name: `ovl` and 12 hex digits of SHA-256(`container_id/ifname`), so DEL
/// finds it from its arguments alone, even when the pod's namespace is gone.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let digest = Sha256::new()
        .chain_update(container_id.as_bytes())
        .chain_update(b"/")
        .chain_update(ifname.as_bytes())
        .finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("ovl{hex}")
}

/// True for names [`host_veth_name`] makes: `ovl` and 12 lowercase hex digits.
pub fn is_host_veth_name(name: &str) -> bool {
    name.len() == 15
        && name.starts_with("ovl")
        && name[3..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The bridge address: the gateway with the pod subnet's prefix length (e.g. `10.32.1.1/24`).
pub fn bridge_address(allocation: &Allocation) -> Ipv4Net {
    Ipv4Net::new(allocation.gateway, allocation.address.prefix_len())
        .unwrap_or_else(|_| Ipv4Net::from(allocation.gateway))
}

/// The bridge's MAC: `0a:58` and the gateway address (locally administered, like
/// ovn-kubernetes). Set explicitly, so the bridge keeps it instead of taking the lowest MAC
/// of its ports, which changes when a pod leaves and breaks every other pod's cached
/// gateway entry for seconds.
pub fn bridge_mac(allocation: &Allocation) -> [u8; 6] {
    let [a, b, c, d] = allocation.gateway.octets();
    [0x0a, 0x58, a, b, c, d]
}

/// Attaches the pod: bridge, veth pair, address, routes, with `mtu` on every device.
///
/// On failure after the veth pair exists, the pair is deleted again (the bridge, shared by
/// all pods of the node, stays).
pub fn wire(att: &Attachment, allocation: &Allocation, mtu: u32) -> Result<Wired, Error> {
    let ns = PodNetns::open_pod(&att.netns)?;
    let nl = Netlink::open()?;
    let bridge = ensure_bridge(&nl, &att.bridge, allocation, mtu)?;
    let host = host_veth_name(&att.container_id, &att.ifname);
    // Left over from an earlier ADD of the same container and interface: start afresh.
    if let Some(stale) = nl.link(&host)? {
        nl.del_link(stale.index)?;
    }
    nl.add_veth(&host, &att.ifname, ns.fd(), mtu).map_err(|e| {
        if e.is(libc::EEXIST) {
            Error::Wiring(WiringError::PodInterfaceExists {
                ifname: att.ifname.clone(),
                netns: att.netns.clone(),
            })
        } else {
            e.into()
        }
    })?;
    match finish(&nl, &ns, att, allocation, &host, &bridge) {
        Ok(wired) => Ok(wired),
        Err(e) => {
            if let Ok(Some(link)) = nl.link(&host) {
                let _ = nl.del_link(link.index);
            }
            Err(e)
        }
    }
}

/// Everything after the veth pair exists.
fn finish(
    nl: &Netlink,
    ns: &PodNetns,
    att: &Attachment,
    allocation: &Allocation,
    host: &str,
    bridge: &Link,
) -> Result<Wired, Error> {
    let host_link = nl
        .link(host)?
        .ok_or_else(|| Error::Wiring(WiringError::VethVanished(host.to_owned())))?;
    nl.set_up(host_link.index, None, Some(bridge.index))?;
    nl.set_hairpin(host_link.index)?;
    let ifname = att.ifname.as_str();
    let pod_mac = ns.run(|| configure_pod(ifname, allocation))?;
    // The address may have belonged to a pod that just left: the node must not keep
    // sending to that pod's MAC, and the new pod tells its other neighbours (best effort,
    // once the bridge forwards its frames).
    let pod_ip = allocation.address.addr();
    nl.del_neighbour(bridge.index, pod_ip)?;
    if nl.wait_for(host, READY_WAIT, |l| l.forwarding && l.ready())? {
        ns.run(|| announce(ifname, pod_ip))?;
    }
    Ok(Wired {
        host_name: host.to_owned(),
        host_mac: host_link.mac,
        pod_name: att.ifname.clone(),
        pod_mac,
    })
}

/// Makes `name` a bridge that is up, carries the gateway address (and no other IPv4
/// address: one left from an earlier block is removed) and has `mtu` and
/// [`bridge_mac`]. Returns it.
fn ensure_bridge(
    nl: &Netlink,
    name: &str,
    allocation: &Allocation,
    mtu: u32,
) -> Result<Link, Error> {
    let address = bridge_address(allocation);
    let mac = bridge_mac(allocation);
    let link = match nl.link(name)? {
        Some(link) => link,
        None => {
            // Another plugin may create it at the same moment; add_bridge accepts EEXIST.
            nl.add_bridge(name, mtu, mac)?;
            nl.link(name)?
                .ok_or_else(|| Error::Wiring(WiringError::BridgeVanished(name.to_owned())))?
        }
    };
    if link.kind.as_deref() != Some("bridge") {
        return Err(Error::Wiring(WiringError::NotABridge {
            name: name.to_owned(),
            kind: link.kind.unwrap_or_else(|| "plain".to_owned()),
        }));
    }
    let present = nl.addresses(link.index)?;
    if !present.contains(&address) {
        nl.add_address(link.index, address)?;
    }
    for stale in present.into_iter().filter(|a| *a != address) {
        nl.del_address(link.index, stale)?;
    }
    if link.mac != crate::netlink::format_mac(&mac) {
        nl.set_mac(link.index, mac)?;
    }
    if !link.up || link.mtu != mtu {
        nl.set_up(link.index, Some(mtu), None)?;
    }
    Ok(link)
}

/// Inside the pod: loopback up, address, interface up, default route, announcement.
/// Returns the interface's MAC.
fn configure_pod(ifname: &str, allocation: &Allocation) -> Result<String, Error> {
    let nl = Netlink::open()?;
    if let Some(lo) = nl.link("lo")? {
        if !lo.up {
            nl.set_up(lo.index, None, None)?;
        }
    }
    let link = nl
        .link(ifname)?
        .ok_or_else(|| Error::Wiring(WiringError::NotInPod(ifname.to_owned())))?;
    nl.add_address(link.index, allocation.address)?;
    nl.set_up(link.index, None, None)?;
    nl.add_default_route(allocation.gateway, link.index)
        .map_err(|e| {
            if e.is(libc::EEXIST) {
                Error::Wiring(WiringError::DefaultRouteExists)
            } else {
                e.into()
            }
        })?;
    Ok(link.mac)
}

/// Inside the pod: a gratuitous ARP for `ip` once `ifname` can send (best effort: without
/// it, neighbours that cached a previous owner's MAC relearn it within about 30 s).
fn announce(ifname: &str, ip: std::net::Ipv4Addr) -> Result<(), Error> {
    let nl = Netlink::open()?;
    if nl.wait_for(ifname, READY_WAIT, Link::ready)? {
        if let Some(link) = nl.link(ifname)? {
            if let Some(mac) = crate::garp::parse_mac(&link.mac) {
                let _ = crate::garp::announce(link.index, mac, ip);
            }
        }
    }
    Ok(())
}

/// Detaches a pod: deletes the host veth (which takes the pod end with it) or, when that is
/// gone but the pod's namespace still exists, a veth called `ifname` inside it. Nothing
/// to delete, a namespace that is gone: success.
pub fn unwire(container_id: &str, ifname: &str, netns: Option<&Path>) -> Result<(), Error> {
    let nl = Netlink::open()?;
    if let Some(link) = nl.link(&host_veth_name(container_id, ifname))? {
        nl.del_link(link.index)?;
        return Ok(());
    }
    let Some(path) = netns else {
        return Ok(());
    };
    let ns = match PodNetns::open_if_present(path) {
        Ok(Some(ns)) if !ns.is_current() => ns,
        // Gone, unreadable, or (misconfigured) the node's own namespace: nothing of ours.
        _ => return Ok(()),
    };
    let removed = ns.run(|| {
        let nl = Netlink::open()?;
        match nl.link(ifname)? {
            Some(link) if link.kind.as_deref() == Some("veth") => Ok(nl.del_link(link.index)?),
            _ => Ok(()),
        }
    });
    match removed {
        // A path that is no namespace any more (the runtime already tore it down).
        Err(Error::Netns { .. }) => Ok(()),
        other => other,
    }
}

/// Verifies that the pod is wired as [`wire`] left it, as far as `expect` (from the
/// `prevResult`) still lists it; the error names what is missing or different.
pub fn check(att: &Attachment, allocation: &Allocation, expect: &Expected) -> Result<(), Error> {
    let nl = Netlink::open()?;
    let gateway = bridge_address(allocation);
    let bridge = nl
        .link(&att.bridge)?
        .ok_or_else(|| Error::Check(Mismatch::BridgeMissing(att.bridge.clone())))?;
    if !bridge.up {
        return Err(Error::Check(Mismatch::BridgeDown(att.bridge.clone())));
    }
    if !nl.addresses(bridge.index)?.contains(&gateway) {
        return Err(Error::Check(Mismatch::BridgeAddress {
            bridge: att.bridge.clone(),
            gateway,
        }));
    }
    let host = host_veth_name(&att.container_id, &att.ifname);
    let host_link = nl
        .link(&host)?
        .ok_or_else(|| Error::Check(Mismatch::HostVethMissing(host.clone())))?;
    if host_link.controller != Some(bridge.index) {
        return Err(Error::Check(Mismatch::HostVethDetached {
            host,
            bridge: att.bridge.clone(),
        }));
    }
    if !host_link.up {
        return Err(Error::Check(Mismatch::HostVethDown(host)));
    }
    if let Some(mac) = expect.host_mac.as_deref().filter(|m| *m != host_link.mac) {
        return Err(Error::Check(Mismatch::HostVethMac {
            host,
            mac: host_link.mac,
            expected: mac.to_owned(),
        }));
    }
    let ns = PodNetns::open(&att.netns)?;
    let ifname = att.ifname.as_str();
    let netns = &att.netns;
    ns.run(|| {
        let nl = Netlink::open()?;
        let link = nl.link(ifname)?.ok_or_else(|| {
            Error::Check(Mismatch::PodMissing {
                ifname: ifname.to_owned(),
                netns: netns.clone(),
            })
        })?;
        if !link.up {
            return Err(Error::Check(Mismatch::PodDown {
                ifname: ifname.to_owned(),
                netns: netns.clone(),
            }));
        }
        if let Some(mac) = expect.pod_mac.as_deref().filter(|m| *m != link.mac) {
            return Err(Error::Check(Mismatch::PodMac {
                ifname: ifname.to_owned(),
                netns: netns.clone(),
                mac: link.mac,
                expected: mac.to_owned(),
            }));
        }
        if let Some(mtu) = expect.mtu.filter(|m| *m != link.mtu) {
            return Err(Error::Check(Mismatch::PodMtu {
                ifname: ifname.to_owned(),
                netns: netns.clone(),
                mtu: link.mtu,
                expected: mtu,
            }));
        }
        if !nl.addresses(link.index)?.contains(&allocation.address) {
            return Err(Error::Check(Mismatch::PodAddress {
                ifname: ifname.to_owned(),
                netns: netns.clone(),
                address: allocation.address,
            }));
        }
        if !expect.default_route {
            return Ok(());
        }
        let routes = nl.default_routes()?;
        let via_gateway =
            |r: &DefaultRoute| r.gateway == Some(allocation.gateway) && r.oif == Some(link.index);
        if !routes.iter().any(via_gateway) {
            return Err(Error::Check(Mismatch::NoDefaultRoute {
                netns: netns.clone(),
                gateway: allocation.gateway,
                ifname: ifname.to_owned(),
            }));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_short_stable_and_distinct() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a, host_veth_name("abc", "eth0"));
        assert_eq!(a.len(), 15, "{a}");
        assert!(a.starts_with("ovl"));
        assert!(a[3..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        assert_ne!(a, host_veth_name("abd", "eth0"));
        // Neither part may contain '/', so the joined key is unambiguous.
        assert_ne!(host_veth_name("ab", "ceth0"), host_veth_name("abc", "eth0"));
        assert!(crate::env::check_ifname(&a).is_ok());
        assert!(is_host_veth_name(&a));
        for other in [
            "ovl0",
            "ovlbr0",
            "ovl0123456789aB",
            "eth0123456789ab",
            "ovl0123456789abc",
        ] {
            assert!(!is_host_veth_name(other), "{other}");
        }
    }

    #[test]
    fn bridge_address_is_the_gateway_with_the_pod_prefix() {
        let allocation = Allocation {
            address: "10.32.1.2/24".parse().expect("net"),
            gateway: "10.32.1.1".parse().expect("ip"),
            cluster: "10.32.0.0/12".parse().expect("net"),
            mtu: 1410,
        };
        assert_eq!(
            bridge_address(&allocation),
            "10.32.1.1/24".parse::<Ipv4Net>().expect("net")
        );
        assert_eq!(bridge_mac(&allocation), [0x0a, 0x58, 10, 32, 1, 1]);
    }
}
