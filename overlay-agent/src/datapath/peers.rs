//! Per-peer traffic counters: a fixed-size, lock-free table keyed by [`PeerId`].
//!
//! Each direction of the packet thread owns one table and is its only writer (the tx half
//! counts by destination peer, the rx half by originating peer); readers walk it at any time.
//! The table is open addressing over [`SLOTS`] slots, allocated once: a peer claims a slot
//! the first time it is counted and keeps it (peer ids are derived from names, so a restarted
//! peer keeps its slot too). Updates are relaxed loads and stores, made once per super-packet
//! or receive batch. Should more than [`SLOTS`] peers ever be counted, the others are only in
//! the data path's totals.

use overlay_proto::peer::PeerId;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Slots per table (a power of two).
pub(crate) const SLOTS: usize = 2048;

#[derive(Debug, Default)]
struct Slot {
    used: AtomicBool,
    peer: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// One thread's per-peer counters.
#[derive(Debug)]
pub(crate) struct PeerTable {
    slots: Box<[Slot]>,
    overflow: AtomicU64,
}

impl Default for PeerTable {
    fn default() -> Self {
        PeerTable {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            overflow: AtomicU64::new(0),
        }
    }
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// The first slot to probe for `peer` (ids are FNV hashes already; the multiply spreads
/// whatever bits they share).
#[inline]
fn home(peer: PeerId) -> usize {
    (peer.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & (SLOTS - 1)
}

impl PeerTable {
    /// Counts `packets` packets of `bytes` bytes for `peer`. Owner thread only.
    #[inline]
    pub(crate) fn add(&self, peer: PeerId, packets: u64, bytes: u64) {
        let mut i = home(peer);
        for _ in 0..SLOTS {
            let slot = &self.slots[i];
            if !slot.used.load(Ordering::Relaxed) {
                slot.peer.store(peer.0, Ordering::Relaxed);
                // Publishes the key before any reader can see the slot as used.
                slot.used.store(true, Ordering::Release);
            } else if slot.peer.load(Ordering::Relaxed) != peer.0 {
                i = (i + 1) & (SLOTS - 1);
                continue;
            }
            bump(&slot.packets, packets);
            bump(&slot.bytes, bytes);
            return;
        }
        bump(&self.overflow, packets);
    }

    /// Calls `f(peer, packets, bytes)` for every peer counted so far.
    pub(crate) fn for_each(&self, mut f: impl FnMut(PeerId, u64, u64)) {
        for slot in self.slots.iter() {
            if slot.used.load(Ordering::Acquire) {
                f(
                    PeerId(slot.peer.load(Ordering::Relaxed)),
                    slot.packets.load(Ordering::Relaxed),
                    slot.bytes.load(Ordering::Relaxed),
                );
            }
        }
    }

    /// Packets not attributed to a peer because the table was full.
    #[cfg(test)]
    pub(crate) fn overflowed(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn contents(t: &PeerTable) -> BTreeMap<u64, (u64, u64)> {
        let mut m = BTreeMap::new();
        t.for_each(|p, n, b| {
            assert!(m.insert(p.0, (n, b)).is_none(), "one slot per peer");
        });
        m
    }

    #[test]
    fn peers_are_counted_apart_even_when_their_slots_collide() {
        let t = PeerTable::default();
        let a = PeerId::from_name("a");
        // Ids with the same home slot as `a`.
        let colliding: Vec<PeerId> = (0u64..)
            .map(PeerId)
            .filter(|p| home(*p) == home(a))
            .take(3)
            .collect();
        t.add(a, 1, 100);
        for (i, p) in colliding.iter().enumerate() {
            t.add(*p, i as u64 + 2, 10);
        }
        t.add(a, 4, 50);
        let m = contents(&t);
        assert_eq!(m.len(), 4);
        assert_eq!(m[&a.0], (5, 150));
        for (i, p) in colliding.iter().enumerate() {
            assert_eq!(m[&p.0], (i as u64 + 2, 10));
        }
        assert_eq!(t.overflowed(), 0);
    }

    #[test]
    fn a_full_table_counts_the_rest_as_overflow() {
        let t = PeerTable::default();
        for i in 0..SLOTS as u64 {
            t.add(PeerId(i), 1, 1);
        }
        t.add(PeerId(u64::MAX), 7, 1);
        t.add(PeerId(3), 1, 1);
        let m = contents(&t);
        assert_eq!(m.len(), SLOTS);
        assert_eq!(m[&3], (2, 2));
        assert_eq!(t.overflowed(), 7);
    }
}
