//! Device, address and route setup through rtnetlink (being written; the API is fixed).

use ipnet::Ipv4Net;
use std::net::{IpAddr, Ipv4Addr};

/// Why a netlink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// placeholder while being written
    #[error("{0}")]
    Failed(String),
}

/// Overlay MTU for an underlay MTU: minus outer IPv4 (20), UDP (8) and the overlay header.
pub fn overlay_mtu(underlay_mtu: u32) -> u32 {
    underlay_mtu.saturating_sub(20 + 8 + overlay_proto::header::HEADER_LEN as u32)
}

/// MTU of the interface that holds address `addr` (in the calling thread's namespace).
pub async fn underlay_mtu(_addr: IpAddr) -> Result<u32, NetlinkError> {
    Err(NetlinkError::Failed("being written".into()))
}

/// Sets the TUN device `iface` up with `mtu`, gives it `node_address/32` (replacing any other
/// address; none when `None`) and routes `cluster` through it with that source address.
pub async fn configure_tun(
    _iface: &str,
    _mtu: u32,
    _node_address: Option<Ipv4Addr>,
    _cluster: Ipv4Net,
) -> Result<(), NetlinkError> {
    Err(NetlinkError::Failed("being written".into()))
}
