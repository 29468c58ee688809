//! End to end, as root: hitless restarts. The TUN device (with its address and route) and the
//! block survive a SIGTERM and restart of an agent, so a TCP stream between pods on two nodes
//! goes on without a reset or a corrupted byte; `overlay-agent reset` removes the device.

mod common;

use common::{converge, started_cluster};
use overlay_testbed::{stream, wait, Cluster};
use std::time::{Duration, Instant};

/// The TUN device every agent of the test cluster uses (the default `--iface`).
const IFACE: &str = "ovl0";
/// A route outside the cluster range, as a run with another `--cluster-cidr` would leave.
const STALE_ROUTE: &str = "10.200.0.0/16";
/// Stream rate: a few MB/s keeps a debug build and a busy 2-core machine comfortable.
const RATE: u64 = 2 << 20;
/// A stream blocked longer than this fails (TCP retransmits for minutes; this only bounds it).
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The ifindex of the TUN device on node `i`, or `None` when there is none.
fn tun_ifindex(c: &Cluster, i: usize) -> Option<u32> {
    let out = c.node(i).ip(&["-o", "link", "show", "dev", IFACE]).ok()?;
    out.split(':').next()?.trim().parse().ok()
}

/// Waits until the stream has received `more` bytes beyond `from`.
fn wait_flowing(c: &Cluster, s: &stream::Stream, from: u64, more: u64, what: &str) {
    wait::until(
        &format!("the pod stream to carry {more} more bytes {what}"),
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            if !s.running() {
                return Err("the stream stopped (see the error at finish)".into());
            }
            let got = s.received();
            Ok((got >= from + more).then_some(got))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
}

/// The overlay-agent binary run in node `i` with `args`.
fn agent_cli(c: &Cluster, i: usize, args: &[&str]) -> std::process::Output {
    c.node(i)
        .command(&c.bins.agent.to_string_lossy())
        .args(args)
        .output()
        .expect("overlay-agent runs")
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn a_pod_tcp_stream_survives_sigterm_and_restart_of_either_agent() {
    let mut c = started_cluster("rs", 2);
    converge(&c, Duration::from_secs(30));
    c.add_pod(0).expect("pod on node0");
    c.add_pod(1).expect("pod on node1");
    let before: Vec<Option<u32>> = (0..2).map(|i| tun_ifindex(&c, i)).collect();
    assert!(before.iter().all(Option::is_some), "TUN devices {before:?}");
    let blocks: Vec<_> = (0..2)
        .map(|i| c.status(i).expect("status")["subnet"].clone())
        .collect();

    // While an agent holds the device, `reset` refuses and removes nothing.
    let out = agent_cli(&c, 0, &["reset", "--iface", IFACE, "--keep-state"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("in use"),
        "reset with the agent running: {out:?}"
    );
    assert_eq!(tun_ifindex(&c, 0), before[0], "reset refused: device kept");

    // pod0 (node0) -> pod1 (node1), every byte checked.
    let s = stream::start(
        &c.pods[1].netns,
        c.pods[1].ip,
        &c.pods[0].netns,
        RATE,
        IO_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("stream: {e:#}\n{}", c.all_logs()));
    wait_flowing(&c, &s, 0, 1 << 20, "before any restart");

    let mut sigterms = Vec::new();
    for node in [1, 0] {
        let t = Instant::now();
        let status = c
            .stop_agent(node, libc::SIGTERM, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("stopping node{node}: {e}\n{}", c.log(node)));
        assert!(
            status.success(),
            "node{node} exit {status:?}\n{}",
            c.log(node)
        );
        assert_eq!(
            tun_ifindex(&c, node),
            before[node],
            "node{node}'s TUN device stays while its agent is stopped"
        );
        // A route of an earlier configuration (another cluster range) through the device.
        c.node(node)
            .ip(&["route", "add", STALE_ROUTE, "dev", IFACE, "proto", "static"])
            .expect("stale route added");
        c.start_agent(node).expect("restart");
        converge(&c, Duration::from_secs(60));
        eprintln!(
            "node{node}: SIGTERM to the agent back, ready and reached by the other {:.2} s",
            t.elapsed().as_secs_f64()
        );
        wait_flowing(
            &c,
            &s,
            s.received(),
            64 << 10,
            &format!("after node{node} restarted"),
        );
        eprintln!(
            "node{node}: SIGTERM to the stream seen flowing again (polled) {:.2} s",
            t.elapsed().as_secs_f64()
        );
        // Keep it going a while before the next disturbance.
        wait_flowing(
            &c,
            &s,
            s.received(),
            2 << 20,
            &format!("steadily after node{node} restarted"),
        );
        assert_eq!(
            tun_ifindex(&c, node),
            before[node],
            "node{node} re-attached to its TUN device (same ifindex)"
        );
        let routes = c
            .node(node)
            .ip(&["route", "show", "dev", IFACE])
            .expect("routes");
        assert!(
            !routes.contains(STALE_ROUTE) && routes.contains("10.32.0.0/12"),
            "node{node} reconciled the routes through {IFACE}: {routes}"
        );
        assert_eq!(
            c.status(node).expect("status")["subnet"],
            blocks[node],
            "node{node} keeps its block"
        );
        sigterms.push((node, t));
    }

    let report = s
        .finish(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the stream failed: {e:#}\n{}", c.all_logs()));
    assert_eq!(report.received, report.sent, "every byte arrives");
    assert_eq!(
        report.sent_sha256, report.received_sha256,
        "checksums match"
    );
    for (k, (node, t)) in sigterms.iter().enumerate() {
        // A stall counts for this restart if it began before the next one (a stall begins
        // at the last read before the pause, so just before the SIGTERM that caused it).
        let within = sigterms
            .get(k + 1)
            .map_or(Duration::from_secs(1), |(_, next)| {
                next.duration_since(*t).saturating_sub(stream::STALL)
            });
        eprintln!(
            "node{node}: gap from SIGTERM to bytes flowing again {:.2} s",
            report.gap_after(*t, within).as_secs_f64()
        );
    }
    eprintln!(
        "{} MiB checked, stalls {:?}",
        report.received >> 20,
        report
            .stalls
            .iter()
            .map(|s| s.to.duration_since(s.from).as_secs_f64())
            .collect::<Vec<_>>()
    );

    // `reset` after a stop removes the device (and its routes) and the state.
    c.stop_agent(1, libc::SIGTERM, Duration::from_secs(5))
        .expect("stopped");
    let state = c.state_dir(1);
    let out = agent_cli(
        &c,
        1,
        &[
            "reset",
            "--iface",
            IFACE,
            "--state-dir",
            &state.to_string_lossy(),
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("removed TUN device"),
        "reset: {out:?}"
    );
    assert_eq!(tun_ifindex(&c, 1), None, "reset removed the device");
    assert!(
        !state.join("claim.json").exists(),
        "reset removed the claim: {said}"
    );
    let out = agent_cli(&c, 1, &["reset", "--iface", IFACE, "--keep-state"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("no device"),
        "a second reset finds nothing: {out:?}"
    );
}
