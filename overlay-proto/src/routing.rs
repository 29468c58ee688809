//! Shortest paths over the topology's bidirectional connections.
//!
//! An edge between two peers counts only when both records list the connection, so a
//! half-open or one-sided view never attracts traffic. Paths are found by breadth-first search
//! with neighbours visited in name order, so every agent with the same topology computes the
//! same routes.

use crate::peer::PeerName;
use crate::topology::Topology;
use std::collections::{BTreeMap, VecDeque};

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

/// Computes the route from `me` to every reachable peer.
pub fn compute_routes(topology: &Topology, me: &PeerName) -> Routes {
    let mut routes: BTreeMap<PeerName, Route> = BTreeMap::new();
    let mut queue: VecDeque<(&PeerName, Option<&PeerName>, u32)> = VecDeque::new();
    queue.push_back((me, None, 0));
    while let Some((at, first_hop, hops)) = queue.pop_front() {
        let Some(record) = topology.get(at) else {
            continue;
        };
        for next in &record.connections {
            if next == me || routes.contains_key(next) || !topology.is_bidirectional(at, next) {
                continue;
            }
            let first = first_hop.unwrap_or(next);
            routes.insert(
                next.clone(),
                Route {
                    next_hop: first.clone(),
                    hops: hops + 1,
                },
            );
            queue.push_back((next, Some(first), hops + 1));
        }
    }
    Routes { routes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::PeerRecord;
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
