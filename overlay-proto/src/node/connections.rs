//! Control connections: handshake acceptance, duplicate resolution, heartbeats, liveness.
//!
//! Two peers may dial each other at the same time and end up with two connections. Both
//! sides keep the same one: the connection dialed by the peer with the smaller name; if both
//! were dialed by the same peer, the newer one (the dialer only dials again when it thinks
//! the old one is gone). A connection from a new instance of a peer replaces the old one.

use super::{CloseReason, ConnId, Direction, Message, Node, Refusal, Timing};
use crate::message::{negotiate, Beat, Heartbeat, Hello, PROTOCOL_MAX, PROTOCOL_MIN};
use crate::peer::PeerName;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub(super) struct Conn {
    pub(super) peer: PeerName,
    pub(super) instance: u64,
    pub(super) direction: Direction,
    pub(super) dialed: Option<SocketAddr>,
    pub(super) remote: SocketAddr,
    pub(super) advertise: SocketAddr,
    pub(super) since: Instant,
    pub(super) last_rx: Instant,
    pub(super) next_heartbeat: Instant,
    heartbeat_seq: u64,
    heartbeat_pending: Option<(u64, Instant)>,
    pub(super) rtt: Option<Duration>,
    /// The protocol version negotiated on this connection.
    pub(super) version: u16,
    /// Changes are pushed to this peer whole (it is a branch of the broadcast tree); when
    /// false they are only announced (see `gossip.rs`).
    pub(super) eager: bool,
    /// Names of records to send in the next gossip batch.
    pub(super) pending_gossip: BTreeSet<PeerName>,
    /// Names of records to announce in the next lazy batch.
    pub(super) pending_lazy: BTreeSet<PeerName>,
    /// When to compare bucket fingerprints with the peer (its summary differed).
    pub(super) summary_check_at: Option<Instant>,
    /// What this node last told the peer with [`Message::Keep`].
    pub(super) keep_sent: Option<bool>,
    /// The peer needs this connection (true until it says otherwise).
    pub(super) remote_keeps: bool,
}

impl Conn {
    /// Announces changes on this connection from now on instead of pushing them; what was
    /// queued for the next push is announced instead.
    pub(super) fn make_lazy(&mut self) {
        self.eager = false;
        self.pending_lazy.append(&mut self.pending_gossip);
    }

    /// The peer understands lazy push (announcements, grafts, prunes).
    pub(super) fn lazy_capable(&self) -> bool {
        self.version >= crate::message::LAZY_PUSH_VERSION
    }

    /// The next time this connection needs attention.
    pub(super) fn next_deadline(&self, timing: &Timing) -> Instant {
        let next = self.next_heartbeat.min(self.last_rx + timing.dead_after);
        self.summary_check_at.map_or(next, |t| next.min(t))
    }

    pub(super) fn heartbeat_answered(&mut self, hb: Heartbeat, now: Instant) {
        if let Some((seq, sent)) = self.heartbeat_pending {
            if seq == hb.seq {
                self.rtt = Some(now.saturating_duration_since(sent));
                self.heartbeat_pending = None;
            }
        }
    }

    /// Name of the peer that dialed this connection.
    fn dialer<'a>(&'a self, me: &'a PeerName) -> &'a PeerName {
        match self.direction {
            Direction::Outbound => me,
            Direction::Inbound => &self.peer,
        }
    }
}

impl Node {
    /// A handshake completed: `hello` is the remote's, the version was negotiated already.
    ///
    /// `dialed` is the target address when this node dialed. On `Err` the shell closes the
    /// connection without reporting it closed.
    pub fn handle_connection_up(
        &mut self,
        conn: ConnId,
        direction: Direction,
        dialed: Option<SocketAddr>,
        remote: SocketAddr,
        hello: &Hello,
        now: Instant,
    ) -> Result<(), Refusal> {
        let result = self.accept(conn, direction, dialed, remote, hello, now);
        if let Err(refusal) = &result {
            self.stats.refused += 1;
            if let Some(addr) = dialed {
                self.dial_refused(addr, refusal, now);
            }
        }
        self.after_change(now);
        result
    }

    fn accept(
        &mut self,
        conn: ConnId,
        direction: Direction,
        dialed: Option<SocketAddr>,
        remote: SocketAddr,
        hello: &Hello,
        now: Instant,
    ) -> Result<(), Refusal> {
        let body = &hello.body;
        if self.left {
            return Err(Refusal::Leaving);
        }
        if body.cluster != self.config.cluster || body.subnet_prefix != self.config.subnet_prefix {
            return Err(Refusal::ClusterMismatch {
                peer: body.name.clone(),
                theirs: body.cluster,
                their_prefix: body.subnet_prefix,
                ours: self.config.cluster,
                our_prefix: self.config.subnet_prefix,
            });
        }
        if body.name == self.config.name {
            if body.instance == self.config.instance {
                return Err(Refusal::SelfConnection);
            }
            return Err(Refusal::NameClash {
                remote,
                name: body.name.clone(),
            });
        }
        let me = self.config.name.clone();
        let new_dialer = match direction {
            Direction::Outbound => &me,
            Direction::Inbound => &body.name,
        };
        let existing = self
            .conns
            .iter()
            .find(|(_, c)| c.peer == body.name)
            .map(|(id, c)| (*id, c.clone()));
        if let Some((old_id, old)) = existing {
            let keep_new = old.instance != body.instance
                || old.dialer(&me) == new_dialer
                || *new_dialer == *(&me).min(&body.name);
            if !keep_new {
                return Err(Refusal::Duplicate(body.name.clone()));
            }
            self.conns.remove(&old_id);
            self.outputs
                .push_back(super::Output::Close(old_id, CloseReason::Replaced));
        }
        let room = self.make_room(now);
        self.conns.insert(
            conn,
            Conn {
                peer: body.name.clone(),
                instance: body.instance,
                direction,
                dialed,
                remote,
                advertise: body.advertise,
                since: now,
                last_rx: now,
                next_heartbeat: now + self.config.timing.heartbeat_interval,
                heartbeat_seq: 0,
                heartbeat_pending: None,
                rtt: None,
                version: negotiate(
                    (PROTOCOL_MIN, PROTOCOL_MAX),
                    (hello.proto_min, hello.proto_max),
                )
                .unwrap_or(PROTOCOL_MIN),
                eager: true,
                pending_gossip: BTreeSet::new(),
                pending_lazy: BTreeSet::new(),
                summary_check_at: None,
                keep_sent: None,
                remote_keeps: true,
            },
        );
        if !room {
            let elsewhere = self.redirect_addresses(&body.name);
            self.send(conn, Message::Redirect(elsewhere));
            self.conns.remove(&conn);
            self.outputs
                .push_back(super::Output::Close(conn, CloseReason::NoRoom));
            return Ok(());
        }
        self.connected_target(dialed, body.advertise, &body.name);
        self.publish_self();
        self.send_summary(conn);
        Ok(())
    }

    /// An accepted connection closed (error or EOF).
    pub fn handle_connection_closed(&mut self, conn: ConnId, now: Instant) {
        self.remove_conn(conn, now);
        self.after_change(now);
    }

    /// Forgets a connection and schedules redialing its peer.
    pub(super) fn remove_conn(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.disconnected_target(&c, now);
        if !self.left {
            self.publish_self();
        }
    }

    /// Sends due heartbeats and closes connections that went silent.
    pub(super) fn check_connections(&mut self, now: Instant) {
        let timing = self.config.timing.clone();
        let dead: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| now >= c.last_rx + timing.dead_after)
            .map(|(id, _)| *id)
            .collect();
        for conn in dead {
            self.stats.heartbeat_timeouts += 1;
            self.remove_conn(conn, now);
            self.outputs.push_back(super::Output::Close(
                conn,
                CloseReason::Timeout(timing.dead_after),
            ));
        }
        let mut beats = Vec::new();
        for (id, c) in self.conns.iter_mut() {
            if now >= c.next_heartbeat {
                c.heartbeat_seq += 1;
                c.heartbeat_pending = Some((c.heartbeat_seq, now));
                c.next_heartbeat = now + timing.heartbeat_interval;
                beats.push((*id, c.heartbeat_seq, c.lazy_capable()));
            }
        }
        for (id, seq, lazy_capable) in beats {
            if lazy_capable {
                let have = self.take_announcements(id);
                self.send(id, Message::Beat(Beat { seq, have }));
            } else {
                self.send(id, Message::Heartbeat(Heartbeat { seq }));
            }
        }
    }
}
