//! The inner IP packet: one zero-copy look at its IPv4 or IPv6 header and its TCP or UDP
//! header (on [etherparse](https://docs.rs/etherparse)'s header slices), and where its
//! transport checksum is. Every caller that reads an inner packet —
//! the data path's route check, [`split`](crate::segment::split), the
//! [`Coalescer`](crate::coalesce::Coalescer) — goes through here.
//!
//! # Entry points
//! Three readings of the same headers, from lax to strict:
//! - [`peek`]: the loose look at any packet, for flow keys and [`csum_location`]: version,
//!   protocol and transport offset from a complete fixed header, no length field checked.
//! - [`parse_ipv4`]: the route check of encap and decap: an IPv4 header whose total length
//!   lies within the bytes (trailing bytes allowed); IPv6 is [`IpError::Ipv6Unsupported`];
//!   the transport header is looked at only for a partial checksum ([`l4_checksum`]).
//! - [`Headers::parse`]: the strict check of split and coalesce: IPv4 or IPv6, length
//!   fields equal to the bytes present, not a fragment, no IPv6 extension header, a complete
//!   TCP or UDP header right after the IP header.
//!
//! Errors are [`IpError`]: which layer, which numbers. The data path counts them under the
//! [`DropReason`](crate::dataplane::DropReason) it maps them to (in one place,
//! `dataplane::drop`).
//!
//! # Layout
//! - [`ipv4`], [`ipv6`], [`l4`]: field offsets and the per-header checks.
//! - `headers`: [`Headers`] (strict) and [`peek`] (loose).
//! - `slices`: etherparse's zero-copy header slices under the route and strict checks, their
//!   errors as [`IpError`].
//! - `csum`: checksum location and completion ([`complete`]).
//! - `field`: big-endian reads and writes at an offset that never panic.
//!
//! Nothing here panics on any bytes or allocates.

mod csum;
mod error;
mod field;
mod headers;
pub mod ipv4;
pub mod ipv6;
pub mod l4;
mod slices;

pub use csum::{complete, csum_location, l4_checksum};
pub use error::{IpError, Layer};
pub(crate) use field::{be16, be32, put16, put32};
pub use headers::{peek, Headers, Peek};
pub use ipv4::{parse_ipv4, Ipv4Info};
pub use l4::{L4, PROTO_TCP, PROTO_UDP};
