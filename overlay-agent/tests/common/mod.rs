//! Shared set-up of the end-to-end tests: real agents and the real CNI plugin in namespaces.

#![allow(dead_code)]

use overlay_testbed::{traffic, Binaries, Cluster};
use std::time::Duration;

/// A 64 MiB transfer takes a few seconds even in a debug build; leave room for a busy machine.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);

/// A cluster of `nodes` nodes with chained seeds and every agent started (root only: see
/// `overlay_testbed::require_root`).
pub fn started_cluster(tag: &str, nodes: usize) -> Cluster {
    overlay_testbed::require_root();
    let bins = Binaries::next_to(env!("CARGO_BIN_EXE_overlay-agent")).expect("binaries built");
    let mut c = Cluster::new(&overlay_testbed::unique_prefix(tag), nodes, bins).expect("cluster");
    c.start_all().expect("agents start");
    c
}

/// Waits for convergence and fails with every agent's log if it does not come.
pub fn converge(c: &Cluster, timeout: Duration) -> Duration {
    c.wait_converged(timeout)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.all_logs()))
}

/// Moves `mib` MiB from pod `from` to pod `to` and checks both checksums.
pub fn transfer(c: &Cluster, from: usize, to: usize, mib: u64) -> traffic::Transfer {
    let (src, dst) = (&c.pods[from], &c.pods[to]);
    let t = traffic::tcp_transfer(&dst.netns, dst.ip, &src.netns, mib << 20, TRANSFER_TIMEOUT)
        .unwrap_or_else(|e| panic!("pod{from} -> pod{to}: {e:#}\n{}", c.all_logs()));
    assert_eq!(
        t.received,
        mib << 20,
        "pod{from} -> pod{to}: every byte arrives"
    );
    assert_eq!(
        t.sent_sha256, t.received_sha256,
        "pod{from} -> pod{to}: checksums match"
    );
    t
}

/// A datapath counter of node `i` from its status (`path` like `["drops", "not_peer"]`).
pub fn counter(c: &Cluster, i: usize, path: &[&str]) -> u64 {
    let s = c.status(i).expect("status");
    let mut v = &s["datapath"];
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("no counter {path:?} in {}", s["datapath"]))
}
