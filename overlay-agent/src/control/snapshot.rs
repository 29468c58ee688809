//! The [`Status`] of a node, built from its state.

use crate::datapath::{CountersSnapshot, Offloads, PeerCounters};
use crate::status::{
    instance_hex, ConnectionStatus, ControlTraffic, Direction, PeerStatus, Status, TargetState,
    TargetStatus,
};
use ipnet::Ipv4Net;
use overlay_proto::ipam::{block_owners, node_address};
use overlay_proto::node::{self, Node};
use overlay_proto::PeerName;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// What the node does not know itself.
#[derive(Debug, Clone)]
pub struct Extra {
    /// `/readyz`.
    pub ready: bool,
    /// The overlay MTU.
    pub mtu: u32,
    /// The TUN device.
    pub iface: String,
    /// Accepted connections closed at once.
    pub rejected_connections: u64,
    /// Data-path counters.
    pub datapath: CountersSnapshot,
    /// Offloads the data path uses.
    pub offloads: Offloads,
    /// Gossip bytes and connection terminations.
    pub control_traffic: ControlTraffic,
    /// Authenticated membership, with `--secret-file`.
    pub auth: Option<crate::auth::AuthStatus>,
    /// The peer's public key (hex) of each authenticated connection.
    pub identities: std::collections::HashMap<overlay_proto::node::ConnId, String>,
    /// With `--encrypt`: the suite, the peers a data key is held for and the identity key
    /// mismatches.
    pub encryption: Option<(
        overlay_proto::seal::Suite,
        BTreeSet<overlay_proto::peer::PeerId>,
        u64,
    )>,
}

/// The status of `node` at `now`.
pub fn status(node: &Node, extra: Extra, now: Instant) -> Status {
    let me = node.name();
    let hello = node.hello();
    let owned: BTreeMap<PeerName, Ipv4Net> = block_owners(node.topology())
        .into_iter()
        .map(|(block, (owner, _))| (owner, block))
        .collect();
    let connections = node.connections();
    let connected: BTreeSet<&PeerName> = connections.iter().map(|c| &c.peer).collect();
    let routes = node.routes();
    let peers = node
        .topology()
        .iter()
        .filter(|r| r.name != *me)
        .map(|r| {
            let route = routes.get(&r.name);
            let traffic = extra
                .datapath
                .peers
                .binary_search_by_key(&r.name.id(), |p| p.peer)
                .map_or_else(
                    |_| PeerCounters::default(),
                    |i| extra.datapath.peers[i].clone(),
                );
            PeerStatus {
                name: r.name.to_string(),
                address: r.advertise,
                subnet: owned.get(&r.name).copied(),
                reachable: route.is_some(),
                next_hop: route.map(|route| route.next_hop.to_string()),
                hops: route.map_or(0, |route| route.hops),
                connected: connected.contains(&r.name),
                left: r.left,
                instance: instance_hex(r.instance),
                tx_packets: traffic.tx_packets,
                tx_bytes: traffic.tx_bytes,
                rx_packets: traffic.rx_packets,
                rx_bytes: traffic.rx_bytes,
                data_key: extra
                    .encryption
                    .as_ref()
                    .map(|(_, keyed, _)| keyed.contains(&r.name.id())),
            }
        })
        .collect();
    let subnet = node.claim().map(|c| c.block);
    Status {
        name: me.to_string(),
        instance: instance_hex(hello.body.instance),
        ready: extra.ready,
        cluster: hello.body.cluster,
        subnet,
        address: subnet.map(node_address),
        advertise: hello.body.advertise,
        mtu: extra.mtu,
        iface: extra.iface,
        peers,
        connections: connections
            .iter()
            .map(|c| ConnectionStatus {
                peer: c.peer.to_string(),
                direction: match c.direction {
                    node::Direction::Outbound => Direction::Outbound,
                    node::Direction::Inbound => Direction::Inbound,
                },
                remote: c.remote,
                rtt_ms: c.rtt.map(|d| d.as_secs_f64() * 1000.0),
                established_secs: now.saturating_duration_since(c.since).as_secs(),
                identity: extra.identities.get(&c.conn).cloned(),
            })
            .collect(),
        targets: node
            .targets()
            .into_iter()
            .map(|t| {
                let (state, peer, retry_in_secs) = match t.state {
                    node::TargetState::Waiting { retry_at } => (
                        TargetState::Waiting,
                        None,
                        Some(retry_at.saturating_duration_since(now).as_secs_f64().ceil() as u64),
                    ),
                    node::TargetState::Dialing => (TargetState::Dialing, None, None),
                    node::TargetState::Connected(p) => {
                        (TargetState::Connected, Some(p.to_string()), None)
                    }
                    node::TargetState::IsSelf => (TargetState::IsSelf, None, None),
                };
                TargetStatus {
                    address: t.addr,
                    seed: t.seed,
                    state,
                    peer,
                    failures: t.failures,
                    last_error: t.last_error,
                    retry_in_secs,
                }
            })
            .collect(),
        rejected_connections: extra.rejected_connections,
        control: node.stats().clone(),
        control_traffic: extra.control_traffic,
        auth: extra.auth,
        encryption: extra.encryption.as_ref().map(|(suite, keyed, mismatches)| {
            crate::status::EncryptionStatus {
                suite: suite.name().to_owned(),
                peers_with_key: keyed.len(),
                identity_mismatches: *mismatches,
            }
        }),
        offloads: extra.offloads,
        datapath: extra.datapath,
    }
}
