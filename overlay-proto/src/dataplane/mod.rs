//! The data plane's per-packet decisions: pure functions over the caller's buffers that
//! return a verdict telling the I/O shell what to do next (send, write to the TUN, hand to
//! the trace task, or drop and count why), in the manner of boringtun's `TunnResult`.
//!
//! Nothing here allocates, locks, logs or panics, whatever the bytes: the agent's packet
//! thread calls these functions per packet, the fuzzers call them on arbitrary input, and
//! the simulation can call them without sockets. The I/O shell owns the buffers, reads the
//! current [`ForwardingTable`](crate::forwarding::ForwardingTable) and counts every
//! [`DropReason`] it is given.
//!
//! # Layout
//! - [`encap`]: TUN → UDP: route an inner packet ([`encap::route`]) and give it its overlay
//!   header, or split a super-packet into datagrams ([`encap::encap`]).
//! - [`decap`]: UDP → TUN or relay: check a received datagram ([`decap::decap_datagram`]),
//!   open it when sealed ([`Unseal`]), and the virtio header of a packet written alone.
//! - [`relay`]: the one relay rule (hop limit above 1, a next hop, hop limit decremented in
//!   place), used by data datagrams and by both trace steps.
//! - [`trace`]: what an agent does with a trace probe or report, and the trace datagrams.
//! - [`verdict`]: [`RxVerdict`] and [`TxVerdict`], what the shell does next.
//! - [`drop`](mod@drop): [`DropReason`], why a packet or datagram was dropped (the agent's drop
//!   counters and the `reason` label of its drop metric), and the reason each
//!   [`IpError`](crate::ip::IpError) of an inner packet counts as.
//!
//! The inner packet's headers are read with [`crate::ip`] ([`ip::parse_ipv4`](crate::ip::parse_ipv4)
//! routes it, [`ip::l4_checksum`](crate::ip::l4_checksum) locates a partial checksum).
//! - `fixtures` (tests, or the `test-fixtures` feature): a three-peer cluster and datagram
//!   builders for the tests and fuzzers of the data plane.

pub mod decap;
pub mod drop;
pub mod encap;
#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixtures;
pub mod relay;
pub mod trace;
pub mod verdict;

pub use decap::{Plain, Unseal};
pub use drop::DropReason;
pub use verdict::{RxVerdict, TxVerdict};
