//! Kubernetes discovery logic against API objects in the shape the API returns them
//! (`tests/fixtures/kubernetes/`): a NodeList of a kubeadm cluster (control plane with its
//! taint, a worker with ExternalIP and dual-stack InternalIPs and podCIDRs, a not-ready worker
//! without a podCIDR) and a watch stream (ADDED, MODIFIED, BOOKMARK, DELETED). No cluster and
//! no `k8s` feature needed; `kubernetes_api.rs` runs the same objects through kube-rs.

use overlay_agent::kubernetes::time::parse_rfc3339;
use overlay_agent::kubernetes::{
    kubernetes_epoch, needs_network_patch, network_available_patch, pod_cidr_claim, ApiNode,
    ApiNodeList, BlockError, NodeFacts, PeerChanges, PeerSet, WatchEvent, KUBERNETES_EPOCH_FLOOR,
};
use overlay_proto::ipam::claim_beats;
use overlay_proto::topology::Claim;
use overlay_proto::PeerName;
use serde::Deserialize;
use std::net::SocketAddr;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubernetes");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

fn listed() -> Vec<NodeFacts> {
    let list: ApiNodeList = serde_json::from_str(&fixture("nodes.json")).expect("NodeList");
    list.items.iter().map(NodeFacts::from).collect()
}

/// One line of the watch stream: `{"type": "ADDED", "object": {...}}`.
#[derive(Deserialize)]
struct ApiWatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: ApiNode,
}

/// The watch stream as kube-runtime's watcher turns it into events (bookmarks only move the
/// resource version).
fn watched() -> Vec<WatchEvent> {
    fixture("watch-events.jsonl")
        .lines()
        .filter_map(|line| {
            let e: ApiWatchEvent = serde_json::from_str(line).expect("watch event");
            let node = NodeFacts::from(&e.object);
            match e.kind.as_str() {
                "ADDED" | "MODIFIED" => Some(WatchEvent::Apply(node)),
                "DELETED" => Some(WatchEvent::Delete(node)),
                "BOOKMARK" => None,
                other => panic!("unexpected watch event type {other}"),
            }
        })
        .collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn facts<'a>(nodes: &'a [NodeFacts], name: &str) -> &'a NodeFacts {
    nodes.iter().find(|n| n.name == name).expect("listed")
}

/// A PeerSet for `me` fed the NodeList as an initial list.
fn listed_peers(me: &str) -> (PeerSet, PeerChanges) {
    let mut peers = PeerSet::new(me, 6783);
    let mut all = PeerChanges::default();
    for event in std::iter::once(WatchEvent::Init)
        .chain(listed().into_iter().map(WatchEvent::InitApply))
        .chain(std::iter::once(WatchEvent::InitDone))
    {
        let c = peers.handle(event);
        all.added.extend(c.added);
        all.removed.extend(c.removed);
        all.own = c.own.or(all.own);
    }
    (peers, all)
}

#[test]
fn a_node_list_gives_internal_ips_pod_cidrs_and_the_condition() {
    let nodes = listed();
    assert_eq!(nodes.len(), 3);
    let cp = facts(&nodes, "cp-1");
    assert_eq!(cp.internal_ip, Some([192, 0, 2, 10].into()));
    assert_eq!(cp.pod_cidrs, ["10.32.0.0/24"]);
    assert_eq!(cp.created, parse_rfc3339("2025-03-04T09:00:12Z"));
    assert_eq!(cp.network_unavailable.as_deref(), Some("True"));
    let w1 = facts(&nodes, "worker-1");
    assert_eq!(
        w1.internal_ip,
        Some([192, 0, 2, 11].into()),
        "the InternalIP, not the ExternalIP"
    );
    assert_eq!(w1.pod_cidrs, ["10.32.1.0/24", "fd00:10:32:1::/64"]);
    let w2 = facts(&nodes, "worker-2");
    assert_eq!(
        w2.internal_ip,
        Some([192, 0, 2, 12].into()),
        "the IPv4 InternalIP even when an IPv6 one comes first"
    );
    assert!(w2.pod_cidrs.is_empty());
    assert_eq!(w2.network_unavailable, None);
}

#[test]
fn every_other_node_is_a_peer_at_the_listen_port() {
    let (peers, changes) = listed_peers("cp-1");
    assert_eq!(
        changes.added,
        [addr("192.0.2.11:6783"), addr("192.0.2.12:6783")]
    );
    assert!(changes.removed.is_empty());
    assert_eq!(changes.own.map(|n| n.name), Some("cp-1".to_owned()));
    assert_eq!(peers.own().map(|n| n.name.as_str()), Some("cp-1"));
    let (peers, _) = listed_peers("worker-2");
    assert_eq!(
        peers.peers().into_iter().collect::<Vec<_>>(),
        [addr("192.0.2.10:6783"), addr("192.0.2.11:6783")]
    );
}

#[test]
fn watch_events_add_move_and_remove_peers() {
    let (mut peers, _) = listed_peers("cp-1");
    let changes: Vec<PeerChanges> = watched().into_iter().map(|e| peers.handle(e)).collect();
    assert_eq!(changes.len(), 4);
    // ADDED worker-3.
    assert_eq!(changes[0].added, [addr("192.0.2.13:6783")]);
    assert!(changes[0].removed.is_empty() && changes[0].own.is_none());
    // MODIFIED worker-1: its InternalIP changed.
    assert_eq!(changes[1].added, [addr("192.0.2.21:6783")]);
    assert_eq!(changes[1].removed, [addr("192.0.2.11:6783")]);
    // MODIFIED cp-1 (this node): NetworkUnavailable is now False; no peer changes.
    assert!(changes[2].added.is_empty() && changes[2].removed.is_empty());
    let own = changes[2].own.as_ref().expect("own node");
    assert_eq!(own.network_unavailable.as_deref(), Some("False"));
    assert!(!needs_network_patch(own));
    // DELETED worker-2.
    assert_eq!(changes[3].removed, [addr("192.0.2.12:6783")]);
    assert!(changes[3].added.is_empty());
    assert_eq!(
        peers.peers().into_iter().collect::<Vec<_>>(),
        [addr("192.0.2.13:6783"), addr("192.0.2.21:6783")]
    );
}

#[test]
fn a_relist_removes_nodes_deleted_while_the_watch_was_down_only_when_complete() {
    let (mut peers, _) = listed_peers("cp-1");
    let nodes = listed();
    assert!(peers.handle(WatchEvent::Init).is_empty());
    for name in ["cp-1", "worker-1"] {
        let c = peers.handle(WatchEvent::InitApply(facts(&nodes, name).clone()));
        assert!(c.added.is_empty() && c.removed.is_empty(), "{c:?}");
    }
    assert_eq!(peers.peers().len(), 2, "nothing removed mid-relist");
    let done = peers.handle(WatchEvent::InitDone);
    assert_eq!(done.removed, [addr("192.0.2.12:6783")]);
    assert!(done.added.is_empty());
}

#[test]
fn two_nodes_with_one_address_count_once_and_a_node_without_one_is_no_peer() {
    let nodes = listed();
    let mut peers = PeerSet::new("cp-1", 7000);
    let mut twin = facts(&nodes, "worker-1").clone();
    twin.name = "worker-1-twin".into();
    assert_eq!(
        peers
            .handle(WatchEvent::Apply(facts(&nodes, "worker-1").clone()))
            .added,
        [addr("192.0.2.11:7000")]
    );
    assert!(peers.handle(WatchEvent::Apply(twin.clone())).is_empty());
    assert!(peers
        .handle(WatchEvent::Delete(facts(&nodes, "worker-1").clone()))
        .is_empty());
    assert_eq!(
        peers.handle(WatchEvent::Delete(twin)).removed,
        [addr("192.0.2.11:7000")]
    );
    let mut bare = facts(&nodes, "worker-2").clone();
    bare.internal_ip = None;
    assert!(peers.handle(WatchEvent::Apply(bare)).is_empty());
    assert!(peers.peers().is_empty());
}

#[test]
fn the_pod_cidr_is_the_block_with_an_epoch_that_wins() {
    let nodes = listed();
    let cluster = "10.32.0.0/12".parse().expect("cidr");
    let claim = pod_cidr_claim(facts(&nodes, "cp-1"), cluster, 24)
        .expect("fits")
        .expect("has a podCIDR");
    assert_eq!(claim.block, "10.32.0.0/24".parse().expect("cidr"));
    let created = parse_rfc3339("2025-03-04T09:00:12Z").expect("time");
    assert_eq!(i64::from(claim.epoch), created);
    assert!(claim.epoch >= KUBERNETES_EPOCH_FLOOR);
    // Dual stack: the IPv4 podCIDR.
    let w1 = pod_cidr_claim(facts(&nodes, "worker-1"), cluster, 24).expect("fits");
    assert_eq!(
        w1.map(|c| c.block),
        Some("10.32.1.0/24".parse().expect("cidr"))
    );
    // No podCIDR: the node claims by gossip.
    assert_eq!(
        pod_cidr_claim(facts(&nodes, "worker-2"), cluster, 24),
        Ok(None)
    );

    let name = |s: &str| PeerName::new(s).expect("name");
    let gossip = Claim {
        block: claim.block,
        epoch: 0,
    };
    let taken_over = Claim {
        block: claim.block,
        epoch: 41,
    };
    for other in [gossip, taken_over] {
        assert!(
            claim_beats(&claim, &name("zz-last"), &other, &name("a-first")),
            "{other:?}"
        );
    }
    // Kubernetes reused the podCIDR of a deleted Node for a newer one: the newer one wins
    // over the record the old Node's agent left, whatever their names.
    let newer = Claim {
        block: claim.block,
        epoch: kubernetes_epoch(Some(created + 3600)),
    };
    assert!(claim_beats(&newer, &name("z"), &claim, &name("a")));
    assert_eq!(kubernetes_epoch(None), KUBERNETES_EPOCH_FLOOR);
    assert_eq!(kubernetes_epoch(Some(i64::MAX)), u32::MAX);
}

#[test]
fn a_pod_cidr_that_does_not_fit_is_refused_with_what_to_set() {
    let nodes = listed();
    let w1 = facts(&nodes, "worker-1");
    let e = pod_cidr_claim(w1, "10.244.0.0/16".parse().expect("cidr"), 24).expect_err("outside");
    assert!(matches!(e, BlockError::OutsideCluster { .. }));
    assert_eq!(
        e.to_string(),
        "spec.podCIDR 10.32.1.0/24 of Node worker-1 is not inside --cluster-cidr 10.244.0.0/16: \
         set OVERLAY_CLUSTER_CIDR (--cluster-cidr) to the cluster's pod range \
         (kube-controller-manager --cluster-cidr, kubeadm --pod-network-cidr)"
    );
    let e = pod_cidr_claim(w1, "10.32.0.0/12".parse().expect("cidr"), 26).expect_err("size");
    assert_eq!(
        e.to_string(),
        "spec.podCIDR 10.32.1.0/24 of Node worker-1 is a /24 but --subnet-prefix is 26: \
         set OVERLAY_SUBNET_PREFIX (--subnet-prefix) to 24, the cluster's node CIDR mask size"
    );
    let mut odd = w1.clone();
    odd.pod_cidrs = vec!["10.32.1.0/33".into()];
    assert!(matches!(
        pod_cidr_claim(&odd, "10.32.0.0/12".parse().expect("cidr"), 24),
        Err(BlockError::Unparsable { .. })
    ));
    odd.pod_cidrs = vec!["fd00:10:32:1::/64".into()];
    assert_eq!(
        pod_cidr_claim(&odd, "10.32.0.0/12".parse().expect("cidr"), 24),
        Ok(None),
        "IPv6 only: claim by gossip"
    );
}

#[test]
fn the_status_patch_is_exactly_the_recorded_body() {
    let want: serde_json::Value =
        serde_json::from_str(&fixture("network-available-patch.json")).expect("json");
    let at = parse_rfc3339("2025-03-04T09:21:00Z").expect("time");
    assert_eq!(network_available_patch(at), want);
    // The watch then shows the condition as the patch left it, and no further patch is due.
    let nodes = listed();
    assert!(needs_network_patch(facts(&nodes, "cp-1")), "True");
    assert!(needs_network_patch(facts(&nodes, "worker-2")), "absent");
}
