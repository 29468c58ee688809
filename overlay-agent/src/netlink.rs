//! Device, address and route setup through rtnetlink (the only module that uses rtnetlink).
//!
//! Every function opens its own netlink connection when it is first polled, so it acts on the
//! network namespace of the thread polling it (the tokio runtime's threads), and closes it
//! before returning. The connection is driven inside the returned future: no task is spawned,
//! so any runtime flavour works.

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// Why a netlink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A netlink socket cannot be opened.
    #[error("opening a netlink socket: {error}")]
    Socket {
        /// The OS error.
        error: io::Error,
    },
    /// No interface has this name.
    #[error("no network interface named {iface:?}")]
    NoSuchLink {
        /// The name looked for.
        iface: String,
    },
    /// No interface holds this address.
    #[error("no network interface holds address {addr} (the underlay MTU is looked up from the interface carrying the node's own address)")]
    NoInterfaceWithAddress {
        /// The address looked for.
        addr: IpAddr,
    },
    /// The kernel reported the interface without its MTU.
    #[error("interface index {index} was reported without an MTU")]
    NoMtu {
        /// The interface index.
        index: u32,
    },
    /// A request was refused or failed.
    #[error("{what}: {error}")]
    Request {
        /// What was being done, e.g. "adding 10.32.1.1/32 to ovl0".
        what: String,
        /// The kernel's error (errno) or a decoding problem.
        error: io::Error,
    },
    /// The netlink connection stopped before the work was done.
    #[error("the netlink connection closed unexpectedly")]
    ConnectionClosed,
}

/// Overlay MTU for an underlay MTU: minus outer IPv4 (20), UDP (8) and the overlay header.
pub fn overlay_mtu(underlay_mtu: u32) -> u32 {
    underlay_mtu.saturating_sub(20 + 8 + overlay_proto::header::HEADER_LEN as u32)
}

/// MTU of the interface that holds address `addr` (in the calling thread's namespace).
pub async fn underlay_mtu(addr: IpAddr) -> Result<u32, NetlinkError> {
    with_handle(|handle| async move {
        let mut addresses = handle.address().get().set_address_filter(addr).execute();
        let mut index = None;
        // Read the whole dump (the filter runs on our side), keeping the first match.
        while let Some(msg) = addresses
            .try_next()
            .await
            .map_err(request(|| format!("listing addresses to find {addr}")))?
        {
            index.get_or_insert(msg.header.index);
        }
        let index = index.ok_or(NetlinkError::NoInterfaceWithAddress { addr })?;
        let mut links = handle.link().get().match_index(index).execute();
        let mut mtu = None;
        while let Some(link) = links
            .try_next()
            .await
            .map_err(request(|| format!("reading interface index {index}")))?
        {
            mtu = mtu.or(link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            }));
        }
        mtu.ok_or(NetlinkError::NoMtu { index })
    })
    .await
}

/// Sets the TUN device `iface` up with `mtu` (and at most `segment::MAX_SEGMENTS` segments per
/// super-packet), gives it `node_address/32` (replacing any other
/// address; none when `None`) and routes `cluster` through it with that source address.
///
/// Idempotent: call it again after the node's claim changes. IPv6 link-local address
/// generation is turned off on the device (the overlay carries IPv4). The route is
/// `cluster dev iface scope link proto static [src node_address]`, replacing any route to
/// `cluster` in the main table; other `proto static` routes through the device (left by a run
/// with another cluster range: the device is persistent) are removed.
pub async fn configure_tun(
    iface: &str,
    mtu: u32,
    node_address: Option<Ipv4Addr>,
    cluster: Ipv4Net,
) -> Result<(), NetlinkError> {
    let cluster = cluster.trunc();
    with_handle(|handle| async move {
        let index = link_index(&handle, iface).await?;
        // The overlay carries IPv4: without an IPv6 link-local address (generation mode
        // "none", set before the device first goes up) the kernel sends no router
        // solicitations into the TUN, which the data path would count as unsupported. Best
        // effort: it fails where IPv6 is disabled, which is just as good.
        let no_ipv6 = LinkUnspec::new_with_index(index)
            .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]))
            .build();
        if let Err(e) = handle.link().change(no_ipv6).execute().await {
            tracing::debug!(%iface, error = %e, "cannot turn off IPv6 address generation");
        }
        // No super-packet from the kernel may need more segments than one split holds.
        let max_segs = overlay_proto::segment::MAX_SEGMENTS as u32;
        handle
            .link()
            .change(
                LinkUnspec::new_with_index(index)
                    .mtu(mtu)
                    .up()
                    .append_extra_attribute(LinkAttribute::GsoMaxSegs(max_segs))
                    .build(),
            )
            .execute()
            .await
            .map_err(request(|| {
                format!("setting MTU {mtu}, gso_max_segs {max_segs} and bringing {iface} up")
            }))?;

        let existing: Vec<AddressMessage> = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(request(|| format!("listing the addresses of {iface}")))?;
        // Add the new address before removing the old ones: removing the last IPv4 address of
        // a device flushes every route through it.
        if let Some(addr) = node_address {
            handle
                .address()
                .add(index, IpAddr::V4(addr), 32)
                .replace()
                .execute()
                .await
                .map_err(request(|| format!("adding {addr}/32 to {iface}")))?;
        }
        for msg in existing {
            let Some(addr) = ipv4_of(&msg) else { continue };
            if Some(addr) == node_address && msg.header.prefix_len == 32 {
                continue;
            }
            let prefix = msg.header.prefix_len;
            handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(request(|| format!("removing {addr}/{prefix} from {iface}")))?;
        }

        let mut route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(cluster.network(), cluster.prefix_len())
            .output_interface(index)
            .scope(RouteScope::Link);
        if let Some(addr) = node_address {
            route = route.pref_source(addr);
        }
        handle
            .route()
            .add(route.build())
            .replace()
            .execute()
            .await
            .map_err(request(|| format!("routing {cluster} through {iface}")))?;
        remove_stale_routes(&handle, iface, index, cluster).await
    })
    .await
}

/// Deletes the routes this agent added through the device (main table, `proto static`)
/// that are not the route to `cluster`: the device outlives the agent (hitless restarts),
/// so a route to a cluster range configured before would otherwise stay.
async fn remove_stale_routes(
    handle: &Handle,
    iface: &str,
    index: u32,
    cluster: Ipv4Net,
) -> Result<(), NetlinkError> {
    let routes: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(request(|| format!("listing the routes through {iface}")))?;
    for msg in routes {
        let h = &msg.header;
        let ours = h.address_family == AddressFamily::Inet
            && h.table == libc::RT_TABLE_MAIN
            && h.protocol == RouteProtocol::Static
            && msg.attributes.contains(&RouteAttribute::Oif(index));
        let dst = msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
            _ => None,
        });
        let is_cluster =
            dst == Some(cluster.network()) && h.destination_prefix_length == cluster.prefix_len();
        if !ours || is_cluster {
            continue;
        }
        let what = format!(
            "{}/{}",
            dst.unwrap_or(Ipv4Addr::UNSPECIFIED),
            h.destination_prefix_length
        );
        handle
            .route()
            .del(msg)
            .execute()
            .await
            .map_err(request(|| {
                format!("removing the stale route to {what} through {iface}")
            }))?;
        tracing::info!(%iface, route = %what, "removed a route of an earlier configuration");
    }
    Ok(())
}

/// What the kernel does with packets to one address (`ip route get fibmatch ADDR` and the
/// state of the device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    /// The matching route's destination prefix.
    pub prefix: Ipv4Net,
    /// A local route: the address is this host's own (`prefix` is then the address itself).
    pub local: bool,
    /// The route's gateway, if it has one.
    pub gateway: Option<Ipv4Addr>,
    /// The output device (none for multipath routes).
    pub device: Option<String>,
    /// The device is administratively up and running (carrier on).
    pub device_up: bool,
}

/// A bridge port the kernel would hand a packet to: the port of the bridge's forwarding
/// database entry for the MAC address its neighbour table holds for the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgePort {
    /// The port's name (e.g. a pod's host-side veth).
    pub name: String,
    /// The port is up and running.
    pub up: bool,
}

/// The route the kernel (of the calling thread's namespace) uses towards `dst`: the matching
/// FIB entry (`RTM_GETROUTE` with `RTM_F_FIB_MATCH`), and its device's name and state.
/// Unreachable, blackhole and prohibit routes count as no route (an error).
pub async fn route_to(dst: Ipv4Addr) -> Result<KernelRoute, NetlinkError> {
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteType};
    with_handle(|handle| async move {
        let what = || format!("looking up the kernel route to {dst}");
        let mut msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst, 32)
            .build();
        msg.header.flags = RouteFlags::FibMatch;
        let route = handle
            .route()
            .get(msg)
            .execute()
            .try_next()
            .await
            .map_err(request(what))?
            .ok_or_else(|| NetlinkError::Request {
                what: what(),
                error: io::Error::other("no answer"),
            })?;
        let kind = route.header.kind;
        if !matches!(kind, RouteType::Unicast | RouteType::Local) {
            return Err(NetlinkError::Request {
                what: what(),
                error: io::Error::other(format!("the route is of type {kind:?}")),
            });
        }
        let mut prefix_addr = Ipv4Addr::UNSPECIFIED;
        let mut gateway = None;
        let mut oif = None;
        for a in &route.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(v4)) => prefix_addr = *v4,
                RouteAttribute::Gateway(RouteAddress::Inet(v4)) => gateway = Some(*v4),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        let prefix = Ipv4Net::new(prefix_addr, route.header.destination_prefix_length)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| Ipv4Net::from(dst));
        let (mut device, mut device_up) = (None, false);
        if let Some(index) = oif {
            if let Some(link) = link_state(&handle, index).await? {
                (device, device_up) = (Some(link.0), link.1);
            }
        }
        Ok(KernelRoute {
            prefix,
            local: kind == RouteType::Local,
            gateway,
            device,
            device_up,
        })
    })
    .await
}

/// Name and state (up and running) of interface `index`, if it exists.
async fn link_state(handle: &Handle, index: u32) -> Result<Option<(String, bool)>, NetlinkError> {
    use rtnetlink::packet_route::link::LinkFlags;
    let mut links = handle.link().get().match_index(index).execute();
    let link = match links.try_next().await {
        Ok(Some(link)) => link,
        Ok(None) => return Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => return Ok(None),
        Err(e) => return Err(request(|| format!("looking up interface index {index}"))(e)),
    };
    let up =
        link.header.flags.contains(LinkFlags::Up) && link.header.flags.contains(LinkFlags::Running);
    Ok(link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .map(|name| (name, up)))
}

/// If interface `bridge` is a bridge that knows where `dst` is: the port its forwarding
/// database sends the MAC address of `dst` (from the neighbour table) to. `None` when the
/// neighbour is not resolved (yet), or the device is no bridge.
pub async fn bridge_port(bridge: &str, dst: Ipv4Addr) -> Result<Option<BridgePort>, NetlinkError> {
    use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
    with_handle(|handle| async move {
        let index = link_index(&handle, bridge).await?;
        let neighbours: Vec<_> = handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(request(|| format!("listing the neighbours on {bridge}")))?;
        let mac = neighbours
            .iter()
            .filter(|n| n.header.ifindex == index)
            .filter(|n| {
                n.attributes.iter().any(|a| {
                    matches!(a, NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) if *v4 == dst)
                })
            })
            .find_map(|n| {
                n.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::LinkLayerAddress(mac) if mac.len() == 6 => Some(mac.clone()),
                    _ => None,
                })
            });
        let Some(mac) = mac else { return Ok(None) };
        let fdb: Vec<_> = handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(request(|| format!("listing the forwarding database of {bridge}")))?;
        let port = fdb.iter().find_map(|n| {
            let on_bridge = n
                .attributes
                .iter()
                .any(|a| matches!(a, NeighbourAttribute::Controller(m) if *m == index));
            let same_mac = n
                .attributes
                .iter()
                .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(m) if *m == mac));
            (on_bridge && same_mac && n.header.ifindex != index).then_some(n.header.ifindex)
        });
        let Some(port) = port else { return Ok(None) };
        Ok(link_state(&handle, port)
            .await?
            .map(|(name, up)| BridgePort { name, up }))
    })
    .await
}

/// Runs `work` with a fresh connection, driving the connection alongside it.
async fn with_handle<T, F, Fut>(work: F) -> Result<T, NetlinkError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, NetlinkError>>,
{
    let (connection, handle, _messages) =
        rtnetlink::new_connection().map_err(|error| NetlinkError::Socket { error })?;
    tokio::select! {
        result = work(handle) => result,
        () = connection => Err(NetlinkError::ConnectionClosed),
    }
}

async fn link_index(handle: &Handle, iface: &str) -> Result<u32, NetlinkError> {
    let mut links = handle.link().get().match_name(iface).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        Ok(None) => Err(NetlinkError::NoSuchLink {
            iface: iface.to_owned(),
        }),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
            Err(NetlinkError::NoSuchLink {
                iface: iface.to_owned(),
            })
        }
        Err(e) => Err(request(|| format!("looking up interface {iface}"))(e)),
    }
}

/// The IPv4 address of an address message, if it is one.
fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Addr> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(v4)) => Some(*v4),
        _ => None,
    });
    local.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(v4)) => Some(*v4),
            _ => None,
        })
    })
}

/// Maps an rtnetlink error to [`NetlinkError::Request`] with what was being done.
fn request(what: impl FnOnce() -> String) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    move |e| NetlinkError::Request {
        what: what(),
        error: match e {
            rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
            other => io::Error::other(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_mtu_leaves_room_for_outer_headers() {
        assert_eq!(overlay_mtu(1500), 1500 - 20 - 8 - 20);
        assert_eq!(overlay_mtu(10), 0);
    }
}
