//! Subnet allocation: which node owns which block of the cluster range, and which pod owns
//! which address of a node's block.
//!
//! # Block claims
//! Every agent claims one `/subnet_prefix` block by putting it in its gossiped record. The
//! rules, applied identically by every agent, are:
//! 1. A new agent picks the first block, starting at a position derived from its name and
//!    wrapping around, that no record claims ([`choose_block`]). Claims are persisted, so a
//!    restarted agent asserts the block it had.
//! 2. When two records claim the same block, the claim with the higher epoch wins, and
//!    between equal epochs the smaller peer name wins ([`claim_beats`]). The loser picks
//!    another block. Because gossip converges, every agent ends up agreeing on the winners.
//! 3. A block is reused only when no block is free at all, and only if its owner is *gone for
//!    good* — unreachable for longer than the reclaim delay as seen by the agent that takes it
//!    over. The taker claims it with the owner's epoch plus one, so its claim wins if the old
//!    owner ever returns (the old owner then picks another block). No manual command is ever
//!    needed.
//!
//! # Blocks assigned by Kubernetes
//! An agent run with `--kubernetes` on a Node that has a `spec.podCIDR` claims that block,
//! *assigned by Kubernetes*, with the Node's creation time in Unix seconds as the epoch (at
//! least 2^30; see `overlay-agent`'s `kubernetes::block`). The rules above are unchanged;
//! the epoch makes rule 2 give it the block: gossip claims start at epoch 0 and rise by one per
//! takeover, so they lose to it and move, and when Kubernetes hands a deleted Node's podCIDR to
//! a newer Node, the newer Node's claim beats the record the deleted one left behind.
//!
//! # Pod addresses
//! A [`BlockAllocator`] hands out the addresses of one block: the first host address is the
//! node's own (the gateway of its pods), the rest go to pods, lowest free first.

use crate::peer::PeerName;
use crate::topology::{Claim, Topology};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// True if claim `a` (held by `a_owner`) beats claim `b` (held by `b_owner`) on the same block.
pub fn claim_beats(a: &Claim, a_owner: &PeerName, b: &Claim, b_owner: &PeerName) -> bool {
    (a.epoch, std::cmp::Reverse(a_owner)) > (b.epoch, std::cmp::Reverse(b_owner))
}

/// The winning owner of every claimed block.
pub fn block_owners(topology: &Topology) -> BTreeMap<Ipv4Net, (PeerName, Claim)> {
    let mut owners: BTreeMap<Ipv4Net, (PeerName, Claim)> = BTreeMap::new();
    for record in topology.iter() {
        let Some(claim) = record.claim else { continue };
        match owners.get(&claim.block) {
            Some((owner, held)) if !claim_beats(&claim, &record.name, held, owner) => {}
            _ => {
                owners.insert(claim.block, (record.name.clone(), claim));
            }
        }
    }
    owners
}

/// The winning owner of `block`, if any record claims it: what [`block_owners`] gives for
/// it, in one pass over the records that copies nothing.
pub fn block_owner(topology: &Topology, block: Ipv4Net) -> Option<(&PeerName, Claim)> {
    let mut owner: Option<(&PeerName, Claim)> = None;
    for record in topology.iter() {
        let Some(claim) = record.claim.filter(|c| c.block == block) else {
            continue;
        };
        match owner {
            Some((held_by, held)) if !claim_beats(&claim, &record.name, &held, held_by) => {}
            _ => owner = Some((&record.name, claim)),
        }
    }
    owner
}

/// True if `me`'s record holds a claim that wins its block.
pub fn holds_block(topology: &Topology, me: &PeerName) -> bool {
    let Some(claim) = topology.get(me).and_then(|r| r.claim) else {
        return false;
    };
    block_owner(topology, claim.block).is_some_and(|(owner, _)| owner == me)
}

/// Number of `/prefix` blocks in `cluster` (saturating at `u32::MAX`).
pub fn block_count(cluster: Ipv4Net, prefix: u8) -> u32 {
    let bits = u32::from(prefix.saturating_sub(cluster.prefix_len()));
    1u32.checked_shl(bits).unwrap_or(u32::MAX)
}

/// The `index`-th `/prefix` block of `cluster`.
pub fn block_at(cluster: Ipv4Net, prefix: u8, index: u32) -> Option<Ipv4Net> {
    if index >= block_count(cluster, prefix) || prefix > 32 {
        return None;
    }
    let size = 1u64 << (32 - u32::from(prefix));
    let base = u64::from(u32::from(cluster.network())) + u64::from(index) * size;
    Ipv4Net::new(Ipv4Addr::from(u32::try_from(base).ok()?), prefix).ok()
}

/// Picks a block for `me`, or `None` when the range has no block left for it.
///
/// Free blocks (claimed by no record) come first, scanned from a start position derived from
/// `me` so that agents starting together rarely pick the same one. Only when none is free is a
/// block of an owner for which `gone_for_good(owner)` holds taken over, with a raised epoch.
pub fn choose_block(
    topology: &Topology,
    me: &PeerName,
    cluster: Ipv4Net,
    prefix: u8,
    gone_for_good: impl Fn(&PeerName) -> bool,
) -> Option<Claim> {
    let count = block_count(cluster, prefix);
    if count == 0 {
        return None;
    }
    let claimed: BTreeSet<Ipv4Net> = topology
        .iter()
        .filter(|r| r.name != *me)
        .filter_map(|r| r.claim.map(|c| c.block))
        .collect();
    let start = u32::try_from(me.id().0 % u64::from(count)).unwrap_or(0);
    let scan = (0..count).map(|i| start.wrapping_add(i) % count);
    for index in scan.clone() {
        let block = block_at(cluster, prefix, index)?;
        if !claimed.contains(&block) {
            return Some(Claim { block, epoch: 0 });
        }
    }
    let owners = block_owners(topology);
    for index in scan {
        let block = block_at(cluster, prefix, index)?;
        if let Some((owner, claim)) = owners.get(&block) {
            if owner != me && gone_for_good(owner) {
                return Some(Claim {
                    block,
                    epoch: claim.epoch.saturating_add(1),
                });
            }
        }
    }
    None
}

/// The node's own address in `block`: its first host address.
pub fn node_address(block: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(block.network()).wrapping_add(1))
}

/// Why an address cannot be handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// every address of the block is in use
    #[error("every pod address of {0} is in use")]
    Exhausted(Ipv4Net),
}

/// The pod addresses of one block, keyed by who holds them (e.g. `container-id/ifname`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAllocator {
    block: Ipv4Net,
    held: BTreeMap<String, Ipv4Addr>,
}

impl BlockAllocator {
    /// An allocator with no address handed out.
    pub fn new(block: Ipv4Net) -> Self {
        BlockAllocator {
            block: block.trunc(),
            held: BTreeMap::new(),
        }
    }

    /// The block addresses come from.
    pub fn block(&self) -> Ipv4Net {
        self.block
    }

    /// The address held by `key`, if any.
    pub fn get(&self, key: &str) -> Option<Ipv4Addr> {
        self.held.get(key).copied()
    }

    /// Hands `key` an address: the one it already holds, else the lowest free pod address.
    pub fn allocate(&mut self, key: &str) -> Result<Ipv4Addr, AllocError> {
        if let Some(addr) = self.held.get(key) {
            return Ok(*addr);
        }
        let used: BTreeSet<Ipv4Addr> = self.held.values().copied().collect();
        let first = u32::from(node_address(self.block)) + 1;
        let last = u32::from(self.block.broadcast()).saturating_sub(1);
        let free = (first..=last)
            .map(Ipv4Addr::from)
            .find(|a| !used.contains(a))
            .ok_or(AllocError::Exhausted(self.block))?;
        self.held.insert(key.to_owned(), free);
        Ok(free)
    }

    /// Releases what `key` holds; returns the address, or `None` if it held nothing.
    pub fn release(&mut self, key: &str) -> Option<Ipv4Addr> {
        self.held.remove(key)
    }

    /// Number of addresses handed out.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when no address is handed out.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Number of pod addresses in the block (all hosts but the node's own).
    pub fn capacity(&self) -> usize {
        let hosts = u64::from(u32::from(self.block.broadcast()))
            .saturating_sub(u64::from(u32::from(node_address(self.block))));
        usize::try_from(hosts.saturating_sub(1)).unwrap_or(usize::MAX)
    }

    /// Every held address with its key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Ipv4Addr)> {
        self.held.iter().map(|(k, a)| (k.as_str(), *a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::PeerRecord;
    use std::net::SocketAddr;

    fn name(s: &str) -> PeerName {
        PeerName::new(s).expect("valid name")
    }
    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }
    fn claim(block: &str, epoch: u32) -> Claim {
        Claim {
            block: net(block),
            epoch,
        }
    }
    fn with_claim(t: &mut Topology, n: &str, c: Option<Claim>) {
        t.merge(PeerRecord {
            name: name(n),
            version: 1,
            instance: 1,
            advertise: SocketAddr::from(([10, 0, 0, 1], 6783)),
            claim: c,
            connections: vec![],
            left: false,
            identity: None,
        });
    }

    #[test]
    fn smaller_name_wins_equal_epochs_higher_epoch_wins_always() {
        let c0 = claim("10.32.1.0/24", 0);
        let c1 = claim("10.32.1.0/24", 1);
        assert!(claim_beats(&c0, &name("a"), &c0, &name("b")));
        assert!(!claim_beats(&c0, &name("b"), &c0, &name("a")));
        assert!(claim_beats(&c1, &name("z"), &c0, &name("a")));
    }

    #[test]
    fn conflicting_claims_have_one_owner_whatever_the_order() {
        let mut t1 = Topology::new();
        with_claim(&mut t1, "b", Some(claim("10.32.1.0/24", 0)));
        with_claim(&mut t1, "a", Some(claim("10.32.1.0/24", 0)));
        let mut t2 = Topology::new();
        with_claim(&mut t2, "a", Some(claim("10.32.1.0/24", 0)));
        with_claim(&mut t2, "b", Some(claim("10.32.1.0/24", 0)));
        assert_eq!(block_owners(&t1), block_owners(&t2));
        for t in [&t1, &t2] {
            let owners = block_owners(t);
            let (owner, c) = owners.get(&net("10.32.1.0/24")).expect("claimed");
            assert_eq!(block_owner(t, net("10.32.1.0/24")), Some((owner, *c)));
            assert_eq!(block_owner(t, net("10.32.2.0/24")), None);
        }
        assert!(holds_block(&t1, &name("a")));
        assert!(!holds_block(&t1, &name("b")));
    }

    #[test]
    fn blocks_are_enumerated_inside_the_cluster() {
        let cluster = net("10.32.0.0/12");
        assert_eq!(block_count(cluster, 24), 4096);
        assert_eq!(block_at(cluster, 24, 0), Some(net("10.32.0.0/24")));
        assert_eq!(block_at(cluster, 24, 4095), Some(net("10.47.255.0/24")));
        assert_eq!(block_at(cluster, 24, 4096), None);
        assert_eq!(block_count(net("0.0.0.0/0"), 32), u32::MAX);
        assert_eq!(
            node_address(net("10.32.7.0/24")),
            Ipv4Addr::new(10, 32, 7, 1)
        );
    }

    #[test]
    fn choice_skips_claimed_blocks_and_reuses_only_blocks_gone_for_good() {
        let cluster = net("10.32.0.0/23");
        let mut t = Topology::new();
        with_claim(&mut t, "a", Some(claim("10.32.0.0/24", 0)));
        let c = choose_block(&t, &name("me"), cluster, 24, |_| false).expect("a free block");
        assert_eq!(c, claim("10.32.1.0/24", 0));
        with_claim(&mut t, "b", Some(claim("10.32.1.0/24", 3)));
        assert_eq!(choose_block(&t, &name("me"), cluster, 24, |_| false), None);
        let c = choose_block(&t, &name("me"), cluster, 24, |p| p.as_str() == "b");
        assert_eq!(c, Some(claim("10.32.1.0/24", 4)));
    }

    #[test]
    fn own_claim_does_not_count_as_taken() {
        let cluster = net("10.32.0.0/24");
        let mut t = Topology::new();
        with_claim(&mut t, "me", Some(claim("10.32.0.0/24", 0)));
        assert_eq!(
            choose_block(&t, &name("me"), cluster, 24, |_| false),
            Some(claim("10.32.0.0/24", 0))
        );
    }

    #[test]
    fn pod_addresses_are_unique_stable_and_released() {
        let mut a = BlockAllocator::new(net("10.32.5.0/29"));
        assert_eq!(a.capacity(), 5);
        let first = a.allocate("c1/eth0").expect("address");
        assert_eq!(first, Ipv4Addr::new(10, 32, 5, 2));
        assert_eq!(a.allocate("c1/eth0"), Ok(first));
        let mut seen = BTreeSet::from([first]);
        for i in 2..=5 {
            assert!(seen.insert(a.allocate(&format!("c{i}/eth0")).expect("address")));
        }
        assert_eq!(
            a.allocate("c6/eth0"),
            Err(AllocError::Exhausted(net("10.32.5.0/29")))
        );
        assert_eq!(a.release("c1/eth0"), Some(first));
        assert_eq!(a.release("c1/eth0"), None);
        assert_eq!(a.allocate("c6/eth0"), Ok(first));
        assert!(
            !seen.contains(&Ipv4Addr::new(10, 32, 5, 7)),
            "broadcast is never handed out"
        );
    }
}
