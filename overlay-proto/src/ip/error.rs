//! Why an inner packet does not parse: [`IpError`], naming the layer and the numbers that
//! disagreed.

use std::fmt;

/// A header of the inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The IP header, before its version is known (an empty packet).
    Ip,
    /// The IPv4 header or packet.
    Ipv4,
    /// The IPv6 header or packet.
    Ipv6,
    /// The TCP header.
    Tcp,
    /// The UDP header.
    Udp,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ip => "IP",
            Layer::Ipv4 => "IPv4",
            Layer::Ipv6 => "IPv6",
            Layer::Tcp => "TCP",
            Layer::Udp => "UDP",
        })
    }
}

/// Why an inner packet was refused by one of the [`ip`](super) entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    /// fewer bytes than a header or length field requires
    #[error("{layer} truncated: {needed} bytes needed, {got} present")]
    Truncated {
        /// The header or packet cut short.
        layer: Layer,
        /// Bytes it needs.
        needed: usize,
        /// Bytes there are.
        got: usize,
    },
    /// the version nibble is neither 4 nor 6
    #[error("not an IP packet (version {version})")]
    NotIp {
        /// The version nibble.
        version: u8,
    },
    /// an IPv6 packet where only IPv4 is handled (the data path's route check)
    #[error("IPv6 packet where IPv4 is required")]
    Ipv6Unsupported,
    /// an IPv4 IHL or TCP data offset below 5 words
    #[error("{layer} header length {len} below the minimum {min}")]
    HeaderLength {
        /// IPv4 or TCP.
        layer: Layer,
        /// The header length the field gives, in bytes.
        len: usize,
        /// The least it may be.
        min: usize,
    },
    /// a length field that does not match the bytes present (the strict check)
    #[error("{layer} length field says {field} bytes, the packet has {got}")]
    LengthMismatch {
        /// The header whose length field disagrees.
        layer: Layer,
        /// The length the field gives.
        field: usize,
        /// The length there is.
        got: usize,
    },
    /// an IPv4 fragment (more fragments follow, or a non-zero offset)
    #[error("IPv4 fragment")]
    Fragment,
    /// an IPv6 extension header before the transport header
    #[error("IPv6 extension header {next_header}")]
    Ipv6Extension {
        /// The next-header value.
        next_header: u8,
    },
    /// a transport protocol other than TCP or UDP
    #[error("protocol {protocol} is neither TCP nor UDP")]
    NotTcpOrUdp {
        /// The IP protocol number.
        protocol: u8,
    },
}
