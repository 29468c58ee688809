//! The one module that speaks rtnetlink (whose API changes often): a small synchronous
//! facade over a current-thread tokio runtime.
//!
//! A [`Netlink`] belongs to the network namespace of the thread that opened it; open one
//! per namespace. Every request is bounded by [`TIMEOUT`].

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    BridgePortState, InfoBridgePort, InfoData, InfoPortData, InfoVeth, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage, State,
};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteType};
use netlink_packet_route::AddressFamily;
use rtnetlink::{
    AddressMessageBuilder, Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Longest wait for the kernel to answer one request.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A failed netlink request: what was being done, and the kernel's answer.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {cause}")]
pub struct NetlinkError {
    /// What was being done, naming the device.
    pub what: String,
    /// The errno the kernel answered, if it answered one.
    pub errno: Option<i32>,
    cause: String,
}

impl NetlinkError {
    fn new(what: String, e: rtnetlink::Error) -> NetlinkError {
        let errno = match &e {
            rtnetlink::Error::NetlinkError(m) if m.raw_code() != 0 => Some(m.raw_code().abs()),
            _ => None,
        };
        let cause = match &e {
            rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
            other => other.to_string(),
        };
        NetlinkError { what, errno, cause }
    }

    fn other(what: String, cause: String) -> NetlinkError {
        NetlinkError {
            what,
            errno: None,
            cause,
        }
    }

    /// True when the kernel answered `errno` (e.g. `libc::EEXIST`).
    pub fn is(&self, errno: i32) -> bool {
        self.errno == Some(errno)
    }
}

/// What the plugin needs to know about a network device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Kind (`bridge`, `veth`...), `None` for plain devices like `lo`.
    pub kind: Option<String>,
    /// Hardware address, `aa:bb:cc:dd:ee:ff` (empty when it has none).
    pub mac: String,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Index of the bridge (or other controller) it is attached to.
    pub controller: Option<u32>,
    /// Operationally up (carrier, RFC 2863 "up").
    pub oper_up: bool,
    /// Its queueing discipline (`noop` until the kernel activated the device).
    pub qdisc: String,
    /// As a bridge port: in the forwarding state.
    pub forwarding: bool,
}

impl Link {
    /// True once the device can send: operationally up with its real qdisc attached.
    pub fn ready(&self) -> bool {
        self.oper_up && !self.qdisc.is_empty() && self.qdisc != "noop"
    }
}

/// An IPv4 default route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Next hop, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Output device index, if any.
    pub oif: Option<u32>,
}

/// A netlink connection in the namespace of the thread that opened it.
pub struct Netlink {
    rt: Runtime,
    handle: Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

impl Netlink {
    /// Opens a connection in the calling thread's network namespace.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let what = || "opening a netlink socket".to_owned();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| NetlinkError::other(what(), e.to_string()))?;
        let (connection, handle, _) = {
            let _context = rt.enter();
            rtnetlink::new_connection().map_err(|e| NetlinkError::other(what(), e.to_string()))?
        };
        rt.spawn(connection);
        Ok(Netlink { rt, handle })
    }

    /// Runs one request to completion, bounded by [`TIMEOUT`].
    fn run<T>(
        &self,
        what: impl Fn() -> String,
        request: impl Future<Output = Result<T, rtnetlink::Error>>,
    ) -> Result<T, NetlinkError> {
        // The timer has to be created inside the runtime.
        match self
            .rt
            .block_on(async { tokio::time::timeout(TIMEOUT, request).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(NetlinkError::new(what(), e)),
            Err(_) => Err(NetlinkError::other(
                what(),
                format!("no answer from the kernel within {TIMEOUT:?}"),
            )),
        }
    }

    /// The device called `name`, if there is one.
    pub fn link(&self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let stream = self.handle.link().get().match_name(name).execute();
        let request = async move { std::pin::pin!(stream).try_next().await };
        match self.run(|| format!("looking up {name}"), request) {
            Ok(msg) => Ok(msg.map(link_from)),
            Err(e) if e.is(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every device of the namespace.
    pub fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let request = self.handle.link().get().execute().try_collect::<Vec<_>>();
        let msgs = self.run(|| "listing devices".to_owned(), request)?;
        Ok(msgs.into_iter().map(link_from).collect())
    }

    /// Polls device `name` until `done` holds for it, for at most `limit`; returns whether
    /// it did.
    pub fn wait_for(
        &self,
        name: &str,
        limit: Duration,
        done: impl Fn(&Link) -> bool,
    ) -> Result<bool, NetlinkError> {
        let start = std::time::Instant::now();
        loop {
            if self.link(name)?.is_some_and(|l| done(&l)) {
                return Ok(true);
            }
            if start.elapsed() >= limit {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Forgets the neighbour entry for `ip` on device `index`; none is fine.
    pub fn del_neighbour(&self, index: u32, ip: Ipv4Addr) -> Result<(), NetlinkError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        let request = self.handle.neighbours().del(msg).execute();
        match self.run(
            || format!("forgetting neighbour {ip} on device {index}"),
            request,
        ) {
            Err(e) if e.is(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    /// Creates bridge `name` (up, with `mtu` and MAC `mac`); one that already exists is fine.
    pub fn add_bridge(&self, name: &str, mtu: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let msg = LinkBridge::new(name).mtu(mtu).address(mac.to_vec()).build();
        let request = self.handle.link().add(msg).execute();
        match self.run(|| format!("creating bridge {name}"), request) {
            Err(e) if e.is(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Creates veth pair `host` / `peer` with `mtu`, the `peer` end directly inside the
    /// namespace open at `peer_netns` (so it never exists under that name here).
    pub fn add_veth(
        &self,
        host: &str,
        peer: &str,
        peer_netns: RawFd,
        mtu: u32,
    ) -> Result<(), NetlinkError> {
        let peer_msg = LinkUnspec::new_with_name(peer)
            .mtu(mtu)
            .setns_by_fd(peer_netns)
            .build();
        let msg = LinkVeth::new(host, peer)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        let request = self.handle.link().add(msg).execute();
        self.run(|| format!("creating veth pair {host} / {peer}"), request)
    }

    /// Sets device `index` up, optionally with `mtu` and attached to bridge `controller`.
    pub fn set_up(
        &self,
        index: u32,
        mtu: Option<u32>,
        controller: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkUnspec::new_with_index(index).up();
        if let Some(mtu) = mtu {
            msg = msg.mtu(mtu);
        }
        if let Some(c) = controller {
            msg = msg.controller(c);
        }
        let request = self.handle.link().change(msg.build()).execute();
        self.run(|| format!("setting up device {index}"), request)
    }

    /// Sets the MAC of device `index`.
    pub fn set_mac(&self, index: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index)
            .address(mac.to_vec())
            .build();
        let request = self.handle.link().change(msg).execute();
        self.run(
            || format!("setting MAC {} on device {index}", format_mac(&mac)),
            request,
        )
    }

    /// Turns hairpin mode on for bridge port `index`.
    pub fn set_hairpin(&self, index: u32) -> Result<(), NetlinkError> {
        let msg = LinkBridgePort::new(index).hairpin(true).build();
        let request = self.handle.link().set_port(msg).execute();
        self.run(|| format!("turning hairpin on for device {index}"), request)
    }

    /// Deletes device `index` (a veth takes its peer with it); a missing one is fine.
    pub fn del_link(&self, index: u32) -> Result<(), NetlinkError> {
        let request = self.handle.link().del(index).execute();
        match self.run(|| format!("deleting device {index}"), request) {
            Err(e) if e.is(libc::ENODEV) => Ok(()),
            other => other,
        }
    }

    /// The IPv4 addresses of device `index`.
    pub fn addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, NetlinkError> {
        let request = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect::<Vec<_>>();
        let msgs = self.run(|| format!("listing addresses of device {index}"), request)?;
        let mut out = Vec::new();
        for msg in msgs {
            let local = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(v4)) => Some(*v4),
                _ => None,
            });
            let address = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(v4)) => Some(*v4),
                _ => None,
            });
            if let Some(ip) = local.or(address) {
                if let Ok(net) = Ipv4Net::new(ip, msg.header.prefix_len) {
                    out.push(net);
                }
            }
        }
        Ok(out)
    }

    /// Adds `net` to device `index`; already present is fine.
    pub fn add_address(&self, index: u32, net: Ipv4Net) -> Result<(), NetlinkError> {
        let request = self
            .handle
            .address()
            .add(index, IpAddr::V4(net.addr()), net.prefix_len())
            .execute();
        match self.run(|| format!("adding {net} to device {index}"), request) {
            Err(e) if e.is(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Removes `net` from device `index`; already gone is fine.
    pub fn del_address(&self, index: u32, net: Ipv4Net) -> Result<(), NetlinkError> {
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(net.addr(), net.prefix_len())
            .build();
        let request = self.handle.address().del(msg).execute();
        match self.run(|| format!("removing {net} from device {index}"), request) {
            Err(e) if e.is(libc::EADDRNOTAVAIL) => Ok(()),
            other => other,
        }
    }

    /// The IPv4 default routes of the main table.
    pub fn default_routes(&self) -> Result<Vec<DefaultRoute>, NetlinkError> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let request = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect::<Vec<_>>();
        let msgs = self.run(|| "listing routes".to_owned(), request)?;
        Ok(msgs
            .into_iter()
            .filter(|m| {
                m.header.destination_prefix_length == 0
                    && m.header.table == RouteHeader::RT_TABLE_MAIN
                    && m.header.kind == RouteType::Unicast
            })
            .map(|m| {
                let gw = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
                    _ => None,
                });
                let oif = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                DefaultRoute { gateway: gw, oif }
            })
            .collect())
    }

    /// Adds the IPv4 default route via `gateway` on device `index`.
    pub fn add_default_route(&self, gateway: Ipv4Addr, index: u32) -> Result<(), NetlinkError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .gateway(gateway)
            .output_interface(index)
            .build();
        let request = self.handle.route().add(msg).execute();
        self.run(
            || format!("adding the default route via {gateway} on device {index}"),
            request,
        )
    }
}

fn link_from(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        ..Link::default()
    };
    for attribute in msg.attributes {
        match attribute {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(mac) => link.mac = format_mac(&mac),
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::Controller(c) if c != 0 => link.controller = Some(c),
            LinkAttribute::OperState(state) => link.oper_up = state == State::Up,
            LinkAttribute::Qdisc(q) => link.qdisc = q,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                        LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                            link.forwarding =
                                port.contains(&InfoBridgePort::State(BridgePortState::Forwarding));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_lowercase_colon_separated() {
        assert_eq!(
            format_mac(&[0x0a, 0xff, 0, 1, 0x20, 0xab]),
            "0a:ff:00:01:20:ab"
        );
        assert_eq!(format_mac(&[]), "");
    }
}
