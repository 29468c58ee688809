//! The Kubernetes API side (feature `k8s`, kube-rs): list the Nodes at start, watch them,
//! feed peers to the control plane, patch this Node's `NetworkUnavailable` condition.

use super::block::pod_cidr_claim;
use super::condition::{needs_network_patch, network_available_patch, CONDITION_REASON};
use super::node::NodeFacts;
use super::peers::{PeerSet, WatchEvent};
use crate::config::Config;
use crate::control::{ControlHandle, Readiness};
use anyhow::anyhow;
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use overlay_proto::topology::Claim;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// How long the start waits for the API to list the Nodes.
const START_BUDGET: Duration = Duration::from_secs(30);
/// First and longest delay between attempts to patch the condition.
const PATCH_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
/// How often readiness is looked at while the node is not ready.
const READY_POLL: Duration = Duration::from_millis(500);

/// A connection to the Kubernetes API, made at start; [`Session::spawn`] keeps it running.
#[derive(Debug)]
pub struct Session {
    api: Api<Node>,
    peers: PeerSet,
    own: NodeFacts,
    claim: Option<Claim>,
    cluster: Ipv4Net,
    prefix: u8,
}

impl Session {
    /// Connects with the in-cluster service account (or a kubeconfig) and lists the Nodes.
    pub async fn connect(config: &Config) -> anyhow::Result<Session> {
        // kube's errors repeat their causes in their messages: keep the first line only.
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow!("cannot set up a Kubernetes API client (no in-cluster service account, no kubeconfig): {e}")
        })?;
        Session::with_client(
            client,
            config.name.as_str(),
            config.advertise.port,
            config.cluster,
            config.subnet_prefix,
        )
        .await
    }

    /// Lists the Nodes through `client`: `me` is this node's Node, `port` the peers' port.
    pub async fn with_client(
        client: kube::Client,
        me: &str,
        port: u16,
        cluster: Ipv4Net,
        prefix: u8,
    ) -> anyhow::Result<Session> {
        let api: Api<Node> = Api::all(client);
        let nodes = list_nodes(&api).await?;
        let mut peers = PeerSet::new(me, port);
        peers.handle(WatchEvent::Init);
        for node in &nodes {
            peers.handle(WatchEvent::InitApply(NodeFacts::from(node)));
        }
        peers.handle(WatchEvent::InitDone);
        let own = peers.own().cloned().ok_or_else(|| {
            anyhow!("the Kubernetes API lists no Node named {me:?}: the peer name must be the Node's name (OVERLAY_NAME from spec.nodeName, or --name)")
        })?;
        let claim = pod_cidr_claim(&own, cluster, prefix)?;
        match claim {
            Some(c) => {
                info!(subnet = %c.block, epoch = c.epoch, "Kubernetes: this node's block is its spec.podCIDR")
            }
            None => {
                info!("Kubernetes: Node {me} has no IPv4 spec.podCIDR; claiming a block by gossip")
            }
        }
        info!(
            nodes = nodes.len(),
            peers = peers.peers().len(),
            internal_ip = ?own.internal_ip,
            "Kubernetes: Nodes listed"
        );
        Ok(Session {
            api,
            peers,
            own,
            claim,
            cluster,
            prefix,
        })
    }

    /// This node's block from its podCIDR (`None`: claim one by gossip).
    pub fn claim(&self) -> Option<Claim> {
        self.claim
    }

    /// The other Nodes' addresses, to dial as seeds.
    pub fn seeds(&self) -> Vec<SocketAddr> {
        self.peers.peers().into_iter().collect()
    }

    /// This Node's `InternalIP`, the address to advertise when none is configured.
    pub fn advertise_ip(&self) -> Option<IpAddr> {
        self.own.internal_ip
    }

    /// Watches the Nodes (adding and removing peers through `control`) and clears this Node's
    /// `NetworkUnavailable` once `ready`. The task ends when the control plane is gone.
    pub fn spawn(self, control: ControlHandle, ready: Readiness) -> JoinHandle<()> {
        let me = self.own.name.clone();
        let (own_tx, own_rx) = watch::channel(self.own.clone());
        let patcher = self.api.clone();
        tokio::spawn(async move {
            let watching = watch_nodes(self, control, own_tx);
            let patching = clear_network_unavailable(patcher, me, ready, own_rx);
            tokio::join!(watching, patching);
        })
    }
}

impl From<watcher::Event<Node>> for WatchEvent {
    fn from(event: watcher::Event<Node>) -> WatchEvent {
        match event {
            watcher::Event::Init => WatchEvent::Init,
            watcher::Event::InitApply(n) => WatchEvent::InitApply(NodeFacts::from(&n)),
            watcher::Event::InitDone => WatchEvent::InitDone,
            watcher::Event::Apply(n) => WatchEvent::Apply(NodeFacts::from(&n)),
            watcher::Event::Delete(n) => WatchEvent::Delete(NodeFacts::from(&n)),
        }
    }
}

/// Lists the Nodes, retrying with backoff for up to [`START_BUDGET`].
async fn list_nodes(api: &Api<Node>) -> anyhow::Result<Vec<Node>> {
    let deadline = Instant::now() + START_BUDGET;
    let mut delay = Duration::from_secs(1);
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => return Ok(list.items),
            Err(e) if Instant::now() < deadline => {
                let wait = delay.min(deadline.saturating_duration_since(Instant::now()));
                warn!("cannot list Nodes from the Kubernetes API ({e}); retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                delay *= 2;
            }
            Err(e) => {
                return Err(anyhow!(
                    "cannot list Nodes from the Kubernetes API (tried for {START_BUDGET:?}): {e}"
                ))
            }
        }
    }
}

/// Feeds Node events to the control plane until it is gone.
async fn watch_nodes(mut s: Session, control: ControlHandle, own_tx: watch::Sender<NodeFacts>) {
    let stream = watcher(s.api.clone(), watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut failing = false;
    let mut warned_block = false;
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                if failing {
                    debug!("watching Nodes failed again: {e}");
                } else {
                    warn!("watching Nodes failed: {e}; retrying with backoff");
                }
                failing = true;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            info!("watching Nodes again");
        }
        let changes = s.peers.handle(WatchEvent::from(event));
        for addr in changes.added {
            info!(%addr, "Kubernetes: dialing a Node's InternalIP");
            if !control.add_target(addr).await {
                return;
            }
        }
        for addr in changes.removed {
            info!(%addr, "Kubernetes: no Node has this address any more");
            if !control.remove_target(addr).await {
                return;
            }
        }
        if let Some(own) = changes.own {
            let now = pod_cidr_claim(&own, s.cluster, s.prefix).ok().flatten();
            if now.map(|c| c.block) != s.claim.map(|c| c.block) && !warned_block {
                warned_block = true;
                warn!(
                    "spec.podCIDR of Node {} is now {:?}, this agent started with {:?}: restart the agent to use it",
                    own.name, own.pod_cidrs, s.claim.map(|c| c.block)
                );
            }
            own_tx.send_replace(own);
        }
    }
}

/// Sets `NetworkUnavailable=False` on Node `me` whenever the node is ready and the Node does
/// not say so already; errors are retried with exponential backoff. Ends when the watch ends.
async fn clear_network_unavailable(
    api: Api<Node>,
    me: String,
    ready: Readiness,
    mut own_rx: watch::Receiver<NodeFacts>,
) {
    let mut latest = own_rx.borrow_and_update().clone();
    let mut delay = PATCH_BACKOFF.0;
    let mut next_try = Instant::now();
    loop {
        let wanted = ready.get() && needs_network_patch(&latest);
        let now = Instant::now();
        if wanted && now >= next_try {
            let patch = Patch::Strategic(network_available_patch(unix_now()));
            match api.patch_status(&me, &PatchParams::default(), &patch).await {
                Ok(node) => {
                    info!(
                        "Kubernetes: Node {me} has NetworkUnavailable=False ({CONDITION_REASON})"
                    );
                    latest = NodeFacts::from(&node);
                    delay = PATCH_BACKOFF.0;
                    // At most one patch a second, whatever the server answers.
                    next_try = now + delay;
                }
                Err(e) => {
                    warn!(
                        "cannot clear NetworkUnavailable on Node {me} ({e}); retrying in {delay:?}"
                    );
                    next_try = now + delay;
                    delay = (delay * 2).min(PATCH_BACKOFF.1);
                }
            }
            continue;
        }
        let wait = if !ready.get() {
            READY_POLL
        } else if wanted {
            next_try.saturating_duration_since(now)
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            changed = own_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                latest = own_rx.borrow_and_update().clone();
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
