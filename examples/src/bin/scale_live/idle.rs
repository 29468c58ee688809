//! The idle window: per-agent counters read before and after a stretch in which nothing
//! asks the agents anything, and the figures computed from their differences.
//!
//! Before the window each agent is asked for `/status` and its namespace's control-port
//! counters are read, then its CPU time; after the window the CPU time is read first, then
//! the rest, so the two status requests of the measurement fall outside the CPU window.
//! Every rate uses the agent's own window (the reads of a hundred agents take a while).

use crate::control_counters::{self, ControlCounters, CONTROL_PORT};
use crate::convergence::AgentView;
use crate::interrupt;
use crate::proc_stats;
use crate::report::Fields;
use crate::spread::{median_max, number, round3};
use overlay_testbed::Cluster;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// What was read from one agent at one end of the window.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    cpu_s: Option<f64>,
    status: Option<Value>,
    counters: Option<ControlCounters>,
}

/// One agent's figures over the window.
#[derive(Debug, Clone, Default)]
struct AgentFigures {
    window_s: f64,
    cpu_s_per_min: Option<f64>,
    control_bytes_per_s: Option<f64>,
    gossip_bytes_per_s: Option<f64>,
    terminations: Option<u64>,
    connects: Option<u64>,
    rss_mib: Option<f64>,
    peak_rss_mib: Option<f64>,
    tcp_sockets: Option<usize>,
    time_wait: Option<usize>,
    conns: Option<usize>,
    converged: bool,
}

/// Measures the idle window of `idle` on every agent of `c` (process ids in `pids`, `None`
/// where no agent runs); returns the JSON fields of the report.
pub fn measure(c: &Cluster, pids: &[Option<u32>], idle: Duration) -> anyhow::Result<Fields> {
    let nodes = c.agents.len();
    let reads = Instant::now();
    let before: Vec<Sample> = (0..nodes)
        .map(|i| {
            let status = c.status(i).ok();
            let counters = control_counters::read(c.node(i)).ok();
            Sample {
                cpu_s: pids[i].and_then(proc_stats::cpu_secs),
                at: Instant::now(),
                status,
                counters,
            }
        })
        .collect();
    let reads_before = reads.elapsed();
    eprintln!(
        "==> idle window: {} s without asking the agents anything",
        idle.as_secs()
    );
    interrupt::sleep(idle)?;
    let reads = Instant::now();
    let figures: Vec<AgentFigures> = (0..nodes)
        .map(|i| {
            let (cpu_s, at) = (pids[i].and_then(proc_stats::cpu_secs), Instant::now());
            let after = Sample {
                cpu_s,
                at,
                counters: control_counters::read(c.node(i)).ok(),
                status: c.status(i).ok(),
            };
            figures_of(i, nodes, pids[i], &before[i], &after)
        })
        .collect();
    Ok(report(&figures, [reads_before, reads.elapsed()]))
}

fn figures_of(
    i: usize,
    nodes: usize,
    pid: Option<u32>,
    before: &Sample,
    after: &Sample,
) -> AgentFigures {
    let secs = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let delta = |f: &dyn Fn(&Sample) -> Option<u64>| Some(f(after)?.saturating_sub(f(before)?));
    let status_u64 = |s: &Sample, keys: &[&str]| -> Option<u64> {
        let st = s.status.as_ref()?;
        keys.iter()
            .map(|k| st["control_traffic"][k].as_u64())
            .sum::<Option<u64>>()
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    AgentFigures {
        window_s: secs,
        cpu_s_per_min: after
            .cpu_s
            .zip(before.cpu_s)
            .map(|(a, b)| (a - b) / secs * 60.0),
        control_bytes_per_s: delta(&|s| s.counters.map(|c| c.bytes_in + c.bytes_out))
            .map(|b| b as f64 / secs),
        gossip_bytes_per_s: delta(&|s| {
            status_u64(s, &["gossip_sent_bytes", "gossip_received_bytes"])
        })
        .map(|b| b as f64 / secs),
        terminations: delta(&|s| status_u64(s, &["terminations"])),
        connects: delta(&|s| s.counters.map(|c| c.connects_out)),
        rss_mib: pid
            .and_then(|p| proc_stats::status_kib(p, "VmRSS"))
            .map(mib),
        peak_rss_mib: pid
            .and_then(|p| proc_stats::status_kib(p, "VmHWM"))
            .map(mib),
        tcp_sockets: pid.and_then(proc_stats::tcp_sockets),
        time_wait: pid.and_then(|p| proc_stats::time_wait(p, CONTROL_PORT)),
        conns: after
            .status
            .as_ref()
            .and_then(|s| s["connections"].as_array())
            .map(Vec::len),
        converged: after
            .status
            .as_ref()
            .is_some_and(|s| AgentView::of(s, i, nodes).converged(nodes)),
    }
}

/// The report fields from every agent's figures.
/// `reads` is how long the reads before and after the window took (each agent's own window
/// is the idle time plus the reads of the other agents in between).
fn report(f: &[AgentFigures], reads: [Duration; 2]) -> Fields {
    let each = |get: &dyn Fn(&AgentFigures) -> Option<f64>| -> Vec<f64> {
        f.iter().filter_map(get).collect()
    };
    let cpu = each(&|a| a.cpu_s_per_min);
    let terminations: Vec<f64> = each(&|a| a.terminations.map(|n| n as f64));
    let connects: Vec<f64> = each(&|a| a.connects.map(|n| n as f64));
    let mut m = Fields::new();
    let mut put = |k: &'static str, v: Value| m.push((k, v));
    put("idle_window_s", median_max(&each(&|a| Some(a.window_s))));
    put(
        "idle_reads_s",
        json!({
            "before": round3(reads[0].as_secs_f64()),
            "after": round3(reads[1].as_secs_f64()),
        }),
    );
    put("agents_measured", json!(cpu.len()));
    put("idle_cpu_s_per_min_per_agent", median_max(&cpu));
    put(
        "idle_cpu_s_per_min_total",
        json!(round3(cpu.iter().sum::<f64>())),
    );
    put("rss_mib", median_max(&each(&|a| a.rss_mib)));
    put("peak_rss_mib", median_max(&each(&|a| a.peak_rss_mib)));
    put(
        "sockets_per_agent",
        median_max(&each(&|a| a.tcp_sockets.map(|n| n as f64))),
    );
    put(
        "conns_per_agent",
        median_max(&each(&|a| a.conns.map(|n| n as f64))),
    );
    put(
        "control_bytes_per_s_per_agent",
        median_max(&each(&|a| a.control_bytes_per_s)),
    );
    put(
        "gossip_bytes_per_s_per_agent",
        median_max(&each(&|a| a.gossip_bytes_per_s)),
    );
    put(
        "conn_terminations_idle",
        json!({
            "total": number(terminations.iter().sum::<f64>()),
            "per_agent": median_max(&terminations),
        }),
    );
    put(
        "control_connects_idle",
        json!({
            "total": number(connects.iter().sum::<f64>()),
            "per_agent": median_max(&connects),
        }),
    );
    put(
        "time_wait_per_agent",
        median_max(&each(&|a| a.time_wait.map(|n| n as f64))),
    );
    put("converged_after_idle", json!(f.iter().all(|a| a.converged)));
    put(
        "sources",
        json!({
            "idle_window_s": "each agent's window, from its CPU read before to its CPU read after; longer than --idle-secs by the time the /status and counter reads of all agents take (idle_reads_s), which agents under load answer slowly",
            "idle_cpu_s_per_min_per_agent": "utime+stime of /proc/<pid>/stat over each agent's window, scaled to 60 s",
            "rss_mib": "VmRSS of /proc/<pid>/status at the end of the window (peak_rss_mib: VmHWM, the whole run)",
            "sockets_per_agent": "TCP sockets (any state, listeners included) among the agent's fds, from /proc/<pid>/fd and /proc/<pid>/net/tcp{,6}",
            "conns_per_agent": "established control connections in the agent's /status at the end of the window",
            "control_bytes_per_s_per_agent": "TCP packets with port 6783 at either end, both directions, IP length, nftables counters in each node namespace",
            "gossip_bytes_per_s_per_agent": "gossip_sent_bytes + gossip_received_bytes of /status control_traffic (gossip frames only: no heartbeats, handshakes or TCP/IP headers)",
            "conn_terminations_idle": "delta of /status control_traffic.terminations; both ends count a closed connection, so total is about twice the connections closed",
            "control_connects_idle": "SYNs sent to port 6783 (new connection attempts), nftables counter in each node namespace",
            "time_wait_per_agent": "TCP connections in TIME_WAIT with port 6783 at either end in the node namespace at the end of the window",
        }),
    );
    m
}
