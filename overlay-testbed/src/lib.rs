//! Network-namespace test beds for tests, the demo and benchmarks.
//!
//! Everything here runs as root and creates its own namespaces, veths and bridges, with a
//! unique name prefix per use, and removes them when dropped. Nothing touches the root
//! namespace's addresses, routes, sysctls or firewall: veth pairs are created directly inside
//! the namespaces they join.
//!
//! # Layout
//! - [`netns`]: one network namespace: commands in it, closures on a thread inside it.
//! - [`underlay`]: several node namespaces on one bridge (in a "switch" namespace).
//! - [`process`]: child processes killed on drop, with their output in a log file.
//! - [`wait`]: bounded waiting with a message that says what was awaited.
//! - [`cluster`]: a whole overlay cluster: agents on the nodes, pods attached by CNI.
//! - [`http`]: requests to an agent's local API inside a namespace.
//! - [`traffic`]: checksummed TCP transfers and UDP echoes between namespaces.
//! - [`stream`]: a long, paced TCP stream checked byte by byte, with its stalls (restarts).
//! - [`vxlan`]: kernel VXLAN between underlay nodes with a pod per node (the benchmark reference).
//! - [`tunpipe`]: two nodes joined by a TUN→TUN forwarder, a pod per node (a copy-only
//!   reference for the benchmark).
//! - [`wakeup`]: how long a blocked thread takes to run after a write, on an idle machine.
//! - [`iperf`]: throughput (iperf3) and round-trip time (ping) between namespaces.
//! - [`conflist`]: CNI network configuration lists executed the way a runtime does.

pub mod cluster;
pub mod conflist;
pub mod http;
pub mod iperf;
pub mod netns;
mod pod_wiring;
pub mod process;
pub mod stream;
pub mod traffic;
pub mod tunpipe;
pub mod underlay;
pub mod vxlan;
pub mod wait;
pub mod wakeup;

pub use cluster::{Binaries, Cluster};
pub use netns::Netns;
pub use process::Process;
pub use underlay::Underlay;

use std::sync::atomic::{AtomicU32, Ordering};

/// True when running as root. Tests that need root call [`require_root`] instead.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Fails the calling test unless it runs as root; creates `/dev/net/tun` if missing.
///
/// Every root-only test is marked `#[cfg_attr(no_root, ignore = "needs root")]` (the cfg is
/// set by the build script of a build made by a user other than root, see
/// `overlay_testkit::root_cfg`) and starts with this call: as root it runs, built by another
/// user it shows as ignored, and a binary built as root but run by another user (or run with
/// `--include-ignored`) fails here with a clear message instead of passing.
pub fn require_root() {
    assert!(
        is_root(),
        "this test needs root: run `cargo test` as root (built by another user, it is ignored)"
    );
    ensure_tun_device();
}

/// Creates `/dev/net/tun` (char 10:200) if it is missing.
pub fn ensure_tun_device() {
    let path = std::path::Path::new("/dev/net/tun");
    if path.exists() {
        return;
    }
    let _ = std::fs::create_dir_all("/dev/net");
    let _ = std::process::Command::new("mknod")
        .args(["/dev/net/tun", "c", "10", "200"])
        .status();
}

/// A short prefix unique to this process and call, for namespace and interface names.
///
/// `tag` should be at most 4 characters; the result is `tag` plus 5 hex digits, short enough
/// to build interface names (15 characters at most) from.
pub fn unique_prefix(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = (std::process::id().wrapping_mul(2_654_435_761) ^ n.wrapping_mul(40_503)) & 0xfffff;
    format!("{tag}{mixed:05x}")
}
