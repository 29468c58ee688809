//! The local demo: three nodes (network namespaces on an underlay bridge), an agent in each,
//! a pod on each attached with the CNI plugin, pings between pods on different nodes, and the
//! status each agent shows. Run it with `scripts/demo.sh` (as root).
//!
//! `cluster` runs the demo and removes everything; `cluster --keep` leaves the cluster up and
//! prints how to get into it; `cluster --down` removes a cluster left up.

use anyhow::{bail, Context};
use overlay_testbed::{Binaries, Cluster, Netns};
use std::process::Command;
use std::time::Duration;

/// Every name of the demo starts with this, so `--down` can find what `--keep` left.
const PREFIX: &str = "ovdemo";

fn main() -> anyhow::Result<()> {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        None => demo(false),
        Some("--keep") => demo(true),
        Some("--down") => down(),
        Some(other) => bail!("unknown argument {other:?} (use --keep or --down)"),
    }
}

fn demo(keep: bool) -> anyhow::Result<()> {
    if !overlay_testbed::is_root() {
        bail!("the demo creates network namespaces: run it as root");
    }
    overlay_testbed::ensure_tun_device();
    down()?;
    let exe = std::env::current_exe()?;
    let bins = Binaries::in_dir(exe.parent().context("binary directory")?)?;

    step("underlay: namespaces ovdemon0..2 on bridge br0 (in ovdemosw), 10.99.0.1-3/24");
    let mut c = Cluster::new(PREFIX, 3, bins)?;
    step("agents: node0 has no seed, node1 seeds node0, node2 seeds node1");
    c.start_all()?;
    let took = c.wait_converged(Duration::from_secs(30))?;
    println!(
        "    all three agents reach each other after {:.1} s",
        took.as_secs_f64()
    );
    for i in 0..3 {
        let s = c.status(i)?;
        println!(
            "    node{i}: block {}, node address {}",
            s["subnet"].as_str().unwrap_or("-"),
            s["address"].as_str().unwrap_or("-")
        );
    }

    step(
        "pods: one per node, attached by overlay-cni (bridge ovlbr0, veth, address from the agent)",
    );
    for node in 0..3 {
        let k = c.add_pod(node)?;
        let p = &c.pods[k];
        println!(
            "    pod{k} on node{node}: {} in namespace {}",
            p.ip,
            p.netns.name()
        );
    }

    step("ping between pods on different nodes");
    let mut failures = 0;
    for (from, to) in [(0, 1), (1, 2), (2, 0)] {
        let (src, dst) = (&c.pods[from], &c.pods[to]);
        println!(
            "    pod{from} (node{}) -> pod{to} (node{}) {}:",
            src.node, dst.node, dst.ip
        );
        let ok = ping(&src.netns, &dst.ip.to_string())?;
        failures += usize::from(!ok);
    }

    step("status of each agent (overlay-agent status, run inside each node)");
    for i in 0..3 {
        println!("--- node{i} ---");
        print_cli(&c, i, &["status"])?;
    }
    for view in ["connections", "routes", "ipam"] {
        step(&format!("node0: overlay-agent status {view}"));
        print_cli(&c, 0, &["status", view])?;
    }

    if keep {
        step("left running; look around with for example:");
        println!(
            "    ip netns exec ovdemon0 {} status [peers|connections|routes|ipam]",
            c.bins.agent.display()
        );
        println!("    ip netns exec ovdemop0 ping {}", c.pods[1].ip);
        println!("  remove it with: scripts/demo.sh --down");
        c.detach();
    } else {
        step("tearing down (scripts/demo.sh --keep leaves it up)");
        drop(c);
    }
    if failures > 0 {
        bail!("{failures} of 3 pings between pods failed");
    }
    Ok(())
}

fn step(what: &str) {
    println!("==> {what}");
}

/// Runs `overlay-agent <args>` inside node `i` and prints what it prints.
fn print_cli(c: &Cluster, i: usize, args: &[&str]) -> anyhow::Result<()> {
    let out = c
        .node(i)
        .command(&c.bins.agent.to_string_lossy())
        .args(args)
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Pings `ip` three times from inside `ns`, printing ping's own summary.
fn ping(ns: &Netns, ip: &str) -> anyhow::Result<bool> {
    let out = ns
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "2", ip])
        .output()
        .context("running ping (is iputils-ping installed?)")?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.contains("bytes from") || line.contains("packet loss") || line.contains("rtt") {
            println!("      {line}");
        }
    }
    Ok(out.status.success())
}

/// Removes every namespace (and the processes in it) that a demo left behind.
fn down() -> anyhow::Result<()> {
    let list = Command::new("ip").args(["netns", "list"]).output()?;
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(PREFIX) {
            let pids = Command::new("ip").args(["netns", "pids", name]).output()?;
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("overlay-{PREFIX}")));
    Ok(())
}
