//! Data-path counters: one block of relaxed atomics per thread, summed on read.
//!
//! Each packet thread owns one [`Counters`] block and is its only writer, so an update is a
//! relaxed load plus a relaxed store (no locked read-modify-write, no shared cache line with
//! the other thread). Traffic is counted once per super-packet or receive batch, not per
//! segment; drops are counted per packet or datagram. Readers ([`Counters::add_to`]) may see
//! a packet counted in one field and not yet in another; every value only grows.

use super::peers::PeerTable;
use overlay_proto::dataplane::DropReason;
use overlay_proto::peer::PeerId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::atomic::{AtomicU64, Ordering};

/// Data-path counters, summed over threads.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CountersSnapshot {
    /// Packets read from the TUN and sent to a peer: one per datagram, so a super-packet
    /// counts as the segments it was split into.
    pub tx_packets: u64,
    /// Bytes of those packets (inner, as sent: each segment with its own headers).
    pub tx_bytes: u64,
    /// Packets received from peers for this node and handed to the TUN (one per datagram).
    pub rx_packets: u64,
    /// Bytes of those packets (inner).
    pub rx_bytes: u64,
    /// Datagrams forwarded for other peers.
    pub relayed_packets: u64,
    /// Super-packets (TCP or UDP segmentation offload) read from the TUN and split.
    pub tx_super_packets: u64,
    /// UDP sends that carried several datagrams (GSO), originated or relayed.
    pub gso_sends: u64,
    /// UDP receives that returned several datagrams (GRO).
    pub gro_batches: u64,
    /// Writes to the TUN (each one packet, or one coalesced super-packet).
    pub rx_tun_writes: u64,
    /// Writes to the TUN that carried a coalesced super-packet.
    pub rx_coalesced_frames: u64,
    /// Traffic per peer: sent to it as destination, received from it as origin. Sorted by
    /// peer id.
    pub peers: Vec<PeerCounters>,
    /// Drops by reason.
    pub drops: DropCounters,
    /// Trace datagrams (probes and reports) received and handed to the trace task.
    pub trace_datagrams: u64,
    /// Of those, dropped because the trace queue was full.
    pub trace_dropped: u64,
}

/// Traffic with one peer (inner packets and bytes, counted like the totals).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PeerCounters {
    /// The peer (serialized as its 16 hex digits).
    #[serde(serialize_with = "peer_hex", deserialize_with = "peer_from_hex")]
    pub peer: PeerId,
    /// Packets sent to it.
    pub tx_packets: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// Packets received from it (for this node).
    pub rx_packets: u64,
    /// Bytes received from it.
    pub rx_bytes: u64,
}

impl Default for PeerCounters {
    fn default() -> Self {
        PeerCounters {
            peer: PeerId(0),
            tx_packets: 0,
            tx_bytes: 0,
            rx_packets: 0,
            rx_bytes: 0,
        }
    }
}

fn peer_hex<S: Serializer>(peer: &PeerId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(peer)
}

fn peer_from_hex<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
    let hex = String::deserialize(d)?;
    if hex.len() != 16 {
        return Err(serde::de::Error::custom(format!(
            "peer id {hex:?} is not 16 hex digits"
        )));
    }
    u64::from_str_radix(&hex, 16)
        .map(PeerId)
        .map_err(|e| serde::de::Error::custom(format!("peer id {hex:?}: {e}")))
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
    /// With `--encrypt`: no data key for the peer (its identity key is not known for its current run: neither proven in a handshake nor gossiped), or a sealed datagram from a peer without one.
    pub no_key: u64,
    /// With `--encrypt`: an unsealed data datagram addressed to this node.
    pub unsealed: u64,
    /// Without `--encrypt`: a sealed datagram addressed to this node.
    pub sealed_unexpected: u64,
    /// A sealed datagram shorter than header, nonce and tag.
    pub seal_truncated: u64,
    /// A sealed datagram of an unknown AEAD suite.
    pub bad_suite: u64,
    /// A sealed datagram of a key epoch this node does not hold (expired or too far ahead).
    pub unknown_epoch: u64,
    /// A sealed datagram whose counter was already received (a replay).
    pub replay: u64,
    /// A sealed datagram whose counter is below the replay window.
    pub too_old: u64,
    /// A sealed datagram whose authentication tag does not verify (tampered with, or sealed under another key).
    pub bad_tag: u64,
}

impl CountersSnapshot {
    /// Sum of all drop reasons.
    pub fn total_drops(&self) -> u64 {
        self.drops.by_reason().iter().map(|(_, n)| n).sum()
    }
}

impl DropCounters {
    /// Every drop counter with its reason (the field name, the `reason` label of the
    /// metric). The destructuring makes a new drop counter a compile error here until it is
    /// given a name.
    pub fn by_reason(&self) -> [(&'static str, u64); DROP_REASONS] {
        let DropCounters {
            not_peer,
            malformed,
            bad_version,
            bad_kind,
            hop_limit,
            spoofed,
            no_route,
            unsupported,
            not_local,
            io_error,
            too_big,
            no_key,
            unsealed,
            sealed_unexpected,
            seal_truncated,
            bad_suite,
            unknown_epoch,
            replay,
            too_old,
            bad_tag,
        } = *self;
        [
            ("not_peer", not_peer),
            ("malformed", malformed),
            ("bad_version", bad_version),
            ("bad_kind", bad_kind),
            ("hop_limit", hop_limit),
            ("spoofed", spoofed),
            ("no_route", no_route),
            ("unsupported", unsupported),
            ("not_local", not_local),
            ("io_error", io_error),
            ("too_big", too_big),
            ("no_key", no_key),
            ("unsealed", unsealed),
            ("sealed_unexpected", sealed_unexpected),
            ("seal_truncated", seal_truncated),
            ("bad_suite", bad_suite),
            ("unknown_epoch", unknown_epoch),
            ("replay", replay),
            ("too_old", too_old),
            ("bad_tag", bad_tag),
        ]
    }
}

/// Number of drop counters: one per [`DropReason`], which indexes them.
const DROP_REASONS: usize = DropReason::COUNT;

/// Which side of [`PeerCounters`] a thread's per-peer table fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Sent to the peer (the tx half).
    Tx,
    /// Received from the peer (the rx half).
    Rx,
}

/// One thread's counters (see the module docs). Aligned so two threads' blocks never share a
/// cache line.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Counters {
    direction: Direction,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    relayed_packets: AtomicU64,
    tx_super_packets: AtomicU64,
    gso_sends: AtomicU64,
    gro_batches: AtomicU64,
    rx_tun_writes: AtomicU64,
    rx_coalesced_frames: AtomicU64,
    drops: [AtomicU64; DROP_REASONS],
    peers: PeerTable,
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Counters {
    /// A zeroed block whose per-peer table counts in `direction`.
    pub(crate) fn new(direction: Direction) -> Counters {
        Counters {
            direction,
            tx_packets: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            relayed_packets: AtomicU64::new(0),
            tx_super_packets: AtomicU64::new(0),
            gso_sends: AtomicU64::new(0),
            gro_batches: AtomicU64::new(0),
            rx_tun_writes: AtomicU64::new(0),
            rx_coalesced_frames: AtomicU64::new(0),
            drops: Default::default(),
            peers: PeerTable::default(),
        }
    }

    /// Counts `packets` packets of `bytes` inner bytes sent to `peer`. Owner thread only.
    #[inline]
    pub(crate) fn sent(&self, peer: PeerId, packets: usize, bytes: usize) {
        bump(&self.tx_packets, packets as u64);
        bump(&self.tx_bytes, bytes as u64);
        self.peers.add(peer, packets as u64, bytes as u64);
    }

    /// Counts `packets` packets of `bytes` inner bytes from `peer` handed to the TUN. Owner
    /// thread only.
    #[inline]
    pub(crate) fn delivered(&self, peer: PeerId, packets: usize, bytes: usize) {
        bump(&self.rx_packets, packets as u64);
        bump(&self.rx_bytes, bytes as u64);
        self.peers.add(peer, packets as u64, bytes as u64);
    }

    /// Counts `n` relayed datagrams. Owner thread only.
    #[inline]
    pub(crate) fn relayed(&self, n: usize) {
        bump(&self.relayed_packets, n as u64);
    }

    /// Counts one super-packet read from the TUN. Owner thread only.
    #[inline]
    pub(crate) fn super_packet(&self) {
        bump(&self.tx_super_packets, 1);
    }

    /// Counts `n` GSO sends. Owner thread only.
    #[inline]
    pub(crate) fn gso_sends(&self, n: usize) {
        bump(&self.gso_sends, n as u64);
    }

    /// Counts one GRO batch. Owner thread only.
    #[inline]
    pub(crate) fn gro_batch(&self) {
        bump(&self.gro_batches, 1);
    }

    /// Counts `writes` TUN writes of which `coalesced` carried super-packets. Owner thread
    /// only.
    #[inline]
    pub(crate) fn tun_writes(&self, writes: usize, coalesced: usize) {
        bump(&self.rx_tun_writes, writes as u64);
        bump(&self.rx_coalesced_frames, coalesced as u64);
    }

    /// Counts one drop. Owner thread only.
    #[inline]
    pub(crate) fn dropped(&self, reason: DropReason) {
        self.dropped_n(reason, 1);
    }

    /// Counts `n` drops. Owner thread only.
    #[inline]
    pub(crate) fn dropped_n(&self, reason: DropReason, n: usize) {
        bump(&self.drops[reason as usize], n as u64);
    }

    /// Adds this block's values to `sum` (keeping `sum.peers` sorted by peer).
    pub(crate) fn add_to(&self, sum: &mut CountersSnapshot) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let drop = |r: DropReason| get(&self.drops[r as usize]);
        sum.tx_packets += get(&self.tx_packets);
        sum.tx_bytes += get(&self.tx_bytes);
        sum.rx_packets += get(&self.rx_packets);
        sum.rx_bytes += get(&self.rx_bytes);
        sum.relayed_packets += get(&self.relayed_packets);
        sum.tx_super_packets += get(&self.tx_super_packets);
        sum.gso_sends += get(&self.gso_sends);
        sum.gro_batches += get(&self.gro_batches);
        sum.rx_tun_writes += get(&self.rx_tun_writes);
        sum.rx_coalesced_frames += get(&self.rx_coalesced_frames);
        self.peers.for_each(|peer, packets, bytes| {
            let i = match sum.peers.binary_search_by_key(&peer, |p| p.peer) {
                Ok(i) => i,
                Err(i) => {
                    sum.peers.insert(
                        i,
                        PeerCounters {
                            peer,
                            ..PeerCounters::default()
                        },
                    );
                    i
                }
            };
            let p = &mut sum.peers[i];
            match self.direction {
                Direction::Tx => {
                    p.tx_packets += packets;
                    p.tx_bytes += bytes;
                }
                Direction::Rx => {
                    p.rx_packets += packets;
                    p.rx_bytes += bytes;
                }
            }
        });
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
        d.no_key += drop(DropReason::NoKey);
        d.unsealed += drop(DropReason::Unsealed);
        d.sealed_unexpected += drop(DropReason::SealedUnexpected);
        d.seal_truncated += drop(DropReason::SealTruncated);
        d.bad_suite += drop(DropReason::BadSuite);
        d.unknown_epoch += drop(DropReason::UnknownEpoch);
        d.replay += drop(DropReason::Replay);
        d.too_old += drop(DropReason::TooOld);
        d.bad_tag += drop(DropReason::BadTag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_lands_in_its_own_field() {
        let c = Counters::new(Direction::Tx);
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
            DropReason::NoKey,
            DropReason::Unsealed,
            DropReason::SealedUnexpected,
            DropReason::SealTruncated,
            DropReason::BadSuite,
            DropReason::UnknownEpoch,
            DropReason::Replay,
            DropReason::TooOld,
            DropReason::BadTag,
        ];
        assert_eq!(reasons.len(), DROP_REASONS);
        for (i, r) in reasons.iter().enumerate() {
            for _ in 0..=i {
                c.dropped(*r);
            }
        }
        let peer = PeerId(7);
        c.sent(peer, 1, 100);
        c.delivered(peer, 1, 60);
        c.delivered(peer, 1, 40);
        c.relayed(1);
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
            d.no_key,
            d.unsealed,
            d.sealed_unexpected,
            d.seal_truncated,
            d.bad_suite,
            d.unknown_epoch,
            d.replay,
            d.too_old,
            d.bad_tag,
        ];
        let want: Vec<u64> = (1..=DROP_REASONS as u64).map(|i| 2 * i).collect();
        assert_eq!(got.to_vec(), want);
        assert_eq!((s.tx_packets, s.tx_bytes), (2, 200));
        assert_eq!((s.rx_packets, s.rx_bytes), (4, 200));
        assert_eq!(s.relayed_packets, 2);
        assert_eq!(s.total_drops(), want.iter().sum::<u64>());
    }

    #[test]
    fn peers_are_merged_from_both_threads_and_serialized_in_hex() {
        let (tx, rx) = (Counters::new(Direction::Tx), Counters::new(Direction::Rx));
        let (a, b) = (PeerId(0xaf63_dc4c_8601_ec8c), PeerId(1));
        tx.sent(a, 44, 60_000);
        tx.super_packet();
        tx.gso_sends(2);
        tx.sent(b, 1, 100);
        rx.delivered(a, 10, 1000);
        rx.gro_batch();
        rx.tun_writes(3, 2);
        let mut s = CountersSnapshot::default();
        tx.add_to(&mut s);
        rx.add_to(&mut s);
        assert_eq!((s.tx_packets, s.tx_bytes, s.rx_packets), (45, 60_100, 10));
        assert_eq!((s.tx_super_packets, s.gso_sends, s.gro_batches), (1, 2, 1));
        assert_eq!((s.rx_tun_writes, s.rx_coalesced_frames), (3, 2));
        assert_eq!(
            s.peers,
            vec![
                PeerCounters {
                    peer: b,
                    tx_packets: 1,
                    tx_bytes: 100,
                    ..PeerCounters::default()
                },
                PeerCounters {
                    peer: a,
                    tx_packets: 44,
                    tx_bytes: 60_000,
                    rx_packets: 10,
                    rx_bytes: 1000,
                },
            ]
        );
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["peers"][1]["peer"], "af63dc4c8601ec8c");
        assert_eq!(json["peers"][0]["peer"], "0000000000000001");
        let back: CountersSnapshot = serde_json::from_value(json).expect("parse back");
        assert_eq!(back, s);
        // Older agents' JSON (without the new fields) still parses.
        let old: CountersSnapshot =
            serde_json::from_str(r#"{"tx_packets": 3, "drops": {"not_peer": 1}}"#).expect("old");
        assert_eq!((old.tx_packets, old.drops.not_peer), (3, 1));
        assert!(old.peers.is_empty());
        for bad in [r#""af63""#, r#""zzzzzzzzzzzzzzzz""#, "17"] {
            let json = format!(r#"{{"peer": {bad}}}"#);
            assert!(
                serde_json::from_str::<PeerCounters>(&json).is_err(),
                "{bad}"
            );
        }
    }
}
