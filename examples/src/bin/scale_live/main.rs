//! The control plane at scale, live: K real agents (`overlay-agent run`), each in its own
//! network namespace on one bridge, every one seeded with node 0. Measures how long until
//! every agent's `/status` lists every other peer reachable, then what the converged cluster
//! costs while idle: CPU, memory, sockets, control-port bytes and connection churn per agent.
//! Run it with `scripts/scale.sh --nodes K` (as root; it builds the release binaries first).
//!
//! Prints one JSON object on stdout (with `--json` nothing else; otherwise a short summary
//! comes first); progress goes to stderr. Everything lives in namespaces with a unique
//! prefix and is removed on every exit path: errors, panics, and SIGINT/SIGTERM/SIGHUP
//! (caught, so destructors run). The root namespace is never touched.
//!
//! # Layout
//! - [`args`]: the command line.
//! - [`neighbours`]: permanent ARP entries between the nodes (no shared-table overflow).
//! - [`control_counters`]: nftables counters of control-port bytes and SYNs per namespace.
//! - [`convergence`]: the bounded wait for every agent to reach every other.
//! - [`idle`]: the idle window and its per-agent figures.
//! - [`proc_stats`]: CPU time, memory and TCP sockets of a process from `/proc`.
//! - [`report`]: the JSON object (fields in order) and the human summary.
//! - [`spread`]: median and maximum.
//! - [`interrupt`]: signals turned into a flag the waits check.

mod args;
mod control_counters;
mod convergence;
mod idle;
mod interrupt;
mod neighbours;
mod proc_stats;
mod report;
mod spread;

use anyhow::{bail, Context};
use args::Args;
use overlay_testbed::{Binaries, Cluster};
use report::Fields;
use serde_json::{json, Value};
use spread::round3;
use std::time::Instant;

fn main() {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{}", args::USAGE);
            return;
        }
        Err(e) => {
            eprintln!("scale_live: {e:#}\n\n{}", args::USAGE);
            std::process::exit(2);
        }
    };
    interrupt::catch();
    // `run` owns every namespace and process: they are gone by the time it returns.
    match run(&args) {
        Ok(r) => {
            if !args.json {
                print!("{}", report::summary(&r));
            }
            print!("{}", report::render(&r));
            if report::get(&r, "converged") != true {
                eprintln!("scale_live: the agents did not converge within the timeout");
                std::process::exit(1);
            }
        }
        Err(_) if interrupt::happened() => {
            eprintln!("scale_live: interrupted; everything it created is removed");
            std::process::exit(130);
        }
        Err(e) => {
            eprintln!("scale_live: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> anyhow::Result<Fields> {
    if !overlay_testbed::is_root() {
        bail!("scale_live creates network namespaces: run it as root (scripts/scale.sh)");
    }
    overlay_testbed::ensure_tun_device();
    let exe = std::env::current_exe()?;
    let bins = Binaries::in_dir(exe.parent().context("binary directory")?)?;
    let k = args.nodes;

    step(&format!(
        "underlay: {k} node namespaces on one bridge, permanent neighbour entries, control-port counters"
    ));
    let setup = Instant::now();
    let mut c = Cluster::new(&overlay_testbed::unique_prefix("scl"), k, bins)?;
    interrupt::check()?;
    if args.keep_logs {
        c.keep_workdir();
    }
    eprintln!("    agent state and logs: {}", c.workdir.display());
    c.seeds = (0..k)
        .map(|i| if i == 0 { vec![] } else { vec![0] })
        .collect();
    c.agent_args.clone_from(&args.agent_args);
    neighbours::make_permanent(&c.underlay)?;
    for i in 0..k {
        interrupt::check()?;
        control_counters::install(c.node(i))?;
    }
    eprintln!("    ready after {:.1} s", setup.elapsed().as_secs_f64());

    step(&format!(
        "agents: starting {k} (node1..node{} seeded with node0); waiting up to {} s for every one to reach every other",
        k - 1,
        args.timeout.as_secs()
    ));
    let start = Instant::now();
    for i in 0..k {
        interrupt::check()?;
        c.start_agent(i)?;
    }
    let spawned = start.elapsed();
    let outcome = convergence::wait(&c, start, args.timeout)?;
    let exited = exited_agents(&mut c);
    if !exited.is_empty() {
        bail!(
            "{} agent(s) exited: {}",
            exited.len(),
            exited
                .iter()
                .map(|&i| format!("node{i}:\n{}", tail(&c.log(i), 10)))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    if outcome.converged {
        eprintln!("    converged after {:.1} s", outcome.elapsed.as_secs_f64());
    }

    let pids = agent_pids(&c);
    let idle = idle::measure(&c, &pids, args.idle)?;
    let exited = exited_agents(&mut c);

    let converge_s = outcome
        .converged
        .then(|| round3(outcome.elapsed.as_secs_f64()));
    let mut report: Fields = vec![
        ("nodes", json!(k)),
        ("converged", json!(outcome.converged)),
        ("converge_s", json!(converge_s)),
    ];
    if let Some(p) = &outcome.progress {
        report.push(("converge_progress", p.to_json(k)));
        report.push(("waited_s", json!(round3(outcome.elapsed.as_secs_f64()))));
    }
    report.extend(idle);
    report.extend([
        ("agents_exited", json!(exited.len())),
        (
            "converge_last_poll_s",
            json!(round3(outcome.last_poll.as_secs_f64())),
        ),
        ("agents_spawn_s", json!(round3(spawned.as_secs_f64()))),
        ("timeout_s", json!(args.timeout.as_secs())),
        ("idle_secs", json!(args.idle.as_secs())),
        ("seeding", json!("every agent seeded with node0")),
        ("agent_args", json!(args.agent_args)),
        (
            "commit",
            json!(std::env::var("SCALE_REV").unwrap_or_else(|_| "unknown".to_owned())),
        ),
        ("invoked_as", json!(std::env::var("SCALE_INVOKED_AS").ok())),
        ("machine", machine()),
        ("tool", json!("scale_live")),
    ]);
    step("tearing down");
    drop(c);
    Ok(report)
}

/// Nodes whose agent is no longer running.
fn exited_agents(c: &mut Cluster) -> Vec<usize> {
    c.agents
        .iter_mut()
        .enumerate()
        .filter_map(|(i, a)| a.as_mut().is_none_or(|p| !p.is_running()).then_some(i))
        .collect()
}

/// Each node's agent process id (`ip netns exec` execs the agent, so the child's pid is the
/// agent's; checked by its name, with the namespace's process list as the fallback).
fn agent_pids(c: &Cluster) -> Vec<Option<u32>> {
    let is_agent = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim() == "overlay-agent")
    };
    c.agents
        .iter()
        .enumerate()
        .map(|(i, agent)| match agent.as_ref().map(|p| p.pid()) {
            Some(pid) if is_agent(pid) => Some(pid),
            _ => c
                .node(i)
                .pids()
                .into_iter()
                .filter_map(|p| u32::try_from(p).ok())
                .find(|&p| is_agent(p)),
        })
        .collect()
}

/// The machine the figures come from.
fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .ok();
    json!({"cores": cores, "kernel": kernel})
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
