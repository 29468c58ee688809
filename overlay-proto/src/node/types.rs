//! Configuration, inputs and outputs of the [`Node`](super::Node) state machine.

use crate::message::Message;
use crate::peer::PeerName;
use crate::topology::Claim;
use ipnet::Ipv4Net;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Identifies one control connection; chosen by the I/O shell, unique for the node's life.
pub type ConnId = u64;

/// Timers of the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// How often a heartbeat is sent on each connection.
    pub heartbeat_interval: Duration,
    /// A connection that received nothing for this long is closed as dead.
    pub dead_after: Duration,
    /// How often the whole topology is sent to every neighbour.
    pub full_gossip_interval: Duration,
    /// Changed records are batched for this long before they are sent, so a burst of
    /// changes costs one message per neighbour.
    pub gossip_delay: Duration,
    /// First delay before redialing a target that failed.
    pub dial_backoff_initial: Duration,
    /// Longest delay between dials of a target.
    pub dial_backoff_max: Duration,
    /// How long a node with seeds but no persisted claim waits for the topology before claiming.
    pub claim_wait: Duration,
    /// How long a peer must be unreachable before its block may be taken over.
    pub reclaim_after: Duration,
    /// Routes, reachability, the active view, claims and targets are recomputed from the
    /// topology at most once per this interval (the first change at once, the rest of a burst
    /// together at its end), like a link-state router's SPF hold-down: a burst of gossip costs
    /// one recomputation, not one per record.
    pub recompute_holddown: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_interval: Duration::from_secs(1),
            dead_after: Duration::from_secs(5),
            full_gossip_interval: Duration::from_secs(30),
            gossip_delay: Duration::from_millis(50),
            dial_backoff_initial: Duration::from_secs(1),
            dial_backoff_max: Duration::from_secs(30),
            claim_wait: Duration::from_secs(3),
            reclaim_after: Duration::from_secs(24 * 3600),
            recompute_holddown: Duration::from_millis(100),
        }
    }
}

/// What a node starts from.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This peer's name.
    pub name: PeerName,
    /// Random per start.
    pub instance: u64,
    /// The address other peers dial.
    pub advertise: SocketAddr,
    /// The overlay range.
    pub cluster: Ipv4Net,
    /// Block size each node claims.
    pub subnet_prefix: u8,
    /// Seed addresses to dial.
    pub seeds: Vec<SocketAddr>,
    /// The claim persisted by a previous run, asserted again at start.
    pub claim: Option<Claim>,
    /// Version of the first own record (e.g. the wall-clock milliseconds at start).
    pub initial_version: u64,
    /// Timers.
    pub timing: Timing,
    /// Seed of the node's random choices (jitter).
    pub rng_seed: u64,
    /// Size of the active view (see `node::view`).
    pub view: super::ActiveView,
    /// This node's static public identity key, gossiped in its record (`None` without one).
    pub identity: Option<[u8; 32]>,
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// This node dialed.
    Outbound,
    /// The remote dialed.
    Inbound,
}

/// Why a completed handshake is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// the connection leads back to this node
    #[error("connection to self")]
    SelfConnection,
    /// an existing connection to the same peer is kept instead
    #[error("duplicate connection to {0}")]
    Duplicate(PeerName),
    /// this node is leaving and accepts no connection
    #[error("this node is leaving")]
    Leaving,
    /// the remote uses another cluster range or block size
    #[error(
        "peer {peer} uses cluster {theirs} with /{their_prefix} blocks, this node {ours} with /{our_prefix}"
    )]
    ClusterMismatch {
        /// The remote's name.
        peer: PeerName,
        /// The remote's cluster range.
        theirs: Ipv4Net,
        /// The remote's block prefix length.
        their_prefix: u8,
        /// This node's cluster range.
        ours: Ipv4Net,
        /// This node's block prefix length.
        our_prefix: u8,
    },
    /// another instance of this node (another process with its name) answered
    #[error("peer at {remote} uses this node's name {name}")]
    NameClash {
        /// The remote's underlay address.
        remote: SocketAddr,
        /// The name both use.
        name: PeerName,
    },
}

/// Why the node closes a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// nothing received within the dead-after time
    #[error("no heartbeat for {0:?}")]
    Timeout(Duration),
    /// the peer said it is leaving
    #[error("peer left")]
    PeerLeft,
    /// this node is leaving
    #[error("leaving")]
    Leaving,
    /// replaced by another connection to the same peer
    #[error("replaced by a newer connection")]
    Replaced,
    /// neither side needs it (neither has the other in its active view, neither is joining)
    #[error("neither side needs this connection")]
    Unneeded,
    /// this node holds as many connections as it may; the peer was redirected
    #[error("no room for another connection (peer redirected)")]
    NoRoom,
}

/// What the I/O shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a control connection; report [`Node::handle_connection_up`](super::Node::handle_connection_up) or
    /// [`Node::handle_dial_failed`](super::Node::handle_dial_failed) for this address.
    Dial(SocketAddr),
    /// Send a message on a connection.
    Send(ConnId, Message),
    /// Close a connection; the node has forgotten it already (do not report it closed).
    Close(ConnId, CloseReason),
    /// The topology or routes changed: rebuild the forwarding table.
    RoutesChanged,
    /// The block this node owns changed (persist it, readdress the device).
    ClaimChanged(Option<Claim>),
}

/// One established connection, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The connection.
    pub conn: ConnId,
    /// The remote peer.
    pub peer: PeerName,
    /// Who dialed.
    pub direction: Direction,
    /// The remote TCP address.
    pub remote: SocketAddr,
    /// Last heartbeat round trip.
    pub rtt: Option<Duration>,
    /// When it was established.
    pub since: Instant,
}

/// State of a dial target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// Waiting until `retry_at` for the next attempt.
    Waiting {
        /// When the next dial is due.
        retry_at: Instant,
    },
    /// A dial is under way.
    Dialing,
    /// Connected to the peer at this address.
    Connected(PeerName),
    /// This address is the node itself; never dialed again.
    IsSelf,
}

/// One address the node dials, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// The address.
    pub addr: SocketAddr,
    /// Given as a seed (rather than learnt by gossip).
    pub seed: bool,
    /// Current state.
    pub state: TargetState,
    /// Failed attempts in a row.
    pub failures: u32,
    /// The last failure.
    pub last_error: Option<String>,
}
