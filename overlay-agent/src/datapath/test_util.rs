//! Fixtures for the data-path unit tests: a three-peer cluster and packet builders.

use overlay_proto::forwarding::ForwardingTable;
use overlay_proto::header::{Header, HEADER_LEN};
use overlay_proto::peer::{PeerId, PeerName};
use overlay_proto::routing::compute_routes;
use overlay_proto::topology::{Claim, PeerRecord, Topology};
use std::net::SocketAddr;

/// One of the three test peers: name and host number (underlay 10.99.0.n, block 10.32.n.0/24).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(&'static str, u8);

pub(crate) const A: Peer = Peer("a", 1);
pub(crate) const B: Peer = Peer("b", 2);
pub(crate) const C: Peer = Peer("c", 3);

impl Peer {
    pub(crate) fn name(self) -> PeerName {
        PeerName::new(self.0).expect("valid name")
    }
    pub(crate) fn id(self) -> PeerId {
        self.name().id()
    }
    pub(crate) fn underlay(self) -> SocketAddr {
        SocketAddr::from(([10, 99, 0, self.1], 6783))
    }
}

/// The table of `me` in a cluster of A, B and C (cluster 10.32.0.0/12, /24 blocks), fully
/// connected, or with A–B broken when `relayed` (C relays between them).
pub(crate) fn table_of(me: Peer, relayed: bool) -> ForwardingTable {
    let conns = |p: Peer| -> Vec<PeerName> {
        [A, B, C]
            .into_iter()
            .filter(|q| q.0 != p.0)
            .filter(|q| !(relayed && matches!((p.0, q.0), ("a", "b") | ("b", "a"))))
            .map(Peer::name)
            .collect()
    };
    let mut topology = Topology::new();
    for p in [A, B, C] {
        topology.merge(PeerRecord {
            name: p.name(),
            version: 1,
            instance: 1,
            advertise: p.underlay(),
            claim: Some(Claim {
                block: format!("10.32.{}.0/24", p.1).parse().expect("block"),
                epoch: 0,
            }),
            connections: conns(p),
            left: false,
        });
    }
    let routes = compute_routes(&topology, &me.name());
    ForwardingTable::build(
        &me.name(),
        &topology,
        &routes,
        "10.32.0.0/12".parse().expect("cluster"),
        24,
        &[],
    )
}

/// An IPv4/UDP packet (header checksum set, UDP checksum 0) from `src` to `dst`.
pub(crate) fn ipv4_udp(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    overlay_testkit::packet::ipv4_udp(src.into(), dst.into(), 4000, 5000, payload)
}

/// `header` followed by `payload`.
pub(crate) fn datagram(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN + payload.len()];
    header.emit(&mut d).expect("room for the header");
    d[HEADER_LEN..].copy_from_slice(payload);
    d
}
