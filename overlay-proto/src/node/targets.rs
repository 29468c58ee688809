//! Dial targets: the seeds, the advertised addresses of the preferred peers (the active view,
//! see `view.rs`), and addresses dialed once (a redirect's, or an unreachable peer's to heal a
//! partition).
//!
//! A seed that is the address of a peer this node already reaches (through any path) is not
//! dialed while the node has a connection: it is only a lifeline, for when the node has none.
//! A seed whose peer left, restarts or is unreachable is dialed as any target. A target dialed once is forgotten when its dial fails or its
//! connection ends.
//!
//! A target is dialed when it is due; a failed dial is retried after an exponential backoff
//! (from [`Timing::dial_backoff_initial`](super::Timing) doubling up to `dial_backoff_max`,
//! each delay scaled by a random factor in ±25%). A target is satisfied while a connection to
//! the peer at that address is established, whoever dialed it. When a peer shows up with a
//! new instance (it restarted), its target is retried at once.
//!
//! A peer that says goodbye (`Leave`) is most often restarting (an upgrade, a new
//! configuration): the targets it satisfied are redialed every [`REDIAL_AFTER_LEAVE`] instead
//! of backing off, for [`QUICK_REDIAL_FOR`], so that a peer without seeds of its own is found
//! again as soon as it listens (a hitless restart), then back off as usual.

use super::connections::Conn;
use super::{Node, Output, Refusal, TargetInfo, TargetState};
use crate::peer::PeerName;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Pace of redials after a peer left (see the module docs).
pub(super) const REDIAL_AFTER_LEAVE: Duration = Duration::from_millis(200);
/// How long after a peer left its targets are redialed at [`REDIAL_AFTER_LEAVE`].
pub(super) const QUICK_REDIAL_FOR: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(super) struct Target {
    seed: bool,
    /// Until then, a failed dial is retried after [`REDIAL_AFTER_LEAVE`] (the peer left).
    quick_until: Option<Instant>,
    state: TargetState,
    failures: u32,
    last_error: Option<String>,
    /// Instance of the peer last seen at this address, to notice restarts.
    instance: Option<u64>,
    /// Dialed once, never retried.
    once: bool,
    /// The address is the advertised address of a peer this node reaches.
    reached_peer: bool,
}

impl Target {
    pub(super) fn retry_at(&self) -> Option<Instant> {
        match self.state {
            TargetState::Waiting { retry_at } => Some(retry_at),
            _ => None,
        }
    }

    pub(super) fn info(&self, addr: SocketAddr) -> TargetInfo {
        TargetInfo {
            addr,
            seed: self.seed,
            state: self.state.clone(),
            failures: self.failures,
            last_error: self.last_error.clone(),
        }
    }
}

impl Node {
    pub(super) fn add_target_inner(&mut self, addr: SocketAddr, seed: bool, now: Instant) {
        let is_self = addr == self.config.advertise;
        let target = self.targets.entry(addr).or_insert(Target {
            seed,
            quick_until: None,
            state: TargetState::Waiting { retry_at: now },
            failures: 0,
            last_error: None,
            instance: None,
            once: false,
            reached_peer: false,
        });
        target.seed |= seed;
        if seed {
            target.once = false;
        }
        if is_self {
            target.state = TargetState::IsSelf;
        }
    }

    /// Dials `addr` once (unless it is a target already).
    pub(super) fn add_target_once(&mut self, addr: SocketAddr, now: Instant) {
        if addr == self.config.advertise || self.targets.contains_key(&addr) {
            return;
        }
        self.add_target_inner(addr, false, now);
        if let Some(t) = self.targets.get_mut(&addr) {
            t.once = true;
        }
    }

    /// A seed waits while the node has any connection and the seed is the address of a peer
    /// this node reaches already (see the module docs). A seed whose peer left, restarts or
    /// cannot be reached is dialed as before.
    fn parked(&self, addr: &SocketAddr, t: &Target) -> bool {
        t.seed && t.reached_peer && !self.conns.is_empty() && !self.preferred_addrs.contains(addr)
    }

    /// When target `addr` is due to be dialed, if it is waiting and not parked.
    pub(super) fn target_due(&self, addr: &SocketAddr, t: &Target) -> Option<Instant> {
        t.retry_at().filter(|_| !self.parked(addr, t))
    }

    /// Stops dialing `addr` on its own account: the opposite of
    /// [`Node::add_target`](super::Node::add_target), e.g. for a Kubernetes Node that was
    /// deleted.
    ///
    /// While a known peer that has not left advertises `addr`, the target stays, dialed like
    /// any discovered peer; otherwise it is dropped. An established connection is not closed:
    /// it ends when the peer leaves or goes silent.
    pub fn remove_target(&mut self, addr: SocketAddr, now: Instant) {
        if self.preferred_addrs.contains(&addr) {
            if let Some(t) = self.targets.get_mut(&addr) {
                t.seed = false;
            }
        } else {
            self.targets.remove(&addr);
        }
        self.after_change(now);
    }

    fn backoff(&mut self, failures: u32) -> Duration {
        let t = &self.config.timing;
        let exp = failures.saturating_sub(1).min(20);
        let base = t
            .dial_backoff_initial
            .saturating_mul(1u32 << exp)
            .min(t.dial_backoff_max);
        self.rng.jitter(base, 0.25)
    }

    /// Adds targets for newly learnt peers, drops targets nobody wants, notices restarts and
    /// connections that satisfy a waiting target.
    pub(super) fn refresh_targets(&mut self, now: Instant) {
        if self.left {
            return;
        }
        let mut wanted: BTreeSet<SocketAddr> = BTreeSet::new();
        let peers: Vec<(SocketAddr, u64)> = self
            .preferred
            .iter()
            .filter_map(|name| self.topology.get(name))
            .map(|r| (r.advertise, r.instance))
            .collect();
        for (addr, instance) in peers {
            wanted.insert(addr);
            self.add_target_inner(addr, false, now);
            if let Some(t) = self.targets.get_mut(&addr) {
                if t.instance != Some(instance) {
                    let restarted = t.instance.is_some();
                    t.instance = Some(instance);
                    if restarted {
                        if let TargetState::Waiting { .. } = t.state {
                            t.state = TargetState::Waiting { retry_at: now };
                            t.failures = 0;
                        }
                    }
                }
            }
        }
        for c in self.conns.values() {
            for addr in std::iter::once(c.advertise).chain(c.dialed) {
                if let Some(t) = self.targets.get_mut(&addr) {
                    if matches!(t.state, TargetState::Waiting { .. }) {
                        t.state = TargetState::Connected(c.peer.clone());
                    }
                }
            }
        }
        // The seeds are few: a list to check every record's address against.
        let seeds: Vec<SocketAddr> = self
            .targets
            .iter()
            .filter(|(_, t)| t.seed)
            .map(|(addr, _)| *addr)
            .collect();
        let reached: BTreeSet<SocketAddr> = self
            .topology
            .iter()
            .filter(|r| seeds.contains(&r.advertise))
            .filter(|r| self.routes.is_reachable(&r.name))
            .map(|r| r.advertise)
            .collect();
        for (addr, t) in self.targets.iter_mut() {
            t.reached_peer = reached.contains(addr);
        }
        self.targets.retain(|addr, t| {
            t.seed || t.once || wanted.contains(addr) || matches!(t.state, TargetState::Dialing)
        });
        self.preferred_addrs = wanted;
    }

    /// Emits a dial for every target that is due.
    pub(super) fn dial_due(&mut self, now: Instant) {
        let due: Vec<SocketAddr> = self
            .targets
            .iter()
            .filter(|(addr, t)| self.target_due(addr, t).is_some_and(|at| at <= now))
            .map(|(addr, _)| *addr)
            .collect();
        for addr in due {
            if let Some(t) = self.targets.get_mut(&addr) {
                t.state = TargetState::Dialing;
            }
            self.outputs.push_back(Output::Dial(addr));
        }
    }

    pub(super) fn dial_failed(&mut self, addr: SocketAddr, error: String, now: Instant) {
        let Some(failures) = self.targets.get(&addr).map(|t| t.failures + 1) else {
            return;
        };
        if self.targets.get(&addr).is_some_and(|t| t.once) {
            self.targets.remove(&addr);
            return;
        }
        let mut delay = self.backoff(failures);
        if let Some(t) = self.targets.get_mut(&addr) {
            if t.state == TargetState::IsSelf {
                return;
            }
            if t.quick_until.is_some_and(|until| now < until) {
                delay = REDIAL_AFTER_LEAVE;
            }
            t.failures = failures;
            t.last_error = Some(error);
            t.state = TargetState::Waiting {
                retry_at: now + delay,
            };
        }
    }

    pub(super) fn dial_refused(&mut self, addr: SocketAddr, refusal: &Refusal, now: Instant) {
        match refusal {
            Refusal::SelfConnection => {
                if let Some(t) = self.targets.get_mut(&addr) {
                    t.state = TargetState::IsSelf;
                }
            }
            Refusal::Duplicate(peer) if self.conns.values().any(|c| c.peer == *peer) => {
                if let Some(t) = self.targets.get_mut(&addr) {
                    t.state = TargetState::Connected(peer.clone());
                    t.failures = 0;
                }
            }
            other => self.dial_failed(addr, other.to_string(), now),
        }
    }

    /// Marks the dialed address and the peer's advertised address as connected.
    pub(super) fn connected_target(
        &mut self,
        dialed: Option<SocketAddr>,
        advertise: SocketAddr,
        peer: &PeerName,
    ) {
        for addr in dialed.into_iter().chain(std::iter::once(advertise)) {
            if let Some(t) = self.targets.get_mut(&addr) {
                if t.state != TargetState::IsSelf {
                    t.state = TargetState::Connected(peer.clone());
                    t.failures = 0;
                    t.last_error = None;
                    t.quick_until = None;
                }
            }
        }
    }

    /// `peer` said goodbye: the targets its connection satisfied are redialed
    /// soon and often for a while (it is probably restarting). Call before the connection is
    /// removed.
    pub(super) fn peer_leaving(&mut self, peer: &PeerName, now: Instant) {
        for t in self.targets.values_mut() {
            if t.state == TargetState::Connected(peer.clone()) {
                t.quick_until = Some(now + QUICK_REDIAL_FOR);
            }
        }
    }

    /// Schedules redialing the targets that a closed connection satisfied.
    pub(super) fn disconnected_target(&mut self, conn: &Conn, now: Instant) {
        let backoff = self.backoff(1);
        self.targets
            .retain(|_, t| !(t.once && t.state == TargetState::Connected(conn.peer.clone())));
        for t in self.targets.values_mut() {
            if t.state == TargetState::Connected(conn.peer.clone()) {
                let quick = t.quick_until.is_some_and(|until| now < until);
                let delay = if quick { REDIAL_AFTER_LEAVE } else { backoff };
                t.state = TargetState::Waiting {
                    retry_at: now + delay,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Node, NodeConfig, Output, Timing};
    use crate::peer::PeerName;
    use crate::topology::PeerRecord;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    fn addr(host: u8) -> SocketAddr {
        SocketAddr::from(([10, 99, 0, host], 6783))
    }

    #[test]
    fn a_removed_target_is_dropped_unless_a_known_peer_advertises_it() {
        let start = Instant::now();
        // Past the hold-down of the node's first computation.
        let now = start + Duration::from_secs(1);
        let name = |s: &str| PeerName::new(s).expect("valid name");
        let mut node = Node::new(
            NodeConfig {
                name: name("a"),
                instance: 1,
                advertise: addr(1),
                cluster: "10.32.0.0/12".parse().expect("cidr"),
                subnet_prefix: 24,
                seeds: vec![],
                claim: None,
                initial_version: 1,
                timing: Timing::default(),
                rng_seed: 1,
                view: Default::default(),
                identity: None,
            },
            start,
        );
        // Peer b is known from gossip at addr(2); addr(3) is only a target given from outside.
        node.topology.merge(PeerRecord {
            name: name("b"),
            version: 1,
            instance: 2,
            advertise: addr(2),
            claim: None,
            connections: vec![],
            left: false,
            identity: None,
        });
        node.topology_dirty = true;
        node.add_target(addr(2), now);
        node.add_target(addr(3), now);
        let dials: Vec<Output> = std::iter::from_fn(|| node.poll_output())
            .filter(|o| matches!(o, Output::Dial(_)))
            .collect();
        assert_eq!(dials, vec![Output::Dial(addr(2)), Output::Dial(addr(3))]);
        for a in [addr(2), addr(3)] {
            node.handle_dial_failed(a, "refused".into(), now);
        }

        node.remove_target(addr(3), now);
        node.remove_target(addr(2), now);
        node.remove_target(addr(4), now);
        let targets = node.targets();
        assert_eq!(targets.len(), 1, "{targets:?}");
        assert_eq!(
            (targets[0].addr, targets[0].seed),
            (addr(2), false),
            "gossip still wants b"
        );
        let later = now + Duration::from_secs(120);
        node.handle_timeout(later);
        let dials: Vec<Output> = std::iter::from_fn(|| node.poll_output())
            .filter(|o| matches!(o, Output::Dial(_)))
            .collect();
        assert_eq!(
            dials,
            vec![Output::Dial(addr(2))],
            "addr(3) is never dialed again"
        );
    }
}
