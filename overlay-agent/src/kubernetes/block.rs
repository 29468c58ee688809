//! This node's block from its Node's `spec.podCIDR`.
//!
//! When Kubernetes assigns pod ranges (kube-controller-manager `--allocate-node-cidrs`), the
//! node's block is its IPv4 podCIDR, claimed with an epoch that beats every claim the gossip
//! rules make ([`kubernetes_epoch`]; see "Blocks assigned by Kubernetes" in
//! [`overlay_proto::ipam`]). The podCIDR must be a `--subnet-prefix` block of `--cluster-cidr`:
//! every agent must agree on the block size, and the data path routes only the cluster range,
//! so a podCIDR that does not fit is refused at start with one line saying what to set.

use super::node::NodeFacts;
use ipnet::{IpNet, Ipv4Net};
use overlay_proto::topology::Claim;

/// The lowest epoch of a claim assigned by Kubernetes: 2^30 (a Node created before 2004).
/// The gossip rules start claims at epoch 0 and raise them by one per takeover.
pub const KUBERNETES_EPOCH_FLOOR: u32 = 1 << 30;

/// Why a Node's podCIDR cannot be this node's block. Each message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Not a CIDR.
    #[error("spec.podCIDR {cidr:?} of Node {node} is not a CIDR")]
    Unparsable {
        /// The Node.
        node: String,
        /// The podCIDR as given.
        cidr: String,
    },
    /// A podCIDR of another size than `--subnet-prefix`.
    #[error("spec.podCIDR {cidr} of Node {node} is a /{len} but --subnet-prefix is {prefix}: set OVERLAY_SUBNET_PREFIX (--subnet-prefix) to {len}, the cluster's node CIDR mask size")]
    WrongSize {
        /// The Node.
        node: String,
        /// The podCIDR.
        cidr: Ipv4Net,
        /// Its prefix length.
        len: u8,
        /// `--subnet-prefix`.
        prefix: u8,
    },
    /// A podCIDR outside `--cluster-cidr`.
    #[error("spec.podCIDR {cidr} of Node {node} is not inside --cluster-cidr {cluster}: set OVERLAY_CLUSTER_CIDR (--cluster-cidr) to the cluster's pod range (kube-controller-manager --cluster-cidr, kubeadm --pod-network-cidr)")]
    OutsideCluster {
        /// The Node.
        node: String,
        /// The podCIDR.
        cidr: Ipv4Net,
        /// `--cluster-cidr`.
        cluster: Ipv4Net,
    },
}

/// The epoch of a claim on a podCIDR assigned to a Node created at `created` (Unix seconds):
/// its creation time, at least [`KUBERNETES_EPOCH_FLOOR`]. A Node created later with a podCIDR
/// that Kubernetes reused (after deleting the Node that had it) wins over the record that the
/// deleted Node's agent left behind.
pub fn kubernetes_epoch(created: Option<i64>) -> u32 {
    let secs = created.unwrap_or(0);
    u32::try_from(secs.max(i64::from(KUBERNETES_EPOCH_FLOOR))).unwrap_or(u32::MAX)
}

/// The claim on `node`'s IPv4 podCIDR, `None` when it has none (IPv6-only podCIDRs count as
/// none: the overlay carries IPv4).
pub fn pod_cidr_claim(
    node: &NodeFacts,
    cluster: Ipv4Net,
    prefix: u8,
) -> Result<Option<Claim>, BlockError> {
    let mut v4 = None;
    for given in &node.pod_cidrs {
        match given.trim().parse::<IpNet>() {
            Ok(IpNet::V4(net)) => {
                v4 = Some(net);
                break;
            }
            Ok(IpNet::V6(_)) => {}
            Err(_) => {
                return Err(BlockError::Unparsable {
                    node: node.name.clone(),
                    cidr: given.clone(),
                })
            }
        }
    }
    let Some(cidr) = v4 else { return Ok(None) };
    let cidr = cidr.trunc();
    if cidr.prefix_len() != prefix {
        return Err(BlockError::WrongSize {
            node: node.name.clone(),
            cidr,
            len: cidr.prefix_len(),
            prefix,
        });
    }
    if !cluster.contains(&cidr) {
        return Err(BlockError::OutsideCluster {
            node: node.name.clone(),
            cidr,
            cluster,
        });
    }
    Ok(Some(Claim {
        block: cidr,
        epoch: kubernetes_epoch(node.created),
    }))
}
