//! The fixed IPv6 header. Extension headers are not walked: a packet with one is not
//! coalesced or split, only passed through.
//!
//! ```text
//! | ver=6 TC flow label | payload length | next header | hop limit | src | dst |
//!   0..4                  4..6             6             7           8..24 24..40
//! ```

/// Length of the fixed IPv6 header.
pub const LEN: usize = 40;
/// Offset of the payload length.
pub const PAYLOAD_LEN: usize = 4;
/// Offset of the next-header value.
pub const NEXT_HEADER: usize = 6;
/// Offset of the hop limit.
pub const HOP_LIMIT: usize = 7;
/// Source then destination address.
pub const ADDRS: std::ops::Range<usize> = 8..40;

/// Whether an IPv6 next-header value is an extension header (RFC 8200 and the IANA list).
#[inline]
pub fn is_extension(next_header: u8) -> bool {
    matches!(
        next_header,
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
    )
}
