//! Locating the IP and TCP/UDP headers of an inner packet (shared by [`split`](super::split)
//! and the [`Coalescer`](crate::coalesce::Coalescer)).
//!
//! ```text
//! IPv4: | ver=4 IHL | TOS | total length | id | flags+frag off | TTL | proto | csum | src | dst | options |
//!         0           1     2..4           4..6 6..8             8     9       10..12 12..16 16..20
//! IPv6: | ver=6 TC flow label | payload length | next header | hop limit | src | dst |
//!         0..4                  4..6             6             7           8..24 24..40
//! TCP:  | sport | dport | seq | ack | off+rsvd | flags | window | csum | urg | options |
//!         0..2    2..4    4..8  8..12 12         13      14..16   16..18 18..20
//! UDP:  | sport | dport | length | csum |
//!         0..2    2..4    4..6     6..8
//! ```
//! Every function here checks lengths before indexing and never panics.

/// IP protocol number of TCP.
pub(crate) const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub(crate) const PROTO_UDP: u8 = 17;
/// Length of the fixed IPv6 header.
pub(crate) const IPV6_LEN: usize = 40;
/// Length of a UDP header.
pub(crate) const UDP_LEN: usize = 8;
/// Offset of the checksum in a TCP header.
pub(crate) const TCP_CSUM: usize = 16;
/// Offset of the checksum in a UDP header.
pub(crate) const UDP_CSUM: usize = 6;
/// Offset of the flags byte in a TCP header.
pub(crate) const TCP_FLAGS: usize = 13;
/// TCP flag bits.
pub(crate) const FIN: u8 = 0x01;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;
pub(crate) const CWR: u8 = 0x80;

/// The transport protocol of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L4 {
    Tcp,
    Udp,
}

impl L4 {
    fn from_proto(p: u8) -> Option<L4> {
        match p {
            PROTO_TCP => Some(L4::Tcp),
            PROTO_UDP => Some(L4::Udp),
            _ => None,
        }
    }

    /// The IP protocol number.
    pub(crate) fn proto(self) -> u8 {
        match self {
            L4::Tcp => PROTO_TCP,
            L4::Udp => PROTO_UDP,
        }
    }

    /// Offset of the checksum field from the start of the L4 header.
    pub(crate) fn csum_offset(self) -> usize {
        match self {
            L4::Tcp => TCP_CSUM,
            L4::Udp => UDP_CSUM,
        }
    }
}

/// Where the headers of a TCP or UDP packet are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Headers {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// IP header length (IPv4 with options; IPv6 always 40).
    pub ip_len: usize,
    /// The transport protocol.
    pub l4: L4,
    /// TCP header length with options, or 8 for UDP.
    pub l4_len: usize,
}

impl Headers {
    /// IP and L4 headers together: where the payload starts.
    pub(crate) fn len(&self) -> usize {
        self.ip_len + self.l4_len
    }

    /// The source and destination addresses, back to back, as the pseudo-header wants them.
    pub(crate) fn addrs<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        let r = if self.v6 { 8..40 } else { 12..20 };
        packet.get(r).unwrap_or(&[])
    }
}

/// Whether an IPv6 next-header value is an extension header (RFC 8200 and the IANA list).
pub(crate) fn is_ipv6_extension(next: u8) -> bool {
    matches!(
        next,
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
    )
}

/// Parses an IPv4 or IPv6 packet that exactly fills `packet` (the length field agrees), is
/// not a fragment, has TCP or UDP directly after the IP header, and whose L4 header is
/// complete. The error says which of these failed.
#[inline]
pub(crate) fn parse(packet: &[u8]) -> Result<Headers, &'static str> {
    let first = *packet.first().ok_or("empty packet")?;
    let (v6, ip_len, proto) = match first >> 4 {
        4 => {
            if packet.len() < 20 {
                return Err("truncated IPv4 header");
            }
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 {
                return Err("IPv4 header length below 20");
            }
            if packet.len() < ihl {
                return Err("truncated IPv4 options");
            }
            if usize::from(be16(packet, 2)) != packet.len() {
                return Err("IPv4 total length does not match the packet");
            }
            // MF set or a non-zero fragment offset.
            if be16(packet, 6) & 0x3fff != 0 {
                return Err("IPv4 fragment");
            }
            (false, ihl, packet[9])
        }
        6 => {
            if packet.len() < IPV6_LEN {
                return Err("truncated IPv6 header");
            }
            if usize::from(be16(packet, 4)) != packet.len() - IPV6_LEN {
                return Err("IPv6 payload length does not match the packet");
            }
            if is_ipv6_extension(packet[6]) {
                return Err("IPv6 extension header");
            }
            (true, IPV6_LEN, packet[6])
        }
        _ => return Err("not an IPv4 or IPv6 packet"),
    };
    let l4 = L4::from_proto(proto).ok_or("neither TCP nor UDP")?;
    let rest = packet.len() - ip_len;
    let l4_len = match l4 {
        L4::Tcp => {
            if rest < 20 {
                return Err("truncated TCP header");
            }
            let off = usize::from(packet[ip_len + 12] >> 4) * 4;
            if off < 20 {
                return Err("TCP data offset below 5");
            }
            if rest < off {
                return Err("truncated TCP options");
            }
            off
        }
        L4::Udp => {
            if rest < UDP_LEN {
                return Err("truncated UDP header");
            }
            UDP_LEN
        }
    };
    Ok(Headers {
        v6,
        ip_len,
        l4,
        l4_len,
    })
}

/// Where the L4 checksum of a non-fragment TCP or UDP packet is — `(csum_start,
/// csum_offset)` — if it lies inside `packet`. Looser than [`parse`]: the length fields are
/// not checked (used to mark a packet "checksum partial" for the kernel, which checks the
/// rest itself).
pub(crate) fn csum_location(packet: &[u8]) -> Option<(usize, usize)> {
    let first = *packet.first()?;
    let (start, proto) = match first >> 4 {
        4 if packet.len() >= 20 && be16(packet, 6) & 0x3fff == 0 => {
            (usize::from(first & 0x0f) * 4, packet[9])
        }
        6 if packet.len() >= IPV6_LEN => (IPV6_LEN, packet[6]),
        _ => return None,
    };
    let offset = L4::from_proto(proto)?.csum_offset();
    (start >= 20 && start + offset + 2 <= packet.len()).then_some((start, offset))
}

/// The big-endian `u16` at `at` (0 past the end; callers check lengths first).
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(w) => u16::from_be_bytes([w[0], w[1]]),
        None => 0,
    }
}

/// The big-endian `u32` at `at` (0 past the end; callers check lengths first).
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(w) => u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
        None => 0,
    }
}

/// Writes a big-endian `u16` at `at` (nothing past the end; callers check lengths first).
#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(w) = b.get_mut(at..at + 2) {
        w.copy_from_slice(&v.to_be_bytes());
    }
}

/// Writes a big-endian `u32` at `at` (nothing past the end; callers check lengths first).
#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(w) = b.get_mut(at..at + 4) {
        w.copy_from_slice(&v.to_be_bytes());
    }
}
