//! GC (spec 1.1.0): the runtime names the attachments it still knows
//! (`cni.dev/valid-attachments`); everything of this network held for any other is stale.
//!
//! 1. Every address the agent holds for an attachment not in the list is released, after
//!    its host veth is deleted (the pod end goes with it), so an address is never handed
//!    out again while still configured; when that deletion fails the address stays held.
//! 2. Every host veth of ours left on the node bridge that belongs to no listed attachment
//!    (its address was released already, e.g. by an agent whose state was lost) is deleted.
//!
//! Failures do not stop the collection: everything that can be removed is, and the rest is
//! reported in one error. The agent serves one network, so "this network" is everything it
//! holds; the pods' namespaces are assumed gone (GC gets none).

use crate::agent::AgentClient;
use crate::error::Error;
use crate::netconf::GcAttachment;
use crate::netlink::Netlink;
use crate::wiring::{host_veth_name, is_host_veth_name};
use overlay_proto::api::HeldAllocation;
use std::collections::HashSet;

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// Allocations released.
    pub released: Vec<HeldAllocation>,
    /// Host veths deleted.
    pub deleted: Vec<String>,
}

/// Collects everything held for attachments not in `valid`; host veths are looked for on
/// `bridge` in the calling thread's namespace (the node's).
pub fn collect(
    agent: &AgentClient,
    bridge: &str,
    valid: &[GcAttachment],
) -> Result<Collected, Error> {
    let list = agent.list()?;
    let keep: HashSet<(&str, &str)> = valid
        .iter()
        .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
        .collect();
    let keep_veths: HashSet<String> = valid
        .iter()
        .map(|a| host_veth_name(&a.container_id, &a.ifname))
        .collect();
    let nl = Netlink::open()?;
    let mut done = Collected::default();
    let mut failures = Vec::new();

    for held in list.allocations {
        if keep.contains(&(held.container_id.as_str(), held.ifname.as_str())) {
            continue;
        }
        let veth = host_veth_name(&held.container_id, &held.ifname);
        let what = format!("{}/{} ({})", held.container_id, held.ifname, held.address);
        match nl.link(&veth).and_then(|l| match l {
            Some(link) => nl.del_link(link.index).map(|()| true),
            None => Ok(false),
        }) {
            Ok(deleted) => {
                if deleted {
                    done.deleted.push(veth);
                }
            }
            Err(e) => {
                failures.push(format!("{what}: {e}; its address stays held"));
                continue;
            }
        }
        match agent.release(&held.container_id, &held.ifname) {
            Ok(()) => done.released.push(held),
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }

    match leftover_veths(&nl, bridge, &keep_veths) {
        Ok(leftovers) => {
            for link in leftovers {
                match nl.del_link(link.index) {
                    Ok(()) => done.deleted.push(link.name),
                    Err(e) => failures.push(e.to_string()),
                }
            }
        }
        Err(e) => failures.push(e.to_string()),
    }
    if failures.is_empty() {
        Ok(done)
    } else {
        Err(Error::Gc(failures))
    }
}

/// Host veths of ours on `bridge` whose names are not in `keep`. A veth not (yet) attached
/// to the bridge is left alone: it may belong to an ADD in progress.
fn leftover_veths(
    nl: &Netlink,
    bridge: &str,
    keep: &HashSet<String>,
) -> Result<Vec<crate::netlink::Link>, Error> {
    let Some(bridge) = nl.link(bridge)? else {
        return Ok(Vec::new());
    };
    Ok(nl
        .links()?
        .into_iter()
        .filter(|l| {
            l.kind.as_deref() == Some("veth")
                && l.controller == Some(bridge.index)
                && is_host_veth_name(&l.name)
                && !keep.contains(&l.name)
        })
        .collect())
}
