//! The JSON of `POST /trace`: the request and the hops answered.

use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};

/// Default time the origin waits for the reports.
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// Longest wait a request may ask for.
pub const MAX_TIMEOUT_MS: u64 = 10_000;

/// `POST /trace` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRequest {
    /// The overlay address to trace.
    pub destination: Ipv4Addr,
    /// How long to wait for the reports (default [`DEFAULT_TIMEOUT_MS`], at most
    /// [`MAX_TIMEOUT_MS`]).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// How the trace ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The probe reached the node owning the destination, which routes it to a device.
    Delivered,
    /// A hop dropped the probe (see its `reason`).
    Dropped,
    /// Some hop did not answer in time.
    NoAnswer,
}

/// What happened at one hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HopAction {
    /// Origin: the kernel routes the destination into the overlay; encapsulated for `to`,
    /// sent to `via` at `underlay`.
    Encapsulate,
    /// Origin: the destination is in this node's own block; the kernel delivers it to
    /// `device` without the overlay.
    Local,
    /// A relay passed the probe on to `via` at `underlay`.
    Relay,
    /// The destination node decapsulated the probe; its kernel routes the address to
    /// `device`.
    Deliver,
    /// The probe was dropped here, for `reason`.
    Drop,
    /// No report from this hop within the timeout.
    NoAnswer,
}

/// One hop of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceHop {
    /// 0 for the origin, then 1, 2, ... along the path.
    pub hop: u8,
    /// The node (peer name; 16 hex digits of its id if this node does not know the name).
    pub node: Option<String>,
    /// What it did.
    pub action: HopAction,
    /// Origin: the kernel route the destination matched (e.g. `10.32.0.0/12`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Origin: the route's output device; destination node: the device its kernel routes
    /// the address to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Whether `device` is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_up: Option<bool>,
    /// Destination node: the bridge the kernel routes the address to, when `device` is the
    /// port of it the destination's MAC address is behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// Origin: the node owning the destination (the probe's overlay destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The next hop the probe was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The next hop's underlay address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<SocketAddr>,
    /// Why the probe was dropped here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Time at the origin from sending the probe to receiving this hop's report (0 at the
    /// origin; none when it did not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

impl TraceHop {
    /// A hop with only its number, node and action set.
    pub fn new(hop: u8, node: Option<String>, action: HopAction) -> TraceHop {
        TraceHop {
            hop,
            node,
            action,
            route: None,
            device: None,
            device_up: None,
            bridge: None,
            to: None,
            via: None,
            underlay: None,
            reason: None,
            rtt_ms: None,
        }
    }
}

/// `POST /trace` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceResult {
    /// The address traced.
    pub destination: Ipv4Addr,
    /// The node owning its block, if any.
    pub owner: Option<String>,
    /// True if the destination is the owner's node address (not a pod).
    pub node_address: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// Every hop, from the origin (hop 0).
    pub hops: Vec<TraceHop>,
}
