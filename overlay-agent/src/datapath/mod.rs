//! The data path: a TUN device, a UDP socket and one run-to-completion thread per direction.
//!
//! ```text
//!  kernel route ─▶ TUN ──read──▶ [tx thread: parse inner IPv4, look up, add overlay header] ──sendto──▶ next hop
//!  next hop ──recvfrom──▶ [rx thread: check sender + header] ─┬─ for me: check inner packet ──write──▶ TUN
//!                                                             └─ for another peer: hop limit − 1 ──sendto──▶ next hop
//! ```
//!
//! Per packet there is no allocation, no lock and no logging: each thread owns one
//! preallocated buffer (the packet is read at `HEADER_LEN` so the header is written in front
//! of it in place), reads the current [`ForwardingTable`] through a per-thread
//! [`arc_swap::Cache`] (one pointer comparison unless the table changed), and counts into its
//! own block of relaxed atomics. Every dropped packet increments exactly one
//! [`DropCounters`] field.
//!
//! Both fds are non-blocking; a thread only waits (`poll(2)` on its fd plus a shutdown eventfd)
//! when there is nothing to read or the socket buffer is full, so [`Datapath::shutdown`]
//! returns promptly whatever the threads are doing.
//!
//! # Layout
//! - `tun`: the TUN device and its ioctls.
//! - `udp`: the UDP socket and its options.
//! - `wake`: waiting for readiness or shutdown.
//! - `packet`: checks of the inner IPv4 packet.
//! - `tx`: TUN → UDP (`encap` and its thread).
//! - `rx`: UDP → TUN or relay (`decap` and its thread).
//! - `counters`: per-thread counters and their sum.
//!
//! # What the fast path changes
//! `encap`/`decap` decide per packet and are pure functions over the thread's buffer; the fast
//! path keeps them as the per-super-packet decision (one lookup per super-packet), adds
//! `IFF_VNET_HDR`/`TUNSETOFFLOAD` in `tun`, `UDP_SEGMENT`/`UDP_GRO` in `udp`, and replaces
//! the single read/send in the thread loops with split-and-send-once and
//! receive-coalesce-write-once. Buffers are already sized for 64 KiB super-packets.

mod counters;
mod packet;
mod rx;
mod tun;
mod tx;
mod udp;
mod wake;

pub use counters::{CountersSnapshot, DropCounters};

use arc_swap::ArcSwap;
use counters::Counters;
use overlay_proto::forwarding::ForwardingTable;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use wake::Shutdown;

/// What the data path needs to start.
#[derive(Debug, Clone)]
pub struct DatapathConfig {
    /// TUN device name.
    pub iface: String,
    /// UDP address to bind (the listen address).
    pub listen: SocketAddr,
    /// MTU of the TUN device (the overlay MTU).
    pub mtu: u32,
}

/// A running data path: the TUN device, the UDP socket and their threads.
///
/// Dropping it stops the threads like [`Datapath::shutdown`].
#[derive(Debug)]
pub struct Datapath {
    table: Arc<ArcSwap<ForwardingTable>>,
    counters: [Arc<Counters>; 2],
    shutdown: Arc<Shutdown>,
    threads: Vec<JoinHandle<()>>,
    iface: String,
    local_addr: SocketAddr,
}

/// Why the data path could not start.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The TUN device name is not a valid interface name.
    #[error("TUN device name {iface:?} is not a valid interface name (1 to 15 bytes, no '/', ':' or whitespace)")]
    InvalidName {
        /// The name asked for.
        iface: String,
    },
    /// `/dev/net/tun` cannot be opened.
    #[error("opening /dev/net/tun for TUN device {iface}: {error} (is the tun module loaded, and do we have CAP_NET_ADMIN?)")]
    TunOpen {
        /// The device name.
        iface: String,
        /// The OS error.
        error: io::Error,
    },
    /// `TUNSETIFF` failed (e.g. a non-TUN interface of that name exists, or no permission).
    #[error("creating TUN device {iface} (TUNSETIFF): {error}")]
    TunCreate {
        /// The device name.
        iface: String,
        /// The OS error.
        error: io::Error,
    },
    /// Setting an attribute of the TUN device failed.
    #[error("setting the {what} of TUN device {iface}: {error}")]
    TunConfigure {
        /// The device name.
        iface: String,
        /// The attribute ("MTU", "txqueuelen").
        what: &'static str,
        /// The OS error.
        error: io::Error,
    },
    /// The UDP socket cannot be bound.
    #[error("binding the data-path UDP socket to {addr}: {error}")]
    Bind {
        /// The listen address.
        addr: SocketAddr,
        /// The OS error.
        error: io::Error,
    },
    /// A socket option cannot be set.
    #[error("setting {option} on the data-path UDP socket {addr}: {error}")]
    SocketOption {
        /// The listen address.
        addr: SocketAddr,
        /// The option.
        option: &'static str,
        /// The OS error.
        error: io::Error,
    },
    /// The shutdown eventfd cannot be created.
    #[error("creating the data-path shutdown eventfd: {error}")]
    Eventfd {
        /// The OS error.
        error: io::Error,
    },
    /// A packet thread cannot be started.
    #[error("starting data-path thread {thread}: {error}")]
    Spawn {
        /// The thread name.
        thread: &'static str,
        /// The OS error.
        error: io::Error,
    },
}

/// Largest IP packet read from the TUN (the IPv4 total-length limit; also a 64 KiB
/// super-packet once offloads are on).
pub(crate) const MAX_PACKET: usize = 65535;
/// Largest UDP datagram received.
pub(crate) const MAX_DATAGRAM: usize = 65535;
/// Back-off after an unexpected read error, so a broken fd does not spin a core.
pub(crate) const ERROR_BACKOFF_MS: i32 = 10;

impl Datapath {
    /// Opens the TUN device `config.iface` and binds the UDP socket, then starts the threads.
    ///
    /// The TUN device and socket are created in the network namespace of the calling thread.
    /// The device gets `config.mtu` and a raised txqueuelen but stays down: bring it up and
    /// address it with [`crate::netlink::configure_tun`].
    pub fn start(
        config: DatapathConfig,
        table: ForwardingTable,
    ) -> Result<Datapath, DatapathError> {
        let udp = Arc::new(udp::Udp::bind(config.listen)?);
        let local_addr = udp
            .local_addr()
            .map_err(|error| DatapathError::SocketOption {
                addr: config.listen,
                option: "getsockname",
                error,
            })?;
        let tun = Arc::new(tun::Tun::create(&config.iface, config.mtu)?);
        let shutdown = Arc::new(Shutdown::new().map_err(|error| DatapathError::Eventfd { error })?);
        let table = Arc::new(ArcSwap::from_pointee(table));
        let counters = [Arc::new(Counters::default()), Arc::new(Counters::default())];
        let mut datapath = Datapath {
            table: table.clone(),
            counters: counters.clone(),
            shutdown: shutdown.clone(),
            threads: Vec::with_capacity(2),
            iface: tun.name().to_owned(),
            local_addr,
        };
        let tx = tx::TxThread {
            tun: tun.clone(),
            udp: udp.clone(),
            table: table.clone(),
            counters: counters[0].clone(),
            shutdown: shutdown.clone(),
        };
        let rx = rx::RxThread {
            tun,
            udp,
            table,
            counters: counters[1].clone(),
            shutdown,
        };
        // On error `datapath` is dropped, which stops the thread already started.
        datapath.spawn("overlay-tx", move || tx.run())?;
        datapath.spawn("overlay-rx", move || rx.run())?;
        tracing::info!(
            iface = %datapath.iface,
            listen = %datapath.local_addr,
            mtu = config.mtu,
            "data path started"
        );
        Ok(datapath)
    }

    fn spawn(
        &mut self,
        thread: &'static str,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), DatapathError> {
        let handle = std::thread::Builder::new()
            .name(thread.to_owned())
            .spawn(f)
            .map_err(|error| DatapathError::Spawn { thread, error })?;
        self.threads.push(handle);
        Ok(())
    }

    /// Replaces the forwarding table (atomically; the threads pick it up on their next packet).
    pub fn set_table(&self, table: ForwardingTable) {
        self.table.store(Arc::new(table));
    }

    /// The forwarding table in use.
    pub fn table(&self) -> Arc<ForwardingTable> {
        self.table.load_full()
    }

    /// Current counters.
    pub fn counters(&self) -> CountersSnapshot {
        let mut sum = CountersSnapshot::default();
        for c in &self.counters {
            c.add_to(&mut sum);
        }
        sum
    }

    /// The TUN device name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The address the UDP socket is bound to (with the actual port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the threads and closes the device and socket (within a second).
    pub fn shutdown(self) {
        drop(self);
    }

    fn stop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.shutdown.trigger();
        for handle in self.threads.drain(..) {
            if handle.join().is_err() {
                tracing::error!(iface = %self.iface, "a data-path thread panicked");
            }
        }
        tracing::info!(iface = %self.iface, "data path stopped");
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        // The threads own the only references to the TUN fd and the socket: once they are
        // joined, both are closed (and the TUN device is gone).
        self.stop();
    }
}

/// Logs the first I/O error a packet thread meets; later ones are only counted, so a
/// persistent failure cannot flood the log from the per-packet path.
#[derive(Debug, Default)]
pub(crate) struct FirstError {
    seen: bool,
}

impl FirstError {
    #[cold]
    pub(crate) fn log(&mut self, thread: &str, what: &str, error: &io::Error) {
        if !self.seen {
            self.seen = true;
            tracing::warn!(thread, %error, "{what} failed (further errors are only counted)");
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util;
