//! The CNI 1.0.0 result printed after ADD, and the VERSION answer.
//!
//! The types also deserialize, so a `prevResult` from a chain can be read into them.

use crate::wiring::Wired;
use ipnet::IpNet;
use overlay_proto::api::Allocation;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;

/// A CNI 1.0.0 success result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    /// The configuration's `cniVersion`.
    pub cni_version: String,
    /// Interfaces created or touched.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// Routes installed in the sandbox.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// DNS settings (none from this plugin).
    #[serde(default)]
    pub dns: Dns,
}

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The namespace path for interfaces inside the sandbox; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// One address of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.32.1.2/24`.
    pub address: IpNet,
    /// Default gateway of that subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces` of the interface holding the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// One route of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination, e.g. `0.0.0.0/0`.
    pub dst: IpNet,
    /// Next hop (the interface's gateway when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// DNS settings of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// Index of the host veth in [`CniResult::interfaces`].
pub const HOST_INTERFACE: usize = 0;
/// Index of the pod interface in [`CniResult::interfaces`].
pub const POD_INTERFACE: usize = 1;

impl CniResult {
    /// The result of an ADD that wired `wired` with `allocation` into namespace `netns`.
    pub fn for_pod(
        cni_version: &str,
        wired: &Wired,
        allocation: &Allocation,
        netns: &Path,
    ) -> CniResult {
        let gateway = IpAddr::V4(allocation.gateway);
        CniResult {
            cni_version: cni_version.to_owned(),
            interfaces: vec![
                Interface {
                    name: wired.host_name.clone(),
                    mac: wired.host_mac.clone(),
                    sandbox: None,
                },
                Interface {
                    name: wired.pod_name.clone(),
                    mac: wired.pod_mac.clone(),
                    sandbox: Some(netns.display().to_string()),
                },
            ],
            ips: vec![IpConfig {
                address: IpNet::V4(allocation.address),
                gateway: Some(gateway),
                interface: Some(POD_INTERFACE),
            }],
            routes: vec![Route {
                dst: IpNet::V4(ipnet::Ipv4Net::default()),
                gw: Some(gateway),
            }],
            dns: Dns::default(),
        }
    }

    /// The JSON text.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// The answer to VERSION.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// The version of this answer's format.
    pub cni_version: String,
    /// Every version the plugin accepts in a configuration.
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// This plugin's versions.
    pub fn ours() -> VersionInfo {
        VersionInfo {
            cni_version: crate::CNI_VERSION.to_owned(),
            supported_versions: crate::SUPPORTED_VERSIONS
                .iter()
                .map(|v| (*v).to_owned())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CniResult {
        let wired = Wired {
            host_name: "ovl0123456789ab".into(),
            host_mac: "0a:00:00:00:00:01".into(),
            pod_name: "eth0".into(),
            pod_mac: "0a:00:00:00:00:02".into(),
        };
        let allocation = Allocation {
            address: "10.32.1.2/24".parse().expect("net"),
            gateway: "10.32.1.1".parse().expect("ip"),
            cluster: "10.32.0.0/12".parse().expect("net"),
            mtu: 1410,
        };
        CniResult::for_pod("1.0.0", &wired, &allocation, Path::new("/var/run/netns/p"))
    }

    #[test]
    fn result_has_the_cni_1_0_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&sample().to_json().expect("json")).expect("parse");
        assert_eq!(
            v,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "ovl0123456789ab", "mac": "0a:00:00:00:00:01"},
                    {"name": "eth0", "mac": "0a:00:00:00:00:02", "sandbox": "/var/run/netns/p"}
                ],
                "ips": [{"address": "10.32.1.2/24", "gateway": "10.32.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.32.1.1"}],
                "dns": {}
            })
        );
        let ip_if = v["ips"][0]["interface"].as_u64().expect("index") as usize;
        assert!(
            v["interfaces"][ip_if]["sandbox"].is_string(),
            "ips point at the pod interface"
        );
    }

    #[test]
    fn result_round_trips_as_a_prev_result() {
        let r = sample();
        let back: CniResult = serde_json::from_str(&r.to_json().expect("json")).expect("parse");
        assert_eq!(back, r);
        let minimal: CniResult =
            serde_json::from_str(r#"{"cniVersion":"1.0.0"}"#).expect("minimal");
        assert!(minimal.interfaces.is_empty());
    }

    #[test]
    fn version_answer() {
        let v = serde_json::to_value(VersionInfo::ours()).expect("json");
        assert_eq!(
            v,
            json!({"cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]})
        );
    }
}
