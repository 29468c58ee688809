//! What CHECK found different from what ADD left: [`Mismatch`] (the message of
//! [`Error::Check`](crate::Error::Check)), and [`PrevResult`] when the `prevResult` itself
//! disagrees with the agent.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// What CHECK found not as ADD left it.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    /// the `prevResult` does not describe this attachment as the agent holds it
    #[error("prevResult {0}")]
    PrevResult(PrevResult),
    /// the agent holds no address for the attachment
    #[error("the overlay agent holds no address for {container_id}/{ifname}")]
    NotHeld {
        /// CNI_CONTAINERID.
        container_id: String,
        /// CNI_IFNAME.
        ifname: String,
    },
    /// no bridge on the node
    #[error("bridge {0} is missing on the node")]
    BridgeMissing(String),
    /// the bridge is down
    #[error("bridge {0} is down")]
    BridgeDown(String),
    /// the bridge lacks the node address (the pods' gateway)
    #[error("bridge {bridge} does not carry the node address {gateway}")]
    BridgeAddress {
        /// The bridge.
        bridge: String,
        /// The node address, with the pods' prefix.
        gateway: ipnet::Ipv4Net,
    },
    /// no host end of the veth
    #[error("host veth {0} is missing on the node")]
    HostVethMissing(String),
    /// the host end is not on the bridge
    #[error("host veth {host} is not attached to bridge {bridge}")]
    HostVethDetached {
        /// The host veth.
        host: String,
        /// The bridge.
        bridge: String,
    },
    /// the host end is down
    #[error("host veth {0} is down")]
    HostVethDown(String),
    /// the host end's MAC is not the result's
    #[error("host veth {host} has MAC {mac}, the result says {expected}")]
    HostVethMac {
        /// The host veth.
        host: String,
        /// Its MAC.
        mac: String,
        /// The MAC in the `prevResult`.
        expected: String,
    },
    /// no pod interface
    #[error("interface {ifname} is missing in {}", netns.display())]
    PodMissing {
        /// CNI_IFNAME.
        ifname: String,
        /// The pod's namespace.
        netns: PathBuf,
    },
    /// the pod interface is down
    #[error("interface {ifname} in {} is down", netns.display())]
    PodDown {
        /// CNI_IFNAME.
        ifname: String,
        /// The pod's namespace.
        netns: PathBuf,
    },
    /// the pod interface's MAC is not the result's
    #[error("interface {ifname} in {} has MAC {mac}, the result says {expected}", netns.display())]
    PodMac {
        /// CNI_IFNAME.
        ifname: String,
        /// The pod's namespace.
        netns: PathBuf,
        /// Its MAC.
        mac: String,
        /// The MAC in the `prevResult`.
        expected: String,
    },
    /// the pod interface's MTU is not the result's
    #[error("interface {ifname} in {} has MTU {mtu}, the result says {expected}", netns.display())]
    PodMtu {
        /// CNI_IFNAME.
        ifname: String,
        /// The pod's namespace.
        netns: PathBuf,
        /// Its MTU.
        mtu: u32,
        /// The MTU in the `prevResult`.
        expected: u32,
    },
    /// the pod interface lacks the address the agent holds
    #[error("interface {ifname} in {} does not have address {address}", netns.display())]
    PodAddress {
        /// CNI_IFNAME.
        ifname: String,
        /// The pod's namespace.
        netns: PathBuf,
        /// The address the agent holds.
        address: ipnet::Ipv4Net,
    },
    /// the pod has no default route via the node address
    #[error("{} has no default route via {gateway} on {ifname}", netns.display())]
    NoDefaultRoute {
        /// The pod's namespace.
        netns: PathBuf,
        /// The node address.
        gateway: Ipv4Addr,
        /// CNI_IFNAME.
        ifname: String,
    },
}

/// How the `prevResult` disagrees with the attachment (after "prevResult ").
#[derive(Debug, thiserror::Error)]
pub enum PrevResult {
    /// no pod interface
    #[error("lists no interface {ifname} in {}", netns.display())]
    NoInterface {
        /// CNI_IFNAME.
        ifname: String,
        /// The pod's namespace.
        netns: PathBuf,
    },
    /// no host veth
    #[error("lists no host interface {0}")]
    NoHostInterface(String),
    /// not the address the agent holds
    #[error(
        "gives {ifname} {}, but the overlay agent holds {held} for it",
        listed_or_none(listed)
    )]
    Address {
        /// CNI_IFNAME.
        ifname: String,
        /// The IPv4 addresses it lists for the interface.
        listed: Vec<IpNet>,
        /// The address the agent holds.
        held: IpNet,
    },
    /// another address besides the agent's
    #[error("gives {ifname} {other} besides {held}, which the overlay agent does not hold")]
    ExtraAddress {
        /// CNI_IFNAME.
        ifname: String,
        /// The other address.
        other: IpNet,
        /// The address the agent holds.
        held: IpNet,
    },
    /// a gateway that is not the node address
    #[error("gives {held} gateway {listed}, but the node address is {gateway}")]
    Gateway {
        /// The address the agent holds.
        held: IpNet,
        /// The gateway it lists.
        listed: IpAddr,
        /// The node address.
        gateway: IpAddr,
    },
}

/// The addresses, comma-separated, or "no IPv4 address".
fn listed_or_none(listed: &[IpNet]) -> String {
    if listed.is_empty() {
        return "no IPv4 address".to_owned();
    }
    let texts: Vec<String> = listed.iter().map(IpNet::to_string).collect();
    texts.join(", ")
}
