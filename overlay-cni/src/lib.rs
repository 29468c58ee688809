//! `overlay-cni`: the CNI plugin (spec 1.0.0 and 1.1.0) that attaches pods to the overlay.
//!
//! The node's agent owns the block and the address allocations; the plugin asks it for an
//! address over its local API and wires the pod the classic way: a bridge on the node
//! carrying the node address, a veth pair with one end on the bridge and the other in the
//! pod, the address, the default route via the node address.
//!
//! It is an interface plugin meant to come first in a conflist: its ADD result is the
//! `prevResult` of the plugins after it (e.g. `portmap`). Given a `prevResult` on ADD (when
//! not first) it appends its interfaces, address and route to it; CHECK compares the pod
//! with the `prevResult` the runtime hands back. GC (1.1.0) releases the addresses and
//! host veths of attachments the runtime no longer knows; STATUS (1.1.0) asks the agent
//! whether it is ready.
//!
//! # Layout
//! - [`plugin`]: ADD, DEL, CHECK, GC, STATUS, VERSION, from environment and stdin to stdout.
//! - [`chain`]: `prevResult` handling: merging on ADD, what CHECK expects.
//! - [`gc`]: garbage collection of attachments the runtime no longer knows.
//! - [`env`]: the CNI_* environment variables.
//! - [`netconf`]: the network configuration on stdin.
//! - [`result`]: the CNI result and VERSION answer.
//! - [`error`]: failures, their CNI codes, the error JSON; [`mismatch`]: what CHECK found.
//! - [`agent`]: the agent's IPAM API, with bounded waiting.
//! - [`wiring`]: the recipe on the node and in the pod (what the root tests drive).
//! - [`netlink`]: the synchronous facade over rtnetlink.
//! - [`netns`]: running work inside the pod's namespace.
//! - [`garp`]: the gratuitous ARP a new pod sends.

pub mod agent;
pub mod chain;
pub mod env;
pub mod error;
pub mod garp;
pub mod gc;
pub mod mismatch;
pub mod netconf;
pub mod netlink;
pub mod netns;
pub mod plugin;
pub mod result;
pub mod wiring;

pub use error::{Error, ErrorReply};
pub use plugin::run;

/// The newest CNI version this plugin speaks: the version of answers whose input names none
/// (an error before the configuration could be read, VERSION without a configuration).
pub const CNI_VERSION: &str = "1.1.0";
/// Configuration versions this plugin accepts.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0", "1.1.0"];
/// The first version with GC, STATUS and the interface `mtu` in results.
pub const VERSION_1_1: &str = "1.1.0";

/// True when `version` (one of [`SUPPORTED_VERSIONS`]) is 1.1.0 or later.
pub fn at_least_1_1(version: &str) -> bool {
    version != "1.0.0"
}
