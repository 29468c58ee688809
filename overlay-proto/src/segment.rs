//! Splitting a packet read from the TUN — up to a 64 KiB super-packet — into overlay
//! datagrams laid out back to back for one UDP GSO send. (Being written: the API is fixed.)

use crate::header::Header;
use crate::vnet::VnetHdr;

/// Most datagrams [`split`] produces from one packet.
pub const MAX_SEGMENTS: usize = 128;

/// Where [`split`] put the datagrams: `count` datagrams, every one `datagram_len` bytes long
/// except the last, which may be shorter; `total_len` bytes in all, from the start of `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitLayout {
    /// Number of datagrams.
    pub count: usize,
    /// Length of every datagram but the last.
    pub datagram_len: usize,
    /// Bytes written to `out`.
    pub total_len: usize,
}

/// Why a packet cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// the packet or its virtio header is inconsistent
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// a GSO type this build does not handle
    #[error("unsupported GSO type {0}")]
    Unsupported(u8),
    /// more than MAX_SEGMENTS segments
    #[error("{0} segments, more than {MAX_SEGMENTS}")]
    TooManySegments(usize),
    /// `out` is too small
    #[error("output buffer of {0} bytes is too small")]
    BufferTooSmall(usize),
}

/// Splits `packet` (the IP packet after `vnet` as read from the TUN) into datagrams of
/// `header` + one inner packet each, written back to back into `out`.
pub fn split(
    vnet: &VnetHdr,
    packet: &[u8],
    header: &Header,
    out: &mut [u8],
) -> Result<SplitLayout, SplitError> {
    let _ = (vnet, packet, header, out);
    Err(SplitError::Unsupported(u8::MAX))
}
