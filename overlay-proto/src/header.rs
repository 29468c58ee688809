//! The overlay header in front of every data datagram (UDP side of the listen port).
//!
//! ```text
//!  0       1       2       3
//! +-------+-------+-------+-------+
//! |version| kind  | hops  | flags |
//! +-------+-------+-------+-------+
//! |                               |
//! +     source peer id (u64)      +
//! |                               |
//! +-------------------------------+
//! |                               |
//! +  destination peer id (u64)    +
//! |                               |
//! +-------------------------------+
//! | payload (kind Ip: one IPv4 or IPv6 packet; kinds TraceProbe and
//! |          TraceReport: see [`crate::trace`]) ...
//! ```
//! All integers are big-endian. `version` is [`VERSION`]; a receiver drops other versions.
//! `hops` is the remaining hop limit: the sender sets [`DEFAULT_HOP_LIMIT`], every relay
//! decrements it and drops the datagram instead of forwarding it with zero left, so a
//! routing loop cannot amplify traffic. Source and destination are [`PeerId`]s of the
//! originating and the final agent, so a relay forwards without looking at the payload.
//! `flags` bits not defined for the kind must be zero when sent and are ignored when received;
//! for [`Kind::Ip`], bit 0 is [`FLAG_CSUM_PARTIAL`]. Bit 7, [`FLAG_SEALED`], is defined for
//! every kind and is never ignored: the payload is sealed ([`crate::seal`]: key id, counter,
//! ciphertext, tag) and this header, less its hop limit, is the AEAD's associated data. A
//! relay forwards a sealed datagram like any other (only the hop limit changes); the
//! destination opens it, and drops it if it has no key for the sender. With `--encrypt`, an
//! agent drops unsealed [`Kind::Ip`] datagrams addressed to it
//! ([`crate::dataplane::decap::decap_datagram`]).
//!
//! After [`Header::parse`] succeeds, the payload is `buf[HEADER_LEN..]`; parse never panics.

use crate::peer::PeerId;

/// Header length in bytes.
pub const HEADER_LEN: usize = 20;
/// The header version this build writes and accepts.
pub const VERSION: u8 = 1;
/// Hop limit set by the originating agent.
pub const DEFAULT_HOP_LIMIT: u8 = 16;
/// Flag of [`Kind::Ip`]: the inner packet's TCP or UDP checksum is *partial* — it holds only
/// the pseudo-header sum, as the sender's kernel left it for offload. The receiver hands the
/// packet to its TUN marked "checksum needed" instead of verifying it; the payload is
/// protected in transit by the outer UDP checksum.
pub const FLAG_CSUM_PARTIAL: u8 = 0x01;
/// Flag of every kind: the payload is sealed (see [`crate::seal`] for its layout). The
/// header is authenticated as associated data, except the hop limit a relay rewrites.
pub const FLAG_SEALED: u8 = 0x80;
/// Offset of the hop limit in the header (the one byte a relay rewrites, hence left out of a
/// sealed datagram's associated data).
pub const HOPS_OFFSET: usize = field::HOPS;

mod field {
    use std::ops::Range;
    pub const VERSION: usize = 0;
    pub const KIND: usize = 1;
    pub const HOPS: usize = 2;
    pub const FLAGS: usize = 3;
    pub const SRC: Range<usize> = 4..12;
    pub const DST: Range<usize> = 12..20;
}

/// What the payload of a datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// One IP packet from a pod or node, to be written to the destination's TUN.
    Ip = 1,
    /// A trace probe ([`crate::trace::Probe`]): relayed like [`Kind::Ip`] towards `dst`;
    /// every agent it reaches reports back to `src`.
    TraceProbe = 2,
    /// A trace report ([`crate::trace::Report`]) for the origin of a probe, `dst`.
    TraceReport = 3,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Ip),
            2 => Some(Kind::TraceProbe),
            3 => Some(Kind::TraceReport),
            _ => None,
        }
    }
}

/// A parsed overlay header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// What the payload is.
    pub kind: Kind,
    /// Remaining hop limit.
    pub hop_limit: u8,
    /// Kind-specific flag bits.
    pub flags: u8,
    /// The agent that originated the datagram.
    pub src: PeerId,
    /// The agent the payload is for.
    pub dst: PeerId,
}

/// Why a datagram's header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// datagram shorter than the header
    #[error("datagram of {0} bytes is shorter than the {HEADER_LEN}-byte overlay header")]
    Truncated(usize),
    /// header version this build does not speak
    #[error("overlay header version {0} is not {VERSION}")]
    UnknownVersion(u8),
    /// payload kind this build does not know
    #[error("overlay header kind {0} is unknown")]
    UnknownKind(u8),
}

impl Header {
    /// A header for an IP packet from `src` to `dst` with the default hop limit.
    pub fn ip(src: PeerId, dst: PeerId) -> Header {
        Header {
            kind: Kind::Ip,
            hop_limit: DEFAULT_HOP_LIMIT,
            flags: 0,
            src,
            dst,
        }
    }

    /// Parses the header at the start of `buf`.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Header, HeaderError> {
        let Some(h) = buf.get(..HEADER_LEN) else {
            return Err(HeaderError::Truncated(buf.len()));
        };
        if h[field::VERSION] != VERSION {
            return Err(HeaderError::UnknownVersion(h[field::VERSION]));
        }
        let kind = Kind::from_u8(h[field::KIND]).ok_or(HeaderError::UnknownKind(h[field::KIND]))?;
        Ok(Header {
            kind,
            hop_limit: h[field::HOPS],
            flags: h[field::FLAGS],
            src: PeerId(read_u64(&h[field::SRC])),
            dst: PeerId(read_u64(&h[field::DST])),
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// Returns `None` (writing nothing) if `buf` is shorter than the header.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) -> Option<()> {
        let h = buf.get_mut(..HEADER_LEN)?;
        h[field::VERSION] = VERSION;
        h[field::KIND] = self.kind as u8;
        h[field::HOPS] = self.hop_limit;
        h[field::FLAGS] = self.flags;
        h[field::SRC].copy_from_slice(&self.src.0.to_be_bytes());
        h[field::DST].copy_from_slice(&self.dst.0.to_be_bytes());
        Some(())
    }

    /// Whether the payload is sealed ([`FLAG_SEALED`]).
    #[inline]
    pub fn is_sealed(&self) -> bool {
        self.flags & FLAG_SEALED != 0
    }

    /// Rewrites the hop limit of an already emitted header in place (used by relays).
    ///
    /// Returns `None` if `buf` is shorter than the header.
    #[inline]
    pub fn set_hop_limit(buf: &mut [u8], hop_limit: u8) -> Option<()> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        buf[field::HOPS] = hop_limit;
        Some(())
    }
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static FIXTURE: [u8; 24] = [
        0x01, 0x01, 0x10, 0x00, // version 1, kind Ip, hops 16, flags 0
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // src
        0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, // dst
        0x45, 0x00, 0x00, 0x14, // start of the payload
    ];

    fn fixture_header() -> Header {
        Header::ip(PeerId(0x0102_0304_0506_0708), PeerId(0xa1a2_a3a4_a5a6_a7a8))
    }

    #[test]
    fn test_deconstruct() {
        assert_eq!(Header::parse(&FIXTURE), Ok(fixture_header()));
    }

    #[test]
    fn test_construct() {
        let mut buf = [0xffu8; 24];
        buf[HEADER_LEN..].copy_from_slice(&FIXTURE[HEADER_LEN..]);
        fixture_header()
            .emit(&mut buf)
            .expect("room for the header");
        assert_eq!(buf, FIXTURE);
    }

    #[test]
    fn rejects_truncated_unknown_version_and_kind() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Header::parse(&FIXTURE[..len]),
                Err(HeaderError::Truncated(len))
            );
        }
        let mut b = FIXTURE;
        b[0] = 2;
        assert_eq!(Header::parse(&b), Err(HeaderError::UnknownVersion(2)));
        let mut b = FIXTURE;
        b[1] = 0;
        assert_eq!(Header::parse(&b), Err(HeaderError::UnknownKind(0)));
        b[1] = 4;
        assert_eq!(Header::parse(&b), Err(HeaderError::UnknownKind(4)));
        assert_eq!(fixture_header().emit(&mut [0u8; HEADER_LEN - 1]), None);
    }

    #[test]
    fn hop_limit_is_rewritten_in_place() {
        let mut b = FIXTURE;
        Header::set_hop_limit(&mut b, 3).expect("long enough");
        assert_eq!(Header::parse(&b).map(|h| h.hop_limit), Ok(3));
        assert_eq!(Header::set_hop_limit(&mut [0u8; 3], 1), None);
    }

    #[test]
    fn trace_kinds_have_their_own_numbers() {
        for (byte, kind) in [(2u8, Kind::TraceProbe), (3, Kind::TraceReport)] {
            let mut b = FIXTURE;
            b[1] = byte;
            assert_eq!(Header::parse(&b).map(|h| h.kind), Ok(kind));
            let mut out = [0u8; HEADER_LEN];
            Header {
                kind,
                ..fixture_header()
            }
            .emit(&mut out)
            .expect("room");
            assert_eq!(out[1], byte);
        }
    }

    #[test]
    fn sealed_flag_parses_for_every_kind() {
        for kind in [1u8, 2, 3] {
            let mut b = FIXTURE;
            b[1] = kind;
            b[3] = FLAG_SEALED | FLAG_CSUM_PARTIAL;
            let h = Header::parse(&b).expect("parses");
            assert!(h.is_sealed());
            assert_eq!(h.flags & FLAG_CSUM_PARTIAL, FLAG_CSUM_PARTIAL);
        }
        assert!(!fixture_header().is_sealed());
        assert_eq!(HOPS_OFFSET, 2);
    }

    proptest! {
        #[test]
        fn round_trip(src: u64, dst: u64, hops: u8, flags: u8) {
            let h = Header { kind: Kind::Ip, hop_limit: hops, flags, src: PeerId(src), dst: PeerId(dst) };
            let mut buf = [0u8; HEADER_LEN];
            h.emit(&mut buf).expect("room");
            prop_assert_eq!(Header::parse(&buf), Ok(h));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Header::parse(&bytes);
        }
    }
}
