//! Data-path counters: one block of relaxed atomics per thread, summed on read.
//!
//! Each packet thread owns one [`Counters`] block and is its only writer, so an update is a
//! relaxed load plus a relaxed store (no locked read-modify-write, no shared cache line with
//! the other thread). Readers ([`Counters::snapshot`]) may see a packet counted in one field
//! and not yet in another; every value only grows.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Data-path counters, summed over threads.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CountersSnapshot {
    /// Packets read from the TUN and sent to a peer.
    pub tx_packets: u64,
    /// Bytes of those packets (inner).
    pub tx_bytes: u64,
    /// Packets received from peers and written to the TUN.
    pub rx_packets: u64,
    /// Bytes of those packets (inner).
    pub rx_bytes: u64,
    /// Datagrams forwarded for other peers.
    pub relayed_packets: u64,
    /// Drops by reason.
    pub drops: DropCounters,
}

/// Drops by reason.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DropCounters {
    /// Datagram from an address that is not a current peer.
    pub not_peer: u64,
    /// Datagram shorter than the overlay header or with a malformed inner packet.
    pub malformed: u64,
    /// Unknown overlay header version.
    pub bad_version: u64,
    /// Unknown overlay header kind.
    pub bad_kind: u64,
    /// Hop limit reached on a relay.
    pub hop_limit: u64,
    /// Inner source address outside the sending peer's block.
    pub spoofed: u64,
    /// No route to the destination peer or block (outbound or relay).
    pub no_route: u64,
    /// Destination outside the cluster range, or not an IPv4 packet.
    pub unsupported: u64,
    /// Delivered to this node but for an address outside its block.
    pub not_local: u64,
    /// Send or TUN write failed.
    pub io_error: u64,
    /// Outer datagram larger than the path MTU allows (the send failed with EMSGSIZE; the
    /// overlay MTU on the TUN is too large for the underlay).
    pub too_big: u64,
}

impl CountersSnapshot {
    /// Sum of all drop reasons.
    pub fn total_drops(&self) -> u64 {
        let d = &self.drops;
        d.not_peer
            + d.malformed
            + d.bad_version
            + d.bad_kind
            + d.hop_limit
            + d.spoofed
            + d.no_route
            + d.unsupported
            + d.not_local
            + d.io_error
            + d.too_big
    }
}

/// Why a packet or datagram was dropped; indexes the drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    NotPeer,
    Malformed,
    BadVersion,
    BadKind,
    HopLimit,
    Spoofed,
    NoRoute,
    Unsupported,
    NotLocal,
    IoError,
    TooBig,
}

const DROP_REASONS: usize = 11;

/// One thread's counters (see the module docs). Aligned so two threads' blocks never share a
/// cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    relayed_packets: AtomicU64,
    drops: [AtomicU64; DROP_REASONS],
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Counters {
    /// Counts one packet of `bytes` inner bytes sent to a peer. Owner thread only.
    #[inline]
    pub(crate) fn sent(&self, bytes: usize) {
        bump(&self.tx_packets, 1);
        bump(&self.tx_bytes, bytes as u64);
    }

    /// Counts one packet of `bytes` inner bytes written to the TUN. Owner thread only.
    #[inline]
    pub(crate) fn delivered(&self, bytes: usize) {
        bump(&self.rx_packets, 1);
        bump(&self.rx_bytes, bytes as u64);
    }

    /// Counts one relayed datagram. Owner thread only.
    #[inline]
    pub(crate) fn relayed(&self) {
        bump(&self.relayed_packets, 1);
    }

    /// Counts one drop. Owner thread only.
    #[inline]
    pub(crate) fn dropped(&self, reason: DropReason) {
        bump(&self.drops[reason as usize], 1);
    }

    /// Adds this block's values to `sum`.
    pub(crate) fn add_to(&self, sum: &mut CountersSnapshot) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let drop = |r: DropReason| get(&self.drops[r as usize]);
        sum.tx_packets += get(&self.tx_packets);
        sum.tx_bytes += get(&self.tx_bytes);
        sum.rx_packets += get(&self.rx_packets);
        sum.rx_bytes += get(&self.rx_bytes);
        sum.relayed_packets += get(&self.relayed_packets);
        let d = &mut sum.drops;
        d.not_peer += drop(DropReason::NotPeer);
        d.malformed += drop(DropReason::Malformed);
        d.bad_version += drop(DropReason::BadVersion);
        d.bad_kind += drop(DropReason::BadKind);
        d.hop_limit += drop(DropReason::HopLimit);
        d.spoofed += drop(DropReason::Spoofed);
        d.no_route += drop(DropReason::NoRoute);
        d.unsupported += drop(DropReason::Unsupported);
        d.not_local += drop(DropReason::NotLocal);
        d.io_error += drop(DropReason::IoError);
        d.too_big += drop(DropReason::TooBig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_lands_in_its_own_field() {
        let c = Counters::default();
        let reasons = [
            DropReason::NotPeer,
            DropReason::Malformed,
            DropReason::BadVersion,
            DropReason::BadKind,
            DropReason::HopLimit,
            DropReason::Spoofed,
            DropReason::NoRoute,
            DropReason::Unsupported,
            DropReason::NotLocal,
            DropReason::IoError,
            DropReason::TooBig,
        ];
        assert_eq!(reasons.len(), DROP_REASONS);
        for (i, r) in reasons.iter().enumerate() {
            for _ in 0..=i {
                c.dropped(*r);
            }
        }
        c.sent(100);
        c.delivered(60);
        c.delivered(40);
        c.relayed();
        let mut s = CountersSnapshot::default();
        c.add_to(&mut s);
        c.add_to(&mut s);
        let d = &s.drops;
        let got = [
            d.not_peer,
            d.malformed,
            d.bad_version,
            d.bad_kind,
            d.hop_limit,
            d.spoofed,
            d.no_route,
            d.unsupported,
            d.not_local,
            d.io_error,
            d.too_big,
        ];
        assert_eq!(got, [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]);
        assert_eq!((s.tx_packets, s.tx_bytes), (2, 200));
        assert_eq!((s.rx_packets, s.rx_bytes), (4, 200));
        assert_eq!(s.relayed_packets, 2);
        assert_eq!(s.total_drops(), 132);
    }
}
