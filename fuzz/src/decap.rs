//! The `decap` target's property (UDP → TUN or relay), as a function so the corpus can be
//! replayed without libFuzzer: [`property`] panics when it does not hold.
//!
//! Input: a mode byte, then a datagram as received. Mode bits 0-1 pick the receiving node
//! (A, B, C, C) and bit 2 the topology (fully connected, or A–B broken with C relaying) of
//! the three-peer fixture cluster; bit 3 makes sealing required, with an opener that strips
//! [`TAG`] bytes; bit 4 makes the sender an address that is not a peer.
//!
//! The property: decap never panics; a datagram from a non-peer is dropped (`NotPeer`); a
//! Deliver range starts after the overlay header and lies inside the (opened) datagram; a
//! relayed datagram — by decap or by either trace step — differs from the input only in its
//! hop-limit byte, one less and above 0; any other verdict leaves the datagram untouched.

use overlay_proto::dataplane::decap::decap;
use overlay_proto::dataplane::fixtures::{table_of, A, B, C};
use overlay_proto::dataplane::trace::{
    on_probe, on_report, ProbeStep, ReportStep, MAX_TRACE_DATAGRAM,
};
use overlay_proto::dataplane::{DropReason, Plain, RxVerdict, Unseal};
use overlay_proto::forwarding::ForwardingTable;
use overlay_proto::header::{Header, Kind, HEADER_LEN};
use overlay_proto::PeerId;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// Bytes the fuzz opener strips from a sealed datagram (standing for nonce and tag).
pub const TAG: usize = 16;

/// Byte offset of the hop limit in the overlay header.
const HOP_LIMIT: usize = 2;

/// Sealing required; opening strips [`TAG`] bytes (or is `SealTruncated` when too short).
#[derive(Debug)]
struct Strip {
    opened: Option<usize>,
}

impl Unseal for Strip {
    fn required(&self) -> bool {
        true
    }
    fn open(&mut self, _src: PeerId, d: &mut [u8]) -> Result<usize, DropReason> {
        let n = d
            .len()
            .checked_sub(TAG)
            .filter(|&n| n >= HEADER_LEN)
            .ok_or(DropReason::SealTruncated)?;
        self.opened = Some(n);
        Ok(n)
    }
}

/// The six tables: A, B, C in the connected topology, then in the relayed one.
fn tables() -> &'static [ForwardingTable; 6] {
    static TABLES: OnceLock<[ForwardingTable; 6]> = OnceLock::new();
    TABLES.get_or_init(|| {
        [
            table_of(A, false),
            table_of(B, false),
            table_of(C, false),
            table_of(A, true),
            table_of(B, true),
            table_of(C, true),
        ]
    })
}

/// Asserts that `after` is `before` relayed: only the hop limit changed, by one.
fn assert_relayed(before: &[u8], after: &[u8]) {
    assert_eq!(before.len(), after.len());
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if i == HOP_LIMIT {
            assert!(*b > 1, "relayed with hop limit {b}");
            assert_eq!(*a, b - 1, "hop limit decremented by one");
        } else {
            assert_eq!(a, b, "byte {i} changed by a relay");
        }
    }
}

/// The property (see the module doc); panics if it does not hold.
pub fn property(data: &[u8]) {
    let _ = check(data);
}

/// [`property`], returning decap's verdict (`None` without a mode byte).
fn check(data: &[u8]) -> Option<RxVerdict> {
    let (&mode, datagram) = data.split_first()?;
    let me = usize::from(mode & 3).min(2);
    let table = &tables()[me + 3 * usize::from((mode >> 2) & 1)];
    let from = if mode & 0x10 != 0 {
        SocketAddr::from(([10, 99, 0, 9], 6783))
    } else {
        A.underlay()
    };
    let mut d = datagram.to_vec();
    let mut strip = Strip { opened: None };
    let verdict = if mode & 8 != 0 {
        decap(table, &from, &mut d, &mut strip)
    } else {
        decap(table, &from, &mut d, &mut Plain)
    };
    if mode & 0x10 != 0 {
        assert_eq!(verdict, RxVerdict::Drop(DropReason::NotPeer));
    }
    match &verdict {
        RxVerdict::Deliver { range, .. } => {
            let len = strip.opened.unwrap_or(d.len());
            assert!(HEADER_LEN == range.start && range.start <= range.end && range.end <= len);
            assert_eq!(d, datagram);
        }
        RxVerdict::Relay { to } => {
            assert_relayed(datagram, &d);
            assert!([A, B, C].iter().any(|p| p.underlay() == *to), "{to}");
        }
        RxVerdict::Trace => {
            assert_eq!(d, datagram);
            assert!(d.len() <= MAX_TRACE_DATAGRAM);
            trace(table, &mut d);
        }
        RxVerdict::Drop(_) => assert_eq!(d, datagram),
    }
    Some(verdict)
}

/// The trace task's steps on a datagram decap handed over: a relay changes only the hop
/// limit, anything else nothing.
fn trace(table: &ForwardingTable, d: &mut [u8]) {
    let before = d.to_vec();
    let relayed = match Header::parse(d).map(|h| h.kind) {
        Ok(Kind::TraceProbe) => matches!(on_probe(table, d), Some((_, ProbeStep::Relay { .. }))),
        Ok(Kind::TraceReport) => matches!(on_report(table, d), ReportStep::Forward { .. }),
        _ => false,
    };
    if relayed {
        assert_relayed(&before, d);
    } else {
        assert_eq!(d, &before[..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The seeds hold, and between them reach every verdict.
    #[test]
    fn the_corpus_holds_and_reaches_every_verdict() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/decap");
        let mut reached = [false; 4];
        for entry in std::fs::read_dir(dir).expect("corpus/decap") {
            let data = std::fs::read(entry.expect("entry").path()).expect("seed");
            reached[match check(&data).expect("a mode byte") {
                RxVerdict::Deliver { .. } => 0,
                RxVerdict::Relay { .. } => 1,
                RxVerdict::Trace => 2,
                RxVerdict::Drop(_) => 3,
            }] = true;
        }
        assert_eq!(reached, [true; 4]);
    }

    /// A poor man's fuzzer for the stable toolchain: random byte changes and cuts of every
    /// seed, under every mode.
    #[test]
    fn mutated_seeds_hold() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/decap");
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for entry in std::fs::read_dir(dir).expect("corpus/decap") {
            let seed = std::fs::read(entry.expect("entry").path()).expect("seed");
            for _ in 0..3000 {
                let mut d = seed.clone();
                d[0] = next() as u8;
                for _ in 0..next() % 4 {
                    let i = (next() as usize) % d.len();
                    d[i] = next() as u8;
                }
                if next() % 4 == 0 {
                    d.truncate((next() as usize) % d.len());
                }
                property(&d);
            }
        }
    }
}
