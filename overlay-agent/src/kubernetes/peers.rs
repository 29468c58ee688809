//! The peers that the Nodes give: the `InternalIP` of every Node but this one, kept current
//! from the events of a list-and-watch, as changes to feed the control plane.

use super::node::NodeFacts;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// One step of a list-and-watch of Nodes (the shape of kube-runtime's `watcher::Event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A (re)list starts: the Nodes that follow as [`WatchEvent::InitApply`] are all there is.
    Init,
    /// A Node of the (re)list.
    InitApply(NodeFacts),
    /// The (re)list is complete: Nodes it did not list are gone.
    InitDone,
    /// A Node was added or modified.
    Apply(NodeFacts),
    /// A Node was deleted.
    Delete(NodeFacts),
}

/// What one [`WatchEvent`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerChanges {
    /// Addresses to dial from now on.
    pub added: Vec<SocketAddr>,
    /// Addresses no Node has any more.
    pub removed: Vec<SocketAddr>,
    /// This node's Node, when the event was about it.
    pub own: Option<NodeFacts>,
}

impl PeerChanges {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.own.is_none()
    }
}

/// The Nodes' peer addresses, kept from [`WatchEvent`]s.
///
/// During a relist, addresses are added as soon as they are listed and removed only when the
/// relist completes (a Node missing from it was deleted while the watch was down). Two Nodes
/// reporting the same address count once: the address goes when the last of them does.
#[derive(Debug, Clone)]
pub struct PeerSet {
    me: String,
    port: u16,
    nodes: BTreeMap<String, IpAddr>,
    relist: Option<BTreeMap<String, IpAddr>>,
    own: Option<NodeFacts>,
}

impl PeerSet {
    /// No peers yet; `me` is this node's Node name, `port` the peers' listen port.
    pub fn new(me: &str, port: u16) -> PeerSet {
        PeerSet {
            me: me.to_owned(),
            port,
            nodes: BTreeMap::new(),
            relist: None,
            own: None,
        }
    }

    /// The peer addresses now, sorted.
    pub fn peers(&self) -> BTreeSet<SocketAddr> {
        self.nodes
            .values()
            .chain(self.relist.iter().flat_map(BTreeMap::values))
            .map(|ip| SocketAddr::new(*ip, self.port))
            .collect()
    }

    /// This node's Node as last seen.
    pub fn own(&self) -> Option<&NodeFacts> {
        self.own.as_ref()
    }

    /// Applies one event and says what changed.
    pub fn handle(&mut self, event: WatchEvent) -> PeerChanges {
        let before = self.peers();
        let mut own = None;
        match event {
            WatchEvent::Init => self.relist = Some(BTreeMap::new()),
            WatchEvent::InitApply(node) | WatchEvent::Apply(node) if node.name == self.me => {
                own = Some(node);
            }
            WatchEvent::InitApply(node) => match self.relist.as_mut() {
                Some(relist) => set(relist, &node),
                None => set(&mut self.nodes, &node),
            },
            WatchEvent::InitDone => {
                if let Some(relist) = self.relist.take() {
                    self.nodes = relist;
                }
            }
            WatchEvent::Apply(node) => {
                set(&mut self.nodes, &node);
                if let Some(relist) = self.relist.as_mut() {
                    set(relist, &node);
                }
            }
            WatchEvent::Delete(node) => {
                self.nodes.remove(&node.name);
                if let Some(relist) = self.relist.as_mut() {
                    relist.remove(&node.name);
                }
            }
        }
        if let Some(node) = &own {
            self.own = Some(node.clone());
        }
        let after = self.peers();
        PeerChanges {
            added: after.difference(&before).copied().collect(),
            removed: before.difference(&after).copied().collect(),
            own,
        }
    }
}

/// Records `node`'s address in `map` (or forgets the node when it has none).
fn set(map: &mut BTreeMap<String, IpAddr>, node: &NodeFacts) {
    match node.internal_ip {
        Some(ip) => {
            map.insert(node.name.clone(), ip);
        }
        None => {
            map.remove(&node.name);
        }
    }
}
