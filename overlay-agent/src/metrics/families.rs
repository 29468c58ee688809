//! The metric families, encoded from one [`Snapshot`] into a fresh registry per scrape.
//!
//! Names carry the `overlay_` prefix and their unit; counters end in `_total` (added by the
//! encoder). Every family is emitted on every scrape, even at zero, so that dashboards and
//! `rate()` see a series from the start; per-peer families have one series per peer in the
//! topology.

use crate::datapath::CountersSnapshot;
use crate::status::{Status, TargetState};
use overlay_proto::message::{PROTOCOL_MAX, PROTOCOL_MIN};
use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry, Unit};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

/// Everything one scrape shows.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The node's status (control plane and data-path counters).
    pub status: Status,
    /// Pod addresses of the node's block.
    pub ipam: IpamUsage,
}

/// Pod addresses of the node's block (both zero while the node holds no block).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpamUsage {
    /// Addresses handed out to pods.
    pub allocated: u64,
    /// Addresses that can be handed out: the block less its network, broadcast and node
    /// addresses (253 for a /24).
    pub capacity: u64,
}

/// A label set: (name, value) pairs.
type Labels = Vec<(&'static str, String)>;

/// The OpenMetrics text of `s` (ending in `# EOF`).
pub fn encode(s: &Snapshot) -> Result<String, std::fmt::Error> {
    let mut r = Registry::with_prefix("overlay");
    build(&mut r, &s.status);
    connections(&mut r, &s.status);
    peers(&mut r, &s.status);
    datapath(&mut r, &s.status.datapath);
    gossip(&mut r, &s.status);
    ipam(&mut r, s.ipam);
    let mut out = String::new();
    text::encode(&mut out, &r)?;
    Ok(out)
}

fn build(r: &mut Registry, s: &Status) {
    let info = Info::new(vec![
        ("version", env!("CARGO_PKG_VERSION").to_owned()),
        ("protocol_min", PROTOCOL_MIN.to_string()),
        ("protocol_max", PROTOCOL_MAX.to_string()),
    ]);
    r.register("build", "Agent version and control-protocol range", info);
    gauge(
        r,
        "ready",
        "1 once the node holds a block and the data path is up (as /readyz)",
        None,
        i64::from(s.ready),
    );
}

fn connections(r: &mut Registry, s: &Status) {
    let targets = |pred: &dyn Fn(TargetState, u32) -> bool| {
        s.targets
            .iter()
            .filter(|t| pred(t.state, t.failures))
            .count() as i64
    };
    let states = [
        ("established", s.connections.len() as i64),
        ("dialing", targets(&|st, _| st == TargetState::Dialing)),
        (
            "waiting",
            targets(&|st, f| st == TargetState::Waiting && f == 0),
        ),
        (
            "failed",
            targets(&|st, f| st == TargetState::Waiting && f > 0),
        ),
    ];
    gauges(
        r,
        "connections",
        "Control connections by state: established (up), dialing, waiting (target not dialed yet), failed (target waiting to retry after failed attempts)",
        None,
        states
            .into_iter()
            .map(|(state, n)| (vec![("state", state.to_owned())], n)),
    );
    counter(
        r,
        "connection_terminations",
        "Established control connections that closed",
        None,
        s.control_traffic.terminations,
    );
    counter(
        r,
        "connections_rejected",
        "Accepted TCP connections closed at once because too many were in handshake",
        None,
        s.rejected_connections,
    );
    counter(
        r,
        "handshakes_refused",
        "Handshakes refused (self, duplicate, other cluster)",
        None,
        s.control.refused,
    );
    counters(
        r,
        "control_handshakes_refused",
        "Inbound control handshakes refused by the agent: bad_secret (no accepted cluster secret), timeout, rate_limited (per source address), malformed, version",
        None,
        s.control_traffic
            .handshakes_refused
            .by_reason()
            .into_iter()
            .map(|(reason, n)| (vec![("reason", reason.to_owned())], n)),
    );
    counter(
        r,
        "heartbeat_timeouts",
        "Connections closed because the peer went silent",
        None,
        s.control.heartbeat_timeouts,
    );
}

fn peers(r: &mut Registry, s: &Status) {
    let peer = |name: &str| vec![("peer", label(name))];
    let rtt: BTreeMap<&str, f64> = s
        .connections
        .iter()
        .filter_map(|c| Some((c.peer.as_str(), c.rtt_ms? / 1000.0)))
        .collect();
    let each = |f: &dyn Fn(&crate::status::PeerStatus) -> u64| {
        s.peers
            .iter()
            .map(|p| (peer(&p.name), f(p)))
            .collect::<Vec<_>>()
    };
    counters(
        r,
        "peer_sent_packets",
        "Inner packets sent to the peer (as their destination)",
        None,
        each(&|p| p.tx_packets),
    );
    counters(
        r,
        "peer_sent",
        "Inner bytes sent to the peer",
        Some(Unit::Bytes),
        each(&|p| p.tx_bytes),
    );
    counters(
        r,
        "peer_received_packets",
        "Inner packets received from the peer (as their origin) for this node",
        None,
        each(&|p| p.rx_packets),
    );
    counters(
        r,
        "peer_received",
        "Inner bytes received from the peer",
        Some(Unit::Bytes),
        each(&|p| p.rx_bytes),
    );
    gauges(
        r,
        "peer_reachable",
        "1 if a path of established connections leads to the peer",
        None,
        each(&|p| u64::from(p.reachable))
            .into_iter()
            .map(|(l, v)| (l, v as i64)),
    );
    gauges(
        r,
        "peer_connected",
        "1 if this node has a control connection with the peer",
        None,
        each(&|p| u64::from(p.connected))
            .into_iter()
            .map(|(l, v)| (l, v as i64)),
    );
    gauges(
        r,
        "peer_hops",
        "Overlay hops to the peer (1 when direct, 0 when unreachable)",
        None,
        each(&|p| u64::from(p.hops))
            .into_iter()
            .map(|(l, v)| (l, v as i64)),
    );
    gauges(
        r,
        "peer_next_hop",
        "1 for the neighbour that packets to the peer leave through (reachable peers only)",
        None,
        s.peers.iter().filter_map(|p| {
            let hop = p.next_hop.as_deref().filter(|_| p.reachable)?;
            Some((vec![("peer", label(&p.name)), ("next_hop", label(hop))], 1))
        }),
    );
    gauges(
        r,
        "peer_path_mtu",
        "Largest inner packet sent towards the peer: the overlay MTU (reachable peers only)",
        Some(Unit::Bytes),
        s.peers
            .iter()
            .filter(|p| p.reachable)
            .map(|p| (peer(&p.name), i64::from(s.mtu))),
    );
    let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for (name, secs) in &rtt {
        f.get_or_create(&peer(name)).set(*secs);
    }
    register(
        r,
        "peer_rtt",
        "Last heartbeat round trip on the direct control connection with the peer",
        Some(Unit::Seconds),
        f,
    );
}

fn datapath(r: &mut Registry, d: &CountersSnapshot) {
    let totals: [(&str, Option<Unit>, u64, &str); 10] = [
        ("datapath_sent_packets", None, d.tx_packets, "Inner packets read from the TUN and sent to peers (a super-packet counts as its segments)"),
        ("datapath_sent", Some(Unit::Bytes), d.tx_bytes, "Inner bytes sent to peers"),
        ("datapath_received_packets", None, d.rx_packets, "Inner packets received from peers for this node and written to the TUN"),
        ("datapath_received", Some(Unit::Bytes), d.rx_bytes, "Inner bytes received from peers for this node"),
        ("datapath_relayed_packets", None, d.relayed_packets, "Datagrams forwarded for other peers"),
        ("datapath_super_packets", None, d.tx_super_packets, "Super-packets (TSO/USO) read from the TUN and split"),
        ("datapath_gso_sends", None, d.gso_sends, "UDP sends that carried several datagrams (GSO)"),
        ("datapath_gro_batches", None, d.gro_batches, "UDP receives that returned several datagrams (GRO)"),
        ("datapath_tun_writes", None, d.rx_tun_writes, "Writes to the TUN (one packet or one coalesced super-packet each)"),
        ("datapath_coalesced_writes", None, d.rx_coalesced_frames, "Writes to the TUN that carried a coalesced super-packet"),
    ];
    for (name, unit, value, help) in totals {
        counter(r, name, help, unit, value);
    }
    counters(
        r,
        "datapath_drops",
        "Packets or datagrams the data path dropped, by reason",
        None,
        d.drops
            .by_reason()
            .into_iter()
            .map(|(reason, n)| (vec![("reason", reason.to_owned())], n)),
    );
}

fn gossip(r: &mut Registry, s: &Status) {
    let direction = |sent: u64, received: u64| {
        [("sent", sent), ("received", received)]
            .into_iter()
            .map(|(d, n)| (vec![("direction", d.to_owned())], n))
    };
    counters(
        r,
        "gossip_messages",
        "Gossip messages (topology records) sent to and received from neighbours",
        None,
        direction(s.control.gossip_sent, s.control.gossip_received),
    );
    counters(
        r,
        "gossip",
        "Bytes of gossip frames on the control connections (length prefix included)",
        Some(Unit::Bytes),
        direction(
            s.control_traffic.gossip_sent_bytes,
            s.control_traffic.gossip_received_bytes,
        ),
    );
    counter(
        r,
        "gossip_records_merged",
        "Received topology records that changed the topology",
        None,
        s.control.records_merged,
    );
    counter(
        r,
        "gossip_tree_grafts",
        "Records announced but not pushed in time, asked for (a broadcast tree link broke)",
        None,
        s.control.grafts_sent,
    );
    counter(
        r,
        "gossip_tree_prunes",
        "Pushes that brought nothing new, answered with a prune (a redundant tree link cut)",
        None,
        s.control.prunes_sent,
    );
    counter(
        r,
        "gossip_records_rejected",
        "Received topology records rejected by validation",
        None,
        s.control.records_rejected,
    );
    counter(
        r,
        "ipam_claim_conflicts",
        "Times this node had to pick another block because its claim lost",
        None,
        s.control.claim_conflicts,
    );
}

fn ipam(r: &mut Registry, u: IpamUsage) {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        r,
        "ipam_addresses_allocated",
        "Pod addresses handed out from this node's block",
        None,
        clamp(u.allocated),
    );
    gauge(
        r,
        "ipam_addresses_capacity",
        "Pod addresses this node's block can hand out: its size less the network, broadcast and node addresses (0 without a block)",
        None,
        clamp(u.capacity),
    );
}

/// A label value that cannot break the exposition format (the encoder does not escape).
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn register(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, metric: impl Metric) {
    match unit {
        Some(unit) => r.register_with_unit(name, help, unit, metric),
        None => r.register(name, help, metric),
    }
}

fn counter(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    register(r, name, help, unit, c);
}

fn counters(
    r: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    values: impl IntoIterator<Item = (Labels, u64)>,
) {
    let f = Family::<Labels, Counter>::default();
    for (labels, value) in values {
        f.get_or_create(&labels).inc_by(value);
    }
    register(r, name, help, unit, f);
}

fn gauge(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    register(r, name, help, unit, g);
}

fn gauges(
    r: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    values: impl IntoIterator<Item = (Labels, i64)>,
) {
    let f = Family::<Labels, Gauge>::default();
    for (labels, value) in values {
        f.get_or_create(&labels).set(value);
    }
    register(r, name, help, unit, f);
}
