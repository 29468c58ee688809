//! Kubernetes integration (`--kubernetes`): peers, this node's block and its readiness from
//! and to the Kubernetes API.
//!
//! - **Peers**: every other Node's `InternalIP` (port: this agent's advertised port) is dialed
//!   like a seed; the Nodes are listed at start and watched, so joining Nodes are dialed and
//!   deleted Nodes stop being dialed without a restart.
//! - **Block**: when the Node has a `spec.podCIDR`, it is this node's block, claimed so that it
//!   wins over gossip claims ([`block`]); without one the node claims a block by gossip.
//! - **Readiness**: once the node owns its block and its data path is up (`/readyz`), the
//!   Node's `NetworkUnavailable` condition is set to `False` ([`condition`]), retried with
//!   backoff, off the data path.
//!
//! # Layout
//! Always compiled, tested against recorded API objects without a cluster:
//! - [`node`]: the facts discovery reads from a Node.
//! - [`peers`]: list-and-watch events to peer addresses to add and remove.
//! - [`block`]: the podCIDR as a claim, and its checks.
//! - [`condition`]: the status patch.
//! - [`time`]: the API's timestamps.
//!
//! With the `k8s` feature, `client` (kube-rs): the [`Session`] that lists, watches and patches.
//! Without it, [`Session`] has no value and `--kubernetes` is refused by the configuration.

pub mod block;
pub mod condition;
pub mod node;
pub mod peers;
pub mod time;

#[cfg(feature = "k8s")]
mod client;

pub use block::{kubernetes_epoch, pod_cidr_claim, BlockError, KUBERNETES_EPOCH_FLOOR};
pub use condition::{needs_network_patch, network_available_patch};
pub use node::{ApiNode, ApiNodeList, NodeFacts};
pub use peers::{PeerChanges, PeerSet, WatchEvent};

#[cfg(feature = "k8s")]
pub use client::Session;

use crate::config::Config;

/// Connects to the Kubernetes API when `config.kubernetes` is set: lists the Nodes, finds this
/// node's (named like this peer) and checks its podCIDR. Fails after 30 s without an answer.
pub async fn connect(config: &Config) -> anyhow::Result<Option<Session>> {
    if !config.kubernetes {
        return Ok(None);
    }
    Session::connect(config).await.map(Some)
}

#[cfg(not(feature = "k8s"))]
pub use without::Session;

#[cfg(not(feature = "k8s"))]
mod without {
    use crate::config::{Config, ConfigError};
    use crate::control::{ControlHandle, Readiness};
    use overlay_proto::topology::Claim;
    use std::net::{IpAddr, SocketAddr};
    use tokio::task::JoinHandle;

    /// A connection to the Kubernetes API; there is none in an agent built without the `k8s`
    /// feature.
    #[derive(Debug)]
    pub enum Session {}

    impl Session {
        /// Refused: this agent was built without the `k8s` feature.
        pub async fn connect(_config: &Config) -> anyhow::Result<Session> {
            Err(ConfigError::KubernetesNotBuilt.into())
        }

        /// This node's block from its podCIDR.
        pub fn claim(&self) -> Option<Claim> {
            match *self {}
        }

        /// The other Nodes' addresses.
        pub fn seeds(&self) -> Vec<SocketAddr> {
            match *self {}
        }

        /// This Node's `InternalIP`.
        pub fn advertise_ip(&self) -> Option<IpAddr> {
            match *self {}
        }

        /// Starts watching Nodes and clearing `NetworkUnavailable`.
        pub fn spawn(self, _control: ControlHandle, _ready: Readiness) -> JoinHandle<()> {
            match self {}
        }
    }
}
