//! The gossiped topology: one versioned [`PeerRecord`] per peer, merged by a join.
//!
//! Merge keeps, for each peer name, the greatest record in a total order (version first, then
//! instance, then the rest of the record as a tie-break). Taking the maximum of a total order is
//! commutative, associative and idempotent, so every agent that has seen the same set of records
//! holds the same topology, whatever the order or repetition in which gossip delivered them.

use crate::message::Summary;
use crate::peer::PeerName;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

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

/// The set of records an agent knows, one per peer name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    records: BTreeMap<PeerName, PeerRecord>,
    /// Kept up to date by every merge, so a summary costs nothing to send.
    summary: Summary,
    /// Per bucket, the XOR of its records' summary hashes (empty until the first merge).
    buckets: Vec<u64>,
}

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
        let full = self.records.len() >= MAX_PEERS;
        let bucket = bucket_of(&record.name);
        let change = match self.records.get_mut(&record.name) {
            Some(held) if *held >= record => return false,
            Some(held) => {
                let change = summary_hash(held) ^ summary_hash(&record);
                *held = record;
                change
            }
            None if full => return false,
            None => {
                self.summary.records += 1;
                let change = summary_hash(&record);
                self.records.insert(record.name.clone(), record);
                change
            }
        };
        self.summary.hash ^= change;
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS];
        }
        self.buckets[bucket] ^= change;
        true
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
        for r in other.records.values() {
            changed |= self.merge(r.clone());
        }
        changed
    }

    /// The record held for `name`.
    pub fn get(&self, name: &PeerName) -> Option<&PeerRecord> {
        self.records.get(name)
    }

    /// All records, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &PeerRecord> {
        self.records.values()
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
        match (self.records.get(a), self.records.get(b)) {
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
