//! The control plane's I/O shell around [`overlay_proto::node::Node`].
//!
//! One driver task owns the node ([`driver`]). Everything else talks to it through channels:
//! connection tasks report handshakes, messages and closes as events; the API asks for status
//! snapshots with [`ControlHandle`]. After every event the driver drains the node's outputs:
//! dials become dial tasks, sends go to the connection's bounded writer queue, route changes
//! rebuild the data path's forwarding table, claim changes are persisted and readdress the
//! TUN device (through a [`Host`]).
//!
//! # Layout
//! - [`driver`]: the task that owns the node; its select loop and output handling.
//! - [`handshake`]: dialing, the hello exchange and version negotiation.
//! - [`noise`]: with `--secret-file`, the async driver of the Noise handshake before the
//!   hellos (the protocol and its records are [`overlay_proto::noise`]; see [`crate::auth`]).
//! - [`frame`]: moving bytes from the socket into the connection's sans-IO receiver, which
//!   gives whole frames under their size caps.
//! - [`conn`]: the reader and writer tasks of an established connection.
//! - [`host`]: what the driver changes on the machine (data path table, TUN address).
//! - [`keys`]: with `--encrypt`, the data keys derived from the peers' identity keys (proven
//!   in handshakes or gossiped in their records) and published to the data path.
//! - [`snapshot`]: the [`Status`] built from the node.

mod conn;
pub mod driver;
pub mod frame;
pub mod handshake;
pub mod host;
pub mod keys;
pub mod noise;
mod snapshot;

pub use driver::{Driver, DriverConfig};
pub use host::{Host, SetAddressError, SystemHost};

use crate::status::Status;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A request to the driver.
#[derive(Debug)]
pub enum Command {
    /// Answer with a status snapshot.
    Status(oneshot::Sender<Status>),
    /// Dial this address too (e.g. a seed whose name resolved late).
    AddTarget(SocketAddr),
    /// Stop dialing this address on its own account (e.g. a deleted Kubernetes Node); see
    /// [`overlay_proto::node::Node::remove_target`].
    RemoveTarget(SocketAddr),
}

/// How the rest of the agent reaches the driver.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    commands: mpsc::Sender<Command>,
}

impl ControlHandle {
    /// A handle sending to `commands` (the driver holds the receiver).
    pub fn new(commands: mpsc::Sender<Command>) -> Self {
        ControlHandle { commands }
    }

    /// A status snapshot; `None` when the driver does not answer within `wait`.
    pub async fn status(&self, wait: Duration) -> Option<Status> {
        let (tx, rx) = oneshot::channel();
        tokio::time::timeout(wait, async {
            self.commands.send(Command::Status(tx)).await.ok()?;
            rx.await.ok()
        })
        .await
        .ok()
        .flatten()
    }

    /// Asks the driver to dial `addr`; false if the driver is gone.
    pub async fn add_target(&self, addr: SocketAddr) -> bool {
        self.commands.send(Command::AddTarget(addr)).await.is_ok()
    }

    /// Asks the driver to stop dialing `addr` on its own account; false if the driver is gone.
    pub async fn remove_target(&self, addr: SocketAddr) -> bool {
        self.commands
            .send(Command::RemoveTarget(addr))
            .await
            .is_ok()
    }
}

/// True once the node holds a block and the TUN device carries its address (`/readyz`).
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Whether the node is ready now.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets readiness.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
