//! End to end, as root: agents dying, leaving and coming back.

mod common;

use common::{converge, started_cluster, transfer};
use overlay_testbed::wait;
use std::time::{Duration, Instant};

/// Waits until every running agent but `gone` sees `gone` as unreachable.
fn wait_unreachable(c: &overlay_testbed::Cluster, gone: usize, timeout: Duration) -> Duration {
    let start = Instant::now();
    let others: Vec<usize> = (0..c.agents.len()).filter(|&i| i != gone).collect();
    wait::until(
        &format!("every agent to mark node{gone} unreachable"),
        timeout,
        Duration::from_millis(100),
        || {
            for &i in &others {
                let p = c.peer_status(i, gone).map_err(|e| e.to_string())?;
                if p["reachable"] != false {
                    return Err(format!("node{i} still reaches node{gone}: {p}"));
                }
            }
            Ok(Some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()));
    start.elapsed()
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn a_killed_agent_is_unreachable_within_15s_and_returns_with_its_block() {
    let mut c = started_cluster("kl", 3);
    converge(&c, Duration::from_secs(15));
    c.add_pod(0).expect("pod on node0");
    c.add_pod(2).expect("pod on node2");
    transfer(&c, 0, 1, 1);
    let block = c.status(2).expect("status")["subnet"].clone();

    // SIGKILL: no goodbye. Its sockets close with the process.
    c.stop_agent(2, libc::SIGKILL, Duration::from_secs(5))
        .expect("killed");
    let took = wait_unreachable(&c, 2, Duration::from_secs(15));
    eprintln!(
        "killed agent marked unreachable by the others in {:.2} s",
        took.as_secs_f64()
    );

    // Restart: it keeps its block (persisted in its state dir) and traffic resumes.
    c.start_agent(2).expect("restart");
    let took = converge(&c, Duration::from_secs(30));
    eprintln!(
        "restarted agent re-converged in {:.2} s",
        took.as_secs_f64()
    );
    assert_eq!(
        c.status(2).expect("status")["subnet"],
        block,
        "same block after restart"
    );
    transfer(&c, 0, 1, 4);
    transfer(&c, 1, 0, 4);
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn an_agent_cut_off_silently_is_unreachable_within_15s() {
    let c = started_cluster("sl", 3);
    converge(&c, Duration::from_secs(15));
    // Its underlay link goes down: no FIN, no RST, only silence (heartbeats time out).
    let port = "p1";
    c.underlay
        .switch
        .ip(&["link", "set", port, "down"])
        .expect("link down");
    let took = wait_unreachable(&c, 1, Duration::from_secs(15));
    eprintln!(
        "silent agent marked unreachable in {:.2} s",
        took.as_secs_f64()
    );
    c.underlay
        .switch
        .ip(&["link", "set", port, "up"])
        .expect("link up");
    converge(&c, Duration::from_secs(60));
}

#[test]
#[cfg_attr(no_root, ignore = "needs root")]
fn sigterm_exits_zero_within_5s_and_the_others_see_it_leave() {
    let mut c = started_cluster("tm", 3);
    converge(&c, Duration::from_secs(15));
    let start = Instant::now();
    let status = c
        .stop_agent(1, libc::SIGTERM, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log(1)));
    assert!(status.success(), "exit status {status:?}\n{}", c.log(1));
    eprintln!(
        "SIGTERM to exit 0 in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let took = wait_unreachable(&c, 1, Duration::from_secs(5));
    eprintln!(
        "departure seen by the others in {:.2} s",
        took.as_secs_f64()
    );
    assert_eq!(c.peer_status(0, 1).expect("status")["left"], true);
    // It comes back and is picked up again without restarting anyone.
    c.start_agent(1).expect("restart");
    converge(&c, Duration::from_secs(30));
    assert_eq!(c.peer_status(0, 1).expect("status")["left"], false);
}
