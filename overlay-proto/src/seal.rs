//! Sealing of data datagrams (`--encrypt`): AEAD per datagram with per-peer-pair,
//! per-direction keys, a counter nonce, a replay window that tolerates reordering, and
//! rekeying without dropping traffic. The data-path encryption core; the agent does not use
//! it yet.
//!
//! # Wire format
//! ```text
//!  0                 20      21      24              32                        n-16      n
//! +-----------------+-------+-------+---------------+------------------------+---------+
//! | overlay header  | suite | epoch |    counter    | ciphertext of the      |   tag   |
//! | FLAG_SEALED set | (u8)  | (u24) |     (u64)     | inner packet (or trace | (16 B)  |
//! | (clear; AAD)    |       |       |               | payload)               |         |
//! +-----------------+-------+-------+---------------+------------------------+---------+
//!                   <-------- nonce (12 B) --------->
//! ```
//! All integers big-endian. The 12 bytes after the header are the AEAD nonce as they stand:
//! `suite` ([`Suite`]), the key `epoch` and the sender's `counter`, which starts at 0 for each
//! epoch and never repeats under one key. Being the nonce, they are authenticated by the tag.
//! The associated data is the 20-byte [`crate::header`] with the hop limit zeroed (relays
//! decrement it), so version, kind, flags, source and destination cannot be altered
//! undetected, and a relay routes on source and destination without reading the payload.
//!
//! Overhead: [`OVERHEAD`] = 28 bytes per datagram (12 nonce + 16 tag) on top of the 20-byte
//! header; with `--encrypt` the overlay MTU is underlay MTU − 20 (IPv4) − 8 (UDP) − 20 −
//! 28, i.e. 1424 on a 1500-byte underlay instead of 1452 ([`overlay_mtu`]).
//!
//! # Keys
//! [`PairKeys::derive`] expands, with HKDF-SHA256, a 32-byte secret shared by the two peers
//! into one key per direction, per epoch and per suite: the info string carries the sending
//! and the receiving peer id in that order, so A→B and B→A never share a key (nor a nonce
//! space). The shared secret must be fresh per pair of agent runs ([`session_secret`]): the
//! counter restarts at 0 when an agent restarts, so a secret reused across runs would reuse
//! nonces. See [`keys`] for where it comes from and what a relay can and cannot compute.
//!
//! # Replay window
//! Per (peer, epoch), a 2048-bit sliding bitmap in the style of RFC 6479 ([`ReplayWindow`]):
//! any counter above the highest seen is accepted; within the last 1984 below it, each is
//! accepted once (reordering tolerated); older ones are rejected as too old. The window is
//! updated only after the tag verified, so a forged datagram cannot move it.
//!
//! # Rekeying
//! The [`Sealer`] moves to the next epoch (a fresh key from the same secret) after a packet
//! count or an age given by its [`RekeyPolicy`] (the caller passes `now`, monotonic
//! nanoseconds). The [`Opener`] holds the current epoch's key, the next one derived ahead,
//! and the previous one for a grace period after it switched: datagrams of the old epoch
//! still in flight, or reordered across the switch, are opened, so no traffic is dropped.
//! It also follows a sender that skipped epochs (up to [`MAX_EPOCH_AHEAD`]), deriving the key
//! once; it only switches after a tag verified under the new key.
//!
//! # Suite
//! AES-256-GCM where the CPU has AES and carry-less multiply instructions, ChaCha20-Poly1305
//! otherwise ([`Suite::detect`], [`Suite::negotiate`]), both from `ring` (assembly; measured
//! in `benches/benches/aead.rs`).
//!
//! Nothing here panics on any input or allocates per datagram.

pub mod keys;
mod opener;
mod replay;
mod sealer;
mod suite;
#[cfg(test)]
mod tests;

pub use keys::{session_secret, DirectionKey, PairKeys};
pub use opener::Opener;
pub use replay::{ReplayWindow, WINDOW};
pub use sealer::Sealer;
pub use suite::Suite;

use crate::header::{HEADER_LEN, HOPS_OFFSET};
use crate::segment::SplitLayout;

/// Bytes between the overlay header and the ciphertext: suite, epoch and counter (the nonce).
pub const NONCE_LEN: usize = 12;
/// Length of the authentication tag at the end of a sealed datagram.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed datagram has beyond the plain one: nonce material and tag.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Shortest sealed datagram: header, nonce and tag around an empty payload.
pub const MIN_SEALED_LEN: usize = HEADER_LEN + OVERHEAD;
/// Largest epoch: the wire carries 24 bits of it.
pub const MAX_EPOCH: u32 = (1 << 24) - 1;
/// Counters of one key stay below this (2⁶⁰, as WireGuard): the sealer rekeys before, and
/// the opener rejects anything at or above it.
pub const MAX_COUNTER: u64 = 1 << 60;
/// How many epochs past its current one an [`Opener`] follows a sender (one that rekeyed
/// while nothing of it got through).
pub const MAX_EPOCH_AHEAD: u32 = 64;

/// The overlay MTU with `--encrypt` on an underlay of `underlay_mtu` bytes, `ipv6` if the
/// underlay is IPv6: outer IP and UDP headers, the overlay header and [`OVERHEAD`] taken off.
pub fn overlay_mtu(underlay_mtu: usize, ipv6: bool) -> usize {
    let ip = if ipv6 { 40 } else { 20 };
    underlay_mtu.saturating_sub(ip + 8 + HEADER_LEN + OVERHEAD)
}

/// When the [`Sealer`] moves to the next epoch, and how long an [`Opener`] keeps the
/// previous one. Times in nanoseconds of the caller's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RekeyPolicy {
    /// Rekey once this many datagrams were sealed under one key.
    pub after_packets: u64,
    /// Rekey once the key is this old (checked when sealing).
    pub after_nanos: u64,
    /// The opener keeps the previous epoch's key this long after switching to a new one.
    pub grace_nanos: u64,
}

impl Default for RekeyPolicy {
    /// Every 2 minutes or 2³² datagrams (far inside AES-GCM's and ChaCha20-Poly1305's
    /// per-key limits), 10 s of grace (reordering is milliseconds).
    fn default() -> Self {
        RekeyPolicy {
            after_packets: 1 << 32,
            after_nanos: 120_000_000_000,
            grace_nanos: 10_000_000_000,
        }
    }
}

/// Why a batch could not be sealed. Nothing was written when this is returned, except for
/// [`SealError::Exhausted`], which leaves the buffer as it was too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// the layout does not describe datagrams of at least a header each within the buffer
    #[error("layout does not fit the buffer or a datagram is shorter than the header")]
    BadLayout,
    /// the buffer has no room for the per-datagram overhead
    #[error("buffer of {0} bytes has no room for the sealed datagrams")]
    BufferTooSmall(usize),
    /// every epoch was used (2²⁴ rekeys): a new session secret is needed
    #[error("key epochs exhausted")]
    Exhausted,
}

/// Why a datagram was not opened; each is a drop reason of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// shorter than header, nonce and tag
    #[error("sealed datagram of {0} bytes is truncated")]
    Truncated(usize),
    /// not flagged sealed
    #[error("datagram is not sealed")]
    NotSealed,
    /// sealed with another suite than this pair's
    #[error("sealed with suite {0}, not this pair's")]
    WrongSuite(u8),
    /// a key epoch this opener does not hold (expired, or too far ahead)
    #[error("unknown key epoch {0}")]
    UnknownEpoch(u32),
    /// a counter already received
    #[error("replayed counter")]
    Replay,
    /// a counter below the replay window
    #[error("counter below the replay window")]
    TooOld,
    /// the tag does not verify: tampered with, or sealed under another key
    #[error("authentication tag does not verify")]
    BadTag,
}

/// The layout of a single datagram of `len` bytes, for [`Sealer::seal`].
pub fn single(len: usize) -> SplitLayout {
    SplitLayout {
        count: 1,
        datagram_len: len,
        total_len: len,
    }
}

/// The associated data of a sealed datagram: its header with the hop limit zeroed.
#[inline]
fn aad(header: &[u8]) -> [u8; HEADER_LEN] {
    let mut a = [0u8; HEADER_LEN];
    if let Some(h) = header.get(..HEADER_LEN) {
        a.copy_from_slice(h);
    }
    a[HOPS_OFFSET] = 0;
    a
}

/// The nonce bytes of `suite`, `epoch` and `counter` as on the wire.
#[inline]
fn nonce(suite: Suite, epoch: u32, counter: u64) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..4].copy_from_slice(&epoch.to_be_bytes());
    n[0] = suite as u8;
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}
