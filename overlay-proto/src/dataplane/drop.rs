//! Why the data plane drops a packet or datagram: the vocabulary the pure decisions return
//! and the I/O shell counts (the agent keeps one counter per reason, named as in the
//! `reason` label of its drop metric, e.g. `not_peer` for [`DropReason::NotPeer`]).

/// Why a packet or datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Datagram from an address that is not a current peer.
    NotPeer,
    /// Datagram shorter than the overlay header or with a malformed inner packet.
    Malformed,
    /// Unknown overlay header version.
    BadVersion,
    /// Unknown overlay header kind.
    BadKind,
    /// Hop limit reached on a relay.
    HopLimit,
    /// Inner source address outside the sending peer's block.
    Spoofed,
    /// No route to the destination peer or block (outbound or relay).
    NoRoute,
    /// Destination outside the cluster range, or not an IPv4 packet.
    Unsupported,
    /// Delivered to this node but for an address outside its block.
    NotLocal,
    /// Send or TUN write failed.
    IoError,
    /// Outer datagram larger than the path MTU allows.
    TooBig,
    /// With `--encrypt`: no data key for the peer, or a sealed datagram from a peer without
    /// one.
    NoKey,
    /// With `--encrypt`: an unsealed data datagram addressed to this node.
    Unsealed,
    /// Without `--encrypt`: a sealed datagram addressed to this node.
    SealedUnexpected,
    /// A sealed datagram shorter than header, nonce and tag.
    SealTruncated,
    /// A sealed datagram of an unknown AEAD suite.
    BadSuite,
    /// A sealed datagram of a key epoch this node does not hold.
    UnknownEpoch,
    /// A sealed datagram whose counter was already received (a replay).
    Replay,
    /// A sealed datagram whose counter is below the replay window.
    TooOld,
    /// A sealed datagram whose authentication tag does not verify.
    BadTag,
}

impl DropReason {
    /// Number of reasons: `reason as usize` is below it (an index into per-reason counters).
    pub const COUNT: usize = DropReason::BadTag as usize + 1;
}

// The data plane's errors as drop reasons: the one place they are mapped. The I/O shell and
// the pure decisions convert with `?`/`map_err(DropReason::from)` and never match on them.

use crate::header::HeaderError;
use crate::ip::IpError;
use crate::seal::{OpenError, SealError};

/// A datagram whose overlay header does not parse.
impl From<HeaderError> for DropReason {
    #[inline]
    fn from(e: HeaderError) -> DropReason {
        match e {
            HeaderError::Truncated(_) => DropReason::Malformed,
            HeaderError::UnknownVersion(_) => DropReason::BadVersion,
            HeaderError::UnknownKind(_) => DropReason::BadKind,
        }
    }
}

/// An inner packet that fails an [`ip`](crate::ip) check: an IPv6 packet where IPv4 is
/// routed is `Unsupported`, anything else `Malformed`.
impl From<IpError> for DropReason {
    #[inline]
    fn from(e: IpError) -> DropReason {
        match e {
            IpError::Ipv6Unsupported => DropReason::Unsupported,
            IpError::Truncated { .. }
            | IpError::NotIp { .. }
            | IpError::HeaderLength { .. }
            | IpError::LengthMismatch { .. }
            | IpError::Fragment
            | IpError::Ipv6Extension { .. }
            | IpError::NotTcpOrUdp { .. } => DropReason::Malformed,
        }
    }
}

/// A sealed datagram that did not open: each error its own reason.
impl From<OpenError> for DropReason {
    #[inline]
    fn from(e: OpenError) -> DropReason {
        match e {
            OpenError::Truncated(_) => DropReason::SealTruncated,
            OpenError::NotSealed => DropReason::Unsealed,
            OpenError::WrongSuite(_) => DropReason::BadSuite,
            OpenError::UnknownEpoch(_) => DropReason::UnknownEpoch,
            OpenError::Replay => DropReason::Replay,
            OpenError::TooOld => DropReason::TooOld,
            OpenError::BadTag => DropReason::BadTag,
        }
    }
}

/// A batch that could not be sealed.
impl From<SealError> for DropReason {
    #[inline]
    fn from(e: SealError) -> DropReason {
        match e {
            SealError::BadLayout | SealError::BufferTooSmall(_) => DropReason::Malformed,
            // Every epoch of the pair secret was used: no key until a new handshake.
            SealError::Exhausted => DropReason::NoKey,
        }
    }
}

#[cfg(test)]
mod from_header_and_seal_errors {
    use super::*;

    #[test]
    fn header_errors_keep_their_reasons() {
        assert_eq!(
            DropReason::from(HeaderError::Truncated(3)),
            DropReason::Malformed
        );
        assert_eq!(
            DropReason::from(HeaderError::UnknownVersion(9)),
            DropReason::BadVersion
        );
        assert_eq!(
            DropReason::from(HeaderError::UnknownKind(9)),
            DropReason::BadKind
        );
    }

    #[test]
    fn every_open_error_has_its_own_reason() {
        let errors = [
            OpenError::Truncated(3),
            OpenError::NotSealed,
            OpenError::WrongSuite(9),
            OpenError::UnknownEpoch(5),
            OpenError::Replay,
            OpenError::TooOld,
            OpenError::BadTag,
        ];
        let reasons: Vec<DropReason> = errors.iter().map(|&e| DropReason::from(e)).collect();
        for (i, r) in reasons.iter().enumerate() {
            assert!(!reasons[..i].contains(r), "{r:?} twice");
        }
        assert_eq!(DropReason::from(OpenError::Replay), DropReason::Replay);
        assert_eq!(DropReason::from(OpenError::BadTag), DropReason::BadTag);
    }

    #[test]
    fn seal_errors_are_malformed_or_keyless() {
        assert_eq!(DropReason::from(SealError::Exhausted), DropReason::NoKey);
        assert_eq!(
            DropReason::from(SealError::BadLayout),
            DropReason::Malformed
        );
        assert_eq!(
            DropReason::from(SealError::BufferTooSmall(1)),
            DropReason::Malformed
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ipv6_is_unsupported_every_other_ip_error_is_malformed() {
        assert_eq!(
            DropReason::from(IpError::Ipv6Unsupported),
            DropReason::Unsupported
        );
        for e in [
            IpError::NotIp { version: 5 },
            IpError::Fragment,
            IpError::NotTcpOrUdp { protocol: 1 },
            IpError::Ipv6Extension { next_header: 0 },
        ] {
            assert_eq!(DropReason::from(e), DropReason::Malformed, "{e}");
        }
    }

    #[test]
    fn reasons_index_a_table_of_count_entries() {
        assert_eq!(DropReason::COUNT, 20);
        assert_eq!(DropReason::NotPeer as usize, 0);
    }
}
