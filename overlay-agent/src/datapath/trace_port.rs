//! The data path's side door for trace datagrams (kinds `TraceProbe` and `TraceReport`).
//!
//! The rx half checks the sender and parses the header of every datagram as usual; a
//! datagram of a trace kind then takes a cold branch: it is copied into a bounded queue
//! ([`TraceQueue::offer`], a `try_send` that counts a drop when the queue is full) and
//! handled by the agent's trace task ([`crate::trace`]) through the [`TracePort`], which
//! sends on the data path's own UDP socket (so peers accept the datagrams as coming from
//! this agent) with the same forwarding table. Ip traffic never touches the queue: it pays
//! one comparison of the header kind.

use super::udp::Udp;
use arc_swap::ArcSwap;
use overlay_proto::forwarding::ForwardingTable;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Trace datagrams waiting for the trace task at most; more are dropped and counted.
pub(crate) const QUEUE_LEN: usize = 64;

/// The rx half's end of the queue.
#[derive(Debug)]
pub(crate) struct TraceQueue {
    tx: mpsc::Sender<Vec<u8>>,
    received: AtomicU64,
    full: AtomicU64,
}

impl TraceQueue {
    pub(crate) fn new() -> (TraceQueue, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        (
            TraceQueue {
                tx,
                received: AtomicU64::new(0),
                full: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// Queues a copy of `datagram` for the trace task (no waiting: counted as dropped when
    /// the queue is full or nobody reads it). Called by the rx half only.
    #[cold]
    #[inline(never)]
    pub(crate) fn offer(&self, datagram: &[u8]) {
        bump(&self.received);
        if self.tx.try_send(datagram.to_vec()).is_err() {
            bump(&self.full);
        }
    }

    /// (trace datagrams received, of which dropped because the queue was full or closed).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.full.load(Ordering::Relaxed),
        )
    }
}

/// Adds one to a counter only the rx half writes.
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// What the trace task gets from the data path: the queued trace datagrams, the current
/// forwarding table and the UDP socket to send from.
#[derive(Debug)]
pub struct TracePort {
    pub(crate) udp: Arc<Udp>,
    pub(crate) table: Arc<ArcSwap<ForwardingTable>>,
    pub(crate) rx: mpsc::Receiver<Vec<u8>>,
}

impl TracePort {
    /// The next trace datagram (header included); `None` once the data path is gone.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// A sender of datagrams from the data path's socket, with the forwarding table.
    pub fn sender(&self) -> TraceSender {
        TraceSender {
            udp: self.udp.clone(),
            table: self.table.clone(),
        }
    }
}

/// Sends datagrams from the data path's UDP socket (non-blocking), and reads the data path's
/// forwarding table.
#[derive(Debug, Clone)]
pub struct TraceSender {
    udp: Arc<Udp>,
    table: Arc<ArcSwap<ForwardingTable>>,
}

impl TraceSender {
    /// The forwarding table in use.
    pub fn table(&self) -> Arc<ForwardingTable> {
        self.table.load_full()
    }

    /// Sends one datagram to `to`; a full socket buffer is an error (`WouldBlock`).
    pub fn send(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.udp.send_to(datagram, to).map(|_| ())
    }
}
