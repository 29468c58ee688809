//! What the control plane changes on the machine: the data path's forwarding table and the
//! TUN device's address. A trait, so the driver can be tested without root.

use crate::datapath::{CountersSnapshot, Datapath, Offloads};
use crate::netlink::{self, NetlinkError};
use ipnet::Ipv4Net;
use overlay_proto::forwarding::ForwardingTable;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Why the TUN device did not get the node address.
#[derive(Debug, thiserror::Error)]
pub enum SetAddressError {
    /// a netlink request on the device failed (its message names the request and device)
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// the host did not answer in time
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// The machine side of the control plane.
pub trait Host: Send + Sync + 'static {
    /// Hands the data path a new forwarding table.
    fn set_table(&self, table: ForwardingTable);

    /// The data path's counters.
    fn counters(&self) -> CountersSnapshot;

    /// The offloads the data path uses.
    fn offloads(&self) -> Offloads;

    /// The TUN device's name.
    fn device(&self) -> String;

    /// Gives the TUN device the node address (none when `None`) and the cluster route.
    fn set_node_address(
        &self,
        address: Option<Ipv4Addr>,
    ) -> impl Future<Output = Result<(), SetAddressError>> + Send;
}

/// The real machine: a running [`Datapath`] and netlink.
#[derive(Debug)]
pub struct SystemHost {
    datapath: Mutex<Option<Datapath>>,
    iface: String,
    mtu: u32,
    cluster: Ipv4Net,
}

impl SystemHost {
    /// Wraps a started data path on device `iface`.
    pub fn new(datapath: Datapath, iface: String, mtu: u32, cluster: Ipv4Net) -> Self {
        SystemHost {
            datapath: Mutex::new(Some(datapath)),
            iface,
            mtu,
            cluster,
        }
    }

    fn datapath(&self) -> MutexGuard<'_, Option<Datapath>> {
        self.datapath.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the data path (blocking, up to a second); later calls do nothing.
    pub fn shutdown(&self) {
        let datapath = self.datapath().take();
        if let Some(d) = datapath {
            d.shutdown();
        }
    }
}

impl Host for SystemHost {
    fn set_table(&self, table: ForwardingTable) {
        if let Some(d) = self.datapath().as_ref() {
            d.set_table(table);
        }
    }

    fn counters(&self) -> CountersSnapshot {
        self.datapath()
            .as_ref()
            .map(Datapath::counters)
            .unwrap_or_default()
    }

    fn offloads(&self) -> Offloads {
        self.datapath()
            .as_ref()
            .map(Datapath::offloads)
            .unwrap_or_default()
    }

    fn device(&self) -> String {
        self.iface.clone()
    }

    async fn set_node_address(&self, address: Option<Ipv4Addr>) -> Result<(), SetAddressError> {
        Ok(netlink::configure_tun(&self.iface, self.mtu, address, self.cluster).await?)
    }
}
