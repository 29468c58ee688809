//! Sans-IO core of the overlay network.
//!
//! Everything here is pure: no sockets, no threads, no clock (time is passed in as an
//! argument). The agent is a thin I/O shell around it; the deterministic simulation in
//! `tests/` runs many [`node::Node`]s against simulated time and loss.
//!
//! # Layout
//! - [`peer`]: peer names and the compact ids carried in data headers.
//! - [`header`]: the overlay header in front of every data datagram.
//! - [`message`], [`codec`]: control-plane messages and their framing on TCP ([`codec::FrameBuffer`]
//!   reads the frames of every connection).
//! - [`topology`]: gossiped per-peer records and their merge.
//! - [`routing`]: shortest paths over established connections.
//! - [`ipam`]: block claims among nodes, pod addresses within a block.
//! - [`forwarding`]: the per-packet lookup table handed to the data path.
//! - [`ip`]: the one view of an inner packet's IPv4/IPv6 and TCP/UDP headers (route check,
//!   strict check of split and coalesce), typed [`ip::IpError`]s, and where its L4 checksum is.
//! - [`dataplane`]: every per-packet decision of the data path as a pure function over the
//!   caller's buffers returning a verdict: encap, decap, the relay rule, the trace steps,
//!   and [`dataplane::DropReason`].
//! - [`vnet`], [`segment`], [`coalesce`]: the fast path's TUN offload header, splitting of
//!   super-packets into datagrams for UDP GSO, and coalescing of received segments;
//!   [`checksum`]: the internet checksum they fix up.
//! - [`seal`]: the encrypted data path's core: sealed datagram format, key schedule, AEAD
//!   per datagram, replay window, rekeying (the agent's `--encrypt`).
//! - [`trace`]: payloads of the trace probes and reports (`overlay-agent trace`).
//! - [`node`]: the control-plane state machine of one agent.
//! - [`noise`]: with a cluster secret, the Noise handshake that opens a control connection
//!   and the encrypted records that carry its frames.
//! - [`api`]: JSON bodies of the agent's local IPAM API (used by the CNI plugin).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod checksum;
pub mod coalesce;
pub mod codec;
pub mod dataplane;
pub mod forwarding;
pub mod header;
pub mod ip;
pub mod ipam;
pub mod message;
pub mod node;
pub mod noise;
pub mod peer;
mod rng;
pub mod routing;
pub mod seal;
pub mod segment;
pub mod topology;
pub mod trace;
pub mod vnet;

pub use peer::{PeerId, PeerName};
