//! What an agent does with a trace datagram it received (decisions over the forwarding table
//! and the datagram, for the agent's trace task), and the trace datagrams it builds.
//!
//! A datagram for another peer is passed on by the data path's own [`relay`] rule (hop limit
//! above 1, a next hop, hop limit decremented in place). A probe also earns its origin a
//! report, which is itself routed over the overlay towards the origin — the only peer a
//! probe can make this agent report to, and only when the topology gives a path to it.

use super::relay::relay;
use super::DropReason;
use crate::forwarding::ForwardingTable;
use crate::header::{Header, Kind, DEFAULT_HOP_LIMIT, HEADER_LEN};
use crate::peer::PeerId;
use crate::trace::{hop_number, Cause, Probe, Report, MAX_REPORT_LEN, PROBE_LEN};
use std::net::{Ipv4Addr, SocketAddr};

/// Largest trace datagram accepted (header and the largest payload, a report): a buffer of
/// this size holds any datagram [`report_datagram`] writes.
pub const MAX_TRACE_DATAGRAM: usize = HEADER_LEN + MAX_REPORT_LEN;
/// Length of a probe datagram (header and probe).
pub const PROBE_DATAGRAM: usize = HEADER_LEN + PROBE_LEN;

/// A probe this agent answers: whom to report to and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeIn {
    /// The origin (the header's source).
    pub origin: PeerId,
    /// Where reports to the origin go first.
    pub report_to: SocketAddr,
    /// The probe's nonce.
    pub nonce: u64,
    /// This agent's hop number.
    pub hop: u8,
}

/// What to do with a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeStep {
    /// Send the datagram (hop limit already decremented) to `to`, the address of `next`.
    Relay {
        /// The next hop.
        next: PeerId,
        /// Its underlay address.
        to: SocketAddr,
    },
    /// This agent owns the target: find the device its kernel routes `target` to.
    Final {
        /// The traced address.
        target: Ipv4Addr,
    },
    /// Report this drop.
    Drop(Cause),
}

/// Decides about a probe datagram (kind `TraceProbe`); `None` when it is ignored: malformed,
/// claiming to come from this agent, with an impossible hop count, or from an origin this
/// agent has no path to (it could not report, and does not forward what it cannot account
/// for).
pub fn on_probe(table: &ForwardingTable, datagram: &mut [u8]) -> Option<(ProbeIn, ProbeStep)> {
    let header = Header::parse(datagram).ok()?;
    let probe = Probe::parse(datagram.get(HEADER_LEN..)?).ok()?;
    if header.kind != Kind::TraceProbe || header.src == table.me() {
        return None;
    }
    let report_to = table.next_hop(header.src)?.addr;
    let hop = hop_number(probe.first_hop_limit, header.hop_limit)?;
    let probe_in = ProbeIn {
        origin: header.src,
        report_to,
        nonce: probe.nonce,
        hop,
    };
    let step = if header.dst != table.me() {
        match relay(table, &header, datagram) {
            Ok(next) => ProbeStep::Relay {
                next: next.via,
                to: next.addr,
            },
            Err(DropReason::HopLimit) => ProbeStep::Drop(Cause::HopLimit),
            Err(_) => ProbeStep::Drop(Cause::Unreachable),
        }
    } else if table
        .local_block()
        .is_some_and(|b| b.contains(&probe.target))
    {
        ProbeStep::Final {
            target: probe.target,
        }
    } else {
        ProbeStep::Drop(Cause::NotLocal)
    };
    Some((probe_in, step))
}

/// What to do with a report datagram (kind `TraceReport`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportStep {
    /// For another peer: send the datagram (hop limit already decremented) to `to`.
    Forward {
        /// The next hop's underlay address.
        to: SocketAddr,
    },
    /// For this agent, from `from`.
    Mine {
        /// The reporting agent.
        from: PeerId,
        /// The report.
        report: Report,
    },
    /// Drop it (malformed, hop limit exhausted, no route).
    Ignore,
}

/// Decides about a report datagram.
pub fn on_report(table: &ForwardingTable, datagram: &mut [u8]) -> ReportStep {
    let Ok(header) = Header::parse(datagram) else {
        return ReportStep::Ignore;
    };
    if header.kind != Kind::TraceReport {
        return ReportStep::Ignore;
    }
    if header.dst != table.me() {
        return match relay(table, &header, datagram) {
            Ok(next) => ReportStep::Forward { to: next.addr },
            Err(_) => ReportStep::Ignore,
        };
    }
    match datagram.get(HEADER_LEN..).map(Report::parse) {
        Some(Ok(report)) => ReportStep::Mine {
            from: header.src,
            report,
        },
        _ => ReportStep::Ignore,
    }
}

/// A probe datagram from `me` for `dst` (the owner of `probe.target`).
pub fn probe_datagram(me: PeerId, dst: PeerId, probe: &Probe) -> [u8; PROBE_DATAGRAM] {
    let mut d = [0u8; PROBE_DATAGRAM];
    let header = Header {
        kind: Kind::TraceProbe,
        hop_limit: probe.first_hop_limit,
        flags: 0,
        src: me,
        dst,
    };
    // Cannot fail: the array has room for both.
    let _ = header.emit(&mut d);
    let _ = probe.emit(&mut d[HEADER_LEN..]);
    d
}

/// Writes a report datagram from `me` to `origin` into `buf` (of [`MAX_TRACE_DATAGRAM`]
/// bytes, any report fits): its length; `None` if the report cannot be encoded or `buf` is
/// too short.
pub fn report_datagram(
    me: PeerId,
    origin: PeerId,
    report: &Report,
    buf: &mut [u8],
) -> Option<usize> {
    let header = Header {
        kind: Kind::TraceReport,
        hop_limit: DEFAULT_HOP_LIMIT,
        flags: 0,
        src: me,
        dst: origin,
    };
    header.emit(buf)?;
    let n = report.emit(buf.get_mut(HEADER_LEN..)?).ok()?;
    Some(HEADER_LEN + n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fixtures::{table_of, A, B, C};
    use crate::trace::Action;

    fn probe(src: PeerId, dst: PeerId, hop_limit: u8, target: [u8; 4]) -> Vec<u8> {
        let probe = Probe {
            nonce: 77,
            target: target.into(),
            first_hop_limit: DEFAULT_HOP_LIMIT,
        };
        let mut d = probe_datagram(src, dst, &probe).to_vec();
        Header::set_hop_limit(&mut d, hop_limit).expect("long enough");
        d
    }

    fn report_datagram(me: PeerId, origin: PeerId, report: &Report) -> Option<Vec<u8>> {
        let mut d = vec![0u8; MAX_TRACE_DATAGRAM];
        let n = super::report_datagram(me, origin, report, &mut d)?;
        d.truncate(n);
        Some(d)
    }

    #[test]
    fn a_relay_passes_the_probe_on_and_reports_to_the_origin() {
        // A–B broken: C relays.
        let table = table_of(C, true);
        let mut d = probe(A.id(), B.id(), DEFAULT_HOP_LIMIT, [10, 32, 2, 5]);
        let (p, step) = on_probe(&table, &mut d).expect("answered");
        assert_eq!(
            p,
            ProbeIn {
                origin: A.id(),
                report_to: A.underlay(),
                nonce: 77,
                hop: 1
            }
        );
        assert_eq!(
            step,
            ProbeStep::Relay {
                next: B.id(),
                to: B.underlay()
            }
        );
        assert_eq!(
            Header::parse(&d).map(|h| h.hop_limit),
            Ok(DEFAULT_HOP_LIMIT - 1)
        );
    }

    #[test]
    fn the_destination_checks_the_target_is_in_its_block() {
        let table = table_of(B, false);
        let mut d = probe(A.id(), B.id(), DEFAULT_HOP_LIMIT - 1, [10, 32, 2, 5]);
        let (p, step) = on_probe(&table, &mut d).expect("answered");
        assert_eq!(p.hop, 2);
        assert_eq!(
            step,
            ProbeStep::Final {
                target: Ipv4Addr::new(10, 32, 2, 5)
            }
        );
        let mut d = probe(A.id(), B.id(), DEFAULT_HOP_LIMIT, [10, 32, 3, 5]);
        assert_eq!(
            on_probe(&table, &mut d).map(|x| x.1),
            Some(ProbeStep::Drop(Cause::NotLocal))
        );
    }

    #[test]
    fn drops_are_reported_with_their_cause() {
        let table = table_of(C, true);
        let mut d = probe(A.id(), B.id(), 1, [10, 32, 2, 5]);
        assert_eq!(
            on_probe(&table, &mut d).map(|x| (x.0.hop, x.1)),
            Some((DEFAULT_HOP_LIMIT, ProbeStep::Drop(Cause::HopLimit)))
        );
        let mut d = probe(A.id(), PeerId(42), DEFAULT_HOP_LIMIT, [10, 32, 9, 5]);
        assert_eq!(
            on_probe(&table, &mut d).map(|x| x.1),
            Some(ProbeStep::Drop(Cause::Unreachable))
        );
    }

    #[test]
    fn probes_that_cannot_be_answered_are_ignored() {
        let table = table_of(C, true);
        // From an unknown origin: no report can go anywhere, nothing is forwarded.
        let mut d = probe(PeerId(42), B.id(), DEFAULT_HOP_LIMIT, [10, 32, 2, 5]);
        let before = d.clone();
        assert_eq!(on_probe(&table, &mut d), None);
        assert_eq!(d, before);
        // Claiming to be from this agent, a hop limit above the first, garbage.
        let mut d = probe(C.id(), B.id(), DEFAULT_HOP_LIMIT, [10, 32, 2, 5]);
        assert_eq!(on_probe(&table, &mut d), None);
        let mut d = probe(A.id(), B.id(), DEFAULT_HOP_LIMIT + 1, [10, 32, 2, 5]);
        assert_eq!(on_probe(&table, &mut d), None);
        for len in 0..HEADER_LEN + PROBE_LEN {
            let mut d = probe(A.id(), B.id(), DEFAULT_HOP_LIMIT, [10, 32, 2, 5]);
            assert_eq!(on_probe(&table, &mut d[..len]), None);
        }
    }

    #[test]
    fn reports_are_routed_to_the_origin_and_taken_there() {
        let report = Report {
            nonce: 77,
            hop: 2,
            action: Action::Deliver {
                device: "veth1".into(),
                up: true,
                bridge: None,
            },
        };
        let mut d = report_datagram(B.id(), A.id(), &report).expect("encodes");
        // Through C (A–B broken).
        assert_eq!(
            on_report(&table_of(C, true), &mut d),
            ReportStep::Forward { to: A.underlay() }
        );
        assert_eq!(
            on_report(&table_of(A, true), &mut d),
            ReportStep::Mine {
                from: B.id(),
                report
            }
        );
        // Hop limit exhausted, no route, garbage.
        Header::set_hop_limit(&mut d, 1).expect("long");
        assert_eq!(on_report(&table_of(C, true), &mut d), ReportStep::Ignore);
        let mut lost = report_datagram(
            B.id(),
            PeerId(42),
            &Report {
                nonce: 1,
                hop: 1,
                action: Action::Drop(Cause::NoOwner),
            },
        )
        .expect("encodes");
        assert_eq!(on_report(&table_of(C, true), &mut lost), ReportStep::Ignore);
        let mut d = report_datagram(
            B.id(),
            A.id(),
            &Report {
                nonce: 1,
                hop: 1,
                action: Action::Drop(Cause::NoOwner),
            },
        )
        .expect("encodes");
        d[HEADER_LEN + 9] = 0;
        assert_eq!(on_report(&table_of(A, true), &mut d), ReportStep::Ignore);
    }
}
