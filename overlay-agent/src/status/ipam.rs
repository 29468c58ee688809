//! The IPAM view (`GET /status/ipam`, `overlay-agent status ipam`): the cluster range, which
//! peer owns which block, and the pod addresses this node handed out.
//!
//! ```text
//!      Range: 10.32.0.0/12 (4096 blocks of /24, 3 owned)
//!     Subnet: 10.32.0.0/24 (node address 10.32.0.1)
//!  Addresses: 2 of 253 allocated
//!
//! BLOCK         OWNER  STATE
//! 10.32.0.0/24  node0  this node
//! 10.32.1.0/24  node1  reachable
//!
//! ADDRESS    CONTAINER  IFNAME
//! 10.32.0.2  4f2a...    eth0
//! ```

use super::Status;
use ipnet::Ipv4Net;
use overlay_proto::api::HeldAllocation;
use overlay_proto::ipam::{block_count, node_address, BlockAllocator};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::net::Ipv4Addr;

/// One owned block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    /// The block.
    pub block: Ipv4Net,
    /// Its owner.
    pub owner: String,
    /// True for this node's block.
    pub local: bool,
    /// True when the owner is reachable (always for this node).
    pub reachable: bool,
}

/// The IPAM state of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamView {
    /// The cluster range.
    pub cluster: Ipv4Net,
    /// The node's block, once claimed.
    pub subnet: Option<Ipv4Net>,
    /// The node's own address in its block.
    pub address: Option<Ipv4Addr>,
    /// Blocks of that size in the range (0 without a block).
    pub blocks_in_range: u32,
    /// Pod addresses the node's block holds (every host but the node's own).
    pub capacity: u64,
    /// Pod addresses handed out.
    pub allocated: u64,
    /// Every owned block, ordered by address.
    pub blocks: Vec<BlockView>,
    /// This node's allocations, ordered by key.
    pub allocations: Vec<HeldAllocation>,
}

/// The view of `s` with this node's `allocations` (empty without a block).
pub fn ipam(s: &Status, allocations: Vec<HeldAllocation>) -> IpamView {
    let mut blocks: Vec<BlockView> = s
        .peers
        .iter()
        .filter_map(|p| {
            Some(BlockView {
                block: p.subnet?,
                owner: p.name.clone(),
                local: false,
                reachable: p.reachable,
            })
        })
        .collect();
    if let Some(subnet) = s.subnet {
        blocks.push(BlockView {
            block: subnet,
            owner: s.name.clone(),
            local: true,
            reachable: true,
        });
    }
    blocks.sort_by_key(|b| b.block);
    IpamView {
        cluster: s.cluster,
        subnet: s.subnet,
        address: s.subnet.map(node_address),
        blocks_in_range: s
            .subnet
            .map_or(0, |b| block_count(s.cluster, b.prefix_len())),
        capacity: s
            .subnet
            .map_or(0, |b| BlockAllocator::new(b).capacity() as u64),
        allocated: allocations.len() as u64,
        blocks,
        allocations,
    }
}

/// The summary, the block table and the allocation table.
pub fn render(v: &IpamView) -> String {
    let mut out = String::new();
    let _ = write!(out, "     Range: {}", v.cluster);
    if let Some(subnet) = v.subnet {
        let _ = write!(
            out,
            " ({} blocks of /{}, {} owned)",
            v.blocks_in_range,
            subnet.prefix_len(),
            v.blocks.len()
        );
    }
    out.push('\n');
    match (v.subnet, v.address) {
        (Some(subnet), Some(address)) => {
            let _ = writeln!(out, "    Subnet: {subnet} (node address {address})");
            let _ = writeln!(
                out,
                " Addresses: {} of {} allocated",
                v.allocated, v.capacity
            );
        }
        _ => out.push_str("    Subnet: - (no block claimed yet)\n"),
    }
    if !v.blocks.is_empty() {
        let rows: Vec<[String; 3]> = v
            .blocks
            .iter()
            .map(|b| {
                let state = match (b.local, b.reachable) {
                    (true, _) => "this node",
                    (false, true) => "reachable",
                    (false, false) => "unreachable",
                };
                [b.block.to_string(), b.owner.clone(), state.to_owned()]
            })
            .collect();
        out.push('\n');
        super::text::table(&mut out, ["BLOCK", "OWNER", "STATE"], &rows);
    }
    if !v.allocations.is_empty() {
        let rows: Vec<[String; 3]> = v
            .allocations
            .iter()
            .map(|a| {
                [
                    a.address.to_string(),
                    a.container_id.clone(),
                    a.ifname.clone(),
                ]
            })
            .collect();
        out.push('\n');
        super::text::table(&mut out, ["ADDRESS", "CONTAINER", "IFNAME"], &rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::text::tests::sample;

    #[test]
    fn blocks_owners_and_allocations() {
        let s = sample();
        let view = ipam(
            &s,
            vec![HeldAllocation {
                container_id: "abc".into(),
                ifname: "eth0".into(),
                address: [10, 32, 5, 2].into(),
            }],
        );
        assert_eq!(view.capacity, 253);
        assert_eq!(view.blocks_in_range, 4096);
        assert_eq!(
            render(&view),
            "     Range: 10.32.0.0/12 (4096 blocks of /24, 2 owned)
    Subnet: 10.32.5.0/24 (node address 10.32.5.1)
 Addresses: 1 of 253 allocated

BLOCK         OWNER   STATE
10.32.5.0/24  node-a  this node
10.32.7.0/24  node-b  reachable

ADDRESS    CONTAINER  IFNAME
10.32.5.2  abc        eth0
"
        );
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json["allocated"], 1);
        assert_eq!(json["blocks"][1]["owner"], "node-b");
    }

    #[test]
    fn no_block_yet() {
        let mut s = sample();
        s.subnet = None;
        s.peers.clear();
        let view = ipam(&s, Vec::new());
        assert_eq!(
            render(&view),
            "     Range: 10.32.0.0/12\n    Subnet: - (no block claimed yet)\n"
        );
    }
}
