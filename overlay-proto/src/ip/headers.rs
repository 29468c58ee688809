//! The strict entry point ([`Headers::parse`]: where the headers of a TCP or UDP packet are,
//! every length field agreeing, for split and coalesce; on etherparse's header slices) and
//! the loose one ([`peek`]: what any packet's first bytes say, for flow keys and checksum
//! locations; plain reads, as it must also answer for headers the slices refuse, e.g. an
//! IHL below 5 or options cut short).

use super::field::be16;
use super::{ipv4, ipv6, slices, IpError, Layer, L4};

/// Where the headers of a TCP or UDP packet are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
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
    /// Parses an IPv4 or IPv6 packet that exactly fills `packet` (the IP length field
    /// agrees), is not a fragment, has TCP or UDP directly after the IP header, and whose
    /// L4 header is complete. The error says which of these failed.
    #[inline]
    pub fn parse(packet: &[u8]) -> Result<Headers, IpError> {
        let (v6, ip_len, proto) = match packet.first().map(|b| b >> 4) {
            Some(4) => {
                let h = slices::ipv4(packet)?;
                let total = usize::from(h.total_len());
                if total != packet.len() {
                    return Err(IpError::LengthMismatch {
                        layer: Layer::Ipv4,
                        field: total,
                        got: packet.len(),
                    });
                }
                if h.is_fragmenting_payload() {
                    return Err(IpError::Fragment);
                }
                (false, h.slice().len(), h.protocol().0)
            }
            Some(6) => {
                let h = slices::ipv6(packet)?;
                let payload = usize::from(h.payload_length());
                if payload != packet.len() - ipv6::LEN {
                    return Err(IpError::LengthMismatch {
                        layer: Layer::Ipv6,
                        field: ipv6::LEN + payload,
                        got: packet.len(),
                    });
                }
                let next_header = h.next_header().0;
                if ipv6::is_extension(next_header) {
                    return Err(IpError::Ipv6Extension { next_header });
                }
                (true, ipv6::LEN, next_header)
            }
            Some(version) => return Err(IpError::NotIp { version }),
            None => {
                return Err(IpError::Truncated {
                    layer: Layer::Ip,
                    needed: 1,
                    got: 0,
                })
            }
        };
        let l4 = L4::from_proto(proto)?;
        let rest = &packet[ip_len..];
        let l4_len = match l4 {
            L4::Tcp => slices::tcp(rest)?.slice().len(),
            L4::Udp => slices::udp(rest)?.slice().len(),
        };
        Ok(Headers {
            v6,
            ip_len,
            l4,
            l4_len,
        })
    }

    /// The IP header's name in errors ([`Layer::Ipv4`] or [`Layer::Ipv6`]).
    #[inline]
    pub fn ip_layer(&self) -> Layer {
        if self.v6 {
            Layer::Ipv6
        } else {
            Layer::Ipv4
        }
    }

    /// IP and L4 headers together: where the payload starts.
    #[inline]
    pub fn hdr_len(&self) -> usize {
        self.ip_len + self.l4_len
    }

    /// The source and destination addresses, back to back, as the pseudo-header wants them
    /// (empty if `packet` is shorter than the IP header).
    #[inline]
    pub fn addrs<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        let r = if self.v6 { ipv6::ADDRS } else { ipv4::ADDRS };
        packet.get(r).unwrap_or(&[])
    }
}

/// What the first bytes of any IP packet say, lengths unchecked beyond the fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// The transport protocol number; `None` behind an IPv6 extension header.
    pub protocol: Option<u8>,
    /// Where the transport header starts (IPv4: IHL × 4, which may lie past the end;
    /// IPv6: 40); `None` for an IPv4 IHL below 5 or behind an IPv6 extension header.
    pub l4_start: Option<usize>,
    /// IPv4 MF flag and fragment offset (0 for IPv6).
    frag: u16,
}

impl Peek {
    /// A fragment: more fragments follow, or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.frag & ipv4::FRAGMENT_MASK != 0
    }

    /// Not a fragment, or the first one (which carries the transport header).
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        self.frag & ipv4::OFFSET_MASK == 0
    }
}

/// The loose look at any packet: version, protocol and transport offset from an IPv4
/// (≥ 20 bytes) or IPv6 (≥ 40 bytes) fixed header, no length field checked; `None` if
/// `packet` is not that.
#[inline]
pub fn peek(packet: &[u8]) -> Option<Peek> {
    let first = *packet.first()?;
    match first >> 4 {
        4 if packet.len() >= ipv4::MIN_LEN => {
            let ihl = usize::from(first & 0x0f) * 4;
            Some(Peek {
                v6: false,
                protocol: Some(packet[ipv4::PROTOCOL]),
                l4_start: (ihl >= ipv4::MIN_LEN).then_some(ihl),
                frag: be16(packet, ipv4::FRAG),
            })
        }
        6 if packet.len() >= ipv6::LEN => {
            let next = packet[ipv6::NEXT_HEADER];
            // TCP or UDP may hide behind extension headers.
            let known = !ipv6::is_extension(next);
            Some(Peek {
                v6: true,
                protocol: known.then_some(next),
                l4_start: known.then_some(ipv6::LEN),
                frag: 0,
            })
        }
        _ => None,
    }
}
