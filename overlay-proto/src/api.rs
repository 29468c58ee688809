//! JSON bodies of the agent's local IPAM API, shared by the agent and the CNI plugin.
//!
//! | request | answer |
//! |---|---|
//! | `POST /ipam/allocations` with [`AllocateRequest`] | 200 [`Allocation`] (the same address again for the same key) |
//! | `GET /ipam/allocations/{container_id}/{ifname}` | 200 [`Allocation`], 404 when none |
//! | `DELETE /ipam/allocations/{container_id}/{ifname}` | 204 whether or not one was held |
//! | `GET /ipam/allocations` | 200 [`AllocationList`]: every address held (for CNI GC) |
//!
//! While the agent has no block yet every call answers 503 with an [`ApiError`]; a client
//! should retry (bounded). Other errors answer 4xx/5xx with an [`ApiError`].

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Longest container id accepted.
pub const MAX_CONTAINER_ID_LEN: usize = 256;
/// Longest interface name accepted (Linux IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Ask for a pod address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateRequest {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
}

impl AllocateRequest {
    /// The key the address is held under, after checking both parts.
    pub fn key(&self) -> Result<String, KeyError> {
        allocation_key(&self.container_id, &self.ifname)
    }
}

/// Why a container id and interface name cannot key an allocation. The message names the
/// value and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// CNI_CONTAINERID is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    #[error("container id {0:?} must be 1 to {MAX_CONTAINER_ID_LEN} characters of [A-Za-z0-9._-]")]
    ContainerId(String),
    /// CNI_IFNAME is empty, too long, or has a `/` or a non-printable character.
    #[error("interface name {0:?} must be 1 to {MAX_IFNAME_LEN} printable characters without '/'")]
    Ifname(String),
}

/// The key an address is held under: `container_id/ifname`, both parts checked.
pub fn allocation_key(container_id: &str, ifname: &str) -> Result<String, KeyError> {
    let id_ok = !container_id.is_empty()
        && container_id.len() <= MAX_CONTAINER_ID_LEN
        && container_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !id_ok {
        return Err(KeyError::ContainerId(container_id.to_owned()));
    }
    let if_ok = !ifname.is_empty()
        && ifname.len() <= MAX_IFNAME_LEN
        && ifname.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if !if_ok {
        return Err(KeyError::Ifname(ifname.to_owned()));
    }
    Ok(format!("{container_id}/{ifname}"))
}

/// A pod's address and what the plugin needs to wire it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The pod address with the block's prefix length, e.g. `10.32.1.2/24`.
    pub address: Ipv4Net,
    /// The node address, the pod's default gateway (first host of the block).
    pub gateway: Ipv4Addr,
    /// The overlay cluster range.
    pub cluster: Ipv4Net,
    /// MTU for the pod interface (the overlay MTU).
    pub mtu: u32,
}

/// One address held, as listed by `GET /ipam/allocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAllocation {
    /// CNI_CONTAINERID it was allocated for.
    pub container_id: String,
    /// CNI_IFNAME it was allocated for.
    pub ifname: String,
    /// The pod address.
    pub address: Ipv4Addr,
}

impl HeldAllocation {
    /// The entry for `key` (as made by [`allocation_key`]); `None` for a key without a `/`.
    pub fn from_key(key: &str, address: Ipv4Addr) -> Option<HeldAllocation> {
        let (container_id, ifname) = key.split_once('/')?;
        Some(HeldAllocation {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
            address,
        })
    }
}

/// Answer to `GET /ipam/allocations`: the node's block and every address held in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationList {
    /// The node's block.
    pub block: Ipv4Net,
    /// Every allocation, ordered by key.
    pub allocations: Vec<HeldAllocation>,
}

/// Body of `POST /connect` and `POST /forget`: a peer address as `--peer` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRequest {
    /// `HOST[:PORT]` (port default 6783).
    pub address: String,
}

/// Answer to `POST /connect` and `POST /forget`: the address it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetResponse {
    /// The resolved address.
    pub address: std::net::SocketAddr,
}

/// Error body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for a person.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert_eq!(allocation_key("abc-1", "eth0").as_deref(), Ok("abc-1/eth0"));
        for id in ["", "a/b", &"x".repeat(257)] {
            assert_eq!(
                allocation_key(id, "eth0"),
                Err(KeyError::ContainerId(id.to_owned()))
            );
        }
        for ifname in ["", "a/b", "sixteen-chars-xx"] {
            assert_eq!(
                allocation_key("abc", ifname),
                Err(KeyError::Ifname(ifname.to_owned()))
            );
        }
        assert_eq!(
            KeyError::Ifname("a/b".into()).to_string(),
            "interface name \"a/b\" must be 1 to 15 printable characters without '/'"
        );
    }

    #[test]
    fn listed_allocations_split_their_key() {
        let ip = Ipv4Addr::new(10, 32, 1, 2);
        let key = allocation_key("abc-1", "eth0").expect("key");
        let held = HeldAllocation::from_key(&key, ip).expect("entry");
        assert_eq!(
            (held.container_id.as_str(), held.ifname.as_str()),
            ("abc-1", "eth0")
        );
        assert_eq!(held.address, ip);
        assert_eq!(HeldAllocation::from_key("no-slash", ip), None);
        let list = AllocationList {
            block: "10.32.1.0/24".parse().expect("net"),
            allocations: vec![held],
        };
        assert_eq!(
            serde_json::to_value(&list).expect("json"),
            serde_json::json!({"block": "10.32.1.0/24", "allocations": [
                {"container_id": "abc-1", "ifname": "eth0", "address": "10.32.1.2"}]})
        );
    }
}
