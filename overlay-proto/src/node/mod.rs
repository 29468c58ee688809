//! The control-plane state machine of one agent.
//!
//! A [`Node`] knows the topology, its connections and dial targets, and its block claim. The
//! I/O shell (the agent, or the simulation in the tests) feeds it events with the `handle_*`
//! methods and the current time, then drains [`Node::poll_output`] and arranges a call to
//! [`Node::handle_timeout`] at [`Node::poll_timeout`]. The node never blocks, never reads a
//! clock and never touches a socket.
//!
//! # What it does
//! - **Connections** (`connections.rs`): accepts handshakes, settles duplicate connections
//!   between the same two peers deterministically, sends heartbeats, closes connections that
//!   stay silent for [`Timing::dead_after`].
//! - **Discovery** (`targets.rs`): dials the seeds and the advertised address of every peer it
//!   learns about, with exponential backoff and jitter on failure.
//! - **Gossip** (`gossip.rs`): keeps its own record current (a new version on every change),
//!   merges records it receives, forwards what changed along a self-repairing broadcast tree
//!   (Plumtree: pushed whole on tree links, announced on the others), and reconciles with
//!   each neighbour by summaries and digests periodically and on connect.
//! - **Claims** (`claims.rs`): claims a block of the cluster range, following the rules in
//!   [`crate::ipam`].
//! - **Routes**: recomputes shortest paths whenever the topology changes and tells the shell
//!   to rebuild the forwarding table.

mod claims;
mod connections;
mod gossip;
mod targets;
mod types;
mod view;

pub use gossip::{GRAFT_AFTER, SUMMARY_SETTLE};
pub use types::*;
pub use view::ActiveView;

use crate::forwarding::ForwardingTable;
use crate::message::{Heartbeat, Hello, HelloBody, Message, PROTOCOL_MAX, PROTOCOL_MIN};
use crate::peer::PeerName;
use crate::rng::Rng;
use crate::routing::{compute_routes, Routes};
use crate::topology::{Claim, PeerRecord, Topology};
use connections::Conn;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use targets::Target;

/// How often housekeeping runs when nothing else is due.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Counters of the control plane, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeStats {
    /// Gossip messages received.
    pub gossip_received: u64,
    /// Gossip messages sent.
    pub gossip_sent: u64,
    /// Received records that changed the topology.
    pub records_merged: u64,
    /// Received records rejected by validation.
    pub records_rejected: u64,
    /// Connections closed because the peer went silent.
    pub heartbeat_timeouts: u64,
    /// Handshakes refused (self, duplicate, mismatched cluster).
    pub refused: u64,
    /// Times this node had to pick another block because its claim lost.
    pub claim_conflicts: u64,
    /// Grafts sent: records announced but not pushed in time (a broadcast tree link broke).
    #[serde(default)]
    pub grafts_sent: u64,
    /// Prunes sent: pushes that brought nothing new (a redundant broadcast path cut).
    #[serde(default)]
    pub prunes_sent: u64,
}

/// The control-plane state machine of one agent; see the module docs.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    /// Version of the own record last published.
    version: u64,
    /// The block this node claims (it may be losing it until it moves).
    asserted_claim: Option<Claim>,
    /// The claim last reported with [`Output::ClaimChanged`].
    winning_claim: Option<Claim>,
    /// May claim a block now (has seen a full topology, waited long enough, or has no seeds).
    claim_ready: bool,
    left: bool,
    started: Instant,
    topology: Topology,
    routes: Routes,
    topology_dirty: bool,
    /// When derived state was last recomputed from the topology.
    recomputed_at: Option<Instant>,
    /// When a deferred recomputation is due (see [`Timing::recompute_holddown`]).
    recompute_due: Option<Instant>,
    conns: BTreeMap<ConnId, Conn>,
    targets: BTreeMap<SocketAddr, Target>,
    /// The peers this node prefers to be connected to (see `view.rs`).
    preferred: BTreeSet<PeerName>,
    /// Advertised addresses of the preferred peers: the targets dialed on their own account.
    preferred_addrs: BTreeSet<SocketAddr>,
    /// When an unreachable known peer is dialed next (see `view.rs`).
    next_reconnect: Instant,
    /// When each peer was first seen unreachable (absent while reachable).
    unreachable_since: BTreeMap<PeerName, Instant>,
    next_full_gossip: Instant,
    /// The periodic summary was put off once because the topology had just changed (it is
    /// put off at most once in a row, so constant churn cannot starve anti-entropy).
    summary_postponed: bool,
    /// When the topology last changed.
    changed_at: Instant,
    next_housekeeping: Instant,
    /// Gossip was queued since the batching delay was last scheduled.
    gossip_queued: bool,
    /// When queued gossip is sent.
    gossip_due_at: Option<Instant>,
    /// Record versions announced by lazy neighbours and not received yet.
    missing: BTreeMap<PeerName, gossip::Missing>,
    outputs: VecDeque<Output>,
    rng: Rng,
    stats: NodeStats,
}

impl Node {
    /// A node that has just started.
    pub fn new(config: NodeConfig, now: Instant) -> Node {
        let mut rng = Rng::new(config.rng_seed);
        let first_full = now + rng.jitter(config.timing.full_gossip_interval, 0.5);
        let mut node = Node {
            version: config.initial_version,
            asserted_claim: config.claim,
            winning_claim: None,
            claim_ready: config.seeds.is_empty() || config.claim.is_some(),
            left: false,
            started: now,
            topology: Topology::new(),
            routes: Routes::default(),
            topology_dirty: true,
            recomputed_at: None,
            recompute_due: None,
            conns: BTreeMap::new(),
            targets: BTreeMap::new(),
            preferred: BTreeSet::new(),
            preferred_addrs: BTreeSet::new(),
            next_reconnect: now + view::RECONNECT_INTERVAL,
            unreachable_since: BTreeMap::new(),
            next_full_gossip: first_full,
            summary_postponed: false,
            changed_at: now,
            next_housekeeping: now,
            gossip_queued: false,
            gossip_due_at: None,
            missing: BTreeMap::new(),
            outputs: VecDeque::new(),
            rng,
            stats: NodeStats::default(),
            config,
        };
        if let Some(claim) = node.asserted_claim {
            if !node.claim_fits(&claim) {
                node.asserted_claim = None;
            }
        }
        let own = node.own_record();
        node.topology.merge(own);
        for seed in node.config.seeds.clone() {
            node.add_target_inner(seed, true, now);
        }
        node.after_change(now);
        node
    }

    /// The hello this node sends first on every connection.
    pub fn hello(&self) -> Hello {
        Hello {
            proto_min: PROTOCOL_MIN,
            proto_max: PROTOCOL_MAX,
            body: HelloBody {
                name: self.config.name.clone(),
                instance: self.config.instance,
                advertise: self.config.advertise,
                cluster: self.config.cluster,
                subnet_prefix: self.config.subnet_prefix,
            },
        }
    }

    /// This node's name.
    pub fn name(&self) -> &PeerName {
        &self.config.name
    }

    /// This node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// A dial (or its handshake) failed.
    pub fn handle_dial_failed(&mut self, addr: SocketAddr, error: String, now: Instant) {
        self.dial_failed(addr, error, now);
        self.after_change(now);
    }

    /// A message arrived on an accepted connection.
    pub fn handle_message(&mut self, conn: ConnId, msg: Message, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_rx = now;
        match msg {
            Message::Heartbeat(hb) => self.send(conn, Message::HeartbeatAck(hb)),
            Message::HeartbeatAck(hb) => c.heartbeat_answered(hb, now),
            Message::Gossip(g) => self.receive_gossip(conn, g),
            Message::Digest(d) => self.receive_digest(conn, d.entries, u64::MAX),
            Message::Summary(s) => self.receive_summary(conn, s, now),
            Message::SummaryCheck(s) => self.receive_summary_check(conn, s),
            Message::Buckets(hashes) => self.receive_buckets(conn, hashes),
            Message::RangeDigest(d) => self.receive_digest(conn, d.entries, d.mask),
            Message::Keep(keep) => {
                c.remote_keeps = keep;
                self.close_unneeded(now);
            }
            Message::Redirect(addrs) => {
                for addr in addrs {
                    self.add_target_once(addr, now);
                }
            }
            Message::Beat(beat) => {
                self.send(conn, Message::HeartbeatAck(Heartbeat { seq: beat.seq }));
                self.receive_announcements(conn, beat.have, now);
            }
            Message::Graft(names) => self.receive_graft(conn, names),
            Message::Prune => self.receive_prune(conn),
            Message::Leave => {
                if let Some(peer) = self.conns.get(&conn).map(|c| c.peer.clone()) {
                    self.peer_leaving(&peer, now);
                }
                self.remove_conn(conn, now);
                self.outputs
                    .push_back(Output::Close(conn, CloseReason::PeerLeft));
            }
        }
        self.after_change(now);
    }

    /// Time passed; call at [`Node::poll_timeout`] (calling earlier is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.check_connections(now);
        if now >= self.started + self.config.timing.claim_wait {
            self.allow_claim();
        }
        if now >= self.next_full_gossip {
            let settled = self.changed_at + SUMMARY_SETTLE;
            if now < settled && !self.summary_postponed {
                // Changes are still spreading: a summary now would differ for nothing.
                self.summary_postponed = true;
                self.next_full_gossip = settled;
            } else {
                self.summary_postponed = false;
                self.send_summary_to_all();
                self.next_full_gossip = now
                    + self
                        .rng
                        .jitter(self.config.timing.full_gossip_interval, 0.2);
            }
        }
        self.flush_gossip(now);
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            // Waiting to claim (at start, or for a block gone for good): try again.
            if self.asserted_claim.is_none() {
                self.check_claim(now);
            }
            self.close_unneeded(now);
            self.reconnect_due(now);
        }
        self.after_change(now);
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        let mut next = self.next_full_gossip.min(self.next_housekeeping);
        if !self.claim_ready {
            next = next.min(self.started + self.config.timing.claim_wait);
        }
        for c in self.conns.values() {
            next = next.min(c.next_deadline(&self.config.timing));
        }
        if let Some(t) = self.gossip_due() {
            next = next.min(t);
        }
        if let Some(t) = self.recompute_due {
            next = next.min(t);
        }
        for (addr, t) in &self.targets {
            if let Some(at) = self.target_due(addr, t) {
                next = next.min(at);
            }
        }
        Some(next)
    }

    /// The next thing to do; call until `None` after every `handle_*`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Adds an address to dial (e.g. from the control API).
    pub fn add_target(&mut self, addr: SocketAddr, now: Instant) {
        self.add_target_inner(addr, true, now);
        self.after_change(now);
    }

    /// Shut down on purpose: tell every neighbour, then close every connection.
    ///
    /// The shell should deliver the queued sends before closing the connections.
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.left = true;
        self.publish_self();
        // Pushed to every neighbour, lazy ones too: no heartbeat will announce it later.
        let name = self.config.name.clone();
        for c in self.conns.values_mut() {
            c.pending_lazy.remove(&name);
            c.pending_gossip.insert(name.clone());
        }
        self.flush_gossip_now();
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.send(conn, Message::Leave);
            self.conns.remove(&conn);
            self.outputs
                .push_back(Output::Close(conn, CloseReason::Leaving));
        }
        self.targets.clear();
        self.after_change(now);
    }

    /// True once [`Node::leave`] was called.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// The merged topology (this node's own record included).
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Current routes.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// The block this node owns now (its claim, when it wins).
    pub fn claim(&self) -> Option<Claim> {
        self.winning_claim
    }

    /// Control-plane counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// The forwarding table for the data path.
    pub fn forwarding_table(&self) -> ForwardingTable {
        let extra: Vec<SocketAddr> = self
            .conns
            .values()
            .map(|c| SocketAddr::new(c.remote.ip(), c.advertise.port()))
            .collect();
        ForwardingTable::build(
            &self.config.name,
            &self.topology,
            &self.routes,
            self.config.cluster,
            self.config.subnet_prefix,
            &extra,
        )
    }

    /// Established connections.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.conns
            .iter()
            .map(|(id, c)| ConnectionInfo {
                conn: *id,
                peer: c.peer.clone(),
                direction: c.direction,
                remote: c.remote,
                rtt: c.rtt,
                since: c.since,
            })
            .collect()
    }

    /// Dial targets.
    pub fn targets(&self) -> Vec<TargetInfo> {
        self.targets.iter().map(|(addr, t)| t.info(*addr)).collect()
    }

    /// Peers that are unreachable now, with the time they were first seen so.
    pub fn unreachable_since(&self, peer: &PeerName) -> Option<Instant> {
        self.unreachable_since.get(peer).copied()
    }

    /// This node's record as it should be now (version as last published).
    fn own_record(&self) -> PeerRecord {
        let connections: Vec<PeerName> = if self.left {
            Vec::new()
        } else {
            let set: BTreeSet<&PeerName> = self.conns.values().map(|c| &c.peer).collect();
            set.into_iter().cloned().collect()
        };
        PeerRecord {
            name: self.config.name.clone(),
            version: self.version,
            instance: self.config.instance,
            advertise: self.config.advertise,
            claim: self.asserted_claim,
            connections,
            left: self.left,
            identity: self.config.identity,
        }
    }

    /// Publishes a new version of the own record (after a change to it).
    fn publish_self(&mut self) {
        let held = self
            .topology
            .get(&self.config.name)
            .map_or(0, |r| r.version);
        self.version = self.version.max(held).saturating_add(1);
        let record = self.own_record();
        self.topology.merge(record);
        self.topology_dirty = true;
        let name = self.config.name.clone();
        self.queue_gossip(&name, None);
    }

    /// Queues an output message.
    fn send(&mut self, conn: ConnId, msg: Message) {
        if matches!(msg, Message::Gossip(_)) {
            self.stats.gossip_sent += 1;
        }
        self.outputs.push_back(Output::Send(conn, msg));
    }

    /// Brings derived state up to date after any input: routes, reachability, claims,
    /// targets, then tells the shell.
    fn after_change(&mut self, now: Instant) {
        let mut changed = false;
        if self.topology_dirty {
            self.changed_at = now;
            let holddown = self.config.timing.recompute_holddown;
            match self.recomputed_at {
                Some(at) if now < at + holddown => self.recompute_due = Some(at + holddown),
                _ => {
                    self.recomputed_at = Some(now);
                    self.recompute_due = None;
                }
            }
        }
        for _ in 0..4 {
            if !self.topology_dirty || self.recompute_due.is_some() {
                break;
            }
            changed = true;
            self.topology_dirty = false;
            let routes = compute_routes(&self.topology, &self.config.name);
            self.routes = routes;
            self.update_reachability(now);
            self.choose_preferred();
            // A claim change republishes the own record and dirties the topology again.
            self.check_claim(now);
            self.refresh_targets(now);
            self.push_routes_changed();
        }
        if !self.left {
            self.send_keep_flags();
            self.dial_due(now);
            self.schedule_gossip(now);
        }
        if !changed {
            return;
        }
        let claim = if crate::ipam::holds_block(&self.topology, &self.config.name) {
            self.asserted_claim
        } else {
            None
        };
        if claim != self.winning_claim {
            self.winning_claim = claim;
            self.outputs.push_back(Output::ClaimChanged(claim));
            self.push_routes_changed();
        }
    }

    /// The node has waited or learnt enough to claim a block.
    fn allow_claim(&mut self) {
        if !self.claim_ready {
            self.claim_ready = true;
            self.topology_dirty = true;
        }
    }

    fn push_routes_changed(&mut self) {
        if self.outputs.back() != Some(&Output::RoutesChanged) {
            self.outputs.push_back(Output::RoutesChanged);
        }
    }

    fn update_reachability(&mut self, now: Instant) {
        for record in self.topology.iter() {
            if record.name == self.config.name {
                continue;
            }
            if self.routes.is_reachable(&record.name) {
                self.unreachable_since.remove(&record.name);
            } else {
                self.unreachable_since
                    .entry(record.name.clone())
                    .or_insert(now);
            }
        }
    }
}

#[cfg(test)]
mod tests;
