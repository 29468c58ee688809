//! Permanent neighbour (ARP) entries between the node namespaces.
//!
//! The kernel's neighbour-table limits (`gc_thresh3`, 1024 by default) count the learned
//! entries of every namespace together, so a hundred nodes that each learn every other by
//! ARP would hit them ("neighbour table overflow", dropped packets). Permanent entries are
//! exempt from those limits, so each node gets one for every other node, inside its own
//! namespace; the root namespace's sysctls stay untouched.

use anyhow::{bail, Context};
use overlay_testbed::{Netns, Underlay};
use std::io::Write;
use std::process::{Command, Stdio};

/// Gives every node a permanent entry for every other node's `eth0`.
pub fn make_permanent(underlay: &Underlay) -> anyhow::Result<()> {
    let macs = underlay
        .nodes
        .iter()
        .map(eth0_mac)
        .collect::<anyhow::Result<Vec<String>>>()?;
    for (i, node) in underlay.nodes.iter().enumerate() {
        let script: String = macs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, mac)| {
                format!(
                    "neigh replace {} lladdr {mac} dev eth0 nud permanent\n",
                    Underlay::node_addr(j)
                )
            })
            .collect();
        ip_batch(node, &script)?;
    }
    Ok(())
}

/// The MAC address of `eth0` in `node`.
fn eth0_mac(node: &Netns) -> anyhow::Result<String> {
    let out = node.ip(&["-o", "link", "show", "eth0"])?;
    parse_mac(&out).with_context(|| format!("no link/ether in {out:?} ({})", node.name()))
}

/// The address after `link/ether` in `ip -o link show` output.
fn parse_mac(out: &str) -> Option<String> {
    let mut words = out.split_whitespace();
    words.find(|w| *w == "link/ether")?;
    let mac = words.next()?;
    (mac.len() == 17 && mac.split(':').count() == 6).then(|| mac.to_owned())
}

/// Runs `ip -n <node> -batch -` with `script` on stdin.
fn ip_batch(node: &Netns, script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["-n", node.name(), "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ip -batch")?;
    child
        .stdin
        .take()
        .context("ip -batch stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "ip -n {} -batch (neighbour entries) failed: {}",
            node.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_from_ip_link() {
        let out = "2: eth0@if5: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 5e:1d:8e:0b:66:20 brd ff:ff:ff:ff:ff:ff link-netns sclsw";
        assert_eq!(parse_mac(out).as_deref(), Some("5e:1d:8e:0b:66:20"));
        assert_eq!(parse_mac("2: eth0: link/ether"), None);
        assert_eq!(parse_mac("2: tun0: link/none"), None);
    }
}
