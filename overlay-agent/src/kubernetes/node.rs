//! What discovery needs from a Node object, read from the API's JSON ([`ApiNode`]) or, with
//! the `k8s` feature, from k8s-openapi's `Node`: both give the same [`NodeFacts`].

use super::time::parse_rfc3339;
use serde::Deserialize;
use std::net::IpAddr;

/// The facts of one Node that discovery uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.creationTimestamp` in Unix seconds.
    pub created: Option<i64>,
    /// The node's underlay address: its first IPv4 `InternalIP`, else its first `InternalIP`.
    pub internal_ip: Option<IpAddr>,
    /// `spec.podCIDRs`, else `[spec.podCIDR]`, else empty; as given (checked later).
    pub pod_cidrs: Vec<String>,
    /// The status of the `NetworkUnavailable` condition (`"True"`, `"False"`, `"Unknown"`),
    /// `None` when the node has no such condition.
    pub network_unavailable: Option<String>,
}

impl NodeFacts {
    /// Builds the facts from the raw fields of a Node.
    fn from_parts<'a>(
        name: Option<&str>,
        created: Option<i64>,
        addresses: impl Iterator<Item = (&'a str, &'a str)>,
        pod_cidr: Option<&str>,
        pod_cidrs: Option<&[String]>,
        conditions: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> NodeFacts {
        let internal: Vec<IpAddr> = addresses
            .filter(|(kind, _)| *kind == "InternalIP")
            .filter_map(|(_, address)| address.trim().parse().ok())
            .collect();
        let internal_ip = internal
            .iter()
            .find(|ip| ip.is_ipv4())
            .or(internal.first())
            .copied();
        let pod_cidrs = match (pod_cidrs, pod_cidr) {
            (Some(list), _) if !list.is_empty() => list.to_vec(),
            (_, Some(one)) if !one.is_empty() => vec![one.to_owned()],
            _ => Vec::new(),
        };
        let network_unavailable = conditions
            .filter(|(kind, _)| *kind == "NetworkUnavailable")
            .map(|(_, status)| status.to_owned())
            .next();
        NodeFacts {
            name: name.unwrap_or_default().to_owned(),
            created,
            internal_ip,
            pod_cidrs,
            network_unavailable,
        }
    }
}

/// A Node as the API returns it, reduced to the fields discovery reads (others are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApiNode {
    /// `metadata`.
    pub metadata: ApiMeta,
    /// `spec`.
    pub spec: ApiNodeSpec,
    /// `status`.
    pub status: ApiNodeStatus,
}

/// `metadata` of an [`ApiNode`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ApiMeta {
    /// `name`.
    pub name: Option<String>,
    /// `creationTimestamp` (RFC 3339).
    pub creation_timestamp: Option<String>,
}

/// `spec` of an [`ApiNode`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApiNodeSpec {
    /// `podCIDR`.
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    /// `podCIDRs` (one per address family).
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Option<Vec<String>>,
}

/// `status` of an [`ApiNode`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApiNodeStatus {
    /// `addresses`.
    pub addresses: Option<Vec<ApiTyped>>,
    /// `conditions`.
    pub conditions: Option<Vec<ApiTyped>>,
}

/// An entry of `status.addresses` (`type`, `address`) or `status.conditions` (`type`,
/// `status`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApiTyped {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `address` of an address.
    pub address: String,
    /// `status` of a condition.
    pub status: String,
}

/// A `NodeList` as the API returns it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApiNodeList {
    /// `items`.
    pub items: Vec<ApiNode>,
}

impl From<&ApiNode> for NodeFacts {
    fn from(n: &ApiNode) -> NodeFacts {
        NodeFacts::from_parts(
            n.metadata.name.as_deref(),
            n.metadata
                .creation_timestamp
                .as_deref()
                .and_then(parse_rfc3339),
            typed(&n.status.addresses, |t| &t.address),
            n.spec.pod_cidr.as_deref(),
            n.spec.pod_cidrs.as_deref(),
            typed(&n.status.conditions, |t| &t.status),
        )
    }
}

/// `(type, value)` of each entry of `list`.
fn typed(
    list: &Option<Vec<ApiTyped>>,
    value: fn(&ApiTyped) -> &str,
) -> impl Iterator<Item = (&str, &str)> {
    list.iter()
        .flatten()
        .map(move |t| (t.kind.as_str(), value(t)))
}

#[cfg(feature = "k8s")]
impl From<&k8s_openapi::api::core::v1::Node> for NodeFacts {
    fn from(n: &k8s_openapi::api::core::v1::Node) -> NodeFacts {
        let spec = n.spec.as_ref();
        let status = n.status.as_ref();
        NodeFacts::from_parts(
            n.metadata.name.as_deref(),
            n.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.timestamp()),
            status
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .map(|a| (a.type_.as_str(), a.address.as_str())),
            spec.and_then(|s| s.pod_cidr.as_deref()),
            spec.and_then(|s| s.pod_cidrs.as_deref()),
            status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .map(|c| (c.type_.as_str(), c.status.as_str())),
        )
    }
}
