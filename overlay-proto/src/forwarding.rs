//! The forwarding table the data path consults for every packet.
//!
//! Built by the control plane from the topology and the routes ([`ForwardingTable::build`]),
//! then handed to the data path as an immutable value that is swapped atomically when the
//! topology changes. Lookups are binary searches over sorted vectors: no allocation, no lock.

use crate::ipam::block_owners;
use crate::peer::{PeerId, PeerName};
use crate::routing::Routes;
use crate::topology::Topology;
use ipnet::Ipv4Net;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where a datagram for some peer is sent next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// The neighbour that receives the datagram (the destination itself when direct).
    pub via: PeerId,
    /// The neighbour's underlay address.
    pub addr: SocketAddr,
}

/// Result of looking up an inner destination address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The address is in this node's own block.
    Local,
    /// The address belongs to `dst`'s block; send to `next_hop`.
    Remote {
        /// The agent owning the destination block.
        dst: PeerId,
        /// Where to send the datagram.
        next_hop: NextHop,
    },
    /// The address is in a block whose owner cannot be reached now.
    Unreachable,
    /// No peer owns the block of the address.
    NoOwner,
    /// The address is not in the cluster range.
    OutsideCluster,
}

/// Clusters with at most this many blocks get a dense block index (256 KiB at most).
const DENSE_BLOCKS: u32 = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerEntry {
    id: PeerId,
    block: Option<Ipv4Net>,
    next_hop: Option<NextHop>,
}

/// Immutable per-packet lookup structure; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingTable {
    me: PeerId,
    cluster: Ipv4Net,
    subnet_prefix: u8,
    local_block: Option<Ipv4Net>,
    /// Per block index of the cluster: 1 + the index in `peers` of its owner, 0 for none.
    /// Dense (one `u32` per block) when the cluster has at most [`DENSE_BLOCKS`] blocks, so a
    /// lookup is two loads; otherwise empty and `sparse_blocks` is searched instead.
    dense_blocks: Vec<u32>,
    /// (block index, 1 + owner's index in `peers`), sorted, for clusters with many blocks.
    sparse_blocks: Vec<(u32, u32)>,
    /// One entry per known peer, sorted by id.
    peers: Vec<PeerEntry>,
    /// Underlay addresses datagrams are accepted from, sorted.
    senders: Vec<SocketAddr>,
}

impl ForwardingTable {
    /// A table that knows no peer: everything but the local block is unroutable.
    pub fn empty(me: PeerId, cluster: Ipv4Net, subnet_prefix: u8) -> Self {
        ForwardingTable {
            me,
            cluster: cluster.trunc(),
            subnet_prefix,
            local_block: None,
            dense_blocks: Vec::new(),
            sparse_blocks: Vec::new(),
            peers: Vec::new(),
            senders: Vec::new(),
        }
    }

    /// Builds the table of `me` from the topology and its routes.
    ///
    /// Only winning block claims count (see [`crate::ipam`]). `extra_senders` are underlay
    /// addresses also accepted as datagram sources (e.g. the remote addresses of established
    /// control connections, with the peer's data port).
    pub fn build(
        me: &PeerName,
        topology: &Topology,
        routes: &Routes,
        cluster: Ipv4Net,
        subnet_prefix: u8,
        extra_senders: &[SocketAddr],
    ) -> Self {
        let mut table = ForwardingTable::empty(me.id(), cluster, subnet_prefix);
        let owners = block_owners(topology);
        let mut peer_blocks: Vec<(PeerId, Ipv4Net)> = Vec::new();
        for (block, (owner, _)) in &owners {
            if owner == me {
                table.local_block = Some(*block);
            } else {
                peer_blocks.push((owner.id(), *block));
            }
        }
        peer_blocks.sort_unstable();
        for record in topology.iter().filter(|r| r.name != *me) {
            let id = record.name.id();
            let block = peer_blocks
                .binary_search_by_key(&id, |(p, _)| *p)
                .ok()
                .map(|i| peer_blocks[i].1);
            let next_hop = routes.get(&record.name).and_then(|route| {
                let via = topology.get(&route.next_hop)?;
                Some(NextHop {
                    via: via.name.id(),
                    addr: via.advertise,
                })
            });
            table.peers.push(PeerEntry {
                id,
                block,
                next_hop,
            });
            if !record.left {
                table.senders.push(record.advertise);
            }
        }
        table.peers.sort_unstable_by_key(|p| p.id);
        table.index_blocks();
        table.senders.extend_from_slice(extra_senders);
        table.senders.sort_unstable();
        table.senders.dedup();
        table
    }

    /// Fills the block index from the peers' blocks.
    fn index_blocks(&mut self) {
        let count = crate::ipam::block_count(self.cluster, self.subnet_prefix);
        let dense = count <= DENSE_BLOCKS;
        if dense {
            self.dense_blocks = vec![0; count as usize];
        }
        for (slot, entry) in self.peers.iter().enumerate() {
            let Some(index) = entry.block.and_then(|b| self.block_index(b.network())) else {
                continue;
            };
            let slot = u32::try_from(slot + 1).unwrap_or(0);
            if dense {
                self.dense_blocks[index as usize] = slot;
            } else {
                self.sparse_blocks.push((index, slot));
            }
        }
        self.sparse_blocks.sort_unstable();
    }

    /// The local peer's id.
    pub fn me(&self) -> PeerId {
        self.me
    }

    /// The cluster range.
    pub fn cluster(&self) -> Ipv4Net {
        self.cluster
    }

    /// The block this node owns, if its claim currently wins.
    pub fn local_block(&self) -> Option<Ipv4Net> {
        self.local_block
    }

    fn block_index(&self, addr: Ipv4Addr) -> Option<u32> {
        if !self.cluster.contains(&addr) || self.subnet_prefix > 32 {
            return None;
        }
        let offset = u32::from(addr) - u32::from(self.cluster.network());
        Some(
            offset
                .checked_shr(32 - u32::from(self.subnet_prefix))
                .unwrap_or(0),
        )
    }

    /// Where a packet for inner destination `dst` goes.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Lookup {
        if self.local_block.is_some_and(|b| b.contains(&dst)) {
            return Lookup::Local;
        }
        let Some(index) = self.block_index(dst) else {
            return Lookup::OutsideCluster;
        };
        let slot = if self.dense_blocks.is_empty() {
            self.sparse_blocks
                .binary_search_by_key(&index, |(b, _)| *b)
                .map_or(0, |i| self.sparse_blocks[i].1)
        } else {
            self.dense_blocks.get(index as usize).copied().unwrap_or(0)
        };
        let Some(entry) = (slot as usize)
            .checked_sub(1)
            .and_then(|i| self.peers.get(i))
        else {
            return Lookup::NoOwner;
        };
        match entry.next_hop {
            Some(next_hop) => Lookup::Remote {
                dst: entry.id,
                next_hop,
            },
            None => Lookup::Unreachable,
        }
    }

    fn entry(&self, peer: PeerId) -> Option<&PeerEntry> {
        self.peers
            .binary_search_by_key(&peer, |p| p.id)
            .ok()
            .map(|i| &self.peers[i])
    }

    /// Where datagrams for `peer` are sent next, if it is reachable.
    #[inline]
    pub fn next_hop(&self, peer: PeerId) -> Option<NextHop> {
        self.entry(peer).and_then(|e| e.next_hop)
    }

    /// The block `peer` owns, if any.
    #[inline]
    pub fn block_of(&self, peer: PeerId) -> Option<Ipv4Net> {
        self.entry(peer).and_then(|e| e.block)
    }

    /// True if `peer` may have sent a packet with inner source address `src`.
    #[inline]
    pub fn source_allowed(&self, peer: PeerId, src: IpAddr) -> bool {
        match (src, self.block_of(peer)) {
            (IpAddr::V4(a), Some(block)) => block.contains(&a),
            _ => false,
        }
    }

    /// True if datagrams from underlay address `addr` are accepted.
    #[inline]
    pub fn accepts_sender(&self, addr: &SocketAddr) -> bool {
        self.senders.binary_search(addr).is_ok()
    }

    /// Number of peers (other than this node) in the table.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::compute_routes;
    use crate::topology::{Claim, PeerRecord};

    fn name(s: &str) -> PeerName {
        PeerName::new(s).expect("valid name")
    }
    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    fn record(n: &str, host: u8, block: Option<&str>, conns: &[&str]) -> PeerRecord {
        PeerRecord {
            name: name(n),
            version: 1,
            instance: 1,
            advertise: SocketAddr::from(([192, 168, 0, host], 6783)),
            claim: block.map(|b| Claim {
                block: net(b),
                epoch: 0,
            }),
            connections: conns.iter().map(|c| name(c)).collect(),
            left: false,
            identity: None,
        }
    }

    /// a-b blackholed; c relays.
    fn relayed() -> (Topology, ForwardingTable) {
        let mut t = Topology::new();
        t.merge(record("a", 1, Some("10.32.1.0/24"), &["c"]));
        t.merge(record("b", 2, Some("10.32.2.0/24"), &["c"]));
        t.merge(record("c", 3, Some("10.32.3.0/24"), &["a", "b"]));
        t.merge(record("d", 4, Some("10.32.4.0/24"), &[]));
        let routes = compute_routes(&t, &name("a"));
        let table = ForwardingTable::build(&name("a"), &t, &routes, net("10.32.0.0/12"), 24, &[]);
        (t, table)
    }

    #[test]
    fn lookups_follow_blocks_and_routes() {
        let (_, table) = relayed();
        let c = NextHop {
            via: name("c").id(),
            addr: SocketAddr::from(([192, 168, 0, 3], 6783)),
        };
        assert_eq!(table.local_block(), Some(net("10.32.1.0/24")));
        assert_eq!(table.lookup(Ipv4Addr::new(10, 32, 1, 9)), Lookup::Local);
        assert_eq!(
            table.lookup(Ipv4Addr::new(10, 32, 2, 9)),
            Lookup::Remote {
                dst: name("b").id(),
                next_hop: c
            }
        );
        assert_eq!(
            table.lookup(Ipv4Addr::new(10, 32, 3, 200)),
            Lookup::Remote {
                dst: name("c").id(),
                next_hop: c
            }
        );
        assert_eq!(
            table.lookup(Ipv4Addr::new(10, 32, 4, 1)),
            Lookup::Unreachable
        );
        assert_eq!(table.lookup(Ipv4Addr::new(10, 32, 9, 1)), Lookup::NoOwner);
        assert_eq!(
            table.lookup(Ipv4Addr::new(10, 48, 0, 1)),
            Lookup::OutsideCluster
        );
        assert_eq!(
            table.lookup(Ipv4Addr::new(8, 8, 8, 8)),
            Lookup::OutsideCluster
        );
    }

    #[test]
    fn anti_spoofing_and_sender_checks() {
        let (_, table) = relayed();
        let b = name("b").id();
        assert!(table.source_allowed(b, IpAddr::from([10, 32, 2, 7])));
        assert!(!table.source_allowed(b, IpAddr::from([10, 32, 3, 7])));
        assert!(!table.source_allowed(PeerId(42), IpAddr::from([10, 32, 2, 7])));
        assert!(table.accepts_sender(&SocketAddr::from(([192, 168, 0, 2], 6783))));
        assert!(!table.accepts_sender(&SocketAddr::from(([192, 168, 0, 2], 6784))));
        assert!(!table.accepts_sender(&SocketAddr::from(([192, 168, 0, 9], 6783))));
    }

    #[test]
    fn only_winning_claims_route() {
        let mut t = Topology::new();
        t.merge(record("a", 1, Some("10.32.1.0/24"), &["b", "c"]));
        t.merge(record("b", 2, Some("10.32.2.0/24"), &["a"]));
        // c lost the block to b (b < c) and has not moved yet.
        t.merge(record("c", 3, Some("10.32.2.0/24"), &["a"]));
        let routes = compute_routes(&t, &name("a"));
        let table = ForwardingTable::build(&name("a"), &t, &routes, net("10.32.0.0/12"), 24, &[]);
        assert!(matches!(
            table.lookup(Ipv4Addr::new(10, 32, 2, 5)),
            Lookup::Remote { dst, .. } if dst == name("b").id()
        ));
        assert_eq!(table.block_of(name("c").id()), None);
    }

    #[test]
    fn clusters_with_many_blocks_use_the_sparse_index_with_the_same_answers() {
        let mut t = Topology::new();
        t.merge(record("a", 1, Some("10.0.0.16/28"), &["b"]));
        t.merge(record("b", 2, Some("10.200.7.32/28"), &["a"]));
        let routes = compute_routes(&t, &name("a"));
        // A /8 of /28 blocks: 2^20 blocks, too many for the dense index.
        let table = ForwardingTable::build(&name("a"), &t, &routes, net("10.0.0.0/8"), 28, &[]);
        assert!(table.dense_blocks.is_empty());
        assert!(matches!(
            table.lookup(Ipv4Addr::new(10, 200, 7, 40)),
            Lookup::Remote { dst, .. } if dst == name("b").id()
        ));
        assert_eq!(table.lookup(Ipv4Addr::new(10, 200, 7, 50)), Lookup::NoOwner);
        assert_eq!(table.lookup(Ipv4Addr::new(10, 0, 0, 17)), Lookup::Local);
    }
}
