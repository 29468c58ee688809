//! Splitting a packet read from the TUN — up to a 64 KiB super-packet — into overlay
//! datagrams laid out back to back for one UDP GSO send.
//!
//! ```text
//! in:   virtio hdr {gso_type TCPV4, gso_size 1400, NEEDS_CSUM}
//!       | IPv4 | TCP | payload (up to ~64 KiB) .......................................... |
//! out:  | overlay | IPv4 | TCP | 1400 B | overlay | IPv4 | TCP | 1400 B | ... | overlay | IPv4 | TCP | ≤1400 B |
//!       <----------- datagram_len ------> <----------- datagram_len ------>     <-- last, maybe shorter -->
//! ```
//! Each datagram is the caller's overlay [`Header`] followed by one complete inner packet: a
//! copy of the IP header (IPv4: total length, identification + segment index, header
//! checksum recomputed; IPv6: payload length), the L4 header (TCP: sequence number advanced
//! by the payload before it, FIN and PSH only on the last segment, CWR only on the first;
//! UDP: length) and `gso_size` bytes of payload. All datagrams have the same length except a
//! possibly shorter last one, as UDP GSO (`UDP_SEGMENT`) requires; [`SplitLayout`] says how
//! to send them. `split` does not cap the total: 64 KiB of payload plus per-datagram
//! headers can exceed the 65507 bytes one GSO send accepts, so the caller sends in several
//! calls when it must.
//!
//! # Checksums
//! - Super-packet with `NEEDS_CSUM` (the normal case with TUN offloads): each segment's L4
//!   checksum field gets the pseudo-header sum for that segment's L4 length, folded and not
//!   complemented (what the kernel leaves for checksum offload), and every datagram's header
//!   carries [`FLAG_CSUM_PARTIAL`]. Without `NEEDS_CSUM` the full checksum is computed and
//!   the flag is clear.
//! - Plain packet (`GSO_NONE`) with `NEEDS_CSUM`: if the checksum is where the receiver will
//!   look for it (TCP or UDP right after the IP header, `csum_start` = IP header length,
//!   `csum_offset` 16 or 6), the packet is copied as is with [`FLAG_CSUM_PARTIAL`];
//!   otherwise (e.g. IPv6 extension headers) the checksum is completed in the copy from
//!   `csum_start`/`csum_offset` and the flag is clear. Without `NEEDS_CSUM`: copied as is,
//!   flag clear. A plain packet is not otherwise inspected.
//!
//! `vnet.hdr_len`, `csum_start` and `csum_offset` of a super-packet are not trusted: header
//! lengths are read from the packet. [`split`] never panics, allocates nothing, and writes
//! nothing to `out` when it returns an error.

#[cfg(test)]
pub(crate) mod tests;

use crate::checksum;
use crate::header::{Header, FLAG_CSUM_PARTIAL, HEADER_LEN};
use crate::ip::l4::{CWR, FIN, PSH, TCP_DATA_OFF, TCP_SEQ, UDP_LENGTH};
use crate::ip::{
    self, be16, be32, csum_location, ipv4, ipv6, put16, put32, Headers, IpError, Layer, L4,
};
use crate::vnet::VnetHdr;

/// Most datagrams [`split`] produces from one packet.
pub const MAX_SEGMENTS: usize = 128;

/// An `out` of this many bytes is large enough for any packet [`split`] accepts: at most
/// [`MAX_SEGMENTS`] overlay headers, 127 extra copies of up to 120 bytes of IP and TCP
/// headers, and a 65535-byte IPv4 packet (an IPv6 one, up to 65575 bytes, has at most 100
/// bytes of headers). 83335 bytes.
pub const MAX_SPLIT_LEN: usize = MAX_SEGMENTS * HEADER_LEN + (MAX_SEGMENTS - 1) * 120 + 65535;

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

impl SplitLayout {
    /// Length of the last datagram (equal to `datagram_len` unless the payload did not
    /// divide evenly).
    pub fn last_len(&self) -> usize {
        self.total_len
            .saturating_sub(self.datagram_len * self.count.saturating_sub(1))
    }

    /// The byte range in `out` of datagram `i` (`None` past the last).
    pub fn datagram(&self, i: usize) -> Option<std::ops::Range<usize>> {
        if i >= self.count {
            return None;
        }
        let start = i * self.datagram_len;
        Some(start..(start + self.datagram_len).min(self.total_len))
    }
}

/// Why a packet cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// the super-packet's headers fail the strict check of [`Headers::parse`]
    #[error("super-packet headers: {0}")]
    Headers(#[from] IpError),
    /// a super-packet whose virtio header gives gso_size 0
    #[error("super-packet with gso_size 0")]
    ZeroGsoSize,
    /// the IP version or transport protocol is not the one the GSO type announces
    #[error("gso_type {gso_type} does not match a {l4} over {ip} packet")]
    GsoTypeMismatch {
        /// The virtio header's GSO type.
        gso_type: u8,
        /// The packet's IP version ([`Layer::Ipv4`] or [`Layer::Ipv6`]).
        ip: Layer,
        /// The packet's transport protocol ([`Layer::Tcp`] or [`Layer::Udp`]).
        l4: Layer,
    },
    /// a super-packet with headers and no payload
    #[error("super-packet without payload")]
    NoPayload,
    /// a partial checksum whose field lies outside the packet
    #[error("checksum field at {csum_start} + {csum_offset} outside the {len}-byte packet")]
    ChecksumOutside {
        /// The virtio header's `csum_start`.
        csum_start: u16,
        /// The virtio header's `csum_offset`.
        csum_offset: u16,
        /// The packet's length.
        len: usize,
    },
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

/// What [`split`] will do with a packet.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// One datagram with the packet as is; `complete` = completion of a partial checksum at
    /// `(csum_start, csum_offset)` in the copy; `partial` = carry [`FLAG_CSUM_PARTIAL`].
    Whole {
        partial: bool,
        complete: Option<(usize, usize)>,
    },
    /// A super-packet cut into `gso_size` pieces.
    Segments {
        h: Headers,
        gso_size: usize,
        partial: bool,
    },
}

/// Splits `packet` (the IP packet after `vnet` as read from the TUN) into datagrams of
/// `header` + one inner packet each, written back to back into `out`.
///
/// `header.flags` is copied with [`FLAG_CSUM_PARTIAL`] set or cleared per the module doc.
/// See [`split_layout`] for the size `out` needs.
pub fn split(
    vnet: &VnetHdr,
    packet: &[u8],
    header: &Header,
    out: &mut [u8],
) -> Result<SplitLayout, SplitError> {
    let (plan, layout) = plan(vnet, packet)?;
    let Some(out) = out.get_mut(..layout.total_len) else {
        return Err(SplitError::BufferTooSmall(out.len()));
    };
    let mut header = *header;
    match plan {
        Plan::Whole { partial, complete } => {
            header.flags = with_partial(header.flags, partial);
            let (h, body) = out.split_at_mut(HEADER_LEN);
            header.emit(h);
            body.copy_from_slice(packet);
            if let Some((start, offset)) = complete {
                // The plan checked that the field lies inside the packet.
                let _ = ip::complete(body, start, offset);
            }
        }
        Plan::Segments {
            h,
            gso_size,
            partial,
        } => {
            header.flags = with_partial(header.flags, partial);
            write_segments(&h, gso_size, partial, packet, &header, out);
        }
    }
    Ok(layout)
}

/// The layout [`split`] would produce for `packet`, or its error — except
/// [`SplitError::BufferTooSmall`], as no buffer is involved. ([`MAX_SPLIT_LEN`] bytes always
/// suffice; a 65535-byte TSO packet with MSS 1400 and timestamps needs 68867.)
pub fn split_layout(vnet: &VnetHdr, packet: &[u8]) -> Result<SplitLayout, SplitError> {
    plan(vnet, packet).map(|(_, layout)| layout)
}

fn with_partial(flags: u8, partial: bool) -> u8 {
    if partial {
        flags | FLAG_CSUM_PARTIAL
    } else {
        flags & !FLAG_CSUM_PARTIAL
    }
}

fn plan(vnet: &VnetHdr, packet: &[u8]) -> Result<(Plan, SplitLayout), SplitError> {
    let needs_csum = vnet.flags & VnetHdr::NEEDS_CSUM != 0;
    let want = match vnet.gso_type {
        VnetHdr::GSO_NONE => {
            let plan = whole_plan(vnet, packet, needs_csum)?;
            let len = HEADER_LEN + packet.len();
            let layout = SplitLayout {
                count: 1,
                datagram_len: len,
                total_len: len,
            };
            return Ok((plan, layout));
        }
        t if t & !VnetHdr::GSO_ECN == VnetHdr::GSO_TCPV4 => (false, L4::Tcp),
        t if t & !VnetHdr::GSO_ECN == VnetHdr::GSO_TCPV6 => (true, L4::Tcp),
        VnetHdr::GSO_UDP_L4 => {
            let v6 = packet.first().is_some_and(|b| b >> 4 == 6);
            (v6, L4::Udp)
        }
        t => return Err(SplitError::Unsupported(t)),
    };
    if vnet.gso_size == 0 {
        return Err(SplitError::ZeroGsoSize);
    }
    let h = Headers::parse(packet)?;
    if (h.v6, h.l4) != want {
        return Err(SplitError::GsoTypeMismatch {
            gso_type: vnet.gso_type,
            ip: h.ip_layer(),
            l4: h.l4.layer(),
        });
    }
    let payload = packet.len() - h.hdr_len();
    if payload == 0 {
        return Err(SplitError::NoPayload);
    }
    let gso_size = usize::from(vnet.gso_size);
    let count = payload.div_ceil(gso_size);
    if count > MAX_SEGMENTS {
        return Err(SplitError::TooManySegments(count));
    }
    let per_datagram = HEADER_LEN + h.hdr_len();
    let layout = SplitLayout {
        count,
        datagram_len: per_datagram + gso_size.min(payload),
        total_len: count * per_datagram + payload,
    };
    let plan = Plan::Segments {
        h,
        gso_size,
        partial: needs_csum,
    };
    Ok((plan, layout))
}

/// The plan for a plain packet: carry a partial checksum where the receiver will find it,
/// complete it elsewhere.
fn whole_plan(vnet: &VnetHdr, packet: &[u8], needs_csum: bool) -> Result<Plan, SplitError> {
    if !needs_csum {
        return Ok(Plan::Whole {
            partial: false,
            complete: None,
        });
    }
    let start = usize::from(vnet.csum_start);
    let offset = usize::from(vnet.csum_offset);
    if start + offset + 2 > packet.len() {
        return Err(SplitError::ChecksumOutside {
            csum_start: vnet.csum_start,
            csum_offset: vnet.csum_offset,
            len: packet.len(),
        });
    }
    if csum_location(packet) == Some((start, offset)) {
        Ok(Plan::Whole {
            partial: true,
            complete: None,
        })
    } else {
        Ok(Plan::Whole {
            partial: false,
            complete: Some((start, offset)),
        })
    }
}

/// Writes the datagrams of a checked super-packet; `out` is exactly the layout's length.
///
/// Per segment only a few header words change, so the checksums are computed from sums
/// taken once over the template headers with those words zeroed, plus the new words (the
/// same values as summing each written header again, without reading it back).
fn write_segments(
    h: &Headers,
    gso_size: usize,
    partial: bool,
    packet: &[u8],
    header: &Header,
    out: &mut [u8],
) {
    let hdrs = h.hdr_len();
    let ip = h.ip_len;
    let (template, payload) = packet.split_at(hdrs);
    let count = payload.len().div_ceil(gso_size);
    let csum_at = ip + h.l4.csum_offset();

    // Overlay header + IP header + L4 header, with the per-segment words zeroed.
    let mut prefix = [0u8; HEADER_LEN + 60 + 60];
    let prefix = &mut prefix[..HEADER_LEN + hdrs];
    header.emit(prefix);
    let hd = &mut prefix[HEADER_LEN..];
    hd.copy_from_slice(template);
    let first_id = be16(template, ipv4::IDENT);
    let first_seq = be32(template, ip + TCP_SEQ);
    let tcp_word = be16(template, ip + TCP_DATA_OFF);
    if h.v6 {
        put16(hd, ipv6::PAYLOAD_LEN, 0);
    } else {
        put16(hd, ipv4::TOTAL_LEN, 0);
        put16(hd, ipv4::IDENT, 0);
        put16(hd, ipv4::CHECKSUM, 0);
    }
    match h.l4 {
        L4::Tcp => {
            put32(hd, ip + TCP_SEQ, 0);
            put16(hd, ip + TCP_DATA_OFF, 0);
        }
        L4::Udp => put16(hd, ip + UDP_LENGTH, 0),
    }
    put16(hd, csum_at, 0);
    let ip_base = u64::from(checksum::sum(&hd[..ip]));
    let pseudo_base = checksum::pseudo_header(h.addrs(packet), h.l4.proto(), 0);
    let l4_base = u64::from(checksum::add(checksum::sum(&hd[ip..]), pseudo_base));

    let mut datagrams = out.chunks_mut(HEADER_LEN + hdrs + gso_size);
    for (i, (chunk, d)) in payload.chunks(gso_size).zip(&mut datagrams).enumerate() {
        let (head, body) = d.split_at_mut(HEADER_LEN + hdrs);
        head.copy_from_slice(prefix);
        body.copy_from_slice(chunk);
        let hd = &mut head[HEADER_LEN..];
        // At most the original packet's lengths, which fit their fields.
        let l4_len = (h.l4_len + chunk.len()) as u16;
        if h.v6 {
            put16(hd, ipv6::PAYLOAD_LEN, l4_len);
        } else {
            let total = ip as u16 + l4_len;
            let id = first_id.wrapping_add(i as u16);
            put16(hd, ipv4::TOTAL_LEN, total);
            put16(hd, ipv4::IDENT, id);
            put16(
                hd,
                ipv4::CHECKSUM,
                !checksum::fold(ip_base + u64::from(total) + u64::from(id)),
            );
        }
        // The varying L4 header words, and the pseudo-header length.
        let varying = match h.l4 {
            L4::Tcp => {
                let seq = first_seq.wrapping_add((i * gso_size) as u32);
                let mut word = tcp_word;
                if i + 1 < count {
                    word &= !u16::from(FIN | PSH);
                }
                if i > 0 {
                    word &= !u16::from(CWR);
                }
                put32(hd, ip + TCP_SEQ, seq);
                put16(hd, ip + TCP_DATA_OFF, word);
                u64::from(seq >> 16) + u64::from(seq & 0xffff) + u64::from(word)
            }
            L4::Udp => {
                put16(hd, ip + UDP_LENGTH, l4_len);
                u64::from(l4_len)
            }
        };
        let value = if partial {
            // The pseudo-header sum alone.
            checksum::add(pseudo_base, l4_len)
        } else {
            let s = checksum::fold(
                l4_base + u64::from(l4_len) + varying + u64::from(checksum::sum(chunk)),
            );
            match (!s, h.l4) {
                (0, L4::Udp) => 0xffff,
                (c, _) => c,
            }
        };
        put16(hd, csum_at, value);
    }
}
