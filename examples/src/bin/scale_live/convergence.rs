//! Waiting, bounded, until every agent's `/status` lists every other peer as reachable.
//!
//! The same condition as `Cluster::wait_converged` (ready, holds a subnet, every other node
//! listed reachable with a subnet), checked cheaply: each poll walks the agents starting from
//! the one that was behind last time and stops at the first that still is, so a poll costs
//! one `/status` request while the cluster is far from converged, and the final poll that
//! succeeds asks every agent. Every few seconds a full sweep reports progress on stderr; on
//! timeout, a last full sweep says how far the cluster got.

use crate::interrupt;
use crate::proc_stats;
use overlay_testbed::Cluster;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Pause between polls.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// Interval of the progress sweeps.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Longest a progress sweep may take: agents under load answer `/status` slowly (each
/// request is bounded at about 12 s), so a sweep stops asking once this is spent.
const SWEEP_BUDGET: Duration = Duration::from_secs(30);
/// Longest the final sweep after a timeout may take.
const FINAL_SWEEP_BUDGET: Duration = Duration::from_secs(120);

/// How one agent's view compares with the whole cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentView {
    /// Ready and holding a subnet.
    pub ready: bool,
    /// Other nodes it lists reachable with a subnet.
    pub reachable: usize,
}

impl AgentView {
    /// Reads the view from a `/status` answer of node `me` in a cluster of `nodes`.
    pub fn of(status: &Value, me: usize, nodes: usize) -> AgentView {
        let ready = status["ready"] == true && !status["subnet"].is_null();
        let peers = status["peers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let reachable = (0..nodes)
            .filter(|&j| j != me)
            .filter(|&j| {
                let name = Cluster::node_name(j);
                peers.iter().any(|p| {
                    p["name"] == name.as_str() && p["reachable"] == true && !p["subnet"].is_null()
                })
            })
            .count();
        AgentView { ready, reachable }
    }

    /// True when it reaches every other of `nodes`.
    pub fn converged(&self, nodes: usize) -> bool {
        self.ready && self.reachable + 1 == nodes
    }
}

/// How far the cluster got, from one full sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Agents that reach every other.
    pub agents_converged: usize,
    /// Agents that answered `/status`.
    pub agents_answering: usize,
    /// Agents asked before the sweep's time budget ran out.
    pub agents_asked: usize,
    /// Reachable peers per answering agent.
    pub reachable: Vec<usize>,
}

impl Progress {
    /// The JSON form (`converge_progress`).
    pub fn to_json(&self, nodes: usize) -> Value {
        let mut sorted = self.reachable.clone();
        sorted.sort_unstable();
        json!({
            "agents_converged": self.agents_converged,
            "agents_answering": self.agents_answering,
            "agents_asked": self.agents_asked,
            "reachable_peers_min": sorted.first(),
            "reachable_peers_median": sorted.get(sorted.len() / 2),
            "reachable_peers_wanted": nodes - 1,
        })
    }
}

/// The outcome of the wait.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Converged within the timeout.
    pub converged: bool,
    /// Time from `start` to the poll that saw convergence (or to the timeout).
    pub elapsed: Duration,
    /// How long the successful poll took (the resolution of `elapsed`).
    pub last_poll: Duration,
    /// The last full sweep (taken at the end when not converged).
    pub progress: Option<Progress>,
}

/// Waits up to `timeout` from `start` for every agent of `c` to reach every other.
pub fn wait(c: &Cluster, start: Instant, timeout: Duration) -> anyhow::Result<Outcome> {
    let nodes = c.agents.len();
    let mut behind = 0;
    let mut last_progress = Instant::now();
    loop {
        interrupt::check()?;
        let poll = Instant::now();
        match first_behind(c, behind) {
            None => {
                return Ok(Outcome {
                    converged: true,
                    elapsed: start.elapsed(),
                    last_poll: poll.elapsed(),
                    progress: None,
                })
            }
            Some(i) => behind = i,
        }
        if start.elapsed() >= timeout {
            let p = sweep(c, FINAL_SWEEP_BUDGET);
            eprintln!(
                "    timed out after {:.0} s waiting for every agent to reach every other: {}",
                timeout.as_secs_f64(),
                p.to_json(nodes)
            );
            return Ok(Outcome {
                converged: false,
                elapsed: start.elapsed(),
                last_poll: poll.elapsed(),
                progress: Some(p),
            });
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            let dead = exited(c);
            if !dead.is_empty() {
                anyhow::bail!(
                    "while waiting for convergence, agent(s) exited: {}",
                    dead.iter()
                        .map(|&i| format!("node{i}, its log ends:\n{}", log_tail(&c.log(i))))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            let p = sweep(c, SWEEP_BUDGET);
            eprintln!(
                "    {:.0} s: {}/{} agents reach every other ({} asked); waiting (up to {:.0} s) for node{behind} and the rest",
                start.elapsed().as_secs_f64(),
                p.agents_converged,
                nodes,
                p.agents_asked,
                timeout.as_secs_f64()
            );
            last_progress = Instant::now();
        }
        interrupt::sleep(POLL_EVERY)?;
    }
}

/// The first agent, from `from` on (wrapping), that does not reach every other yet.
fn first_behind(c: &Cluster, from: usize) -> Option<usize> {
    let nodes = c.agents.len();
    (0..nodes).map(|k| (from + k) % nodes).find(|&i| {
        !c.status(i)
            .is_ok_and(|s| AgentView::of(&s, i, nodes).converged(nodes))
    })
}

/// Nodes whose agent process is gone (or was never started).
fn exited(c: &Cluster) -> Vec<usize> {
    (0..c.agents.len())
        .filter(|&i| {
            !c.agents[i]
                .as_ref()
                .is_some_and(|p| proc_stats::is_alive(p.pid()))
        })
        .collect()
}

/// The last lines of an agent's log.
fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// Asks every agent, or as many as `budget` allows.
pub fn sweep(c: &Cluster, budget: Duration) -> Progress {
    let nodes = c.agents.len();
    let start = Instant::now();
    let mut asked = 0;
    let views: Vec<AgentView> = (0..nodes)
        .take_while(|_| start.elapsed() < budget && !interrupt::happened())
        .filter_map(|i| {
            asked += 1;
            c.status(i).ok().map(|s| AgentView::of(&s, i, nodes))
        })
        .collect();
    Progress {
        agents_asked: asked,
        agents_converged: views.iter().filter(|v| v.converged(nodes)).count(),
        agents_answering: views.len(),
        reachable: views.iter().map(|v| v.reachable).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_counts_reachable_peers_with_a_subnet() {
        let s = json!({
            "ready": true, "subnet": "10.32.0.0/24",
            "peers": [
                {"name": "node0", "reachable": true, "subnet": "10.32.1.0/24"},
                {"name": "node2", "reachable": true, "subnet": null},
                {"name": "node3", "reachable": false, "subnet": "10.32.3.0/24"},
                {"name": "stranger", "reachable": true, "subnet": "10.32.9.0/24"},
            ]
        });
        let v = AgentView::of(&s, 1, 4);
        assert_eq!(
            v,
            AgentView {
                ready: true,
                reachable: 1
            }
        );
        assert!(!v.converged(4));
        assert!(AgentView::of(&s, 1, 2).converged(2));
        let not_ready = json!({"ready": false, "subnet": null, "peers": []});
        assert!(!AgentView::of(&not_ready, 0, 1).converged(1));
    }

    #[test]
    fn progress_json() {
        let p = Progress {
            agents_converged: 1,
            agents_answering: 3,
            agents_asked: 3,
            reachable: vec![3, 1, 2],
        };
        let j = p.to_json(4);
        assert_eq!(j["reachable_peers_min"], 1);
        assert_eq!(j["reachable_peers_median"], 2);
        assert_eq!(j["reachable_peers_wanted"], 3);
    }
}
