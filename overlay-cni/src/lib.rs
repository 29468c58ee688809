//! `overlay-cni`: the CNI plugin (spec 1.0.0) that attaches pods to the overlay.
//!
//! The node's agent owns the block and the address allocations; the plugin asks it for an
//! address over its local API and wires the pod the classic way: a bridge on the node
//! carrying the node address, a veth pair with one end on the bridge and the other in the
//! pod, the address, the default route via the node address.
//!
//! # Layout
//! - [`plugin`]: ADD, DEL, CHECK, VERSION, from environment and stdin to stdout.
//! - [`env`]: the CNI_* environment variables.
//! - [`netconf`]: the network configuration on stdin.
//! - [`result`]: the CNI result and VERSION answer.
//! - [`error`]: failures, their CNI codes, the error JSON.
//! - [`agent`]: the agent's IPAM API, with bounded waiting.
//! - [`wiring`]: the recipe on the node and in the pod (what the root tests drive).
//! - [`netlink`]: the synchronous facade over rtnetlink.
//! - [`netns`]: running work inside the pod's namespace.
//! - [`garp`]: the gratuitous ARP a new pod sends.

pub mod agent;
pub mod env;
pub mod error;
pub mod garp;
pub mod netconf;
pub mod netlink;
pub mod netns;
pub mod plugin;
pub mod result;
pub mod wiring;

pub use error::{Error, ErrorReply};
pub use plugin::run;

/// The CNI version of every answer.
pub const CNI_VERSION: &str = "1.0.0";
/// Configuration versions this plugin accepts.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0"];
