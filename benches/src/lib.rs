//! Shared fixtures of the criterion benchmarks in `benches/` (one topic per file).
//!
//! Run them all with `cargo bench -p overlay-benches`; one with e.g.
//! `cargo bench -p overlay-benches --bench forwarding`.

use ipnet::Ipv4Net;
use overlay_proto::message::{Gossip, Message};
use overlay_proto::topology::{Claim, PeerRecord, Topology};
use overlay_proto::PeerName;
use std::net::{Ipv4Addr, SocketAddr};

/// The default cluster range.
pub fn cluster() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 32, 0, 0), 12).expect("valid prefix length")
}

/// The default block size.
pub const SUBNET_PREFIX: u8 = 24;

/// The name of peer `i`.
pub fn peer_name(i: usize) -> PeerName {
    PeerName::new(format!("peer-{i:05}")).expect("valid name")
}

/// The `/24` block of the cluster range with index `i`.
pub fn block(i: usize) -> Ipv4Net {
    let base = u32::from(cluster().network());
    let offset = u32::try_from(i).expect("small index") << (32 - SUBNET_PREFIX);
    Ipv4Net::new(Ipv4Addr::from(base + offset), SUBNET_PREFIX).expect("valid prefix length")
}

/// The record of peer `i` of `n`: owns block `i`, connected to the peers 1 and 10 positions
/// away on a ring (so most routes are relayed over several hops).
pub fn ring_record(i: usize, n: usize) -> PeerRecord {
    let mut connections: Vec<PeerName> = [1, 10, n - 1, n - 10]
        .iter()
        .map(|d| (i + d) % n)
        .filter(|&j| j != i)
        .map(peer_name)
        .collect();
    connections.sort();
    connections.dedup();
    let host = u32::try_from(i).expect("small index");
    PeerRecord {
        name: peer_name(i),
        version: 7,
        instance: 0x5eed_0000 + u64::from(host),
        advertise: SocketAddr::from((Ipv4Addr::from(0xc0a8_0000 + host), 6783)),
        claim: Some(Claim {
            block: block(i),
            epoch: 0,
        }),
        connections,
        left: false,
        identity: None,
    }
}

/// A topology of `n` peers (see [`ring_record`]); peer 0 is the local one.
pub fn ring_topology(n: usize) -> Topology {
    assert!(n > 20, "the ring needs more than 20 peers");
    let mut topology = Topology::new();
    for i in 0..n {
        topology.merge(ring_record(i, n));
    }
    topology
}

/// A full gossip of `n` records, as a peer of an `n`-node cluster sends periodically.
pub fn full_gossip(n: usize) -> Message {
    Message::Gossip(Gossip {
        full: true,
        records: ring_topology(n).iter().cloned().collect(),
    })
}

/// `count` pseudo-random addresses, each in one of the first `blocks` blocks of the cluster.
pub fn addresses_in_blocks(count: usize, blocks: usize) -> Vec<Ipv4Addr> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|_| {
            // xorshift64: deterministic, no dependency.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = block((x % blocks as u64) as usize);
            let host = (x >> 32) as u32 & 0xff;
            Ipv4Addr::from(u32::from(b.network()) | host)
        })
        .collect()
}
