//! Topology gossip: merging received records, batching and forwarding changes, full exchange.
//!
//! Changed records are not sent at once: each neighbour has a set of record names pending for
//! it, flushed after [`Timing::gossip_delay`](super::Timing) with the newest version of each.
//! A burst of changes therefore costs one message per neighbour, and a record that changed
//! twice in the meantime is sent once. A record is forwarded only when it changed this node's
//! topology, so the flood of one change ends after every node has seen it once. Every
//! neighbour gets the whole topology when it connects and every `full_gossip_interval`, which
//! repairs anything lost.

use super::{ConnId, Node};
use crate::message::{Gossip, Message};
use crate::peer::PeerName;
use crate::topology::PeerRecord;
use std::time::Instant;

/// Most records in one gossip message.
pub(super) const GOSSIP_CHUNK: usize = 64;

impl Node {
    /// Queues `name`'s record for every neighbour except `except`.
    pub(super) fn queue_gossip(&mut self, name: &PeerName, except: Option<ConnId>) {
        for (id, c) in self.conns.iter_mut() {
            if Some(*id) != except {
                c.pending_gossip.insert(name.clone());
            }
        }
        self.gossip_queued = true;
    }

    /// Starts the batching delay for gossip queued since the last call.
    pub(super) fn schedule_gossip(&mut self, now: Instant) {
        if std::mem::take(&mut self.gossip_queued) && self.gossip_due_at.is_none() {
            self.gossip_due_at = Some(now + self.config.timing.gossip_delay);
        }
    }

    /// When queued gossip is due.
    pub(super) fn gossip_due(&self) -> Option<Instant> {
        self.gossip_due_at
    }

    /// Sends queued gossip if it is due.
    pub(super) fn flush_gossip(&mut self, now: Instant) {
        if self.gossip_due_at.is_some_and(|t| t <= now) {
            self.flush_gossip_now();
        }
    }

    /// Sends all queued gossip now.
    pub(super) fn flush_gossip_now(&mut self) {
        self.gossip_due_at = None;
        self.gossip_queued = false;
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let names = std::mem::take(&mut c.pending_gossip);
            let records: Vec<PeerRecord> = names
                .iter()
                .filter_map(|n| self.topology.get(n).cloned())
                .collect();
            self.send_records(id, records, false);
        }
    }

    /// Sends the whole topology to one neighbour.
    pub(super) fn send_full_gossip(&mut self, conn: ConnId) {
        let records: Vec<PeerRecord> = self.topology.iter().cloned().collect();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.pending_gossip.clear();
        }
        self.send_records(conn, records, true);
    }

    /// Sends the whole topology to every neighbour.
    pub(super) fn send_full_gossip_to_all(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.send_full_gossip(id);
        }
    }

    fn send_records(&mut self, conn: ConnId, records: Vec<PeerRecord>, full: bool) {
        for chunk in records.chunks(GOSSIP_CHUNK) {
            self.send(
                conn,
                Message::Gossip(Gossip {
                    full,
                    records: chunk.to_vec(),
                }),
            );
        }
    }

    /// Merges the records of a gossip message from `from`.
    pub(super) fn receive_gossip(&mut self, from: ConnId, gossip: Gossip) {
        self.stats.gossip_received += 1;
        if gossip.full {
            self.allow_claim();
        }
        let (cluster, prefix) = (self.config.cluster, self.config.subnet_prefix);
        for record in gossip.records {
            if record.validate(cluster, prefix).is_err() {
                self.stats.records_rejected += 1;
                continue;
            }
            if record.name == self.config.name {
                self.refute(&record);
                continue;
            }
            let name = record.name.clone();
            if self.topology.merge(record) {
                self.stats.records_merged += 1;
                self.topology_dirty = true;
                self.queue_gossip(&name, Some(from));
            }
        }
    }

    /// Someone gossips a record under this node's name that is newer than its own (from a
    /// previous run of this node): publish a version above it.
    fn refute(&mut self, record: &PeerRecord) {
        let Some(own) = self.topology.get(&self.config.name) else {
            return;
        };
        if record > own {
            self.version = self.version.max(record.version);
            self.publish_self();
        }
    }
}
