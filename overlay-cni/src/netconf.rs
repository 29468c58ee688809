//! The network configuration on stdin, decoded and checked.
//!
//! ```json
//! {"cniVersion":"1.1.0","name":"overlay","type":"overlay-cni",
//!  "api":"127.0.0.1:6784","mtu":1410,"bridge":"ovlbr0","agentWaitSeconds":30}
//! ```
//! Only `cniVersion`, `name` and `type` are required. Fields this plugin does not know
//! (`ipam`, `dns`, `args`, `runtimeConfig`, `capabilities`...) are accepted and ignored.
//! The runtime adds `prevResult` (chaining, CHECK, DEL), decoded here into a
//! [`CniResult`], and for GC `cni.dev/valid-attachments` (libcni also sends the same list
//! as `cni.dev/attachments`, the key's draft name, which is read when the other is absent).

use crate::env::{check_ifname, BadIfname};
use crate::error::Error;
use crate::result::CniResult;
use serde::Deserialize;
use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

/// Largest configuration read from stdin.
pub const MAX_NETCONF_LEN: u64 = 1 << 20;
/// Default agent API address (the contract's `--api` default).
pub const DEFAULT_API: &str = "127.0.0.1:6784";
/// Default node bridge.
pub const DEFAULT_BRIDGE: &str = "ovlbr0";
/// Default bound on waiting for the agent.
pub const DEFAULT_AGENT_WAIT_SECONDS: u64 = 30;
/// Longest accepted `agentWaitSeconds`.
pub const MAX_AGENT_WAIT_SECONDS: u64 = 600;
/// Smallest and largest accepted MTU (IPv4 minimum, 16-bit maximum).
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

/// The configuration as it appears on stdin.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    api: Option<String>,
    mtu: Option<u32>,
    bridge: Option<String>,
    agent_wait_seconds: Option<u64>,
    prev_result: Option<serde_json::Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<GcAttachment>>,
    #[serde(rename = "cni.dev/attachments")]
    attachments: Option<Vec<GcAttachment>>,
}

/// One still-valid attachment named by the runtime in a GC request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct GcAttachment {
    /// CNI_CONTAINERID of the attachment's ADD.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// CNI_IFNAME of the attachment's ADD.
    pub ifname: String,
}

/// A checked network configuration with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion` (one of [`crate::SUPPORTED_VERSIONS`]).
    pub cni_version: String,
    /// `name`, the network name.
    pub name: String,
    /// `type`, the plugin binary name.
    pub kind: String,
    /// `api`: the agent's local API.
    pub api: SocketAddr,
    /// `mtu`: overrides the MTU the agent hands out with each allocation.
    pub mtu: Option<u32>,
    /// `bridge`: the node bridge pods are attached to.
    pub bridge: String,
    /// `agentWaitSeconds`: how long to wait for an unreachable or not-ready agent.
    pub agent_wait: Duration,
    /// `prevResult`: the result of the plugin before this one (ADD when not first), or the
    /// final result of the attachment's ADD (CHECK, DEL).
    pub prev_result: Option<CniResult>,
    /// `cni.dev/valid-attachments` (GC): the attachments the runtime still knows.
    pub valid_attachments: Option<Vec<GcAttachment>>,
}

/// Why the network configuration does not decode ([`Error::Decode`]).
#[derive(Debug, thiserror::Error)]
pub enum Undecodable {
    /// more than [`MAX_NETCONF_LEN`] bytes on stdin
    #[error("longer than {MAX_NETCONF_LEN} bytes")]
    TooLong,
    /// not JSON of the configuration's shape
    #[error("{0}")]
    Json(serde_json::Error),
    /// a `prevResult` that is no CNI result
    #[error("prevResult: {0}")]
    PrevResult(serde_json::Error),
}

/// What is unusable in a network configuration that decodes ([`Error::Config`]).
#[derive(Debug, thiserror::Error)]
pub enum BadConfig {
    /// no `cniVersion`
    #[error("cniVersion is missing")]
    NoVersion,
    /// no `name`
    #[error("name is missing")]
    NoName,
    /// a `name` the runtimes do not accept
    #[error("name {0:?} must start with a letter or digit and contain only [A-Za-z0-9_.-]")]
    Name(String),
    /// no or an empty `type`
    #[error("type is missing")]
    NoType,
    /// an `api` that is not `IP:PORT`
    #[error("api {0:?} is not an IP:PORT address (e.g. {DEFAULT_API:?})")]
    Api(String),
    /// an `api` with port 0
    #[error("api {0:?} has port 0")]
    ApiPortZero(String),
    /// an `mtu` outside [`MTU_RANGE`]
    #[error("mtu {0} is outside {min}..={max}", min = MTU_RANGE.start(), max = MTU_RANGE.end())]
    Mtu(u32),
    /// a `bridge` that is no interface name
    #[error("bridge: {0}")]
    Bridge(BadIfname),
    /// an `agentWaitSeconds` over [`MAX_AGENT_WAIT_SECONDS`]
    #[error("agentWaitSeconds {0} is more than {MAX_AGENT_WAIT_SECONDS}")]
    AgentWait(u64),
    /// CHECK without the attachment's result
    #[error("CHECK needs the attachment's result as prevResult")]
    CheckWithoutPrevResult,
    /// GC without the list of attachments in use (every attachment would look stale)
    #[error("GC needs cni.dev/valid-attachments (the attachments still in use)")]
    GcWithoutValidAttachments,
}

impl NetConf {
    /// Reads (at most [`MAX_NETCONF_LEN`] bytes) and parses the configuration from `input`.
    pub fn read(input: &mut dyn Read) -> Result<NetConf, Error> {
        let mut bytes = Vec::new();
        input
            .take(MAX_NETCONF_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(Error::Stdin)?;
        if bytes.len() as u64 > MAX_NETCONF_LEN {
            return Err(Error::Decode(Undecodable::TooLong));
        }
        NetConf::parse(&bytes)
    }

    /// Parses and checks a configuration.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, Error> {
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| Error::Decode(Undecodable::Json(e)))?;
        let cni_version = raw.cni_version.ok_or(Error::Config(BadConfig::NoVersion))?;
        if !crate::SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(Error::Version(cni_version));
        }
        let name = raw.name.ok_or(Error::Config(BadConfig::NoName))?;
        if !valid_network_name(&name) {
            return Err(Error::Config(BadConfig::Name(name)));
        }
        let kind = raw
            .kind
            .filter(|k| !k.is_empty())
            .ok_or(Error::Config(BadConfig::NoType))?;
        let api_text = raw.api.unwrap_or_else(|| DEFAULT_API.to_owned());
        let Ok(api) = api_text.parse::<SocketAddr>() else {
            return Err(Error::Config(BadConfig::Api(api_text)));
        };
        if api.port() == 0 {
            return Err(Error::Config(BadConfig::ApiPortZero(api_text)));
        }
        if let Some(mtu) = raw.mtu {
            if !MTU_RANGE.contains(&mtu) {
                return Err(Error::Config(BadConfig::Mtu(mtu)));
            }
        }
        let bridge = raw.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_owned());
        check_ifname(&bridge).map_err(|e| Error::Config(BadConfig::Bridge(e)))?;
        let wait = raw.agent_wait_seconds.unwrap_or(DEFAULT_AGENT_WAIT_SECONDS);
        if wait > MAX_AGENT_WAIT_SECONDS {
            return Err(Error::Config(BadConfig::AgentWait(wait)));
        }
        let prev_result = raw
            .prev_result
            .map(serde_json::from_value::<CniResult>)
            .transpose()
            .map_err(|e| Error::Decode(Undecodable::PrevResult(e)))?;
        Ok(NetConf {
            cni_version,
            name,
            kind,
            api,
            mtu: raw.mtu,
            bridge,
            agent_wait: Duration::from_secs(wait),
            prev_result,
            valid_attachments: raw.valid_attachments.or(raw.attachments),
        })
    }
}

/// The CNI spec's network name rule: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
fn valid_network_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NetConf, Error> {
        NetConf::parse(s.as_bytes())
    }

    fn config_error(s: &str) -> String {
        match parse(s) {
            Err(Error::Config(m)) => m.to_string(),
            other => panic!("expected a config error for {s}, got {other:?}"),
        }
    }

    #[test]
    fn minimal_config_gets_the_defaults() {
        let c = parse(r#"{"cniVersion":"1.0.0","name":"overlay","type":"overlay-cni"}"#)
            .expect("valid");
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.name, "overlay");
        assert_eq!(c.kind, "overlay-cni");
        assert_eq!(c.api, "127.0.0.1:6784".parse().expect("addr"));
        assert_eq!(c.mtu, None);
        assert_eq!(c.bridge, "ovlbr0");
        assert_eq!(c.agent_wait, Duration::from_secs(30));
        assert_eq!(c.prev_result, None);
        assert_eq!(c.valid_attachments, None);
    }

    #[test]
    fn prev_result_is_decoded_and_malformed_ones_refused() {
        let c = parse(
            r#"{"cniVersion":"1.1.0","name":"o","type":"t","prevResult":{"cniVersion":"1.1.0",
                "interfaces":[{"name":"eth0","sandbox":"/var/run/netns/p"}],
                "ips":[{"address":"10.32.1.2/24","interface":0}]}}"#,
        )
        .expect("valid");
        let prev = c.prev_result.expect("prevResult");
        assert_eq!(prev.interfaces[0].name, "eth0");
        assert_eq!(prev.ips[0].address.to_string(), "10.32.1.2/24");
        for bad in [
            r#"{"cniVersion":"1.1.0","name":"o","type":"t","prevResult":{"interfaces":[]}}"#,
            r#"{"cniVersion":"1.1.0","name":"o","type":"t","prevResult":{"cniVersion":"1.1.0","ips":[{"address":"nope"}]}}"#,
            r#"{"cniVersion":"1.1.0","name":"o","type":"t","prevResult":[]}"#,
        ] {
            match parse(bad) {
                Err(Error::Decode(m)) => assert!(m.to_string().contains("prevResult"), "{m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn gc_attachments_are_read_under_either_key() {
        let c = parse(
            r#"{"cniVersion":"1.1.0","name":"o","type":"t",
                "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],
                "cni.dev/attachments":[{"containerID":"ignored","ifname":"eth0"}]}"#,
        )
        .expect("valid");
        let valid = c.valid_attachments.expect("list");
        assert_eq!(valid.len(), 1);
        assert_eq!(valid[0].container_id, "a");
        let c = parse(
            r#"{"cniVersion":"1.1.0","name":"o","type":"t",
                "cni.dev/attachments":[{"containerID":"b","ifname":"net1"}]}"#,
        )
        .expect("valid");
        assert_eq!(c.valid_attachments.expect("list")[0].ifname, "net1");
        let e = parse(
            r#"{"cniVersion":"1.1.0","name":"o","type":"t","cni.dev/valid-attachments":[{"ifname":"x"}]}"#,
        )
        .expect_err("no containerID");
        assert!(matches!(e, Error::Decode(_)), "{e:?}");
    }

    #[test]
    fn every_option_is_read_and_unknown_fields_ignored() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"k8s-pod.net_1","type":"overlay-cni",
                "api":"10.0.0.1:7000","mtu":1410,"bridge":"br-x","agentWaitSeconds":2,
                "ipam":{},"dns":{},"runtimeConfig":{"portMappings":[]},
                "prevResult":{"cniVersion":"1.0.0","interfaces":[]}}"#,
        )
        .expect("valid");
        assert_eq!(c.api, "10.0.0.1:7000".parse().expect("addr"));
        assert_eq!(c.mtu, Some(1410));
        assert_eq!(c.bridge, "br-x");
        assert_eq!(c.agent_wait, Duration::from_secs(2));
        assert_eq!(c.name, "k8s-pod.net_1");
        assert!(c.prev_result.is_some());
    }

    #[test]
    fn undecodable_input_is_a_decode_error() {
        for bad in [
            "",
            "not json",
            "[1,2]",
            r#"{"cniVersion":1}"#,
            r#"{"cniVersion":"1.0.0","name":"o","type":"t","mtu":"big"}"#,
            r#"{"cniVersion":"1.0.0","name":"o","type":"t","mtu":-1}"#,
            r#"{"cniVersion":"1.0.0","name":"o","type":"t","agentWaitSeconds":1.5}"#,
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(matches!(e, Error::Decode(_)), "{bad}: {e:?}");
            assert_eq!(e.code(), 6);
        }
    }

    #[test]
    fn unknown_versions_are_code_1() {
        for v in ["0.4.0", "1.2.0", "2.0.0", ""] {
            let s = format!(r#"{{"cniVersion":"{v}","name":"o","type":"t"}}"#);
            let e = parse(&s).expect_err(v);
            assert!(matches!(e, Error::Version(_)), "{v}: {e:?}");
            assert_eq!(e.code(), 1);
        }
    }

    #[test]
    fn invalid_values_are_code_7_and_say_which() {
        assert!(config_error(r#"{"name":"o","type":"t"}"#).contains("cniVersion"));
        assert!(config_error(r#"{"cniVersion":"1.0.0","type":"t"}"#).contains("name"));
        assert!(config_error(r#"{"cniVersion":"1.0.0","name":"-x","type":"t"}"#).contains("name"));
        assert!(config_error(r#"{"cniVersion":"1.0.0","name":"o"}"#).contains("type"));
        let base = r#""cniVersion":"1.0.0","name":"o","type":"t""#;
        for (extra, field) in [
            (r#""api":"localhost""#, "api"),
            (r#""api":"127.0.0.1""#, "api"),
            (r#""api":"127.0.0.1:0""#, "api"),
            (r#""mtu":10"#, "mtu"),
            (r#""mtu":70000"#, "mtu"),
            (r#""bridge":"way-too-long-bridge""#, "bridge"),
            (r#""bridge":"a/b""#, "bridge"),
            (r#""agentWaitSeconds":100000"#, "agentWaitSeconds"),
        ] {
            let m = config_error(&format!("{{{base},{extra}}}"));
            assert!(m.contains(field), "{extra}: {m}");
        }
        assert_eq!(Error::Config(BadConfig::NoName).code(), 7);
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let mut big = std::io::repeat(b' ').take(MAX_NETCONF_LEN + 10);
        let e = NetConf::read(&mut big).expect_err("too long");
        assert!(matches!(e, Error::Decode(_)), "{e:?}");
    }
}
