//! Helpers shared by the fuzz targets and the seed generator (`examples/gen_corpus.rs`):
//! an independent reading of inner IP packets (deliberately not the crate's own parser, so
//! the targets check the fast path against a second implementation), a fix-up that makes
//! fuzzed packets well-formed, and builders for seed packets; [`control`], the properties of
//! the control connection's byte stream (targets `frames` and `noise`); and [`decap`], the
//! property of the `decap` target.

pub mod control;

use overlay_proto::checksum;

pub mod decap;

/// IP protocol numbers.
pub const TCP: u8 = 6;
/// IP protocol numbers.
pub const UDP: u8 = 17;

/// Big-endian u16 at `at` (0 if out of range).
pub fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |w| u16::from_be_bytes([w[0], w[1]]))
}

/// Big-endian u32 at `at` (0 if out of range).
pub fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// Writes a big-endian u16 at `at` if it fits.
pub fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(w) = b.get_mut(at..at + 2) {
        w.copy_from_slice(&v.to_be_bytes());
    }
}

/// Where the headers of an IPv4/IPv6 TCP/UDP packet are, read as simply as possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// IP header length.
    pub ip_len: usize,
    /// Protocol (TCP or UDP).
    pub proto: u8,
    /// L4 header length (TCP with options; 8 for UDP).
    pub l4_len: usize,
}

impl Layout {
    /// Headers length: where the payload starts.
    pub fn hdrs(&self) -> usize {
        self.ip_len + self.l4_len
    }

    /// Source and destination addresses as they lie in the IP header.
    pub fn addrs<'a>(&self, p: &'a [u8]) -> &'a [u8] {
        if self.v6 {
            &p[8..40]
        } else {
            &p[12..20]
        }
    }

    /// Offset of the L4 checksum field from the L4 header.
    pub fn csum_offset(&self) -> usize {
        if self.proto == TCP {
            16
        } else {
            6
        }
    }
}

/// The layout of `p` if its headers are complete (lengths fields are not checked).
pub fn layout(p: &[u8]) -> Option<Layout> {
    let first = *p.first()?;
    let (v6, ip_len, proto) = match first >> 4 {
        4 if p.len() >= 20 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 || p.len() < ihl {
                return None;
            }
            (false, ihl, p[9])
        }
        6 if p.len() >= 40 => (true, 40, p[6]),
        _ => return None,
    };
    let l4_len = match proto {
        TCP => usize::from(*p.get(ip_len + 12)? >> 4) * 4,
        UDP => 8,
        _ => return None,
    };
    if l4_len < if proto == TCP { 20 } else { 8 } || p.len() < ip_len + l4_len {
        return None;
    }
    Some(Layout {
        v6,
        ip_len,
        proto,
        l4_len,
    })
}

/// The pseudo-header sum of `p`'s L4 segment as it is.
pub fn pseudo(l: &Layout, p: &[u8]) -> u16 {
    checksum::pseudo_header(l.addrs(p), l.proto, (p.len() - l.ip_len) as u32)
}

/// Whether the full L4 checksum of `p` verifies.
pub fn l4_checksum_ok(l: &Layout, p: &[u8]) -> bool {
    checksum::is_valid(pseudo(l, p), &p[l.ip_len..])
}

/// Whether an IPv4 header checksum verifies (true for IPv6).
pub fn ip_checksum_ok(l: &Layout, p: &[u8]) -> bool {
    l.v6 || checksum::sum(&p[..l.ip_len]) == 0xffff
}

/// Extends `p` to `len` bytes by repeating its tail after the first 60 bytes (or zeros), so
/// that a short fuzz input can stand for a packet of any size.
pub fn grow(p: &mut Vec<u8>, len: usize) {
    let from = p.len().min(60);
    let mut i = from;
    while p.len() < len {
        let b = if i < p.len() { p[i] } else { 0 };
        p.push(b);
        i += 1;
    }
}

/// Makes `p` consistent, as a sender's kernel would: IP length fields, UDP length, IPv4
/// header checksum, and the L4 checksum (full, or the pseudo-header sum when `partial`).
/// Leaves anything that is not IPv4/IPv6 TCP/UDP with complete headers as it is.
pub fn fix_up(p: &mut [u8], partial: bool) {
    let Some(l) = layout(p) else { return };
    // IPv4: total length; IPv6: payload length (so up to 65575 bytes); UDP: its length.
    let field = if l.v6 { p.len() - 40 } else { p.len() };
    let Ok(field) = u16::try_from(field) else {
        return;
    };
    put16(p, if l.v6 { 4 } else { 2 }, field);
    if l.proto == UDP {
        let Ok(udp) = u16::try_from(p.len() - l.ip_len) else {
            return;
        };
        put16(p, l.ip_len + 4, udp);
    }
    let at = l.ip_len + l.csum_offset();
    put16(p, at, 0);
    let ps = pseudo(&l, p);
    let value = if partial {
        ps
    } else {
        match !checksum::add(ps, checksum::sum(&p[l.ip_len..])) {
            0 if l.proto == UDP => 0xffff,
            c => c,
        }
    };
    put16(p, at, value);
    if !l.v6 {
        put16(p, 10, 0);
        let c = checksum::checksum(&p[..l.ip_len]);
        put16(p, 10, c);
    }
}

/// Source and destination addresses of the seed packets.
pub const SRC4: [u8; 4] = [10, 32, 1, 2];
/// See [`SRC4`].
pub const DST4: [u8; 4] = [10, 32, 2, 3];
/// See [`SRC4`].
pub const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2];
/// See [`SRC4`].
pub const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 3];

/// A well-formed packet: IPv4 or IPv6, TCP (flags ACK, or ACK|PSH with `psh`, sequence
/// number `seq`) or UDP, ports 1000 → 2000, `payload` bytes of payload.
pub fn packet(v6: bool, proto: u8, seq: u32, psh: bool, payload: &[u8], partial: bool) -> Vec<u8> {
    let mut p = Vec::new();
    if v6 {
        p.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, proto, 64]);
        p.extend_from_slice(&SRC6);
        p.extend_from_slice(&DST6);
    } else {
        p.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
        p.extend_from_slice(&SRC4);
        p.extend_from_slice(&DST4);
    }
    p.extend_from_slice(&1000u16.to_be_bytes());
    p.extend_from_slice(&2000u16.to_be_bytes());
    if proto == TCP {
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes()); // ack
        p.push(0x50); // data offset 5
        p.push(if psh { 0x18 } else { 0x10 });
        p.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, csum, urg
    } else {
        p.extend_from_slice(&[0, 0, 0, 0]); // length, csum
    }
    p.extend_from_slice(payload);
    fix_up(&mut p, partial);
    p
}
