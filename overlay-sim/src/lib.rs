//! A deterministic in-process network of [`Node`]s: no sockets, simulated time, seeded loss.
//!
//! Connections are simulated as ordered byte streams with random latency; dials succeed or
//! fail at random; a message is lost at random before it is sent (never in the middle of
//! a stream). Every byte passes through the real wire code ([`wire`]): hellos and messages
//! are encoded and read back by the one frame reader, and with a cluster secret
//! ([`Sim::secret`], [`Sim::set_secrets`]) each connection first runs the real sans-IO Noise
//! handshake and carries its frames in sealed records. A handshake that does not complete
//! within [`HANDSHAKE_TIMEOUT`] fails, as in the agent.

mod wire;

pub use wire::SimAuth;

use overlay_proto::message::{Beat, Message};
use overlay_proto::node::{ActiveView, ConnId, Direction, Node, NodeConfig, Output, Timing};
use overlay_proto::topology::Claim;
use overlay_proto::PeerName;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use wire::{Out, Wire};

/// Longest wait for a connection's handshake and hellos (the agent's `HANDSHAKE_TIMEOUT`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// SplitMix64, for the simulation's own randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Network conditions.
#[derive(Debug, Clone)]
pub struct Conditions {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a dial fails.
    pub dial_failure: f64,
    /// Latency range (uniform) in microseconds.
    pub latency_us: (u64, u64),
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions {
            loss: 0.01,
            dial_failure: 0.05,
            latency_us: (200, 20_000),
        }
    }
}

#[derive(Debug)]
enum Event {
    /// Node `node`'s timer, set for `at`: ignored unless it is still the node's timer (see
    /// [`Sim::after`]).
    Timer {
        node: usize,
        at: Instant,
    },
    /// The handshake of this end must be over by now.
    HandshakeDeadline {
        node: usize,
        conn: ConnId,
    },
    DialFailed {
        node: usize,
        addr: SocketAddr,
    },
    Deliver {
        node: usize,
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Closed {
        node: usize,
        conn: ConnId,
        /// Whether the node knew the connection (its hello had arrived).
        up: bool,
        /// The address dialed, when outbound.
        dialed: Option<SocketAddr>,
    },
}

/// An event due at `at` (nanoseconds after [`Sim::t0`]), the `seq`-th scheduled, held in
/// `slot` of [`Sim::payloads`] (small, so that the heap moves little memory).
#[derive(Debug, Clone, Copy)]
struct Scheduled {
    at: u64,
    seq: u64,
    slot: u32,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed: the earliest event is the greatest, on top of the (max-)heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// `at` in nanoseconds after `t0` (simulated time never goes before its start).
fn nanos_since(t0: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(t0).as_nanos()).unwrap_or(u64::MAX)
}

/// One end of a connection.
struct Link {
    /// The other end.
    peer: (usize, ConnId),
    wire: Wire,
    direction: Direction,
    dialed: Option<SocketAddr>,
}

/// Control traffic of one node, counted on the wire (frames and handshake bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages sent.
    pub sent_msgs: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Messages received.
    pub recv_msgs: u64,
    /// Bytes received (frames and handshake bytes).
    pub recv_bytes: u64,
    /// Messages other than heartbeats sent to this node (counted when sent).
    pub gossip_recv_msgs: u64,
    /// Bytes of the messages other than heartbeats sent to this node (counted when sent).
    pub gossip_recv_bytes: u64,
    /// Of the messages sent, heartbeats and their answers.
    pub heartbeat_msgs: u64,
    /// Bytes of the heartbeats and answers sent, without the announcements heartbeats carry
    /// (those count as gossip bytes, sent and received).
    pub heartbeat_bytes: u64,
}

/// The bytes a beat's announcements add to a bare heartbeat of the same sequence number.
fn announcement_bytes(beat: &Beat) -> u64 {
    let len = |b: &Beat| {
        let mut out = Vec::new();
        overlay_proto::codec::encode_message(&Message::Beat(b.clone()), &mut out)
            .map_or(0, |()| out.len() as u64)
    };
    let bare = Beat {
        seq: beat.seq,
        have: Vec::new(),
    };
    len(beat).saturating_sub(len(&bare))
}

/// One simulated agent: its state machine while running, and what outlives a restart.
pub struct SimNode {
    pub node: Option<Node>,
    pub addr: SocketAddr,
    pub name: PeerName,
    /// Last claim the node reported (what the agent would persist).
    pub persisted: Option<Claim>,
    pub seeds: Vec<SocketAddr>,
    /// Identity and secrets, when the node authenticates its connections.
    pub auth: Option<SimAuth>,
    /// Inbound handshakes refused because the peer holds no accepted secret.
    pub refused_bad_secret: u64,
    /// Inbound connections refused for another reason (malformed bytes).
    pub refused_other: u64,
    /// Why the last inbound connection was refused.
    pub last_refusal: Option<String>,
    /// Control traffic this node sent and received (messages and bytes on the wire).
    pub traffic: Traffic,
    timer_at: Option<Instant>,
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("running", &self.node.is_some())
            .field("traffic", &self.traffic)
            .finish_non_exhaustive()
    }
}

/// The simulated network.
pub struct Sim {
    pub t0: Instant,
    pub now: Instant,
    pub nodes: Vec<SimNode>,
    pub conditions: Conditions,
    pub timing: Timing,
    /// The active view of the nodes started from now on.
    pub view: ActiveView,
    /// The cluster range every node uses (blocks are /24).
    pub cluster: ipnet::Ipv4Net,
    rng: Rng,
    seq: u64,
    /// Pending events, the earliest (then the first scheduled) on top.
    events: BinaryHeap<Scheduled>,
    /// The pending events' payloads, by slot; `free` lists the empty slots.
    payloads: Vec<Option<Event>>,
    free: Vec<u32>,
    /// The cluster secret of the nodes added from now on (`None`: plain connections).
    pub secret: Option<String>,
    /// (node, conn) → that end; present while both ends may talk.
    links: BTreeMap<(usize, ConnId), Link>,
    /// Last delivery time per directed link, to keep each connection's messages in order.
    last_delivery: BTreeMap<(usize, ConnId), Instant>,
    /// Pairs of nodes that cannot reach each other.
    pub cut: BTreeSet<(usize, usize)>,
    next_conn: ConnId,
    pub messages: u64,
    pub bytes: u64,
    /// Connections closed by a node, by reason (its `Display`).
    pub closes: BTreeMap<String, u64>,
    /// Messages sent, by kind.
    pub sent_by_kind: BTreeMap<&'static str, (u64, u64)>,
}

pub fn name(i: usize) -> PeerName {
    PeerName::new(format!("node-{i:03}")).expect("valid name")
}

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 99, (i / 250) as u8, (i % 250 + 1) as u8], 6783))
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("elapsed", &self.elapsed())
            .field("nodes", &self.nodes.len())
            .field("messages", &self.messages)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Sim {
    pub fn new(seed: u64, conditions: Conditions) -> Sim {
        // Thousands of nodes hold the same records: share them (see `share_records`).
        overlay_proto::topology::share_records(true);
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            nodes: Vec::new(),
            conditions,
            timing: Timing::default(),
            view: ActiveView::default(),
            cluster: "10.32.0.0/12".parse().expect("cidr"),
            rng: Rng::new(seed),
            seq: 0,
            events: BinaryHeap::new(),
            payloads: Vec::new(),
            free: Vec::new(),
            secret: None,
            links: BTreeMap::new(),
            last_delivery: BTreeMap::new(),
            cut: BTreeSet::new(),
            next_conn: 1,
            messages: 0,
            bytes: 0,
            closes: BTreeMap::new(),
            sent_by_kind: BTreeMap::new(),
        }
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Adds node `i` (not started) with the given seed nodes.
    pub fn add_node(&mut self, seeds: &[usize]) -> usize {
        let i = self.nodes.len();
        self.nodes.push(SimNode {
            node: None,
            addr: addr(i),
            name: name(i),
            persisted: None,
            seeds: seeds.iter().map(|&s| addr(s)).collect(),
            auth: self.secret.as_deref().map(|s| SimAuth::new(&[s])),
            refused_bad_secret: 0,
            refused_other: 0,
            last_refusal: None,
            traffic: Traffic::default(),
            timer_at: None,
        });
        i
    }

    /// Gives node `i` these secrets (current first, then the next one of a rotation), as a
    /// reloaded secret file: new handshakes use them, established connections stay.
    pub fn set_secrets(&mut self, i: usize, secrets: &[&str]) {
        let keys = self.nodes[i].auth.take().map(|a| a.keys);
        let mut auth = SimAuth::new(secrets);
        auth.keys = keys.unwrap_or(auth.keys);
        self.nodes[i].auth = Some(auth);
    }

    /// Starts (or restarts) node `i` with a fresh instance and its persisted claim.
    pub fn start(&mut self, i: usize) {
        let cfg = NodeConfig {
            name: self.nodes[i].name.clone(),
            instance: self.rng.next_u64(),
            advertise: self.nodes[i].addr,
            cluster: self.cluster,
            subnet_prefix: 24,
            seeds: self.nodes[i].seeds.clone(),
            claim: self.nodes[i].persisted,
            initial_version: (self.now - self.t0).as_millis() as u64 + 1,
            timing: self.timing.clone(),
            rng_seed: self.rng.next_u64(),
            view: self.view,
            identity: self.nodes[i].auth.as_ref().map(|a| *a.keys.public()),
        };
        self.nodes[i].node = Some(Node::new(cfg, self.now));
        self.after(i);
    }

    /// Kills node `i`: its connections close at the peers (as when a process dies).
    pub fn kill(&mut self, i: usize) {
        self.stop(i);
        let ends: Vec<ConnId> = self
            .links
            .keys()
            .filter(|(n, _)| *n == i)
            .map(|&(_, c)| c)
            .collect();
        for conn in ends {
            self.sever(i, conn, false);
        }
    }

    /// Closes the connection of end `(i, conn)`: that end now (its node told when `tell`),
    /// the other end when the close reaches it.
    fn sever(&mut self, i: usize, conn: ConnId, tell: bool) {
        let Some(link) = self.links.remove(&(i, conn)) else {
            return;
        };
        if tell {
            let now = self.now;
            if let Some(n) = self.nodes[i].node.as_mut() {
                if link.wire.is_up() {
                    n.handle_connection_closed(conn, now);
                } else if let Some(addr) = link.dialed {
                    n.handle_dial_failed(addr, "closed during handshake".into(), now);
                }
            }
        }
        let (j, cj) = link.peer;
        if let Some(theirs) = self.links.remove(&(j, cj)) {
            let at = self.now + self.latency();
            self.schedule(
                at,
                Event::Closed {
                    node: j,
                    conn: cj,
                    up: theirs.wire.is_up(),
                    dialed: theirs.dialed,
                },
            );
        }
    }

    /// Stops node `i` silently (a power cut): peers notice only by its silence.
    pub fn kill_silently(&mut self, i: usize) {
        self.stop(i);
        self.links.retain(|(n, _), l| *n != i && l.peer.0 != i);
    }

    fn stop(&mut self, i: usize) {
        self.nodes[i].node = None;
        self.nodes[i].timer_at = None;
    }

    /// Makes nodes `a` and `b` unable to reach each other; open connections go silent.
    pub fn cut_link(&mut self, a: usize, b: usize) {
        self.cut.insert((a.min(b), a.max(b)));
    }

    pub fn heal_link(&mut self, a: usize, b: usize) {
        self.cut.remove(&(a.min(b), a.max(b)));
    }

    fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.conditions.latency_us;
        Duration::from_micros(lo + self.rng.below(hi - lo + 1))
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.payloads[slot as usize] = Some(event);
                slot
            }
            None => {
                self.payloads.push(Some(event));
                u32::try_from(self.payloads.len() - 1).expect("fewer than 2^32 pending events")
            }
        };
        self.events.push(Scheduled {
            at: nanos_since(self.t0, at),
            seq: self.seq,
            slot,
        });
    }

    /// The node whose address is `target`. Node `i` has address [`addr`]`(i)` (distinct for
    /// every `i` below 64 000), so that one is tried first; the search is for a test that
    /// changed an address.
    fn node_at(&self, target: SocketAddr) -> Option<usize> {
        let guess = match target {
            SocketAddr::V4(a) => {
                let [_, _, hi, lo] = a.ip().octets();
                (usize::from(hi) * 250 + usize::from(lo)).checked_sub(1)
            }
            SocketAddr::V6(_) => None,
        };
        match guess {
            Some(i) if self.nodes.get(i).is_some_and(|n| n.addr == target) => Some(i),
            _ => self.nodes.iter().position(|n| n.addr == target),
        }
    }

    /// Drains node `i`'s outputs and schedules its next timer.
    fn after(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].node.as_mut().and_then(|n| n.poll_output()) {
            self.apply(i, out);
        }
        let next = self.nodes[i].node.as_ref().and_then(|n| n.poll_timeout());
        if let Some(at) = next {
            let at = at.max(self.now);
            if self.nodes[i]
                .timer_at
                .is_none_or(|t| at < t || t < self.now)
            {
                self.nodes[i].timer_at = Some(at);
                self.schedule(at, Event::Timer { node: i, at });
            }
        }
    }

    fn apply(&mut self, i: usize, out: Output) {
        match out {
            Output::Dial(target) => {
                let peer = self.node_at(target);
                let lat = self.latency();
                let ok = peer.is_some_and(|j| self.nodes[j].node.is_some() && !self.is_cut(i, j))
                    && !self.rng.chance(self.conditions.dial_failure);
                match (ok, peer) {
                    (true, Some(j)) => self.connect(i, target, j),
                    _ => {
                        let at = self.now + lat * 3;
                        self.schedule(
                            at,
                            Event::DialFailed {
                                node: i,
                                addr: target,
                            },
                        );
                    }
                }
            }
            Output::Send(conn, msg) => {
                let Some(link) = self.links.get_mut(&(i, conn)) else {
                    return;
                };
                let j = link.peer.0;
                if self.cut.contains(&(i.min(j), i.max(j))) || self.rng.chance(self.conditions.loss)
                {
                    return;
                }
                let bytes = link.wire.seal(&msg);
                self.messages += 1;
                let kind = match &msg {
                    Message::Gossip(_) => "gossip",
                    Message::Heartbeat(_) | Message::HeartbeatAck(_) => "heartbeat",
                    Message::Leave => "leave",
                    Message::Digest(_) => "digest",
                    Message::Summary(_) => "summary",
                    Message::Keep(_) => "keep",
                    Message::Redirect(_) => "redirect",
                    Message::Beat(b) if b.have.is_empty() => "heartbeat",
                    Message::Beat(_) => "beat_with_announcements",
                    Message::Graft(_) => "graft",
                    Message::Prune => "prune",
                    Message::Buckets(_) => "buckets",
                    Message::SummaryCheck(_) => "summary_check",
                    Message::RangeDigest(_) => "range_digest",
                };
                let by_kind = self.sent_by_kind.entry(kind).or_default();
                by_kind.0 += 1;
                by_kind.1 += bytes.len() as u64;
                let traffic = &mut self.nodes[i].traffic;
                traffic.sent_msgs += 1;
                if let Message::Beat(beat) = &msg {
                    // A heartbeat, plus the bytes its announcements add.
                    let extra = announcement_bytes(beat);
                    traffic.heartbeat_msgs += 1;
                    traffic.heartbeat_bytes += bytes.len() as u64 - extra;
                    self.nodes[j].traffic.gossip_recv_bytes += extra;
                } else if matches!(msg, Message::Heartbeat(_) | Message::HeartbeatAck(_)) {
                    traffic.heartbeat_msgs += 1;
                    traffic.heartbeat_bytes += bytes.len() as u64;
                } else {
                    let theirs = &mut self.nodes[j].traffic;
                    theirs.gossip_recv_msgs += 1;
                    theirs.gossip_recv_bytes += bytes.len() as u64;
                }
                self.bytes += bytes.len() as u64;
                self.transmit(i, conn, bytes);
            }
            Output::Close(conn, reason) => {
                *self.closes.entry(reason.to_string()).or_default() += 1;
                self.sever(i, conn, false);
            }
            Output::ClaimChanged(claim) => {
                if claim.is_some() {
                    self.nodes[i].persisted = claim;
                }
            }
            Output::RoutesChanged => {}
        }
    }

    /// Runs events until simulated time `until`.
    pub fn run_until(&mut self, until: Instant) {
        let end = nanos_since(self.t0, until);
        while self.events.peek().is_some_and(|e| e.at <= end) {
            let Some(Scheduled { at, slot, .. }) = self.events.pop() else {
                break;
            };
            self.now = self.now.max(self.t0 + Duration::from_nanos(at));
            let event = self.payloads[slot as usize].take();
            self.free.push(slot);
            if let Some(event) = event {
                self.handle(event);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs until `done` holds (checked every 100 ms) or `limit` passes; returns the time
    /// since the call when it first held.
    pub fn run_until_true(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if done(self) {
                return Some(self.now - start);
            }
            self.run_for(Duration::from_millis(100));
        }
        done(self).then(|| self.now - start)
    }

    fn handle(&mut self, event: Event) {
        let now = self.now;
        let i = match event {
            Event::Timer { node, at } => {
                // A timer replaced by an earlier one: the node is woken at the time it asks
                // for, once, not also at the times it asked for before.
                if self.nodes[node].timer_at != Some(at) {
                    return;
                }
                self.nodes[node].timer_at = None;
                let Some(n) = self.nodes[node].node.as_mut() else {
                    return;
                };
                n.handle_timeout(now);
                node
            }
            Event::HandshakeDeadline { node, conn } => {
                if self.links.get(&(node, conn)).is_none_or(|l| l.wire.is_up()) {
                    return;
                }
                self.sever(node, conn, true);
                node
            }
            Event::DialFailed { node, addr } => {
                let Some(n) = self.nodes[node].node.as_mut() else {
                    return;
                };
                n.handle_dial_failed(addr, "connection refused".into(), now);
                node
            }
            Event::Deliver { node, conn, bytes } => {
                if self.nodes[node].node.is_none() {
                    return;
                }
                self.nodes[node].traffic.recv_bytes += bytes.len() as u64;
                let Some(link) = self.links.get_mut(&(node, conn)) else {
                    return;
                };
                match link.wire.receive(&bytes) {
                    Ok(outs) => self.take(node, conn, outs),
                    Err(refusal) => {
                        if link.direction == Direction::Inbound && !link.wire.is_up() {
                            let n = &mut self.nodes[node];
                            n.last_refusal = Some(refusal.reason);
                            if refusal.bad_secret {
                                n.refused_bad_secret += 1;
                            } else {
                                n.refused_other += 1;
                            }
                        }
                        self.sever(node, conn, true);
                    }
                }
                node
            }
            Event::Closed {
                node,
                conn,
                up,
                dialed,
            } => {
                let Some(n) = self.nodes[node].node.as_mut() else {
                    return;
                };
                if up {
                    n.handle_connection_closed(conn, now);
                } else if let Some(addr) = dialed {
                    n.handle_dial_failed(addr, "closed during handshake".into(), now);
                }
                node
            }
        };
        self.after(i);
    }

    /// A dial of `target` by node `i` reached node `j`: both ends start their handshakes.
    fn connect(&mut self, i: usize, target: SocketAddr, j: usize) {
        let (ci, cj) = (self.next_conn, self.next_conn + 1);
        self.next_conn += 2;
        for (node, conn, peer, direction, dialed) in [
            (i, ci, (j, cj), Direction::Outbound, Some(target)),
            (j, cj, (i, ci), Direction::Inbound, None),
        ] {
            let Some(hello) = self.nodes[node].node.as_ref().map(Node::hello) else {
                return;
            };
            let auth = self.nodes[node].auth.as_ref();
            let (wire, outs) = Wire::new(auth, direction == Direction::Outbound, &hello);
            let link = Link {
                peer,
                wire,
                direction,
                dialed,
            };
            self.links.insert((node, conn), link);
            self.take(node, conn, outs);
            let at = self.now + HANDSHAKE_TIMEOUT;
            self.schedule(at, Event::HandshakeDeadline { node, conn });
        }
    }

    /// Carries out what the end `(i, conn)` asks.
    fn take(&mut self, i: usize, conn: ConnId, outs: Vec<Out>) {
        let now = self.now;
        for out in outs {
            match out {
                Out::Transmit(bytes) => self.transmit(i, conn, bytes),
                Out::Hello(hello) => {
                    let Some(link) = self.links.get(&(i, conn)) else {
                        return;
                    };
                    let (direction, dialed) = (link.direction, link.dialed);
                    let remote = self.nodes[link.peer.0].addr;
                    let Some(n) = self.nodes[i].node.as_mut() else {
                        return;
                    };
                    if n.handle_connection_up(conn, direction, dialed, remote, &hello, now)
                        .is_err()
                    {
                        self.sever(i, conn, false);
                        return;
                    }
                }
                Out::Message(msg) => {
                    self.nodes[i].traffic.recv_msgs += 1;
                    if let Some(n) = self.nodes[i].node.as_mut() {
                        n.handle_message(conn, msg, now);
                    }
                }
            }
        }
    }

    /// Sends bytes from end `(i, conn)` to the other end, in order after what it sent before;
    /// nothing crosses a cut link.
    fn transmit(&mut self, i: usize, conn: ConnId, bytes: Vec<u8>) {
        let Some(&Link { peer: (j, cj), .. }) = self.links.get(&(i, conn)) else {
            return;
        };
        if self.is_cut(i, j) {
            return;
        }
        self.nodes[i].traffic.sent_bytes += bytes.len() as u64;
        let lat = self.latency();
        let last = self
            .last_delivery
            .get(&(j, cj))
            .copied()
            .unwrap_or(self.now);
        let at = (self.now + lat).max(last);
        self.last_delivery.insert((j, cj), at);
        self.schedule(
            at,
            Event::Deliver {
                node: j,
                conn: cj,
                bytes,
            },
        );
    }

    /// Indices of running nodes.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].node.is_some())
            .collect()
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].node.as_ref().expect("node running")
    }

    /// Every running node holds the same topology, reaches every other running node, and
    /// owns a block no one else owns.
    pub fn converged(&self) -> bool {
        let alive = self.alive();
        let Some(&first) = alive.first() else {
            return true;
        };
        let topo = self.node(first).topology();
        let mut blocks = BTreeSet::new();
        for &i in &alive {
            let n = self.node(i);
            if n.topology() != topo || n.routes().len() + 1 < alive.len() {
                return false;
            }
            for &j in &alive {
                if i != j && !n.routes().is_reachable(&self.nodes[j].name) {
                    return false;
                }
            }
            match n.claim() {
                Some(c) if blocks.insert(c.block) => {}
                _ => return false,
            }
        }
        true
    }
}
