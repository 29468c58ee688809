//! The data path: a TUN device, a UDP socket and one run-to-completion packet thread that
//! moves both directions (see `worker` for why one thread and not one per direction).
//!
//! ```text
//!  kernel route ─▶ TUN ──read──▶ [tx: parse inner IPv4, look up, split into datagrams] ──sendmsg (GSO)──▶ next hop
//!  next hop ──recvmsg (GRO)──▶ [rx: check sender + headers] ─┬─ for me: check, coalesce ──write──▶ TUN
//!                                                            └─ for another peer: hop limit − 1 ──sendmsg (GSO)──▶ next hop
//! ```
//!
//! # The fast path
//! A userspace tunnel is only fast if 64 KiB super-packets stay whole as far as possible
//! (see `docs/measurements.md`): the number of kernel crossings per byte is what counts. So:
//! - **TUN offloads**: the TUN is opened with `IFF_VNET_HDR` and `TUNSETOFFLOAD` (checksum,
//!   TSO4/6, ECN, and USO4/6 where the kernel has them). A read returns up to 64 KiB of one
//!   TCP (or UDP) flow with a virtio-net header; its checksum is left *partial*.
//! - **Split + UDP GSO**: the tx half looks the destination up once per super-packet,
//!   splits it ([`overlay_proto::segment::split`]) into MSS-sized datagrams, each with its own
//!   overlay header and inner IP/TCP header, laid out back to back, and hands them to the
//!   kernel in one `sendmsg` with `UDP_SEGMENT` (more than one when they exceed 64 KiB).
//!   Partial checksums are not computed: they travel as `FLAG_CSUM_PARTIAL`, the payload is
//!   protected by the outer UDP checksum.
//! - **UDP GRO**: one `recvmsg` returns a batch of datagrams of one sender; the sender is
//!   checked once per batch, each datagram's header and inner packet as before.
//! - **Coalescing**: consecutive segments of one flow are merged back into a super-packet
//!   ([`overlay_proto::coalesce::Coalescer`]) and written to the TUN once. A packet written
//!   alone carries a virtio header too (`NEEDS_CSUM` when its checksum is partial).
//! - Relayed datagrams keep their layout: consecutive ones for the same next hop go out in
//!   one GSO send.
//!
//! Per packet there is no allocation, no lock and no logging: each half of the thread owns
//! its preallocated buffers, reads the current [`ForwardingTable`] through its own
//! [`arc_swap::Cache`] (one pointer comparison unless the table changed), and counts into its
//! own block of relaxed atomics, once per super-packet or batch. Every dropped packet
//! increments exactly one [`DropCounters`] field. (The data-path threads can be recognised
//! with [`on_datapath_thread`], so a test can prove the zero-allocation claim.)
//!
//! Both fds are non-blocking; the thread only waits (`poll(2)` on both fds plus a shutdown
//! eventfd) when neither has anything to read, or when the socket buffer is full, so
//! [`Datapath::shutdown`] returns promptly whatever the thread is doing.
//!
//! # Switches
//! `OVERLAY_DATAPATH_DISABLE` (read by `overlay-agent run` into [`DatapathConfig::disabled`])
//! turns offloads off for measurement, as a comma-separated list of:
//! - `tun-offload`: a plain TUN, one packet per read and write (no super-packets, so no
//!   split and no coalescing either);
//! - `udp-gso`: one `sendmsg` per datagram;
//! - `udp-gro`: one datagram per `recvmsg`;
//! - `coalesce`: one TUN write per received packet.
//!
//! An unknown name stops the agent at startup. Every combination carries traffic correctly,
//! and peers with different switches interoperate. What a running data path ended up using
//! (the kernel may refuse USO, GRO or GSO) is [`Datapath::offloads`].
//!
//! # Layout
//! Every per-packet decision (encap, decap, the relay rule, the inner-IPv4 checks, why a
//! packet is dropped) is a pure function of [`overlay_proto::dataplane`]; this module is the
//! I/O shell around them: syscalls, threads, buffers and counters.
//! - `tun`: the TUN device and its ioctls.
//! - `udp`: the UDP socket, its options, GSO sends and GRO receives.
//! - `wake`: waiting for readiness or shutdown.
//! - `tx`: TUN → UDP, the tx half of the thread (the I/O around
//!   [`overlay_proto::dataplane::encap`]).
//! - `rx`: UDP → TUN or relay, the rx half (the I/O around
//!   [`overlay_proto::dataplane::decap`]).
//! - `worker`: the packet thread alternating between the two halves.
//! - `counters`, `peers`: per-direction counters, per-peer tables and their sum.
//! - `offloads`: the switches and what is in use.
//! - `keys`: with `--encrypt`, the published data keys and the halves' sealers and openers.
//! - `trace_port`: the cold branch handing trace datagrams to [`crate::trace`].

mod counters;
mod keys;
mod offloads;
mod peers;
mod rx;
mod trace_port;
mod tun;
mod tx;
mod udp;
mod wake;
mod worker;

pub use counters::{CountersSnapshot, DropCounters, PeerCounters};
pub use keys::{Encryption, KeyTable, PeerKey};
pub use offloads::{Disabled, Offloads, UnknownSwitch, DISABLE_ENV};
pub use trace_port::{TracePort, TraceSender};

use arc_swap::ArcSwap;
use counters::{Counters, Direction};
use overlay_proto::coalesce::CoalesceConfig;
use overlay_proto::forwarding::ForwardingTable;
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use trace_port::TraceQueue;
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
    /// Offloads switched off (see the module docs; default: none).
    pub disabled: Disabled,
}

thread_local! {
    /// Set once at the start of each packet thread. Const-initialised and without a
    /// destructor, so reading it never allocates.
    static DATAPATH_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// True on a data-path packet thread. It never allocates, so a counting global allocator can
/// call it to attribute allocations to the data path (see `tests/zero_alloc.rs`).
#[inline]
pub fn on_datapath_thread() -> bool {
    DATAPATH_THREAD.try_with(Cell::get).unwrap_or(false)
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
    /// Offloads in use at start (`udp_gso` is read live from `udp`).
    offloads: Offloads,
    udp: Arc<udp::Udp>,
    /// Trace datagrams from the rx half (counts), and the port until it is taken.
    trace: Arc<TraceQueue>,
    trace_port: Mutex<Option<TracePort>>,
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
    /// An interface of that name exists and is not a single-queue TUN device.
    #[error("an interface named {iface} exists and is not a TUN device this agent can use (a TAP, a multi-queue TUN or another kind of device); delete it or choose another --iface")]
    TunNotTun {
        /// The device name.
        iface: String,
    },
    /// The TUN device is attached to another process.
    #[error(
        "TUN device {iface} is in use by another process (is another agent running on this node?)"
    )]
    TunBusy {
        /// The device name.
        iface: String,
    },
    /// `TUNSETIFF` failed (e.g. no permission).
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

impl Datapath {
    /// Opens the TUN device `config.iface` and binds the UDP socket, then starts the threads.
    ///
    /// The TUN device and socket are created in the network namespace of the calling thread;
    /// a persistent TUN device of that name left by an earlier run is re-attached (it keeps
    /// its address and routes). The device gets `config.mtu` and a raised txqueuelen; bring
    /// it up and address it with [`crate::netlink::configure_tun`] (idempotent).
    pub fn start(
        config: DatapathConfig,
        table: ForwardingTable,
    ) -> Result<Datapath, DatapathError> {
        Datapath::start_with(config, table, None)
    }

    /// [`Datapath::start`], sealing every data datagram with `encryption` (`--encrypt`):
    /// the tx half seals after splitting, the rx half opens what is addressed to this
    /// node and drops what is not sealed (see [`keys`] and
    /// [`overlay_proto::dataplane::decap::decap_datagram`]).
    pub fn start_with(
        config: DatapathConfig,
        table: ForwardingTable,
        encryption: Option<Encryption>,
    ) -> Result<Datapath, DatapathError> {
        let disabled = config.disabled;
        let udp = Arc::new(udp::Udp::bind(config.listen, &disabled)?);
        let local_addr = udp
            .local_addr()
            .map_err(|error| DatapathError::SocketOption {
                addr: config.listen,
                option: "getsockname",
                error,
            })?;
        let tun = Arc::new(tun::Tun::create(
            &config.iface,
            config.mtu,
            disabled.tun_offload,
        )?);
        let features = tun.features();
        let reattached = tun.reattached();
        let coalesce = CoalesceConfig {
            tcp: features.tso && !disabled.coalesce,
            udp: features.uso && !disabled.coalesce,
        };
        let offloads = Offloads {
            tun_vnet_hdr: features.vnet_hdr,
            tun_tso: features.tso,
            tun_uso: features.uso,
            udp_gso: udp.gso(),
            udp_gro: udp.gro(),
            coalesce_tcp: coalesce.tcp,
            coalesce_udp: coalesce.udp,
        };
        let shutdown = Arc::new(Shutdown::new().map_err(|error| DatapathError::Eventfd { error })?);
        let table = Arc::new(ArcSwap::from_pointee(table));
        let counters = [
            Arc::new(Counters::new(Direction::Tx)),
            Arc::new(Counters::new(Direction::Rx)),
        ];
        let (trace, trace_rx) = TraceQueue::new();
        let trace = Arc::new(trace);
        let trace_port = TracePort {
            udp: udp.clone(),
            table: table.clone(),
            rx: trace_rx,
        };
        let mut datapath = Datapath {
            trace: trace.clone(),
            trace_port: Mutex::new(Some(trace_port)),
            table: table.clone(),
            counters: counters.clone(),
            shutdown: shutdown.clone(),
            threads: Vec::with_capacity(1),
            iface: tun.name().to_owned(),
            local_addr,
            offloads,
            udp: udp.clone(),
        };
        let rx_io = rx::RxIo {
            tun: tun.clone(),
            udp: udp.clone(),
            counters: counters[1].clone(),
            shutdown: shutdown.clone(),
            coalesce,
            trace,
        };
        let tx_counters = counters[0].clone();
        let keys = encryption.clone();
        // The halves are built on the packet thread: it allocates its own buffers.
        // On error `datapath` is dropped (nothing is running yet).
        datapath.spawn("overlay-dp", move || {
            let rx = rx::Rx::new(rx_io, &table, keys.as_ref());
            let tx = tx::Tx::new(
                tun,
                udp,
                &table,
                tx_counters,
                shutdown.clone(),
                keys.as_ref(),
            );
            worker::run(rx, tx, &shutdown)
        })?;
        tracing::info!(
            iface = %datapath.iface,
            listen = %datapath.local_addr,
            mtu = config.mtu,
            ?offloads,
            disabled = %disabled,
            encrypt = encryption.as_ref().map(|e| e.suite.name()),
            reattached,
            "data path started{}",
            if reattached { " (on the TUN device left by the previous run)" } else { "" }
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
            .spawn(move || {
                DATAPATH_THREAD.with(|on| on.set(true));
                f()
            })
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
        (sum.trace_datagrams, sum.trace_dropped) = self.trace.counts();
        sum
    }

    /// The trace datagrams received and the means to answer them, for [`crate::trace`];
    /// `None` after the first call. Until it is taken (or once it is dropped) trace datagrams
    /// are counted as dropped.
    pub fn take_trace_port(&self) -> Option<TracePort> {
        self.trace_port
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The offloads in use (what was asked for, as far as the kernel accepted it).
    pub fn offloads(&self) -> Offloads {
        Offloads {
            udp_gso: self.udp.gso(),
            ..self.offloads
        }
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

/// Deletes the persistent TUN device `iface` of the calling thread's namespace (with its
/// address and routes); `Ok(false)` when there is none. Refuses a device in use and an
/// interface that is not a TUN (see `overlay-agent reset`).
pub fn remove_device(iface: &str) -> Result<bool, DatapathError> {
    tun::remove(iface).map(|r| r == tun::Removed::Deleted)
}

impl Drop for Datapath {
    fn drop(&mut self) {
        // The threads own the only references to the TUN fd: once they are joined, it is
        // closed (the persistent TUN device stays, see `tun`). The socket closes when `self.udp` is dropped
        // right after.
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
