//! Topology gossip: merging received records, batching and forwarding changes, full exchange.
//!
//! Changed records are not sent at once: each neighbour has a set of record names pending for
//! it, flushed after [`Timing::gossip_delay`](super::Timing) with the newest version of each.
//! A burst of changes therefore costs one message per neighbour, and a record that changed
//! twice in the meantime is sent once. A record is forwarded only when it changed this node's
//! topology, so the spread of one change ends after every node has seen it.
//!
//! # Broadcast tree (Plumtree)
//! Forwarding to every neighbour would cost n × (neighbours per node) messages per change, each
//! node receiving it once per neighbour. Instead, as in Plumtree (Leitão, Pereira, Rodrigues,
//! "Epidemic Broadcast Trees", SRDS 2007), each connection is *eager* or *lazy*:
//! - a change is pushed whole to eager neighbours, and only announced to lazy ones: its name
//!   and version ride on the next heartbeat ([`Message::Beat`], at most a second later);
//! - a push that brings nothing new means two paths lead here: the receiver answers
//!   [`Message::Prune`] and both ends make the connection lazy. The eager connections left form
//!   a spanning tree, so a change costs about n pushes;
//! - an announced version that no push delivers within [`GRAFT_AFTER`] (a tree link broke)
//!   is asked for with [`Message::Graft`], which makes that connection eager again: the tree
//!   heals itself.
//!
//! Every connection starts eager, so the first changes flood and shape the tree. Peers older
//! than protocol 3 do not speak lazy push: connections to them stay eager.
//!
//! Anti-entropy: on connect and every `full_gossip_interval`, neighbours exchange a
//! [`Summary`] of their topologies (a count and a hash: a few bytes). Only when the summaries
//! differ does the receiver send its [`Digest`] (every record's version), and the digest
//! exchange moves what each side lacks.

use super::{ConnId, Node};
use crate::message::{Digest, DigestEntry, Gossip, Message, RangeDigest, Summary};
use crate::peer::PeerName;
use crate::topology::{bucket_of, PeerRecord, BUCKETS, MAX_PEERS};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// An announced record that no push delivered is asked for after this long.
pub const GRAFT_AFTER: Duration = Duration::from_secs(1);
/// How long after a differing summary the bucket fingerprints are compared: time for the
/// changes still spreading to arrive, so only a real divergence costs a digest.
pub const SUMMARY_SETTLE: Duration = Duration::from_secs(5);
/// A mask covering every bucket: a whole digest.
const ALL_BUCKETS: u64 = u64::MAX;
/// Most announcements on one heartbeat; more wait for the next.
const MAX_ANNOUNCEMENTS: usize = 1024;
/// Most neighbours remembered as having announced one missing record.
const MAX_ANNOUNCERS: usize = 4;

/// A record version announced by lazy neighbours and not received yet.
#[derive(Debug, Clone)]
pub(super) struct Missing {
    /// The announced version and instance.
    version: (u64, u64),
    /// Who announced it, to graft from in turn.
    announcers: Vec<ConnId>,
    /// When to graft from the next announcer.
    graft_at: Instant,
}

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
        self.queue(name, except, true);
    }

    /// Queues `name`'s record for every neighbour except `except`: pushed on eager links
    /// when `push`, announced on the others (and on every link when not `push`).
    fn queue(&mut self, name: &PeerName, except: Option<ConnId>, push: bool) {
        for (id, c) in self.conns.iter_mut() {
            if Some(*id) == except {
                continue;
            }
            if (push && c.eager) || !c.lazy_capable() {
                c.pending_gossip.insert(name.clone());
                self.gossip_queued = true;
            } else {
                c.pending_lazy.insert(name.clone());
            }
        }
    }

    /// Starts the batching delay for gossip queued since the last call.
    pub(super) fn schedule_gossip(&mut self, now: Instant) {
        if std::mem::take(&mut self.gossip_queued) && self.gossip_due_at.is_none() {
            self.gossip_due_at = Some(now + self.config.timing.gossip_delay);
        }
    }

    /// When queued gossip or a graft is due.
    pub(super) fn gossip_due(&self) -> Option<Instant> {
        let graft = self.missing.values().map(|m| m.graft_at).min();
        [self.gossip_due_at, graft].into_iter().flatten().min()
    }

    /// Sends queued gossip, grafts and bucket checks that are due.
    pub(super) fn flush_gossip(&mut self, now: Instant) {
        if self.gossip_due_at.is_some_and(|t| t <= now) {
            self.flush_gossip_now();
        }
        self.graft_missing(now);
        self.check_summaries(now);
    }

    /// The announcements for the next heartbeat on `conn`: versions queued for it and not
    /// about to be pushed.
    pub(super) fn take_announcements(&mut self, conn: ConnId) -> Vec<DigestEntry> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let mut have = Vec::new();
        while have.len() < MAX_ANNOUNCEMENTS {
            let Some(name) = c.pending_lazy.pop_first() else {
                break;
            };
            if c.pending_gossip.contains(&name) {
                continue;
            }
            if let Some(r) = self.topology.get(&name) {
                have.push(DigestEntry::of(r));
            }
        }
        have
    }

    /// Asks for records announced but not delivered in time, each from its next announcer.
    fn graft_missing(&mut self, now: Instant) {
        if !self.missing.values().any(|m| m.graft_at <= now) {
            return;
        }
        let mut grafts: BTreeMap<ConnId, Vec<PeerName>> = BTreeMap::new();
        let mut orphaned = false;
        let topology = &self.topology;
        let conns = &self.conns;
        self.missing.retain(|name, m| {
            if topology
                .get(name)
                .is_some_and(|r| (r.version, r.instance) >= m.version)
            {
                return false;
            }
            if m.graft_at > now {
                return true;
            }
            m.announcers.retain(|id| conns.contains_key(id));
            if m.announcers.is_empty() {
                // Nobody left to ask: reconcile with the neighbours now (below).
                orphaned = true;
                return false;
            }
            let from = m.announcers.remove(0);
            grafts.entry(from).or_default().push(name.clone());
            m.graft_at = now + GRAFT_AFTER;
            true
        });
        if orphaned {
            // Every announcer of a missing version went away: check summaries with every
            // neighbour at once instead of waiting for the periodic exchange.
            for c in self.conns.values_mut() {
                c.summary_check_at = Some(now);
            }
        }
        for (id, names) in grafts {
            if let Some(c) = self.conns.get_mut(&id) {
                c.eager = true;
            }
            self.stats.grafts_sent += 1;
            self.send(id, Message::Graft(names));
        }
    }

    /// A lazy neighbour announces record versions: remember those not held, to graft them if
    /// no push brings them.
    pub(super) fn receive_announcements(
        &mut self,
        from: ConnId,
        entries: Vec<DigestEntry>,
        now: Instant,
    ) {
        for e in entries.into_iter().take(MAX_PEERS) {
            let announced = (e.version, e.instance);
            if self
                .topology
                .get(&e.name)
                .is_some_and(|r| (r.version, r.instance) >= announced)
            {
                continue;
            }
            let full = self.missing.len() >= MAX_PEERS;
            match self.missing.get_mut(&e.name) {
                Some(m) => {
                    m.version = m.version.max(announced);
                    if m.announcers.len() < MAX_ANNOUNCERS && !m.announcers.contains(&from) {
                        m.announcers.push(from);
                    }
                }
                None if full => {}
                None => {
                    self.missing.insert(
                        e.name,
                        Missing {
                            version: announced,
                            announcers: vec![from],
                            graft_at: now + GRAFT_AFTER,
                        },
                    );
                }
            }
        }
    }

    /// A neighbour asks for records and for eager pushes from now on.
    pub(super) fn receive_graft(&mut self, from: ConnId, names: Vec<PeerName>) {
        let Some(c) = self.conns.get_mut(&from) else {
            return;
        };
        c.eager = true;
        for name in names.into_iter().take(MAX_PEERS) {
            if self.topology.get(&name).is_some() {
                c.pending_lazy.remove(&name);
                c.pending_gossip.insert(name);
                self.gossip_queued = true;
            }
        }
    }

    /// A neighbour received a push of ours that it had already: announce to it from now on.
    pub(super) fn receive_prune(&mut self, from: ConnId) {
        if let Some(c) = self.conns.get_mut(&from) {
            if c.lazy_capable() {
                c.make_lazy();
            }
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

    /// The digest entries of the records in the buckets of `mask`.
    fn digest_entries(&self, mask: u64) -> Vec<DigestEntry> {
        self.topology
            .iter()
            .filter(|r| mask & (1 << bucket_of(&r.name)) != 0)
            .map(DigestEntry::of)
            .collect()
    }

    /// Sends a digest of the whole topology to one neighbour.
    pub(super) fn send_digest(&mut self, conn: ConnId) {
        let entries = self.digest_entries(ALL_BUCKETS);
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

    /// Answers a neighbour's summary when the topologies differ.
    ///
    /// A node far behind (just started) sends its digest at once, to receive everything it
    /// lacks. Otherwise a difference is usually a change still spreading, so the node waits
    /// [`SUMMARY_SETTLE`] and sends its summary again ([`Message::SummaryCheck`]); only if
    /// that still differs are bucket fingerprints compared, and only the buckets that differ
    /// digested. Peers older than protocol 3 get the whole digest at once.
    pub(super) fn receive_summary(&mut self, from: ConnId, summary: Summary, now: Instant) {
        let ours = self.topology.summary();
        let Some(c) = self.conns.get_mut(&from) else {
            return;
        };
        if summary == ours {
            c.summary_check_at = None;
            return;
        }
        if !c.lazy_capable() || ours.records.saturating_mul(2) <= summary.records + 1 {
            self.send_digest(from);
        } else if c.summary_check_at.is_none() {
            c.summary_check_at = Some(now + SUMMARY_SETTLE);
        }
    }

    /// Sends the summary again to neighbours whose summary differed a while ago; a neighbour
    /// that still differs answers with its bucket fingerprints.
    fn check_summaries(&mut self, now: Instant) {
        let due: Vec<ConnId> = self
            .conns
            .iter_mut()
            .filter(|(_, c)| c.summary_check_at.is_some_and(|t| t <= now))
            .map(|(id, c)| {
                c.summary_check_at = None;
                *id
            })
            .collect();
        for id in due {
            self.send(id, Message::SummaryCheck(self.topology.summary()));
        }
    }

    /// Answers a summary sent again: with the bucket fingerprints if it still differs.
    pub(super) fn receive_summary_check(&mut self, from: ConnId, summary: Summary) {
        let Some(c) = self.conns.get_mut(&from) else {
            return;
        };
        // The peer is checking already; one check is enough.
        c.summary_check_at = None;
        if summary != self.topology.summary() {
            self.send(from, Message::Buckets(self.topology.bucket_hashes()));
        }
    }

    /// Answers bucket fingerprints: a digest of the buckets that differ, if any.
    pub(super) fn receive_buckets(&mut self, from: ConnId, hashes: Vec<u64>) {
        let Some(c) = self.conns.get_mut(&from) else {
            return;
        };
        // The peer is checking already; one check is enough.
        c.summary_check_at = None;
        if hashes.len() != BUCKETS {
            self.stats.records_rejected += 1;
            return;
        }
        let mask = self
            .topology
            .bucket_hashes()
            .iter()
            .zip(&hashes)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .fold(0u64, |m, (b, _)| m | 1 << b);
        if mask != 0 {
            let entries = self.digest_entries(mask);
            self.send(from, Message::RangeDigest(RangeDigest { mask, entries }));
        }
    }

    /// Answers a digest (`mask` = [`ALL_BUCKETS`]) or a range digest: the records of the
    /// covered buckets the sender lacks, and this node's own digest of them if the sender
    /// has records this node lacks.
    pub(super) fn receive_digest(&mut self, from: ConnId, entries: Vec<DigestEntry>, mask: u64) {
        let covered = |name: &PeerName| mask & (1 << bucket_of(name)) != 0;
        let theirs: BTreeMap<&PeerName, (u64, u64)> = entries
            .iter()
            .filter(|e| covered(&e.name))
            .take(MAX_PEERS)
            .map(|e| (&e.name, (e.version, e.instance)))
            .collect();
        let newer_here: Vec<PeerRecord> = self
            .topology
            .iter()
            .filter(|r| {
                covered(&r.name)
                    && theirs
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
            c.summary_check_at = None;
            for r in &newer_here {
                c.pending_gossip.remove(&r.name);
            }
        }
        let whole = mask == ALL_BUCKETS;
        // A whole digest is always answered (the answer lets a joining node claim a block).
        if whole || !newer_here.is_empty() {
            self.send_records(from, newer_here, true);
        }
        if newer_there {
            if whole {
                self.send_digest(from);
            } else {
                let entries = self.digest_entries(mask);
                self.send(from, Message::RangeDigest(RangeDigest { mask, entries }));
            }
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
        let mut news = false;
        for record in gossip.records {
            if record.validate(cluster, prefix).is_err() {
                self.stats.records_rejected += 1;
                continue;
            }
            if record.name == self.config.name {
                news |= self.refute(&record);
                continue;
            }
            let name = record.name.clone();
            if self.topology.merge(record) {
                news = true;
                self.stats.records_merged += 1;
                self.topology_dirty = true;
                // What anti-entropy brought is news here, seldom to the neighbours (a node
                // that just joined learns the whole topology this way): announced, so only
                // a neighbour that lacks it asks for it.
                self.queue(&name, Some(from), !gossip.full);
            }
        }
        // A push that brought nothing: this node is reached by another path too.
        if !gossip.full && !news {
            self.prune(from);
        }
    }

    /// Makes `conn` lazy at both ends (see the module docs).
    fn prune(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.eager && c.lazy_capable() {
            c.make_lazy();
            self.stats.prunes_sent += 1;
            self.send(conn, Message::Prune);
        }
    }

    /// Someone gossips a record under this node's name that is newer than its own (from a
    /// previous run of this node): publish a version above it.
    ///
    /// Returns true if it was newer.
    fn refute(&mut self, record: &PeerRecord) -> bool {
        let Some(own) = self.topology.get(&self.config.name) else {
            return false;
        };
        if record > own {
            self.version = self.version.max(record.version);
            self.publish_self();
            return true;
        }
        false
    }
}
