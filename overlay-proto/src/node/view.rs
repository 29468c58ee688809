//! The active view: the few peers this node keeps control connections with, whatever the
//! size of the cluster.
//!
//! # Which peers
//! Every pair of peers has a *score*, a hash of their two ids that both compute alike. A node
//! prefers the [`ActiveView::preferred`] reachable peers with the lowest scores and dials
//! them (its targets are these peers and its seeds; see `targets.rs`). The scores are random
//! but fixed, so:
//! - the graph of preferred connections is a random graph of degree about twice
//!   `preferred`: connected and of diameter about log n / log(2·preferred) with overwhelming
//!   probability;
//! - it is stable: a join changes the preferred set of a node only when the newcomer beats one
//!   of its current preferred peers (probability `preferred / n`), a death only for the nodes
//!   that preferred the dead one;
//! - below `preferred + 1` nodes every node prefers every other: a full mesh, as before.
//!
//! # Keeping and closing connections
//! Each side tells the other whether it *needs* a connection ([`Message::Keep`]): it does when
//! the peer is in its preferred set, or while it is still joining (connected to none of its
//! preferred peers: a new node keeps its seed connection until its own view is up). A
//! connection neither side needs, older than [`JOIN_GRACE`], is closed by either side
//! ([`CloseReason::Unneeded`]); nobody redials it. A peer that never sent a `Keep` (an older
//! build) is taken to need every connection.
//!
//! # Room
//! A node holds at most [`ActiveView::max_connections`]. When a handshake completes with no
//! room left, it first closes a connection neither side needs, if any; otherwise it answers
//! the newcomer with [`Message::Redirect`] (the addresses of some of its neighbours) and
//! closes. A joining node dials the redirected addresses once each, so a crowd of nodes
//! joining through the same seed spreads over the cluster instead of queueing at the seed.
//!
//! # Partitions
//! A peer that is known but unreachable is not preferred (its place goes to a reachable peer),
//! so after a partition each side keeps a view of its own. To heal, every
//! [`RECONNECT_INTERVAL`] (jittered) a node dials one random peer it knows but cannot reach,
//! once: when it answers, both sides exchange what they know, see each other reachable again,
//! and their views re-form across the former cut.

use super::connections::Conn;
use super::{CloseReason, ConnId, Message, Node, Output};
use crate::peer::{PeerId, PeerName};
use std::collections::{BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A connection neither side needs is kept at least this long (a joining node pulls the
/// topology over it).
pub(super) const JOIN_GRACE: Duration = Duration::from_secs(5);
/// Mean interval between dials of an unreachable known peer (see the module docs).
pub(super) const RECONNECT_INTERVAL: Duration = Duration::from_secs(30);

/// The size of the active view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveView {
    /// How many peers a node prefers and dials.
    pub preferred: usize,
    /// Most control connections a node holds, inbound and outbound.
    pub max_connections: usize,
}

impl Default for ActiveView {
    fn default() -> Self {
        ActiveView {
            preferred: 6,
            max_connections: 32,
        }
    }
}

/// The score of the pair `a`, `b` (symmetric; lower is preferred).
pub(super) fn score(a: PeerId, b: PeerId) -> u64 {
    crate::rng::mix(a.0 ^ b.0)
}

/// A peer with its score.
type Scored<'a> = (u64, &'a PeerName);

/// The `k` lowest of the peers offered, in one pass, holding at most `k`.
struct Lowest<'a> {
    k: usize,
    /// A max-heap: the greatest of the `k` lowest so far on top.
    heap: BinaryHeap<Scored<'a>>,
}

impl<'a> Lowest<'a> {
    fn new(k: usize) -> Self {
        Lowest {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    fn offer(&mut self, scored: Scored<'a>) {
        if self.heap.len() < self.k {
            self.heap.push(scored);
        } else if self.heap.peek().is_some_and(|top| scored < *top) {
            self.heap.pop();
            self.heap.push(scored);
        }
    }

    /// The `n` lowest of those kept.
    fn take(self, n: usize) -> impl Iterator<Item = &'a PeerName> {
        let mut kept = self.heap.into_vec();
        kept.sort_unstable();
        kept.truncate(n);
        kept.into_iter().map(|(_, name)| name)
    }
}

impl Node {
    /// Recomputes the preferred set from the topology and the routes: the
    /// [`ActiveView::preferred`] reachable peers with the lowest scores; when fewer are
    /// reachable (a node cut off, or alone with a few), the unreachable ones with the lowest
    /// scores fill the set, so an isolated node keeps dialing its way back. One pass over the
    /// topology, keeping the lowest few of each kind (ties between scores go to the smaller
    /// name).
    pub(super) fn choose_preferred(&mut self) {
        let me = self.config.name.id();
        let k = self.config.view.preferred;
        let (mut reachable, mut unreachable) = (Lowest::new(k), Lowest::new(k));
        for (id, r) in self.topology.iter_with_ids() {
            if r.name == self.config.name || r.left {
                continue;
            }
            let scored = (score(me, id), &r.name);
            if self.routes.is_reachable(&r.name) {
                reachable.offer(scored);
            } else {
                unreachable.offer(scored);
            }
        }
        let fill = k - reachable.heap.len();
        self.preferred = reachable
            .take(k)
            .chain(unreachable.take(fill))
            .cloned()
            .collect();
    }

    /// True while this node is connected to none of the peers it prefers: it holds on to
    /// whatever connections it has (its seeds'), which are its only way into the cluster.
    /// One preferred connection is enough to leave this state: the others follow as their
    /// dials succeed, and a node that waited for all of them could hold a crowded seed's
    /// room forever.
    pub(super) fn joining(&self) -> bool {
        !self
            .conns
            .values()
            .any(|c| self.preferred.contains(&c.peer))
    }

    /// True if this node needs `conn` (see the module docs).
    fn needs(&self, conn: &Conn, joining: bool) -> bool {
        joining || self.preferred.contains(&conn.peer)
    }

    /// Tells every neighbour whether this node needs its connection, where that changed.
    pub(super) fn send_keep_flags(&mut self) {
        let joining = self.joining();
        let changed: Vec<(ConnId, bool)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| {
                let need = self.needs(c, joining);
                (c.keep_sent != Some(need)).then_some((*id, need))
            })
            .collect();
        for (id, need) in changed {
            if let Some(c) = self.conns.get_mut(&id) {
                c.keep_sent = Some(need);
            }
            self.send(id, Message::Keep(need));
        }
    }

    /// Connections neither side needs, older than [`JOIN_GRACE`].
    fn unneeded(&self, now: Instant) -> Vec<ConnId> {
        let joining = self.joining();
        self.conns
            .iter()
            .filter(|(_, c)| {
                !c.remote_keeps && !self.needs(c, joining) && now >= c.since + JOIN_GRACE
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Closes every connection neither side needs.
    pub(super) fn close_unneeded(&mut self, now: Instant) {
        for conn in self.unneeded(now) {
            self.close(conn, CloseReason::Unneeded, now);
        }
    }

    /// Forgets `conn` and tells the shell to close it.
    pub(super) fn close(&mut self, conn: ConnId, reason: CloseReason, now: Instant) {
        self.remove_conn(conn, now);
        self.outputs.push_back(Output::Close(conn, reason));
    }

    /// Makes room for one more connection: true if there is room, after closing one
    /// connection neither side needs if that was necessary.
    pub(super) fn make_room(&mut self, now: Instant) -> bool {
        if self.conns.len() < self.config.view.max_connections {
            return true;
        }
        match self.unneeded(now).first() {
            Some(&conn) => {
                self.close(conn, CloseReason::Unneeded, now);
                true
            }
            None => false,
        }
    }

    /// Where to send a node this node has no room for: the advertised addresses of up to
    /// [`crate::codec::MAX_REDIRECT`] neighbours, other than `except`.
    pub(super) fn redirect_addresses(&self, except: &PeerName) -> Vec<SocketAddr> {
        self.conns
            .values()
            .filter(|c| c.peer != *except)
            .map(|c| c.advertise)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(crate::codec::MAX_REDIRECT)
            .collect()
    }

    /// Dials one random known peer this node cannot reach, once, when it is time (see the
    /// module docs).
    pub(super) fn reconnect_due(&mut self, now: Instant) {
        if now < self.next_reconnect {
            return;
        }
        self.next_reconnect = now + self.rng.jitter(RECONNECT_INTERVAL, 0.5);
        let unreachable: Vec<SocketAddr> = self
            .topology
            .iter()
            .filter(|r| r.name != self.config.name && !r.left)
            .filter(|r| !self.routes.is_reachable(&r.name))
            .map(|r| r.advertise)
            .collect();
        if unreachable.is_empty() {
            return;
        }
        let addr = unreachable[self.rng.below(unreachable.len())];
        self.add_target_once(addr, now);
    }
}
