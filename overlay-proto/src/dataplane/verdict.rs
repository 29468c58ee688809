//! What the I/O shell does with a received datagram ([`RxVerdict`], from
//! [`decap_datagram`](super::decap::decap_datagram)) or with a packet read from the TUN
//! ([`TxVerdict`], from [`encap`](super::encap::encap)).

use super::DropReason;
use crate::peer::PeerId;
use crate::segment::SplitLayout;
use std::net::SocketAddr;
use std::ops::Range;

/// What to do with a received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RxVerdict {
    /// Write `datagram[range]` (the inner packet) to the TUN.
    Deliver {
        /// The inner packet (without trailing bytes).
        range: Range<usize>,
        /// The originating peer.
        src: PeerId,
        /// The packet's TCP/UDP checksum is partial: `(csum_start, csum_offset)`.
        partial: Option<(u16, u16)>,
    },
    /// Send the datagram, whose hop limit was decremented in place, to `to`.
    Relay {
        /// The next hop's underlay address.
        to: SocketAddr,
    },
    /// A trace datagram (probe or report): hand it to the trace task.
    Trace,
    /// Drop it, counting it under this reason.
    Drop(DropReason),
}

/// What to do with a packet read from the TUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxVerdict {
    /// Send `buf[..len]` (header and packet) to `to` as one datagram.
    Single {
        /// The next hop's underlay address.
        to: SocketAddr,
        /// The destination peer.
        dst: PeerId,
        /// Datagram length.
        len: usize,
    },
    /// Send the datagrams laid out in the split buffer to `to`.
    Split {
        /// The next hop's underlay address.
        to: SocketAddr,
        /// The destination peer.
        dst: PeerId,
        /// Where they are.
        layout: SplitLayout,
    },
    /// Drop the packet, counting it under this reason.
    Drop(DropReason),
}
