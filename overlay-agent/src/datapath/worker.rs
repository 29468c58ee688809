//! The packet thread: one run-to-completion loop over both directions.
//!
//! It alternates between the rx half (UDP → TUN, [`Rx`]) and the tx half (TUN → UDP, [`Tx`]),
//! giving each up to [`BURST`] steps while it has work, and sleeps in `poll(2)` on both fds
//! (and the shutdown eventfd) only when neither has any.
//!
//! Why one thread for both directions rather than one per direction: writing a packet to the
//! TUN runs the kernel's receive path to completion inside the write, so whatever the
//! destination answers at once (a TCP ACK, an ICMP echo reply, a reply from a local service
//! already waiting) is queued on the TUN before the write returns. The tx pass right after the
//! rx pass sends it on with no thread wake-up in between; with a thread per direction every
//! such answer cost a cross-CPU wake-up of the tx thread (≈ 10–90 µs on a virtual machine
//! whose idle vCPUs halt, see docs/measurements.md) and a context switch. The
//! receive half runs first in each round for that reason.

use super::rx::Rx;
use super::tx::Tx;
use super::wake::{Shutdown, Wait};

/// What one step of a half did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// It read something (and moved or dropped it), or must be called again.
    Moved,
    /// There was nothing to read.
    Idle,
    /// Shutdown was requested: the thread returns.
    Stop,
}

/// Back-off after an unexpected I/O error, so a broken fd does not spin a core.
const ERROR_BACKOFF_MS: i32 = 10;

/// After an unexpected I/O error (already logged or counted by the half): pauses
/// [`ERROR_BACKOFF_MS`] unless shutdown comes first.
#[cold]
pub(crate) fn back_off(shutdown: &Shutdown) -> Step {
    match shutdown.sleep(ERROR_BACKOFF_MS) {
        Wait::Stop => Step::Stop,
        Wait::Ready | Wait::Timeout => Step::Moved,
    }
}

/// Most steps a half takes in a row while the other may be waiting: bounds how long an ACK or
/// a reply waits behind a stream in the other direction (4 × 64 KiB ≈ 0.2 ms at 10 Gbit/s).
pub(crate) const BURST: usize = 4;

/// Moves packets in both directions until shutdown is requested.
pub(crate) fn run(mut rx: Rx, mut tx: Tx, shutdown: &Shutdown) {
    while !shutdown.requested() {
        let (rx_idle, stop) = burst(|| rx.step());
        if stop {
            return;
        }
        // A burst cut short by BURST leaves pending super-packets: write them before turning
        // to the other direction, so their ACKs can be generated meanwhile.
        rx.flush();
        let (tx_idle, stop) = burst(|| tx.step());
        if stop {
            return;
        }
        if rx_idle && tx_idle && shutdown.wait_readable(rx.fd(), tx.fd(), -1) == Wait::Stop {
            return;
        }
    }
}

/// Runs up to [`BURST`] steps, stopping at the first idle one; returns whether the very first
/// step found nothing to do, and whether to stop.
#[inline]
fn burst(mut step: impl FnMut() -> Step) -> (bool, bool) {
    for i in 0..BURST {
        match step() {
            Step::Moved => {}
            Step::Idle => return (i == 0, false),
            Step::Stop => return (false, true),
        }
    }
    (false, false)
}
