//! Wire bytes and new connections on the control port, counted by the kernel.
//!
//! Each node namespace gets an nftables table `inet scale_live` with three named counters:
//! `control_in` and `control_out` count every TCP packet (IP length: headers and payload)
//! with the control port at either end, received and sent; `connects_out` counts the SYNs
//! the node sends to the control port (connection attempts). The agents' own gossip
//! counters miss heartbeats, handshakes, acknowledgements and headers; these do not.

use anyhow::{bail, Context};
use overlay_testbed::Netns;
use std::io::Write;
use std::process::Stdio;

/// The agents' control port (TCP; the data path uses the same number over UDP).
pub const CONTROL_PORT: u16 = 6783;
const TABLE: &str = "scale_live";

/// The counters of one namespace at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlCounters {
    /// Bytes received on control connections.
    pub bytes_in: u64,
    /// Bytes sent on control connections.
    pub bytes_out: u64,
    /// SYNs sent to the control port.
    pub connects_out: u64,
}

/// Installs the counting table in `node`.
pub fn install(node: &Netns) -> anyhow::Result<()> {
    let p = CONTROL_PORT;
    let script = format!(
        "table inet {TABLE} {{
  counter control_in {{}}
  counter control_out {{}}
  counter connects_out {{}}
  chain input {{
    type filter hook input priority 0; policy accept;
    tcp sport {p} counter name control_in
    tcp dport {p} counter name control_in
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    tcp dport {p} tcp flags & (syn | ack) == syn counter name connects_out
    tcp sport {p} counter name control_out
    tcp dport {p} counter name control_out
  }}
}}
"
    );
    nft(node, &["-f", "-"], Some(&script)).map(|_| ())
}

/// Reads the counters of `node`.
pub fn read(node: &Netns) -> anyhow::Result<ControlCounters> {
    let out = nft(
        node,
        &["-j", "list", "counters", "table", "inet", TABLE],
        None,
    )?;
    parse(&out).with_context(|| format!("nft counters of {}: {out}", node.name()))
}

fn nft(node: &Netns, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let mut child = node
        .command("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (is nftables installed?)")?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft {} in {} failed: {}",
            args.join(" "),
            node.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The counters in `nft -j list counters` output.
fn parse(json: &str) -> anyhow::Result<ControlCounters> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    let items = v["nftables"].as_array().context("no nftables array")?;
    let counter = |name: &str| -> anyhow::Result<(u64, u64)> {
        let c = items
            .iter()
            .map(|i| &i["counter"])
            .find(|c| c["name"] == name)
            .with_context(|| format!("no counter {name}"))?;
        let packets = c["packets"].as_u64().context("no packets")?;
        let bytes = c["bytes"].as_u64().context("no bytes")?;
        Ok((packets, bytes))
    };
    Ok(ControlCounters {
        bytes_in: counter("control_in")?.1,
        bytes_out: counter("control_out")?.1,
        connects_out: counter("connects_out")?.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.9", "json_schema_version": 1}},
            {"counter": {"family": "inet", "name": "control_in", "table": "scale_live", "handle": 1, "packets": 10, "bytes": 1200}},
            {"counter": {"family": "inet", "name": "control_out", "table": "scale_live", "handle": 2, "packets": 11, "bytes": 1300}},
            {"counter": {"family": "inet", "name": "connects_out", "table": "scale_live", "handle": 3, "packets": 4, "bytes": 240}}]}"#;
        assert_eq!(
            parse(json).expect("parses"),
            ControlCounters {
                bytes_in: 1200,
                bytes_out: 1300,
                connects_out: 4
            }
        );
        assert!(parse(r#"{"nftables": []}"#).is_err());
        assert!(parse("not json").is_err());
    }
}
