//! The Node's `NetworkUnavailable` condition, cleared once this node's network is up.
//!
//! Cloud node controllers (and some installers) register Nodes with `NetworkUnavailable=True`
//! and the scheduler keeps pods off them until the network plugin says otherwise, as Weave
//! (`WeaveIsUp`), flannel (`FlannelIsUp`) and Calico (`CalicoIsUp`) do: a strategic merge patch
//! of the `status` subresource. `status.conditions` merges by `type`, so the patch replaces
//! this one condition and leaves the kubelet's (`Ready`, `MemoryPressure`, ...) alone; a JSON
//! merge patch would replace the whole list.

use super::node::NodeFacts;
use super::time::format_rfc3339;
use serde_json::{json, Value};

/// The condition's `type`.
pub const CONDITION_TYPE: &str = "NetworkUnavailable";
/// The condition's `reason` once the overlay is up.
pub const CONDITION_REASON: &str = "OverlayIsUp";
/// The condition's `message` once the overlay is up.
pub const CONDITION_MESSAGE: &str = "overlay is running on this node";
/// Content type of the patch body ([`network_available_patch`]).
pub const PATCH_CONTENT_TYPE: &str = "application/strategic-merge-patch+json";

/// True unless the Node already says its network is available (`NetworkUnavailable=False`).
/// A Node without the condition gets it too, so `kubectl describe node` shows who set it up.
pub fn needs_network_patch(node: &NodeFacts) -> bool {
    node.network_unavailable.as_deref() != Some("False")
}

/// The body of the strategic merge patch of `nodes/{name}/status` that sets
/// `NetworkUnavailable=False`, at `now` (Unix seconds). Sent only when the condition changes
/// ([`needs_network_patch`]), so `lastTransitionTime` is the time of the transition.
pub fn network_available_patch(now: i64) -> Value {
    let time = format_rfc3339(now);
    json!({
        "status": {
            "conditions": [{
                "type": CONDITION_TYPE,
                "status": "False",
                "reason": CONDITION_REASON,
                "message": CONDITION_MESSAGE,
                "lastTransitionTime": time,
                "lastHeartbeatTime": time,
            }]
        }
    })
}
