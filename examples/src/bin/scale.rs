//! The control plane at scale, in the deterministic simulation (`overlay-sim`): the real
//! [`Node`](overlay_proto::node::Node) state machines and wire code, simulated time, links
//! with 1% loss, 5% failed dials and 0.2–20 ms latency. No sockets: thousands of agents fit
//! in one process.
//!
//! One run, reproducible from `--seed`:
//! 1. **Converge**: `--nodes` agents, each seeded with the first `--seeds` agents, all
//!    started at once; run until every agent reaches every other and owns a block no other
//!    owns (checked every 100 ms of simulated time).
//! 2. **Idle**: after 30 s of simulated time for the connections made only to join to be
//!    released, `--idle-secs` with nothing changing: control bytes sent per node per second,
//!    connections per node, connections closed (churn).
//! 3. **Join**: one more agent, seeded like the others; run until converged again, then 30 s
//!    more for what follows (connections made only to join released, views adjusted).
//!    Messages and bytes other than heartbeats, cluster-wide, above the idle background (the
//!    periodic summaries the cluster sends anyway, measured in step 2), and the most any one
//!    of the old agents received.
//! 4. **Death**: one agent (not a seed) stops silently (a power cut); run until no agent
//!    reaches it, then 30 s more (views repaired). Same counts, and the time to detect.
//!
//! Prints one JSON object (`--json`) or a short table; progress goes to stderr.

use clap::Parser;
use overlay_sim::{Conditions, Sim, Traffic};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Time after convergence for the connections made only to join to be released (their grace
/// is 5 s; a few joiners finish later than the check of convergence).
const SETTLE: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(about = "Simulates a cluster of many agents and prints what its control plane costs")]
struct Args {
    /// Number of agents.
    #[arg(long, default_value_t = 500)]
    nodes: usize,
    /// Every agent is seeded with the first this many agents.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Seed of the simulation's randomness.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds of the idle window.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Longest simulated time each phase may take to converge.
    #[arg(long, default_value_t = 600)]
    limit_secs: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Every running agent reaches every other running agent and owns a block no other owns.
///
/// O(n log n): it counts routes instead of comparing topologies, so it can be checked often
/// at thousands of agents.
fn converged(s: &Sim) -> bool {
    let alive = s.alive();
    let mut blocks = BTreeSet::new();
    alive.iter().all(|&i| {
        let n = s.node(i);
        n.routes().len() + 1 == alive.len() && n.claim().is_some_and(|c| blocks.insert(c.block))
    })
}

/// Sum of every node's traffic.
fn total(s: &Sim) -> Traffic {
    let mut t = Traffic::default();
    for n in &s.nodes {
        t.sent_msgs += n.traffic.sent_msgs;
        t.sent_bytes += n.traffic.sent_bytes;
        t.heartbeat_msgs += n.traffic.heartbeat_msgs;
        t.heartbeat_bytes += n.traffic.heartbeat_bytes;
    }
    t
}

/// What a change cost: messages and bytes other than heartbeats, cluster-wide, and the most
/// one of the agents in `old` received.
struct Cost {
    msgs: u64,
    bytes: u64,
    max_node_bytes: u64,
}

/// Messages and bytes per second the idle cluster sends besides heartbeats.
struct Background {
    msgs_per_s: f64,
    bytes_per_s: f64,
}

impl Cost {
    /// The cost above the background over `window`.
    fn above(self, background: &Background, window: Duration) -> Cost {
        let secs = window.as_secs_f64();
        Cost {
            msgs: self
                .msgs
                .saturating_sub((background.msgs_per_s * secs).round() as u64),
            bytes: self
                .bytes
                .saturating_sub((background.bytes_per_s * secs).round() as u64),
            max_node_bytes: self.max_node_bytes,
        }
    }
}

fn cost(s: &Sim, before: &Traffic, per_node_before: &[u64], old: &[usize]) -> Cost {
    let after = total(s);
    let max_node_bytes = old
        .iter()
        .map(|&i| s.nodes[i].traffic.gossip_recv_bytes - per_node_before[i])
        .max()
        .unwrap_or(0);
    Cost {
        msgs: (after.sent_msgs - after.heartbeat_msgs) - (before.sent_msgs - before.heartbeat_msgs),
        bytes: (after.sent_bytes - after.heartbeat_bytes)
            - (before.sent_bytes - before.heartbeat_bytes),
        max_node_bytes,
    }
}

fn received(s: &Sim) -> Vec<u64> {
    s.nodes
        .iter()
        .map(|n| n.traffic.gossip_recv_bytes)
        .collect()
}

/// Peak resident memory of this process, from `/proc/self/status`.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn diff<K: Ord + Clone>(a: &BTreeMap<K, u64>, b: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
    a.iter()
        .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn diff2<K: Ord + Clone>(
    a: &BTreeMap<K, (u64, u64)>,
    b: &BTreeMap<K, (u64, u64)>,
) -> BTreeMap<K, (u64, u64)> {
    a.iter()
        .map(|(k, v)| {
            let w = b.get(k).copied().unwrap_or((0, 0));
            (k.clone(), (v.0 - w.0, v.1 - w.1))
        })
        .filter(|(_, v)| v.0 > 0)
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.nodes >= 2, "--nodes must be at least 2");
    let seeds: Vec<usize> = (0..args.seeds.clamp(1, args.nodes)).collect();
    let limit = Duration::from_secs(args.limit_secs);
    let wall = Instant::now();
    let mut s = Sim::new(args.seed, Conditions::default());
    for i in 0..args.nodes {
        let mine: Vec<usize> = seeds.iter().copied().filter(|&x| x != i).collect();
        s.add_node(&mine);
    }
    for i in 0..args.nodes {
        s.start(i);
    }
    eprintln!("converging {} agents ...", args.nodes);
    let converge = s.run_until_true(limit, converged);
    let converge_wall = wall.elapsed();
    let Some(converge) = converge else {
        anyhow::bail!(
            "{} agents did not converge within {} s simulated ({:.0} s wall)",
            args.nodes,
            args.limit_secs,
            converge_wall.as_secs_f64()
        );
    };
    eprintln!(
        "converged in {:.1} s simulated, {:.1} s wall",
        converge.as_secs_f64(),
        converge_wall.as_secs_f64()
    );

    s.run_for(SETTLE);
    let idle_before = total(&s);
    let (closes_before, kinds_before) = (s.closes.clone(), s.sent_by_kind.clone());
    s.run_for(Duration::from_secs(args.idle_secs));
    let idle_closes = diff(&s.closes, &closes_before);
    eprintln!("idle closes: {idle_closes:?}");
    eprintln!(
        "idle messages by kind: {:?}",
        diff2(&s.sent_by_kind, &kinds_before)
    );
    let idle_after = total(&s);
    // The background a change's cost is measured above: what the cluster sends at idle
    // besides heartbeats (the periodic summaries), per second.
    let background = Background {
        msgs_per_s: ((idle_after.sent_msgs - idle_after.heartbeat_msgs)
            - (idle_before.sent_msgs - idle_before.heartbeat_msgs)) as f64
            / args.idle_secs.max(1) as f64,
        bytes_per_s: ((idle_after.sent_bytes - idle_after.heartbeat_bytes)
            - (idle_before.sent_bytes - idle_before.heartbeat_bytes)) as f64
            / args.idle_secs.max(1) as f64,
    };
    let idle_bytes_per_node_per_s = (idle_after.sent_bytes - idle_before.sent_bytes) as f64
        / args.nodes as f64
        / args.idle_secs.max(1) as f64;
    let conns: Vec<usize> = s
        .alive()
        .iter()
        .map(|&i| s.node(i).connections().len())
        .collect();
    let conns_per_node_max = conns.iter().copied().max().unwrap_or(0);
    let conns_per_node_mean = conns.iter().sum::<usize>() as f64 / conns.len().max(1) as f64;
    eprintln!("idle: {idle_bytes_per_node_per_s:.0} B/s per node, at most {conns_per_node_max} connections");

    let old = s.alive();
    let before = total(&s);
    let recv_before = received(&s);
    let kinds_before = s.sent_by_kind.clone();
    let joiner = s.add_node(&seeds);
    s.start(joiner);
    let join_started = s.elapsed();
    let join_time = s.run_until_true(limit, converged);
    s.run_for(SETTLE);
    let join = cost(&s, &before, &recv_before, &old).above(&background, s.elapsed() - join_started);
    eprintln!("join: {} messages, {} bytes", join.msgs, join.bytes);
    eprintln!(
        "join messages by kind: {:?}",
        diff2(&s.sent_by_kind, &kinds_before)
    );
    let kinds_before = s.sent_by_kind.clone();

    let victim = s
        .alive()
        .into_iter()
        .find(|&i| i >= seeds.len())
        .unwrap_or(0);
    let victim_name = s.nodes[victim].name.clone();
    let before = total(&s);
    let recv_before = received(&s);
    s.kill_silently(victim);
    let death_started = s.elapsed();
    let detect = s.run_until_true(limit, |s| {
        s.alive()
            .iter()
            .all(|&i| !s.node(i).routes().is_reachable(&victim_name))
    });
    s.run_for(SETTLE);
    let survivors = s.alive();
    let death =
        cost(&s, &before, &recv_before, &survivors).above(&background, s.elapsed() - death_started);
    eprintln!("death: {} messages, {} bytes", death.msgs, death.bytes);
    eprintln!(
        "death messages by kind: {:?}",
        diff2(&s.sent_by_kind, &kinds_before)
    );

    let secs = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0);
    let report = json!({
        "nodes": args.nodes,
        "seed": args.seed,
        "converge_sim_s": secs(Some(converge)),
        "converge_wall_s": (converge_wall.as_secs_f64() * 10.0).round() / 10.0,
        "peak_rss_mib": peak_rss_mib().round(),
        "conns_per_node_max": conns_per_node_max,
        "conns_per_node_mean": (conns_per_node_mean * 10.0).round() / 10.0,
        "idle_bytes_per_node_per_s": idle_bytes_per_node_per_s.round(),
        "idle_conn_closes": idle_closes.values().sum::<u64>(),
        "join_sim_s": secs(join_time),
        "join_msgs": join.msgs,
        "join_bytes": join.bytes,
        "max_node_join_bytes": join.max_node_bytes,
        "death_detect_sim_s": secs(detect),
        "death_msgs": death.msgs,
        "death_bytes": death.bytes,
        "max_node_death_bytes": death.max_node_bytes,
        "total_wall_s": (wall.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    if args.json {
        println!("{report}");
    } else if let Some(map) = report.as_object() {
        for (key, value) in map {
            println!("{key:>28}  {value}");
        }
    }
    Ok(())
}
