//! The node's own block claim, kept valid by the rules of [`crate::ipam`].

use super::Node;
use crate::ipam::{block_owner, choose_block};
use crate::topology::Claim;
use std::time::Instant;

impl Node {
    /// True if `claim` is a block of this node's cluster range and size.
    pub(super) fn claim_fits(&self, claim: &Claim) -> bool {
        let b = claim.block;
        b.prefix_len() == self.config.subnet_prefix
            && b.trunc() == b
            && self.config.cluster.contains(&b)
    }

    /// Claims a block when the node has none it can keep: at start (once it may), and when
    /// another claim on its block wins.
    pub(super) fn check_claim(&mut self, now: Instant) {
        if self.left || !self.claim_ready {
            return;
        }
        let me = &self.config.name;
        let keeps = self.asserted_claim.is_some_and(|c| {
            block_owner(&self.topology, c.block).is_none_or(|(owner, _)| owner == me)
        });
        if keeps {
            return;
        }
        let reclaim_after = self.config.timing.reclaim_after;
        let unreachable = &self.unreachable_since;
        let chosen = choose_block(
            &self.topology,
            me,
            self.config.cluster,
            self.config.subnet_prefix,
            |peer| {
                unreachable
                    .get(peer)
                    .is_some_and(|t| now >= *t + reclaim_after)
            },
        );
        if chosen != self.asserted_claim {
            if self.asserted_claim.is_some() {
                self.stats.claim_conflicts += 1;
            }
            self.asserted_claim = chosen;
            self.publish_self();
        }
    }
}
