//! Topology gossip: merging received records, batching and forwarding changes, full exchange.
//!
//! Changed records are not sent at once: each neighbour has a set of record names pending for
//! it, flushed after [`Timing::gossip_delay`](super::Timing) with the newest version of each.
//! A burst of changes therefore costs one message per neighbour, and a record that changed
//! twice in the meantime is sent once. A record is forwarded to every other neighbour, only
//! when it changed this node's topology, so the flood of one change ends after every node has
//! seen it once: about n × (neighbours per node) messages, each node receiving it once per
//! neighbour (the active view bounds both; see `view.rs`).
//!
//! Anti-entropy: on connect and every `full_gossip_interval`, neighbours exchange a
//! [`Summary`] of their topologies (a count and a hash: a few bytes). Only when the summaries
//! differ does the receiver send its [`Digest`] (every record's version), and the digest
//! exchange moves what each side lacks.

use super::{ConnId, Node};
use crate::message::{Digest, DigestEntry, Gossip, Message, Summary};
use crate::peer::PeerName;
use crate::topology::{PeerRecord, MAX_PEERS};
use std::collections::BTreeMap;
use std::time::Instant;

/// Most records in one gossip message.
pub(super) const GOSSIP_CHUNK: usize = 64;
/// Rough size limit of one gossip message (well under the frame limit).
pub(super) const GOSSIP_CHUNK_BYTES: usize = 256 << 10;

/// An upper estimate of a record's encoded size.
fn approx_wire_len(r: &PeerRecord) -> usize {
    64 + r.name.as_str().len()
        + r.connections
            .iter()
            .map(|c| c.as_str().len() + 1)
            .sum::<usize>()
}

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

    /// Sends a digest of the whole topology to one neighbour.
    pub(super) fn send_digest(&mut self, conn: ConnId) {
        let entries = self
            .topology
            .iter()
            .map(|r| DigestEntry {
                name: r.name.clone(),
                version: r.version,
                instance: r.instance,
            })
            .collect();
        self.send(conn, Message::Digest(Digest { entries }));
    }

    /// Sends the topology's summary to one neighbour.
    pub(super) fn send_summary(&mut self, conn: ConnId) {
        let summary = self.topology.summary();
        self.send(conn, Message::Summary(summary));
    }

    /// Sends the summary to every neighbour (the periodic anti-entropy).
    pub(super) fn send_summary_to_all(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.send_summary(id);
        }
    }

    /// Answers a neighbour's summary: with the digest when the topologies differ.
    pub(super) fn receive_summary(&mut self, from: ConnId, summary: Summary) {
        if summary != self.topology.summary() {
            self.send_digest(from);
        }
    }

    /// Answers a digest: the records the sender lacks, and this node's own digest if the
    /// sender has records this node lacks.
    pub(super) fn receive_digest(&mut self, from: ConnId, digest: Digest) {
        let theirs: BTreeMap<&PeerName, (u64, u64)> = digest
            .entries
            .iter()
            .take(MAX_PEERS)
            .map(|e| (&e.name, (e.version, e.instance)))
            .collect();
        let newer_here: Vec<PeerRecord> = self
            .topology
            .iter()
            .filter(|r| {
                theirs
                    .get(&r.name)
                    .is_none_or(|v| (r.version, r.instance) > *v)
            })
            .cloned()
            .collect();
        let newer_there = theirs.iter().any(|(name, v)| {
            self.topology
                .get(name)
                .is_none_or(|r| *v > (r.version, r.instance))
        });
        if let Some(c) = self.conns.get_mut(&from) {
            for r in &newer_here {
                c.pending_gossip.remove(&r.name);
            }
        }
        self.send_records(from, newer_here, true);
        if newer_there {
            self.send_digest(from);
        }
    }

    /// Sends records in messages of at most [`GOSSIP_CHUNK`] records and about
    /// [`GOSSIP_CHUNK_BYTES`] bytes; a `full` answer is sent even when there is no record.
    fn send_records(&mut self, conn: ConnId, records: Vec<PeerRecord>, full: bool) {
        let mut chunk: Vec<PeerRecord> = Vec::new();
        let mut bytes = 0;
        let mut sent_any = false;
        for record in records {
            let size = approx_wire_len(&record);
            if !chunk.is_empty()
                && (chunk.len() >= GOSSIP_CHUNK || bytes + size > GOSSIP_CHUNK_BYTES)
            {
                let records = std::mem::take(&mut chunk);
                self.send(conn, Message::Gossip(Gossip { full, records }));
                sent_any = true;
                bytes = 0;
            }
            bytes += size;
            chunk.push(record);
        }
        if !chunk.is_empty() || (full && !sent_any) {
            self.send(
                conn,
                Message::Gossip(Gossip {
                    full,
                    records: chunk,
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
