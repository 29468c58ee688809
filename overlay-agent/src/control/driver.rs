//! The task that owns the [`Node`]: feeds it events, time and commands, and carries out its
//! outputs. See the [module docs](super).

use super::conn::{ConnHandle, Event};
use super::handshake::{self, LocalHello};
use super::host::{Host, SetAddressError};
use super::keys::DataKeys;
use super::snapshot::{self, Extra};
use super::{Command, Readiness};
use crate::auth::{Auth, RateLimiter, RefusalReason, Refusals};
use crate::ipam_store::IpamStore;
use crate::state::StateDir;
use crate::status::ControlTraffic;
use overlay_proto::ipam::node_address;
use overlay_proto::message::Message;
use overlay_proto::node::{ConnId, Direction, Node, Output, Refusal};
use overlay_proto::topology::Claim;
use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

/// Most accepted connections still in handshake; more are closed at once.
pub const MAX_HANDSHAKES: usize = 64;
/// Capacity of the event channel from connection tasks (they wait when it is full).
const EVENT_QUEUE: usize = 1024;
/// Delay before retrying a failed TUN configuration.
const TUN_RETRY: Duration = Duration::from_secs(2);
/// Longest wait for one TUN configuration.
const TUN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the driver needs.
#[derive(Debug)]
pub struct DriverConfig<H> {
    /// The node, just created.
    pub node: Node,
    /// The machine side.
    pub host: Arc<H>,
    /// Where the claim is persisted.
    pub state: StateDir,
    /// Pod allocations (told about block changes).
    pub ipam: Arc<IpamStore>,
    /// Set once the node holds a block and the TUN carries its address.
    pub ready: Readiness,
    /// The overlay MTU (for status).
    pub mtu: u32,
    /// The bound TCP listener of the listen address.
    pub listener: TcpListener,
    /// Commands from the API.
    pub commands: mpsc::Receiver<Command>,
    /// Identity and cluster secrets, with `--secret-file` (every connection authenticated).
    pub auth: Option<Auth>,
    /// With `--encrypt` (which needs `auth`): the data keys, derived from the identity keys
    /// proven in handshakes or gossiped in the topology, and published to the data path.
    pub data_keys: Option<DataKeys>,
}

/// The control-plane driver; see the module docs.
#[derive(Debug)]
pub struct Driver<H> {
    node: Node,
    host: Arc<H>,
    state: StateDir,
    ipam: Arc<IpamStore>,
    ready: Readiness,
    mtu: u32,
    listener: Option<TcpListener>,
    commands: mpsc::Receiver<Command>,
    hello: Arc<LocalHello>,
    conns: HashMap<ConnId, ConnHandle>,
    next_conn: ConnId,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
    rejected: Arc<AtomicU64>,
    auth: Option<Auth>,
    data_keys: Option<DataKeys>,
    refusals: Arc<Refusals>,
    /// Gossip bytes and connection terminations (for status and metrics).
    traffic: ControlTraffic,
    /// Writers of closed connections still delivering their last frames.
    closing: Vec<JoinHandle<()>>,
    /// The address the TUN device should carry, and when to retry a failed configuration.
    tun_want: Option<Ipv4Addr>,
    tun_retry_at: Option<Instant>,
    leaving: bool,
}

impl<H: Host> Driver<H> {
    /// A driver for `config.node`.
    pub fn new(config: DriverConfig<H>) -> Self {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let hello = Arc::new(LocalHello::new(&config.node.hello()));
        Driver {
            node: config.node,
            host: config.host,
            state: config.state,
            ipam: config.ipam,
            ready: config.ready,
            mtu: config.mtu,
            listener: Some(config.listener),
            commands: config.commands,
            hello,
            conns: HashMap::new(),
            next_conn: 1,
            events_tx,
            events_rx,
            rejected: Arc::new(AtomicU64::new(0)),
            auth: config.auth,
            data_keys: config.data_keys,
            refusals: Arc::default(),
            traffic: ControlTraffic::default(),
            closing: Vec::new(),
            tun_want: None,
            tun_retry_at: None,
            leaving: false,
        }
    }

    /// Runs until `shutdown` completes, then leaves the cluster: tells every neighbour,
    /// delivers what is queued (up to a second) and closes every connection.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let acceptor = self.listener.take().map(|listener| {
            tokio::spawn(accept_loop(
                listener,
                Accepting {
                    hello: self.hello.clone(),
                    auth: self.auth.clone(),
                    rejected: self.rejected.clone(),
                    refusals: self.refusals.clone(),
                    events: self.events_tx.clone(),
                },
            ))
        });
        self.host.set_table(self.node.forwarding_table());
        self.drain().await;
        loop {
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            let timeout = self.node.poll_timeout();
            let wake = timeout.map_or(far, tokio::time::Instant::from_std);
            let tun_at = self
                .tun_retry_at
                .map_or(far, tokio::time::Instant::from_std);
            tokio::select! {
                _ = &mut shutdown => break,
                Some(cmd) = self.commands.recv() => self.handle_command(cmd),
                Some(event) = self.events_rx.recv() => self.handle_event(event),
                _ = tokio::time::sleep_until(wake), if timeout.is_some() => {
                    self.node.handle_timeout(Instant::now());
                }
                _ = tokio::time::sleep_until(tun_at), if self.tun_retry_at.is_some() => {
                    self.configure_tun().await;
                }
            }
            self.drain().await;
        }
        if let Some(acceptor) = acceptor {
            acceptor.abort();
        }
        self.leave().await;
    }

    async fn leave(mut self) {
        info!("leaving the cluster");
        // Not ready from the first moment of the stop: the data path goes next.
        self.ready.set(false);
        self.leaving = true;
        self.node.leave(Instant::now());
        self.drain().await;
        for (_, conn) in self.conns.drain() {
            self.closing.push(conn.close());
        }
        let closing = std::mem::take(&mut self.closing);
        let _ = tokio::time::timeout(
            super::conn::FLUSH_TIMEOUT,
            futures::future::join_all(closing),
        )
        .await;
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status(reply) => {
                let extra = Extra {
                    ready: self.ready.get(),
                    mtu: self.mtu,
                    iface: self.host.device(),
                    rejected_connections: self.rejected.load(Ordering::Relaxed),
                    datapath: self.host.counters(),
                    offloads: self.host.offloads(),
                    control_traffic: ControlTraffic {
                        handshakes_refused: self.refusals.snapshot(),
                        ..self.traffic.clone()
                    },
                    auth: self.auth.as_ref().map(Auth::status),
                    identities: self
                        .conns
                        .iter()
                        .filter_map(|(id, c)| Some((*id, crate::auth::secret::hex(&c.identity?))))
                        .collect(),
                    encryption: self.data_keys.as_ref().map(|k| {
                        let keyed = self
                            .node
                            .topology()
                            .iter()
                            .map(|r| r.name.id())
                            .filter(|p| k.has_key(*p))
                            .collect();
                        (k.suite(), keyed, k.identity_mismatches())
                    }),
                };
                let _ = reply.send(snapshot::status(&self.node, extra, Instant::now()));
            }
            Command::AddTarget(addr) => self.node.add_target(addr, Instant::now()),
            Command::RemoveTarget(addr) => self.node.remove_target(addr, Instant::now()),
        }
    }

    fn handle_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Handshaked {
                channel,
                direction,
                dialed,
                remote,
                hello,
                version,
            } => {
                let conn = self.next_conn;
                self.next_conn += 1;
                let peer = hello.body.name.clone();
                let identity = channel.remote_identity;
                let up = self
                    .node
                    .handle_connection_up(conn, direction, dialed, remote, &hello, now);
                // A duplicate (the connection of the other direction won) proved the key too,
                // but only adds one where none is held.
                match &up {
                    Ok(()) => self.key_peer(&hello.body.name, hello.body.instance, identity, true),
                    Err(Refusal::Duplicate(_)) => {
                        self.key_peer(&hello.body.name, hello.body.instance, identity, false);
                    }
                    Err(_) => {}
                }
                match up {
                    Ok(()) => {
                        info!(%peer, %remote, ?direction, conn, "connection established");
                        let handle = ConnHandle::spawn(
                            conn,
                            *channel,
                            version,
                            peer,
                            remote,
                            self.events_tx.clone(),
                        );
                        self.conns.insert(conn, handle);
                    }
                    Err(refusal @ (Refusal::SelfConnection | Refusal::Duplicate(_))) => {
                        debug!(%peer, %remote, "connection not kept: {refusal}");
                    }
                    Err(refusal) => warn!(%peer, %remote, "connection refused: {refusal}"),
                }
            }
            Event::DialFailed { addr, error } => {
                debug!(%addr, "dial failed: {error}");
                self.node.handle_dial_failed(addr, error.to_string(), now);
            }
            Event::Message { conn, msg, bytes } => {
                if self.conns.contains_key(&conn) {
                    if matches!(msg, Message::Gossip(_)) {
                        self.traffic.gossip_received_bytes += bytes as u64;
                    }
                    self.node.handle_message(conn, msg, now);
                }
            }
            Event::Closed { conn, reason } => {
                if let Some(handle) = self.conns.remove(&conn) {
                    info!(peer = %handle.peer, remote = %handle.remote, conn, "connection closed: {reason}");
                    self.traffic.terminations += 1;
                    handle.abort();
                    self.node.handle_connection_closed(conn, now);
                }
            }
        }
    }

    /// With `--encrypt`: derives the data key of `peer` (run `instance`) from the static key
    /// its handshake proved.
    fn key_peer(
        &mut self,
        peer: &overlay_proto::PeerName,
        instance: u64,
        identity: Option<[u8; 32]>,
        replace: bool,
    ) {
        let (Some(keys), Some(remote)) = (self.data_keys.as_mut(), identity) else {
            return;
        };
        if keys.handshaked(peer, instance, &remote, self.node.topology(), replace) {
            info!(%peer, instance = %crate::status::instance_hex(instance), "data key for the peer published");
        }
    }

    /// Carries out every pending output of the node.
    async fn drain(&mut self) {
        let mut routes_changed = false;
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Dial(addr) => self.dial(addr),
                Output::Send(conn, msg) => {
                    let Some(handle) = self.conns.get(&conn) else {
                        debug!(conn, "send on a connection that is gone");
                        continue;
                    };
                    match handle.send(&msg) {
                        Ok(bytes) => {
                            if matches!(msg, Message::Gossip(_)) {
                                self.traffic.gossip_sent_bytes += bytes as u64;
                            }
                        }
                        Err(reason) => {
                            if let Some(handle) = self.conns.remove(&conn) {
                                warn!(peer = %handle.peer, conn, "closing connection: {reason}");
                                self.traffic.terminations += 1;
                                handle.abort();
                                self.node.handle_connection_closed(conn, Instant::now());
                            }
                        }
                    }
                }
                Output::Close(conn, reason) => {
                    if let Some(handle) = self.conns.remove(&conn) {
                        info!(peer = %handle.peer, remote = %handle.remote, conn, "closing connection: {reason}");
                        self.traffic.terminations += 1;
                        self.closing.retain(|w| !w.is_finished());
                        self.closing.push(handle.close());
                    }
                }
                Output::RoutesChanged => routes_changed = true,
                Output::ClaimChanged(claim) => self.apply_claim(claim).await,
            }
        }
        if routes_changed {
            self.host.set_table(self.node.forwarding_table());
            // The topology changed: keys of peers gossiped, restarted or gone.
            if let Some(keys) = self.data_keys.as_mut() {
                if keys.sync(self.node.topology()) {
                    debug!("data keys updated from the topology");
                }
            }
        }
    }

    fn dial(&self, addr: SocketAddr) {
        let hello = self.hello.clone();
        let events = self.events_tx.clone();
        let auth = self.auth.clone();
        tokio::spawn(async move {
            let event = match handshake::dial(addr, &hello, auth.as_ref()).await {
                Ok((channel, remote_hello, version)) => {
                    debug!(%addr, version, "dialed");
                    Event::Handshaked {
                        channel: Box::new(channel),
                        direction: Direction::Outbound,
                        dialed: Some(addr),
                        remote: addr,
                        hello: Box::new(remote_hello),
                        version,
                    }
                }
                Err(e) => {
                    if matches!(
                        e.refusal(),
                        RefusalReason::Version | RefusalReason::BadSecret
                    ) {
                        warn!(%addr, "refusing peer: {e}");
                    }
                    Event::DialFailed { addr, error: e }
                }
            };
            let _ = events.send(event).await;
        });
    }

    /// Persists the claim, tells the allocator, readdresses the TUN device.
    async fn apply_claim(&mut self, claim: Option<Claim>) {
        if self.leaving {
            // A node that leaves keeps its block for when it comes back.
            return;
        }
        match claim {
            Some(c) => info!(subnet = %c.block, epoch = c.epoch, "this node owns its block"),
            None => warn!("this node owns no block"),
        }
        if let Err(e) = self.state.save_claim(claim.as_ref()) {
            error!("cannot persist the claim: {e}");
        }
        match self.ipam.set_block(claim.map(|c| c.block)) {
            Ok(0) => {}
            Ok(n) => warn!("the block changed: dropped {n} pod address allocations of the old one"),
            Err(e) => error!("cannot persist pod allocations: {e}"),
        }
        self.tun_want = claim.map(|c| node_address(c.block));
        self.configure_tun().await;
    }

    async fn configure_tun(&mut self) {
        let want = self.tun_want;
        let result = tokio::time::timeout(TUN_TIMEOUT, self.host.set_node_address(want))
            .await
            .unwrap_or(Err(SetAddressError::Timeout(TUN_TIMEOUT)));
        match result {
            Ok(()) => {
                self.tun_retry_at = None;
                self.ready.set(want.is_some());
            }
            Err(e) => {
                error!("cannot set the node address {want:?} on the TUN device: {e}; retrying");
                self.ready.set(false);
                self.tun_retry_at = Some(Instant::now() + TUN_RETRY);
            }
        }
    }
}

/// What the accepting task shares with the driver.
struct Accepting {
    hello: Arc<LocalHello>,
    auth: Option<Auth>,
    rejected: Arc<AtomicU64>,
    refusals: Arc<Refusals>,
    events: mpsc::Sender<Event>,
}

/// Accepts control connections; at most [`MAX_HANDSHAKES`] are in handshake at once and,
/// with a secret, each source address starts handshakes at a bounded rate.
async fn accept_loop(listener: TcpListener, a: Accepting) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut limiter = RateLimiter::default();
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("accepting a control connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if a.auth.is_some() && !limiter.allow(remote.ip(), Instant::now()) {
            let total = a.refusals.count(RefusalReason::RateLimited);
            if total.is_power_of_two() {
                warn!(%remote, total, "too many handshakes from this address: closing at once");
            }
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let total = a.rejected.fetch_add(1, Ordering::Relaxed) + 1;
            if total.is_power_of_two() {
                warn!(%remote, total, "too many connections in handshake: closing new ones at once");
            }
            continue;
        };
        let hello = a.hello.clone();
        let events = a.events.clone();
        let auth = a.auth.clone();
        let refusals = a.refusals.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            match handshake::exchange(stream, &hello, auth.as_ref(), false).await {
                Ok((channel, remote_hello, version)) => {
                    debug!(%remote, version, "accepted");
                    let event = Event::Handshaked {
                        channel: Box::new(channel),
                        direction: Direction::Inbound,
                        dialed: None,
                        remote,
                        hello: Box::new(remote_hello),
                        version,
                    };
                    let _ = events.send(event).await;
                }
                Err(e) => {
                    let reason = e.refusal();
                    let total = refusals.count(reason);
                    match reason {
                        RefusalReason::BadSecret | RefusalReason::Version => {
                            // One line per source would let a stranger fill the log.
                            if total.is_power_of_two() {
                                warn!(%remote, total, "refusing peer: {e}");
                            }
                        }
                        _ => debug!(%remote, "handshake failed: {e}"),
                    }
                }
            }
        });
    }
}
