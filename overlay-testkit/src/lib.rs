//! Test-only helpers shared by the workspace's tests, benchmarks and build scripts.
//!
//! It depends on no `overlay-*` crate, so every crate can use it, `overlay-proto` included,
//! without a second copy of that crate's types in its tests.
//!
//! # Layout
//! - [`counting`]: the counting global allocator of the zero-allocation tests.
//! - [`packet`]: raw-byte packet fixtures (IPv4/UDP, a TCPv4 super-packet and its virtio
//!   header), built without the crates under test.
//! - [`root_cfg`]: the `no_root` cfg that marks root-only tests ignored in a non-root build.

pub mod counting;
pub mod packet;
pub mod root_cfg;
