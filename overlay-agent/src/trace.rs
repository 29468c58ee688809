//! Life of a packet: `overlay-agent trace <overlay-ip>` and `POST /trace`.
//!
//! The origin agent looks the destination up like a packet from its kernel would be: the
//! kernel route (`RTM_GETROUTE`, fib match) and its device, then the forwarding table (owner
//! of the block, next hop, its underlay address) — that is hop 0. It then sends a *probe*
//! (overlay header kind `TraceProbe`, payload [`overlay_proto::trace::Probe`] with a random
//! nonce) to the next hop on the data path's own UDP socket, exactly where a packet would go.
//!
//! Every agent the probe reaches hands it from the rx half to its trace task (a cold
//! branch on the header kind, through a bounded queue; see `datapath::trace_port`). The
//! task applies the data path's rules ([`overlay_proto::dataplane::trace`]): a relay
//! decrements the hop limit, looks up
//! the same next hop and sends the probe on; the owner of the destination block looks the
//! address up in its kernel (the pod's veth, or the TUN for the node address) and checks the
//! device is up; a hop that cannot go on says why (no owner, unreachable, hop limit, not in
//! its block, no kernel route). Each sends one *report* (kind `TraceReport`) back to the
//! origin.
//!
//! Reports travel over the overlay towards the origin (routed and relayed like data, by the
//! same rules) rather than straight to its underlay address: a relayed path exists because
//! the direct one is broken, and the reports of the hops behind a relay need it too. It also
//! means an agent sends reports only towards a peer of the topology it has a path to, never
//! to an address a probe names.
//!
//! The origin times each report from the moment it sent the probe (traceroute style: the
//! nodes' clocks are not compared). It waits until the last hop answered — delivered or
//! dropped — and every hop before it did, or until the timeout (default 2 s); a hop that
//! stayed silent is shown as `* no answer`.
//!
//! # Layout
//! - [`model`]: the request and answer JSON.
//! - [`render`]: the traceroute-style text.
//! - [`cli`]: the `trace` subcommand.

pub mod cli;
pub mod model;
pub mod render;

pub use cli::TraceArgs;
pub use model::{HopAction, Outcome, TraceHop, TraceRequest, TraceResult};

use crate::control::ControlHandle;
use crate::datapath::{TracePort, TraceSender};
use crate::netlink::{self, KernelRoute};
use crate::status::Status;
use ipnet::Ipv4Net;
use model::{DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS};
use overlay_proto::dataplane::trace::{self as step, ProbeStep, ReportStep, MAX_TRACE_DATAGRAM};
use overlay_proto::forwarding::Lookup;
use overlay_proto::header::{Header, Kind, DEFAULT_HOP_LIMIT};
use overlay_proto::ipam::node_address;
use overlay_proto::peer::PeerId;
use overlay_proto::trace::{Action, Cause, Probe, Report};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Trace datagrams handled per second at most; the rest are ignored (a peer flooding probes
/// cannot make this agent send more than this many reports and netlink queries).
const MAX_PER_SECOND: u32 = 200;
/// Traces in progress at most (each holds a session until its timeout).
const MAX_SESSIONS: usize = 64;
/// Longest wait for the control plane's names.
const STATUS_WAIT: Duration = Duration::from_secs(2);

/// A report received for a trace in progress.
#[derive(Debug)]
struct Arrival {
    from: PeerId,
    report: Report,
    at: Instant,
}

/// Runs traces from this agent and answers other agents' probes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sender: TraceSender,
    sessions: Mutex<HashMap<u64, mpsc::UnboundedSender<Arrival>>>,
}

impl Tracer {
    /// Starts the task answering the trace datagrams of `port` (on the current tokio
    /// runtime); it ends when the data path stops.
    pub fn start(port: TracePort) -> Tracer {
        let tracer = Tracer {
            inner: Arc::new(Inner {
                sender: port.sender(),
                sessions: Mutex::new(HashMap::new()),
            }),
        };
        tokio::spawn(tracer.clone().serve(port));
        tracer
    }

    async fn serve(self, mut port: TracePort) {
        let mut window = Instant::now();
        let mut handled = 0u32;
        while let Some(mut datagram) = port.recv().await {
            let now = Instant::now();
            if now.duration_since(window) >= Duration::from_secs(1) {
                window = now;
                handled = 0;
            }
            if handled >= MAX_PER_SECOND {
                continue;
            }
            handled += 1;
            self.handle(&mut datagram).await;
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::UnboundedSender<Arrival>>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Answers one trace datagram from the data path.
    async fn handle(&self, datagram: &mut [u8]) {
        let table = self.inner.sender.table();
        let Ok(header) = Header::parse(datagram) else {
            return;
        };
        match header.kind {
            Kind::TraceProbe => {
                let Some((probe, step)) = step::on_probe(&table, datagram) else {
                    tracing::debug!(src = %header.src, "trace probe ignored");
                    return;
                };
                let action = match step {
                    ProbeStep::Relay { next, to } => match self.inner.sender.send(datagram, to) {
                        Ok(()) => Action::Relay { next, addr: to },
                        Err(e) => {
                            tracing::debug!(error = %e, %to, "relaying a trace probe");
                            Action::Drop(Cause::SendFailed)
                        }
                    },
                    ProbeStep::Final { target } => delivery(target).await,
                    ProbeStep::Drop(cause) => Action::Drop(cause),
                };
                let report = Report {
                    nonce: probe.nonce,
                    hop: probe.hop,
                    action,
                };
                let mut d = [0u8; MAX_TRACE_DATAGRAM];
                if let Some(n) = step::report_datagram(table.me(), probe.origin, &report, &mut d) {
                    if let Err(e) = self.inner.sender.send(&d[..n], probe.report_to) {
                        tracing::debug!(error = %e, to = %probe.report_to, "sending a trace report");
                    }
                }
            }
            Kind::TraceReport => match step::on_report(&table, datagram) {
                ReportStep::Forward { to } => {
                    let _ = self.inner.sender.send(datagram, to);
                }
                ReportStep::Mine { from, report } => {
                    let session = self.sessions().get(&report.nonce).cloned();
                    if let Some(s) = session {
                        let _ = s.send(Arrival {
                            from,
                            report,
                            at: Instant::now(),
                        });
                    }
                }
                ReportStep::Ignore => {}
            },
            Kind::Ip => {}
        }
    }

    /// Traces `target`, waiting at most `timeout` for the reports.
    pub async fn trace(&self, target: Ipv4Addr, timeout: Duration, names: &Names) -> TraceResult {
        let table = self.inner.sender.table();
        let owner = names.owner_of(target);
        let mut result = TraceResult {
            destination: target,
            owner: owner.as_ref().map(|o| o.0.clone()),
            node_address: owner.as_ref().is_some_and(|o| o.1),
            outcome: Outcome::Dropped,
            hops: Vec::new(),
        };
        let mut hop0 = TraceHop::new(0, Some(names.me.clone()), HopAction::Drop);
        hop0.rtt_ms = Some(0.0);
        let kernel = netlink::route_to(target).await;
        if let Ok(k) = &kernel {
            hop0.route = Some(if k.local {
                format!("local {}", k.prefix.addr())
            } else {
                k.prefix.to_string()
            });
            hop0.device.clone_from(&k.device);
        }
        let (dst, next_hop) = match table.lookup(target) {
            Lookup::Remote { dst, next_hop } => (dst, next_hop),
            Lookup::Local => {
                hop0.action = HopAction::Local;
                hop0.device_up = kernel.as_ref().ok().map(|k| k.device_up);
                result.outcome = if hop0.device_up == Some(true) {
                    Outcome::Delivered
                } else {
                    hop0.reason = Some(match &kernel {
                        Ok(k) => format!("device {} is down", k.device.as_deref().unwrap_or("?")),
                        Err(e) => e.to_string(),
                    });
                    Outcome::Dropped
                };
                result.hops.push(hop0);
                return result;
            }
            Lookup::NoOwner => return dropped(result, hop0, Cause::NoOwner.describe().into()),
            Lookup::Unreachable => {
                return dropped(result, hop0, Cause::Unreachable.describe().into())
            }
            Lookup::OutsideCluster => {
                let reason = format!(
                    "not in the cluster range {}: the overlay does not carry it",
                    table.cluster()
                );
                return dropped(result, hop0, reason);
            }
        };
        hop0.action = HopAction::Encapsulate;
        hop0.to = Some(names.name(dst));
        hop0.via = Some(names.name(next_hop.via));
        hop0.underlay = Some(next_hop.addr);

        let nonce: u64 = rand::random();
        let (tx, mut rx) = mpsc::unbounded_channel();
        {
            let mut sessions = self.sessions();
            if sessions.len() >= MAX_SESSIONS {
                return dropped(result, hop0, "too many traces in progress".into());
            }
            sessions.insert(nonce, tx);
        }
        let probe = Probe {
            nonce,
            target,
            first_hop_limit: DEFAULT_HOP_LIMIT,
        };
        let datagram = step::probe_datagram(table.me(), dst, &probe);
        let sent = Instant::now();
        if let Err(e) = self.inner.sender.send(&datagram, next_hop.addr) {
            self.sessions().remove(&nonce);
            return dropped(result, hop0, format!("sending the probe failed: {e}"));
        }
        result.hops.push(hop0);
        let arrivals = collect(&mut rx, sent + timeout).await;
        self.sessions().remove(&nonce);
        finish(result, arrivals, sent, names)
    }
}

/// Where this node's kernel sends a packet for `target`: the route's device, or, when that
/// is a bridge that knows the destination, the bridge port (a pod's veth).
async fn delivery(target: Ipv4Addr) -> Action {
    let Ok(KernelRoute {
        device: Some(device),
        device_up,
        ..
    }) = netlink::route_to(target).await
    else {
        return Action::Drop(Cause::NoKernelRoute);
    };
    match netlink::bridge_port(&device, target).await {
        Ok(Some(port)) => Action::Deliver {
            device: port.name,
            up: port.up && device_up,
            bridge: Some(device),
        },
        Ok(None) | Err(_) => Action::Deliver {
            device,
            up: device_up,
            bridge: None,
        },
    }
}

fn dropped(mut result: TraceResult, mut hop0: TraceHop, reason: String) -> TraceResult {
    hop0.action = HopAction::Drop;
    hop0.reason = Some(reason);
    result.outcome = Outcome::Dropped;
    result.hops.push(hop0);
    result
}

/// The first report of each hop, until the last hop (delivered or dropped) and every hop
/// before it answered, or `deadline`.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    deadline: Instant,
) -> BTreeMap<u8, Arrival> {
    let mut got = BTreeMap::new();
    let mut end: Option<u8> = None;
    loop {
        if let Some(e) = end {
            if (1..=e).all(|h| got.contains_key(&h)) {
                break;
            }
        }
        let Ok(Some(a)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        let hop = a.report.hop;
        if hop == 0 || got.contains_key(&hop) {
            continue;
        }
        if !matches!(a.report.action, Action::Relay { .. }) {
            end = Some(end.map_or(hop, |e| e.min(hop)));
        }
        got.insert(hop, a);
    }
    got
}

/// The hops after the origin from the reports.
fn finish(
    mut result: TraceResult,
    mut got: BTreeMap<u8, Arrival>,
    sent: Instant,
    names: &Names,
) -> TraceResult {
    let end = got
        .iter()
        .find(|(_, a)| !matches!(a.report.action, Action::Relay { .. }))
        .map(|(h, _)| *h);
    let last = end.or_else(|| got.keys().next_back().copied()).unwrap_or(0);
    result.outcome = Outcome::NoAnswer;
    for hop in 1..=last {
        let Some(a) = got.remove(&hop) else {
            result
                .hops
                .push(TraceHop::new(hop, None, HopAction::NoAnswer));
            continue;
        };
        let mut h = TraceHop::new(hop, Some(names.name(a.from)), HopAction::NoAnswer);
        h.rtt_ms = Some(a.at.duration_since(sent).as_secs_f64() * 1000.0);
        match a.report.action {
            Action::Relay { next, addr } => {
                h.action = HopAction::Relay;
                h.via = Some(names.name(next));
                h.underlay = Some(addr);
            }
            Action::Deliver { device, up, bridge } => {
                h.action = HopAction::Deliver;
                h.bridge = bridge;
                if up {
                    result.outcome = Outcome::Delivered;
                } else {
                    h.reason = Some(format!("device {device} is down"));
                    result.outcome = Outcome::Dropped;
                }
                h.device = Some(device);
                h.device_up = Some(up);
            }
            Action::Drop(cause) => {
                h.action = HopAction::Drop;
                h.reason = Some(cause.describe().into());
                result.outcome = Outcome::Dropped;
            }
        }
        result.hops.push(h);
    }
    if end.is_none() {
        if let Some(next) = last.checked_add(1) {
            result
                .hops
                .push(TraceHop::new(next, None, HopAction::NoAnswer));
        }
    }
    result
}

/// Names of the peers, from the control plane's status.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// This agent's name.
    pub me: String,
    peers: HashMap<PeerId, String>,
    blocks: Vec<(Ipv4Net, String)>,
}

impl Names {
    /// The names in `status`.
    pub fn from_status(status: &Status) -> Names {
        let mut names = Names {
            me: status.name.clone(),
            ..Names::default()
        };
        names
            .peers
            .insert(PeerId::from_name(&status.name), status.name.clone());
        if let Some(b) = status.subnet {
            names.blocks.push((b, status.name.clone()));
        }
        for p in &status.peers {
            names
                .peers
                .insert(PeerId::from_name(&p.name), p.name.clone());
            if let Some(b) = p.subnet {
                names.blocks.push((b, p.name.clone()));
            }
        }
        names
    }

    /// The name of `peer`, or its id in hex.
    pub fn name(&self, peer: PeerId) -> String {
        self.peers
            .get(&peer)
            .cloned()
            .unwrap_or_else(|| format!("{:016x}", peer.0))
    }

    /// The owner of the block holding `addr`, and whether `addr` is its node address.
    fn owner_of(&self, addr: Ipv4Addr) -> Option<(String, bool)> {
        self.blocks
            .iter()
            .find(|(b, _)| b.contains(&addr))
            .map(|(b, name)| (name.clone(), node_address(*b) == addr))
    }
}

/// `POST /trace`: the answer, or an HTTP status code and a message.
pub async fn api(
    tracer: Option<&Tracer>,
    control: &ControlHandle,
    request: TraceRequest,
) -> Result<TraceResult, (u16, String)> {
    let timeout_ms = request.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err((
            400,
            format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    let Some(tracer) = tracer else {
        return Err((503, "tracing is not available (no data path)".into()));
    };
    let Some(status) = control.status(STATUS_WAIT).await else {
        return Err((503, "the control plane did not answer".into()));
    };
    let names = Names::from_status(&status);
    Ok(tracer
        .trace(
            request.destination,
            Duration::from_millis(timeout_ms),
            &names,
        )
        .await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_proto::trace::Action;

    fn arrival(from: &str, hop: u8, action: Action, after_ms: u64, sent: Instant) -> Arrival {
        Arrival {
            from: PeerId::from_name(from),
            report: Report {
                nonce: 1,
                hop,
                action,
            },
            at: sent + Duration::from_millis(after_ms),
        }
    }

    fn names() -> Names {
        let mut n = Names {
            me: "node0".into(),
            ..Names::default()
        };
        for p in ["node0", "node1", "node2"] {
            n.peers.insert(PeerId::from_name(p), p.into());
        }
        n
    }

    fn empty() -> TraceResult {
        TraceResult {
            destination: Ipv4Addr::new(10, 32, 2, 5),
            owner: Some("node2".into()),
            node_address: false,
            outcome: Outcome::Dropped,
            hops: vec![TraceHop::new(
                0,
                Some("node0".into()),
                HopAction::Encapsulate,
            )],
        }
    }

    #[test]
    fn reports_become_hops_in_order_with_their_latency() {
        let sent = Instant::now();
        let mut got = BTreeMap::new();
        got.insert(
            2,
            arrival(
                "node2",
                2,
                Action::Deliver {
                    device: "veth1".into(),
                    up: true,
                    bridge: Some("br0".into()),
                },
                3,
                sent,
            ),
        );
        got.insert(
            1,
            arrival(
                "node1",
                1,
                Action::Relay {
                    next: PeerId::from_name("node2"),
                    addr: "10.99.0.3:6783".parse().expect("addr"),
                },
                1,
                sent,
            ),
        );
        let r = finish(empty(), got, sent, &names());
        assert_eq!(r.outcome, Outcome::Delivered);
        let hops: Vec<_> = r
            .hops
            .iter()
            .map(|h| {
                (
                    h.hop,
                    h.node.as_deref(),
                    h.action,
                    h.via.as_deref(),
                    h.device.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            hops,
            [
                (0, Some("node0"), HopAction::Encapsulate, None, None),
                (1, Some("node1"), HopAction::Relay, Some("node2"), None),
                (2, Some("node2"), HopAction::Deliver, None, Some("veth1")),
            ]
        );
        let rtt = r.hops[2].rtt_ms.expect("timed");
        assert!((rtt - 3.0).abs() < 0.5, "{rtt}");
    }

    #[test]
    fn silence_and_drops_show_where_they_happened() {
        let sent = Instant::now();
        // Hop 1 silent, hop 2 delivered: delivered, with a hole.
        let mut got = BTreeMap::new();
        got.insert(
            2,
            arrival(
                "node2",
                2,
                Action::Deliver {
                    device: "veth1".into(),
                    up: false,
                    bridge: None,
                },
                3,
                sent,
            ),
        );
        let r = finish(empty(), got, sent, &names());
        assert_eq!(r.hops[1].action, HopAction::NoAnswer);
        assert_eq!(r.hops[2].reason.as_deref(), Some("device veth1 is down"));
        assert_eq!(r.outcome, Outcome::Dropped);

        // Only a relay answered: the next hop is missing.
        let mut got = BTreeMap::new();
        got.insert(
            1,
            arrival(
                "node1",
                1,
                Action::Relay {
                    next: PeerId(5),
                    addr: "10.99.0.3:6783".parse().expect("addr"),
                },
                1,
                sent,
            ),
        );
        let r = finish(empty(), got, sent, &names());
        assert_eq!(r.outcome, Outcome::NoAnswer);
        assert_eq!(r.hops.len(), 3);
        assert_eq!(r.hops[1].via.as_deref(), Some("0000000000000005"));
        assert_eq!(r.hops[2].action, HopAction::NoAnswer);

        // A drop.
        let mut got = BTreeMap::new();
        got.insert(
            1,
            arrival("node1", 1, Action::Drop(Cause::HopLimit), 1, sent),
        );
        let r = finish(empty(), got, sent, &names());
        assert_eq!(r.outcome, Outcome::Dropped);
        assert_eq!(r.hops[1].reason.as_deref(), Some("hop limit exhausted"));

        // Nothing at all.
        let r = finish(empty(), BTreeMap::new(), sent, &names());
        assert_eq!(r.outcome, Outcome::NoAnswer);
        assert_eq!(r.hops[1].action, HopAction::NoAnswer);
    }
}
