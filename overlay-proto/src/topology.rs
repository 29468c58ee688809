//! The gossiped topology: one versioned [`PeerRecord`] per peer, merged by a join.
//!
//! Merge keeps, for each peer name, the greatest record in a total order (version first, then
//! instance, then the rest of the record as a tie-break). Taking the maximum of a total order is
//! commutative, associative and idempotent, so every agent that has seen the same set of records
//! holds the same topology, whatever the order or repetition in which gossip delivered them.

use crate::message::Summary;
use crate::peer::{PeerId, PeerName};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

/// Most connections one record may list; a record listing more is rejected.
pub const MAX_CONNECTIONS_PER_RECORD: usize = 8192;
/// Most records a topology holds; records for new peers beyond this are dropped.
pub const MAX_PEERS: usize = 10_000;

/// A peer's own description of itself, as gossiped.
///
/// Only the peer named by `name` creates new versions of its record; everyone else stores and
/// forwards it. Field order matters: the derived `Ord` is the merge order. `identity` comes
/// last, so it only breaks ties between records that agree on everything else: the owner
/// never publishes one version twice, so such a tie is the same record once with and once
/// without its identity (stripped by a hop speaking protocol v1, see [`crate::codec`]), and
/// the one with the identity wins everywhere.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Whose record this is.
    pub name: PeerName,
    /// Increased by the owner on every change; the newer record wins.
    pub version: u64,
    /// The owner's per-start instance id.
    pub instance: u64,
    /// Underlay address other peers dial (TCP) and send data to (UDP).
    pub advertise: SocketAddr,
    /// The block of the cluster range the owner uses for its pods, if it has claimed one.
    pub claim: Option<Claim>,
    /// Peers the owner has an established control connection with, sorted, without repeats.
    pub connections: Vec<PeerName>,
    /// The owner shut down on purpose (it may come back with a new instance).
    pub left: bool,
    /// The owner's static X25519 public key (its `--secret-file` identity), from which any
    /// peer derives its data key with the owner; `None` without a secret, or when the record
    /// crossed a protocol v1 connection.
    pub identity: Option<[u8; 32]>,
}

/// A claim on one block of the cluster range.
///
/// Two records claiming the same block are settled by [`crate::ipam::claim_beats`]: the higher
/// epoch wins, and between equal epochs the smaller peer name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Claim {
    /// The claimed block (`subnet_prefix` long, inside the cluster range).
    pub block: Ipv4Net,
    /// Raised when a block of a peer gone for good is taken over.
    pub epoch: u32,
}

/// Why a received record is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// record of {0} lists too many connections
    #[error("record of {0} lists {1} connections, more than the limit")]
    TooManyConnections(PeerName, usize),
    /// record's connection list is not sorted and unique
    #[error("record of {0} has an unsorted or repeated connection list")]
    UnsortedConnections(PeerName),
    /// record claims a block that is not a block of the cluster range
    #[error("record of {0} claims {1}, which is not a /{2} block of {3}")]
    BadClaim(PeerName, Ipv4Net, u8, Ipv4Net),
}

impl PeerRecord {
    /// Checks the record against the limits and the cluster's range and block size.
    pub fn validate(&self, cluster: Ipv4Net, subnet_prefix: u8) -> Result<(), RecordError> {
        if self.connections.len() > MAX_CONNECTIONS_PER_RECORD {
            return Err(RecordError::TooManyConnections(
                self.name.clone(),
                self.connections.len(),
            ));
        }
        if !self.connections.windows(2).all(|w| w[0] < w[1]) {
            return Err(RecordError::UnsortedConnections(self.name.clone()));
        }
        if let Some(claim) = self.claim {
            let b = claim.block;
            if b.prefix_len() != subnet_prefix || b.trunc() != b || !cluster.contains(&b) {
                return Err(RecordError::BadClaim(
                    self.name.clone(),
                    b,
                    subnet_prefix,
                    cluster,
                ));
            }
        }
        Ok(())
    }

    /// True if this record lists an established connection to `peer`.
    pub fn is_connected_to(&self, peer: &PeerName) -> bool {
        self.connections.binary_search(peer).is_ok()
    }
}

/// Number of name ranges ("buckets") a topology's fingerprint is split into, so that two
/// agents whose summaries differ can find which records differ by exchanging 64 hashes and
/// then the versions of the differing ranges only, instead of every record's.
pub const BUCKETS: usize = 64;

/// The bucket of a peer's record: the top 6 bits of its id, mixed (FNV-1a's high bits vary
/// little between short names such as `node-1` and `node-2`).
pub fn bucket_of(name: &PeerName) -> usize {
    (crate::rng::mix(name.id().0) >> 58) as usize
}

/// One record as a topology holds it: shared (an [`Arc`]) between the topologies holding
/// the same record, with what the searches over the topology need computed once.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) record: PeerRecord,
    /// The id of the record's name.
    pub(crate) id: PeerId,
    /// The ids of the record's listed connections, in the same (name) order.
    pub(crate) conn_ids: Box<[PeerId]>,
}

/// A shared [`Entry`], ordered and looked up by the record's name only.
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) Arc<Entry>);

impl Shared {
    fn new(record: PeerRecord) -> Shared {
        intern::share(record)
    }

    pub(crate) fn record(&self) -> &PeerRecord {
        &self.0.record
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.record.fmt(f)
    }
}

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        self.0.record.name == other.0.record.name
    }
}

impl Eq for Shared {}

impl PartialOrd for Shared {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Shared {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.record.name.cmp(&other.0.record.name)
    }
}

impl Borrow<PeerName> for Shared {
    fn borrow(&self) -> &PeerName {
        &self.0.record.name
    }
}

/// Sharing of identical records between the topologies of one thread (see [`share_records`]).
mod intern {
    use super::{Entry, PeerRecord, Shared};
    use crate::peer::PeerName;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::sync::{Arc, Weak};

    #[derive(Default)]
    struct Interner {
        /// Records by (name id, version, instance); a few when records disagree otherwise.
        live: HashMap<(u64, u64, u64), Vec<Weak<Entry>>>,
        /// Size of `live` above which dead entries are swept.
        sweep_at: usize,
    }

    thread_local! {
        static ENABLED: Cell<bool> = const { Cell::new(false) };
        static INTERNER: RefCell<Interner> = RefCell::new(Interner::default());
    }

    pub(super) fn enable(on: bool) {
        ENABLED.with(|e| e.set(on));
        if !on {
            INTERNER.with(|i| *i.borrow_mut() = Interner::default());
        }
    }

    fn entry(record: PeerRecord) -> Arc<Entry> {
        let id = record.name.id();
        let conn_ids = record.connections.iter().map(PeerName::id).collect();
        Arc::new(Entry {
            record,
            id,
            conn_ids,
        })
    }

    pub(super) fn share(record: PeerRecord) -> Shared {
        if !ENABLED.with(Cell::get) {
            return Shared(entry(record));
        }
        INTERNER.with(|i| {
            let mut i = i.borrow_mut();
            let key = (record.name.id().0, record.version, record.instance);
            let same = i.live.get(&key).and_then(|v| {
                v.iter()
                    .filter_map(Weak::upgrade)
                    .find(|e| e.record == record)
            });
            if let Some(e) = same {
                return Shared(e);
            }
            let e = entry(record);
            i.live.entry(key).or_default().push(Arc::downgrade(&e));
            if i.live.len() > i.sweep_at {
                i.live.retain(|_, v| {
                    v.retain(|w| w.strong_count() > 0);
                    !v.is_empty()
                });
                i.sweep_at = (2 * i.live.len()).max(1024);
            }
            Shared(e)
        })
    }
}

/// Makes the topologies of this thread share the memory of identical records (`on`), or
/// stop doing so.
///
/// For a process holding many topologies, such as a simulation of thousands of nodes: each
/// node decodes its own copy of every record it receives, and without sharing, n nodes hold
/// n² records. Sharing changes no result: a record is shared only with an equal one. A
/// process holding one topology (the agent) gains nothing from it: it is off by default.
pub fn share_records(on: bool) {
    intern::enable(on);
}

/// The set of records an agent knows, one per peer name.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Ordered by name (see [`Shared`]).
    records: BTreeSet<Shared>,
    /// Kept up to date by every merge, so a summary costs nothing to send.
    summary: Summary,
    /// Per bucket, the XOR of its records' summary hashes (empty until the first merge).
    buckets: Vec<u64>,
}

impl PartialEq for Topology {
    fn eq(&self, other: &Self) -> bool {
        self.summary == other.summary
            && self.records.len() == other.records.len()
            && self
                .records
                .iter()
                .zip(&other.records)
                .all(|(a, b)| Arc::ptr_eq(&a.0, &b.0) || a.record() == b.record())
    }
}

impl Eq for Topology {}

/// The hash of one record in a [`Summary`]: of its name, version and instance (what a
/// [`crate::message::DigestEntry`] carries), so summaries agree exactly when digests would.
fn summary_hash(r: &PeerRecord) -> u64 {
    let mut h = r.name.id().0;
    for v in [r.version, r.instance] {
        h = crate::rng::mix(h ^ v);
    }
    crate::rng::mix(h)
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges one record: keeps it if it is greater than the one held for the same name.
    ///
    /// Returns true if the topology changed. A record for a new name is dropped when the
    /// topology already holds [`MAX_PEERS`] records.
    pub fn merge(&mut self, record: PeerRecord) -> bool {
        if !self.accepts(&record) {
            return false;
        }
        self.put(Shared::new(record));
        true
    }

    /// True if merging `record` would change the topology.
    fn accepts(&self, record: &PeerRecord) -> bool {
        match self.records.get(&record.name) {
            Some(held) => {
                // The names are equal: the merge order is that of the fields after the name,
                // most often settled by the version (without comparing the names again).
                let held = held.record();
                match (held.version, held.instance).cmp(&(record.version, record.instance)) {
                    std::cmp::Ordering::Equal => held < record,
                    order => order.is_lt(),
                }
            }
            None => self.records.len() < MAX_PEERS,
        }
    }

    /// Stores `new` (which [`Topology::accepts`]) in place of the record of the same name.
    fn put(&mut self, new: Shared) {
        let bucket = bucket_of(&new.record().name);
        let mut change = summary_hash(new.record());
        match self.records.replace(new) {
            Some(old) => change ^= summary_hash(old.record()),
            None => self.summary.records += 1,
        }
        self.summary.hash ^= change;
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS];
        }
        self.buckets[bucket] ^= change;
    }

    /// The per-bucket fingerprints (see [`BUCKETS`]).
    pub fn bucket_hashes(&self) -> Vec<u64> {
        if self.buckets.is_empty() {
            vec![0; BUCKETS]
        } else {
            self.buckets.clone()
        }
    }

    /// The fingerprint of the records held (see [`Summary`]).
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// Merges every record of `other` into `self`.
    pub fn merge_topology(&mut self, other: &Topology) -> bool {
        let mut changed = false;
        for r in &other.records {
            if self.accepts(r.record()) {
                self.put(r.clone());
                changed = true;
            }
        }
        changed
    }

    /// The record held for `name`.
    pub fn get(&self, name: &PeerName) -> Option<&PeerRecord> {
        self.records.get(name).map(Shared::record)
    }

    /// All records, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &PeerRecord> {
        self.records.iter().map(Shared::record)
    }

    /// All records with the id of their name, ordered by name.
    pub fn iter_with_ids(&self) -> impl Iterator<Item = (PeerId, &PeerRecord)> {
        self.records.iter().map(|s| (s.0.id, &s.0.record))
    }

    /// All entries, ordered by name.
    pub(crate) fn entries(&self) -> impl ExactSizeIterator<Item = &Shared> {
        self.records.iter()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// True if both `a` and `b` list a connection to each other (an edge routes may use).
    pub fn is_bidirectional(&self, a: &PeerName, b: &PeerName) -> bool {
        match (self.get(a), self.get(b)) {
            (Some(ra), Some(rb)) => ra.is_connected_to(b) && rb.is_connected_to(a),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(i: u8) -> PeerName {
        PeerName::new(format!("n{i}")).expect("valid name")
    }

    fn record(n: u8, version: u64, instance: u64, conns: &[u8]) -> PeerRecord {
        let mut connections: Vec<PeerName> = conns.iter().map(|&c| name(c)).collect();
        connections.sort();
        connections.dedup();
        PeerRecord {
            name: name(n),
            version,
            instance,
            advertise: SocketAddr::from(([10, 0, 0, n], 6783)),
            claim: None,
            connections,
            left: false,
            identity: None,
        }
    }

    #[test]
    fn newer_version_wins_and_older_is_ignored() {
        let mut t = Topology::new();
        assert!(t.merge(record(1, 2, 7, &[2])));
        assert!(!t.merge(record(1, 1, 9, &[3])));
        assert!(!t.merge(record(1, 2, 7, &[2])));
        assert!(t.merge(record(1, 3, 7, &[])));
        assert_eq!(t.get(&name(1)).map(|r| r.version), Some(3));
    }

    #[test]
    fn bucket_hashes_xor_to_the_summary_and_follow_merges() {
        let mut t = Topology::new();
        assert_eq!(t.bucket_hashes(), vec![0; BUCKETS]);
        for n in 0..40 {
            t.merge(record(n, 1, 1, &[]));
        }
        t.merge(record(7, 2, 1, &[]));
        let xor = t.bucket_hashes().iter().fold(0, |a, b| a ^ b);
        assert_eq!(xor, t.summary().hash);
        // Recomputed from scratch, in another order: the same buckets.
        let mut u = Topology::new();
        u.merge(record(7, 2, 1, &[]));
        for n in (0..40).rev() {
            u.merge(record(n, 1, 1, &[]));
        }
        assert_eq!(u.bucket_hashes(), t.bucket_hashes());
        // One record's change shows in its bucket only.
        let before = t.bucket_hashes();
        t.merge(record(9, 5, 1, &[]));
        let after = t.bucket_hashes();
        let changed: Vec<usize> = (0..BUCKETS).filter(|&b| before[b] != after[b]).collect();
        assert_eq!(changed, vec![bucket_of(&name(9))]);
    }

    #[test]
    fn bidirectional_edges_need_both_records() {
        let mut t = Topology::new();
        t.merge(record(1, 1, 1, &[2]));
        assert!(!t.is_bidirectional(&name(1), &name(2)));
        t.merge(record(2, 1, 1, &[1]));
        assert!(t.is_bidirectional(&name(1), &name(2)));
        assert!(t.is_bidirectional(&name(2), &name(1)));
    }

    #[test]
    fn validation_rejects_bad_records() {
        let cluster: Ipv4Net = "10.32.0.0/12".parse().expect("cidr");
        let mut r = record(1, 1, 1, &[2, 3]);
        assert_eq!(r.validate(cluster, 24), Ok(()));
        r.connections.reverse();
        assert!(matches!(
            r.validate(cluster, 24),
            Err(RecordError::UnsortedConnections(_))
        ));
        r.connections.reverse();
        for bad in ["10.48.0.0/24", "10.32.1.0/25", "10.32.1.5/24"] {
            r.claim = Some(Claim {
                block: bad.parse().expect("cidr"),
                epoch: 0,
            });
            assert!(matches!(
                r.validate(cluster, 24),
                Err(RecordError::BadClaim(..))
            ));
        }
    }

    #[test]
    fn the_same_record_with_its_identity_wins_in_any_order() {
        // As when one copy crossed a protocol v1 connection, which drops the identity.
        let plain = record(1, 2, 7, &[2]);
        let with = PeerRecord {
            identity: Some([9; 32]),
            ..plain.clone()
        };
        assert_eq!(
            topo(&[plain.clone(), with.clone()]).get(&name(1)),
            Some(&with)
        );
        assert_eq!(
            topo(&[with.clone(), plain.clone()]).get(&name(1)),
            Some(&with)
        );
        // Only a tie-break: a newer version without it still wins.
        let newer = record(1, 3, 7, &[2]);
        assert_eq!(topo(&[with, newer.clone()]).get(&name(1)), Some(&newer));
    }

    #[test]
    fn shared_records_are_equal_records() {
        share_records(true);
        let (mut a, mut b) = (Topology::new(), Topology::new());
        assert!(a.merge(record(1, 2, 7, &[2])));
        assert!(b.merge(record(1, 2, 7, &[2])));
        let first = |t: &Topology| t.records.first().map(|s| s.0.clone()).expect("a record");
        assert!(Arc::ptr_eq(&first(&a), &first(&b)));
        assert_eq!(a, b);
        // Same name, version and instance, another record: not shared.
        let with = PeerRecord {
            identity: Some([9; 32]),
            ..record(1, 2, 7, &[2])
        };
        assert!(b.merge(with.clone()));
        assert!(!Arc::ptr_eq(&first(&a), &first(&b)));
        assert_eq!(b.get(&name(1)), Some(&with));
        assert_ne!(a, b);
        assert!(a.merge_topology(&b));
        assert_eq!(a, b);
        share_records(false);
    }

    fn arb_record() -> impl Strategy<Value = PeerRecord> {
        (
            0u8..4,
            0u64..4,
            0u64..3,
            proptest::collection::vec(0u8..6, 0..4),
            proptest::option::of(0u8..2),
        )
            .prop_map(|(n, v, i, c, id)| PeerRecord {
                identity: id.map(|b| [b; 32]),
                ..record(n, v, i, &c)
            })
    }

    fn topo(records: &[PeerRecord]) -> Topology {
        let mut t = Topology::new();
        for r in records {
            t.merge(r.clone());
        }
        t
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in proptest::collection::vec(arb_record(), 0..8),
                                b in proptest::collection::vec(arb_record(), 0..8)) {
            let (ta, tb) = (topo(&a), topo(&b));
            let mut ab = ta.clone();
            ab.merge_topology(&tb);
            let mut ba = tb.clone();
            ba.merge_topology(&ta);
            prop_assert_eq!(ab, ba);
        }

        #[test]
        fn merge_is_associative(a in proptest::collection::vec(arb_record(), 0..6),
                                b in proptest::collection::vec(arb_record(), 0..6),
                                c in proptest::collection::vec(arb_record(), 0..6)) {
            let (ta, tb, tc) = (topo(&a), topo(&b), topo(&c));
            let mut left = ta.clone();
            left.merge_topology(&tb);
            left.merge_topology(&tc);
            let mut bc = tb.clone();
            bc.merge_topology(&tc);
            let mut right = ta.clone();
            right.merge_topology(&bc);
            prop_assert_eq!(left, right);
        }

        #[test]
        fn merge_is_idempotent(a in proptest::collection::vec(arb_record(), 0..8)) {
            let ta = topo(&a);
            let mut twice = ta.clone();
            prop_assert!(!twice.merge_topology(&ta));
            prop_assert_eq!(twice, ta);
        }

        #[test]
        fn delivery_order_does_not_matter(mut a in proptest::collection::vec(arb_record(), 0..12)) {
            let forward = topo(&a);
            a.reverse();
            prop_assert_eq!(forward, topo(&a));
        }
    }
}
