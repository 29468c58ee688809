//! Shortest paths over the topology's bidirectional connections.
//!
//! An edge between two peers counts only when both records list the connection, so a
//! half-open or one-sided view never attracts traffic. Paths are found by breadth-first search
//! with neighbours visited in name order, so every agent with the same topology computes the
//! same routes.

use crate::peer::{PeerId, PeerName};
use crate::topology::{PeerRecord, Topology};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// How to reach one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The neighbour packets to the peer are sent to (the peer itself when direct).
    pub next_hop: PeerName,
    /// Number of overlay hops to the peer (1 when direct).
    pub hops: u32,
}

/// Routes from one peer to every peer it can reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    routes: BTreeMap<PeerName, Route>,
}

impl Routes {
    /// The route to `peer`, if it is reachable (never for the local peer itself).
    pub fn get(&self, peer: &PeerName) -> Option<&Route> {
        self.routes.get(peer)
    }

    /// True if `peer` can be reached.
    pub fn is_reachable(&self, peer: &PeerName) -> bool {
        self.routes.contains_key(peer)
    }

    /// Every reachable peer with its route, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerName, &Route)> {
        self.routes.iter()
    }

    /// Number of reachable peers.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when no peer is reachable.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// A hasher for keys that are hashes already ([`PeerId`]): passes the `u64` through.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Computes the route from `me` to every reachable peer.
///
/// The records are indexed once (the topology iterates them in name order, so index order is
/// name order and the visiting order, hence the tie-breaks, are those of a search over names);
/// the search itself then compares integers, not names.
pub fn compute_routes(topology: &Topology, me: &PeerName) -> Routes {
    let records: Vec<&PeerRecord> = topology.iter().collect();
    // Keyed by peer id (already a hash of the name, unique among peers as the data path
    // assumes), so a lookup hashes no string twice.
    let index: HashMap<PeerId, u32, BuildHasherDefault<IdHasher>> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((r.name.id(), u32::try_from(i).ok()?)))
        .collect();
    // Each record's listed connections as indices, sorted (names are sorted, so are indices).
    let listed: Vec<Vec<u32>> = records
        .iter()
        .map(|r| {
            r.connections
                .iter()
                .filter_map(|c| index.get(&c.id()).copied())
                .collect()
        })
        .collect();
    let mut routes: BTreeMap<PeerName, Route> = BTreeMap::new();
    let Some(&start) = index.get(&me.id()) else {
        return Routes { routes };
    };
    // Per index: (first hop, hops) once reached.
    let mut reached: Vec<Option<(u32, u32)>> = vec![None; records.len()];
    reached[start as usize] = Some((start, 0));
    let mut queue: VecDeque<u32> = VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        let (first_hop, hops) = reached[at as usize].unwrap_or((start, 0));
        for &next in &listed[at as usize] {
            let both_ways = listed[next as usize].binary_search(&at).is_ok();
            if reached[next as usize].is_some() || !both_ways {
                continue;
            }
            let first = if at == start { next } else { first_hop };
            reached[next as usize] = Some((first, hops + 1));
            queue.push_back(next);
        }
    }
    for (i, r) in reached.iter().enumerate() {
        if let Some((first, hops)) = *r {
            if i as u32 != start {
                routes.insert(
                    records[i].name.clone(),
                    Route {
                        next_hop: records[first as usize].name.clone(),
                        hops,
                    },
                );
            }
        }
    }
    Routes { routes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn name(s: &str) -> PeerName {
        PeerName::new(s).expect("valid name")
    }

    fn topo(edges: &[(&str, &[&str])]) -> Topology {
        let mut t = Topology::new();
        for (n, conns) in edges {
            let mut connections: Vec<PeerName> = conns.iter().map(|c| name(c)).collect();
            connections.sort();
            t.merge(PeerRecord {
                name: name(n),
                version: 1,
                instance: 1,
                advertise: SocketAddr::from(([10, 0, 0, 1], 6783)),
                claim: None,
                connections,
                left: false,
                identity: None,
            });
        }
        t
    }

    #[test]
    fn direct_neighbours_are_their_own_next_hop() {
        let t = topo(&[("a", &["b", "c"]), ("b", &["a"]), ("c", &["a"])]);
        let r = compute_routes(&t, &name("a"));
        assert_eq!(
            r.get(&name("b")).map(|r| (&r.next_hop, r.hops)),
            Some((&name("b"), 1))
        );
        assert_eq!(
            r.get(&name("c")).map(|r| (&r.next_hop, r.hops)),
            Some((&name("c"), 1))
        );
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn broken_direct_path_goes_through_the_third_peer() {
        // a-b blackholed: only a-c and c-b are established.
        let t = topo(&[("a", &["c"]), ("b", &["c"]), ("c", &["a", "b"])]);
        let r = compute_routes(&t, &name("a"));
        let to_b = r.get(&name("b")).expect("b reachable");
        assert_eq!((to_b.next_hop.as_str(), to_b.hops), ("c", 2));
    }

    #[test]
    fn one_sided_connections_are_not_used() {
        // a lists b but b does not list a (b has not noticed yet, or it is dead).
        let t = topo(&[("a", &["b", "c"]), ("b", &[]), ("c", &["a"])]);
        let r = compute_routes(&t, &name("a"));
        assert!(!r.is_reachable(&name("b")));
        assert!(r.is_reachable(&name("c")));
    }

    #[test]
    fn ties_break_by_name_so_every_agent_agrees() {
        // a reaches d through b or c, both two hops: b (smaller name) wins.
        let t = topo(&[
            ("a", &["b", "c"]),
            ("b", &["a", "d"]),
            ("c", &["a", "d"]),
            ("d", &["b", "c"]),
        ]);
        let r = compute_routes(&t, &name("a"));
        assert_eq!(r.get(&name("d")).map(|r| r.next_hop.as_str()), Some("b"));
    }

    #[test]
    fn long_chains_are_routed_hop_by_hop() {
        let t = topo(&[
            ("a", &["b"]),
            ("b", &["a", "c"]),
            ("c", &["b", "d"]),
            ("d", &["c"]),
        ]);
        let r = compute_routes(&t, &name("a"));
        let d = r.get(&name("d")).expect("d reachable");
        assert_eq!((d.next_hop.as_str(), d.hops), ("b", 3));
        let from_d = compute_routes(&t, &name("d"));
        assert_eq!(
            from_d.get(&name("a")).map(|r| r.next_hop.as_str()),
            Some("c")
        );
    }
}
