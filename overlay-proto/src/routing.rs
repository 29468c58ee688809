//! Shortest paths over the topology's bidirectional connections.
//!
//! An edge between two peers counts only when both records list the connection, so a
//! half-open or one-sided view never attracts traffic. Paths are found by breadth-first search
//! with neighbours visited in name order, so every agent with the same topology computes the
//! same routes.

use crate::peer::{PeerId, PeerName};
use crate::topology::{Shared, Topology};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How to reach one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The neighbour packets to the peer are sent to (the peer itself when direct).
    pub next_hop: PeerName,
    /// Number of overlay hops to the peer (1 when direct).
    pub hops: u32,
}

/// Routes from one peer to every peer it can reach.
///
/// Compact, as a node holds one route per peer of the cluster: each reachable peer refers to
/// its record (shared with the topology, see [`Topology`]) and to one of the few distinct
/// routes (a neighbour and a number of hops).
#[derive(Default)]
pub struct Routes {
    /// Every reachable peer, ordered by name, with the index of its route in `table`.
    dests: Vec<(Shared, u32)>,
    /// The distinct routes.
    table: Vec<Route>,
    /// Where the last lookup found its peer: callers often look up every peer of the
    /// topology in name order, by the name in the topology's record, which is the one held
    /// here; the next lookup is then found at once (see [`Routes::find`]).
    hint: AtomicUsize,
}

impl Clone for Routes {
    fn clone(&self) -> Self {
        Routes {
            dests: self.dests.clone(),
            table: self.table.clone(),
            hint: AtomicUsize::new(self.hint.load(Ordering::Relaxed)),
        }
    }
}

impl Routes {
    /// The index of `peer` in `dests`.
    ///
    /// First at or just after the previous lookup's, when `peer` is the very name held there
    /// (the same memory: a name from the same shared record), else by a binary search.
    fn find(&self, peer: &PeerName) -> Option<usize> {
        let hint = self.hint.load(Ordering::Relaxed);
        let same = |i: usize| {
            self.dests
                .get(i)
                .is_some_and(|(s, _)| std::ptr::eq(&s.record().name, peer))
        };
        let found = if same(hint) {
            hint
        } else if same(hint + 1) {
            hint + 1
        } else {
            self.dests
                .binary_search_by(|(s, _)| s.record().name.cmp(peer))
                .ok()?
        };
        self.hint.store(found, Ordering::Relaxed);
        Some(found)
    }

    /// The route to `peer`, if it is reachable (never for the local peer itself).
    pub fn get(&self, peer: &PeerName) -> Option<&Route> {
        let (_, route) = self.dests.get(self.find(peer)?)?;
        self.table.get(*route as usize)
    }

    /// True if `peer` can be reached.
    pub fn is_reachable(&self, peer: &PeerName) -> bool {
        self.find(peer).is_some()
    }

    /// Every reachable peer with its route, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerName, &Route)> {
        self.dests
            .iter()
            .map(|(s, route)| (&s.record().name, &self.table[*route as usize]))
    }

    /// Number of reachable peers.
    pub fn len(&self) -> usize {
        self.dests.len()
    }

    /// True when no peer is reachable.
    pub fn is_empty(&self) -> bool {
        self.dests.is_empty()
    }
}

impl PartialEq for Routes {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Routes {}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
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

type IdMap<V> = HashMap<PeerId, V, BuildHasherDefault<IdHasher>>;

/// Computes the route from `me` to every reachable peer.
///
/// The records are indexed once (the topology iterates them in name order, so index order is
/// name order and the visiting order, hence the tie-breaks, are those of a search over names);
/// the search itself then compares integers, not names. The ids of the names are those the
/// topology computed when it stored each record: no name is hashed or copied here.
pub fn compute_routes(topology: &Topology, me: &PeerName) -> Routes {
    let entries: Vec<&Shared> = topology.entries().collect();
    let n = entries.len();
    // Keyed by peer id (already a hash of the name, unique among peers as the data path
    // assumes); with a repeated id, the last record holds it.
    let mut index: IdMap<u32> = IdMap::with_capacity_and_hasher(n, Default::default());
    for (i, e) in entries.iter().enumerate() {
        if let Ok(i) = u32::try_from(i) {
            index.insert(e.0.id, i);
        }
    }
    let Some(&start) = index.get(&me.id()) else {
        return Routes::default();
    };
    // Each record's listed connections as indices, sorted (names are sorted, so are indices):
    // the connections of record `i` are `listed[offsets[i]..offsets[i + 1]]`.
    let mut offsets: Vec<usize> = Vec::with_capacity(n + 1);
    let mut listed: Vec<u32> = Vec::new();
    offsets.push(0);
    for e in &entries {
        listed.extend(e.0.conn_ids.iter().filter_map(|c| index.get(c).copied()));
        offsets.push(listed.len());
    }
    let conns = |i: u32| &listed[offsets[i as usize]..offsets[i as usize + 1]];
    // Per index: (first hop, hops) once reached.
    let mut reached: Vec<Option<(u32, u32)>> = vec![None; n];
    reached[start as usize] = Some((start, 0));
    // Breadth first: `order` is the queue, and ends up holding every reached index.
    let mut order: Vec<u32> = Vec::with_capacity(n);
    order.push(start);
    let mut head = 0;
    while let Some(&at) = order.get(head) {
        head += 1;
        let (first_hop, hops) = reached[at as usize].unwrap_or((start, 0));
        for &next in conns(at) {
            let both_ways = conns(next).binary_search(&at).is_ok();
            if reached[next as usize].is_some() || !both_ways {
                continue;
            }
            let first = if at == start { next } else { first_hop };
            reached[next as usize] = Some((first, hops + 1));
            order.push(next);
        }
    }
    // The distinct routes: a neighbour and a number of hops.
    let mut table: Vec<Route> = Vec::new();
    let mut table_index: HashMap<(u32, u32), u32> = HashMap::new();
    let mut dests: Vec<(Shared, u32)> = Vec::with_capacity(order.len().saturating_sub(1));
    for (i, r) in reached.iter().enumerate() {
        let Some((first, hops)) = *r else { continue };
        if i as u32 == start {
            continue;
        }
        let route = *table_index.entry((first, hops)).or_insert_with(|| {
            table.push(Route {
                next_hop: entries[first as usize].record().name.clone(),
                hops,
            });
            (table.len() - 1) as u32
        });
        dests.push((entries[i].clone(), route));
    }
    Routes {
        dests,
        table,
        hint: AtomicUsize::new(0),
    }
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
    fn lookups_agree_in_any_order_and_with_any_copy_of_the_name() {
        let t = topo(&[
            ("a", &["b", "c"]),
            ("b", &["a", "d"]),
            ("c", &["a"]),
            ("d", &["b"]),
            ("e", &["a"]),
        ]);
        let r = compute_routes(&t, &name("a"));
        let expected = [None, Some(1), Some(1), Some(2), None];
        let hops = |n: &PeerName| r.get(n).map(|r| r.hops);
        // In name order by the topology's own names (found at the last lookup's place), in
        // reverse, and by copies of the names (found by searching).
        let names: Vec<&PeerName> = t.iter().map(|rec| &rec.name).collect();
        for (n, want) in names.iter().zip(expected) {
            assert_eq!((hops(n), r.is_reachable(n)), (want, want.is_some()), "{n}");
        }
        for (n, want) in names.iter().zip(expected).rev() {
            assert_eq!(hops(n), want, "{n}");
            assert_eq!(hops(&name(n.as_str())), want, "{n}");
        }
        assert_eq!(r.len(), 3);
        assert_eq!(
            r.iter()
                .map(|(n, r)| (n.as_str(), r.hops))
                .collect::<Vec<_>>(),
            [("b", 1), ("c", 1), ("d", 2)]
        );
        assert_eq!(r.clone(), r);
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
