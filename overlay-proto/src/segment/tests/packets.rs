//! Test packets with valid checksums, full or partial, and checksum helpers.

use crate::checksum;
use crate::ip::l4::ACK;

/// Test packets: IPv4 10.32.1.2 -> 10.32.2.3 or IPv6 fd00::1:2 -> fd00::2:3, TCP or UDP
/// 40000 -> 5201, with valid IPv4 header and full L4 checksums.
#[derive(Debug, Clone)]
pub(crate) struct Pkt {
    pub v6: bool,
    pub udp: bool,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// TCP options (a multiple of 4 bytes).
    pub options: Vec<u8>,
    pub id: u16,
    pub tos: u8,
    pub ttl: u8,
    /// IPv4 flags-and-fragment-offset word.
    pub frag: u16,
    pub flow_label: u32,
    pub sport: u16,
}

pub(crate) const SRC4: [u8; 4] = [10, 32, 1, 2];
pub(crate) const DST4: [u8; 4] = [10, 32, 2, 3];
pub(crate) const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2];
pub(crate) const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 3];
/// Timestamps option: NOP, NOP, kind 8 len 10, TSval, TSecr.
pub(crate) const TS_OPTION: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

impl Default for Pkt {
    fn default() -> Self {
        Pkt {
            v6: false,
            udp: false,
            seq: 1000,
            ack: 7,
            flags: ACK,
            window: 502,
            options: TS_OPTION.to_vec(),
            id: 0x1234,
            tos: 0,
            ttl: 64,
            frag: 0x4000,
            flow_label: 0x12345,
            sport: 40000,
        }
    }
}

impl Pkt {
    pub(crate) fn tcp4() -> Self {
        Pkt::default()
    }
    pub(crate) fn tcp6() -> Self {
        Pkt {
            v6: true,
            ..Pkt::default()
        }
    }
    pub(crate) fn udp4() -> Self {
        Pkt {
            udp: true,
            ..Pkt::default()
        }
    }
    pub(crate) fn udp6() -> Self {
        Pkt {
            v6: true,
            udp: true,
            ..Pkt::default()
        }
    }

    /// The packet with `payload`, all checksums valid.
    pub(crate) fn build(&self, payload: &[u8]) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&5201u16.to_be_bytes());
        let proto = if self.udp {
            l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            17
        } else {
            l4.extend_from_slice(&self.seq.to_be_bytes());
            l4.extend_from_slice(&self.ack.to_be_bytes());
            l4.push(((20 + self.options.len()) / 4 * 16) as u8);
            l4.push(self.flags);
            l4.extend_from_slice(&self.window.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 0]);
            l4.extend_from_slice(&self.options);
            6
        };
        l4.extend_from_slice(payload);
        let mut p = Vec::new();
        if self.v6 {
            let word = 6 << 28 | u32::from(self.tos) << 20 | self.flow_label;
            p.extend_from_slice(&word.to_be_bytes());
            p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            p.extend_from_slice(&[proto, self.ttl]);
            p.extend_from_slice(&SRC6);
            p.extend_from_slice(&DST6);
        } else {
            p.extend_from_slice(&[0x45, self.tos]);
            p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            p.extend_from_slice(&self.id.to_be_bytes());
            p.extend_from_slice(&self.frag.to_be_bytes());
            p.extend_from_slice(&[self.ttl, proto, 0, 0]);
            p.extend_from_slice(&SRC4);
            p.extend_from_slice(&DST4);
            let c = checksum::checksum(&p);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        p.extend_from_slice(&l4);
        let ip = if self.v6 { 40 } else { 20 };
        let at = ip + if self.udp { 6 } else { 16 };
        let c = !checksum::add(pseudo(&p), checksum::sum(&p[ip..]));
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// Like [`Pkt::build`] with the L4 checksum partial (the pseudo-header sum).
    pub(crate) fn build_partial(&self, payload: &[u8]) -> Vec<u8> {
        let mut p = self.build(payload);
        make_partial(&mut p);
        p
    }
}

/// IP header length, L4 checksum offset from it (test packets have no extension headers).
pub(crate) fn l4_at(p: &[u8]) -> (usize, usize) {
    let (ip, proto) = if p[0] >> 4 == 6 {
        (40, p[6])
    } else {
        (usize::from(p[0] & 15) * 4, p[9])
    };
    (ip, if proto == 17 { 6 } else { 16 })
}

/// The pseudo-header sum of an IP packet for its L4 length.
pub(crate) fn pseudo(p: &[u8]) -> u16 {
    let (ip, _) = l4_at(p);
    let (addrs, proto) = if ip == 40 {
        (&p[8..40], p[6])
    } else {
        (&p[12..20], p[9])
    };
    checksum::pseudo_header(addrs, proto, (p.len() - ip) as u32)
}

/// Replaces the L4 checksum by the pseudo-header sum.
pub(crate) fn make_partial(p: &mut [u8]) {
    let (ip, off) = l4_at(p);
    let s = pseudo(p);
    p[ip + off..ip + off + 2].copy_from_slice(&s.to_be_bytes());
}

/// Completes a partial L4 checksum in place, as the kernel or a NIC would.
pub(crate) fn complete(p: &mut [u8]) {
    let (ip, off) = l4_at(p);
    let c = !checksum::sum(&p[ip..]);
    p[ip + off..ip + off + 2].copy_from_slice(&c.to_be_bytes());
}

/// Whether the full L4 checksum is valid.
pub(crate) fn l4_valid(p: &[u8]) -> bool {
    let (ip, _) = l4_at(p);
    checksum::is_valid(pseudo(p), &p[ip..])
}
