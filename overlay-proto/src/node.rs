//! The control-plane state machine of one agent (being written; the API is fixed).

use crate::forwarding::ForwardingTable;
use crate::message::{Hello, Message};
use crate::peer::PeerName;
use crate::routing::Routes;
use crate::topology::{Claim, Topology};
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
    /// First delay before redialing a target that failed.
    pub dial_backoff_initial: Duration,
    /// Longest delay between dials of a target.
    pub dial_backoff_max: Duration,
    /// How long a node with seeds but no persisted claim waits for the topology before claiming.
    pub claim_wait: Duration,
    /// How long a peer must be unreachable before its block may be taken over.
    pub reclaim_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_interval: Duration::from_secs(1),
            dead_after: Duration::from_secs(5),
            full_gossip_interval: Duration::from_secs(30),
            dial_backoff_initial: Duration::from_secs(1),
            dial_backoff_max: Duration::from_secs(30),
            claim_wait: Duration::from_secs(3),
            reclaim_after: Duration::from_secs(24 * 3600),
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
    /// the remote uses another cluster range or block size
    #[error("{0}")]
    ClusterMismatch(String),
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
    /// the peer sent something invalid
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// What the I/O shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a control connection; report [`Node::handle_connection_up`] or
    /// [`Node::handle_dial_failed`] for this address.
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

/// The control-plane state machine of one agent.
#[derive(Debug)]
pub struct Node {
    _config: NodeConfig,
}

#[allow(unused_variables)]
impl Node {
    /// A node that has just started.
    pub fn new(config: NodeConfig, now: Instant) -> Node {
        unimplemented!("being written")
    }

    /// The hello this node sends first on every connection.
    pub fn hello(&self) -> Hello {
        unimplemented!("being written")
    }

    /// This node's name.
    pub fn name(&self) -> &PeerName {
        &self._config.name
    }

    /// A handshake completed: `hello` is the remote's, the version was negotiated already.
    ///
    /// `dialed` is the target address when this node dialed. On `Err` the shell closes the
    /// connection without reporting it closed.
    pub fn handle_connection_up(
        &mut self,
        conn: ConnId,
        direction: Direction,
        dialed: Option<SocketAddr>,
        remote: SocketAddr,
        hello: &Hello,
        now: Instant,
    ) -> Result<(), Refusal> {
        unimplemented!("being written")
    }

    /// A dial (or its handshake) failed.
    pub fn handle_dial_failed(&mut self, addr: SocketAddr, error: String, now: Instant) {
        unimplemented!("being written")
    }

    /// An accepted connection closed (error or EOF).
    pub fn handle_connection_closed(&mut self, conn: ConnId, now: Instant) {
        unimplemented!("being written")
    }

    /// A message arrived on an accepted connection.
    pub fn handle_message(&mut self, conn: ConnId, msg: Message, now: Instant) {
        unimplemented!("being written")
    }

    /// Time passed; call at [`Node::poll_timeout`] (calling earlier is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        unimplemented!("being written")
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        unimplemented!("being written")
    }

    /// The next thing to do; call until `None` after every `handle_*`.
    pub fn poll_output(&mut self) -> Option<Output> {
        unimplemented!("being written")
    }

    /// Adds an address to dial (e.g. from the control API).
    pub fn add_target(&mut self, addr: SocketAddr, now: Instant) {
        unimplemented!("being written")
    }

    /// Shut down on purpose: tell every neighbour, then close every connection.
    pub fn leave(&mut self, now: Instant) {
        unimplemented!("being written")
    }

    /// The merged topology (this node's own record included).
    pub fn topology(&self) -> &Topology {
        unimplemented!("being written")
    }

    /// Current routes.
    pub fn routes(&self) -> &Routes {
        unimplemented!("being written")
    }

    /// The block this node owns now (its claim, when it wins).
    pub fn claim(&self) -> Option<Claim> {
        unimplemented!("being written")
    }

    /// The forwarding table for the data path.
    pub fn forwarding_table(&self) -> ForwardingTable {
        unimplemented!("being written")
    }

    /// Established connections.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        unimplemented!("being written")
    }

    /// Dial targets.
    pub fn targets(&self) -> Vec<TargetInfo> {
        unimplemented!("being written")
    }
}
