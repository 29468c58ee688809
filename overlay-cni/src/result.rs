//! The CNI result printed after ADD (1.0.0 and 1.1.0), and the VERSION answer.
//!
//! The types also deserialize, so a `prevResult` from a chain can be read into them; fields
//! they do not name (e.g. the 1.1.0 route attributes `mtu`, `advmss`, `priority`, `table`,
//! `scope`, or another plugin's additions) are kept in `extra` and written back unchanged.

use crate::wiring::Wired;
use ipnet::IpNet;
use overlay_proto::api::Allocation;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::path::Path;

/// A CNI success result.
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
    /// Fields this plugin does not interpret, kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU (spec 1.1.0; this plugin reports it only in 1.1.0 results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The namespace path for interfaces inside the sandbox; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Fields this plugin does not interpret (`socketPath`, `pciID`, ...), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
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
    /// Fields this plugin does not interpret, kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One route of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination, e.g. `0.0.0.0/0`.
    pub dst: IpNet,
    /// Next hop (the interface's gateway when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Fields this plugin does not interpret (1.1.0: `mtu`, `advmss`, `priority`, `table`,
    /// `scope`), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
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
    /// Fields this plugin does not interpret, kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Index of the host veth in the interfaces this plugin adds.
pub const HOST_INTERFACE: usize = 0;
/// Index of the pod interface in the interfaces this plugin adds.
pub const POD_INTERFACE: usize = 1;

impl CniResult {
    /// This plugin's own result for an ADD that wired `wired` with `allocation` and `mtu`
    /// into namespace `netns` (before any merging with a `prevResult`).
    pub fn for_pod(
        cni_version: &str,
        wired: &Wired,
        allocation: &Allocation,
        netns: &Path,
        mtu: u32,
    ) -> CniResult {
        let gateway = IpAddr::V4(allocation.gateway);
        let mtu = crate::at_least_1_1(cni_version).then_some(mtu);
        CniResult {
            cni_version: cni_version.to_owned(),
            interfaces: vec![
                Interface {
                    name: wired.host_name.clone(),
                    mac: wired.host_mac.clone(),
                    mtu,
                    sandbox: None,
                    extra: Map::new(),
                },
                Interface {
                    name: wired.pod_name.clone(),
                    mac: wired.pod_mac.clone(),
                    mtu,
                    sandbox: Some(netns.display().to_string()),
                    extra: Map::new(),
                },
            ],
            ips: vec![IpConfig {
                address: IpNet::V4(allocation.address),
                gateway: Some(gateway),
                interface: Some(POD_INTERFACE),
                extra: Map::new(),
            }],
            routes: vec![Route {
                dst: IpNet::V4(ipnet::Ipv4Net::default()),
                gw: Some(gateway),
                extra: Map::new(),
            }],
            dns: Dns::default(),
            extra: Map::new(),
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
    /// The `cniVersion` of the input (the plugin's newest when the input names none).
    pub cni_version: String,
    /// Every version the plugin accepts in a configuration.
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// This plugin's versions, answered in `cni_version`.
    pub fn ours(cni_version: &str) -> VersionInfo {
        VersionInfo {
            cni_version: cni_version.to_owned(),
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

    fn sample(version: &str) -> CniResult {
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
        CniResult::for_pod(
            version,
            &wired,
            &allocation,
            Path::new("/var/run/netns/p"),
            1410,
        )
    }

    #[test]
    fn numbers_kept_as_given_survive_printing_and_parsing() {
        // Found by fuzzing (fuzz target `cni_prev_result`): a number too large for an integer
        // in a field kept in `extra` was parsed to a float near it, and printing and parsing
        // that float again gave a different one, so the prevResult handed on was not the one
        // received. serde_json's `float_roundtrip` parses floats exactly.
        let input = br#"{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mac":"72:","mtu2":1408888868888888888888888888888888888888888888888888888888888880}],"custom":[2.5e-300,1.7976931348623157e308,0.1,1.4088888688888893e63]}"#;
        let prev: CniResult = serde_json::from_slice(input).expect("parses");
        let json = prev.to_json().expect("prints");
        let again: CniResult = serde_json::from_str(&json).expect("parses back");
        assert_eq!(again, prev, "{json}");
    }

    #[test]
    fn result_has_the_cni_1_0_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&sample("1.0.0").to_json().expect("json")).expect("parse");
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
    fn results_1_1_carry_the_interface_mtu() {
        let v = serde_json::to_value(sample("1.1.0")).expect("json");
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["interfaces"][0]["mtu"], 1410);
        assert_eq!(v["interfaces"][1]["mtu"], 1410);
    }

    #[test]
    fn result_round_trips_as_a_prev_result() {
        let r = sample("1.1.0");
        let back: CniResult = serde_json::from_str(&r.to_json().expect("json")).expect("parse");
        assert_eq!(back, r);
        let minimal: CniResult =
            serde_json::from_str(r#"{"cniVersion":"1.0.0"}"#).expect("minimal");
        assert!(minimal.interfaces.is_empty());
    }

    #[test]
    fn unknown_fields_of_a_prev_result_are_kept() {
        let text = json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "sandbox": "/x", "socketPath": "/s", "pciID": "0000:00:01.0"}],
            "ips": [{"address": "10.1.0.5/16", "interface": 0, "note": 1}],
            "routes": [{"dst": "10.2.0.0/16", "gw": "10.1.0.1", "mtu": 1400, "advmss": 1360,
                        "priority": 7, "table": 100, "scope": 0}],
            "dns": {"nameservers": ["10.1.0.1"], "x": true},
            "custom": {"a": [1, 2]}
        });
        let r: CniResult = serde_json::from_value(text.clone()).expect("parse");
        assert_eq!(r.routes[0].extra["table"], 100);
        assert_eq!(serde_json::to_value(&r).expect("json"), text);
    }

    #[test]
    fn version_answer_echoes_the_input_version() {
        let v = serde_json::to_value(VersionInfo::ours("1.0.0")).expect("json");
        assert_eq!(
            v,
            json!({"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]})
        );
    }
}
