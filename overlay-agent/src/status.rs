//! What `GET /status` answers and `overlay-agent status` prints.
//!
//! The JSON keeps the contract's fields (`name`, `subnet`, `address`, `peers[]` with `name`,
//! `address`, `subnet`, `reachable`, `next_hop`, `hops`) and adds the node's connections, dial
//! targets and data-path counters. [`text`] renders it for a person, Weave style.
//!
//! The views of `GET /status/{peers,connections,routes,ipam}` are built from the same
//! [`Status`] (and, for ipam, the node's allocations): [`connections`], [`routes`], [`ipam`].

pub mod connections;
pub mod ipam;
pub mod routes;
mod text;

pub use text::{render, render_peers};

use crate::datapath::{CountersSnapshot, Offloads};
use ipnet::Ipv4Net;
use overlay_proto::node::NodeStats;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};

/// The state of one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// This peer's name.
    pub name: String,
    /// This run's random instance id (16 hex digits).
    pub instance: String,
    /// True once the node has a block and the data path is up (as `/readyz`).
    pub ready: bool,
    /// The overlay range.
    pub cluster: Ipv4Net,
    /// This node's block, once claimed.
    pub subnet: Option<Ipv4Net>,
    /// This node's overlay address (first host of its block).
    pub address: Option<Ipv4Addr>,
    /// The underlay address other peers dial.
    pub advertise: SocketAddr,
    /// The overlay MTU.
    pub mtu: u32,
    /// The TUN device.
    #[serde(default)]
    pub iface: String,
    /// Every other peer in the topology, by name.
    pub peers: Vec<PeerStatus>,
    /// Established control connections.
    pub connections: Vec<ConnectionStatus>,
    /// Addresses this node dials.
    pub targets: Vec<TargetStatus>,
    /// Accepted TCP connections closed at once because too many were still in handshake.
    pub rejected_connections: u64,
    /// Control-plane counters.
    #[serde(default)]
    pub control: NodeStats,
    /// Control-connection traffic counted by the agent (gossip bytes, terminations).
    #[serde(default)]
    pub control_traffic: ControlTraffic,
    /// Authenticated membership (`--secret-file`): this agent's public key and the
    /// fingerprints of the secrets it holds; absent without a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::auth::AuthStatus>,
    /// The sealed data path (`--encrypt`): the suite this node seals with; absent without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionStatus>,
    /// Offloads the data path uses.
    #[serde(default)]
    pub offloads: Offloads,
    /// Data-path counters (`tx_packets`, `rx_packets`, `drops`, ...).
    pub datapath: CountersSnapshot,
}

/// The sealed data path as `/status` shows it (`encryption`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionStatus {
    /// The AEAD this node seals with (`aes-256-gcm` or `chacha20-poly1305`).
    pub suite: String,
    /// Peers a data key is held for (see `peers[].data_key`).
    pub peers_with_key: usize,
    /// Times a peer's gossiped identity key disagreed with the one it proved in a handshake
    /// (the proven one is used; see `crate::control::keys`).
    #[serde(default)]
    pub identity_mismatches: u64,
}

/// What the agent counts on its control connections (the node counts messages, the agent
/// counts what they cost on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlTraffic {
    /// Bytes of gossip frames queued to peers (length prefix included).
    pub gossip_sent_bytes: u64,
    /// Bytes of gossip frames received from peers (length prefix included).
    pub gossip_received_bytes: u64,
    /// Established control connections that closed (by either side, for any reason).
    pub terminations: u64,
    /// Inbound control handshakes refused, by reason (see [`crate::auth`]).
    pub handshakes_refused: crate::auth::RefusalCounts,
}

/// Another peer as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its name.
    pub name: String,
    /// Its advertised underlay address.
    pub address: SocketAddr,
    /// The block it owns (its winning claim).
    pub subnet: Option<Ipv4Net>,
    /// True if a path of established connections leads to it.
    pub reachable: bool,
    /// The neighbour packets to it leave through (itself when direct).
    pub next_hop: Option<String>,
    /// Overlay hops to it (0 when unreachable).
    pub hops: u32,
    /// True if this node has a control connection with it.
    pub connected: bool,
    /// True if it announced it left.
    pub left: bool,
    /// Its instance id (16 hex digits).
    pub instance: String,
    /// Inner packets sent to it (as their destination).
    #[serde(default)]
    pub tx_packets: u64,
    /// Inner bytes sent to it.
    #[serde(default)]
    pub tx_bytes: u64,
    /// Inner packets received from it (as their origin).
    #[serde(default)]
    pub rx_packets: u64,
    /// Inner bytes received from it.
    #[serde(default)]
    pub rx_bytes: u64,
    /// With `--encrypt`: whether this node holds a data key for it (it knows the identity key
    /// of this run of it, proven in a handshake or gossiped); absent without `--encrypt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key: Option<bool>,
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// This node dialed.
    Outbound,
    /// The remote dialed.
    Inbound,
}

/// One established control connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    /// The remote peer.
    pub peer: String,
    /// Who dialed.
    pub direction: Direction,
    /// The remote TCP address.
    pub remote: SocketAddr,
    /// Last heartbeat round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Seconds since it was established.
    pub established_secs: u64,
    /// The peer's public key (hex), proven in the handshake (with `--secret-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// What is happening with a dial target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    /// Waiting for the next attempt.
    Waiting,
    /// A dial is under way.
    Dialing,
    /// Connected.
    Connected,
    /// The address is this node itself.
    #[serde(rename = "self")]
    IsSelf,
}

/// One address this node dials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// The address.
    pub address: SocketAddr,
    /// Given as a seed (rather than learnt by gossip).
    pub seed: bool,
    /// What is happening.
    pub state: TargetState,
    /// The peer there, when connected.
    pub peer: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// Seconds until the next attempt, when waiting.
    pub retry_in_secs: Option<u64>,
}

/// A 64-bit instance id as shown in status (fits JSON numbers of every parser).
pub fn instance_hex(instance: u64) -> String {
    format!("{instance:016x}")
}
