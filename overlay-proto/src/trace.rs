//! Payloads of the trace datagrams (`overlay-agent trace`): a probe travels the data path
//! like a packet, and every agent it reaches sends a report back to the probe's origin.
//!
//! Both follow the overlay [`Header`](crate::header::Header) (kinds
//! [`TraceProbe`](crate::header::Kind::TraceProbe) and
//! [`TraceReport`](crate::header::Kind::TraceReport)). All integers are big-endian.
//!
//! Probe ([`PROBE_LEN`] bytes):
//! ```text
//!  0..8   nonce (chosen by the origin, echoed in every report)
//!  8..12  target: the overlay IPv4 address being traced
//!  12     first hop limit: the header's hop limit as the origin sent it
//!  13..16 reserved, zero when sent, ignored when received
//! ```
//! Report ([`REPORT_FIXED_LEN`] bytes plus the device name):
//! ```text
//!  0..8   nonce of the probe
//!  8      hop: 1 for the first agent after the origin, 2 for the next, ...
//!  9      action: 1 relay, 2 deliver, 3 drop
//!  10     flags: bit 0 = the device is up (deliver)
//!  11     cause of a drop (see [`Cause`]), 0 otherwise
//!  12..20 relay: the next hop's peer id, 0 otherwise
//!  20     relay: family of the next hop's underlay address (4 or 6), 0 otherwise
//!  21..23 port of that address
//!  23..39 that address (IPv4 in the first 4 bytes, the rest zero)
//!  39     length of the device name (0..=15)
//!  40..   deliver: the device the packet goes out of (the bridge port when the route's
//!         device is a bridge and the port is known, else the route's device)
//!  then   deliver, optional: length of the bridge name (0..=15; absent or 0: none), the
//!         bridge the device is a port of
//! ```
//! Parsing never panics: every length and value is checked, a report's device name must be
//! a plausible interface name. Trailing bytes are ignored.

use crate::peer::PeerId;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Length of a probe payload.
pub const PROBE_LEN: usize = 16;
/// Length of a report payload without its device name.
pub const REPORT_FIXED_LEN: usize = 40;
/// Longest interface name (Linux `IFNAMSIZ` − 1).
pub const MAX_DEVICE_LEN: usize = 15;
/// Longest report payload.
pub const MAX_REPORT_LEN: usize = REPORT_FIXED_LEN + MAX_DEVICE_LEN + 1 + MAX_DEVICE_LEN;

/// A probe: what the origin asks each agent on the path to report on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Matches the reports to this probe.
    pub nonce: u64,
    /// The overlay address traced.
    pub target: Ipv4Addr,
    /// The hop limit the origin put in the header (to number the hops).
    pub first_hop_limit: u8,
}

/// Why a probe went no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cause {
    /// No node owns the block of the target.
    NoOwner = 1,
    /// The destination (or next hop) peer cannot be reached from this agent.
    Unreachable = 2,
    /// The hop limit ran out (a routing loop or a very long path).
    HopLimit = 3,
    /// The probe reached an agent whose block does not hold the target (stale routes).
    NotLocal = 4,
    /// The final agent's kernel has no route to the target.
    NoKernelRoute = 5,
    /// The agent could not send the probe on (socket error).
    SendFailed = 6,
}

impl Cause {
    fn from_u8(v: u8) -> Option<Cause> {
        Some(match v {
            1 => Cause::NoOwner,
            2 => Cause::Unreachable,
            3 => Cause::HopLimit,
            4 => Cause::NotLocal,
            5 => Cause::NoKernelRoute,
            6 => Cause::SendFailed,
            _ => return None,
        })
    }

    /// A short explanation for people.
    pub fn describe(self) -> &'static str {
        match self {
            Cause::NoOwner => "no node owns the block of this address",
            Cause::Unreachable => "the destination node is unreachable (no path in the topology)",
            Cause::HopLimit => "hop limit exhausted",
            Cause::NotLocal => "the address is not in this node's block (stale routes)",
            Cause::NoKernelRoute => "the kernel has no route to the address",
            Cause::SendFailed => "sending to the next hop failed",
        }
    }
}

/// What an agent did with a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Passed it on towards the destination.
    Relay {
        /// The neighbour it went to.
        next: PeerId,
        /// That neighbour's underlay address.
        addr: SocketAddr,
    },
    /// Decapsulated it: the target is local and the kernel routes it to `device`.
    Deliver {
        /// The interface the packet leaves by (a pod's veth, the TUN, ...).
        device: String,
        /// Whether that interface is up.
        up: bool,
        /// The bridge `device` is a port of, when the kernel routes the target to a bridge.
        bridge: Option<String>,
    },
    /// Dropped it.
    Drop(Cause),
}

/// One agent's report on a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The probe's nonce.
    pub nonce: u64,
    /// Position on the path (1 = first agent after the origin).
    pub hop: u8,
    /// What the agent did.
    pub action: Action,
}

/// Why a trace payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// Shorter than its fixed part.
    #[error("trace payload of {0} bytes is truncated")]
    Truncated(usize),
    /// A field holds a value this build does not know.
    #[error("trace payload field {0} is invalid")]
    Invalid(TraceField),
    /// The caller's buffer is too small.
    #[error("buffer too small for the trace payload")]
    BufferTooSmall,
}

/// A field of a trace payload, named in [`TraceError::Invalid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceField {
    /// The probe's first hop limit (zero).
    #[error("first hop limit")]
    FirstHopLimit,
    /// The report's action byte.
    #[error("action")]
    Action,
    /// The address family of a relay report's next hop.
    #[error("address family")]
    AddressFamily,
    /// The cause of a drop report.
    #[error("cause")]
    Cause,
    /// The device name of a deliver report.
    #[error("device")]
    Device,
    /// The bridge name of a deliver report.
    #[error("bridge")]
    Bridge,
}

/// Hop number of an agent receiving a header with `hop_limit` for a probe sent with
/// `first_hop_limit` (1 for the first agent after the origin); `None` if impossible.
pub fn hop_number(first_hop_limit: u8, hop_limit: u8) -> Option<u8> {
    first_hop_limit.checked_sub(hop_limit)?.checked_add(1)
}

impl Probe {
    /// Writes the probe at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, TraceError> {
        let b = buf.get_mut(..PROBE_LEN).ok_or(TraceError::BufferTooSmall)?;
        b[0..8].copy_from_slice(&self.nonce.to_be_bytes());
        b[8..12].copy_from_slice(&self.target.octets());
        b[12] = self.first_hop_limit;
        b[13..16].fill(0);
        Ok(PROBE_LEN)
    }

    /// Parses a probe payload.
    pub fn parse(buf: &[u8]) -> Result<Probe, TraceError> {
        let b = buf
            .get(..PROBE_LEN)
            .ok_or(TraceError::Truncated(buf.len()))?;
        let first_hop_limit = b[12];
        if first_hop_limit == 0 {
            return Err(TraceError::Invalid(TraceField::FirstHopLimit));
        }
        Ok(Probe {
            nonce: u64_at(&b[0..8]),
            target: Ipv4Addr::new(b[8], b[9], b[10], b[11]),
            first_hop_limit,
        })
    }
}

const RELAY: u8 = 1;
const DELIVER: u8 = 2;
const DROP: u8 = 3;
const FLAG_UP: u8 = 0x01;

impl Report {
    /// Writes the report at the start of `buf`; returns its length.
    ///
    /// A device name longer than [`MAX_DEVICE_LEN`] or that is no interface name is refused.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, TraceError> {
        let (device, bridge): (&[u8], Option<&[u8]>) = match &self.action {
            Action::Deliver { device, bridge, .. } => {
                if !valid_device(device.as_bytes()) {
                    return Err(TraceError::Invalid(TraceField::Device));
                }
                let bridge = bridge.as_deref().map(str::as_bytes);
                if bridge.is_some_and(|b| !valid_device(b)) {
                    return Err(TraceError::Invalid(TraceField::Bridge));
                }
                (device.as_bytes(), bridge)
            }
            _ => (&[], None),
        };
        let fixed = REPORT_FIXED_LEN + device.len();
        let len = fixed + bridge.map_or(0, |b| 1 + b.len());
        let b = buf.get_mut(..len).ok_or(TraceError::BufferTooSmall)?;
        b.fill(0);
        b[0..8].copy_from_slice(&self.nonce.to_be_bytes());
        b[8] = self.hop;
        match &self.action {
            Action::Relay { next, addr } => {
                b[9] = RELAY;
                b[12..20].copy_from_slice(&next.0.to_be_bytes());
                b[21..23].copy_from_slice(&addr.port().to_be_bytes());
                match addr.ip() {
                    IpAddr::V4(v4) => {
                        b[20] = 4;
                        b[23..27].copy_from_slice(&v4.octets());
                    }
                    IpAddr::V6(v6) => {
                        b[20] = 6;
                        b[23..39].copy_from_slice(&v6.octets());
                    }
                }
            }
            Action::Deliver { up, .. } => {
                b[9] = DELIVER;
                if *up {
                    b[10] = FLAG_UP;
                }
            }
            Action::Drop(cause) => {
                b[9] = DROP;
                b[11] = *cause as u8;
            }
        }
        b[39] = device.len() as u8;
        b[REPORT_FIXED_LEN..fixed].copy_from_slice(device);
        if let Some(bridge) = bridge {
            b[fixed] = bridge.len() as u8;
            b[fixed + 1..].copy_from_slice(bridge);
        }
        Ok(len)
    }

    /// Parses a report payload.
    pub fn parse(buf: &[u8]) -> Result<Report, TraceError> {
        let b = buf
            .get(..REPORT_FIXED_LEN)
            .ok_or(TraceError::Truncated(buf.len()))?;
        let nonce = u64_at(&b[0..8]);
        let hop = b[8];
        let action = match b[9] {
            RELAY => {
                let port = u16::from_be_bytes([b[21], b[22]]);
                let ip = match b[20] {
                    4 => IpAddr::V4(Ipv4Addr::new(b[23], b[24], b[25], b[26])),
                    6 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&b[23..39]);
                        IpAddr::V6(Ipv6Addr::from(a))
                    }
                    _ => return Err(TraceError::Invalid(TraceField::AddressFamily)),
                };
                Action::Relay {
                    next: PeerId(u64_at(&b[12..20])),
                    addr: SocketAddr::new(ip, port),
                }
            }
            DELIVER => {
                let n = usize::from(b[39]);
                let name = buf
                    .get(REPORT_FIXED_LEN..REPORT_FIXED_LEN + n)
                    .ok_or(TraceError::Truncated(buf.len()))?;
                if !valid_device(name) {
                    return Err(TraceError::Invalid(TraceField::Device));
                }
                let at = REPORT_FIXED_LEN + n;
                let bridge = match buf.get(at).map(|l| usize::from(*l)) {
                    None | Some(0) => None,
                    Some(l) => {
                        let bridge = buf
                            .get(at + 1..at + 1 + l)
                            .ok_or(TraceError::Truncated(buf.len()))?;
                        if !valid_device(bridge) {
                            return Err(TraceError::Invalid(TraceField::Bridge));
                        }
                        Some(ascii(bridge))
                    }
                };
                Action::Deliver {
                    device: ascii(name),
                    up: b[10] & FLAG_UP != 0,
                    bridge,
                }
            }
            DROP => {
                Action::Drop(Cause::from_u8(b[11]).ok_or(TraceError::Invalid(TraceField::Cause))?)
            }
            _ => return Err(TraceError::Invalid(TraceField::Action)),
        };
        Ok(Report { nonce, hop, action })
    }
}

/// 1 to 15 bytes of printable ASCII without '/', ':' or spaces (what Linux allows in
/// practice, restricted to what prints safely on a terminal).
fn valid_device(name: &[u8]) -> bool {
    (1..=MAX_DEVICE_LEN).contains(&name.len())
        && name
            .iter()
            .all(|c| c.is_ascii_graphic() && *c != b'/' && *c != b':')
}

/// A validated name (printable ASCII, so the conversion is lossless).
fn ascii(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

fn u64_at(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static PROBE: [u8; PROBE_LEN] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // nonce
        10, 32, 2, 5, // target
        16, 0, 0, 0, // first hop limit, reserved
    ];

    #[test]
    fn probe_round_trips_through_its_fixture() {
        let probe = Probe {
            nonce: 0x0102_0304_0506_0708,
            target: Ipv4Addr::new(10, 32, 2, 5),
            first_hop_limit: 16,
        };
        assert_eq!(Probe::parse(&PROBE), Ok(probe));
        let mut buf = [0xffu8; PROBE_LEN + 2];
        assert_eq!(probe.emit(&mut buf), Ok(PROBE_LEN));
        assert_eq!(buf[..PROBE_LEN], PROBE);
        assert_eq!(
            probe.emit(&mut [0u8; PROBE_LEN - 1]),
            Err(TraceError::BufferTooSmall)
        );
    }

    #[test]
    fn probe_rejects_truncation_and_zero_hop_limit_and_ignores_reserved() {
        for len in 0..PROBE_LEN {
            assert_eq!(Probe::parse(&PROBE[..len]), Err(TraceError::Truncated(len)));
        }
        let mut b = PROBE;
        b[12] = 0;
        assert_eq!(
            Probe::parse(&b),
            Err(TraceError::Invalid(TraceField::FirstHopLimit))
        );
        assert_eq!(
            TraceError::Invalid(TraceField::FirstHopLimit).to_string(),
            "trace payload field first hop limit is invalid"
        );
        let mut b = PROBE;
        b[13] = 0xee;
        assert!(Probe::parse(&b).is_ok());
    }

    static RELAY_REPORT: [u8; REPORT_FIXED_LEN] = [
        0, 0, 0, 0, 0, 0, 0, 7, // nonce
        1, 1, 0, 0, // hop 1, relay, flags, cause
        0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, // next peer
        4, 0x1a, 0x7f, // IPv4, port 6783
        10, 99, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // address
        0, // no device
    ];

    #[test]
    fn relay_report_fixture() {
        let report = Report {
            nonce: 7,
            hop: 1,
            action: Action::Relay {
                next: PeerId(0xa1a2_a3a4_a5a6_a7a8),
                addr: "10.99.0.3:6783".parse().expect("addr"),
            },
        };
        assert_eq!(Report::parse(&RELAY_REPORT), Ok(report.clone()));
        let mut buf = [0xffu8; MAX_REPORT_LEN];
        assert_eq!(report.emit(&mut buf), Ok(REPORT_FIXED_LEN));
        assert_eq!(buf[..REPORT_FIXED_LEN], RELAY_REPORT);
    }

    #[test]
    fn deliver_and_drop_report_fixtures() {
        let mut deliver = [0u8; REPORT_FIXED_LEN + 4];
        deliver[7] = 9;
        deliver[8] = 2; // hop
        deliver[9] = 2; // deliver
        deliver[10] = 1; // up
        deliver[39] = 4;
        deliver[40..].copy_from_slice(b"eth0");
        let report = Report {
            nonce: 9,
            hop: 2,
            action: Action::Deliver {
                device: "eth0".into(),
                up: true,
                bridge: None,
            },
        };
        assert_eq!(Report::parse(&deliver), Ok(report.clone()));
        let mut buf = [0xffu8; MAX_REPORT_LEN];
        assert_eq!(report.emit(&mut buf), Ok(deliver.len()));
        assert_eq!(buf[..deliver.len()], deliver);

        let mut bridged = [0u8; REPORT_FIXED_LEN + 4 + 1 + 3];
        bridged[..deliver.len()].copy_from_slice(&deliver);
        bridged[REPORT_FIXED_LEN + 4..].copy_from_slice(b"\x03br0");
        let report = Report {
            action: Action::Deliver {
                device: "eth0".into(),
                up: true,
                bridge: Some("br0".into()),
            },
            ..report
        };
        assert_eq!(Report::parse(&bridged), Ok(report.clone()));
        assert_eq!(report.emit(&mut buf), Ok(bridged.len()));
        assert_eq!(buf[..bridged.len()], bridged);
        // A zero bridge length is no bridge; a bridge name past the end is truncated.
        let mut zero = bridged;
        zero[REPORT_FIXED_LEN + 4] = 0;
        assert!(matches!(
            Report::parse(&zero).map(|r| r.action),
            Ok(Action::Deliver { bridge: None, .. })
        ));
        assert_eq!(
            Report::parse(&bridged[..bridged.len() - 1]),
            Err(TraceError::Truncated(bridged.len() - 1))
        );

        let mut dropped = [0u8; REPORT_FIXED_LEN];
        dropped[8] = 3;
        dropped[9] = 3; // drop
        dropped[11] = 3; // hop limit
        let report = Report {
            nonce: 0,
            hop: 3,
            action: Action::Drop(Cause::HopLimit),
        };
        assert_eq!(Report::parse(&dropped), Ok(report.clone()));
        assert_eq!(report.emit(&mut buf), Ok(REPORT_FIXED_LEN));
        assert_eq!(buf[..REPORT_FIXED_LEN], dropped);
    }

    #[test]
    fn reports_with_bad_fields_are_rejected() {
        for len in 0..REPORT_FIXED_LEN {
            assert_eq!(
                Report::parse(&RELAY_REPORT[..len]),
                Err(TraceError::Truncated(len))
            );
        }
        let mut b = RELAY_REPORT;
        b[9] = 0;
        assert_eq!(
            Report::parse(&b),
            Err(TraceError::Invalid(TraceField::Action))
        );
        let mut b = RELAY_REPORT;
        b[20] = 5;
        assert_eq!(
            Report::parse(&b),
            Err(TraceError::Invalid(TraceField::AddressFamily))
        );
        let mut b = RELAY_REPORT;
        b[9] = 3;
        b[11] = 0;
        assert_eq!(
            Report::parse(&b),
            Err(TraceError::Invalid(TraceField::Cause))
        );
        // A device name longer than the payload, empty, too long or unprintable.
        let mut b = [0u8; REPORT_FIXED_LEN + 20];
        b[9] = 2;
        b[39] = 5;
        b[40..45].copy_from_slice(b"veth0");
        assert!(Report::parse(&b).is_ok());
        assert_eq!(
            Report::parse(&b[..REPORT_FIXED_LEN + 4]),
            Err(TraceError::Truncated(REPORT_FIXED_LEN + 4))
        );
        for (len, name) in [
            (0usize, &b""[..]),
            (16, b"aaaaaaaaaaaaaaaa"),
            (2, b"a\n"),
            (3, b"a/b"),
        ] {
            b[39] = len as u8;
            b[40..40 + name.len()].copy_from_slice(name);
            assert_eq!(
                Report::parse(&b),
                Err(TraceError::Invalid(TraceField::Device)),
                "{name:?}"
            );
        }
        let bad = Report {
            nonce: 1,
            hop: 1,
            action: Action::Deliver {
                device: "much-too-long-name".into(),
                up: true,
                bridge: None,
            },
        };
        assert_eq!(
            bad.emit(&mut [0u8; 64]),
            Err(TraceError::Invalid(TraceField::Device))
        );
    }

    #[test]
    fn hop_numbers_count_from_one_after_the_origin() {
        assert_eq!(hop_number(16, 16), Some(1));
        assert_eq!(hop_number(16, 15), Some(2));
        assert_eq!(hop_number(16, 1), Some(16));
        assert_eq!(hop_number(3, 4), None);
        assert_eq!(hop_number(255, 0), None);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Probe::parse(&bytes);
            if let Ok(r) = Report::parse(&bytes) {
                // What parses re-emits to the same meaning.
                let mut buf = [0u8; MAX_REPORT_LEN];
                let n = r.emit(&mut buf).expect("a parsed report emits");
                prop_assert_eq!(Report::parse(&buf[..n]), Ok(r));
            }
        }

        #[test]
        fn reports_round_trip(nonce: u64, hop: u8, next: u64, v6: bool, port: u16, up: bool, which in 0u8..3) {
            let ip = if v6 { IpAddr::V6(Ipv6Addr::from(next as u128)) } else { IpAddr::V4(Ipv4Addr::from(next as u32)) };
            let action = match which {
                0 => Action::Relay { next: PeerId(next), addr: SocketAddr::new(ip, port) },
                1 => Action::Deliver { device: "veth-abc".into(), up, bridge: v6.then(|| "ovlbr0".to_owned()) },
                _ => Action::Drop(Cause::Unreachable),
            };
            let r = Report { nonce, hop, action };
            let mut buf = [0u8; MAX_REPORT_LEN];
            let n = r.emit(&mut buf).expect("room");
            prop_assert_eq!(Report::parse(&buf[..n]), Ok(r));
        }
    }
}
