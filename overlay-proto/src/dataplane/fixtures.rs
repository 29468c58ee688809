//! Fixtures for the data plane's tests and fuzzers (in this crate's tests, and to other
//! crates with the `test-fixtures` feature): a three-peer cluster and a datagram builder.

use crate::forwarding::ForwardingTable;
use crate::header::{Header, HEADER_LEN};
use crate::peer::{PeerId, PeerName};
use crate::routing::compute_routes;
use crate::topology::{Claim, PeerRecord, Topology};
use std::net::SocketAddr;

/// One of the three test peers: name and host number `n` (underlay `10.99.0.n:6783`, block
/// `10.32.n.0/24`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(&'static str, u8);

/// Peer `a`: underlay 10.99.0.1, block 10.32.1.0/24.
pub const A: Peer = Peer("a", 1);
/// Peer `b`: underlay 10.99.0.2, block 10.32.2.0/24.
pub const B: Peer = Peer("b", 2);
/// Peer `c`: underlay 10.99.0.3, block 10.32.3.0/24.
pub const C: Peer = Peer("c", 3);

impl Peer {
    /// Its name.
    pub fn name(self) -> PeerName {
        PeerName::new(self.0).expect("valid name")
    }
    /// Its id, as in data headers.
    pub fn id(self) -> PeerId {
        self.name().id()
    }
    /// Its underlay address.
    pub fn underlay(self) -> SocketAddr {
        SocketAddr::from(([10, 99, 0, self.1], 6783))
    }
}

/// The table of `me` in a cluster of A, B and C (cluster 10.32.0.0/12, /24 blocks), fully
/// connected, or with A–B broken when `relayed` (C relays between them).
pub fn table_of(me: Peer, relayed: bool) -> ForwardingTable {
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
            identity: None,
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

/// `header` followed by `payload`.
pub fn datagram(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; HEADER_LEN + payload.len()];
    header.emit(&mut d).expect("room for the header");
    d[HEADER_LEN..].copy_from_slice(payload);
    d
}

/// An IPv4/UDP packet (header checksum set, UDP checksum 0) from `src:4000` to `dst:5000`.
pub fn ipv4_udp(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    overlay_testkit::packet::ipv4_udp(src.into(), dst.into(), 4000, 5000, payload)
}
