//! The routes view (`GET /status/routes`, `overlay-agent status routes`): for every block of
//! the cluster range that a peer owns, where this node sends packets for it.
//!
//! ```text
//! DESTINATION   OWNER  VIA                      HOPS
//! 10.32.0.0/12  -      dev ovl0 (kernel route)  -
//! 10.32.0.0/24  node0  local, dev ovl0          0
//! 10.32.1.0/24  node1  node1 10.99.0.2:6783     1
//! 10.32.2.0/24  node2  node1 10.99.0.2:6783     2
//! ```

use super::Status;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Where packets for one destination go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    /// The destination range.
    pub destination: Ipv4Net,
    /// The peer owning it (`None` for the cluster-wide kernel route).
    pub owner: Option<String>,
    /// True for this node's own block and the cluster route: delivered by the kernel.
    pub local: bool,
    /// True when packets for it leave (or are delivered) at all.
    pub reachable: bool,
    /// The neighbour packets leave through (the owner itself when direct).
    pub next_hop: Option<String>,
    /// That neighbour's underlay address, where the datagrams are sent.
    pub next_hop_address: Option<SocketAddr>,
    /// Overlay hops to the owner (0 for local).
    pub hops: u32,
    /// The device the kernel routes it to (the TUN), for local entries.
    pub device: Option<String>,
}

/// The routes of `s`: the cluster route, this node's block, then every peer's block, ordered
/// by address.
pub fn routes(s: &Status) -> Vec<RouteView> {
    let device = (!s.iface.is_empty()).then(|| s.iface.clone());
    let mut out = vec![RouteView {
        destination: s.cluster,
        owner: None,
        local: true,
        reachable: true,
        next_hop: None,
        next_hop_address: None,
        hops: 0,
        device: device.clone(),
    }];
    let mut blocks: Vec<RouteView> = s
        .peers
        .iter()
        .filter_map(|p| {
            let destination = p.subnet?;
            let next_hop_address = p
                .next_hop
                .as_deref()
                .and_then(|hop| s.peers.iter().find(|q| q.name == hop))
                .map(|q| q.address);
            Some(RouteView {
                destination,
                owner: Some(p.name.clone()),
                local: false,
                reachable: p.reachable,
                next_hop: p.next_hop.clone(),
                next_hop_address,
                hops: p.hops,
                device: None,
            })
        })
        .collect();
    if let Some(subnet) = s.subnet {
        blocks.push(RouteView {
            destination: subnet,
            owner: Some(s.name.clone()),
            local: true,
            reachable: true,
            next_hop: None,
            next_hop_address: None,
            hops: 0,
            device,
        });
    }
    blocks.sort_by_key(|r| r.destination);
    out.extend(blocks);
    out
}

/// A table, one line per route.
pub fn render(view: &[RouteView]) -> String {
    let rows: Vec<[String; 4]> = view
        .iter()
        .map(|r| {
            let via = match (r.local, r.owner.is_some(), &r.next_hop) {
                (true, false, _) => format!("dev {} (kernel route)", dev(r)),
                (true, true, _) => format!("local, dev {}", dev(r)),
                (false, _, Some(hop)) => match r.next_hop_address {
                    Some(addr) => format!("{hop} {addr}"),
                    None => hop.clone(),
                },
                (false, _, None) => "unreachable (dropped)".to_owned(),
            };
            let hops = if r.owner.is_none() || !r.reachable {
                "-".to_owned()
            } else {
                r.hops.to_string()
            };
            [
                r.destination.to_string(),
                r.owner.clone().unwrap_or_else(|| "-".to_owned()),
                via,
                hops,
            ]
        })
        .collect();
    let mut out = String::new();
    super::text::table(&mut out, ["DESTINATION", "OWNER", "VIA", "HOPS"], &rows);
    out
}

fn dev(r: &RouteView) -> &str {
    r.device.as_deref().unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::text::tests::sample;

    #[test]
    fn every_owned_block_with_its_next_hop_and_address() {
        let mut s = sample();
        s.iface = "ovl0".into();
        s.peers[1].subnet = Some("10.32.9.0/24".parse().expect("cidr"));
        let view = routes(&s);
        assert_eq!(
            render(&view),
            "\
DESTINATION   OWNER   VIA                       HOPS
10.32.0.0/12  -       dev ovl0 (kernel route)   -
10.32.5.0/24  node-a  local, dev ovl0           0
10.32.7.0/24  node-b  node-c 192.168.1.12:6783  2
10.32.9.0/24  node-c  unreachable (dropped)     -
"
        );
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json[2]["next_hop"], "node-c");
        assert_eq!(json[2]["next_hop_address"], "192.168.1.12:6783");
        assert_eq!(json[3]["reachable"], false);
    }
}
