//! etherparse's zero-copy header slices, checked by [`Headers::parse`](super::Headers::parse)
//! and [`parse_ipv4`](super::parse_ipv4): each `from_slice` checks the version, the minimum
//! header length and that the header (with options) lies inside the bytes; its error is
//! turned here into the [`IpError`] of the same failure.

use super::{IpError, Layer};
use etherparse::err::{ipv4, ipv6, tcp, LenError};
use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice, UdpHeaderSlice};

/// The IPv4 header (with options) at the start of `packet`.
#[inline]
pub(super) fn ipv4(packet: &[u8]) -> Result<Ipv4HeaderSlice<'_>, IpError> {
    Ipv4HeaderSlice::from_slice(packet).map_err(|e| match e {
        ipv4::HeaderSliceError::Len(l) => truncated(Layer::Ipv4, &l),
        ipv4::HeaderSliceError::Content(ipv4::HeaderError::HeaderLengthSmallerThanHeader {
            ihl,
        }) => IpError::HeaderLength {
            layer: Layer::Ipv4,
            len: usize::from(ihl) * 4,
            min: super::ipv4::MIN_LEN,
        },
        ipv4::HeaderSliceError::Content(ipv4::HeaderError::UnexpectedVersion {
            version_number,
        }) => IpError::NotIp {
            version: version_number,
        },
    })
}

/// The fixed IPv6 header at the start of `packet`.
#[inline]
pub(super) fn ipv6(packet: &[u8]) -> Result<Ipv6HeaderSlice<'_>, IpError> {
    Ipv6HeaderSlice::from_slice(packet).map_err(|e| match e {
        ipv6::HeaderSliceError::Len(l) => truncated(Layer::Ipv6, &l),
        ipv6::HeaderSliceError::Content(ipv6::HeaderError::UnexpectedVersion {
            version_number,
        }) => IpError::NotIp {
            version: version_number,
        },
    })
}

/// The TCP header (with options) at the start of `l4`.
#[inline]
pub(super) fn tcp(l4: &[u8]) -> Result<TcpHeaderSlice<'_>, IpError> {
    TcpHeaderSlice::from_slice(l4).map_err(|e| match e {
        tcp::HeaderSliceError::Len(l) => truncated(Layer::Tcp, &l),
        tcp::HeaderSliceError::Content(tcp::HeaderError::DataOffsetTooSmall { data_offset }) => {
            IpError::HeaderLength {
                layer: Layer::Tcp,
                len: usize::from(data_offset) * 4,
                min: super::l4::TCP_MIN_LEN,
            }
        }
    })
}

/// The UDP header at the start of `l4`.
#[inline]
pub(super) fn udp(l4: &[u8]) -> Result<UdpHeaderSlice<'_>, IpError> {
    UdpHeaderSlice::from_slice(l4).map_err(|l| truncated(Layer::Udp, &l))
}

fn truncated(layer: Layer, e: &LenError) -> IpError {
    IpError::Truncated {
        layer,
        needed: e.required_len,
        got: e.len,
    }
}
