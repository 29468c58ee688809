//! The data path (being written; the API is fixed).

use overlay_proto::forwarding::ForwardingTable;
use serde::Serialize;
use std::net::SocketAddr;

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

/// Data-path counters, summed over threads.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Packets read from the TUN and sent to a peer.
    pub tx_packets: u64,
    /// Bytes of those packets (inner).
    pub tx_bytes: u64,
    /// Packets received from peers and written to the TUN.
    pub rx_packets: u64,
    /// Bytes of those packets (inner).
    pub rx_bytes: u64,
    /// Datagrams forwarded for other peers.
    pub relayed_packets: u64,
    /// Drops by reason.
    pub drops: DropCounters,
}

/// Drops by reason.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DropCounters {
    /// Datagram from an address that is not a current peer.
    pub not_peer: u64,
    /// Datagram shorter than the overlay header or with a malformed inner packet.
    pub malformed: u64,
    /// Unknown overlay header version.
    pub bad_version: u64,
    /// Unknown overlay header kind.
    pub bad_kind: u64,
    /// Hop limit reached on a relay.
    pub hop_limit: u64,
    /// Inner source address outside the sending peer's block.
    pub spoofed: u64,
    /// No route to the destination peer or block (outbound or relay).
    pub no_route: u64,
    /// Destination outside the cluster range, or not an IPv4 packet.
    pub unsupported: u64,
    /// Delivered to this node but for an address outside its block.
    pub not_local: u64,
    /// Send or TUN write failed.
    pub io_error: u64,
}

/// A running data path: the TUN device, the UDP socket and their threads.
#[derive(Debug)]
pub struct Datapath {
    _private: (),
}

/// Why the data path could not start.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// placeholder while being written
    #[error("{0}")]
    Io(String),
}

impl Datapath {
    /// Opens the TUN device `config.iface` and binds the UDP socket, then starts the threads.
    ///
    /// The TUN device and socket are created in the network namespace of the calling thread.
    pub fn start(_config: DatapathConfig, _table: ForwardingTable) -> Result<Datapath, DatapathError> {
        Err(DatapathError::Io("being written".into()))
    }

    /// Replaces the forwarding table (atomically; the threads pick it up on their next packet).
    pub fn set_table(&self, _table: ForwardingTable) {}

    /// Current counters.
    pub fn counters(&self) -> CountersSnapshot {
        CountersSnapshot::default()
    }

    /// Stops the threads and closes the device and socket (within a second).
    pub fn shutdown(self) {}
}
