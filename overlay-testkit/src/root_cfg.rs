//! The `no_root` cfg, set when a crate is built by a user other than root: its root-only
//! tests then show as ignored ("needs root") instead of failing or silently passing.
//!
//! A crate with root-only tests has `overlay-testkit` as a build dependency, a `build.rs` of
//! `fn main() { overlay_testkit::root_cfg::emit(); }`, and marks each such test
//! `#[cfg_attr(no_root, ignore = "needs root")]`; the test itself starts with
//! `overlay_testbed::require_root()`, which fails loudly if a binary built as root is run by
//! another user. `cargo test` as root runs them all; as another user they are listed as
//! ignored (`-- --include-ignored` runs them anyway, and they fail with "needs root").

use std::fs;

/// The cfg's name.
pub const CFG: &str = "no_root";

/// Prints the build-script directives: declares the cfg, sets it when not running as root,
/// and reruns the build script when the build switches user (`sudo` sets `USER` and
/// `SUDO_UID`).
pub fn emit() {
    println!("cargo::rustc-check-cfg=cfg({CFG})");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=USER");
    println!("cargo::rerun-if-env-changed=SUDO_UID");
    if effective_uid() != Some(0) {
        println!("cargo::rustc-cfg={CFG}");
    }
}

/// The effective user id of this process, from `/proc/self/status` (build scripts have no
/// `libc`): the second number of its `Uid:` line.
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
